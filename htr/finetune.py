"""Fine-tune a trained reader on your own transcribed pages: one command from an export to a better model.

    htr finetune path/to/export --output models/my-hand                # PAGE or ALTO files with their images
    htr finetune path/to/lines --output models/my-hand --minutes 20    # a labels.tsv folder, within 20 minutes
    htr finetune path/to/export --output models/my-hand --lr 1e-4      # any choice of the plan overridden
    htr finetune path/to/export --output models/my-hand --self-train 2 --unlabelled path/to/more/lines
    htr finetune path/to/export --output models/my-hand --rehearse Teklia/IAM-line     # keep reading IAM too

The data: a folder of PAGE XML or ALTO files with their page images (what Transkribus and eScriptorium export), a
folder of line images with ``labels.tsv``, or anything else ``htr train --dataset`` reads (``htr.data``). Its
``validation`` split is used when it has one (a folder with ``train/`` and ``validation/``); otherwise 10% of the
pages (``--split-by document``: of the documents, the top-level folders) are held out for validation.

It starts from the shipped model (or ``--base``), adds the characters the data needs (``--min-char-count`` times at
least), chooses learning rate, length, augmentation, what to freeze and early stopping from the number of training
lines (`plan`; every choice printed, each one overridable), trains within ``--minutes`` (all of the command's
time: evaluations included) with ``htr train`` (saving its state often: re-run the same command to resume), adapts
the character LM to the collection's text (its own 6-gram LM interpolated with the base model's, the weight chosen by
perplexity on the validation text) and ends with the error rates before and after on the validation split.
``--self-train ROUNDS`` then learns from untranscribed lines too (`self_train`): the export's lines without text and
those of ``--unlabelled`` folders, read by the fine-tuned model, the more confident share kept as pseudo-labels.
``--rehearse DATASET`` keeps the base's other hands in view: ``--rehearse-share`` of each epoch's lines come from
that dataset's training lines (the base's own training data, say), and its validation lines are read before and
after, so the report says what the fine-tune cost there.

``OUTPUT`` gets ``model/`` (a model folder in the hub layout with its ONNX export: ``htr read --checkpoint
OUTPUT/model``, ``htr hub push OUTPUT/model``), ``report.md`` and ``report.json`` (the data, the plan, before and
after, the lines that got worse), and the work: ``data/`` (the lines cut out, so a resumed run reads the same),
``run/`` (``htr train``'s output) and ``before.json``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import datasets

from htr.atomic_file import atomic_write
from htr.checkpoint import read_checkpoint
from htr.data import DatasetSourceError, carve_validation, load_splits, normalize_text, source_name
from htr.model_files import CheckpointError
from htr.training.self_training import KEEP_SHARE, reading_decoder

log = logging.getLogger(__name__)

LM_ORDER = 6
VALIDATION_LINES_WHILE_TRAINING = 500  # lines validated after each epoch (all of them before and after)
WORSE_LINES_SHOWN = 20
SOURCE_RECORD = "source.json"  # beside a kept dataset: what it was made from
Kept = TypeVar("Kept", datasets.Dataset, datasets.DatasetDict)
OLD_PAPER = {"show_through_p": 0.2, "neighbour_p": 0.3, "fade_p": 0.2, "blot_p": 0.1, "stain_p": 0.2}  # old_paper
REHEARSE_SHARE = 0.25  # of each epoch's lines, from the --rehearse datasets (docs/results.md, "Fine-tuning")


@dataclass
class FinetuneConfig:
    """What ``htr finetune`` was asked to do; ``choices`` overrides the plan (`plan`'s names)."""

    data: str
    output: str
    base: str
    minutes: float = 0.0  # all of the command's time; 0: no limit (the plan's epochs)
    max_lines: int = 0  # use only the first N training lines (in page order); 0: all
    split_by: str = "page"  # page | document: what the held-out validation is made of (when the data has none)
    val_fraction: float = 0.1
    min_char_count: int = 2  # a new character joins the alphabet when the training text holds it this often
    decoder: str = "beam"  # how before and after are measured: beam (with the LM) or greedy
    licence: str = ""  # the data's licence, as the user gives it (for the model card)
    int8: bool = True  # quantize the ONNX export (calibrated on 64 training lines), as the shipped model is
    seed: int = 0
    self_train: int = 0  # rounds of self-training on the untranscribed lines (`htr.training.self_training`)
    unlabelled: list[str] = field(default_factory=list)  # more untranscribed lines: folders of lines or exports
    pseudo_share: float = KEEP_SHARE  # the share of untranscribed lines kept, the most confidently read
    rehearse: list[str] = field(default_factory=list)  # datasets of other hands to keep reading (their train lines)
    rehearse_share: float = REHEARSE_SHARE  # of each epoch's lines, taken from the rehearse datasets
    choices: dict = field(default_factory=dict)

    def __post_init__(self) -> None:  # paths may come as Path objects; records and states keep strings
        self.data, self.output, self.base = str(self.data), str(self.output), str(self.base)
        self.unlabelled = [str(path) for path in self.unlabelled]
        self.rehearse = [str(path) for path in self.rehearse]


@dataclass
class Choice:
    value: object
    why: str


def plan(lines: int) -> dict[str, Choice]:
    """The fine-tuning recipe for ``lines`` training lines: each value with the reason for it (see
    benchmarks/finetune_curve.py and "Fine-tuning" in docs/results.md for the measurements behind them)."""
    per_epoch = max(lines, 2000)
    seen = 12_000 + 8 * lines
    return {
        "lr": Choice(3e-4, "peak AdamW rate (at 250 lines: better than 1e-3 and 1e-4)"),
        "batch_size": Choice(8, "as the shipped model was trained"),
        "warmup_steps": Choice(100, "a short linear warm-up"),
        "lines_per_epoch": Choice(
            per_epoch,
            "an epoch (validation, checkpoint) every 2,000 lines at least"
            if lines < 2000
            else "every line once per epoch",
        ),  # fmt: skip
        "epochs": Choice(max(1, math.ceil(seen / per_epoch)), f"about {seen:,} lines seen: 12,000 + 8 per line"),
        "patience": Choice(3, "stop after 3 epochs without a better validation CER"),
        "freeze_cnn": Choice(False, "the whole network adapts (at 250 lines: a frozen CNN read 5 points worse)"),
        "dropout": Choice(
            0.5,
            "dropout around the recurrent layers (the base's: 0.2; at 250 lines, 4 epochs: 0.3 points better, "
            "0.7 worse; stronger geometric augmentation 1 point worse)",
        ),
        "augment": Choice(True, "the default augmentation (geometry, ink, paper)"),
        "old_paper": Choice(
            True, "show-through, neighbouring lines, faded and blotted ink, stains (at 250 lines: 2.2 points better)"
        ),
        "ema_decay": Choice(0.0, "no weight average (at 250 lines: 0.999 lagged, 3.5 points worse)"),
    }


def trainable_base(checkpoint: dict, name: str) -> None:
    """Refuse, in one line, a base model that cannot be fine-tuned (no weights, or an architecture and alphabet that
    do not fit each other)."""
    if "state_dict" not in checkpoint or "model_config" not in checkpoint or "alphabet" not in checkpoint:
        raise CheckpointError(f"{name}: not a trainable model (it needs weights, architecture and alphabet)")
    classes = checkpoint["model_config"].get("num_classes")
    if classes != len(checkpoint["alphabet"]) + 1:
        raise CheckpointError(f"{name}: its alphabet ({len(checkpoint['alphabet'])} characters) does not fit its "
                              f"output layer ({classes} classes): its alphabet cannot be extended")  # fmt: skip


def document_of(group: str) -> str:
    """The document a page belongs to: the first folder of its path in the export (the page itself at the top)."""
    parts = Path(group).parts
    return parts[0] if len(parts) > 1 else group


def prepare_data(cfg: FinetuneConfig, folder: Path) -> datasets.DatasetDict:
    """The train and validation lines, cut out once and kept in ``folder`` (read back when it exists, so that a
    resumed run sees the same split)."""
    asked = {"data": str(Path(cfg.data).expanduser().resolve()) if Path(cfg.data).expanduser().exists() else cfg.data,
             "max_lines": cfg.max_lines, "split_by": cfg.split_by, "val_fraction": cfg.val_fraction,
             "seed": cfg.seed}  # fmt: skip
    kept = kept_source(folder)
    if kept is not None and kept != asked:
        raise ValueError(f"{folder.parent} holds a fine-tune of other data or settings "
                         f"({folder / SOURCE_RECORD}): give another --output")  # fmt: skip
    return kept_dataset(folder, asked, lambda: split_lines(cfg))


def split_lines(cfg: FinetuneConfig) -> datasets.DatasetDict:
    """The data's train and validation lines: its own validation split, else one carved out by page or document;
    the first ``cfg.max_lines`` training lines when given."""
    splits = load_splits(cfg.data, carve=False)
    if "validation" not in splits:
        train = splits["train"]
        if cfg.split_by == "document" and "group" in train.column_names:
            train = train.map(lambda row: {"group": document_of(row["group"])})
        splits["train"], splits["validation"] = carve_validation(train, cfg.val_fraction, cfg.seed)
        unit = "documents" if cfg.split_by == "document" else "pages"
        log.info("no validation split: %d lines of %d %s held out (%.0f%% of the %s), %d lines left to train on",
                 len(splits["validation"]), len(set(splits["validation"]["group"] or [])), unit,
                 100 * cfg.val_fraction, unit, len(splits["train"]))  # fmt: skip
    if cfg.max_lines and cfg.max_lines < len(splits["train"]):
        splits["train"] = splits["train"].select(range(cfg.max_lines))
    if not len(splits["train"]) or not len(splits["validation"]):
        raise DatasetSourceError(f"{cfg.data}: too few lines to hold some out for validation "
                                 f"({len(splits['train'])} train, {len(splits['validation'])} validation)")  # fmt: skip
    return datasets.DatasetDict({"train": splits["train"], "validation": splits["validation"]})


def rehearsal_data(cfg: FinetuneConfig) -> tuple[dict[str, int], dict[str, datasets.Dataset], list[str]]:
    """The training lines of each ``--rehearse`` dataset, the validation split of those that have one of their
    own (none is carved out of the lines it trains on), and their training texts (their characters may join the
    alphabet too)."""
    counts, sets, texts = {}, {}, []
    for source in cfg.rehearse:
        splits = load_splits(source, carve=False)
        counts[source] = len(splits["train"]) if "train" in splits else 0
        if not counts[source]:
            raise DatasetSourceError(f"{source}: no training lines to rehearse")
        texts += [normalize_text(text) for text in splits["train"]["text"]]
        if "validation" in splits and len(splits["validation"]):
            sets[source] = splits["validation"]
        else:
            log.warning("rehearse %s: no validation split of its own; what the fine-tune costs there is not read",
                        source)  # fmt: skip
    return counts, sets, texts


def kept_record(path: Path, make: Callable[[], dict], holds: Callable[[dict], bool] = lambda record: True) -> dict:
    """The record a previous run kept in ``path`` when it ``holds`` for this run (a resumed run reuses it), else
    ``make()``'s, kept there (written atomically)."""
    if path.is_file():
        record = json.loads(path.read_text())
        if holds(record):
            return record
    record = make()
    atomic_write(path, lambda f: f.write(json.dumps(record).encode()))
    return record


def kept_source(folder: Path) -> dict | None:
    """What the dataset kept in ``folder`` was made from (`kept_dataset`), or None when none is kept there."""
    recorded = folder / SOURCE_RECORD
    return json.loads(recorded.read_text()) if recorded.is_file() else None


def kept_dataset(folder: Path, asked: dict, make: Callable[[], Kept]) -> Kept:
    """The dataset a previous run kept in ``folder`` for the same ``asked`` (a resumed run reads it back), else
    ``make()``'s, kept there with ``asked`` beside it: saved under another name and renamed into place, so that a run
    interrupted while saving leaves nothing that reads as kept."""
    if kept_source(folder) == asked:
        return datasets.load_from_disk(str(folder))
    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)  # what an interrupted run left half-written
    make().save_to_disk(str(part))
    (part / SOURCE_RECORD).write_text(json.dumps(asked))
    shutil.rmtree(folder, ignore_errors=True)  # made from something else
    part.rename(folder)
    return datasets.load_from_disk(str(folder))


def rehearsal_before(cfg: FinetuneConfig, base: dict, sets: dict[str, datasets.Dataset], path: Path) -> dict:
    """The base's reading of each rehearsed dataset's validation lines (kept in ``path``: a resumed run reuses it)."""
    readings = kept_record(path, lambda: {source: measure(base, cfg.base, split, cfg.decoder)
                                          for source, split in sets.items()},
                           lambda kept: set(kept) == set(sets))  # fmt: skip
    for source, reading in readings.items():
        log.info("rehearse %s: CER before %.2f%% (%d validation lines)", source, 100 * reading["cer"], reading["lines"])
    return readings


def new_characters(known: str, texts: list[str], min_count: int) -> tuple[dict[str, int], dict[str, int]]:
    """Characters of ``texts`` outside ``known``: those that join (``min_count`` times or more) and those left out,
    each with its count."""
    counts = Counter(c for text in texts for c in text if c not in known)
    joined = {c: n for c, n in sorted(counts.items()) if n >= min_count}
    return joined, {c: n for c, n in sorted(counts.items()) if n < min_count}


def measure(checkpoint: dict, name: str, split: datasets.Dataset, decoder: str) -> dict:
    """Error rates of a checkpoint dict on a split, with ``decoder`` (beam uses its own LM), and every line's
    reference and reading."""
    from htr.evaluate import error_rates, read_split
    from htr.metrics import char_errors
    from htr.runtime import resolve_device, resolve_precision

    device = resolve_device("auto")
    decoding = reading_decoder(checkpoint, decoder)
    clock = time.monotonic()
    references, readings = read_split(checkpoint, name, split, decoding, device,
                                      resolve_precision("auto", device))  # fmt: skip
    texts = [r.text for r in readings]
    return {**error_rates(references, texts), "lines": len(references), "decoder": decoding.describe(),
            "seconds": round(time.monotonic() - clock, 1), "references": references, "readings": texts,
            "errors": [char_errors(ref, hyp) for ref, hyp in zip(references, texts)]}  # fmt: skip


def train_config(cfg: FinetuneConfig, chosen: dict[str, Choice], data: Path, lines: int, minutes: float,
                 output_dir: Path | None = None, init_from: str = "",
                 rehearsal: dict[str, int] | None = None):  # fmt: skip
    """The ``htr train`` configuration of the plan (``minutes``: its share of the budget; 0: none), in
    ``output_dir`` (default: ``OUTPUT/run``) from ``init_from`` (default: the base). ``rehearsal`` (dataset ->
    its training lines) gives ``cfg.rehearse_share`` of each epoch's lines to those datasets, evenly; validation
    stays the collection's."""
    from htr.synth.augment import AugmentConfig
    from htr.train import TrainConfig

    values = {name: choice.value for name, choice in chosen.items()}
    per_epoch, sources, weights = values["lines_per_epoch"], [str(data)], [values["lines_per_epoch"] / lines]
    if rehearsal:
        weights = [per_epoch * (1 - cfg.rehearse_share) / lines]
        for source, count in rehearsal.items():
            sources.append(source)
            weights.append(per_epoch * cfg.rehearse_share / len(rehearsal) / count)
    return TrainConfig(
        dataset=sources, dataset_weights=weights,
        output_dir=str(output_dir or Path(cfg.output) / "run"), epochs=values["epochs"],
        batch_size=values["batch_size"], lr=values["lr"],
        warmup_steps=values["warmup_steps"], patience=values["patience"], freeze_cnn=values["freeze_cnn"],
        use_augment=values["augment"], augment=AugmentConfig(**(OLD_PAPER if values["old_paper"] else {})),
        ema_decay=values["ema_decay"], init_from=init_from or cfg.base, init_dropout=values["dropout"],
        min_char_count=cfg.min_char_count, lm_order=0, max_minutes=minutes, seed=cfg.seed,
        max_val_lines=VALIDATION_LINES_WHILE_TRAINING, save_every=100,
    )  # fmt: skip


def finetune(cfg: FinetuneConfig, progress: bool = True) -> dict:
    """Fine-tune as configured (or resume); returns the report (also written to ``OUTPUT/report.json``)."""
    from htr.hub import save_pretrained
    from htr.lm import CharLM, build_lm, choose_interpolation, interpolate
    from htr.train import train

    start = time.monotonic()
    out = Path(cfg.output)
    if cfg.split_by not in ("page", "document"):
        raise ValueError(f"--split-by takes page or document, not {cfg.split_by!r}")
    if cfg.rehearse and not 0 < cfg.rehearse_share < 1:
        raise ValueError(f"--rehearse-share takes a share between 0 and 1, not {cfg.rehearse_share:g}")
    if Path(cfg.base).suffix == ".onnx":
        raise CheckpointError(f"{cfg.base}: an ONNX export cannot be fine-tuned; give the .pth or model folder it "
                              "was made from")  # fmt: skip
    base = read_checkpoint(cfg.base)
    trainable_base(base, cfg.base)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg, out / "data")
    train_texts = [normalize_text(t) for t in data["train"]["text"]]
    if not any(train_texts):
        raise DatasetSourceError(f"{cfg.data}: no training line has text")
    pages = len(set(data["train"]["group"])) if "group" in data["train"].column_names else None
    rehearsal, kept_sets, rehearsed_texts = rehearsal_data(cfg)
    joined, left_out = new_characters(base["alphabet"], train_texts + rehearsed_texts, cfg.min_char_count)
    log.info("data: %d training lines%s, %d validation lines", len(train_texts),
             f" from {pages} pages" if pages else "", len(data["validation"]))  # fmt: skip
    log.info("new characters: %s%s", ", ".join(f"{c!r} ({n} times)" for c, n in joined.items()) or "none",
             f"; left out (fewer than {cfg.min_char_count} times, their lines not trained on): " +
             ", ".join(f"{c!r} ({n})" for c, n in left_out.items()) if left_out else "")  # fmt: skip
    chosen = planned(len(train_texts), cfg.choices)
    untranscribed = untranscribed_lines(cfg, data, out / "untranscribed") if cfg.self_train else None

    before = kept_record(out / "before.json", lambda: measure(base, cfg.base, data["validation"], cfg.decoder))
    log.info("before: CER %.2f%%  WER %.2f%% (%s, %d validation lines)", 100 * before["cer"], 100 * before["wer"],
             before["decoder"], before["lines"])  # fmt: skip
    kept_before = rehearsal_before(cfg, base, kept_sets, out / "rehearsal-before.json")
    budget = Budget(cfg.minutes, start, before["seconds"], before["lines"],
                    end_seconds=sum(reading["seconds"] for reading in kept_before.values()))  # fmt: skip

    rounds = cfg.self_train if untranscribed is not None and len(untranscribed) else 0
    minutes = 0.0
    if cfg.minutes:  # the supervised training's share of what is left once the evaluations and the LM are paid for
        minutes = budget.training_share(rounds + 1, rounds, len(untranscribed or []))
        if minutes <= 0.5:
            raise ValueError(f"--minutes {cfg.minutes:g} leaves no time to train (reading the validation lines takes "
                             f"{before['seconds'] / 60:.1f} min): give more")  # fmt: skip
    tcfg = train_config(cfg, chosen, out / "data", len(train_texts), minutes, rehearsal=rehearsal)
    result = train(tcfg, progress=progress)
    if math.isinf(result["best_cer"]):
        raise ValueError("training stopped before its first validation: re-run to resume")
    tuned = read_checkpoint(result["best_path"])

    own = build_lm(train_texts, LM_ORDER)
    val_texts = [normalize_text(t) for t in data["validation"]["text"]]
    lm_note: dict = {"order": LM_ORDER, "training lines": len(train_texts)}
    if base.get("lm"):
        weight, perplexities = choose_interpolation(own, CharLM.from_state(base["lm"]), val_texts)
        lm = interpolate(own, CharLM.from_state(base["lm"]), weight)
        lm_note.update(
            {
                "weight": weight,
                "perplexity by weight": perplexities,
                "perplexity of the base LM": CharLM.from_state(base["lm"]).perplexity(val_texts),
            }
        )
    else:
        lm, lm_note["weight"] = own, 1.0
    lm_note["perplexity"] = lm.perplexity(val_texts)
    tuned["lm"] = lm.to_state()
    after = measure(tuned, result["best_path"], data["validation"], cfg.decoder)
    log.info("after: CER %.2f%%  WER %.2f%% (%s)", 100 * after["cer"], 100 * after["wer"], after["decoder"])
    self_training: dict = {}
    trained = {"epochs": len(result["history"]), "steps": last_step(result), "minutes": training_minutes(result)}
    if rounds:
        best = Stage(tuned, result, after, chosen, "the transcribed lines")
        best, self_training = self_train(cfg, data, untranscribed, best, budget, rounds, progress, rehearsal)
        tuned, result, after, chosen = best.checkpoint, best.result, best.reading, best.chosen
        tuned["lm"] = lm.to_state()
        for done in self_training["rounds"]:  # the model's own lineage, and every minute trained
            trained["minutes"] += done["training minutes"]
            if done["kept"]:
                trained["epochs"] += done["epochs"]
                trained["steps"] += done["steps"]

    kept = {}
    for source, split in kept_sets.items():
        reading = measure(tuned, "the fine-tuned model", split, cfg.decoder)
        kept[source] = {"before": summary(kept_before[source]), "after": summary(reading)}
        log.info("rehearsed %s: CER %.2f%% -> %.2f%% (%d validation lines)", source, 100 * kept_before[source]["cer"],
                 100 * reading["cer"], reading["lines"])  # fmt: skip
    rehearsed = {
        "share": cfg.rehearse_share,
        "datasets": {  # named as records name datasets (a path's last part)
            source_name(source): {"training lines": count, **kept.get(source, {})}
            for source, count in rehearsal.items()
        },
    }

    history = result["history"]
    report = {
        "data": source_name(cfg.data),
        "licence": cfg.licence or "not given",
        "base": source_name(cfg.base),
        "training lines": len(train_texts),
        "pages": pages,
        "validation lines": before["lines"],
        "new characters": joined,
        "characters left out": left_out,
        "plan": {name: {"value": c.value, "why": c.why} for name, c in chosen.items()},
        "epochs": trained["epochs"],  # with self-training: the supervised run's and the kept rounds'
        "steps": trained["steps"],
        "training minutes": round(trained["minutes"], 1),  # every training run's, self-training rounds included
        "language model": lm_note,
        "before": summary(before),
        "after": summary(after),
        **({"self-training": self_training} if self_training else {}),
        **({"rehearsal": rehearsed} if rehearsal else {}),
        "worse lines": worse_lines(before, after),
    }
    last = history[-1] if history else {}
    tuned["training"] = {**base.get("training", {}), "finetune": {  # what the base learnt from, then this
        **{key: report[key] for key in ("data", "licence", "base", "training lines", "pages", "validation lines",
                                        "epochs", "steps")},
        "hardware": last.get("hardware", "?"), "recipe": {name: c.value for name, c in chosen.items()},
        "before": report["before"], "after": report["after"],
        **({"self-training": self_training} if self_training else {}),
        **({"rehearsal": rehearsed} if rehearsal else {})}}  # fmt: skip
    readings = [(source_name(cfg.data), after)] + [(name, record["after"]) for name, record
                                                   in rehearsed["datasets"].items() if "after" in record]  # fmt: skip
    tuned["metrics"] = {**tuned.get("metrics", {}), "evaluations": [
        {"dataset": name, "split": "validation", "lines": reading["lines"], "decoder": reading["decoder"],
         "cer": reading["cer"], "wer": reading["wer"]} for name, reading in readings]}  # fmt: skip
    tuned["name"] = out.resolve().name
    folder = save_pretrained(tuned, out / "model")
    export_folder(folder, data["train"], cfg.int8)
    report["minutes"] = round((time.monotonic() - start) / 60, 1)
    atomic_write(out / "report.json", lambda f: f.write(json.dumps(report, indent=1, ensure_ascii=False).encode()))
    atomic_write(out / "report.md", lambda f: f.write(report_markdown(report).encode()))
    return report


def planned(lines: int, given: dict) -> dict[str, Choice]:
    """The plan for ``lines`` training lines with the ``given`` choices in place of its own, each one logged."""
    chosen = plan(lines)
    for name, value in given.items():
        if name not in chosen:
            raise ValueError(f"unknown choice {name!r} (choices: {', '.join(chosen)})")
        chosen[name] = Choice(value, "given")
    for name, choice in chosen.items():
        log.info("  %-16s %-8s %s", name, choice.value, choice.why)
    return chosen


@dataclass
class Budget:
    """``--minutes`` from ``start`` (``time.monotonic``), and what it pays for besides training: the validation
    read after each training (about as long as the base's reading, ``evaluation_seconds`` for ``validation_lines``)
    and the end (LM, export: a minute; ``end_seconds``: the rehearsed datasets' validation read again)."""

    minutes: float
    start: float
    evaluation_seconds: float
    validation_lines: int
    end_seconds: float = 0.0

    def training_share(self, trainings: int, readings: int, untranscribed: int, reading_per_line: float = 0.0) -> float:
        """Minutes for the next of ``trainings`` trainings still to run (the supervised one, then each
        self-training round): what is left once each one's evaluation, the ``readings`` of the ``untranscribed``
        lines still to make (``reading_per_line`` seconds a line, as a round measured it; else 1.5 times the
        validation's rate) and the end are paid for, shared evenly."""
        evaluation = 1.2 * self.evaluation_seconds / 60
        per_line = (reading_per_line or 1.5 * self.evaluation_seconds / max(1, self.validation_lines)) / 60
        left = self.minutes - (time.monotonic() - self.start) / 60 - 1.0 - 1.2 * self.end_seconds / 60
        return (left - trainings * evaluation - readings * untranscribed * per_line) / trainings


@dataclass
class Stage:
    """A trained model (its checkpoint with the LM, ``htr train``'s result, its reading of validation, its plan)."""

    checkpoint: dict
    result: dict
    reading: dict
    chosen: dict
    name: str


def untranscribed_lines(cfg: FinetuneConfig, data: datasets.DatasetDict, folder: Path) -> datasets.Dataset:
    """The lines self-training reads: the data's own lines without text (none of the validation pages') and every
    line of ``--unlabelled``; cut out once and kept in ``folder``."""
    from htr.data import load_untranscribed

    def cut_out() -> datasets.Dataset:
        parts = []
        if Path(cfg.data).expanduser().is_dir():
            own = load_untranscribed(cfg.data)
            held_out = set(data["validation"]["group"]) if "group" in data["validation"].column_names else set()
            parts.append(own.filter(lambda row: row["group"] not in held_out and document_of(row["group"]) not in
                                    held_out))  # fmt: skip
        parts += [load_untranscribed(path, all_lines=True) for path in cfg.unlabelled]
        return datasets.concatenate_datasets(parts) if parts else datasets.Dataset.from_dict({"image": [], "text": []})

    lines = kept_dataset(folder, {"data": cfg.data, "unlabelled": cfg.unlabelled}, cut_out)
    log.info("self-training: %d untranscribed lines (%s)", len(lines),
             ", ".join(["the data's own lines without text", *cfg.unlabelled]))  # fmt: skip
    if not len(lines):
        log.warning("self-training: no untranscribed lines to read (a line without text in the export, or "
                    "--unlabelled): skipped")  # fmt: skip
    return lines


def self_train(cfg: FinetuneConfig, data: datasets.DatasetDict, lines: datasets.Dataset, best: Stage, budget: Budget,
               rounds: int, progress: bool, rehearsal: dict[str, int] | None = None) -> tuple[Stage, dict]:  # fmt: skip
    """Rounds of self-training (`htr.training.self_training`) from ``best``: its readings of ``lines`` (the more
    confident ``cfg.pseudo_share``) join the transcribed lines, and a model trained from it on both replaces it
    when it reads validation better; the rounds stop at the first that does not. The best stage and the record."""
    from htr.train import train

    record: dict = {"untranscribed lines": len(lines), "share kept": cfg.pseudo_share,
                    "transcribed lines only": summary(best.reading), "rounds": []}  # fmt: skip
    reading_per_line = 0.0  # seconds, once a round has measured it
    for number in range(1, rounds + 1):
        folder = Path(cfg.output) / f"self-train-{number}"
        trainings = rounds - number + 1  # this round's and those after it, each with its reading
        share = budget.training_share(trainings, trainings, len(lines), reading_per_line)
        if cfg.minutes and share <= 0.5:
            log.warning("self-training round %d: no time left in --minutes %g; stopped", number, cfg.minutes)
            break
        asked = {"read by": best.name, "untranscribed lines": len(lines), "share kept": cfg.pseudo_share}
        reads = kept_source(folder / "data") != asked  # else read before this run was interrupted
        clock = time.monotonic()
        combined = kept_dataset(folder / "data", asked, lambda stage=best: with_pseudo_labels(cfg, data, lines, stage))
        if reads:
            reading_per_line = (time.monotonic() - clock) / max(1, len(lines))
        minutes = 0.0
        if cfg.minutes:  # this round's reading paid for
            minutes = budget.training_share(trainings, trainings - 1, len(lines), reading_per_line)
            if minutes <= 0.5:
                log.warning("self-training round %d: no time left in --minutes %g; stopped", number, cfg.minutes)
                break
        pseudo_count = len(combined["train"]) - len(data["train"])
        log.info("self-training round %d: %d transcribed + %d pseudo-labelled lines (the more confident %.0f%% of "
                 "%d read by %s)", number, len(data["train"]), pseudo_count, 100 * cfg.pseudo_share, len(lines),
                 best.name)  # fmt: skip
        chosen = planned(len(combined["train"]), cfg.choices)
        tcfg = train_config(cfg, chosen, folder / "data", len(combined["train"]), minutes, folder / "run",
                            str(best.result["best_path"]), rehearsal)  # fmt: skip
        result = train(tcfg, progress=progress)
        if math.isinf(result["best_cer"]):
            log.warning("self-training round %d stopped before its first validation", number)
            break
        model = read_checkpoint(result["best_path"])
        model["lm"] = best.checkpoint["lm"]
        reading = measure(model, result["best_path"], data["validation"], cfg.decoder)
        better = reading["cer"] < best.reading["cer"]
        record["rounds"].append({"round": number, "pseudo-labelled lines": pseudo_count,
                                 "epochs": len(result["history"]), "steps": last_step(result),
                                 "training minutes": training_minutes(result), "cer before": best.reading["cer"],
                                 "cer": reading["cer"], "wer": reading["wer"], "kept": better})  # fmt: skip
        log.info("self-training round %d: CER %.2f%% (before the round %.2f%%): %s", number, 100 * reading["cer"],
                 100 * best.reading["cer"], "kept" if better else "not better, stopped")  # fmt: skip
        if not better:
            break
        best = Stage(model, result, reading, chosen, f"self-training round {number}")
    record["model"] = best.name
    return best, record


def with_pseudo_labels(cfg: FinetuneConfig, data: datasets.DatasetDict, lines: datasets.Dataset,
                       reader: Stage) -> datasets.DatasetDict:  # fmt: skip
    """``data`` with ``reader``'s readings of the more confident ``cfg.pseudo_share`` of ``lines`` joining its
    training lines as their text."""
    from htr.training.self_training import most_confident, pseudo_labelled, read_lines

    readings = read_lines(reader.checkpoint, reader.name, lines, cfg.decoder)
    pseudo = pseudo_labelled(lines, readings, most_confident(readings, cfg.pseudo_share))
    train_split = datasets.concatenate_datasets([line_columns(data["train"]), line_columns(pseudo)])
    return datasets.DatasetDict({"train": train_split, "validation": data["validation"]})


def last_step(result: dict) -> int:
    """The steps an ``htr train`` run took (its result's history)."""
    return result["history"][-1]["step"] if result["history"] else 0


def training_minutes(result: dict) -> float:
    """The minutes an ``htr train`` run trained (its result's history; validation included)."""
    return result["history"][-1].get("train_seconds", 0) / 60 if result["history"] else 0.0


def line_columns(split: datasets.Dataset) -> datasets.Dataset:
    """``split`` as image, text and group (empty where it had none), so that splits of any source concatenate."""
    if "group" not in split.column_names:
        split = split.add_column("group", [""] * len(split))
    split = split.select_columns(["image", "text", "group"]).cast_column("image", datasets.Image(decode=False))
    return split.cast_column("group", datasets.Value("string"))


def summary(reading: dict) -> dict:
    return {key: reading[key] for key in ("cer", "wer", "lines", "decoder")}


def worse_lines(before: dict, after: dict, limit: int = WORSE_LINES_SHOWN) -> list[dict]:
    """The validation lines read with more character errors after than before, most errors gained first."""
    rows = [{"reference": ref, "before": b, "after": a, "errors before": eb, "errors after": ea}
            for ref, b, a, eb, ea in zip(before["references"], before["readings"], after["readings"],
                                         before["errors"], after["errors"]) if ea > eb]  # fmt: skip
    return sorted(rows, key=lambda r: r["errors before"] - r["errors after"])[:limit]


def export_folder(folder: Path, train_split: datasets.Dataset, int8: bool) -> None:
    """The folder's ``model.onnx`` (what ``htr read`` runs on a CPU); int8 calibrated on 64 training lines."""
    from htr.export import export_onnx, quantize_calibrated
    from htr.model_files import ONNX_NAME

    export_onnx(folder, folder / ONNX_NAME)
    if int8:
        quantize_calibrated(folder, folder / ONNX_NAME, train_split)


def report_markdown(report: dict) -> str:
    """``report.md``: what was trained on, the plan, before and after, and the lines that got worse."""
    from htr.hub import percent

    before, after = report["before"], report["after"]
    lm = report["language model"]
    lines = [
        f"# Fine-tuning report: {report['data']}", "",
        f"- Base model: `{report['base']}`; data: {report['training lines']:,} training lines"
        + (f" from {report['pages']} pages" if report["pages"] else "")
        + f", {report['validation lines']:,} validation lines; licence: {report['licence']}.",
        "- New characters: " + (", ".join(f"`{c}` ({n})" for c, n in report["new characters"].items()) or "none")
        + (("; left out: " + ", ".join(f"`{c}` ({n})" for c, n in report["characters left out"].items()))
           if report["characters left out"] else "") + ".",
        f"- Trained {report['epochs']} epochs ({report['steps']:,} steps"
        + (", with the kept self-training rounds" if "self-training" in report else "")
        + f"; {report['training minutes']} training minutes); the command took {report['minutes']} min.",
        f"- Language model: the collection's {lm['order']}-gram LM, weight {lm['weight']} beside the base model's "
        f"(validation perplexity {lm['perplexity']:.2f}" + (f"; the base LM's {lm['perplexity of the base LM']:.2f}"
                                                             if "perplexity of the base LM" in lm else "") + ").",
        "", "| | CER | WER | decoder |", "| --- | --- | --- | --- |",
        f"| before | {percent(before['cer'])} | {percent(before['wer'])} | {before['decoder']} |",
        f"| after | {percent(after['cer'])} | {percent(after['wer'])} | {after['decoder']} |",
        *self_training_markdown(report.get("self-training")),
        *rehearsal_markdown(report.get("rehearsal")),
        "", "## The plan", "", "| choice | value | why |", "| --- | --- | --- |",
        *(f"| {name} | {c['value']} | {c['why']} |" for name, c in report["plan"].items()),
        "", f"## Lines that got worse ({len(report['worse lines'])} shown)", "",
    ]  # fmt: skip
    if report["worse lines"]:
        lines += ["| reference | before | after | errors before → after |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['reference']} | {r['before']} | {r['after']} | {r['errors before']} → {r['errors after']} |"
                  for r in report["worse lines"]]  # fmt: skip
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def self_training_markdown(record: dict | None) -> list[str]:
    """The report's self-training section: each round's pseudo-labelled lines and validation CER (none: nothing)."""
    if not record:
        return []
    from htr.hub import percent

    lines = ["", "## Self-training", "",
             f"{record['untranscribed lines']:,} untranscribed lines read; the more confident "
             f"{100 * record['share kept']:.0f}% joined the transcribed lines each round. The model kept: "
             f"{record['model']}.", "",
             "| round | pseudo-labelled lines | epochs | CER | CER before the round | kept |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    lines += [f"| {r['round']} | {r['pseudo-labelled lines']:,} | {r['epochs']} | {percent(r['cer'])} | "
              f"{percent(r['cer before'])} | {'yes' if r['kept'] else 'no'} |" for r in record["rounds"]]  # fmt: skip
    return lines


def rehearsal_markdown(record: dict | None) -> list[str]:
    """The report's rehearsal section: each rehearsed dataset's share of training and its validation CER before
    and after (none: nothing)."""
    if not record:
        return []
    from htr.hub import percent

    lines = ["", "## Rehearsal", "",
             f"{100 * record['share']:.0f}% of each epoch's lines came from these datasets, so that the model keeps "
             "reading them:", "",
             "| dataset | training lines | validation lines | CER before | CER after |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for source, kept in record["datasets"].items():
        if "before" in kept:
            lines.append(f"| {source} | {kept['training lines']:,} | {kept['after']['lines']:,} | "
                         f"{percent(kept['before']['cer'])} | {percent(kept['after']['cer'])} |")  # fmt: skip
        else:
            lines.append(f"| {source} | {kept['training lines']:,} | (no validation split) | | |")
    return lines


if __name__ == "__main__":  # python -m htr.finetune: its command line is htr.cli.finetune (run, not imported)
    import runpy

    runpy.run_module("htr.cli.finetune", run_name="__main__", alter_sys=True)
