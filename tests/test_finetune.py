"""htr finetune: from a PAGE or ALTO export made here to a model folder and a report; the time budget; refusals."""

import json
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest

from tests.conftest import random_texts, render_line
from tests.exports import alto_xml, page_of_lines, page_xml

ROOT = Path(__file__).resolve().parents[1]
BASE_ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # no '&': the export teaches it
TINY = {"stem_channels": 8, "cnn": ["M", [1, 16], "Mh", [1, 24], "Mh", [1, 32]], "rnn_hidden": 32, "rnn_layers": 1}
QUICK = {"epochs": 2, "lines_per_epoch": 24, "warmup_steps": 2, "lr": 3e-3, "patience": 0}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny untrained model with a character LM, saved as a .pth."""
    from htr.alphabet import Alphabet
    from htr.checkpoint import atomic_save, model_checkpoint
    from htr.lm import build_lm
    from htr.model import CRNN, ModelConfig

    alphabet = Alphabet(BASE_ALPHABET)
    model = CRNN(ModelConfig(num_classes=alphabet.num_classes, **TINY))
    path = tmp_path_factory.mktemp("base") / "base.pth"
    atomic_save(model_checkpoint(model, alphabet, lm=build_lm(random_texts(200, seed=5), 4)), path)
    return path


def write_export(folder: Path, fmt: str, pages: int = 6, with_text: bool = True, images: bool = True) -> list[str]:
    """``pages`` pages of 3 rendered lines each, as PAGE files beside their images (Transkribus: in page/) or as
    ALTO files (eScriptorium); every page has a line with '&'. Returns the texts."""
    written = []
    (folder / "page").mkdir(parents=True)
    for k in range(pages):
        texts = [*random_texts(2, seed=k), "he & she"]
        image, boxes = page_of_lines(texts)
        if images:
            image.save(folder / f"p{k}.png")
        if fmt == "page":
            polygons = [[(a, b), (c - 1, b), (c - 1, d - 1), (a, d - 1)] for a, b, c, d in boxes]
            lines = [(polygon, escape(text) if with_text else None) for polygon, text in zip(polygons, texts)]
            xml = page_xml(f"p{k}.png", image.size, [("r1", lines)])
        else:
            xml = alto_xml(f"p{k}.png", image.size, [(box, escape(text).split() if with_text else []) for box, text
                                                     in zip(boxes, texts)])  # fmt: skip
        (folder / "page" / f"p{k}.xml").write_text(xml, encoding="utf-8")
        written += texts
    return written


def run_finetune(data: Path, output: Path, base: Path, **options):
    from htr.finetune import FinetuneConfig, finetune

    choices = {**QUICK, **options.pop("choices", {})}
    cfg = FinetuneConfig(data=str(data), output=str(output), base=str(base), decoder="greedy", int8=False,
                         val_fraction=0.34, choices=choices, **options)  # fmt: skip
    return finetune(cfg, progress=False)


@pytest.mark.parametrize("fmt", ["page", "alto"])
def test_an_export_becomes_a_model_folder_that_knows_its_new_character(fmt, base, tmp_path):
    from htr.checkpoint import read_checkpoint
    from htr.data import load_splits
    from htr.finetune import plan

    write_export(tmp_path / "export", fmt)
    report = run_finetune(tmp_path / "export", tmp_path / "out", base)
    data = load_splits(str(tmp_path / "out" / "data"))
    assert report["new characters"] == {"&": sum(t.count("&") for t in data["train"]["text"])} == {"&": 4}
    model = read_checkpoint(tmp_path / "out" / "model")
    assert model["alphabet"] == BASE_ALPHABET + "&"
    assert model["state_dict"]["head.weight"].shape[0] == len(BASE_ALPHABET) + 2
    planned_dropout = plan(12)["dropout"].value
    assert model["model_config"]["dropout"] == planned_dropout != read_checkpoint(base)["model_config"]["dropout"]
    assert (tmp_path / "out" / "model" / "model.onnx").is_file()
    assert model["lm"] is not None and 0 < report["language model"]["weight"] < 1
    held_out, trained = set(data["validation"]["group"]), set(data["train"]["group"])
    assert len(held_out) == 2 and len(trained) == 4 and not held_out & trained  # whole pages on each side
    assert report["training lines"] == 12 and report["validation lines"] == 6
    assert set(report["before"]) == {"cer", "wer", "lines", "decoder"} and report["after"]["lines"] == 6
    card = (tmp_path / "out" / "model" / "README.md").read_text()
    assert "Fine-tuned from `base.pth`" in card and "12 training lines" in card
    assert "| before |" in (tmp_path / "out" / "report.md").read_text()
    if fmt == "page":  # the demo reads with the folder (its ONNX export), new character included
        from htr.demo import DemoReader

        reader = DemoReader(tmp_path / "out" / "model", device="cpu")
        assert reader.recognizer.runtime == "onnxruntime" and reader.recognizer.alphabet.chars.endswith("&")
        assert isinstance(reader.read(render_line("he & she")).text, str)


def test_a_rerun_resumes_and_reuses_the_data_and_the_first_evaluation(base, tmp_path):
    write_export(tmp_path / "export", "page")
    first = run_finetune(tmp_path / "export", tmp_path / "out", base)
    before = (tmp_path / "out" / "before.json").stat().st_mtime_ns
    again = run_finetune(tmp_path / "export", tmp_path / "out", base, choices={"epochs": 3})
    assert (tmp_path / "out" / "before.json").stat().st_mtime_ns == before
    history = json.loads((tmp_path / "out" / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]  # two epochs kept, one more trained
    assert first["steps"] < again["steps"]
    with pytest.raises(ValueError, match="other data or settings"):
        run_finetune(tmp_path / "export", tmp_path / "out", base, max_lines=5)


def test_the_time_budget_stops_and_saves_and_a_larger_one_goes_on(parquet_dataset, tmp_path):
    import torch

    from htr.model import ModelConfig
    from htr.train import STATE_NAME, TrainConfig, train

    def config(minutes: float) -> TrainConfig:
        return TrainConfig(dataset=[str(parquet_dataset)], output_dir=str(tmp_path), epochs=50, batch_size=4,
                           max_minutes=minutes, lm_order=0, warmup_steps=2, seed=0, share_cpu=False,
                           model=ModelConfig(num_classes=0, **TINY))  # fmt: skip

    first = train(config(0.05), progress=False)
    state = torch.load(tmp_path / STATE_NAME, weights_only=True)
    assert 0 < len(first["history"]) < 50  # stopped by the clock, not by the epochs
    assert state["train_seconds"] + state["val_seconds"] >= 0.05 * 60 * 0.5
    assert first["best_path"].is_file()
    second = train(config(0.1), progress=False)
    assert second["history"][: len(first["history"])] == first["history"]  # resumed, not restarted
    assert len(first["history"]) < len(second["history"]) < 50


def test_rehearsal_mixes_the_other_hands_into_each_epoch_and_reads_them_before_and_after(base, tmp_path):
    import datasets
    import torch

    from htr.checkpoint import read_checkpoint
    from htr.train import STATE_NAME
    from tests.conftest import png_bytes

    parquet_dataset = tmp_path / "other-hands"  # 48 train and 12 validation lines, every one ending in '!'
    parquet_dataset.mkdir()
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    for split, count in (("train", 48), ("validation", 12)):
        texts = [text + "!" for text in random_texts(count, seed=count)]
        rows = {"image": [{"bytes": png_bytes(render_line(t)), "path": None} for t in texts], "text": texts}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(parquet_dataset / f"{split}.parquet"))
    write_export(tmp_path / "export", "page")
    report = run_finetune(tmp_path / "export", tmp_path / "out", base, rehearse=[str(parquet_dataset)],
                          rehearse_share=0.25)  # fmt: skip
    trained = torch.load(tmp_path / "out" / "run" / STATE_NAME, weights_only=False)["config"]
    assert trained["dataset"] == [str(tmp_path / "out" / "data"), str(parquet_dataset)]
    own, other = trained["dataset_weights"]  # 24 lines an epoch: 18 of the 12 transcribed, 6 of the 48 rehearsed
    assert own * 12 == pytest.approx(18) and other * 48 == pytest.approx(6)
    rehearsed = report["rehearsal"]["datasets"]["other-hands"]  # named by the folder, as records name datasets
    assert report["rehearsal"]["share"] == 0.25 and rehearsed["training lines"] == 48
    assert rehearsed["before"]["lines"] == rehearsed["after"]["lines"] == 12  # its validation split, read twice
    assert report["validation lines"] == 6  # validation (and the best model) stays the collection's
    assert (tmp_path / "out" / "rehearsal-before.json").is_file()
    assert "## Rehearsal" in (tmp_path / "out" / "report.md").read_text()
    card = (tmp_path / "out" / "model" / "README.md").read_text()  # its licence and before/after, and its result
    assert "`other-hands` (48 line images and transcriptions, rehearsed in the fine-tune: 25% of each" in card
    assert "Rehearsed during the fine-tune, so that it keeps reading them: `other-hands`" in card
    assert "| other-hands | validation | 12 |" in card
    learned = set(read_checkpoint(tmp_path / "out" / "model")["alphabet"]) - set(BASE_ALPHABET)
    assert learned == set(report["new characters"]) == {"&", "!"}  # the rehearsed texts' characters are named too
    with pytest.raises(ValueError, match="rehearse-share"):
        run_finetune(tmp_path / "export", tmp_path / "out2", base, rehearse=[str(parquet_dataset)],
                     rehearse_share=1.0)  # fmt: skip


def test_lr_schedule_ends_where_the_time_budget_ends():
    from htr.train import TrainConfig, lr_factor

    cfg = TrainConfig(warmup_steps=10, min_lr_ratio=0.05)
    assert lr_factor(50, cfg, 10_000) > 0.99  # by steps: hardly begun
    assert lr_factor(50, cfg, 10_000, budget_spent=0.5) == pytest.approx(0.525)  # halfway by the clock
    assert lr_factor(50, cfg, 10_000, budget_spent=1.2) == pytest.approx(0.05)


def finetune_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "htr.finetune", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.mark.parametrize("problem", ["no text", "no images", "onnx base"])
def test_what_cannot_be_fine_tuned_is_refused_in_one_line(problem, base, tmp_path):
    export = tmp_path / "export"
    write_export(export, "page", pages=3, with_text=problem != "no text", images=problem != "no images")
    model = str(base)
    if problem == "onnx base":
        model = str(tmp_path / "model.onnx")
        Path(model).write_bytes(b"\x08\x07onnx")
    result = finetune_command(str(export), "--output", str(tmp_path / "out"), "--base", model)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]  # besides progress and logs
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    expected = {"no text": "no line with text", "no images": "not found", "onnx base": "model.onnx"}[problem]
    assert expected in errors[0]


def test_interpolated_lm_is_a_distribution_between_its_two_models():
    from htr.lm import build_lm, choose_interpolation, interpolate

    letters = build_lm(["my dear hooker & co", "yours ever & truly", "kew & the gardens"], 4)
    modern = build_lm(["the cat sat on the mat", "a dog ran in the park"], 4)
    mixed = interpolate(letters, modern, 0.5)
    assert set(mixed.vocab) == set(letters.vocab) | set(modern.vocab)
    for context in ("\x02", "\x02my d", "the ", "xyz &"):
        assert np.exp(mixed.distribution(context)).sum() == pytest.approx(1.0, abs=1e-6)
    alone = interpolate(letters, modern, 1.0)
    assert alone.logprob("\x02my d", "e") == pytest.approx(letters.logprob("\x02my d", "e"), abs=1e-6)
    weight, perplexities = choose_interpolation(letters, modern, ["dear kew & co"])
    assert weight == 0.9 and perplexities[0.9] < perplexities[0.1]  # text like the letters': their model
    weight, _ = choose_interpolation(letters, modern, ["the dog sat in the park"])
    assert weight == 0.05


def write_mixed_export(folder: Path, pages: int = 6) -> None:
    """``pages`` PAGE files, each with two transcribed lines and one line without text (segmented, not yet
    transcribed, as a Transkribus export holds them)."""
    (folder / "page").mkdir(parents=True)
    for k in range(pages):
        texts = random_texts(3, seed=40 + k)
        image, boxes = page_of_lines(texts)
        image.save(folder / f"p{k}.png")
        polygons = [[(a, b), (c - 1, b), (c - 1, d - 1), (a, d - 1)] for a, b, c, d in boxes]
        lines = [(polygon, escape(text) if i < 2 else None) for i, (polygon, text) in enumerate(zip(polygons, texts))]
        (folder / "page" / f"p{k}.xml").write_text(page_xml(f"p{k}.png", image.size, [("r1", lines)]), "utf-8")


def test_untranscribed_lines_come_from_exports_label_files_and_image_folders(tmp_path):
    from htr.data import load_untranscribed

    write_mixed_export(tmp_path / "export", pages=3)
    assert load_untranscribed(str(tmp_path / "export"))["text"] == ["", "", ""]  # the lines without text only
    every = load_untranscribed(str(tmp_path / "export"), all_lines=True)
    assert len(every) == 9 and set(every["text"]) == {""}  # every line, its text unused
    (tmp_path / "lines").mkdir()
    for k, text in enumerate(random_texts(3, seed=9)):
        render_line(text).save(tmp_path / "lines" / f"{k}.png")
    assert len(load_untranscribed(str(tmp_path / "lines"))) == 3  # images alone: each one a line
    (tmp_path / "lines" / "labels.tsv").write_text("0.png\tsome text\n1.png\t\n2.png\t \n", encoding="utf-8")
    assert len(load_untranscribed(str(tmp_path / "lines"))) == 2  # a labels file: its lines without text
    assert len(load_untranscribed(str(tmp_path / "lines"), all_lines=True)) == 3


def test_most_confident_keeps_the_share_read_most_surely_and_no_empty_reading():
    from htr.inference import Reading
    from htr.training.self_training import most_confident

    readings = {0: Reading("a", 0.2), 2: Reading("b", 0.9), 3: Reading("", 0.99), 5: Reading("c", 0.5),
                7: Reading("d", 0.7), 8: Reading("e", 0.1)}  # fmt: skip
    assert most_confident(readings, 0.5) == [2, 5, 7]  # rows in order; the empty reading is never kept
    assert most_confident(readings, 1.0) == [0, 2, 5, 7, 8]
    with pytest.raises(ValueError, match="share"):
        most_confident(readings, 0)


def test_self_training_reads_the_untranscribed_lines_and_keeps_a_round_only_if_it_reads_better(base, tmp_path):
    from htr.checkpoint import read_checkpoint
    from htr.data import load_splits

    write_mixed_export(tmp_path / "export")
    (tmp_path / "more").mkdir()
    for k, text in enumerate(random_texts(3, seed=11)):
        render_line(text).save(tmp_path / "more" / f"{k}.png")
    (tmp_path / "more" / "broken.png").write_bytes(b"not an image")  # skipped when read, the others still are
    report = run_finetune(tmp_path / "export", tmp_path / "out", base, self_train=2, unlabelled=[tmp_path / "more"],
                          pseudo_share=1.0)  # fmt: skip
    record = report["self-training"]
    data = load_splits(str(tmp_path / "out" / "data"))
    validation_pages = set(data["validation"]["group"])
    assert len(validation_pages) == 2  # so 4 training pages, each with one line without text
    assert record["untranscribed lines"] == 4 + 4  # theirs (not the validation pages') and the folder's 4 files
    first = record["rounds"][0]
    round_data = load_splits(str(tmp_path / "out" / "self-train-1" / "data"))
    pseudo = [row for row in round_data["train"] if row["group"].startswith("pseudo-labelled: ")]
    assert len(round_data["train"]) == len(data["train"]) + first["pseudo-labelled lines"] == 8 + len(pseudo)
    assert len(pseudo) <= 7 and all(row["text"].strip() for row in pseudo)  # the broken file and empty readings out
    assert not any(validation_pages & {row["group"].removeprefix("pseudo-labelled: ") for row in pseudo})
    rounds = record["rounds"]
    assert rounds and all(r["kept"] == (r["cer"] < r["cer before"]) for r in rounds)
    assert all(r["kept"] for r in rounds[:-1]) and (len(rounds) == 2 or not rounds[-1]["kept"])  # stop when no gain
    assert rounds[0]["cer before"] == record["transcribed lines only"]["cer"]
    kept = [r for r in rounds if r["kept"]]
    assert record["model"] == (f"self-training round {kept[-1]['round']}" if kept else "the transcribed lines")
    assert report["after"]["cer"] == min(r["cer"] for r in [record["transcribed lines only"], *kept])
    model = read_checkpoint(tmp_path / "out" / "model")
    assert model["metrics"]["evaluations"][0]["cer"] == report["after"]["cer"]
    assert model["training"]["finetune"]["self-training"]["model"] == record["model"]
    supervised = json.loads((tmp_path / "out" / "run" / "history.json").read_text())
    assert report["epochs"] == len(supervised) + sum(r["epochs"] for r in kept)  # the model's own lineage
    assert report["training minutes"] >= round(sum(r["training minutes"] for r in rounds), 1)
    assert "## Self-training" in (tmp_path / "out" / "report.md").read_text()


def test_the_budget_shares_pay_for_every_reading_and_evaluation_and_end_within_it(monkeypatch):
    from htr import finetune as library
    from htr.finetune import Budget

    clock = [0.0]  # seconds
    monkeypatch.setattr(library.time, "monotonic", lambda: clock[0])
    budget = Budget(minutes=70, start=0.0, evaluation_seconds=60.0, validation_lines=1000)  # an evaluation: a minute
    rounds, lines, reading_per_line = 2, 5000, 0.09  # each reading: 7.5 minutes, as estimated (1.5 x 0.06 s)
    trained = [budget.training_share(rounds + 1, rounds, lines)]
    with_rehearsal = Budget(minutes=70, start=0.0, evaluation_seconds=60.0, validation_lines=1000, end_seconds=150.0)
    assert with_rehearsal.training_share(rounds + 1, rounds, lines) == pytest.approx(trained[0] - 1.2 * 2.5 / 3)
    clock[0] += 60 * (trained[-1] + 1.2)  # the supervised training and its evaluation
    for number in range(1, rounds + 1):
        trainings = rounds - number + 1
        assert budget.training_share(trainings, trainings, lines, reading_per_line) > 0.5
        clock[0] += lines * reading_per_line
        trained.append(budget.training_share(trainings, trainings - 1, lines, reading_per_line))
        clock[0] += 60 * (trained[-1] + 1.2)
    assert trained == pytest.approx([trained[0]] * 3)  # shared evenly when every estimate holds
    assert clock[0] / 60 + 1.0 == pytest.approx(70)  # the end's minute: within the budget, not past it


def test_a_kept_record_is_reused_while_it_holds_and_made_again_when_not(tmp_path):
    from htr.finetune import kept_record

    made = []

    def make(value):
        made.append(value)
        return {"value": value}

    path = tmp_path / "record.json"
    assert kept_record(path, lambda: make(1)) == {"value": 1}
    assert kept_record(path, lambda: make(2)) == {"value": 1}  # a resumed run reuses it
    assert kept_record(path, lambda: make(3), lambda kept: kept["value"] == 3) == {"value": 3}  # no longer holds
    assert made == [1, 3] and json.loads(path.read_text()) == {"value": 3}


def test_a_kept_dataset_is_read_back_for_the_same_source_and_made_again_for_another(tmp_path):
    import datasets

    from htr.finetune import kept_dataset

    made = []

    def make(value):
        made.append(value)
        return datasets.Dataset.from_dict({"text": [value]})

    folder = tmp_path / "data"
    (tmp_path / "data.part").mkdir()  # what a run interrupted while saving left
    (tmp_path / "data.part" / "junk").write_text("half-written")
    assert kept_dataset(folder, {"n": 1}, lambda: make("a"))["text"] == ["a"]
    assert not (tmp_path / "data.part").exists()
    assert kept_dataset(folder, {"n": 1}, lambda: make("b"))["text"] == ["a"]  # a resumed run reads it back
    assert kept_dataset(folder, {"n": 2}, lambda: make("c"))["text"] == ["c"]  # asked for other lines
    assert made == ["a", "c"]
