"""Train the line finder (``htr.pages.line_detector``) on pages with line polygons and on composed pages.

    python -m htr.train_line_detector --pages data/layout-train --composed ../shared/data/iam-dev \\
        --output line_detector.pt --steps 3000

``--pages`` folders hold PAGE XML or ALTO files with their images (beside them, named by the XML or by the same
stem); ``--composed`` line datasets give pages stacked from their training lines (``htr.synth.render.compose_page``).
Every page is prepared once (ink map at ``INPUT_SIDE``, kernel target at half that) and cached beside the output;
training reads random crops, rescaled, slightly rotated, with varied contrast and noise. A share of the pages is
held out to choose the threshold and keep the best state (by line-box F1 at IoU >= 0.5); the last state is saved
every ``--save-every`` steps and the run resumes from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from htr.checkpoint import atomic_save
from htr.metrics import matched_boxes
from htr.pages.column_rules import column_rules
from htr.pages.line_detector import LineDetector, letter_heights, widened
from htr.pages.line_finder import END_SHARE, INPUT_SIDE, KERNEL_SHARE, OUTPUT_STRIDE, boxes_from_kernels, network_input
from htr.runtime import autocast, describe, resolve_device, resolve_precision
from htr.training.weight_average import weight_average

CROP = 512
END_EXTENDS = (0.05, 0.1, 0.15, 0.25)  # box growth at line ends tried on the held-out pages


def kernel_target(shape: tuple[int, int], polygons: list[np.ndarray], end_share: float = END_SHARE) -> np.ndarray:
    """(H, W) uint8 map of the lines' kernels: for every column of each polygon, the middle ``KERNEL_SHARE`` of its
    height, less ``end_share`` of its mean height at each end. ``polygons``: (K, 2) float arrays of x, y in the
    map's pixels."""
    target = np.zeros(shape, np.uint8)
    for polygon in polygons:
        left, top = np.floor(polygon.min(axis=0)).astype(int)
        right, bottom = np.ceil(polygon.max(axis=0)).astype(int) + 1
        left, top, right, bottom = max(left, 0), max(top, 0), min(right, shape[1]), min(bottom, shape[0])
        if right <= left or bottom <= top:
            continue
        local = np.zeros((bottom - top, right - left), np.uint8)
        cv2.fillPoly(local, [np.round(polygon - [left, top]).astype(np.int32)], 1)
        filled = local.any(axis=0)
        rows = np.arange(local.shape[0])[:, None]
        first = np.where(filled, local.argmax(axis=0), 0)
        last = np.where(filled, local.shape[0] - 1 - local[::-1].argmax(axis=0), -1)
        margin = (last - first + 1) * (1 - KERNEL_SHARE) / 2
        core = (rows >= first + np.floor(margin)) & (rows <= last - np.floor(margin)) & filled
        columns = np.flatnonzero(filled)
        if len(columns):
            trim = int(end_share * (last - first + 1)[filled].mean())
            a, b = columns[0] + trim, columns[-1] - trim
            a, b = (a, b) if a <= b else ((a + b) // 2, (a + b) // 2)  # a short word: its middle column
            core[:, : max(a, 0)] = False
            core[:, b + 1 :] = False
        target[top:bottom, left:right] |= core.astype(np.uint8)
    return target


def prepare_page(gray: np.ndarray, polygons: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list]:
    """(ink at INPUT_SIDE as uint8, kernel target at half that, line boxes in target pixels) of a grey page and
    its line polygons (in the page's pixels)."""
    from htr.reading.preprocess import ink_map

    ink, factor = network_input(ink_map(gray), INPUT_SIDE)
    scale = factor / OUTPUT_STRIDE
    shape = (ink.shape[0] // OUTPUT_STRIDE, ink.shape[1] // OUTPUT_STRIDE)
    scaled = [p * scale for p in polygons]
    boxes = [(*p.min(axis=0), *(p.max(axis=0) + 1)) for p in scaled]
    return (ink * 255).round().astype(np.uint8), kernel_target(shape, scaled), boxes


def xml_pages(folders: list[str]) -> list[tuple[str, np.ndarray, np.ndarray, list]]:
    from htr.pages.page_xml import find_image, read_page
    from htr.reading.preprocess import load_image, to_grayscale

    pages = []
    paths = sorted(p for folder in folders for p in Path(folder).rglob("*.xml"))
    for xml_path in tqdm(paths, desc="preparing pages"):
        try:
            page = read_page(xml_path)
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
            print(f"skipped {xml_path}: {error}")
            continue
        image_path = find_image(xml_path, page.image)
        if image_path is None or not page.lines:
            continue
        try:
            gray = to_grayscale(load_image(image_path))
        except Exception as error:  # noqa: BLE001 - a broken image must not stop the others
            print(f"skipped {xml_path}: cannot read {image_path.name} ({error})")
            continue
        width, height = page.size or (gray.shape[1], gray.shape[0])
        sx, sy = gray.shape[1] / width, gray.shape[0] / height
        polygons = [np.array(line.polygon, np.float32) * [sx, sy] for line in page.lines]
        pages.append((str(xml_path), *prepare_page(gray, polygons)))
    return pages


def composed_pages(datasets: list[str], count: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, list]]:
    from htr.data import decode_row_image, load_splits
    from htr.synth.render import compose_page

    rng = np.random.default_rng(seed)
    pages = []
    for dataset in datasets:
        split = load_splits(dataset)["train"]
        for k in tqdm(range(count), desc=f"composing {Path(dataset).name}"):
            chosen = rng.choice(len(split), size=int(rng.integers(2, 9)), replace=False)
            image, boxes = compose_page([decode_row_image(split[int(i)]["image"]) for i in chosen], rng)
            gray = np.asarray(image.convert("L"))
            polygons = [np.array([[a, b], [c, b], [c, d], [a, d]], np.float32) for a, b, c, d in boxes]
            pages.append((f"{dataset}#{k}", *prepare_page(gray, polygons)))
    return pages


def composed_letters(datasets: list[str], count: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, list]]:
    """``count`` letter pages per line dataset (``htr.synth.render.compose_letter``): its training lines as the
    body, a corner date or address and the closing and signature, under 0-2 printed letterhead lines set from its
    texts: what finding *every* line of a letter takes."""
    from htr.data import decode_row_image, load_splits, normalize_text
    from htr.synth.render import compose_letter, printed_fonts
    from htr.synth.synthetic import FontRenderer

    rng = np.random.default_rng(seed + 1)
    pages = []
    for dataset in datasets:
        split = load_splits(dataset)["train"]
        printer = FontRenderer([normalize_text(t) for t in split["text"][:2000]], printed_fonts(), span_p=0.7,
                               printed=True, capitals_p=0.5)  # fmt: skip
        for k in tqdm(range(count), desc=f"composing letters of {Path(dataset).name}"):
            lines = [decode_row_image(split[int(i)]["image"]) for i in rng.choice(len(split), 9, replace=False)]
            printed = [printer(int(rng.integers(len(printer))), rng)[0] for _ in range(int(rng.integers(0, 3)))]
            body = int(rng.integers(3, 7))
            corner, closing = lines[body : body + int(rng.integers(1, 3))], lines[7 : 7 + int(rng.integers(1, 3))]
            image, boxes = compose_letter(printed, corner, lines[:body], closing, rng)
            polygons = [np.array([[a, b], [c, b], [c, d], [a, d]], np.float32) for a, b, c, d in boxes]
            pages.append((f"{dataset}#letter{k}", *prepare_page(np.asarray(image.convert("L")), polygons)))
    return pages


def augmented_crop(ink: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random CROP x CROP input (float, 0..1) and its CROP/2 target: rescaled 0.7-1.4x, rotated up to 3 degrees,
    contrast, gamma, blur and noise varied."""
    scale = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    angle = float(rng.uniform(-3, 3))
    small = (target.shape[1], target.shape[0])
    centre = (rng.uniform(0, small[0]), rng.uniform(0, small[1]))
    half = CROP // OUTPUT_STRIDE
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[:, 2] += (half / 2 - centre[0], half / 2 - centre[1])
    crop_target = cv2.warpAffine(target, matrix, (half, half), flags=cv2.INTER_NEAREST)
    full = matrix.copy()
    full[:, 2] *= OUTPUT_STRIDE  # the same map in the input's pixels (twice the target's)
    crop = cv2.warpAffine(ink, full, (CROP, CROP), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
    crop = np.clip(crop * rng.uniform(0.6, 1.3), 0, 1) ** rng.uniform(0.6, 1.5)
    if rng.random() < 0.3:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.5, 1.5))
    crop = np.clip(crop + rng.normal(0, rng.uniform(0, 0.08), crop.shape), 0, 1)
    return crop.astype(np.float32), crop_target


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice (the kernels are a small share of the page)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def collection_of(name: str, folders: list[str]) -> str:
    """The collection a prepared page belongs to: its ``--pages`` folder (with the first subfolder, where the
    folder holds one per collection, as ``page_segmentation.py extract`` writes them), or "composed" /
    "composed letters"."""
    for folder in folders:
        if Path(name).is_relative_to(folder):
            inner = Path(name).relative_to(folder).parts
            return str(Path(folder, inner[0])) if len(inner) > 1 else folder
    return "composed letters" if "#letter" in name else "composed"


@torch.inference_mode()
def validate(model: LineDetector, pages: list, thresholds=(0.5, 0.6, 0.7, 0.8), end_extends=END_EXTENDS,
             collections: list[str] | None = None) -> tuple[dict[tuple[float, float], float], dict]:  # fmt: skip
    """Line-box F1 on held-out pages for each threshold and end extension (how far each kernel's box is grown at
    its ends, in line heights), over all pages and by collection (``collections``: one name per page; default:
    one collection). The network runs in fp32 on the device its weights are on."""
    model.eval()
    device = next(model.parameters()).device
    collections = collections or ["all"] * len(pages)
    sums = {(c, t, e): [0, 0, 0] for c in set(collections) for t in thresholds for e in end_extends}
    for (_, ink, _, boxes), collection in zip(pages, collections):
        ink_map = torch.from_numpy(ink.astype(np.float32) / 255)[None, None].to(device)
        probability = torch.sigmoid(model(ink_map))[0, 0].float().cpu().numpy()
        rules = column_rules(ink / 255, probability.shape)
        for t in thresholds:
            for e in end_extends:
                found = boxes_from_kernels(probability, 1.0, t, ink[::OUTPUT_STRIDE, ::OUTPUT_STRIDE] / 255, e,
                                           rules=rules)  # fmt: skip
                for k, v in enumerate((matched_boxes(found, boxes), len(found), len(boxes))):
                    sums[collection, t, e][k] += v
    model.train()

    def f1(counts: list) -> float:
        matched, found, truth = (sum(values) for values in zip(*counts))
        return 2 * matched / max(1, found + truth)

    overall = {(t, e): f1([v for (_, t2, e2), v in sums.items() if (t2, e2) == (t, e)])
               for t in thresholds for e in end_extends}  # fmt: skip
    by_collection = {(t, e): {c: f1([sums[c, t, e]]) for c in sorted(set(collections))} for (t, e) in overall}
    return overall, by_collection


def run(args) -> int:
    """Train (or resume) the line finder as ``args`` say (``htr.cli.train_lines`` reads them from the command line:
    pages, composed pages and letters, output, steps, batch size, learning rate, width, start, held-out share,
    validation and saving intervals, seed, weight average, device and precision)."""
    output = Path(args.output)
    inputs = json.dumps(
        [args.pages, args.composed, args.composed_pages, args.seed, INPUT_SIDE, END_SHARE]
        + ([args.composed_letters] if args.composed_letters else [])
        + ["baseline-only lines: the line thickness"]  # page_xml.widen_baseline_only_lines changes their targets
    )
    key = hashlib.sha1(inputs.encode()).hexdigest()[:10]  # another geometry or other pages: prepared anew
    cache = output.with_name(f"{output.stem}.pages-{key}.npz")
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        meta = json.loads(str(data["meta"]))
        pages = [(name, data[f"ink{i}"], data[f"target{i}"], [tuple(b) for b in meta["boxes"][i]])
                 for i, name in enumerate(meta["names"])]  # fmt: skip
    else:
        pages = xml_pages(args.pages) + composed_pages(args.composed, args.composed_pages, args.seed)
        pages += composed_letters(args.composed, args.composed_letters, args.seed) if args.composed_letters else []
        arrays = {f"ink{i}": p[1] for i, p in enumerate(pages)} | {f"target{i}": p[2] for i, p in enumerate(pages)}
        meta = {"names": [p[0] for p in pages], "boxes": [[[float(v) for v in b] for b in p[3]] for p in pages]}
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, meta=json.dumps(meta), **arrays)
        os.replace(tmp, cache)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(pages))
    n_held = max(1, int(len(pages) * args.held_out))
    held, train = [pages[i] for i in order[:n_held]], [pages[i] for i in order[n_held:]]
    held_collections = [collection_of(page[0], args.pages) for page in held]
    held_counts = ", ".join(f"{c} {held_collections.count(c)}" for c in sorted(set(held_collections)))
    print(f"{len(train)} training pages, {len(held)} held out ({held_counts})")
    trained_on = {  # recorded in the finder: which pages taught it
        "pages": [str(Path(p[0]).relative_to(f)) for f in args.pages for p in train if Path(p[0]).is_relative_to(f)],
        "composed_pages": {d: sum(p[0].startswith(d + "#") for p in train) for d in args.composed},
    }
    letter_range = list(letter_heights([p[1] for p in train]))  # pages at predict time are scaled into this range
    torch.manual_seed(args.seed)
    if args.init_from:
        start_from = torch.load(args.init_from, map_location="cpu", weights_only=True)
        model = LineDetector(**start_from["config"])
        model.load_state_dict(start_from["model"])
        print(f"starting from {args.init_from} (held-out F1 {start_from.get('held_out_f1', float('nan')):.3f})")
        if args.width and args.width != model.config["width"]:
            model = widened(model, args.width)
            print(f"widened to width {args.width}")
    else:
        model = LineDetector(args.width or 16)
    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)  # auto: bf16 only where the hardware has it natively
    print(f"training on {describe(device, dtype)}")
    model = model.to(device)
    ema = weight_average(model, args.ema_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    warmup = max(1, args.steps // 20)  # then cosine to zero at --steps (a larger --steps on resume extends it)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / args.steps)))
    )
    state_path = output.with_name(output.stem + ".last.pt")
    step, best, history = 0, -1.0, []
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, best, history = state["step"], state["best"], state["history"]
        if state.get("keep_by", "pages") != args.keep_by:  # its best was measured another way: the next one counts
            best = -1.0
        rng = np.random.default_rng([args.seed, step])
        print(f"resumed at step {step}")
    start, bar = time.time(), tqdm(total=args.steps, initial=step, desc="training")
    while step < args.steps:
        batch = [augmented_crop(*train[int(rng.integers(len(train)))][1:3], rng) for _ in range(args.batch_size)]
        inputs = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None].to(device)
        targets = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.float32))[:, None].to(device)
        with autocast(device, dtype):
            logits = model(inputs)
        loss = loss_fn(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % args.validate_every == 0 or step == args.steps:
            evaluated = ema.module if ema is not None else model  # the weights validated and saved
            scores, by_collection = validate(evaluated, held, collections=held_collections)
            if args.keep_by == "collections":  # each collection counts alike, whatever its number of lines
                scores = {key: sum(f1s.values()) / len(f1s) for key, f1s in by_collection.items()}
            (threshold, end_extend), f1 = max(scores.items(), key=lambda kv: kv[1])
            collections = {name: round(value, 4) for name, value in by_collection[threshold, end_extend].items()}
            history.append({"step": step, "f1": f1, "threshold": threshold, "end_extend": end_extend,
                            "collections": collections, "seconds": round(time.time() - start)})  # fmt: skip
            kind = "the collections' mean" if args.keep_by == "collections" else "all lines"
            each = ", ".join(f"{name} {value:.3f}" for name, value in collections.items())
            print(f"step {step}: held-out F1 {f1:.3f} ({kind}; {each}) at threshold {threshold}, ends grown "
                  f"{end_extend}", flush=True)  # fmt: skip
            if f1 > best:
                best = f1
                geometry = {"input_side": INPUT_SIDE, "end_share": END_SHARE, "end_extend": end_extend,
                            "letter_range": letter_range}  # fmt: skip
                weights = {k: v.cpu() for k, v in evaluated.state_dict().items()}  # loads on any machine
                finder = {"config": model.config, "model": weights, "threshold": threshold,
                          "geometry": geometry, "held_out_f1": f1, "held_out_by": args.keep_by,
                          "held_out_collections": collections, "step": step, "trained_on": trained_on}  # fmt: skip
                atomic_save(finder, output)
        if step % args.save_every == 0 or step == args.steps:
            last = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "step": step, "best": best, "history": history,
                    "ema": ema.state_dict() if ema is not None else None, "scaler": scaler.state_dict(),
                    "keep_by": args.keep_by}  # fmt: skip
            atomic_save(last, state_path)
    print(json.dumps(history, indent=1))
    return 0


if __name__ == "__main__":  # python -m htr.train_line_detector runs htr.cli.train_lines (not imported)
    import runpy

    runpy.run_module("htr.cli.train_lines", run_name="__main__", alter_sys=True)
