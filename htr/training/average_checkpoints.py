"""Average the weights of checkpoints of one model: sittings continued from one another, one run's states, or a
base model and its fine-tuned descendant.

Models that share a starting point lie in one basin of the loss; the mean of their weights usually reads at
least as well as the best of them (stochastic weight averaging, Izmailov et al. 2018). Between a base and the
model fine-tuned from it, a weighted mean trades what each reads best (WiSE-FT, Wortsman et al. 2022): more weight
on the base keeps more of what it read. Batch-norm statistics are averaged like the weights. Alphabets may differ
by characters appended in fine-tuning: the result has the longest alphabet, and the output rows of a character
some checkpoints lack are the weighted mean of those that have it. The architecture, LM and training record are
those of the first checkpoint with the longest alphabet; measured metrics are dropped (they described other
weights: measure again with ``htr.evaluate --record``)::

    python -m htr.training.average_checkpoints runs/a/handwriting_recognizer_best.pth \\
        runs/b/handwriting_recognizer_best.pth --output averaged.pth
    python -m htr.training.average_checkpoints base.pth tuned.pth --weights 0.4 0.6 --output interpolated.pth
"""

from __future__ import annotations

import copy
import math

import torch

from htr.checkpoint import CheckpointError, grown_by_rows

AVERAGED_KEY = "weights averaged over"  # the training recipe's entry naming the averaged checkpoints


def average_checkpoints(checkpoints: list[dict], names: list[str], weights: list[float] | None = None) -> dict:
    """One checkpoint whose floating-point tensors are the mean of ``checkpoints``' (all of one architecture; each
    alphabet the start of the longest), weighted by ``weights`` (equal when None; scaled to sum to 1); ``names``
    say which they were, for the training record. Integer buffers are the template's (below)."""
    if len(checkpoints) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    weights = [1.0] * len(checkpoints) if weights is None else [float(weight) for weight in weights]
    if (
        len(weights) != len(checkpoints)
        or not all(map(math.isfinite, weights))
        or min(weights) < 0
        or sum(weights) <= 0
    ):
        raise CheckpointError(f"give one weight per checkpoint ({len(checkpoints)}), none negative, not all 0")
    weights = [weight / sum(weights) for weight in weights]
    longest = max(range(len(checkpoints)), key=lambda index: (len(checkpoints[index]["alphabet"]), -index))
    template, template_name = checkpoints[longest], names[longest]
    for checkpoint, name in zip(checkpoints, names):
        check_compatible(checkpoint, name, template, template_name)
    state = {}
    for key, value in template["state_dict"].items():
        if not value.is_floating_point():
            state[key] = value.clone()  # e.g. batch norm's num_batches_tracked
            continue
        total = value.double().zero_()
        cover = total.clone()  # per output row: the weight of the checkpoints that have it
        for checkpoint, weight in zip(checkpoints, weights):
            tensor = checkpoint["state_dict"][key].double()
            rows = slice(len(tensor)) if tensor.dim() else slice(None)  # rows past a shorter alphabet's stay out
            total[rows] += weight * tensor
            cover[rows] += weight
        # rows only checkpoints of weight 0 have (a new character, the base weighted 1) are the template's own
        state[key] = torch.where(cover > 0, total / cover.clamp_min(1e-12), value.double()).to(value.dtype)
    averaged = {key: copy.deepcopy(value) for key, value in template.items() if key != "state_dict"}
    averaged["state_dict"], averaged["metrics"] = state, {}  # the alphabet is the template's, copied above
    equal = max(weights) - min(weights) < 1e-9
    record = ", ".join(name if equal else f"{name} × {weight:.3g}" for name, weight in zip(names, weights))
    averaged.setdefault("training", {}).setdefault("recipe", {})[AVERAGED_KEY] = record
    return averaged


def check_compatible(checkpoint: dict, name: str, template: dict, template_name: str) -> None:
    """Raise unless ``checkpoint`` is ``template``'s architecture with an alphabet that begins the template's."""
    added = len(template["alphabet"]) - len(checkpoint["alphabet"])
    if not template["alphabet"].startswith(checkpoint["alphabet"]):
        raise CheckpointError(f"{name} has another alphabet than {template_name} (not its start)")
    config = dict(checkpoint["model_config"], num_classes=template["model_config"]["num_classes"])
    if config != template["model_config"] or checkpoint["model_config"]["num_classes"] + added != config["num_classes"]:
        raise CheckpointError(f"{name} has another architecture than {template_name}: one model's weights only")
    own, wanted = checkpoint["state_dict"], template["state_dict"]
    if own.keys() != wanted.keys():
        raise CheckpointError(f"{name}: its tensors do not match {template_name}'s")
    for key, value in wanted.items():
        shape = own[key].shape
        if shape != value.shape and not (added and grown_by_rows(shape, value.shape, added)):
            raise CheckpointError(f"{name}: its tensors do not match {template_name}'s ({key})")


if __name__ == "__main__":  # python -m htr.training.average_checkpoints runs htr.cli.average (not imported)
    import runpy

    runpy.run_module("htr.cli.average", run_name="__main__", alter_sys=True)
