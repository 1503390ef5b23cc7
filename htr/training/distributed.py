"""Data-parallel training under ``torchrun``: process group, each rank's share of a batch, agreement between ranks.

``--batch-size`` is the global batch: every optimizer step takes one width-bucketed batch of the epoch, the same
batches in the same order whatever the number of processes, and each rank computes its share of it. So steps,
learning-rate schedule, ``--save-every`` and the saved position in an epoch mean the same on 1, 2 or 8 ranks, and a
run resumes on another world size at the very batch where it stopped. Outside ``torchrun`` nothing here starts.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

TIMEOUT = datetime.timedelta(minutes=60)  # rank 0 validates and saves while the others wait at a barrier


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    distributed: bool = False  # in a process group (under torchrun, even with one process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


ONE_PROCESS = World()


def launched_by_torchrun() -> bool:
    """True in a process started by ``torchrun`` (or any launcher that sets the torch.distributed variables)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group when launched by ``torchrun`` (NCCL on CUDA, gloo on the CPU); returns this process's
    place and its device (``cuda:LOCAL_RANK`` on GPUs). A single process gets ``World()`` and ``device``."""
    if not launched_by_torchrun():
        return World(), device
    world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
                  int(os.environ.get("LOCAL_WORLD_SIZE", 1)), distributed=True)  # fmt: skip
    if not world.is_main:
        os.environ["TQDM_DISABLE"] = "1"  # one set of progress bars: rank 0's
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun's store outlives a restart: keys of this attempt only, or the restarted workers can read
            # the killed ones' addresses (seen here as gloo "Connection refused" after --max-restarts restarts)
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world.size,
                                  is_master=False, timeout=TIMEOUT)  # fmt: skip
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            dist.init_process_group(backend, store=dist.PrefixStore(f"htr/attempt_{attempt}", store),
                                    rank=world.rank, world_size=world.size, timeout=TIMEOUT)  # fmt: skip
        else:
            dist.init_process_group(backend, timeout=TIMEOUT)
    return world, device


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_share(batch: list[int], owners: list[int], world: World) -> tuple[list[int], float]:
    """This rank's part of a global batch and the weight of its mean loss (``len(part) * size / len(batch)``,
    so that DDP's average of the ranks' gradients is the gradient of the whole batch's mean loss).

    ``owners[i]``: the rank that holds line ``i`` (synthetic lines are rendered by one rank each), or -1 for a line
    every rank holds; those fill up the ranks with the fewest lines. A rank left with nothing gets the batch's
    first shared line at weight 0 (it must still take part in the gradient all-reduce)."""
    if not world.distributed:
        return list(batch), 1.0
    parts: list[list[int]] = [[] for _ in range(world.size)]
    for index in batch:
        if owners[index] >= 0:
            parts[owners[index]].append(index)
    for index in batch:
        if owners[index] < 0:
            min(parts, key=len).append(index)
    mine = parts[world.rank]
    if not mine:
        shared = [i for i in batch if owners[i] < 0] or [next(i for i, o in enumerate(owners) if o < 0)]
        return shared[:1], 0.0
    return mine, len(mine) * world.size / len(batch)


def all_finite(loss: torch.Tensor, world: World) -> bool:
    """Whether the loss is finite on every rank (all skip a bad batch together, or none does)."""
    finite = bool(torch.isfinite(loss.detach()).all())
    if not world.distributed:
        return finite
    flag = torch.tensor([1.0 if finite else 0.0], device=loss.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def sum_over_ranks(value: float, world: World, device: torch.device) -> float:
    """The sum of a number over all ranks (the value itself in one process)."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def from_main(value, world: World):
    """Rank 0's value of a picklable object, on every rank."""
    if not world.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather(value, world: World) -> list:
    """Every rank's value of a picklable object, in rank order."""
    if not world.distributed:
        return [value]
    values = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
