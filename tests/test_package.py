"""The package's layout: modules that moved into subpackages still import under their old names."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from htr import MOVED

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_name_is_the_moved_module(old):
    module = importlib.import_module(f"htr.{old}")
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old] and module.__name__ == MOVED[old]


def test_old_from_imports_work_in_a_fresh_process():
    code = (
        "from htr.segment import segment_page; from htr.pages.segment import segment_page as moved; "
        "from htr.render import compose_page; import htr.decode; assert segment_page is moved; print('ok')"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_no_module_is_left_at_an_old_path():
    assert not [old for old in MOVED if (ROOT / "htr" / f"{old}.py").exists()]
    assert all((ROOT / "htr" / MOVED[old].split(".")[1] / f"{old}.py").exists() for old in MOVED)
