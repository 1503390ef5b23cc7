"""Thread counts that follow the cores other processes leave free."""

import subprocess
import sys
import time

import pytest
import torch

from htr import cpu_share
from htr.cpu_share import CpuShare


class FakeClock:
    """Machine-wide and own busy CPU seconds, and the wall clock, moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall = self.machine = self.own = 0.0
        monkeypatch.setattr(cpu_share, "_machine_busy_seconds", lambda: self.machine)
        monkeypatch.setattr(cpu_share, "_own_busy_seconds", lambda: self.own)
        monkeypatch.setattr(cpu_share.time, "monotonic", lambda: self.wall)
        monkeypatch.setattr(cpu_share, "usable_cores", lambda: 4)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def advance(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.wall += seconds
        self.own += seconds * own_cores
        self.machine += seconds * (own_cores + other_cores)


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_threads_follow_the_free_cores(monkeypatch, restore_threads):
    clock = FakeClock(monkeypatch)
    share = CpuShare(max_threads=4, period=10)
    clock.advance(10, own_cores=4, other_cores=0)  # alone: every core
    assert share.update() == 4 and torch.get_num_threads() == 4
    clock.advance(5, own_cores=2, other_cores=2)
    assert share.update() == 4  # within the period: no new measurement
    clock.advance(5, own_cores=1.2, other_cores=2.8)
    assert share.update() == 2 and torch.get_num_threads() == 2  # over the 10 s: others used 2.4 cores
    clock.advance(10, own_cores=1.2, other_cores=2.8)
    assert share.update() == 1 and torch.get_num_threads() == 1  # 4 - 2.8 cores: 1 left
    clock.advance(10, own_cores=1, other_cores=1.4)
    assert share.update() == 3  # 4 - 1.4 rounds to 3
    clock.advance(10, own_cores=1, other_cores=6)  # more busy processes than cores: still one thread
    assert share.update() == 1
    clock.advance(10, own_cores=1, other_cores=0)  # the others finished: back to every core
    assert share.update() == 4 and torch.get_num_threads() == 4


def test_user_thread_setting_and_missing_proc_stat_change_nothing(monkeypatch, restore_threads):
    clock = FakeClock(monkeypatch)
    torch.set_num_threads(3)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    share = CpuShare(period=1)
    clock.advance(5, own_cores=1, other_cores=3.5)
    assert share.update() is None and share.settle() == 3 and torch.get_num_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(cpu_share, "_machine_busy_seconds", lambda: None)  # not Linux
    share = CpuShare(period=1)
    clock.advance(5, own_cores=1, other_cores=3.5)
    assert share.settle() == 3 and torch.get_num_threads() == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_real_busy_process_is_seen():
    share = CpuShare()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)
        others = share.others_busy_cores()
    finally:
        spinner.kill()
        spinner.wait()
    assert others is not None and others >= 0.5  # one spinning process holds about one core
