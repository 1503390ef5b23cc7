"""A table's column rules as line borders: the line finder's kernels are cut where they cross one.

In a ruled register each cell is a line of its own, yet a cell's writing that runs up to the rule often merges
with the next cell's into one kernel ("Contrat de mariage | Blanchet, de Anne ..."). A long vertical rule is taken
as a column border only when the page's writing respects it: several kernels stop at it and at most ``RESPECTED`` of
those meeting it run across. Writing that crosses a rule freely (a letter on ruled account paper, a fold down the
middle of a sheet, a margin rule the lines start on) is left whole.
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np

from htr.pages.page_ink import RULE_LETTERS, component_height, straight_runs

RULE_INK = 0.3  # ink-map value above which a pixel can belong to a rule
RULE_SHARE = 0.1  # a column rule runs straight for at least this share of the page's height ...
CUT_SIDE = 1.5  # a kernel is cut at a rule only with this many line heights of it on each side
STOPPING = 1.0  # a kernel ending within this many line heights of a rule stops at it
MIN_STOPS = 4  # a border has at least this many kernels stopping at it ...
RESPECTED = 0.5  # ... and at most this share of the kernels meeting it running across


def column_rules(ink: np.ndarray, map_shape: tuple[int, int]) -> np.ndarray | None:
    """Where long straight vertical rules run, at the kernel map's size (``map_shape``), from the page's ink map at
    the finder's input scale; None when there are none."""
    binary = (ink > RULE_INK).astype(np.uint8)
    length = max(15, int(RULE_SHARE * ink.shape[0]), int(RULE_LETTERS * component_height(binary)))
    rules = straight_runs(binary, length, vertical=True)
    if not rules.any():
        return None
    return cv2.resize(rules.astype(np.float32), map_shape[::-1], interpolation=cv2.INTER_AREA) > 0


def _runs(columns: np.ndarray) -> list[tuple[int, int]]:
    """Clusters [first, last] of column indices at most 2 apart (one rule, a few pixels wide or slightly tilted)."""
    runs: list[list[int]] = []
    for x in columns.tolist():
        if runs and x - runs[-1][1] <= 2:
            runs[-1][1] = x
        else:
            runs.append([x, x])
    return [(a, b) for a, b in runs]


def cut_at_borders(probability: np.ndarray, threshold: float, rules: np.ndarray, min_area: int,
                   kernel_share: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The kernel map with kernels cut where they cross a column border, and the borders (the rules the page's
    writing respects, see the module's docstring) as a map; ``kernel_share``: the share of a line's height its
    kernel covers, ``min_area``: smaller parts are specks."""
    mask = (probability > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    runs = _runs(np.flatnonzero(rules.any(axis=0)))
    crossing: dict[int, list[int]] = {r: [] for r in range(len(runs))}
    stops: Counter = Counter()
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if w < 3 or area < min_area:
            continue
        height = area / w / kernel_share
        for r, (a, b) in enumerate(runs):
            if rules[y : y + h, a : b + 1].any(axis=1).mean() < 0.5:
                continue  # the rule does not run beside this kernel
            if x + CUT_SIDE * height <= a and b <= x + w - 1 - CUT_SIDE * height:
                crossing[r].append(i)
            elif 0 <= a - (x + w) <= STOPPING * height or 0 <= x - b <= STOPPING * height:
                stops[r] += 1
    cut, borders = probability, np.zeros_like(rules)
    for r, (a, b) in enumerate(runs):
        across = len(crossing[r])
        if stops[r] < MIN_STOPS or across > RESPECTED * (across + stops[r]):
            continue  # writing runs across it (or too little writing meets it to tell)
        borders[:, a : b + 1] = rules[:, a : b + 1]
        if across:
            cut = cut.copy() if cut is probability else cut
            strip = cut[:, a : b + 1]
            strip[np.isin(labels[:, a : b + 1], crossing[r])] = 0.0
    return cut, borders
