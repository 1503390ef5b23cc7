"""Average the weights of checkpoints of one model: sittings continued from one another, or one run's states.

Models that share a starting point lie in one basin of the loss; the mean of their weights usually reads at
least as well as the best of them (stochastic weight averaging, Izmailov et al. 2018). Batch-norm statistics are
averaged like the weights; the alphabet, architecture and LM are the first checkpoint's, and its measured
metrics are dropped (they described other weights: measure again with ``htr.evaluate --record``)::

    python -m htr.training.average_checkpoints runs/a/handwriting_recognizer_best.pth \\
        runs/b/handwriting_recognizer_best.pth --output averaged.pth
"""

from __future__ import annotations

import copy

from htr.checkpoint import CheckpointError

AVERAGED_KEY = "weights averaged over"  # the training recipe's entry naming the averaged checkpoints


def average_checkpoints(checkpoints: list[dict], names: list[str]) -> dict:
    """One checkpoint whose floating-point tensors are the mean of ``checkpoints``' (all of one architecture and
    alphabet; ``names`` say which they were, for the training record). Integer buffers are the first's."""
    if len(checkpoints) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    first, first_name = checkpoints[0], names[0]
    first_shapes = {key: tuple(value.shape) for key, value in first["state_dict"].items()}
    for checkpoint, name in zip(checkpoints[1:], names[1:]):
        if checkpoint["model_config"] != first["model_config"]:
            raise CheckpointError(f"{name} has another architecture than {first_name}: one model's weights only")
        if checkpoint["alphabet"] != first["alphabet"]:
            raise CheckpointError(f"{name} has another alphabet than {first_name}")
        if {key: tuple(value.shape) for key, value in checkpoint["state_dict"].items()} != first_shapes:
            raise CheckpointError(f"{name}: its tensors do not match {first_name}'s")
    state = {}
    for key, value in first["state_dict"].items():
        if value.is_floating_point():
            total = sum(checkpoint["state_dict"][key].double() for checkpoint in checkpoints)
            state[key] = (total / len(checkpoints)).to(value.dtype)
        else:
            state[key] = value.clone()  # e.g. batch norm's num_batches_tracked
    averaged = {key: copy.deepcopy(value) for key, value in first.items() if key != "state_dict"}
    averaged["state_dict"] = state
    averaged["metrics"] = {}
    training = averaged.setdefault("training", {})
    training.setdefault("recipe", {})[AVERAGED_KEY] = ", ".join(names)
    return averaged


if __name__ == "__main__":  # python -m htr.training.average_checkpoints runs htr.cli.average (not imported)
    import runpy

    runpy.run_module("htr.cli.average", run_name="__main__", alter_sys=True)
