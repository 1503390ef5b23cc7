"""Drop residual blocks from a trained CRNN: the start of a faster student, before distillation.

A stage ``[n, c]`` of n residual blocks keeps its first blocks (the first one adapts the channels; the others map
c channels to c, so leaving one out leaves the rest of the network working). Every kept weight is the trained
one; the pruned model reads worse until it learns again, e.g. from the original with ``htr.train --teacher``::

    python -m htr.training.prune_blocks models/handwriting_recognizer_large.pth \\
        --cnn '["M", [2, 64], "Mh", [2, 128], "Mh", [1, 256]]' -o runs/pruned.pth
"""

from __future__ import annotations

import copy
import json
import re

STEM_LAYERS = 3  # convolution, batch norm, ReLU before the first entry of ``cnn`` (htr.model.build_cnn)
POOLINGS = ("M", "Mh")  # the entries of ``cnn`` that are not stages of blocks


def cnn_layers(cnn: list) -> list[tuple]:
    """What each layer of ``build_cnn``'s Sequential after the stem is: ``(entry, "pool")`` or
    ``(entry, "block", i)`` for the i-th block of the ``cnn`` entry at index ``entry``."""
    layers: list[tuple] = []
    for entry, item in enumerate(cnn):
        if item in POOLINGS:
            layers.append((entry, "pool"))
        else:
            layers += [(entry, "block", i) for i in range(item[0])]
    return layers


def has_fewer_blocks(new, old) -> bool:
    """Whether the ``cnn`` entry ``new`` is ``old`` itself (a pooling) or its stage with 1 to all of its blocks."""
    if old in POOLINGS:
        return new == old
    is_stage = isinstance(new, list) and len(new) == 2 and isinstance(new[0], int)
    return is_stage and new[1] == old[1] and 1 <= new[0] <= old[0]


def prune_blocks(checkpoint: dict, cnn: list) -> dict:
    """``checkpoint`` with the CNN declared by ``cnn``: the same poolings and channels, each stage keeping its first
    blocks (at least one). Metrics are dropped and the training record says what it was pruned from."""
    source = checkpoint["model_config"]["cnn"]
    fits = isinstance(cnn, list) and len(cnn) == len(source) and all(map(has_fewer_blocks, cnn, source))
    if not fits:
        raise ValueError(f"cnn {json.dumps(cnn)} is not {json.dumps(source)} with fewer blocks per stage")
    kept = {layer: index for index, layer in enumerate(cnn_layers(cnn))}
    moves = {old: kept[layer] for old, layer in enumerate(cnn_layers(source)) if layer in kept}
    state = {}
    for key, value in checkpoint["state_dict"].items():
        match = re.fullmatch(r"cnn\.(\d+)\.(.+)", key)
        if match and int(match[1]) >= STEM_LAYERS:
            old = int(match[1]) - STEM_LAYERS
            if old not in moves:
                continue  # a dropped block
            key = f"cnn.{moves[old] + STEM_LAYERS}.{match[2]}"
        state[key] = value.clone()
    pruned = {key: copy.deepcopy(value) for key, value in checkpoint.items() if key not in ("state_dict", "training")}
    pruned["model_config"]["cnn"] = copy.deepcopy(cnn)
    pruned["state_dict"] = state
    pruned["metrics"] = {}
    dropped = sum(old[0] - new[0] for new, old in zip(cnn, source) if old not in POOLINGS)
    pruned["training"] = {"note": f"pruned: {dropped} residual block(s) dropped from cnn {json.dumps(source)}"}
    return pruned


if __name__ == "__main__":  # python -m htr.training.prune_blocks: its command line is htr.cli.prune (run, not imported)
    import runpy

    runpy.run_module("htr.cli.prune", run_name="__main__", alter_sys=True)
