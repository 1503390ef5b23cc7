"""What a model is on disk, read without circles: the checkpoint format, the model folder's files, the ONNX export's
metadata keys and the language model's tensors. Every module that reads or writes models imports this one; it
imports none of them.

A model folder (``htr.hub`` writes it) holds ``config.json`` (format version, architecture, alphabet, metrics,
training record), ``model.safetensors`` (the weights), ``lm.safetensors`` (the character LM, when there is one),
``README.md`` (the card) and optionally ``model.onnx`` (the network for ONNX Runtime, made from those weights).
Reading one parses JSON and safetensors only: no pickle, no code from the folder. An ONNX export records the SHA-256
of the file it was made from (``SOURCE_KEY``) and may hold the LM (``LM_KEY``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from htr import __version__

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not one of ours."""


CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LM_NAME = "lm.safetensors"
CARD_NAME = "README.md"
ONNX_NAME = "model.onnx"  # optional: the network exported for ONNX Runtime, made from WEIGHTS_NAME
FOLDER_FILES = [CONFIG_NAME, WEIGHTS_NAME, LM_NAME, CARD_NAME, ONNX_NAME]
PICKLE_SUFFIXES = {".bin", ".pth", ".pt", ".pkl", ".pickle", ".ckpt"}
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
CHECKPOINT_KEYS = ("format_version", "htr_version", "name", "model_config", "alphabet", "metrics", "training")


def is_repo_id(text: str) -> bool:
    """Whether ``text`` can only mean a hub repository: shaped ``owner/name[@revision]``, not a local path,
    and not named like a checkpoint file."""
    return (
        bool(REPO_ID.match(text)) and not Path(text).exists() and Path(text.split("@")[0]).suffix not in PICKLE_SUFFIXES
    )


SOURCE_KEY = "checkpoint_sha256"  # metadata: the SHA-256 of the checkpoint file the export was made from
LM_KEY, LM_ORDER_KEY = "lm", "lm_order"  # metadata: the LM's safetensors (`lm_tensors`), base64; its order


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def made_from(recorded_sha256: str | None, source: str | Path) -> bool:
    """Whether an export that recorded ``recorded_sha256`` (its ``SOURCE_KEY``) was made from ``source`` as it is."""
    return recorded_sha256 is not None and recorded_sha256 == file_sha256(source)


def export_location(checkpoint: str | Path) -> tuple[Path, Path]:
    """Where the export of a checkpoint belongs, and the file whose SHA-256 it records: ``X.onnx`` beside a
    checkpoint file ``X.pth`` (made from ``X.pth``); ``model.onnx`` in a model folder (made from its weights)."""
    path = Path(checkpoint)
    if path.is_dir():
        return path / ONNX_NAME, path / WEIGHTS_NAME
    return path.with_suffix(".onnx"), path


def lm_tensors(lm: dict) -> dict[str, torch.Tensor]:
    """A checkpoint's LM state (``htr.lm.CharLM.to_state``) as plain tensors: n-gram strings as UTF-8 bytes."""
    import torch

    def text(value: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(value.encode("utf-8")), dtype=torch.uint8).clone()

    return {
        "ngrams": text(lm["ngrams"]),
        "logprobs": lm["logprobs"].to(torch.float32).contiguous(),
        "backoff_ngrams": text(lm["backoff_ngrams"]),
        "backoffs": lm["backoffs"].to(torch.float32).contiguous(),
    }


def folder_lm(folder: Path, config: dict, load_file) -> dict | None:
    """The LM state (``htr.lm.CharLM.from_state`` reads it) of a model folder with this config, or None when it
    has none; ``load_file``: safetensors' loader for PyTorch or NumPy tensors."""
    if not config.get("language_model"):
        return None
    return lm_from_tensors(load_file(folder / LM_NAME), int(config["language_model"]["order"]))


def lm_from_tensors(tensors: dict, order: int) -> dict:
    """The LM state (``htr.lm.CharLM.from_state`` reads it) of ``lm_tensors``' output, PyTorch or NumPy."""
    import numpy as np

    def text(key: str) -> str:
        return bytes(np.asarray(tensors[key])).decode("utf-8")

    return {"order": order, "ngrams": text("ngrams"), "logprobs": tensors["logprobs"],
            "backoff_ngrams": text("backoff_ngrams"), "backoffs": tensors["backoffs"]}  # fmt: skip


def read_for_decoding(folder: str | Path) -> dict:
    """What decoding the outputs of an exported network needs from a model folder, read without PyTorch: its
    ``alphabet`` and, when it has one, its ``lm`` state (as in a checkpoint dict). ValueError in one line."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        state = {"alphabet": str(config["alphabet"])}
        lm = folder_lm(folder, config, load_file)
        if lm is not None:
            state["lm"] = lm
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{folder}: cannot read its alphabet or language model ({reason})") from None
    return state


def read_pretrained(folder: str | Path) -> dict:
    """A model folder as the checkpoint dict ``htr.checkpoint.read_checkpoint`` returns (weights never pickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not weights_path.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(
                f"{folder} holds pickled weights ({', '.join(pickles)}), not {WEIGHTS_NAME}: refused "
                "(pickles can run code; convert a .pth you trust with `python -m htr.hub export`)"
            )
        raise CheckpointError(f"{folder} is not an htr model folder (no {WEIGHTS_NAME})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{config_path}: cannot read it ({str(error).splitlines()[0]})") from None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("model_config"), dict)
        or not isinstance(config.get("alphabet"), str)
    ):
        raise CheckpointError(f"{config_path} is not an htr model config (no model_config/alphabet)")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} has format {config.get('format_version')} (written by htr {config.get('htr_version', '?')}); "
            f"this htr reads format {FORMAT_VERSION}"
        )
    checkpoint = {key: config[key] for key in CHECKPOINT_KEYS if key in config}
    checkpoint.setdefault("metrics", {})
    try:
        checkpoint["state_dict"] = load_file(weights_path)
        lm = folder_lm(folder, config, load_file)
        if lm is not None:
            checkpoint["lm"] = lm
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{folder}: cannot read its weights or language model ({reason})") from None
    return checkpoint


def download(repo_id: str) -> Path:
    """The model folder of a hub repository (``owner/name[@revision]``), fetched into the hub's cache; only the
    folder's files (``FOLDER_FILES``) are downloaded. Offline, or no such repository: CheckpointError in one line."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    name, _, revision = repo_id.partition("@")
    try:
        return Path(snapshot_download(name, revision=revision or None, allow_patterns=FOLDER_FILES))
    except RepositoryNotFoundError:
        raise CheckpointError(f"{repo_id}: no such model on the Hugging Face Hub (nor a local path)") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{repo_id} is not a local path and the Hugging Face Hub cannot be reached (offline?); "
            "give a local checkpoint or model folder"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{repo_id}: cannot download it from the Hugging Face Hub ({reason})") from None


def read_checkpoint_file(path: str | Path) -> dict:
    """A ``.pth`` checkpoint dict, loaded safely (``weights_only=True``: tensors and plain data, never code);
    CheckpointError with a clear reason when it is missing, damaged or not one of ours."""
    import pickle
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. pickle-protocol notes; refusals still raise
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"cannot read checkpoint {path}: corrupt, or holds objects other than tensors and plain data "
            "(htr only loads weights, never code)"
        ) from None
    except Exception as error:  # damaged files make torch raise EOFError, RuntimeError, IndexError, ...
        reason = str(error).split(". ")[0].splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: truncated or damaged file ({reason})") from None
    if not isinstance(checkpoint, dict) or "model_config" not in checkpoint or "alphabet" not in checkpoint:
        raise CheckpointError(f"{path} is not an htr model checkpoint (no model_config/alphabet)")
    version = checkpoint.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version} (written by htr {checkpoint.get('htr_version', '?')}); "
            f"this htr {__version__} reads format {FORMAT_VERSION}"
        )
    return checkpoint
