"""Column rules as line borders: kernels cut at a ruled table's column rules, never at rules that writing crosses."""

import numpy as np

from htr.pages.column_rules import column_rules, cut_at_borders
from htr.pages.line_finder import KERNEL_SHARE, MIN_KERNEL_AREA, boxes_from_kernels

ROWS = [10 + 20 * i for i in range(8)]  # kernels 4 px thick (lines 10 px high), 20 px apart
RULE = slice(59, 61)  # a column rule 2 px wide down the whole table


def table(cells: list[list[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
    """A kernel map with each row's kernels at the given [left, right) spans, and the rule beside them."""
    probability = np.zeros((180, 200), np.float32)
    for top, spans in zip(ROWS, cells):
        for left, right in spans:
            probability[top : top + 4, left:right] = 1
    rules = np.zeros(probability.shape, bool)
    rules[:, RULE] = True
    return probability, rules


def spans(boxes) -> list[tuple[int, int]]:
    return sorted((b[0], b[2]) for b in boxes)


def test_a_cell_merged_with_the_next_across_a_tables_rule_is_cut_there():
    cells = [[(5, 55), (65, 190)]] * 7 + [[(5, 190)]]  # seven rows stop at the rule; the last runs across it
    probability, rules = table(cells)
    without = boxes_from_kernels(probability, 1.0)
    assert len(without) == 15  # the merged row is one box
    found = boxes_from_kernels(probability, 1.0, rules=rules)
    assert len(found) == 16
    last = [b for b in found if b[1] > ROWS[-1] - 10]
    assert spans(last) == [(2, 62), (58, 193)]  # cut at the rule (columns 59-60), each part grown at its ends


def test_cells_a_hair_apart_are_not_joined_across_a_border():
    cells = [[(5, 55), (65, 190)]] * 7 + [[(5, 60), (61, 190)]]  # the last row's cells 1 px apart: one line without
    probability, rules = table(cells)
    assert len(boxes_from_kernels(probability, 1.0)) == 15
    assert len(boxes_from_kernels(probability, 1.0, rules=rules)) == 16


def test_writing_that_runs_across_a_rule_is_left_whole():
    """Ruled account paper, a fold, a margin rule: most lines cross it, so it is no column border."""
    probability, rules = table([[(5, 190)]] * 6 + [[(5, 55), (65, 190)]] * 2)
    cut, borders = cut_at_borders(probability, 0.5, rules, MIN_KERNEL_AREA, KERNEL_SHARE)
    assert not borders.any() and np.array_equal(cut, probability)
    assert spans(boxes_from_kernels(probability, 1.0, rules=rules)) == spans(boxes_from_kernels(probability, 1.0))


def test_a_line_starting_just_across_a_rule_is_not_cut():
    """A piece shorter than CUT_SIDE line heights on one side (a margin rule the lines start on) stays on its line."""
    cells = [[(5, 55), (65, 190)]] * 7 + [[(52, 190)]]  # the last line starts 0.7 line heights left of the rule
    probability, rules = table(cells)
    found = boxes_from_kernels(probability, 1.0, rules=rules)
    assert len(found) == 15 and any(b[0] < 55 and b[2] > 185 for b in found)


def test_long_vertical_rules_are_found_and_writing_is_not():
    ink = np.zeros((600, 400), np.float32)
    ink[20:580, 200:202] = 1.0  # a column rule
    rng = np.random.default_rng(0)
    for top in range(40, 560, 30):  # rows of "letters": strokes at most 20 px tall, some vertical
        for left in rng.integers(10, 380, 25):
            ink[top : top + rng.integers(5, 20), left : left + 2] = 1.0
    rules = column_rules(ink, (300, 200))
    assert rules is not None and rules[:, 100].mean() > 0.9
    assert not rules[:, :99].any() and not rules[:, 102:].any()
    ink[:, 200:202] = 0
    assert column_rules(ink, (300, 200)) is None
