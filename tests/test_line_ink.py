"""A found line is read without the strokes of the lines above and below that reach into its box."""

import numpy as np
import pytest

from htr.pages.line_ink import own_ink, stroke_owners
from htr.pages.segment import segment_page
from htr.reading.preprocess import ink_map
from tests.test_page_ink import handwritten_lines

UPPER, LOWER = (10, 0, 110, 40), (10, 30, 125, 70)  # boxes overlapping in rows 30-39; cores rows 12-27 and 42-57


@pytest.fixture
def two_lines() -> np.ndarray:
    ink = np.zeros((80, 130), np.float32)
    ink[14:27, 20:41] = 1  # the upper line's writing
    ink[14:39, 45:48] = 1  # its descender, down into the lower line's box
    ink[44:57, 60:81] = 1  # the lower line's writing
    ink[32:57, 85:88] = 1  # its ascender, up into the upper line's box
    ink[32:57, 84] = 0.3  # the ascender's grey edge
    ink[37:40, 65:68] = 1  # a dot between the lines, nearer the lower one
    ink[20:51, 95:98] = 1  # a stroke joining the two lines
    ink[22:25, 112:115] = 1  # a full stop beyond the upper line's box, above the longer lower line
    return ink


def test_strokes_belong_to_the_line_whose_core_they_touch(two_lines):
    owners = stroke_owners(two_lines, [UPPER, LOWER])
    assert (owners[14:39, 45:48] == 1).all() and (owners[32:57, 85:88] == 2).all()
    assert (owners[37:40, 65:68] == 2).all()  # no core touched: the nearest line's
    assert (owners[20:35, 95:98] == 1).all() and (owners[36:51, 95:98] == 2).all()  # split halfway between cores
    assert (owners[22:25, 112:115] == 1).all() and (owners[two_lines == 0] == 0).all()
    assert not stroke_owners(two_lines, []).any()  # a page where no line was found


def test_a_line_is_read_without_the_other_lines_strokes(two_lines):
    owners = stroke_owners(two_lines, [UPPER, LOWER])
    upper = own_ink(two_lines, owners, 0, UPPER)  # window rows 0-39, columns 10-109
    assert (upper[30:39, 35:38] == 1).all() and (upper[14:27, 10:31] == 1).all()  # its descender and writing
    assert not upper[32:40, 74:78].any()  # the lower line's ascender, its grey edge
    assert not upper[37:40, 55:58].any() and not upper[36:40, 85:88].any()  # the dot, the lower half of the join
    assert (upper[20:35, 85:88] == 1).all()  # the upper half of the join
    read = own_ink(two_lines, owners, 0, (10, 0, 120, 40))  # the box read a little longer at its ends
    assert (read[22:25, 102:105] == 1).all()  # the full stop
    lower = own_ink(two_lines, owners, 1, LOWER)  # window rows 30-69
    assert not lower[0:9, 35:38].any() and (lower[2:27, 75:78] == 1).all() and (lower[7:10, 55:58] == 1).all()
    assert (lower[6:21, 85:88] == 1).all() and not lower[0:5, 85:88].any()
    assert two_lines[32:57, 84].max() == 0.3  # the page's ink map itself is left as it was


class KnownBoxes:
    """A line finder that finds the given boxes."""

    def __init__(self, boxes):
        self.found = boxes

    def boxes(self, grey):
        return self.found


def test_pages_of_close_lines_are_read_without_the_neighbours_strokes():
    """Lines of handwriting fonts stacked so close that their ascenders and descenders reach into each other's
    boxes: the ink read for each line keeps nearly all of its own strokes and few of the others'."""
    own_kept = own_plain = others_kept = others_plain = 0
    for seed in range(3):
        lines = [np.asarray(line.convert("L")) for line in handwritten_lines(5, seed)]
        rows = [np.flatnonzero((line < 128).any(axis=1)) for line in lines]
        lines = [line[written[0] : written[-1] + 1] for line, written in zip(lines, rows)]  # cut to their ink
        step = int(0.85 * np.median([line.shape[0] for line in lines]))
        page = np.full((step * 4 + lines[-1].shape[0] + 60, max(line.shape[1] for line in lines) + 60), 255, np.uint8)
        truth = np.zeros((5, *page.shape), bool)
        boxes = []
        for index, line in enumerate(lines):
            top = 30 + index * step
            region = page[top : top + line.shape[0], 30 : 30 + line.shape[1]]
            np.minimum(region, line, out=region)
            truth[index, top : top + line.shape[0], 30 : 30 + line.shape[1]] = line < 128
            boxes.append((30, top, 30 + line.shape[1], top + line.shape[0]))
        plain_map = ink_map(page)
        for index, found in enumerate(segment_page(page, finder=KnownBoxes(boxes))):
            left, top, right, bottom = found.ink_box
            read, plain = found.ink > 0.5, plain_map[top:bottom, left:right] > 0.5
            own = truth[index, top:bottom, left:right]
            others = np.delete(truth, index, axis=0)[:, top:bottom, left:right].any(axis=0) & ~own
            own_kept, own_plain = own_kept + read[own].sum(), own_plain + plain[own].sum()
            others_kept, others_plain = others_kept + read[others].sum(), others_plain + plain[others].sum()
    assert others_plain > 1000  # the plain boxes do hold the neighbours' strokes
    assert others_kept < 0.25 * others_plain and own_kept > 0.9 * own_plain
