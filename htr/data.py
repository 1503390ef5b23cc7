"""Loading IAM-style line datasets into train/validation/test splits of (image, text).

Sources (`load_splits`): a Hugging Face hub id (default ``Teklia/IAM-line``), a ``save_to_disk`` folder,
parquet file(s) or a folder of them, IAM's official layout (``ascii/lines.txt`` + ``lines/**.png``), a
folder of images with ``labels.tsv`` (``file<TAB>text``), or a folder of PAGE XML / ALTO files and their page
images (Transkribus, eScriptorium, kraken exports: each text line cut out by its polygon). Every split comes
back as a `datasets.Dataset` with an undecoded ``image`` column (bytes or path) and a ``text`` column.
"""

from __future__ import annotations

import hashlib
import io
import logging
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from htr.alphabet import Alphabet
from htr.reading.preprocess import load_image, pad_batch, preprocess

log = logging.getLogger(__name__)

DEFAULT_DATASET = "Teklia/IAM-line"
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test"}  # fmt: skip


class DatasetSourceError(Exception):
    """A dataset could not be found or read; the message says what to do instead."""


def normalize_text(text: str | None) -> str:
    """Collapse runs of whitespace to single spaces and strip the ends."""
    return " ".join((text or "").split())


def _from_files(paths: list[str], texts: list[str], groups: list[str]) -> datasets.Dataset:
    table = {"image": paths, "text": texts, "group": groups}
    return datasets.Dataset.from_dict(table).cast_column("image", datasets.Image(decode=False))


def _load_iam_folder(root: Path, keep_err: bool) -> datasets.DatasetDict:
    """IAM's official layout; keeps ``ok`` lines (and ``err`` ones if ``keep_err``); ``|`` becomes a space."""
    images = {p.stem: str(p) for p in (root / "lines").rglob("*.png")}
    paths, texts, groups = [], [], []
    for line in (root / "ascii" / "lines.txt").read_text(encoding="utf-8").splitlines():
        fields = line.split(" ")
        if line.startswith("#") or len(fields) < 9:
            continue
        line_id, status = fields[0], fields[1]
        if (status == "ok" or (keep_err and status == "err")) and line_id in images:
            paths.append(images[line_id])
            texts.append(" ".join(fields[8:]).replace("|", " "))
            groups.append(line_id.rsplit("-", 1)[0])  # the form: its lines stay in one split
    return datasets.DatasetDict({"train": _from_files(paths, texts, groups)})


def _load_tsv_folder(root: Path) -> datasets.DatasetDict:
    """A folder with ``labels.tsv``: one ``file<TAB>text`` per line (paths relative to the folder)."""
    paths, texts = [], []
    for number, line in enumerate((root / "labels.tsv").read_text(encoding="utf-8").splitlines(), 1):
        name, tab, text = line.partition("\t")
        if not tab:
            if line.strip():
                log.warning("labels.tsv line %d has no tab; skipped", number)
            continue
        if number == 1 and (name, text) == ("file", "text"):
            continue  # optional header
        paths.append(str(root / name))
        texts.append(text)
    return datasets.DatasetDict({"train": _from_files(paths, texts, paths)})


def _load_layout_folder(root: Path, files: list[Path], lines_kept: str = "text") -> datasets.DatasetDict | None:
    """PAGE XML / ALTO files and their images (`htr.pages.page_xml.find_image`): each text line with text becomes a
    sample, cut out by its polygon (`htr.pages.page_xml.cut_line`; a line drawn as a baseline alone at the page's
    line height, `htr.pages.page_xml.widen_baseline_only_lines`), grouped by page (a page is never split between
    train and validation). Lines without text are skipped and counted; an XML file that cannot be read or whose
    image is missing or broken is skipped with a warning naming it. None when no file is PAGE or ALTO.
    ``lines_kept``: "untranscribed" keeps the lines without text instead (for self-training), "all" every line."""
    from htr.pages.page_xml import NotLayoutFile, cut_line, find_image, read_page
    from htr.reading.preprocess import to_grayscale

    images, texts, groups = [], [], []
    layout_files = pages = without_text = from_baselines = 0
    unreadable: list[str] = []  # pages with text whose image is missing or broken
    for xml_path in tqdm(files, desc=f"cutting lines from {root.name}", leave=False):
        try:
            page = read_page(xml_path)
        except NotLayoutFile:  # METS, Transkribus' metadata.xml, ...
            continue
        except (ET.ParseError, ValueError, OSError) as error:
            log.warning("%s: cannot read it (%s); skipped", xml_path, str(error).splitlines()[0])
            layout_files += 1
            continue
        layout_files += 1
        lines = [line for line in page.lines if lines_kept == "all" or
                 bool(normalize_text(line.text)) == (lines_kept == "text")]  # fmt: skip
        without_text += len(page.lines) - len(lines)
        if not lines:
            continue
        image_path = find_image(xml_path, page.image)
        if image_path is None:
            log.warning("%s: its image %s was not found beside it or in a sibling folder; skipped", xml_path,
                        page.image or f"{xml_path.stem}.*")  # fmt: skip
            unreadable.append(page.image or f"{xml_path.stem}.*")
            continue
        try:
            gray = to_grayscale(load_image(image_path))
        except Exception as error:  # noqa: BLE001 - any decoding problem: name the file, load the others
            log.warning("%s: cannot read its image %s (%s); skipped", xml_path, image_path, error)
            unreadable.append(str(image_path))
            continue
        width, height = page.size or (gray.shape[1], gray.shape[0])  # coordinates are in the stated size
        sx, sy = gray.shape[1] / max(1, width), gray.shape[0] / max(1, height)
        for line in lines:
            crop = cut_line(gray, [(x * sx, y * sy) for x, y in line.polygon])
            if crop is None:
                without_text += 1
                continue
            buffer = io.BytesIO()
            Image.fromarray(crop).save(buffer, format="PNG")
            images.append({"bytes": buffer.getvalue(), "path": None})
            texts.append(line.text if lines_kept == "text" else "")
            from_baselines += line.from_baseline
            groups.append(str(xml_path.relative_to(root)))
        pages += 1
    if not layout_files:
        return None
    skipped = {"text": "without text or outside the image", "untranscribed": "with text or outside the image",
               "all": "outside the image"}[lines_kept]  # fmt: skip
    log.info("%s: %d lines from %d pages (%d lines %s skipped)", root, len(texts), pages, without_text, skipped)
    if from_baselines:
        log.info("%s: %d lines drawn as a baseline alone (a thin band along it) cut out at the page's line height",
                 root, from_baselines)  # fmt: skip
    table = datasets.Dataset.from_dict({"image": images, "text": texts, "group": groups})
    table = table.cast_column("image", datasets.Image(decode=False))
    if lines_kept != "text":
        return datasets.DatasetDict({"train": table})
    if not texts and unreadable:
        raise DatasetSourceError(f"{root}: the images of its {len(unreadable)} pages with text were not found or "
                                 f"could not be read (the first: {unreadable[0]})")  # fmt: skip
    if not texts:
        raise DatasetSourceError(f"{root}: its PAGE/ALTO files have no line with text")
    return datasets.DatasetDict({"train": table})


def _split_name(path: Path) -> str:
    """'train-00000-of-00001.parquet' -> 'train'; unknown names count as train."""
    stem = path.stem.lower()
    for alias, split in SPLIT_ALIASES.items():
        if stem == alias or stem.startswith((alias + "-", alias + "_", alias + ".")):
            return split
    return "train"


def _load_parquet(files: list[Path]) -> datasets.DatasetDict:
    data_files: dict[str, list[str]] = {}
    for file in sorted(files):
        data_files.setdefault(_split_name(file), []).append(str(file))
    return datasets.load_dataset("parquet", data_files=data_files)


def _load_hub(name: str) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(name)
    except Exception as error:
        raise DatasetSourceError(
            f"could not load '{name}' from the Hugging Face hub ({type(error).__name__}: {error}). "
            "Check the name and your connection; offline, pass a local copy instead: a folder written by "
            "Dataset.save_to_disk, parquet file(s), IAM's folder layout, or a folder of images with labels.tsv."
        ) from None


def source_name(source: str) -> str:
    """How a dataset source is named in records and model cards: a local path's last part, else the hub id."""
    return Path(source).resolve().name if source and Path(source).exists() else source


def folder_split(source: str) -> tuple[str, str] | None:
    """``(dataset, split)`` for a local folder named after a split, e.g. ``letters/validation`` -> ``("letters",
    "validation")``: how its lines are named in records when it is read as a dataset of its own; else None."""
    path = Path(source).expanduser()
    if not source or not path.is_dir() or path.name.lower() not in SPLIT_ALIASES:
        return None
    return path.resolve().parent.name, SPLIT_ALIASES[path.name.lower()]


def _split_folders(path: Path) -> dict[str, Path]:
    """Subfolders named after splits (``train/``, ``validation/``, ``val/``, ``test/``, ...) of a folder that holds
    no dataset files of its own at the top: an export laid out by split, such as ``letters/{train,validation}``."""
    own = ("dataset_dict.json", "state.json", "labels.tsv", "ascii")  # save_to_disk, labels.tsv, IAM layouts
    if any((path / name).exists() for name in own) or any(path.glob("*.xml")) or any(path.glob("*.parquet")):
        return {}
    by_split: dict[str, Path] = {}
    for child in sorted(c for c in path.iterdir() if c.is_dir() and c.name.lower() in SPLIT_ALIASES):
        split = SPLIT_ALIASES[child.name.lower()]
        if split in by_split:
            raise DatasetSourceError(f"{path}: both {by_split[split].name}/ and {child.name}/ hold the {split} split")
        by_split[split] = child
    return by_split


def _load_split_folders(by_split: dict[str, Path], iam_keep_err: bool) -> datasets.DatasetDict:
    splits = {}
    for split, folder in by_split.items():
        loaded = load_source(str(folder), iam_keep_err)
        if len(loaded) != 1:
            raise DatasetSourceError(f"{folder}: a split folder must hold one split, found {sorted(loaded)}")
        splits[split] = next(iter(loaded.values()))
    return datasets.DatasetDict(splits)


def load_source(source: str, iam_keep_err: bool = False) -> datasets.DatasetDict:
    """Open ``source`` (path or hub id) as a DatasetDict with its own split names; a folder with split subfolders
    (``train/``, ``validation/``, ...) and no dataset files at its top gives one split per subfolder."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".parquet":
        return _load_parquet([path])
    if path.is_dir() and "train" in (by_split := _split_folders(path)):
        return _load_split_folders(by_split, iam_keep_err)
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            loaded = datasets.load_from_disk(str(path))
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
        if (path / "ascii" / "lines.txt").exists():
            return _load_iam_folder(path, iam_keep_err)
        if (path / "labels.tsv").exists():
            return _load_tsv_folder(path)
        parquet = list(path.rglob("*.parquet"))
        if parquet:
            return _load_parquet(parquet)
        layout = _load_layout_folder(path, sorted(path.rglob("*.xml")))
        if layout is not None:
            return layout
        raise DatasetSourceError(
            f"{path} holds no dataset: expected dataset_dict.json (save_to_disk), *.parquet, "
            "ascii/lines.txt + lines/ (IAM), labels.tsv, or PAGE XML / ALTO files with their images"
        )
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise DatasetSourceError(f"{source}: no such dataset file or folder")
    return _load_hub(source)


def _standardize(split: datasets.Dataset) -> datasets.Dataset:
    """Keep ``image`` (undecoded), ``text`` and a grouping column (writer or form) when there is one."""
    if "text" not in split.column_names:
        for other in ("transcription", "label", "sentence"):
            if other in split.column_names:
                split = split.rename_column(other, "text")
                break
    if "image" not in split.column_names or "text" not in split.column_names:
        raise DatasetSourceError(f"dataset needs 'image' and 'text' columns, has {split.column_names}")
    if "group" not in split.column_names and "writer" in split.column_names:
        split = split.rename_column("writer", "group")
    keep = [c for c in ("image", "text", "group") if c in split.column_names]
    split = split.select_columns(keep)
    return split.cast_column("image", datasets.Image(decode=False))


def _stable_hash(key: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "big")


def carve_validation(train: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split ``train`` deterministically; rows sharing a ``group`` (writer/form) stay on one side."""
    keys = train["group"] if "group" in train.column_names else [str(i) for i in range(len(train))]
    ordered = sorted(set(keys), key=lambda k: _stable_hash(str(k), seed))
    held_out = set(ordered[: max(1, round(fraction * len(ordered)))])
    validation = [i for i, k in enumerate(keys) if k in held_out]
    rest = [i for i, k in enumerate(keys) if k not in held_out]
    return train.select(rest), train.select(validation)


def load_splits(
    source: str = DEFAULT_DATASET, val_fraction: float = 0.1, seed: int = 0, iam_keep_err: bool = False,
    carve: bool = True,
) -> datasets.DatasetDict:  # fmt: skip
    """Train/validation(/test) splits of ``source``; validation is carved from train when missing (unless
    ``carve`` is false: then there is no validation split)."""
    raw = load_source(source, iam_keep_err)
    splits = {}
    for name, split in raw.items():
        canonical = SPLIT_ALIASES.get(name, name)
        if canonical in splits:
            raise DatasetSourceError(f"{source}: two splits map to '{canonical}'")
        splits[canonical] = _standardize(split)
    if "train" not in splits:
        raise DatasetSourceError(f"{source} has no train split (splits: {sorted(raw)})")
    if "validation" not in splits and carve:
        splits["train"], splits["validation"] = carve_validation(splits["train"], val_fraction, seed)
    return datasets.DatasetDict(splits)


def load_validation(
    source: str, val_fraction: float = 0.1, seed: int = 0, iam_keep_err: bool = False
) -> datasets.Dataset:
    """The validation split of ``source``; carved from its train split (as `load_splits` does) when it has none. Of
    a folder with split subfolders only ``validation/`` is read."""
    path = Path(source).expanduser()
    if path.is_dir() and "validation" in (folders := _split_folders(path)):
        return _standardize(_load_split_folders({"validation": folders["validation"]}, iam_keep_err)["validation"])
    raw = load_source(source, iam_keep_err)
    named = {SPLIT_ALIASES.get(name, name): split for name, split in raw.items()}
    if "validation" in named:
        return _standardize(named["validation"])
    return load_splits(source, val_fraction, seed, iam_keep_err)["validation"]


def load_training_data(
    sources: list[str], val_source: str = "", val_fraction: float = 0.1, seed: int = 0, iam_keep_err: bool = False
) -> tuple[list[datasets.Dataset], datasets.Dataset]:
    """The train split of each of ``sources`` and one validation split: that of ``val_source`` (default: the
    first source). Only the validation source has validation carved from its train split when it has none;
    the validation splits of the other sources are left out of training."""
    val_source = val_source or sources[0]
    trains, validation = [], None
    for source in sources:
        splits = load_splits(source, val_fraction, seed, iam_keep_err, carve=source == val_source)
        trains.append(splits["train"])
        if source == val_source:
            validation = splits["validation"]
    if validation is None:
        validation = load_splits(val_source, val_fraction, seed, iam_keep_err)["validation"]
    return trains, validation


def load_untranscribed(source: str, all_lines: bool = False) -> datasets.Dataset:
    """Line images without transcriptions, for self-training (`htr.training.self_training`), ``text`` empty: of a
    PAGE/ALTO export, its lines without text; of a folder with ``labels.tsv``, its lines with empty text; of a
    folder of images alone, every image (each one a line). ``all_lines``: every line of an export or
    ``labels.tsv``, its text ignored. Of an export laid out by split, ``train/`` only (validation stays unread).
    Other sources (IAM's layout, ``save_to_disk`` folders, parquet) hold none here: empty."""
    from htr.reading.preprocess import IMAGE_SUFFIXES

    path = Path(source).expanduser()
    if not path.is_dir():
        raise DatasetSourceError(f"{source}: not a folder of line images or of PAGE/ALTO files with their images")
    if "train" in (by_split := _split_folders(path)):
        path = by_split["train"]
    lines = datasets.Dataset.from_dict({"image": [], "text": [], "group": []})
    datasets_of_their_own = ("dataset_dict.json", "state.json", "ascii")
    if (path / "labels.tsv").exists():
        lines = _load_tsv_folder(path)["train"]
        lines = lines if all_lines else lines.filter(lambda row: not normalize_text(row["text"]))
    elif xml := sorted(path.rglob("*.xml")):
        lines = (_load_layout_folder(path, xml, "all" if all_lines else "untranscribed") or {"train": lines})["train"]
    elif not any((path / name).exists() for name in datasets_of_their_own) and not any(path.rglob("*.parquet")):
        images = sorted(str(f) for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        lines = _from_files(images, [""] * len(images), images)
    lines = lines.map(lambda row: {"text": ""}) if len(lines) else lines
    return lines.cast_column("image", datasets.Image(decode=False))


def decode_row_image(image: dict) -> Image.Image:
    """PIL image of an undecoded ``datasets.Image`` cell ({'bytes', 'path'})."""
    return load_image(image["bytes"] if image.get("bytes") else image["path"])


def quantize(line: torch.Tensor) -> torch.Tensor:
    """A preprocessed line as uint8 (0..255) for compact storage; uint8 input is returned as is."""
    return line if line.dtype == torch.uint8 else (line * 255).round().to(torch.uint8)


def frames_needed(target: list[int]) -> int:
    """The fewest output frames CTC needs for a label: one per character, plus a blank between repeats."""
    return len(target) + sum(a == b for a, b in zip(target, target[1:]))


class LineSet(torch.utils.data.Dataset):
    """Preprocessed lines kept in memory as uint8, with their encoded labels; `add` admits one line.

    For training (``for_training``) lines with characters outside ``alphabet`` or labels too long for the
    model's output length at that image width are refused; evaluation keeps those, so they count as errors.
    Lines without text are refused unless the lines are only to be read (``unlabelled``, e.g. for self-training).
    """

    def __init__(
        self, alphabet: Alphabet, frames_for_width: Callable[[int], int], name: str, for_training: bool = True,
        unlabelled: bool = False,
    ) -> None:  # fmt: skip
        self.alphabet = alphabet
        self.frames_for_width = frames_for_width
        self.name = name
        self.for_training = for_training and not unlabelled
        self.unlabelled = unlabelled
        self.images: list[torch.Tensor] = []
        self.targets: list[list[int]] = []
        self.texts: list[str] = []
        self.widths: list[int] = []
        self.skipped: Counter[str] = Counter()

    def text_refusal(self, text: str) -> str | None:
        """Why a line with this text would be refused whatever its image, or None."""
        if not text and not self.unlabelled:
            return "empty text"
        if self.for_training and not self.alphabet.covers(text):
            return "characters outside the alphabet"
        return None

    def add(self, image: torch.Tensor, text: str) -> bool:
        """Keep a preprocessed (1, H, W) line (float in [0, 1] or uint8) and its text, or count why not."""
        refusal = self.text_refusal(text)
        if refusal:
            self.skipped[refusal] += 1
            return False
        target = self.alphabet.encode("".join(c for c in text if self.alphabet.covers(c)))
        if self.for_training and frames_needed(target) > self.frames_for_width(image.shape[-1]):
            self.skipped["label too long for the image width"] += 1
            return False
        self.images.append(quantize(image))
        self.targets.append(target)
        self.texts.append(text)
        self.widths.append(image.shape[-1])
        return True

    def report(self, total: int) -> None:
        """One log line with what was skipped; an error when nothing was kept."""
        if self.skipped:
            reasons = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
            log.warning("%s: skipped %d of %d rows (%s)", self.name, total - len(self.images), total, reasons)
        if not self.images:
            raise DatasetSourceError(f"{self.name}: no usable rows out of {total}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[int], str]:
        return self.images[index].float() / 255, self.targets[index], self.texts[index]


class LineDataset(LineSet):
    """The lines of one `datasets` split, preprocessed to ``height``; unreadable images are skipped and
    counted in one log line, like the rows `LineSet.add` refuses. ``rows``: the split's row of each line kept."""

    def __init__(
        self,
        split: datasets.Dataset,
        alphabet: Alphabet,
        height: int,
        frames_for_width: Callable[[int], int],
        name: str = "split",
        limit: int | None = None,
        for_training: bool = True,
        photo_share: float = 0.0,
        unlabelled: bool = False,
    ) -> None:
        super().__init__(alphabet, frames_for_width, name, for_training, unlabelled)
        self.photo_share = photo_share
        self.rows: list[int] = []
        self.photos: list[torch.Tensor] = []  # with photo_share: each kept line as a phone photo (`photo_finish`)
        rows = split.select(range(min(limit, len(split)))) if limit else split
        for index, row in enumerate(tqdm(rows, desc=f"preparing {name}", leave=False, mininterval=2)):
            text = normalize_text(row["text"])
            refusal = self.text_refusal(text)
            if refusal:  # before decoding the image
                self.skipped[refusal] += 1
                continue
            try:
                original = decode_row_image(row["image"])
                image = preprocess(original, height)
            except Exception:
                self.skipped["unreadable image"] += 1
                continue
            if not self.add(image, text):
                continue
            self.rows.append(index)
            if photo_share > 0:
                self.photos.append(self._photo_of(original, height, index, self.images[-1], self.targets[-1]))
        self.report(len(rows))

    def _photo_of(self, original: Image.Image, height: int, index: int, clean: torch.Tensor,
                  target: list[int]) -> torch.Tensor:  # fmt: skip
        """Row ``index``'s line as a phone photo (`photo_finish`, seeded by the row), preprocessed; ``clean``, its
        preprocessed scan, again if the photo came out too narrow for its label ``target``."""
        from htr.synth.render import photo_finish  # rendering is a training-time dependency only

        photo = quantize(preprocess(photo_finish(original, np.random.default_rng([11, index])), height))
        fits = frames_needed(target) <= self.frames_for_width(photo.shape[-1])
        return photo if fits else clean

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[int], str]:
        """A line; with ``photo_share``, that share of draws gets its phone-photo version instead (drawn from
        torch's generator, whose state a resumed run restores)."""
        if self.photos and torch.rand(()).item() < self.photo_share:
            return self.photos[index].float() / 255, self.targets[index], self.texts[index]
        return super().__getitem__(index)


def collate_lines(items: list) -> dict:
    """Batch of ``LineDataset`` items -> padded images, widths, concatenated targets and texts."""
    images, targets, texts = zip(*items)
    batch, widths = pad_batch(list(images))
    return {
        "images": batch,
        "widths": widths,
        "targets": torch.tensor([i for t in targets for i in t], dtype=torch.long),
        "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
        "texts": list(texts),
    }
