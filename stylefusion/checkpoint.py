"""Checkpoint files: find them, read and check them, write them, and say which weights they hold.

A StyleFusion checkpoint is a folder (or a Hugging Face hub repo) with ``config.json`` (a
:class:`~stylefusion.config.StyleFusionConfig`: architecture, preprocessing, decision rule,
training record), one ``model.safetensors`` (keys ``content.*``, ``style.*``, ``fusion.*``) and a
model card ``README.md``. This module is the only place that touches those files, as timm keeps
its hub and file plumbing in ``_hub.py`` apart from the networks:

- :func:`resolve_checkpoint` turns a reference (folder, hub repo id, hub cache offline) into a folder;
- :func:`read_config` and :func:`read_weights` read them with checks a hostile download cannot
  get past (sizes, keys, shapes and the config digest are checked before any tensor is read;
  pickles are refused, never loaded);
- :func:`save_checkpoint` writes all files atomically;
- :func:`weight_digests` hashes the weights once, for the identity of a model and the feature cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from stylefusion import __version__
from stylefusion._io import atomic_path, atomic_write
from stylefusion.config import StyleFusionConfig, read_config_json
from stylefusion.errors import CheckpointError, format_keys

if TYPE_CHECKING:  # pragma: no cover - torch is imported where tensors are read or written
    import torch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
#: Files that would be unpickled to load; we refuse them rather than execute code from a download.
UNSAFE_WEIGHTS = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt")
#: A safetensors file larger than this is not a StyleFusion checkpoint (the full model is ~0.3 GB).
MAX_WEIGHTS_BYTES = 4 * 1024**3
#: Prefixes of the feature extractors' weights: what the extracted features depend on.
BACKBONE_PREFIXES = ("content.", "style.")
#: Metadata key of model.safetensors holding the digest of the config.json written with it.
CONFIG_DIGEST_KEY = "stylefusion_config_sha256"


def config_digest(config_dict: Mapping[str, Any]) -> str:
    """sha256 of a config as canonical JSON: ties model.safetensors to the config.json beside it."""
    return hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------
# Finding a checkpoint
# ----------------------------------------------------------------------------------------------
def _looks_like_path(ref: str) -> bool:
    """Hub repo ids are ``name`` or ``org/name``; anything else path-like is a missing folder."""
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve_checkpoint(ref: str | os.PathLike, revision: str | None = None, **hub_kwargs: Any) -> Path:
    """A local folder for a checkpoint reference: a folder as it is, a hub repo id fetched or cached.

    With ``HF_HUB_OFFLINE=1`` a repo id is read from the hub cache only. Only the checkpoint's own
    files are fetched (and the pickle names, so that a repo holding only a pickle gets a message
    saying so instead of "missing weights").

    Raises:
        CheckpointError: not a folder and not a fetchable repo, with the reason and what to do.
    """
    ref_str = str(ref)
    path = Path(ref_str).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{ref_str}: is a file; give the checkpoint folder (with {CONFIG_NAME} "
                              f"and {WEIGHTS_NAME}) or a hub repo id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(ref_str)
    except HFValidationError:
        raise CheckpointError(f"{ref_str}: no such checkpoint folder (and not a valid hub repo id)") from None
    if isinstance(ref, os.PathLike) or _looks_like_path(ref_str):
        raise CheckpointError(f"{ref_str}: no such checkpoint folder")
    try:
        folder = snapshot_download(ref_str, revision=revision,
                                   allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, *UNSAFE_WEIGHTS],
                                   **hub_kwargs)
    except Exception as exc:  # network, auth, missing repo, offline cache miss: all one message
        hint = ("HF_HUB_OFFLINE is set and the repo is not in the hub cache" if hub_offline() else
                "check the repo id, your network and HF_TOKEN, or pass a local checkpoint folder")
        raise CheckpointError(f"{ref_str}: not a local folder, and cannot fetch it as a Hugging Face hub "
                              f"repo ({type(exc).__name__}); {hint}") from None
    return Path(folder)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
@dataclass
class CheckpointFiles:
    """The checked contents of a checkpoint folder, before any tensor is read."""

    folder: Path
    config: StyleFusionConfig
    config_sha256: str  # digest of config.json as written (what model.safetensors was saved with)
    weights: Path


def read_config(folder: str | Path, ref: str | None = None) -> tuple[StyleFusionConfig, str]:
    """The config of a checkpoint folder and the digest of its JSON as written.

    The digest is taken over the file's parsed content rather than the re-serialised config, so a
    checkpoint written by an earlier version (with fields since retired) still matches its weights.
    """
    folder = Path(folder)
    where = ref or str(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{where}: no {CONFIG_NAME}: not a StyleFusion checkpoint")
    config, raw = read_config_json(path)
    return config, config_digest(raw)


def checkpoint_files(folder: str | Path, ref: str | None = None) -> CheckpointFiles:
    """Check that ``folder`` is a StyleFusion checkpoint: a valid config and safetensors weights."""
    folder = Path(folder)
    where = ref or str(folder)
    config, digest = read_config(folder, where)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        unsafe = [n for n in UNSAFE_WEIGHTS if (folder / n).exists()]
        if unsafe:
            raise CheckpointError(
                f"{where}: weights are in {unsafe[0]} (a pickle, which can run code when "
                f"loaded); StyleFusion only loads {WEIGHTS_NAME}")
        raise CheckpointError(f"{where}: {WEIGHTS_NAME} is missing")
    return CheckpointFiles(folder, config, digest, weights)


def read_weights(weights: str | Path, expected: Mapping[str, torch.Tensor],
                 config_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of ``model.safetensors`` after checking keys, shapes and the config digest.

    ``expected`` may hold meta tensors: only names and shapes are used, and each tensor is read
    only after every key and shape has been checked against the file's header.
    """
    from safetensors import SafetensorError, safe_open

    weights = Path(weights)
    size = weights.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{weights}: {size / 1e9:.1f} GB is too large for a StyleFusion checkpoint")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            keys = set(f.keys())
            missing = sorted(set(expected) - keys)
            unexpected = sorted(keys - set(expected))
            if missing or unexpected:
                parts = []
                if missing:
                    parts.append(f"{len(missing)} missing keys: {format_keys(missing)}")
                if unexpected:
                    parts.append(f"{len(unexpected)} unexpected keys: {format_keys(unexpected)}")
                raise CheckpointError(f"{weights}: does not match its config.json; " + "; ".join(parts))
            for k, v in expected.items():
                shape = tuple(f.get_slice(k).get_shape())
                if shape != tuple(v.shape):
                    raise CheckpointError(
                        f"{weights}: {k} has shape {list(shape)}, the config expects "
                        f"{list(v.shape)} (config.json does not match the weights)")
            digest = metadata.get(CONFIG_DIGEST_KEY)
            if digest is not None and config_sha256 is not None and digest != config_sha256:
                raise CheckpointError(
                    f"{weights}: written for a different config.json (an interrupted save or files "
                    "mixed from two checkpoints)")
            return {k: f.get_tensor(k) for k in expected}
    except SafetensorError as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def save_checkpoint(folder: str | Path, config: StyleFusionConfig, state_dict: Mapping[str, torch.Tensor],
                    card: str | None = None) -> Path:
    """Write ``model.safetensors``, ``config.json`` (and the card) into ``folder``.

    Each file appears whole or not at all. The weights go first and carry the digest of the
    config written after them, so a crash between the two leaves a pair that refuses to load
    ("written for a different config.json") instead of one that loads with the wrong settings.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_dict = config.to_dict()
    state = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    metadata = {"format": "pt", "stylefusion_version": __version__, CONFIG_DIGEST_KEY: config_digest(config_dict)}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    atomic_write(folder / CONFIG_NAME, config.to_json())
    if card is not None:
        atomic_write(folder / CARD_NAME, card)
    return folder


# ----------------------------------------------------------------------------------------------
# Identity
# ----------------------------------------------------------------------------------------------
def weight_digests(state_dict: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """sha256 of all weights and of the feature extractors' weights, in one pass over the tensors.

    Each tensor contributes its name, dtype, shape and bytes, in sorted key order.
    ``backbone_sha256`` covers ``content.*`` and ``style.*`` only: extracted features do not
    depend on the head, so a cache made with one head is reused when the head is retrained.
    """
    import torch

    everything, backbone = hashlib.sha256(), hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        t = tensor.detach().to("cpu").contiguous()
        header = f"{name}|{t.dtype}|{tuple(t.shape)}|".encode()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        targets = (everything, backbone) if name.startswith(BACKBONE_PREFIXES) else (everything,)
        for h in targets:
            h.update(header)
            h.update(data)
    return {"weights_sha256": everything.hexdigest(), "backbone_sha256": backbone.hexdigest()}
