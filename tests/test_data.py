import datasets
import pytest

from htr.alphabet import Alphabet
from htr.batching import bucketed_batches, weighted_epoch
from htr.data import DatasetSourceError, LineDataset, carve_validation, load_splits, load_training_data
from tests.conftest import png_bytes, random_texts, render_line


def assert_lines(split: datasets.Dataset, texts: list[str]) -> None:
    assert list(split["text"]) == texts
    assert split.features["image"] == datasets.Image(decode=False)


def test_parquet_folder_and_file(parquet_dataset):
    splits = load_splits(str(parquet_dataset))
    assert sorted(splits) == ["test", "train", "validation"]
    assert_lines(splits["validation"], random_texts(12, 1))
    single = load_splits(str(parquet_dataset / "train.parquet"), val_fraction=0.25)
    assert sorted(single) == ["train", "validation"]
    assert len(single["train"]) + len(single["validation"]) == 48


def test_save_to_disk_folder(parquet_dataset, tmp_path):
    original = load_splits(str(parquet_dataset))
    datasets.load_dataset("parquet", data_files={"train": str(parquet_dataset / "train.parquet")}).save_to_disk(
        str(tmp_path / "saved")
    )
    splits = load_splits(str(tmp_path / "saved"), val_fraction=0.25)
    assert len(splits["train"]) + len(splits["validation"]) == len(original["train"])


def test_iam_official_layout(tmp_path):
    texts = ["A|MOVE|to", "stop|Mr.|Gaitskell", "from|nominating", "any|more"]
    statuses = ["ok", "err", "ok", "ok"]
    ids = ["a01-000u-00", "a01-000u-01", "a01-000u-02", "a01-001u-00"]
    (tmp_path / "ascii").mkdir()
    header = "# iam database line information\n#\n"
    rows = [f"{i} {s} 154 19 408 746 1661 89 {t}" for i, s, t in zip(ids, statuses, texts)]
    (tmp_path / "ascii" / "lines.txt").write_text(header + "\n".join(rows) + "\n")
    for line_id in ids:
        form = line_id.rsplit("-", 1)[0]
        folder = tmp_path / "lines" / form.split("-")[0] / form
        folder.mkdir(parents=True, exist_ok=True)
        render_line(line_id).save(folder / f"{line_id}.png")
    ok_only = load_splits(str(tmp_path), val_fraction=0.5)
    all_texts = list(ok_only["train"]["text"]) + list(ok_only["validation"]["text"])
    assert sorted(all_texts) == sorted(["A MOVE to", "from nominating", "any more"])
    # lines of one form stay together
    assert {"A MOVE to", "from nominating"} <= set(list(ok_only["train"]["text"])) or {
        "A MOVE to", "from nominating"} <= set(list(ok_only["validation"]["text"]))  # fmt: skip
    with_err = load_splits(str(tmp_path), iam_keep_err=True)
    assert len(with_err["train"]) + len(with_err["validation"]) == 4


def test_labels_tsv_folder(tmp_path):
    texts = random_texts(6)
    for i, text in enumerate(texts):
        render_line(text).save(tmp_path / f"{i}.png")
    rows = ["file\ttext"] + [f"{i}.png\t{t}" for i, t in enumerate(texts)]
    (tmp_path / "labels.tsv").write_text("\n".join(rows) + "\n")
    splits = load_splits(str(tmp_path), val_fraction=0.34)
    assert sorted(list(splits["train"]["text"]) + list(splits["validation"]["text"])) == sorted(texts)
    assert len(splits["validation"]) == 2


def test_carved_validation_is_deterministic(parquet_dataset):
    train = load_splits(str(parquet_dataset))["train"]
    a = carve_validation(train, 0.25, seed=0)
    b = carve_validation(train, 0.25, seed=0)
    assert list(a[1]["text"]) == list(b[1]["text"]) and len(a[1]) == 12
    assert list(carve_validation(train, 0.25, seed=1)[1]["text"]) != list(a[1]["text"])


def test_unreachable_hub_says_how_to_use_a_local_copy(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at import: the libraries already imported are told directly
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetSourceError, match="local copy"):
        load_splits("no-such-user/no-such-dataset-htr")


def test_missing_local_path_is_reported(tmp_path):
    with pytest.raises(DatasetSourceError, match="no such dataset"):
        load_splits(str(tmp_path / "nothing" / "here"))
    with pytest.raises(DatasetSourceError, match="holds no dataset"):
        load_splits(str(tmp_path))


def test_bad_rows_are_skipped_and_counted(caplog):
    texts = ["good line", "", "has X unknown", "this label is far too long for its tiny image", "broken"]
    images = [render_line(t or "x") for t in texts]
    images[3] = images[3].resize((12, 20))
    cells = [{"bytes": png_bytes(im), "path": None} for im in images]
    cells[4] = {"bytes": b"not an image", "path": None}
    split = datasets.Dataset.from_dict({"image": cells, "text": texts}).cast_column(
        "image", datasets.Image(decode=False)
    )
    alphabet = Alphabet.from_texts(["good line this label is far too long for its tiny image broken"])
    dataset = LineDataset(split, alphabet, 64, lambda w: w // 4, "train")
    assert dataset.texts == ["good line"]
    assert "skipped 4 of 5 rows" in caplog.text and "1 characters outside the alphabet" in caplog.text
    assert "1 unreadable image" in caplog.text and "1 label too long" in caplog.text
    evaluation = LineDataset(split, alphabet, 64, lambda w: w // 4, "validation", for_training=False)
    assert len(evaluation) == 3  # evaluation keeps lines the model cannot fully read: they count as errors


def test_bucketed_batches_cover_every_line_once():
    widths = [50, 400, 60, 410, 55, 390, 70, 380]
    batches = bucketed_batches(widths, 4, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert batches == bucketed_batches(widths, 4, seed=3)
    assert bucketed_batches(widths, 4, seed=None) == [[0, 4, 2, 6], [7, 5, 1, 3]]


def test_weighted_epoch_takes_a_multiple_of_each_dataset():
    assert weighted_epoch([3, 2], [1, 1], seed=0) == [0, 1, 2, 3, 4]  # plain concatenation, in order
    indices = weighted_epoch([4, 10], [2, 0.5], seed=5)
    assert indices[:8] == [0, 1, 2, 3, 0, 1, 2, 3]  # the first dataset twice
    rest = indices[8:]
    assert len(rest) == 5 and len(set(rest)) == 5 and all(4 <= i < 14 for i in rest)  # half of the second
    assert weighted_epoch([4, 10], [2, 0.5], seed=5) == indices and weighted_epoch([4, 10], [2, 0.5], seed=6) != indices
    assert weighted_epoch([4, 10], [0, 1.5], seed=0).count(4) in (1, 2)
    with pytest.raises(ValueError, match=">= 0"):
        weighted_epoch([4], [-1], seed=0)


def test_several_training_sources(parquet_dataset, tmp_path):
    extra = tmp_path / "extra.parquet"  # a train-only source, like iam-more
    datasets.Dataset.from_dict({"image": [{"bytes": png_bytes(render_line("extra line")), "path": None}] * 3,
                                "text": ["extra line"] * 3}).to_parquet(str(extra))  # fmt: skip
    trains, validation = load_training_data([str(parquet_dataset), str(extra)])
    assert [len(t) for t in trains] == [48, 3]  # nothing carved from the second source
    assert list(validation["text"]) == list(load_splits(str(parquet_dataset))["validation"]["text"])
    trains, validation = load_training_data([str(extra), str(parquet_dataset)], val_source=str(parquet_dataset))
    assert [len(t) for t in trains] == [3, 48] and len(validation) == 12
    trains, validation = load_training_data([str(parquet_dataset / "train.parquet")], val_fraction=0.25)
    assert len(trains[0]) + len(validation) == 48 and len(validation) == 12  # the only source: carved


def test_photo_share_draws_that_share_of_lines_as_phone_photos_of_themselves():
    import torch

    texts = random_texts(6, 5)
    cells = [{"bytes": png_bytes(render_line(t)), "path": None} for t in texts]
    split = datasets.Dataset.from_dict({"image": cells, "text": texts})
    split = split.cast_column("image", datasets.Image(decode=False))
    alphabet = Alphabet.from_texts(texts)
    plain = LineDataset(split, alphabet, 64, lambda w: w // 4, "train")
    assert plain.photos == []  # nothing rendered without photo_share
    lines = LineDataset(split, alphabet, 64, lambda w: w // 4, "train", photo_share=0.5)
    assert len(lines.photos) == len(lines) == 6
    for k in range(6):  # a photo is its line shaded, faded and re-framed, not the clean line again
        assert not torch.equal(lines.photos[k], lines.images[k])
        assert lines[k][1:] == plain[k][1:]  # same label and text either way
    torch.manual_seed(0)
    draws = [any(torch.equal(lines[k][0], p.float() / 255) for p in lines.photos[k : k + 1]) for k in [0] * 400]
    assert 0.4 < sum(draws) / len(draws) < 0.6
    torch.manual_seed(0)  # torch's generator decides, so a resumed run (which restores it) draws the same
    assert draws == [torch.equal(lines[0][0], lines.photos[0].float() / 255) for _ in range(400)]


def test_a_photo_too_narrow_for_its_label_is_replaced_by_the_clean_line():
    text = "narrow"
    cell = {"bytes": png_bytes(render_line(text)), "path": None}
    split = datasets.Dataset.from_dict({"image": [cell], "text": [text]})
    frames = iter([100, 0])  # the clean line (asked first) has frames enough for its label, its photo none
    lines = LineDataset(split.cast_column("image", datasets.Image(decode=False)), Alphabet.from_texts([text]), 64,
                        lambda width: next(frames), "train", photo_share=1.0)  # fmt: skip
    assert len(lines) == 1 and lines.photos[0] is lines.images[0]
