"""Width-bucketed batches: lines of similar width together, so little of each batch is padding."""

from __future__ import annotations


def bucketed_batches(widths: list[int], batch_size: int, seed: int | None) -> list[list[int]]:
    """Batches of similar width (little padding). With a seed: jittered widths and shuffled batch order,
    reproducible from the seed alone (PyTorch's generator); without one: sorted by width (ties in input
    order), for evaluation and reading."""
    if seed is None:
        indices = sorted(range(len(widths)), key=widths.__getitem__)
        return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    import torch

    generator = torch.Generator().manual_seed(seed)
    order = torch.tensor(widths, dtype=torch.float32)
    order = order * (1 + 0.2 * (torch.rand(len(widths), generator=generator) - 0.5))
    indices = torch.argsort(order).tolist()
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
