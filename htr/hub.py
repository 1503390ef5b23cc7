"""Model folders in the Hugging Face Hub layout: safetensors weights, a JSON config, the LM and a generated card.

    python -m htr.hub export handwriting_recognizer_best.pth models/htr-iam    # .pth -> folder
    python -m htr.hub card models/htr-iam                                        # print the model card
    python -m htr.hub push models/htr-iam your-name/htr-iam                      # needs a token (hf auth login)
    python predict.py --checkpoint models/htr-iam line.png                       # a folder, or a hub repo id
    python -m htr.export --checkpoint models/htr-iam --int8 path/to/iam-dev       # its model.onnx, made anew

A folder holds ``config.json`` (format version, architecture, image height, alphabet, metrics, training record),
``model.safetensors`` (the weights), ``lm.safetensors`` (the character LM's n-grams, when there is one),
``README.md`` (the model card, written from the config) and, when the checkpoint had a current ONNX export beside it
(``X.onnx`` made from ``X.pth``, see ``htr.export``), ``model.onnx``: the same network for ONNX Runtime, which
predict.py then runs on the CPU, as it does beside a ``.pth``. Reading one parses JSON and safetensors only (and
ONNX, which holds no code): no pickle, no code from the folder. Everything that takes ``--checkpoint`` takes a
folder or a hub repo id (``owner/name``, optionally ``@revision``); the hub is asked only when the string is not a
local path.
"""

from __future__ import annotations

import json
from pathlib import Path

from htr.atomic_file import atomic_write
from htr.checkpoint import atomic_save, read_checkpoint
from htr.model_files import (  # noqa: F401  (the folder's names, also used from here)
    CARD_NAME,
    CHECKPOINT_KEYS,
    CONFIG_NAME,
    FOLDER_FILES,
    LM_NAME,
    ONNX_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    download,
    is_repo_id,
    lm_tensors,
    read_for_decoding,
    read_pretrained,
)


def save_pretrained(checkpoint: dict, folder: str | Path) -> Path:
    """Write a checkpoint dict (``htr.checkpoint.read_checkpoint``) as a model folder; each file atomically. An
    ONNX export already in the folder stays only while it was made from the weights written (``carry_export``)."""
    from safetensors.torch import save

    folder = Path(folder)
    config, lm = folder_config(checkpoint), checkpoint.get("lm")
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in checkpoint["state_dict"].items()}
    atomic_write(folder / WEIGHTS_NAME, lambda f: f.write(save(weights, metadata={"format": "pt"})))
    export = folder / ONNX_NAME
    if export.is_file() and not export_is_current(export, folder / WEIGHTS_NAME):
        export.unlink()  # another network's: it would never be used, and must not be pushed with these weights
    if lm is not None:
        atomic_write(folder / LM_NAME, lambda f: f.write(save(lm_tensors(lm), metadata={"order": str(lm["order"])})))
    else:
        (folder / LM_NAME).unlink(missing_ok=True)
    write_config(config, folder)
    return folder


def write_checkpoint(checkpoint: dict, path: str | Path) -> None:
    """Write a checkpoint dict back where it was read from: a ``.pth`` file or a model folder, atomically."""
    if Path(path).is_dir():
        save_pretrained(checkpoint, path)
    elif Path(path).is_file():
        atomic_save(checkpoint, path)
    else:
        raise CheckpointError(f"{path}: only a local checkpoint file or model folder can be changed")


def store_lm(path: str | Path, lm) -> None:
    """Put a character language model (``htr.lm.CharLM``) into an existing checkpoint or folder, atomically."""
    checkpoint = read_checkpoint(path)
    checkpoint["lm"] = lm.to_state()
    write_checkpoint(checkpoint, path)


def record_evaluation(path: str | Path, entry: dict) -> None:
    """Add an evaluation (``dataset``, ``split``, ``decoder``, ``lines``, ``cer``, ``wer``) to a checkpoint's
    ``metrics["evaluations"]``, replacing an earlier one of the same dataset, split and decoder."""
    checkpoint = read_checkpoint(path)
    metrics = checkpoint.setdefault("metrics", {})
    key = (entry["dataset"], entry["split"], entry["decoder"])
    kept = [e for e in metrics.get("evaluations", []) if (e["dataset"], e["split"], e["decoder"]) != key]
    metrics["evaluations"] = [*kept, dict(entry)]
    write_checkpoint(checkpoint, path)


def export_source(export: str | Path) -> str | None:
    """The SHA-256 an ONNX export recorded of the file it was made from (``htr.export``), read with ``onnx``
    when installed, else ONNX Runtime; None when it recorded none or cannot be read."""
    from htr.model_files import SOURCE_KEY

    try:
        import onnx

        graph = onnx.load(str(export), load_external_data=False)
        return next((p.value for p in graph.metadata_props if p.key == SOURCE_KEY), None)
    except ImportError:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(export), providers=["CPUExecutionProvider"])
        return session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)
    except Exception:  # a damaged file: as good as none
        return None


def export_is_current(export: str | Path, source: str | Path) -> bool:
    """Whether an ONNX export was made from ``source`` as that file is now (``made_from`` on its recorded SHA)."""
    from htr.model_files import made_from

    return made_from(export_source(export), source)


def carry_export(checkpoint: str | Path, folder: str | Path) -> str:
    """Copy the checkpoint's current ONNX export (``X.onnx`` made from ``X.pth``, or a folder's ``model.onnx``) into
    a folder just written from it as ``model.onnx``, recording the folder's weights as its source and leaving out
    the LM the export may hold (a folder's reader takes ``lm.safetensors``); needs ``onnx``. A one-line note of what
    was done, or "" when the checkpoint has no current export."""
    from htr.model_files import LM_KEY, LM_ORDER_KEY, SOURCE_KEY, export_location, file_sha256

    export, source = export_location(checkpoint)
    target = Path(folder) / ONNX_NAME
    if not export.is_file() or export.resolve() == target.resolve():
        return ""
    if not export_is_current(export, source):
        return f"{export} is stale (not made from this {source.name}): no {ONNX_NAME} in {folder}"
    try:
        import onnx
    except ImportError:
        return f"{export} not copied into {folder}: copying it needs `pip install onnx`"
    graph = onnx.load(str(export))
    kept = [p for p in graph.metadata_props if p.key not in (SOURCE_KEY, LM_KEY, LM_ORDER_KEY)]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    graph.metadata_props.add(key=SOURCE_KEY, value=file_sha256(Path(folder) / WEIGHTS_NAME))
    atomic_write(target, lambda f: f.write(graph.SerializeToString()))
    return f"{export.name} copied as {ONNX_NAME}"


def folder_config(checkpoint: dict) -> dict:
    """The ``config.json`` of a checkpoint dict: everything but the tensors, and where the LM is."""
    config = {key: checkpoint[key] for key in CHECKPOINT_KEYS if key in checkpoint}
    config["architecture"] = "CRNN"
    config["parameters"] = sum(t.numel() for t in checkpoint["state_dict"].values())
    lm = checkpoint.get("lm")
    config["language_model"] = {"file": LM_NAME, "order": int(lm["order"])} if lm is not None else None
    return config


def write_config(config: dict, folder: str | Path) -> None:
    """(Re)write a folder's ``config.json`` and the model card drawn from it."""
    folder = Path(folder)
    text = json.dumps(config, indent=1, ensure_ascii=False) + "\n"
    atomic_write(folder / CONFIG_NAME, lambda f: f.write(text.encode("utf-8")))
    card = model_card(config)
    atomic_write(folder / CARD_NAME, lambda f: f.write(card.encode("utf-8")))


def push(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a model folder to a hub model repository (created when missing); returns the commit URL."""
    from huggingface_hub import HfApi

    read_pretrained(folder)  # never push a folder that would not load
    export = Path(folder) / ONNX_NAME
    if export.is_file() and not export_is_current(export, Path(folder) / WEIGHTS_NAME):
        raise CheckpointError(f"{export} was not made from this folder's weights: re-export it (python -m htr.export "
                              f"--checkpoint {folder}) or delete it")  # fmt: skip
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, allow_patterns=FOLDER_FILES,
                             commit_message="Upload htr model folder")  # fmt: skip
    return str(info)


# The model card ---------------------------------------------------------------------------------------------------

LICENCES = {  # what we know of the datasets our recipes use, by the name a run recorded
    "iam": "IAM Handwriting Database: free for non-commercial research only (registration at fki.tic.heia-fr.ch)",
    "iamondb": "IAM On-Line Handwriting Database: free for non-commercial research only (registration at "
    "fki.tic.heia-fr.ch)",
}


def dataset_licence(name: str) -> str:
    """The licence line of a training source, by its recorded name."""
    lowered = name.lower()
    if "iamondb" in lowered or "iam-ondb" in lowered or "linestrokes" in lowered:
        return LICENCES["iamondb"]
    if "iam" in lowered:
        return LICENCES["iam"]
    return "see the dataset's own terms"


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def model_card(config: dict) -> str:
    """The model card (``README.md``) of a model folder, written from its config: YAML metadata with the recorded
    evaluations as ``model-index``, then description, intended use and limits, training data and results."""
    from huggingface_hub import EvalResult, ModelCardData

    metrics = config.get("metrics") or {}
    training = config.get("training") or {}
    name = config.get("name") or "htr-crnn"
    evaluations = list(metrics.get("evaluations") or [])
    results = []
    for entry in evaluations:
        for metric in ("cer", "wer"):
            results.append(EvalResult(
                task_type="image-to-text", task_name="Handwritten text recognition (lines)",
                dataset_type=entry["dataset"], dataset_name=entry["dataset"], dataset_split=entry["split"],
                metric_type=metric, metric_name=f"{metric.upper()} ({entry['decoder']})",
                metric_value=round(100 * entry[metric], 2),
            ))  # fmt: skip
    sources = list(training.get("datasets") or [])
    finetune = training.get("finetune")
    rehearsal = (finetune or {}).get("rehearsal") or {"datasets": {}}
    ink = [training["ink"]] if training.get("ink") else []
    data = ModelCardData(
        model_name=name, library_name="pytorch", pipeline_tag="image-to-text", language="en",
        license="other", license_name="non-commercial-research" if any(
            dataset_licence(s) != "see the dataset's own terms" for s in sources + ink + list(rehearsal["datasets"])
        ) else None,
        tags=["handwriting-recognition", "htr", "ocr", "crnn", "ctc"],
        metrics=["cer", "wer"], eval_results=results or None,
    )  # fmt: skip
    model = config["model_config"]
    parameters = config.get("parameters")
    lm = config.get("language_model")
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# {name}: handwritten text recognition of English lines", "",
        "Written by `python -m htr.hub` from this folder's `config.json`; do not edit by hand.", "",
        "## Model", "",
        f"A CRNN (convolutional stem and residual blocks, a {model['rnn_layers']}-layer bidirectional LSTM of "
        f"{model['rnn_hidden']} units per direction, CTC){f', {parameters:,} parameters' if parameters else ''}. "
        f"It reads one text line at a time, scaled to {model['height']} px high, and outputs "
        f"{len(config['alphabet'])} characters: `{config['alphabet']}`.",
        (f"A character {lm['order']}-gram language model (`{LM_NAME}`) is used by beam-search decoding."
         if lm else "No language model is included: decoding is greedy unless one is given."),
        "", "Read it with the `htr` project's `predict.py` (this folder as the checkpoint):", "",
        "```bash", "python predict.py --checkpoint path/to/this/folder line.png page.jpg", "```", "",
        "The folder loads with `safetensors` and `json` alone: `model.safetensors` holds the weights, "
        "`config.json` the architecture (`model_config`) and alphabet (class `i + 1` is `alphabet[i]`, 0 is the "
        "CTC blank). `model.onnx`, when the folder has one, is the same network exported for ONNX Runtime (int8 when "
        "exported with `--int8`): predict.py reads with it on a CPU, without PyTorch, while it matches "
        "`model.safetensors`.", "",
        "## Intended use and limits", "",
        "- Meant for: English handwriting, one text line per image (pages are split into lines by the project's "
        "line finder), dark ink on light, plain paper; research, teaching, and reading one's own scans.",
        (f"- Fine-tuned on `{finetune['data']}`: it reads material like that best; elsewhere, expect the base "
         f"model's limits (`{finetune['base']}`)." if finetune else
         "- Not trained on: other languages or scripts, historical hands, printed text, tables and forms, "
         "strongly curved or rotated lines, light writing on dark backgrounds. Expect much higher error rates there "
         "(fine-tune on a few hundred lines of the target material: `htr finetune`)."),
        "- Errors are common on names, numbers and rare words; the language model favours English spelling.",
        "",
        "## Training data and licences", "",
    ]  # fmt: skip
    if sources or ink or finetune:
        for source in sources:
            lines.append(f"- `{source}` (line images and transcriptions): {dataset_licence(source)}")
        for source in ink:
            lines.append(f"- `{source}` (pen trajectories rendered as line images, {training.get('ink_ratio', '?')} "
                         f"per real line each epoch): {dataset_licence(source)}")  # fmt: skip
        for source in training.get("font_text") or []:
            lines.append(f"- `{source}` (text drawn in handwriting fonts, {training.get('font_ratio', '?')} per "
                         "real line each epoch; the fonts' licences are in the project's htr/fonts)")  # fmt: skip
        for source in training.get("print_text") or []:
            lines.append(f"- `{source}` (text set in printing and typewriter fonts, {training.get('print_ratio', '?')} "
                         "per real line each epoch; DejaVu and STIX fonts, as matplotlib ships them)")  # fmt: skip
        if finetune:
            lines.append(f"- `{finetune['data']}` ({finetune['training lines']:,} line images and transcriptions, the "
                         f"fine-tuning data): {finetune['licence']}")  # fmt: skip
        for source, kept in rehearsal["datasets"].items():
            share = f"{100 * rehearsal['share']:.0f}%"
            lines.append(f"- `{source}` ({kept['training lines']:,} line images and transcriptions, rehearsed in the "
                         f"fine-tune: {share} of each epoch): {dataset_licence(source)}")  # fmt: skip
        if data.license_name:
            lines += ["", "The weights are derived from data licensed for non-commercial research only: use them "
                      "for non-commercial research and teaching; commercial use needs the data owners' "
                      "permission."]  # fmt: skip
    else:
        lines.append("Not recorded in this model's config.")
    lines += ["", "## Training", ""]
    if training:
        recipe = ", ".join(f"{key} {value}" for key, value in training.get("recipe", {}).items())
        lines.append(
            f"- Steps: {training.get('steps', '?'):,} optimizer steps, {training.get('lines_seen', '?'):,} lines "
            f"seen, over {training.get('epochs', '?')} epochs."
            if isinstance(training.get("steps"), int) and isinstance(training.get("lines_seen"), int)
            else "- Steps: not recorded."
        )
        if recipe:
            lines.append(f"- Recipe: {recipe}.")
        if training.get("hardware"):
            lines.append(f"- Hardware: {training['hardware']}.")
        if training.get("note"):
            lines.append(f"- {training['note']}")
        if finetune:
            before, after = finetune["before"], finetune["after"]
            lines.append(
                f"- Fine-tuned from `{finetune['base']}` on {finetune['training lines']:,} training lines"
                + (f" ({finetune['pages']} pages)" if finetune.get("pages") else "")
                + f" of `{finetune['data']}` with `htr finetune` ({finetune['epochs']} epochs, {finetune['steps']:,} "
                f"steps, {finetune['hardware']}): on its {after['lines']:,} validation lines CER "
                f"{percent(before['cer'])} before, {percent(after['cer'])} after; WER {percent(before['wer'])} "
                f"before, {percent(after['wer'])} after ({after['decoder']})."
            )
        for source, kept in rehearsal["datasets"].items():
            if "after" in kept:
                lines.append(f"- Rehearsed during the fine-tune, so that it keeps reading them: `{source}`, CER "
                             f"{percent(kept['before']['cer'])} before, {percent(kept['after']['cer'])} after on its "
                             f"{kept['after']['lines']:,} validation lines ({kept['after']['decoder']}).")  # fmt: skip
    else:
        lines.append("Not recorded in this model's config.")
    lines += ["", "## Results", ""]
    if evaluations:
        lines += ["| dataset | split | lines | decoder | CER | WER |", "| --- | --- | --- | --- | --- | --- |"]
        for entry in evaluations:
            lines.append(f"| {entry['dataset']} | {entry['split']} | {entry.get('lines', '?')} | {entry['decoder']} "
                         f"| {percent(entry['cer'])} | {percent(entry['wer'])} |")  # fmt: skip
        lines += ["", "Recorded by `htr evaluate --record` or `htr finetune` (character and word error rates, in "
                  "percent in the metadata above)."]  # fmt: skip
    elif "val_cer" in metrics:
        lines.append(f"Validation during training (greedy): CER {percent(metrics['val_cer'])}, "
                     f"WER {percent(metrics['val_wer'])}. No evaluation recorded.")  # fmt: skip
    else:
        lines.append("No evaluation recorded.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m htr.hub: its command line is htr.cli.hub (run, not imported)
    import runpy

    runpy.run_module("htr.cli.hub", run_name="__main__", alter_sys=True)
