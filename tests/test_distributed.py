"""Data-parallel training under torchrun on the CPU (gloo): same steps as one process, resume across world sizes,
a killed worker restarted, ranks that agree."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from htr.training.distributed import World, rank_share
from tests.conftest import TINY_MODEL, random_texts

ROOT = Path(__file__).resolve().parents[1]
# deterministic apart from the data split: no dropout, no augmentation, fp32, no LM to build
EXACT = [*TINY_MODEL, "--model-dropout", "0", "--no-use-augment", "--precision", "fp32", "--lm-order", "0",
         "--device", "cpu", "--render-workers", "0", "--warmup-steps", "2"]  # fmt: skip


def train_command(processes: int, *args: str, restarts: int = 0) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "htr.train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "--max-restarts", str(restarts), "-m", "htr.train", *args]  # fmt: skip


def run_training(processes: int, *args: str) -> subprocess.CompletedProcess:
    launcher = subprocess.Popen(train_command(processes, *args), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        stdout, stderr = launcher.communicate(timeout=300)
    finally:
        kill_if_running(launcher)
    assert launcher.returncode == 0, stderr[-3000:]
    return subprocess.CompletedProcess(launcher.args, launcher.returncode, stdout, stderr)


def kill_if_running(launcher: subprocess.Popen) -> None:
    """After a hang: the launcher and its workers (which a timeout alone would leave running)."""
    if launcher.poll() is None:
        for pid in [*children(launcher.pid), launcher.pid]:
            os.kill(pid, signal.SIGKILL)


def state(folder: Path) -> dict:
    return torch.load(folder / "last_state.pt", weights_only=True)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def font_text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "lines.txt"
    path.write_text("\n".join(random_texts(24, seed=5)) + "\n")
    return path


def test_rank_shares_cover_the_batch_and_weigh_it_exactly():
    owners = [-1] * 6 + [0, 1, 1, 0]  # six shared real lines, four synthetic lines held by ranks 0 and 1
    batch = [0, 6, 7, 1, 8, 2, 9]
    parts = [rank_share(batch, owners, World(rank, 2, distributed=True)) for rank in range(2)]
    assert sorted(i for part, _ in parts for i in part) == sorted(batch)
    assert all(owners[i] in (-1, rank) for rank, (part, _) in enumerate(parts) for i in part)
    assert abs(len(parts[0][0]) - len(parts[1][0])) <= 1 and sum(w for _, w in parts) == pytest.approx(2.0)
    lonely = [rank_share([6], owners, World(rank, 2, distributed=True)) for rank in range(2)]
    assert lonely == [([6], 2.0), ([0], 0.0)]  # rank 1 still steps, on a shared line that weighs nothing
    assert rank_share(batch, owners, World()) == (batch, 1.0)


def _agree(rank: int, folder: str, results) -> None:
    import torch.distributed as dist

    from htr.training.distributed import all_finite, from_main, gather, sum_over_ranks

    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    world = World(rank, 2, distributed=True)
    loss = torch.tensor(float("nan") if rank == 1 else 1.5)  # one rank meets a bad batch
    results[rank] = (all_finite(loss, world), all_finite(torch.tensor(2.0), world),
                     from_main(f"from {rank}", world), gather(rank * 10, world),
                     sum_over_ranks(rank + 1.0, world, torch.device("cpu")))  # fmt: skip
    dist.destroy_process_group()


def test_ranks_agree_to_skip_a_bad_batch_and_share_values(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_agree, args=(str(tmp_path), results), nprocs=2, join=True)
    assert results[0] == results[1] == (False, True, "from 0", [0, 10], 3.0)


def test_two_processes_take_the_same_steps_as_one(parquet_dataset, font_text, tmp_path):
    args = ["--dataset", str(parquet_dataset), "--epochs", "2", "--batch-size", "8", "--font-text", str(font_text),
            "--font-ratio", "0.25", *EXACT]  # fmt: skip
    run_training(1, *args, "--output-dir", str(tmp_path / "one"))
    result = run_training(2, *args, "--output-dir", str(tmp_path / "two"))
    assert "2 processes, global batch 8" in result.stderr
    one, two = state(tmp_path / "one"), state(tmp_path / "two")
    assert (
        [(h["step"], h["lines_seen"]) for h in two["history"]]
        == [(h["step"], h["lines_seen"]) for h in one["history"]]
        == [(8, 60), (16, 120)]
    )
    for a, b in zip(one["history"], two["history"]):  # each rank's half batch differs only in BatchNorm statistics
        assert abs(a["train_loss"] - b["train_loss"]) < 0.02 * a["train_loss"], (a, b)  # and padding
    best = torch.load(tmp_path / "two" / "handwriting_recognizer_best.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in best["state_dict"])  # the shipped format, unchanged
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_resume_across_world_sizes(parquet_dataset, tmp_path):
    out = tmp_path / "run"
    args = ["--dataset", str(parquet_dataset), "--output-dir", str(out), "--epochs", "2", "--batch-size", "8", *EXACT]
    run_training(2, *args, "--max-steps", "4")  # 6 steps per epoch: stops inside epoch 1
    assert (state(out)["step"], state(out)["batch_in_epoch"]) == (4, 4)
    resumed = run_training(1, *args, "--max-steps", "9")  # saved by 2 ranks, resumed by one
    assert "resuming from" in resumed.stderr and "step 4" in resumed.stderr
    assert (state(out)["step"], state(out)["epoch"], state(out)["batch_in_epoch"]) == (9, 1, 3)
    back = run_training(2, *args)  # and back to two
    assert "step 9" in back.stderr
    final = state(out)
    assert (final["step"], final["epoch"]) == (12, 2) and [h["step"] for h in final["history"]] == [6, 12]
    assert [h["lines_seen"] for h in final["history"]] == [48, 96]  # no batch lost or repeated
    assert leftovers(out) == []


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
def test_a_killed_worker_is_restarted_and_the_run_finishes(parquet_dataset, tmp_path):
    out = tmp_path / "run"
    args = ["--dataset", str(parquet_dataset), "--output-dir", str(out), "--epochs", "4", "--batch-size", "4",
            "--save-every", "2", *EXACT]  # fmt: skip  # 12 steps per epoch, a saved state every 2
    launcher = subprocess.Popen(train_command(2, *args, restarts=1), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "last_state.pt").exists() and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.05)
        workers = children(launcher.pid)
        assert launcher.poll() is None and len(workers) == 2, "the run ended before a worker could be killed"
        os.kill(max(workers), signal.SIGKILL)  # mid-epoch: the first state was just saved
        _, stderr = launcher.communicate(timeout=300)
    finally:
        kill_if_running(launcher)
    assert launcher.returncode == 0, stderr[-3000:]
    assert "resuming from" in stderr  # the restarted workers continued from the saved state
    final = state(out)
    assert (final["step"], final["epoch"]) == (48, 4) and [h["step"] for h in final["history"]] == [12, 24, 36, 48]
    assert leftovers(out) == []
    torch.load(out / "handwriting_recognizer_best.pth", weights_only=True)  # intact
    assert json.loads((out / "history.json").read_text())[-1]["step"] == 48


def test_leftovers_of_a_killed_write_are_removed_and_the_file_kept(tmp_path):
    from htr.atomic_file import remove_leftovers

    target = tmp_path / "last_state.pt"
    target.write_bytes(b"saved")
    (tmp_path / ".last_state.pt.k3j2.tmp").write_bytes(b"half")
    (tmp_path / ".other.pt.x1.tmp").write_bytes(b"not ours")
    remove_leftovers(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.x1.tmp", "last_state.pt"]
    assert target.read_bytes() == b"saved"
