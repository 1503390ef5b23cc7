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


def weighted_epoch(sizes: list[int], weights: list[float], seed: int) -> list[int]:
    """Indices into the concatenation of datasets of ``sizes`` for one epoch: ``round(w * n)`` lines of a dataset
    of n lines with weight w (every line ``floor(w)`` times, then a seeded random share of the rest). With
    all weights 1: every line once, in order."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    indices: list[int] = []
    offset = 0
    for size, weight in zip(sizes, weights):
        if weight < 0:
            raise ValueError(f"dataset weights must be >= 0, got {weight}")
        count = round(weight * size)
        whole, rest = divmod(count, size) if size else (0, 0)
        indices += [offset + i for _ in range(whole) for i in range(size)]
        if rest:
            indices += sorted(offset + i for i in torch.randperm(size, generator=generator)[:rest].tolist())
        offset += size
    return indices
