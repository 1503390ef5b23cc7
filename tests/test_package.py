"""The package: the ``htr`` command and its subcommands, the default model found in one place, nothing at old paths."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from htr import shipped
from htr.cli import COMMANDS
from tests.conftest import side_by_side

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*.png"))


def run(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_htr_read_prints_what_predict_py_prints():
    by_script = run(sys.executable, "predict.py", "--decoder", "greedy", *EXAMPLES)
    by_command = run(sys.executable, "-m", "htr.cli", "read", "--decoder", "greedy", *EXAMPLES)
    assert by_script.returncode == by_command.returncode == 0, by_command.stderr
    assert by_command.stdout == by_script.stdout and len(by_script.stdout.splitlines()) == len(EXAMPLES)


def test_every_subcommand_answers_help_and_an_unknown_one_is_refused():
    helped = dict(zip(COMMANDS, side_by_side(lambda name: run(sys.executable, "-m", "htr.cli", name, "--help"),
                                             COMMANDS)))  # fmt: skip
    for name, answer in helped.items():
        assert answer.returncode == 0 and answer.stdout.startswith("usage:"), (name, answer.stderr)
    unknown = run(sys.executable, "-m", "htr.cli", "tarin")
    assert unknown.returncode == 2 and "unknown command 'tarin'" in unknown.stderr and "train" in unknown.stderr


@pytest.mark.skipif(shutil.which("htr") is None, reason="the htr command is not installed (pip install -e .)")
def test_the_installed_command_reads_the_examples_from_another_folder(tmp_path):
    read = run("htr", "read", "--decoder", "greedy", *EXAMPLES, cwd=tmp_path)
    assert read.returncode == 0, read.stderr
    assert read.stdout == run(sys.executable, "predict.py", "--decoder", "greedy", *EXAMPLES).stdout


def test_the_default_model_is_the_checkouts_and_htr_checkpoint_overrides_it(monkeypatch, tmp_path):
    monkeypatch.delenv("HTR_CHECKPOINT", raising=False)
    assert Path(shipped.default_checkpoint()) == ROOT / "handwriting_recognizer_best.pth"
    assert shipped.default_line_finder() == ROOT / "line_finder.pt"
    monkeypatch.setenv("HTR_CHECKPOINT", str(tmp_path / "mine.pth"))
    assert shipped.default_checkpoint() == str(tmp_path / "mine.pth")
    missing = run(
        sys.executable, "predict.py", EXAMPLES[0], env={**os.environ, "HTR_CHECKPOINT": str(tmp_path / "mine.pth")}
    )
    assert missing.returncode == 2 and "mine.pth" in missing.stderr and missing.stderr.count("\n") == 1


def test_the_old_module_names_and_their_import_hook_are_gone():
    import htr

    assert not hasattr(htr, "MOVED")
    old = ["preprocess", "decode", "segment", "line_finder", "render", "augment", "distributed"]
    assert not [name for name in old if (ROOT / "htr" / f"{name}.py").exists()]


def test_the_import_layers_hold():
    """pyproject.toml's import-linter contracts: reading and pages below inference, the htr command on top, nothing
    in the library importing the command line."""
    linted = run(shutil.which("lint-imports") or "lint-imports")
    assert linted.returncode == 0 and "0 broken" in linted.stdout, linted.stdout[-2000:]


def test_no_module_of_htr_imports_itself_through_others():
    """No import circle between htr's modules, counting imports inside functions (grimp, import-linter's graph)."""
    import grimp

    graph = grimp.build_graph("htr")
    circles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back and imported != module:
                circles.append((module, *back))
    assert circles == []
