"""Train a CRNN on a line dataset; re-running with the same output folder resumes where it stopped.

    python -m htr.train --dataset Teklia/IAM-line --output-dir runs/iam        # hub (needs internet)
    python -m htr.train --dataset path/to/iam-dev --output-dir runs/iam-dev    # local parquet folder

Writes ``OUTPUT_DIR/handwriting_recognizer_best.pth`` (the best model by validation CER) and
``OUTPUT_DIR/last_state.pt`` (everything needed to resume), both atomically, and ``history.json``.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.functional import ctc_loss
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from htr.alphabet import Alphabet
from htr.atomic_file import remove_leftovers
from htr.batching import bucketed_batches, weighted_epoch
from htr.checkpoint import (
    atomic_save,
    load_weights_extending_classes,
    model_checkpoint,
    read_checkpoint,
)
from htr.cpu_share import CpuShare, usable_cores
from htr.data import (
    DEFAULT_DATASET,
    LineDataset,
    collate_lines,
    load_training_data,
    load_validation,
    normalize_text,
    source_name,
)
from htr.evaluate import error_rates, transcribe_dataset
from htr.lm import build_lm
from htr.model import CRNN, ModelConfig, count_parameters
from htr.runtime import (
    autocast,
    describe,
    prefers_channels_last,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from htr.synth.augment import AugmentConfig, augment_batch
from htr.synth.render import list_fonts, printed_fonts
from htr.synth.synthetic import FontRenderer, InkRenderer, Renderer, read_text_lines, render_epoch
from htr.training import distributed
from htr.training.distillation import Teacher, Teachers, distillation_loss
from htr.training.distributed import (
    ONE_PROCESS,
    World,
    all_finite,
    barrier,
    from_main,
    gather,
    rank_share,
    sum_over_ranks,
)
from htr.training.weight_average import weight_average

log = logging.getLogger(__name__)

BEST_NAME = "handwriting_recognizer_best.pth"
STATE_NAME = "last_state.pt"


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in ``last_state.pt``."""

    # hub ids or local save_to_disk/parquet/IAM/labels.tsv paths; their train splits are concatenated
    dataset: list[str] = field(default_factory=lambda: [DEFAULT_DATASET], metadata={"repeat": True})
    dataset_weights: list[float] = field(default_factory=list)  # lines of each dataset per epoch as a multiple
    # of its size (e.g. [1, 0.5]); empty: every line once
    val_dataset: str = ""  # validation split of this source; empty: the first dataset's
    # further sources whose validation splits are read every epoch too; the best checkpoint is then the one with
    # the lowest mean CER over all validation sets (each set's CER in history.json)
    also_validate: list[str] = field(default_factory=list, metadata={"repeat": True})
    min_char_count: int = 1  # a character the start's alphabet lacks joins it only when the training texts hold
    # it this often; lines with rarer ones are left out of training (and count as errors in validation)
    output_dir: str = "runs/htr"  # best checkpoint, last state and history; re-run to resume
    epochs: int = 80
    max_steps: int = 0  # stop (resumably) after this many optimizer steps in total; 0: no limit
    max_minutes: float = 0.0  # stop (resumably) after this many minutes of training and validation over all
    # sittings; the learning-rate schedule ends there too (whichever of steps and minutes runs out first); 0: none
    batch_size: int = 16
    lr: float = 1e-3  # peak AdamW learning rate, reached after warm-up, then cosine decay
    min_lr_ratio: float = 0.05  # final learning rate as a fraction of lr
    warmup_steps: int = 300
    weight_decay: float = 0.01
    clip_grad: float = 5.0  # max gradient norm
    shortcut_weight: float = 0.1  # weight of the auxiliary CTC-shortcut loss
    patience: int = 20  # stop after this many epochs without a better validation CER; 0: never
    precision: str = "auto"  # auto|fp32|bf16|fp16 (see htr.runtime.resolve_precision)
    device: str = "auto"  # auto|cpu|cuda
    num_workers: int = 0  # DataLoader workers (lines are preprocessed once and kept in memory)
    share_cpu: bool = True  # on the CPU, use only the cores other processes leave free (htr.cpu_share)
    seed: int = 0
    val_fraction: float = 0.1  # carved from train when the dataset has no validation split
    iam_keep_err: bool = False  # IAM folder layout: also keep lines marked 'err'
    use_augment: bool = True
    max_train_lines: int = 0  # use only the first N training lines; 0: all
    max_val_lines: int = 0  # use only the first N validation lines; 0: all
    save_every: int = 200  # steps between last-state saves within an epoch
    init_from: str = ""  # start from this checkpoint's weights and architecture (fresh optimizer); see README
    init_dropout: float = -1.0  # with init_from: this dropout instead of the start's (< 0: the start's)
    freeze_cnn: bool = False  # train only the LSTM and the output layers (the convolutions keep their weights)
    photo_share: float = 0.0  # share of real training lines drawn as a simulated phone photo of themselves
    ink: str = ""  # IAM-OnDB folder or archive (lineStrokes/ + ascii/): adds rendered ink lines to every epoch
    ink_ratio: float = 1.0  # rendered ink lines per real training line in each epoch (with --ink)
    font_text: str = ""  # text file(s), comma-separated: adds their lines drawn in handwriting fonts
    font_ratio: float = 1.0  # font-rendered lines per real training line in each epoch (with --font-text)
    font_dir: str = ""  # folder of .ttf/.otf/.woff(2) fonts; empty: the bundled ones (htr/fonts)
    print_text: str = ""  # text file(s), comma-separated: adds their lines set in printing and typewriter fonts
    print_ratio: float = 0.1  # printed lines per real training line in each epoch (with --print-text)
    render_workers: int = 2  # processes rendering the synthetic lines at the start of each epoch
    lm_order: int = 6  # order of the character LM built from the training texts into checkpoints; 0: none
    ema_decay: float = 0.0  # >0: validate and save an exponential moving average of the weights (e.g. 0.999)
    teacher: str = ""  # distil: also learn this checkpoint's CTC posteriors frame by frame (htr.training.distillation)
    # with --teacher: a teacher per dataset, in --dataset order (e.g. ["", "letters.pth"]: an expert on each hand);
    # "" and the synthetic lines: --teacher
    dataset_teachers: list[str] = field(default_factory=list)
    distill_weight: float = 1.0  # weight of the distillation loss beside the CTC loss (with --teacher)
    distill_temperature: float = 2.0  # softening of both distributions in the distillation loss
    model: ModelConfig = field(default_factory=lambda: ModelConfig(num_classes=0))
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.dataset, str):  # one source given as a plain string
            self.dataset = [self.dataset]
        if self.dataset_weights and len(self.dataset_weights) != len(self.dataset):
            raise ValueError(f"{len(self.dataset_weights)} dataset weights for {len(self.dataset)} datasets")
        if self.dataset_teachers and len(self.dataset_teachers) != len(self.dataset):
            raise ValueError(f"{len(self.dataset_teachers)} dataset teachers for {len(self.dataset)} datasets")
        if any(self.dataset_teachers) and not self.teacher:
            raise ValueError("--dataset-teachers needs --teacher (for the synthetic lines and the other datasets)")

    def weights(self) -> list[float]:
        """Per-dataset weights (1 each unless ``dataset_weights`` says otherwise)."""
        return list(self.dataset_weights) or [1.0] * len(self.dataset)


def lr_factor(step: int, cfg: TrainConfig, total_steps: int, budget_spent: float = 0.0) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at ``total_steps``, or earlier when the share
    ``budget_spent`` of ``max_minutes`` is further along than the steps are."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    progress = max(progress, min(1.0, budget_spent))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def ctc_losses(
    model: CRNN, batch: dict, device: torch.device, dtype: torch.dtype | None, net: torch.nn.Module | None = None,
    teacher: Teacher | Teachers | None = None, temperature: float = 1.0,
) -> tuple:  # fmt: skip
    """Mean CTC loss of the main head, of the shortcut head (or None), and the distillation loss towards
    ``teacher`` (or None; `Teachers` choose by ``batch["sources"]``); ``net``: the module to run (``model`` wrapped
    in DistributedDataParallel under torchrun)."""
    with autocast(device, dtype):
        log_probs, shortcut = (net or model)(batch["images"])
        target = teacher(batch["images"], batch.get("sources")) if teacher is not None else None
    lengths = model.output_lengths(batch["widths"])
    args = (batch["targets"], lengths, batch["target_lengths"])
    main = ctc_loss(log_probs, *args, zero_infinity=True)
    aux = ctc_loss(shortcut, *args, zero_infinity=True) if shortcut is not None else None
    distilled = distillation_loss(log_probs, target, lengths, temperature) if target is not None else None
    return main, aux, distilled


def train_step(
    model: CRNN, batch: dict, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler, cfg: TrainConfig, device: torch.device, dtype: torch.dtype | None,
    net: torch.nn.Module | None = None, world: World = ONE_PROCESS, weight: float = 1.0,
    teacher: Teacher | Teachers | None = None,
) -> float | None:  # fmt: skip
    """Augment one batch on ``device``, take one optimizer step; returns the main head's CTC loss (of the whole
    global batch under torchrun), or None when the loss was not finite (on any rank) and the batch was skipped.
    ``weight``: this rank's share of the global batch (``htr.training.distributed.rank_share``); ``teacher``: distil
    from it (``cfg.distill_weight``, ``cfg.distill_temperature``)."""
    images, widths = batch["images"].to(device, non_blocking=True), batch["widths"]
    if cfg.use_augment:
        images, widths = augment_batch(images, widths, cfg.augment)
    if prefers_channels_last(device, dtype):
        images = images.contiguous(memory_format=torch.channels_last)
    main, aux, distilled = ctc_losses(model, {**batch, "images": images, "widths": widths}, device, dtype, net,
                                      teacher, cfg.distill_temperature)  # fmt: skip
    loss = main + cfg.shortcut_weight * aux if aux is not None else main
    if distilled is not None:
        loss = loss + cfg.distill_weight * distilled
    loss = weight * loss
    optimizer.zero_grad(set_to_none=True)
    if not all_finite(loss, world):  # skip the update rather than poison the weights; the schedule moves on
        scheduler.step()
        return None
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return sum_over_ranks(weight * main.item(), world, device) / world.size


def synthetic_renderers(cfg: TrainConfig) -> list[tuple[Renderer, float]]:
    """The configured synthetic sources with their ratio to the real training lines."""
    renderers: list[tuple[Renderer, float]] = []
    if cfg.ink and cfg.ink_ratio > 0:
        from htr.synth.iamondb import load_iamondb

        renderers.append((InkRenderer(load_iamondb(cfg.ink)), cfg.ink_ratio))
    if cfg.font_text and cfg.font_ratio > 0:
        fonts = list_fonts(cfg.font_dir) if cfg.font_dir else []
        renderers.append((FontRenderer(read_text_lines(cfg.font_text), fonts), cfg.font_ratio))
    if cfg.print_text and cfg.print_ratio > 0:
        printed = FontRenderer(read_text_lines(cfg.print_text), printed_fonts(), printed=True, capitals_p=0.3)
        renderers.append((printed, cfg.print_ratio))
    return renderers


def train(cfg: TrainConfig, progress: bool = True, renderers: list[tuple[Renderer, float]] | None = None) -> dict:
    """Train (or resume) as configured; returns ``{"best_cer", "history", "best_path", "state_path",
    "skipped_batches"}``. ``renderers``: ``synthetic_renderers(cfg)`` when already built (IAM-OnDB loads once)."""
    world, device = distributed.setup(resolve_device(cfg.device))
    try:
        return _train(cfg, progress and world.is_main, renderers, world, device)
    finally:
        distributed.cleanup()


def _train(cfg: TrainConfig, progress: bool, renderers, world: World, device: torch.device) -> dict:
    out = Path(cfg.output_dir)
    best_path, state_path = out / BEST_NAME, out / STATE_NAME
    dtype = resolve_precision(cfg.precision, device)
    seed_everything(cfg.seed)
    cpu_share = CpuShare(period=10.0) if device.type == "cpu" and cfg.share_cpu and not world.distributed else None
    if world.distributed and cfg.max_minutes:
        raise ValueError("--max-minutes is for one process; under torchrun give --epochs or --max-steps")
    if device.type == "cpu" and world.distributed:  # the machine's cores split between its ranks
        torch.set_num_threads(max(1, usable_cores() // world.local_size))
    if world.is_main:  # what a killed run left half-written
        remove_leftovers(best_path)
        remove_leftovers(state_path)
    state = None
    if world.is_main and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    state = from_main(state, world)  # every rank resumes rank 0's state: no shared file system needed for it

    # the checkpoints first: a mistyped path fails at once, not after the data has loaded
    initial = read_checkpoint(cfg.init_from) if cfg.init_from and not state else None
    teacher_state = read_checkpoint(cfg.teacher) if cfg.teacher else None
    # --teacher's own path among them is the same teacher, read once
    dataset_teacher_states = {path: read_checkpoint(path) for path in set(cfg.dataset_teachers) - {"", cfg.teacher}}
    train_splits, val_split = load_training_data(cfg.dataset, cfg.val_dataset, cfg.val_fraction, cfg.seed,
                                                 cfg.iam_keep_err)  # fmt: skip
    renderers = synthetic_renderers(cfg) if renderers is None else renderers
    extra_val_splits = [load_validation(source, cfg.val_fraction, cfg.seed, cfg.iam_keep_err)
                        for source in cfg.also_validate]  # fmt: skip
    texts = [normalize_text(t) for split in train_splits for t in split["text"]]
    texts += [t for r, _ in renderers for t in r.texts]
    if state:
        alphabet, model_cfg = Alphabet(state["alphabet"]), ModelConfig(**state["model_config"])
    else:  # the alphabet of the start's weights (or else of the teacher) first, so that their classes line up
        known = (initial or teacher_state or {}).get("alphabet", "")
        alphabet = extended_alphabet(known, texts, cfg.min_char_count)
        model_cfg = ModelConfig(**{**initial["model_config"], "num_classes": alphabet.num_classes}) if initial \
            else dataclasses.replace(cfg.model, num_classes=alphabet.num_classes)  # fmt: skip
        if initial and cfg.init_dropout >= 0:
            model_cfg = dataclasses.replace(model_cfg, dropout=cfg.init_dropout)
    model = CRNN(model_cfg)
    if initial is not None:
        added = load_weights_extending_classes(model, initial["state_dict"])
        log.info(
            "initialised from %s (%d new characters: %r)",
            cfg.init_from,
            added,
            alphabet.chars[-added:] if added else "",
        )
    if cfg.freeze_cnn:
        model.cnn.requires_grad_(False)
    model = model.to(device)
    # deterministic, so rebuilt on resume; only rank 0 writes checkpoints
    lm = build_lm(texts, cfg.lm_order) if cfg.lm_order > 0 and world.is_main else None

    height, frames = model_cfg.height, model.output_length
    real_sets = [LineDataset(split, alphabet, height, frames, "train" if len(train_splits) == 1 else f"train {source}",
                             cfg.max_train_lines, photo_share=cfg.photo_share)
                 for split, source in zip(train_splits, cfg.dataset)]  # fmt: skip
    train_set = torch.utils.data.ConcatDataset(real_sets)
    train_widths = [w for s in real_sets for w in s.widths]
    val_names = unique_names([cfg.val_dataset or cfg.dataset[0], *cfg.also_validate])
    val_sets = [LineDataset(split, alphabet, height, frames, f"validation {name}" if len(val_names) > 1 else
                            "validation", cfg.max_val_lines, for_training=False)
                for split, name in zip([val_split, *extra_val_splits], val_names)]  # fmt: skip
    real_per_epoch = len(weighted_epoch([len(s) for s in real_sets], cfg.weights(), cfg.seed))
    parts = [(renderer, round(ratio * real_per_epoch)) for renderer, ratio in renderers]
    parts = [(renderer, count) for renderer, count in parts if count > 0]
    synthetic_per_epoch = sum(count for _, count in parts)
    steps_per_epoch = math.ceil((real_per_epoch + synthetic_per_epoch) / cfg.batch_size)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    if prefers_channels_last(device, dtype):
        model = model.to(memory_format=torch.channels_last)
    teacher = Teacher(cfg.teacher, model_cfg, alphabet, device, prefers_channels_last(device, dtype),
                      teacher_state) if teacher_state else None  # fmt: skip
    if dataset_teacher_states:
        experts = {path: Teacher(path, model_cfg, alphabet, device, prefers_channels_last(device, dtype), state)
                   for path, state in dataset_teacher_states.items()}  # fmt: skip
        teacher = Teachers(teacher, [experts.get(path) for path in cfg.dataset_teachers])  # others: --teacher
    net = None  # what the training step runs: the model itself, or wrapped to all-reduce its gradients
    if world.distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget = TimeBudget(cfg.max_minutes)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, total_steps, budget.spent()))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    ema = weight_average(model, cfg.ema_decay)

    run = Run(cfg, world, device, dtype, cpu_share, alphabet, model_cfg, model, net, optimizer, scheduler, scaler, ema,
              teacher, lm, out, budget)  # fmt: skip
    if state:
        run.restore(state)
    if world.distributed:  # each rank its own augmentation stream, re-derived (not restored) on every resume
        torch.manual_seed(cfg.seed * 1_000_003 + world.rank * 10_007 + run.progress.step)
        if device.type == "cuda":
            torch.cuda.manual_seed(cfg.seed * 1_000_003 + world.rank * 10_007 + run.progress.step)
    log.info("model: %.2fM parameters, %d classes; device %s, precision %s%s", count_parameters(model) / 1e6,
             alphabet.num_classes, device, dtype or "fp32",
             f"; {world.size} processes, global batch {cfg.batch_size}" if world.distributed else "")  # fmt: skip
    log.info("train: %d real + %d synthetic lines per epoch; validation: %s lines", real_per_epoch,
             synthetic_per_epoch, " + ".join(str(len(v)) for v in val_sets))  # fmt: skip
    done = run.progress
    try:
        while done.epoch < cfg.epochs and (not cfg.max_steps or done.step < cfg.max_steps) and not budget.used_up():
            chosen = weighted_epoch([len(s) for s in real_sets], cfg.weights(), cfg.seed * 100_003 + done.epoch)
            widths = [train_widths[i] for i in chosen]
            sources = [bisect.bisect_right(train_set.cumulative_sizes, i) for i in chosen]  # each line's dataset
            epoch_set = EpochLines(torch.utils.data.Subset(train_set, chosen), widths, sources)
            if parts:
                synthetic = render_epoch(parts, alphabet, height, frames, cfg.seed, done.epoch, cfg.render_workers,
                                         progress, share=(world.rank, world.size))  # fmt: skip
                epoch_set.add_synthetic(synthetic, gather(list(zip(synthetic.positions, synthetic.widths)), world))
            finished, running = run.train_epoch(epoch_set, progress)
            if not finished and budget.used_up():  # the time is up: the weights it reached are validated
                run.end_epoch(val_sets, val_names, running)
                log.info("stopped at step %d: %.1f of %.1f minutes used; re-run with a larger time budget to go on",
                         done.step, budget.seconds() / 60, cfg.max_minutes)  # fmt: skip
                break
            if not finished:  # stopped by max_steps inside the epoch
                run.save_state()
                log.info("stopped at step %d (max_steps); re-run to resume", done.step)
                break
            if run.end_epoch(val_sets, val_names, running):
                log.info("no improvement for %d epochs: early stop", done.bad_epochs)
                break
    except KeyboardInterrupt:
        run.save_state()
        log.info("interrupted at step %d; state saved to %s, re-run to resume", done.step, run.state_path)
        raise
    barrier(world)  # no rank leaves before rank 0 has written its files
    return {"best_cer": done.best_cer, "history": done.history, "best_path": run.best_path, "state_path": state_path,
            "skipped_batches": done.skipped_batches, "world_size": world.size}  # fmt: skip


@dataclass
class Progress:
    """How far a run has got, over all its sittings; saved in ``last_state.pt`` and restored on resume."""

    epoch: int = 0  # epochs finished
    batch_in_epoch: int = 0  # batches of the current epoch done
    step: int = 0
    best_cer: float = math.inf
    bad_epochs: int = 0  # epochs since the best validation CER
    history: list = field(default_factory=list)  # one entry per validated epoch (history.json)
    skipped_batches: int = 0  # batches whose loss was not finite
    lines_seen: int = 0  # training lines in the optimizer loop
    train_seconds: float = 0.0  # wall time in the optimizer loop
    val_seconds: float = 0.0  # wall time validating

    @classmethod
    def from_state(cls, state: dict, batch_size: int) -> Progress:
        return cls(state["epoch"], state["batch_in_epoch"], state["step"], state["best_cer"], state["bad_epochs"],
                   state["history"], state.get("skipped_batches", 0),
                   state.get("lines_seen", state["step"] * batch_size),  # states from before lines were counted
                   state.get("train_seconds", 0.0), state.get("val_seconds", 0.0))  # fmt: skip


@dataclass
class TimeBudget:
    """``max_minutes`` of training and validation over all sittings (0: no budget), read from a run's `Progress`."""

    minutes: float
    progress: Progress = field(default_factory=Progress)
    last_validation: float = 0.0  # seconds the latest validation took: kept free at the end of the budget

    def seconds(self) -> float:
        return self.progress.train_seconds + self.progress.val_seconds

    def spent(self) -> float:
        """The share of the budget used, with room for one more validation (0 without a budget)."""
        return (self.seconds() + self.last_validation) / (60 * self.minutes) if self.minutes > 0 else 0.0

    def used_up(self) -> bool:
        return self.minutes > 0 and self.spent() >= 1.0

    def seconds_left(self) -> float:
        """What is left of the budget (infinite without one)."""
        return max(0.0, 60 * self.minutes - self.seconds()) if self.minutes > 0 else math.inf


@dataclass
class Run:
    """One training run's objects, and its three steps: `train_epoch`, `end_epoch` (validate, keep the best) and
    `save_state` / `restore` (resuming)."""

    cfg: TrainConfig
    world: World
    device: torch.device
    dtype: torch.dtype | None
    cpu_share: CpuShare | None
    alphabet: Alphabet
    model_cfg: ModelConfig
    model: CRNN
    net: torch.nn.Module | None  # what the training step runs: the model, or wrapped to all-reduce its gradients
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: torch.nn.Module | None
    teacher: Teacher | Teachers | None
    lm: object | None  # the character LM stored in best checkpoints (rank 0 only)
    out: Path
    budget: TimeBudget = field(default_factory=lambda: TimeBudget(0.0))
    progress: Progress = field(default_factory=Progress)

    def __post_init__(self) -> None:
        self.best_path, self.state_path = self.out / BEST_NAME, self.out / STATE_NAME
        self.budget.progress = self.progress
        sittings = [h.get("sitting", 1) for h in self.progress.history]
        self.sitting = {"sitting": 1 + max(sittings, default=0), "hardware": describe(self.device, self.dtype)}

    def restore(self, state: dict) -> None:
        """Continue from a saved ``last_state.pt``: weights, optimizer, schedule, scaler, weight average, progress
        and (one process) the random generators."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress.from_state(state, self.cfg.batch_size)
        self.__post_init__()  # this sitting's number follows the restored history
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        elif self.ema is not None:
            log.info("the saved state has no weight average: it starts from the current weights")
        if not self.world.distributed:
            torch.set_rng_state(state["rng_cpu"])
            if self.device.type == "cuda" and state.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(state["rng_cuda"])
        done = self.progress
        log.info("resuming from %s: epoch %d, step %d, best CER %.4f", self.state_path, done.epoch + 1, done.step,
                 done.best_cer)  # fmt: skip

    def save_state(self) -> None:
        """Write everything a resumed run needs to ``last_state.pt``, atomically (rank 0)."""
        if not self.world.is_main:
            return
        done = self.progress
        atomic_save({
            "config": json.loads(json.dumps(dataclasses.asdict(self.cfg))), "alphabet": self.alphabet.chars,
            "model_config": self.model_cfg.to_dict(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": done.epoch, "batch_in_epoch": done.batch_in_epoch,
            "step": done.step, "best_cer": done.best_cer, "bad_epochs": done.bad_epochs, "history": done.history,
            "skipped_batches": done.skipped_batches, "rng_cpu": torch.get_rng_state(), "lines_seen": done.lines_seen,
            "train_seconds": done.train_seconds, "val_seconds": done.val_seconds,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng_cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
        }, self.state_path)  # fmt: skip

    def time_left(self) -> str:
        """'  about N min left' from the pace of the epochs so far, within the time budget; '' when done."""
        done, cfg = self.progress, self.cfg
        if done.epoch >= cfg.epochs or not done.epoch:
            return ""
        seconds = min(self.budget.seconds() / done.epoch * (cfg.epochs - done.epoch), self.budget.seconds_left())
        return f"  about {seconds / 60:.0f} min left"

    def train_epoch(self, epoch_set: EpochLines, progress: bool) -> tuple[bool, float | None]:
        """Train on the rest of the current epoch's batches, saving the state every ``save_every`` steps; returns
        whether the epoch finished (not stopped by ``max_steps``) and the smoothed training loss (None when no
        batch was left)."""
        cfg, world, done = self.cfg, self.world, self.progress
        self.model.train()
        if cfg.freeze_cnn:  # its batch-norm statistics stay as trained too
            self.model.cnn.eval()
        batches = bucketed_batches(epoch_set.widths, cfg.batch_size, seed=cfg.seed * 100_003 + done.epoch)
        shares = [rank_share(b, epoch_set.owners, world) for b in batches[done.batch_in_epoch :]]
        loader = torch.utils.data.DataLoader(epoch_set, batch_sampler=[indices for indices, _ in shares],
                                             collate_fn=collate_lines, num_workers=cfg.num_workers)  # fmt: skip
        bar = tqdm(loader, desc=f"epoch {done.epoch + 1}/{cfg.epochs}", disable=not progress, leave=False,
                   initial=done.batch_in_epoch, total=len(batches))  # fmt: skip
        running = None  # smoothed training loss
        clock = time.monotonic()
        for batch, (indices, weight) in zip(bar, shares):
            if self.cpu_share is not None:
                self.cpu_share.update()
            batch["sources"] = [epoch_set.sources[i] for i in indices]
            loss = train_step(self.model, batch, self.optimizer, self.scheduler, self.scaler, cfg, self.device,
                              self.dtype, self.net, world, weight, self.teacher)  # fmt: skip
            if self.ema is not None and world.is_main:
                self.ema.update_parameters(self.model)
            done.lines_seen += len(batches[done.batch_in_epoch])  # the global batch
            done.step, done.batch_in_epoch = done.step + 1, done.batch_in_epoch + 1
            now = time.monotonic()
            done.train_seconds, clock = done.train_seconds + now - clock, now
            if loss is None:
                done.skipped_batches += 1
                log.warning("step %d: non-finite loss, batch skipped (%d so far)", done.step, done.skipped_batches)
            else:
                running = loss if running is None else 0.95 * running + 0.05 * loss
                bar.set_postfix(loss=f"{running:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if (cfg.max_steps and done.step >= cfg.max_steps) or self.budget.used_up():
                break
            if cfg.save_every and done.step % cfg.save_every == 0:
                self.save_state()
        bar.close()
        return done.batch_in_epoch >= len(batches), running

    def end_epoch(self, val_sets: list[LineDataset], val_names: list[str], running: float | None) -> bool:
        """Validate (rank 0), save the model when it is the best so far, record the epoch, save the state; the
        other ranks wait for rank 0's verdict. Returns whether to stop early (``patience``)."""
        cfg, world, done = self.cfg, self.world, self.progress
        evaluated = self.ema.module if self.ema is not None else self.model  # the model validated and saved
        if not world.is_main:  # rank 0 validates and saves; the others wait for its verdict
            done.best_cer, done.bad_epochs, stop = from_main(None, world)
            done.epoch, done.batch_in_epoch = done.epoch + 1, 0
            return stop
        clock = time.monotonic()
        rates = validation_rates(evaluated, val_sets, val_names, self.alphabet, 2 * cfg.batch_size, self.device,
                                 self.dtype, self.cpu_share)  # fmt: skip
        entry = {"epoch": done.epoch + 1, "step": done.step, "train_loss": running, "val_cer": rates["cer"],
                 "val_wer": rates["wer"], "lines_seen": done.lines_seen, "train_seconds": round(done.train_seconds, 1),
                 **self.sitting, **({"val": rates["sets"]} if len(val_sets) > 1 else {})}  # fmt: skip
        if self.ema is not None:  # the raw weights too, to see what the average is worth
            entry["val_cer_raw"] = validation_rates(self.model, val_sets, val_names, self.alphabet, 2 * cfg.batch_size,
                                                    self.device, self.dtype, self.cpu_share)["cer"]  # fmt: skip
        self.budget.last_validation = time.monotonic() - clock
        done.val_seconds += self.budget.last_validation
        done.history.append(entry)
        improved = rates["cer"] < done.best_cer
        if improved:
            done.best_cer, done.bad_epochs = rates["cer"], 0
            metrics = {"val_cer": rates["cer"], "val_wer": rates["wer"], "epoch": done.epoch + 1, "step": done.step,
                       "lines_seen": done.lines_seen, **{k: v for k, v in entry.items() if k == "val"}}  # fmt: skip
            record = training_record(cfg, done.epoch + 1, done.step, done.lines_seen, self.sitting["hardware"])
            atomic_save(model_checkpoint(evaluated, self.alphabet, metrics, self.lm, record), self.best_path)
        else:
            done.bad_epochs += 1
        done.epoch, done.batch_in_epoch = done.epoch + 1, 0
        log.info("epoch %d  step %d  loss %.3f  val CER %.2f%%  WER %.2f%%%s%s", done.epoch, done.step,
                 math.nan if running is None else running, 100 * rates["cer"], 100 * rates["wer"],
                 "  (best, saved)" if improved else "", self.time_left())  # fmt: skip
        self.save_state()
        (self.out / "history.json").write_text(json.dumps(done.history, indent=1))
        stop = bool(cfg.patience and done.bad_epochs >= cfg.patience)
        from_main((done.best_cer, done.bad_epochs, stop), world)
        return stop


def extended_alphabet(known: str, texts: list[str], min_count: int = 1) -> Alphabet:
    """``known`` (the start's alphabet, whose classes keep their places) followed by the characters of ``texts``
    it lacks that occur at least ``min_count`` times, sorted."""
    counts = Counter(c for text in texts for c in text)
    return Alphabet(known + "".join(sorted(c for c, n in counts.items() if n >= min_count and c not in known)))


def unique_names(sources: list[str]) -> list[str]:
    """`source_name` of each source, with ``#2``, ``#3``... after a name met before."""
    names, seen = [], Counter()
    for name in map(source_name, sources):
        seen[name] += 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return names


def validation_rates(
    model: CRNN, val_sets: list[LineDataset], names: list[str], alphabet: Alphabet, batch_size: int,
    device: torch.device, dtype: torch.dtype | None, cpu_share: CpuShare | None = None,
) -> dict:  # fmt: skip
    """Greedy CER and WER on each validation set and their means (``{"cer", "wer", "sets": {name: {cer, wer}}}``);
    with one set the means are its own rates."""
    sets = {}
    for name, val_set in zip(names, val_sets):
        readings = transcribe_dataset(model, val_set, alphabet, batch_size, device, dtype, cpu_share=cpu_share)
        sets[name] = error_rates(val_set.texts, [r.text for r in readings])
    mean = {key: sum(rates[key] for rates in sets.values()) / len(sets) for key in ("cer", "wer")}
    return {**mean, "sets": sets}


class EpochLines(torch.utils.data.Dataset):
    """One epoch's training lines: the chosen real lines (every rank holds them), then the synthetic lines in
    epoch-position order, each held only by the rank that rendered it (``owners``; -1: every rank). ``sources``:
    each line's training dataset (its index in ``--dataset``; -1: synthetic)."""

    def __init__(self, real: torch.utils.data.Dataset, widths: list[int], sources: list[int]) -> None:
        self.real, self.widths, self.sources = real, list(widths), list(sources)
        self.owners = [-1] * len(widths)
        self.local: list[int] = []  # synthetic line j -> its index in this rank's rendered lines (-1: not here)
        self.synthetic: torch.utils.data.Dataset | None = None

    def add_synthetic(self, rendered, kept_by_rank: list[list[tuple[int, int]]]) -> None:
        """``rendered``: this rank's lines (``render_epoch``); ``kept_by_rank``: every rank's (position, width)."""
        mine = {position: i for i, position in enumerate(rendered.positions)}
        merged = sorted((position, width, rank) for rank, kept in enumerate(kept_by_rank) for position, width in kept)
        self.synthetic = rendered
        self.widths += [width for _, width, _ in merged]
        self.sources += [-1] * len(merged)
        self.owners += [rank for _, _, rank in merged]
        self.local = [mine.get(position, -1) for position, _, _ in merged]

    def __len__(self) -> int:
        return len(self.widths)

    def __getitem__(self, index: int):
        if index < len(self.real):
            return self.real[index]
        local = self.local[index - len(self.real)]
        if local < 0:
            raise IndexError(f"synthetic line {index} was rendered by rank {self.owners[index]}, not this one")
        return self.synthetic[local]


def training_record(cfg: TrainConfig, epochs: int, steps: int, lines_seen: int, hardware: str) -> dict:
    """What a checkpoint was trained on and how, in plain data (its model card is written from it)."""
    return {"datasets": [source_name(d) for d in cfg.dataset], "dataset_weights": cfg.weights(),
            "ink": source_name(cfg.ink) or None, "ink_ratio": cfg.ink_ratio if cfg.ink else 0,
            "font_text": [source_name(t) for t in cfg.font_text.split(",") if t],
            "font_ratio": cfg.font_ratio if cfg.font_text else 0,
            "print_text": [source_name(t) for t in cfg.print_text.split(",") if t],
            "print_ratio": cfg.print_ratio if cfg.print_text else 0,
            "epochs": epochs, "steps": steps, "lines_seen": lines_seen, "hardware": hardware,
            "recipe": {"batch size": cfg.batch_size, "peak learning rate": cfg.lr,
                       "schedule": f"{cfg.warmup_steps} warm-up steps, cosine over {cfg.epochs} epochs",
                       "EMA decay": cfg.ema_decay, "augmentation": "on" if cfg.use_augment else "off",
                       "photo share": cfg.photo_share,
                       "initialised from": source_name(cfg.init_from) or "scratch",
                       "distilled from": (f"{source_name(cfg.teacher)} (weight {cfg.distill_weight}, temperature "
                                          f"{cfg.distill_temperature})") if cfg.teacher else "none",
                       **({"teachers by dataset": {source_name(d): source_name(t or cfg.teacher) for d, t in
                                                   zip(cfg.dataset, cfg.dataset_teachers)}}
                          if any(cfg.dataset_teachers) else {})}}  # fmt: skip


if __name__ == "__main__":  # python -m htr.train: its command line is htr.cli.train (run, not imported)
    import runpy

    runpy.run_module("htr.cli.train", run_name="__main__", alter_sys=True)
