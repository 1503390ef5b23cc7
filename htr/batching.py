"""Width-bucketed batches: lines of similar width together, so little of each batch is padding."""

from __future__ import annotations

import torch


def bucketed_batches(widths: list[int], batch_size: int, seed: int | None) -> list[list[int]]:
    """Batches of similar width (little padding). With a seed: jittered widths and shuffled batch order,
    reproducible from the seed alone; without one: sorted by width, for evaluation."""
    order = torch.tensor(widths, dtype=torch.float32)
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
        order = order * (1 + 0.2 * (torch.rand(len(widths), generator=generator) - 0.5))
    indices = torch.argsort(order).tolist()
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches
