"""Feature cache: one safetensors file per video, with the provenance that decides reuse.

Extraction is the expensive step (the report: ~25 s per video on a cluster GPU), so its output is
kept per video under ``<cache>/real/`` and ``<cache>/fake/``. Each entry holds the features the head
reads and the per-frame provenance the figures need:

    content [C, Dc] f32 · style [T, L, Ds] f32 · source_indices [T] i64 · timestamps [T] f64 ·
    boxes [T, 4] f32 · probs [T] f32 · fallback [T] bool · face_found_ratio [1] f32

and, as string metadata in the safetensors header (readable without loading the tensors):
the manifest record (video_id, path, label, split, dataset, method), ``valid`` and ``reason``,
the video's fingerprint, the checkpoint identity, the sha256 of the backbone weights and of
``config.preprocessing_dict()``.

Reuse rule: an entry is reused when the backbone hash, the preprocessing hash and the video
fingerprint all match. Only the backbones (``content.``/``style.`` weights) and the preprocessing
change features, so training the head — which changes the checkpoint's overall weights hash —
does not invalidate the cache. An entry whose features match but whose manifest fields differ
(a new split seed, a corrected label) is *relabelled* — its header rewritten — not recomputed.

Video fingerprint: file size, mtime (ns) and the sha256 of the first and last MiB. A match needs
equal size and either an equal mtime (no read at all: resuming 5,000 videos costs 5,000 ``stat``
calls) or an equal head/tail hash (so a dataset copied without preserving mtimes keeps its cache).
Hashing whole files was rejected: FaceForensics++ c0 is hundreds of GB, and a re-encode or
truncation changes the size or the head/tail anyway.

Writes are atomic: a temporary file in the same folder, ``fsync``, ``os.replace``, ``fsync`` of the
folder. A killed extraction leaves at most a ``.<name>.tmp-*`` file that readers ignore and the
next write of that video removes; a full disk leaves nothing and raises :class:`CacheWriteError`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from stylefusion.errors import StyleFusionError
from stylefusion.results import VideoFeatures
from stylefusion.research.datasets import ManifestRecord

logger = logging.getLogger(__name__)

CACHE_FORMAT = "stylefusion-feature-cache/1"
LABEL_DIRS = ("real", "fake")  # index = label
HASH_CHUNK = 1 << 20  # bytes hashed at each end of a video for its fingerprint
TENSOR_KEYS = ("content", "style", "source_indices", "timestamps", "boxes", "probs", "fallback",
               "face_found_ratio")
RECORD_KEYS = ("video_id", "path", "label", "split", "dataset", "method")


class CacheError(StyleFusionError):
    """The cache folder is unusable: missing, empty, or mixing features of different checkpoints."""


class CacheWriteError(CacheError):
    """An entry could not be written (disk full, permissions); nothing partial was left behind."""


class CacheCorruptionWarning(UserWarning):
    """An entry file could not be read and was skipped."""


# ----------------------------------------------------------------------------------------------
# What features depend on
# ----------------------------------------------------------------------------------------------
def preprocessing_hash(config: Any) -> str:
    """sha256 of ``config.preprocessing_dict()`` as canonical JSON (tuples and lists alike)."""
    text = json.dumps(config.preprocessing_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def backbone_hash(model: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of the ``content.`` and ``style.`` weights.

    The head is left out on purpose: features do not depend on it.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(("content.", "style.")):
            continue
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    """The provenance that must match for an entry to be reused."""

    backbone_sha256: str
    preprocessing_sha256: str
    checkpoint: dict[str, Any]  # the model's identity(): informational, not compared
    model_ref: str = ""  # what --model named, so train can find the backbones again

    @classmethod
    def from_model(cls, model: Any, model_ref: str = "") -> "FeatureKey":
        return cls(backbone_hash(model), preprocessing_hash(model.config), dict(model.identity()), model_ref)


def video_fingerprint(path: str | Path) -> dict[str, str]:
    """Size, mtime and sha256 of the first and last MiB (see the module docstring for why)."""
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(HASH_CHUNK))
        if st.st_size > HASH_CHUNK:
            f.seek(max(HASH_CHUNK, st.st_size - HASH_CHUNK))
            h.update(f.read(HASH_CHUNK))
    return {"video_size": str(st.st_size), "video_mtime_ns": str(st.st_mtime_ns),
            "video_sha256_headtail": h.hexdigest()}


def fingerprint_matches(path: str | Path, meta: dict[str, str]) -> bool:
    """True when the video looks unchanged since ``meta`` was written (stat first, hash if needed)."""
    try:
        st = Path(path).stat()
    except OSError:
        return False
    if str(st.st_size) != meta.get("video_size"):
        return False
    if str(st.st_mtime_ns) == meta.get("video_mtime_ns"):
        return True
    try:
        return video_fingerprint(path)["video_sha256_headtail"] == meta.get("video_sha256_headtail")
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def entry_name(video_id: str) -> str:
    """A file name for a video id: readable, and unique thanks to a short hash of the exact id."""
    readable = _UNSAFE.sub("_", video_id.replace("/", "__")).strip("._")[:120] or "video"
    return f"{readable}-{hashlib.sha256(video_id.encode()).hexdigest()[:10]}.safetensors"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on this platform / filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    Raises:
        CacheWriteError: the write failed (ENOSPC says "disk full"); the temporary file is removed
            and ``path`` is untouched.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        what = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise CacheWriteError(f"{path}: cannot write cache entry ({what}); no partial entry was left, "
                              "free space and rerun to resume") from None
    _fsync_dir(path.parent)


def read_header(path: str | Path) -> dict[str, str] | None:
    """The string metadata of an entry, or None when the file is not a readable entry."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # truncated, not safetensors, unreadable: all mean "no usable entry"
        return None
    return meta if meta.get("format") == CACHE_FORMAT else None


@dataclass
class CacheEntry:
    """One entry as read back: its metadata and, when valid, its features."""

    path: Path
    meta: dict[str, str]
    features: VideoFeatures | None

    @property
    def valid(self) -> bool:
        return self.meta.get("valid") == "1"

    @property
    def label(self) -> int:
        return int(self.meta["label"])


class FeatureCache:
    """A cache folder. Cheap to create; every method works on files, so ranks can share one."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, video_id: str, label: int) -> Path:
        return self.root / LABEL_DIRS[label] / entry_name(video_id)

    def files(self) -> list[Path]:
        """Entry files (temporary files of interrupted writes are not entries)."""
        out: list[Path] = []
        for sub in LABEL_DIRS:
            folder = self.root / sub
            if folder.is_dir():
                out += sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("."))
        return out

    # --- deciding ---------------------------------------------------------------------------
    def status(self, record: ManifestRecord, key: FeatureKey) -> tuple[str, Path | None, dict[str, str] | None]:
        """What extraction must do for ``record``: ``reuse``, ``relabel`` or ``compute``.

        Also returns the matching entry and its metadata (the entry may sit under the other label's
        folder when the manifest's label changed; its ``valid`` field says whether it failed).
        """
        for label in (record.label, 1 - record.label):
            path = self.path_for(record.video_id, label)
            meta = read_header(path) if path.exists() else None
            if meta is None:
                continue
            if (meta.get("backbone_sha256") != key.backbone_sha256
                    or meta.get("preprocessing_sha256") != key.preprocessing_sha256
                    or meta.get("video_id") != record.video_id
                    or not fingerprint_matches(record.path, meta)):
                return "compute", None, None
            same = all(meta.get(k) == str(getattr(record, k)) for k in RECORD_KEYS) and label == record.label
            return ("reuse" if same else "relabel"), path, meta
        return "compute", None, None

    # --- writing ----------------------------------------------------------------------------
    def _metadata(self, record: ManifestRecord, key: FeatureKey, fingerprint: dict[str, str],
                  valid: bool, reason: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        meta = {"format": CACHE_FORMAT, "valid": "1" if valid else "0", "reason": reason,
                **{k: str(getattr(record, k)) for k in RECORD_KEYS},
                **fingerprint,
                "backbone_sha256": key.backbone_sha256, "preprocessing_sha256": key.preprocessing_sha256,
                "checkpoint": json.dumps(key.checkpoint, sort_keys=True, default=str),
                "model_ref": key.model_ref,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        meta.update(extra or {})
        return meta

    def _write(self, record: ManifestRecord, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
        from safetensors.torch import save

        path = self.path_for(record.video_id, record.label)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a killed writer of this video
            stale.unlink(missing_ok=True)
        atomic_write_bytes(path, save(tensors, metadata=meta))
        other = self.path_for(record.video_id, 1 - record.label)
        if other.exists():  # the manifest moved this video to the other label
            other.unlink()
        return path

    def write(self, record: ManifestRecord, key: FeatureKey, features: VideoFeatures,
              fingerprint: dict[str, str] | None = None) -> Path:
        """Store a video's features (fingerprint taken now unless given)."""
        fingerprint = fingerprint or video_fingerprint(record.path)
        tensors = {
            "content": features.content.detach().to("cpu", torch.float32).contiguous(),
            "style": features.style.detach().to("cpu", torch.float32).contiguous(),
            "source_indices": torch.as_tensor(np.asarray(features.source_indices, dtype=np.int64)),
            "timestamps": torch.as_tensor(np.asarray(features.timestamps, dtype=np.float64)),
            "boxes": torch.as_tensor(np.asarray(features.boxes, dtype=np.float32)).reshape(-1, 4),
            "probs": torch.as_tensor(np.asarray(features.probs, dtype=np.float32)),
            "fallback": torch.as_tensor(np.asarray(features.fallback, dtype=bool)),
            "face_found_ratio": torch.tensor([features.face_found_ratio], dtype=torch.float32),
        }
        meta = self._metadata(record, key, fingerprint, True, "",
                              {"face_found_ratio": f"{features.face_found_ratio:.6f}"})
        return self._write(record, tensors, meta)

    def write_invalid(self, record: ManifestRecord, key: FeatureKey, reason: str,
                      fingerprint: dict[str, str] | None = None) -> Path:
        """Record that a video failed (and why), so a resumed run does not retry it blindly."""
        if fingerprint is None:
            try:
                fingerprint = video_fingerprint(record.path)
            except OSError:
                fingerprint = {"video_size": "", "video_mtime_ns": "", "video_sha256_headtail": ""}
        reason = " ".join(reason.split())[:1000]  # one line, bounded header size
        return self._write(record, {}, self._metadata(record, key, fingerprint, False, reason))

    def relabel(self, record: ManifestRecord, existing: Path) -> Path:
        """Rewrite an entry's manifest fields without recomputing its features."""
        from safetensors.torch import load_file

        meta = read_header(existing) or {}
        tensors = load_file(str(existing))
        meta.update({k: str(getattr(record, k)) for k in RECORD_KEYS})
        return self._write(record, tensors, meta)

    # --- reading ----------------------------------------------------------------------------
    def read(self, path: Path) -> CacheEntry | None:
        """One entry, or None (with a :class:`CacheCorruptionWarning`) when it is unreadable."""
        from safetensors.torch import load_file

        meta = read_header(path)
        try:
            if meta is None:
                raise ValueError("not a StyleFusion cache entry")
            if meta.get("valid") != "1":
                return CacheEntry(path, meta, None)
            t = load_file(str(path))
            missing = [k for k in TENSOR_KEYS if k not in t]
            if missing:
                raise ValueError(f"lacks tensors {missing}")
            feats = VideoFeatures(content=t["content"], style=t["style"],
                                  source_indices=t["source_indices"].numpy(),
                                  timestamps=t["timestamps"].numpy(), boxes=t["boxes"].numpy(),
                                  probs=t["probs"].numpy(), fallback=t["fallback"].numpy())
            return CacheEntry(path, meta, feats)
        except Exception as exc:  # a corrupt entry must not stop training on the other 4,999
            warnings.warn(f"{path}: skipped unreadable cache entry ({type(exc).__name__}: {exc})",
                          CacheCorruptionWarning, stacklevel=2)
            return None

    def entries(self, splits: Sequence[str] | None = None, include_invalid: bool = False) -> Iterator[CacheEntry]:
        """Readable entries of the given splits; invalid ones are skipped with a warning unless asked."""
        invalid = 0
        for path in self.files():
            entry = self.read(path)
            if entry is None or (splits and entry.meta.get("split") not in splits):
                continue
            if not entry.valid:
                invalid += 1
                if not include_invalid:
                    logger.debug("%s: invalid entry (%s)", path, entry.meta.get("reason"))
                    continue
            yield entry
        if invalid and not include_invalid:
            warnings.warn(f"{self.root}: skipped {invalid} invalid entries (videos that failed extraction; "
                          "see their 'reason' metadata or `stylefusion extract --retry-failed`)",
                          CacheCorruptionWarning, stacklevel=2)


# ----------------------------------------------------------------------------------------------
# Everything in memory, for training and evaluation
# ----------------------------------------------------------------------------------------------
@dataclass
class CachedFeatures:
    """All valid entries of a cache stacked into tensors (N videos).

    content [N, C, Dc]; style [N, T, L, Ds]; labels [N] float32; fallback [N, T] bool;
    records: one metadata dict per video (video_id, split, dataset, method, ...).
    """

    content: torch.Tensor
    style: torch.Tensor
    labels: torch.Tensor
    fallback: torch.Tensor
    records: list[dict[str, str]]
    backbone_sha256: str
    preprocessing_sha256: str

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, index: Sequence[int] | torch.Tensor) -> "CachedFeatures":
        idx = torch.as_tensor(index, dtype=torch.long)
        return CachedFeatures(self.content[idx], self.style[idx], self.labels[idx], self.fallback[idx],
                              [self.records[i] for i in idx.tolist()], self.backbone_sha256,
                              self.preprocessing_sha256)

    def split(self, *names: str) -> "CachedFeatures":
        return self.subset([i for i, r in enumerate(self.records) if r.get("split") in names])

    def counts(self) -> dict[str, dict[str, int]]:
        """Videos per split and label, for logs and the trained checkpoint's config."""
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            d = out.setdefault(r["split"], {"real": 0, "fake": 0})
            d["fake" if r["label"] == "1" else "real"] += 1
        return out



def recorded_model(cache_dir: str | Path) -> str:
    """The checkpoint reference (``--model`` of extract) recorded in the cache's entries, or ""."""
    for path in FeatureCache(cache_dir).files():
        meta = read_header(path)
        if meta and meta.get("model_ref"):
            return meta["model_ref"]
    return ""


def load_features(cache_dir: str | Path, splits: Sequence[str] | None = None,
                  expect: FeatureKey | None = None) -> CachedFeatures:
    """Read every valid entry (of ``splits``) into memory tensors, once.

    Entries made by other backbones or preprocessing than ``expect`` are skipped with a warning;
    without ``expect`` the cache must be uniform.

    Raises:
        CacheError: the folder has no usable entry, or mixes several feature sources.
    """
    from safetensors.torch import load_file

    cache = FeatureCache(cache_dir)
    if not cache.root.is_dir():
        raise CacheError(f"{cache.root}: cache folder not found (run `stylefusion extract` first)")
    # Pass 1, headers only: choose the entries. Pass 2 reads each chosen entry straight into
    # preallocated tensors, so 5,000 videos never sit in memory twice.
    chosen: list[tuple[Path, dict[str, str]]] = []
    invalid = 0
    for path in cache.files():
        meta = read_header(path)
        if meta is None:
            warnings.warn(f"{path}: skipped unreadable cache entry", CacheCorruptionWarning, stacklevel=2)
        elif not splits or meta.get("split") in splits:
            if meta.get("valid") == "1":
                chosen.append((path, meta))
            else:
                invalid += 1
    if invalid:
        warnings.warn(f"{cache.root}: skipped {invalid} invalid entries (videos that failed extraction; "
                      "see their 'reason' metadata or `stylefusion extract --retry-failed`)",
                      CacheCorruptionWarning, stacklevel=2)
    if expect is not None:
        keep = [(p, m) for p, m in chosen if m.get("backbone_sha256") == expect.backbone_sha256
                and m.get("preprocessing_sha256") == expect.preprocessing_sha256]
        if len(keep) < len(chosen):
            warnings.warn(f"{cache.root}: skipped {len(chosen) - len(keep)} entries extracted with other "
                          "backbones or preprocessing than the model's", CacheCorruptionWarning, stacklevel=2)
        if chosen and not keep:
            raise CacheError(f"{cache.root}: no entry was extracted with this model's backbones and "
                             "preprocessing (extract again with this model, or name the model that made the cache)")
        chosen = keep
    if not chosen:
        where = f" in splits {list(splits)}" if splits else ""
        raise CacheError(f"{cache.root}: no valid cache entries{where}")
    sources = {(m.get("backbone_sha256"), m.get("preprocessing_sha256")) for _, m in chosen}
    if len(sources) > 1:
        raise CacheError(f"{cache.root}: entries come from {len(sources)} different backbone/preprocessing "
                         "combinations; use one cache folder per model")

    content = style = fallback = None
    kept: list[int] = []
    for i, (path, meta) in enumerate(chosen):
        try:
            t = load_file(str(path))
            c, st, fb = t["content"], t["style"], t["fallback"]
        except Exception as exc:  # header fine, data not: skip it like any corrupt entry
            warnings.warn(f"{path}: skipped unreadable cache entry ({type(exc).__name__}: {exc})",
                          CacheCorruptionWarning, stacklevel=2)
            continue
        if content is None:
            n = len(chosen)
            content = torch.empty((n, *c.shape), dtype=torch.float32)
            style = torch.empty((n, *st.shape), dtype=torch.float32)
            fallback = torch.empty((n, *fb.shape), dtype=torch.bool)
        if c.shape != content.shape[1:] or st.shape != style.shape[1:] or fb.shape != fallback.shape[1:]:
            raise CacheError(f"{path}: features {list(c.shape)}/{list(st.shape)} differ from the other entries' "
                             f"{list(content.shape[1:])}/{list(style.shape[1:])}")
        j = len(kept)
        content[j], style[j], fallback[j] = c, st, fb
        kept.append(i)
    if not kept:
        raise CacheError(f"{cache.root}: no readable cache entries")
    n = len(kept)
    records = [dict(chosen[i][1]) for i in kept]
    labels = torch.tensor([float(r["label"]) for r in records])
    (bb, pp), = sources
    return CachedFeatures(content[:n], style[:n], labels, fallback[:n], records, bb, pp)
