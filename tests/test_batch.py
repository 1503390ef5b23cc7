"""htr batch: an output per image and a summary, broken images as rows, re-runs, SIGKILL, shards, and Ray."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import random_texts, render_line
from tests.exports import page_of_lines

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ["box1/empty.png", "box2/sub/garbage.jpg", "box2/huge.png"]


def write_collection(folder: Path, lines: int = 20, pages: int = 2) -> list[str]:
    """Line images and pages of rendered text in a folder tree, and three broken images; their relative paths."""
    names = []
    for k, text in enumerate(random_texts(lines, seed=3)):
        name = f"box{1 + k % 2}/{'sub/' if k % 3 == 0 else ''}line{k:02d}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        render_line(text).save(folder / name)
        names.append(name)
    for k in range(pages):
        image, _ = page_of_lines(random_texts(4, seed=10 + k))
        image.convert("L").save(folder / f"page{k}.jpg", quality=90)
        names.append(f"page{k}.jpg")
    (folder / BROKEN[0]).write_bytes(b"")
    (folder / BROKEN[1]).write_bytes(np.random.default_rng(0).bytes(3000))
    Image.new("1", (9000, 9000)).save(folder / BROKEN[2])  # 81 megapixels: refused from its header
    (folder / "notes.txt").write_text("not an image: not an input")
    return names + BROKEN


def batch(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "htr.batch", *args, "--decoder", "greedy"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.json"))}


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("collection")
    return folder, write_collection(folder)


@pytest.fixture(scope="module")
def uninterrupted(collection, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("read")
    result = batch(str(collection[0]), "--output", str(out))
    assert result.returncode == 1, result.stderr  # some images failed
    return out


def test_every_image_gets_an_output_and_a_summary_row_and_broken_ones_an_error(collection, uninterrupted):
    folder, names = collection
    written = outputs(uninterrupted)
    assert sorted(written) == sorted(str(Path(n).with_suffix(".json")) for n in names if n not in BROKEN)
    rows = [json.loads(line) for line in (uninterrupted / "summary.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(str(folder / n) for n in names)  # notes.txt is no input
    errors = {Path(r["path"]).relative_to(folder).as_posix(): r["error"] for r in rows if r["status"] == "error"}
    assert set(errors) == set(BROKEN)
    assert errors["box1/empty.png"] == "empty file" and "too large" in errors["box2/huge.png"]
    page = json.loads(written["page0.json"])
    assert len(page["lines"]) >= 2 and all(line["words"] for line in page["lines"])  # split into lines
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["lines"] >= 1 and 0 < r["confidence"] <= 1 and r["seconds"] > 0 for r in ok)


def test_a_second_run_reads_nothing_new(collection, uninterrupted):
    before = {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*.json")}
    result = batch(str(collection[0]), "--output", str(uninterrupted))
    assert "read 0, skipped 22 (done before), failed 3" in result.stdout, result.stdout + result.stderr
    assert {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*.json")} == before


def test_a_run_killed_halfway_and_run_again_ends_as_an_uninterrupted_one(collection, uninterrupted, tmp_path):
    command = [sys.executable, "-m", "htr.batch", str(collection[0]), "--output", str(tmp_path), "--decoder",
               "greedy"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(tmp_path.rglob("*.json"))) < 6 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    done_when_killed = len(list(tmp_path.rglob("*.json")))
    assert 0 < done_when_killed < 22  # killed halfway, not after the end
    result = batch(str(collection[0]), "--output", str(tmp_path))
    assert f"skipped {done_when_killed} (done before)" in result.stdout, result.stdout + result.stderr
    assert outputs(tmp_path) == outputs(uninterrupted)


def test_shards_cover_every_input_exactly_once(collection, tmp_path):
    from htr.batch import BatchConfig, Counts, pending

    folder, names = collection
    taken = []
    for index in range(3):
        listed = []
        cfg = BatchConfig(inputs=str(folder), output=str(tmp_path), shard=(index, 3))
        taken += [item.source for item, _ in pending(cfg, Counts(), listed)]
        assert len(listed) < len(names)  # each shard has a share, not all
    assert sorted(taken) == sorted(str(folder / n) for n in names)


def test_manifest_glob_and_parquet_inputs_name_outputs_alike(collection, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from htr.batch import iter_inputs

    folder, names = collection
    (folder / "manifest.txt").write_text("# the lines\n" + "\n".join(n for n in names if "line" in n) + "\n")
    from_manifest = [item.key for item in iter_inputs(str(folder / "manifest.txt"))]
    assert from_manifest == [n for n in names if "line" in n]
    from_glob = sorted(item.key for item in iter_inputs(str(folder) + "/**/line*.png"))
    assert from_glob == sorted(n for n in names if "line" in n)
    table = pa.table({"id": ["a/one", "b/two"], "image": [(folder / names[0]).read_bytes(), b"broken"]})
    pq.write_table(table, tmp_path / "images.parquet")
    items = list(iter_inputs(str(tmp_path / "images.parquet")))
    assert [(i.key, i.data is not None) for i in items] == [("a/one", True), ("b/two", True)]


def test_each_page_of_a_pdf_is_an_input_of_its_own_in_both_engines(tmp_path):
    from htr.batch import BatchConfig, Counts, pending
    from htr.batch.ray_engine import _parts, decode_images

    scans = tmp_path / "scans"
    scans.mkdir()
    pages = [render_line(text).convert("RGB") for text in ("one", "a second and longer page")]
    pages[0].save(scans / "letter.pdf", save_all=True, append_images=pages[1:])
    render_line("three").save(scans / "line.png")
    result = batch(str(scans), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert sorted(outputs(tmp_path / "out")) == ["letter-page1.json", "letter-page2.json", "line.json"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "summary.jsonl").read_text().splitlines()]
    pdf = scans / "letter.pdf"
    assert sorted(r["path"] for r in rows) == [f"{pdf}#page=1", f"{pdf}#page=2", str(scans / "line.png")]
    assert all(r["status"] == "ok" for r in rows)
    (part,) = _parts(pending(BatchConfig(inputs=str(scans), output=str(tmp_path / "ray")), Counts(), []))
    decoded = decode_images({name: [row[name] for row in part] for name in part[0]})  # as a Ray task gets them
    assert decoded["error"] == ["", "", ""] and decoded["page"] == [0, 1, -1]
    assert decoded["image"][0].width < decoded["image"][1].width  # page 2 is its own page, not page 1 again


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'htr[ray]'): Ray tests skipped")
    pids = tmp_path_factory.mktemp("actor-pids")
    os.environ["HTR_BATCH_PID_FOLDER"] = str(pids)  # inherited by the workers of the Ray started below
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield pids
    ray.shutdown()
    del os.environ["HTR_BATCH_PID_FOLDER"]


def ray_config(inputs: Path, output: Path):
    from htr.batch import BatchConfig
    from htr.shipped import default_checkpoint

    return BatchConfig(inputs=str(inputs), output=str(output), checkpoint=default_checkpoint(), engine="ray",
                       actors=2, decoder={"decoder": "greedy"})  # fmt: skip


def test_ray_reads_as_the_local_run_does(ray_local, collection, uninterrupted, tmp_path):
    from htr.batch import run

    counts, summary = run(ray_config(collection[0], tmp_path))
    assert (counts.read, counts.failed) == (22, 3)
    assert outputs(tmp_path) == outputs(uninterrupted)
    assert len(summary.read_text().splitlines()) == 25

    def reasons(path: Path) -> dict:
        return {r["path"]: r["error"] for r in map(json.loads, path.read_text().splitlines()) if r["status"] == "error"}

    assert reasons(summary) == reasons(uninterrupted / "summary.jsonl")  # decoded in Ray tasks, the same reasons


def test_ray_finishes_when_an_actor_is_killed(ray_local, tmp_path):
    from htr.batch import run

    folder = tmp_path / "lines"
    for k, text in enumerate(random_texts(40, seed=7)):
        (folder / f"{k:02d}.png").parent.mkdir(exist_ok=True)
        render_line(text).save(folder / f"{k:02d}.png")
    for old in ray_local.iterdir():
        old.unlink()
    killed: list[int] = []

    def actor_pid() -> int | None:  # a file the actor has created may not hold its pid yet
        return next((int(text) for path in ray_local.glob("*.pid") if (text := path.read_text().strip())), None)

    def kill_one_actor() -> None:
        deadline = time.monotonic() + 300
        while (pid := actor_pid()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    counts, _ = run(ray_config(folder, tmp_path / "read"))
    killer.join()
    assert killed and counts.read == 40 and counts.failed == 0
    assert len(list((tmp_path / "read").glob("*.json"))) == 40
