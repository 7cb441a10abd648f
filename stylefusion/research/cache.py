"""Feature cache: one safetensors file per video, with the provenance that decides reuse.

Extraction is the expensive step (the report: ~25 s per video on a cluster GPU), so its output is
kept per video under ``<cache>/real/`` and ``<cache>/fake/``. An entry holds the video's S
**segments**: every judged person's T crops in each analysed window (what
``StyleFusionDetector.extract_segments`` returns, the segments inference judges), stacked:

    content [S, C, Dc] f32 · style [S, T, L, Ds] f32 · source_indices [S, T] i64 ·
    timestamps [S, T] f64 · boxes [S, T, 4] f32 · probs [S, T] f32 · fallback [S, T] bool ·
    window [S] i64 · person [S] i64 · quality [S, 3] f32 (optional)

``quality`` is each segment's face size, sharpness and brightness
(:class:`stylefusion.decision.Quality`, NaN where unmeasured): training takes the input-quality
limits of its checkpoint from it. Entries written before it existed lack it and stay valid (it
does not change the features); their segments count as unmeasured.

And, as string metadata in the safetensors header (readable without loading the tensors; typed as
:class:`EntryHeader`): the manifest record (video_id, path, label, split, dataset, method),
``valid`` and ``reason``, the video's fingerprint, the checkpoint identity, the sha256 of the
backbone weights and of the preprocessing (:func:`preprocessing_hash`), the video's ``duration``
(seconds, as ``VideoReader.duration``), the ``window_s`` and ``max_windows`` it was cut with, its
``num_windows`` at that ``window_s``, ``segments`` (S) and ``face_found_ratio`` (crops that hold a
face, over all segments). A video in which nobody is visible long enough to judge (S = 0) is an
invalid entry, as an unreadable one is.

Reuse rule: an entry is reused when the backbone hash, the preprocessing hash, the video's window
cut and the video fingerprint all match (:meth:`FeatureCache.plan`). Only the backbones
(``content.``/``style.`` weights) and the preprocessing (the config fields declared
``features=True``) change features, so training the head — which changes the checkpoint's overall
weights hash — does not invalidate the cache. ``window_s`` changes a video's features only through
its cut (``n = ceil(duration / window_s)`` equal windows, of which ``max_windows`` are analysed),
so it is left out of the preprocessing hash and compared per video from the recorded duration
(:func:`windows_match`): a checkpoint trained with ``window_s`` = the median training duration can
be evaluated on the cache it was trained from, and re-extraction with it recomputes only the
videos it cuts differently. An entry whose features match but whose manifest fields differ (a new
split seed, a corrected label) is *relabelled* — its header rewritten — not recomputed. Entries of
an older layout (another ``format``) are not entries of this cache: they are recomputed.

Video fingerprint: file size, mtime (ns) and the sha256 of the first and last MiB. A match needs
equal size and either an equal mtime (no read at all: resuming 5,000 videos costs 5,000 ``stat``
calls) or an equal head/tail hash (so a dataset copied without preserving mtimes keeps its cache).
Hashing whole files was rejected: FaceForensics++ c0 is hundreds of GB, and a re-encode or
truncation changes the size or the head/tail anyway.

Writes are atomic (:mod:`stylefusion._io`): a temporary file in the same folder, ``fsync``,
``os.replace``, ``fsync`` of the folder. A killed extraction leaves at most a ``.<name>.*.tmp``
file that readers ignore and the next write of that video removes; a full disk leaves nothing and
raises :class:`CacheWriteError`.

Training and evaluation read a whole cache into memory with
:func:`stylefusion.research.data.load_features` (one sample per segment).
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import math
import re
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from stylefusion._io import atomic_path, describe_os_error
from stylefusion.errors import StyleFusionError
from stylefusion.research.manifest import MANIFEST_FIELDS, ManifestRecord
from stylefusion.results import VideoFeatures, face_found_ratio

logger = logging.getLogger(__name__)

#: Layout of the entries. 2: a video's segments stacked ([S, ...] tensors, window and person) and
#: its duration and window cut in the header; entries of layout 1 (one [T] track) are recomputed.
CACHE_FORMAT = "stylefusion-feature-cache/2"
LABEL_DIRS = ("real", "fake")  # index = label
HASH_CHUNK = 1 << 20  # bytes hashed at each end of a video for its fingerprint
TENSOR_KEYS = ("content", "style", "source_indices", "timestamps", "boxes", "probs", "fallback",
               "window", "person")
#: Tensors an entry may lack (written by later versions of this layout); read as NaN.
OPTIONAL_KEYS = ("quality",)
QUALITY_DIM = 3
#: Config field left out of :func:`preprocessing_hash`: it is compared per video (:func:`windows_match`).
WINDOW_FIELD = "window_s"
#: How much a scanned duration may exceed a multiple of ``window_s`` and still be cut as that
#: multiple (``VideoReader.windows`` allows one tick of timestamp rounding; 50 ms covers coarse
#: time bases). Within this of a multiple the window count is ambiguous and treated as different.
WINDOW_SLACK_S = 0.05
#: Why a video without a judged segment is an invalid entry.
NO_SEGMENT_REASON = "no person visible long enough to judge"
FINGERPRINT_KEYS = ("video_size", "video_mtime_ns", "video_sha256_headtail")


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
    """sha256 of ``config.preprocessing_dict()`` without ``window_s``, as canonical JSON (tuples and
    lists alike). ``window_s`` changes features only through each video's cut, which
    :func:`windows_match` compares per video."""
    prep = {k: v for k, v in config.preprocessing_dict().items() if k != WINDOW_FIELD}
    text = json.dumps(prep, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def window_count(duration: float, window_s: float) -> int | None:
    """Windows ``VideoReader.windows`` cuts a video of ``duration`` seconds into (``ceil(duration /
    window_s)``, at least 1), or None when the duration lies within :data:`WINDOW_SLACK_S` above a
    multiple of ``window_s`` (the reader's tick rounding decides there) or is unknown."""
    if duration is None or not math.isfinite(duration) or duration < 0 or not window_s > 0:
        return None
    if math.isinf(window_s):
        return 1
    hi = max(1, math.ceil(duration / window_s))
    lo = max(1, math.ceil((duration - WINDOW_SLACK_S) / window_s))
    return hi if hi == lo else None


def windows_match(duration: float | None, window_s: float, max_windows: int | None, num_windows: int | None,
                  other_window_s: float, other_max_windows: int | None) -> bool:
    """True when a video cut with (``window_s``, ``max_windows``) — ``num_windows`` windows, if
    recorded — is cut into the same analysed windows with (``other_window_s``, ``other_max_windows``).

    Windows are ``n`` equal stretches of the duration, so the same ``n`` means the same windows;
    of ``n``, ``min(n, max_windows)`` are analysed, spread evenly. ``other_max_windows=None`` asks
    about the windows only (training and evaluation read what was analysed). Unknown durations
    match only the same ``window_s``.
    """
    if window_s == other_window_s:
        n = num_windows
    else:
        n = num_windows if num_windows is not None else window_count(duration, window_s)
        m = window_count(duration, other_window_s)
        if n is None or m is None or n != m:
            return False
    if other_max_windows is None or max_windows == other_max_windows:
        return True
    if n is None:
        n = window_count(duration, window_s)
    if n is None or max_windows is None:
        return False
    return min(n, max_windows) == min(n, other_max_windows)


@dataclass(frozen=True)
class FeatureKey:
    """What must match for an entry to be reused: the backbone weights, the preprocessing and the
    window cut.

    It also carries where the features come from, which is written into the entries it makes but
    is not part of the comparison (``==`` ignores it): the head may change freely. ``window_s`` and
    ``max_windows`` are compared per video by :meth:`matches` (not by ``==``); ``max_windows=None``
    (the key of a model, for reading a cache) accepts any number of analysed windows, and
    ``window_s=None`` any cut (training, which sets its own ``window_s``).
    """

    backbone_sha256: str
    preprocessing_sha256: str
    checkpoint: dict[str, Any] = field(default_factory=dict, compare=False)  # the model's identity()
    model_ref: str = field(default="", compare=False)  # what --model named, so train finds the backbones
    window_s: float | None = field(default=15.0, compare=False)  # the config's (see windows_match); None: any cut
    max_windows: int | None = field(default=None, compare=False)  # extraction's; None: any
    # Settings of features made from altered crops (self-blended pseudo-fakes: their JSON, see
    # stylefusion.research.selfblend); "" for a video's own crops; None (reading): any.
    synthesis: str | None = field(default=None, compare=False)

    @classmethod
    def from_config(cls, config: Any, backbone_sha256: str, checkpoint: dict[str, Any] | None = None,
                    model_ref: str = "", max_windows: int | None = None) -> "FeatureKey":
        """The key of features made with ``config``'s preprocessing by backbones of that digest."""
        return cls(backbone_sha256, preprocessing_hash(config), dict(checkpoint or {}), model_ref,
                   float(config.window_s), max_windows)

    def any_windows(self) -> "FeatureKey":
        """This key accepting entries of any window cut (same backbones and preprocessing)."""
        return replace(self, window_s=None, max_windows=None)

    @classmethod
    def from_model(cls, model: Any, model_ref: str = "", max_windows: int | None = None) -> "FeatureKey":
        """The key of a loaded detector (its identity carries the backbones' digest; no forward)."""
        identity = model.identity()
        return cls.from_config(model.config, identity["backbone_sha256"], identity, model_ref, max_windows)

    def same_source(self, header: "EntryHeader") -> bool:
        """True when the entry was made by these backbones with this preprocessing (any window cut)."""
        return (header.backbone_sha256 == self.backbone_sha256
                and header.preprocessing_sha256 == self.preprocessing_sha256)

    def same_windows(self, header: "EntryHeader") -> bool:
        """True when this key cuts the entry's video into the windows the entry was extracted from."""
        if self.window_s is None:
            return True
        return windows_match(header.duration, header.window_s, header.max_windows, header.num_windows,
                             self.window_s, self.max_windows)

    def same_precision(self, header: "EntryHeader") -> bool:
        """True unless both this key and the entry name a precision and they differ (bf16 features
        are not fp32 features: a run resumed on the other CPU kind recomputes, never mixes)."""
        mine = str(self.checkpoint.get("precision") or "")
        return not (mine and header.precision and mine != header.precision)

    def matches(self, header: "EntryHeader") -> bool:
        """True when the entry's features are the ones this key would make: same backbones, same
        preprocessing, same precision, same windows of the video (and, for a key that names them,
        the same synthesis settings: a self-blend made with other settings is recomputed)."""
        return (self.same_source(header) and self.same_precision(header) and self.same_windows(header)
                and (self.synthesis is None or header.synthesis == self.synthesis))


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


def history_summary(path: str | Path) -> str:
    """The file's processing history as a cache header stores it: JSON of ``codec``, ``bpp``,
    ``mean_qp`` and ``recapture_score`` (:func:`stylefusion.history.measure_history`); "" when
    nothing could be measured. Not part of the reuse rule: it does not change the features."""
    from stylefusion.history import measure_history

    h = measure_history(path)
    if h.bpp is None and h.mean_qp is None and not h.frames_decoded:
        return ""
    d = h.to_dict()
    return json.dumps({k: d[k] for k in ("codec", "bpp", "mean_qp", "recapture_score")}, sort_keys=True)


def fingerprint_matches(path: str | Path, fingerprint: Mapping[str, str]) -> bool:
    """True when the video looks unchanged since ``fingerprint`` was taken (stat first, hash if needed)."""
    try:
        st = Path(path).stat()
    except OSError:
        return False
    if str(st.st_size) != fingerprint.get("video_size"):
        return False
    if str(st.st_mtime_ns) == fingerprint.get("video_mtime_ns"):
        return True
    try:
        return video_fingerprint(path)["video_sha256_headtail"] == fingerprint.get("video_sha256_headtail")
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------
# The entry header
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EntryHeader:
    """An entry's metadata, typed: which video, whether extraction worked, and what made it.

    Stored as the safetensors header's string metadata (:meth:`to_metadata`), so it can be read
    without loading the tensors.
    """

    record: ManifestRecord
    valid: bool  # False: the video failed extraction; ``reason`` says why
    reason: str
    fingerprint: dict[str, str]  # FINGERPRINT_KEYS ("" when the file could not be read)
    backbone_sha256: str
    preprocessing_sha256: str
    checkpoint: dict[str, Any] = field(default_factory=dict)  # the model's identity(): informational
    model_ref: str = ""
    created: str = ""
    face_found_ratio: float | None = None  # valid entries only: crops holding a face, all segments
    window_s: float = 15.0  # the window length the video was cut with
    max_windows: int | None = None  # analysed windows at most (None: all)
    duration: float | None = None  # seconds (VideoReader.duration); None when the file could not be scanned
    num_windows: int | None = None  # windows of the video at window_s (analysed or not)
    segments: int = 0  # S: stacked segments (0 for an invalid entry)
    precision: str = ""  # "fp32" / "bf16": the extractors' precision (detector.precision); "" if unknown
    synthesis: str = ""  # self-blend settings (JSON) of a pseudo-fake; "" for a video's own crops
    # The file's processing history (stylefusion.history, :func:`history_summary`: codec, bits per
    # pixel, mean H.264 quantiser, recapture score) as JSON; "" when not measured. Training takes
    # the checkpoint's history limits from it, as it takes the quality limits from the crops.
    history: str = ""

    def to_metadata(self) -> dict[str, str]:
        meta = {"format": CACHE_FORMAT, "valid": "1" if self.valid else "0", "reason": self.reason,
                **{k: str(getattr(self.record, k)) for k in MANIFEST_FIELDS},
                **{k: self.fingerprint.get(k, "") for k in FINGERPRINT_KEYS},
                "backbone_sha256": self.backbone_sha256, "preprocessing_sha256": self.preprocessing_sha256,
                "checkpoint": json.dumps(self.checkpoint, sort_keys=True, default=str),
                "model_ref": self.model_ref, "created": self.created,
                # repr: the exact float, so a checkpoint's window_s = a duration cuts it as one window
                "window_s": repr(float(self.window_s)),
                "max_windows": "" if self.max_windows is None else str(int(self.max_windows)),
                "duration": "" if self.duration is None else repr(float(self.duration)),
                "num_windows": "" if self.num_windows is None else str(int(self.num_windows)),
                "segments": str(int(self.segments)), "precision": self.precision}
        if self.face_found_ratio is not None:
            meta["face_found_ratio"] = f"{self.face_found_ratio:.6f}"
        if self.synthesis:  # absent for plain entries: their headers stay as before
            meta["synthesis"] = self.synthesis
        if self.history:
            meta["history"] = self.history
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> "EntryHeader":
        """Parse an entry's metadata.

        Raises:
            ValueError: not the metadata of a cache entry of this format, or a field is malformed.
        """
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"not a StyleFusion cache entry of format {CACHE_FORMAT!r} "
                             f"(format {meta.get('format')!r})")
        if meta.get("valid") not in ("0", "1"):
            raise ValueError(f"valid={meta.get('valid')!r} must be '0' or '1'")

        def optional(name: str, kind: type) -> Any:
            text = meta.get(name, "")
            return kind(text) if text else None

        try:
            record = ManifestRecord(**{k: meta[k] for k in MANIFEST_FIELDS if k != "label"},
                                    label=int(meta["label"]))
            window_s = float(meta["window_s"])
            segments = int(meta.get("segments") or 0)
            duration = optional("duration", float)
            if not window_s > 0 or segments < 0 or (duration is not None and not duration >= 0):
                raise ValueError(f"window_s={meta['window_s']!r}, segments={meta.get('segments')!r} "
                                 f"and duration={meta.get('duration')!r} are out of range")
            return cls(record=record, valid=meta["valid"] == "1", reason=meta.get("reason", ""),
                       fingerprint={k: meta.get(k, "") for k in FINGERPRINT_KEYS},
                       backbone_sha256=meta["backbone_sha256"],
                       preprocessing_sha256=meta["preprocessing_sha256"],
                       checkpoint=json.loads(meta.get("checkpoint") or "{}"),
                       model_ref=meta.get("model_ref", ""), created=meta.get("created", ""),
                       face_found_ratio=optional("face_found_ratio", float), window_s=window_s,
                       max_windows=optional("max_windows", int), duration=duration,
                       num_windows=optional("num_windows", int), segments=segments,
                       precision=meta.get("precision", ""), synthesis=meta.get("synthesis", ""),
                       history=meta.get("history", ""))
        except KeyError as exc:
            raise ValueError(f"header lacks {exc}") from None

    @classmethod
    def read(cls, path: str | Path) -> "EntryHeader | None":
        """The header of the entry at ``path``, or None when the file is not a readable entry."""
        meta = read_header(path)
        if meta is None:
            return None
        try:
            return cls.from_metadata(meta)
        except ValueError:
            return None


FORMAT_PREFIX = CACHE_FORMAT.rsplit("/", 1)[0] + "/"


def read_header(path: str | Path) -> dict[str, str] | None:
    """The string metadata of an entry as stored (of this or an older layout: see its ``format``),
    or None when the file is not a readable entry."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # truncated, not safetensors, unreadable: all mean "no usable entry"
        return None
    return meta if str(meta.get("format", "")).startswith(FORMAT_PREFIX) else None


def is_current(meta: Mapping[str, str] | None) -> bool:
    """True for the metadata of an entry of this layout (:data:`CACHE_FORMAT`)."""
    return meta is not None and meta.get("format") == CACHE_FORMAT


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def entry_name(video_id: str) -> str:
    """A file name for a video id: readable, and unique thanks to a short hash of the exact id."""
    readable = _UNSAFE.sub("_", video_id.replace("/", "__")).strip("._")[:120] or "video"
    return f"{readable}-{hashlib.sha256(video_id.encode()).hexdigest()[:10]}.safetensors"


@dataclass
class VideoSegments:
    """A video's S segments stacked, as an entry stores them (the layout of the module docstring).

    Segment ``i`` is :class:`~stylefusion.results.VideoFeatures` ``self[i]``: the T crops of one
    person (``person[i]``) in one window (``window[i]``), in time order.
    """

    content: torch.Tensor  # [S, C, Dc]
    style: torch.Tensor  # [S, T, L, Ds]
    source_indices: np.ndarray  # [S, T] int64
    timestamps: np.ndarray  # [S, T] float64
    boxes: np.ndarray  # [S, T, 4] float32
    probs: np.ndarray  # [S, T] float32
    fallback: np.ndarray  # [S, T] bool
    window: np.ndarray  # [S] int64
    person: np.ndarray  # [S] int64
    quality: np.ndarray | None = None  # [S, 3] float32, NaN where unmeasured

    def __post_init__(self) -> None:
        if self.quality is None:
            self.quality = np.full((len(self), QUALITY_DIM), np.nan, np.float32)

    def __len__(self) -> int:
        return int(self.content.shape[0])

    def __getitem__(self, i: int) -> VideoFeatures:
        q = self.quality[i]
        return VideoFeatures(content=self.content[i], style=self.style[i], source_indices=self.source_indices[i],
                             timestamps=self.timestamps[i], boxes=self.boxes[i], probs=self.probs[i],
                             fallback=self.fallback[i], window=int(self.window[i]), person=int(self.person[i]),
                             quality=q if np.isfinite(q).all() else None)

    def __iter__(self) -> Iterator[VideoFeatures]:
        return (self[i] for i in range(len(self)))

    @property
    def face_found_ratio(self) -> float:
        """Crops holding a face, over all segments (0 when there is none)."""
        return face_found_ratio(self.fallback.reshape(-1))

    @classmethod
    def stack(cls, segments: "Sequence[VideoFeatures] | VideoFeatures") -> "VideoSegments":
        """Stack one video's segments (a single VideoFeatures is one segment).

        Raises:
            ValueError: no segment, or segments of different shapes.
        """
        segs = [segments] if isinstance(segments, VideoFeatures) else list(segments)
        if not segs:
            raise ValueError("a video with no segment has no features (record it with write_invalid)")

        def arr(name: str, dtype: Any) -> np.ndarray:
            return np.stack([np.asarray(getattr(f, name), dtype=dtype) for f in segs])

        try:
            return cls(content=torch.stack([f.content.detach().to("cpu", torch.float32) for f in segs]).contiguous(),
                       style=torch.stack([f.style.detach().to("cpu", torch.float32) for f in segs]).contiguous(),
                       source_indices=arr("source_indices", np.int64), timestamps=arr("timestamps", np.float64),
                       boxes=arr("boxes", np.float32).reshape(len(segs), -1, 4), probs=arr("probs", np.float32),
                       fallback=arr("fallback", bool), window=np.array([f.window for f in segs], np.int64),
                       person=np.array([f.person for f in segs], np.int64),
                       quality=np.stack([np.full(QUALITY_DIM, np.nan, np.float32) if f.quality is None
                                         else np.asarray(f.quality, np.float32).reshape(QUALITY_DIM)
                                         for f in segs]))
        except (RuntimeError, ValueError) as exc:  # torch.stack / np.stack of unequal shapes
            raise ValueError(f"segments of one video must have equal shapes ({exc})") from None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The entry's tensors (TENSOR_KEYS)."""
        return {"content": self.content.contiguous(), "style": self.style.contiguous(),
                **{k: torch.from_numpy(np.ascontiguousarray(getattr(self, k)))
                   for k in TENSOR_KEYS[2:] + OPTIONAL_KEYS}}

    @classmethod
    def from_tensors(cls, t: Mapping[str, torch.Tensor]) -> "VideoSegments":
        """Back from an entry's tensors, checking the layout.

        Raises:
            ValueError: a tensor is missing or its shape does not fit the others'.
        """
        missing = [k for k in TENSOR_KEYS if k not in t]
        if missing:
            raise ValueError(f"lacks tensors {missing}")
        content, style = t["content"], t["style"]
        if content.dim() != 3 or style.dim() != 4:
            raise ValueError(f"content {list(content.shape)} / style {list(style.shape)} are not "
                             "[S, C, Dc] / [S, T, L, Ds] (an entry of another layout)")
        n, frames = style.shape[:2]
        want = {"content": (n, None, None), "source_indices": (n, frames), "timestamps": (n, frames),
                "boxes": (n, frames, 4), "probs": (n, frames), "fallback": (n, frames), "window": (n,),
                "person": (n,), "quality": (n, QUALITY_DIM)}
        for k, shape in want.items():
            if k in OPTIONAL_KEYS and k not in t:
                continue
            have = tuple(t[k].shape)
            if len(have) != len(shape) or any(w is not None and h != w for h, w in zip(have, shape)):
                raise ValueError(f"tensor {k} has shape {list(have)}, expected "
                                 f"{['*' if w is None else w for w in shape]} for {n} segments of {frames} frames")
        return cls(content=content.float(), style=style.float(), source_indices=t["source_indices"].numpy(),
                   timestamps=t["timestamps"].numpy(), boxes=t["boxes"].numpy(), probs=t["probs"].numpy(),
                   fallback=t["fallback"].numpy(), window=t["window"].numpy(), person=t["person"].numpy(),
                   quality=t["quality"].float().numpy() if "quality" in t else None)


@dataclass
class CacheEntry:
    """One entry as read back: its header and, when valid (and asked for), its segments."""

    path: Path
    header: EntryHeader
    features: VideoSegments | None

    @property
    def valid(self) -> bool:
        return self.header.valid

    @property
    def label(self) -> int:
        return self.header.record.label

    @property
    def meta(self) -> dict[str, str]:
        """The header as stored (string metadata)."""
        return self.header.to_metadata()


class Action(enum.Enum):
    """What extraction must do for one manifest row."""

    REUSE = "reuse"  # the entry is current (a recorded failure too, unless retrying failures)
    RELABEL = "relabel"  # the features are current, the manifest fields are not: rewrite the header
    COMPUTE = "compute"  # no current entry: extract


class Plan(NamedTuple):
    """The decision for one row, with the entry it is based on (none for COMPUTE)."""

    action: Action
    path: Path | None = None  # may sit under the other label's folder when the label changed
    header: EntryHeader | None = None


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
    def plan(self, record: ManifestRecord, key: FeatureKey, retry_failed: bool = False) -> Plan:
        """What extraction must do for ``record`` given features of ``key``.

        Reads one header (two when the label changed) and, only when the video's size matches but
        its mtime does not, the first and last MiB of the video.
        """
        for label in (record.label, 1 - record.label):
            path = self.path_for(record.video_id, label)
            header = EntryHeader.read(path) if path.exists() else None
            if header is None:
                continue
            if (not key.matches(header) or header.record.video_id != record.video_id
                    or not fingerprint_matches(record.path, header.fingerprint)
                    or (retry_failed and not header.valid)):
                return Plan(Action.COMPUTE)
            same = header.record == record and label == record.label
            return Plan(Action.REUSE if same else Action.RELABEL, path, header)
        return Plan(Action.COMPUTE)

    # --- writing ----------------------------------------------------------------------------
    @staticmethod
    def _header(record: ManifestRecord, key: FeatureKey, fingerprint: dict[str, str], valid: bool,
                reason: str = "", face_found_ratio: float | None = None, duration: float | None = None,
                num_windows: int | None = None, segments: int = 0, history: str = "") -> EntryHeader:
        if key.window_s is None:
            raise ValueError("entries are written with the window_s they were cut with, not window_s=None")
        return EntryHeader(record, valid, reason, dict(fingerprint), key.backbone_sha256,
                           key.preprocessing_sha256, dict(key.checkpoint), key.model_ref,
                           time.strftime("%Y-%m-%dT%H:%M:%S%z"), face_found_ratio, float(key.window_s),
                           key.max_windows, duration, num_windows, segments,
                           str(key.checkpoint.get("precision") or ""), key.synthesis or "", history)

    def _write(self, tensors: dict[str, torch.Tensor], header: EntryHeader) -> Path:
        from safetensors.torch import save

        record = header.record
        path = self.path_for(record.video_id, record.label)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*"):  # left by a killed writer of this video
            stale.unlink(missing_ok=True)
        data = save(tensors, metadata=header.to_metadata())
        try:
            # The bytes go through this module's open(), so a test can fill the disk mid-write.
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise CacheWriteError(f"{path}: cannot write cache entry ({describe_os_error(exc)}); no partial "
                                  "entry was left, free space and rerun to resume") from None
        other = self.path_for(record.video_id, 1 - record.label)
        if other.exists():  # the manifest moved this video to the other label
            other.unlink()
        return path

    def write(self, record: ManifestRecord, key: FeatureKey,
              segments: "VideoSegments | Sequence[VideoFeatures] | VideoFeatures",
              fingerprint: dict[str, str] | None = None, *, duration: float | None = None,
              num_windows: int | None = None, history: str = "") -> Path:
        """Store a video's segments (at least one; fingerprint taken now unless given).

        ``duration`` (seconds, ``VideoReader.duration``) and ``num_windows`` (its windows at
        ``key.window_s``) are recorded for :func:`windows_match` and for ``train``'s ``window_s``;
        without them only the same ``window_s`` reuses the entry. ``history``: the file's
        :func:`history_summary` (JSON), for the checkpoint's history limits.
        """
        fingerprint = fingerprint or video_fingerprint(record.path)
        stack = segments if isinstance(segments, VideoSegments) else VideoSegments.stack(segments)
        if not len(stack):
            raise ValueError(f"{record.video_id}: no segment to store (record it with write_invalid)")
        header = self._header(record, key, fingerprint, True, face_found_ratio=stack.face_found_ratio,
                              duration=duration, num_windows=num_windows, segments=len(stack), history=history)
        return self._write(stack.tensors(), header)

    def write_invalid(self, record: ManifestRecord, key: FeatureKey, reason: str,
                      fingerprint: dict[str, str] | None = None, *, duration: float | None = None,
                      num_windows: int | None = None) -> Path:
        """Record that a video failed (and why), so a resumed run does not retry it blindly."""
        if fingerprint is None:
            try:
                fingerprint = video_fingerprint(record.path)
            except OSError:
                fingerprint = {k: "" for k in FINGERPRINT_KEYS}
        reason = " ".join(reason.split())[:1000]  # one line, bounded header size
        return self._write({}, self._header(record, key, fingerprint, False, reason, duration=duration,
                                            num_windows=num_windows))

    def relabel(self, record: ManifestRecord, existing: Path) -> Path:
        """Rewrite an entry's manifest fields without recomputing its features."""
        from safetensors.torch import load_file

        header = EntryHeader.read(existing)
        if header is None:
            raise CacheError(f"{existing}: not a readable cache entry, cannot relabel it")
        return self._write(load_file(str(existing)), replace(header, record=record))

    # --- reading ----------------------------------------------------------------------------
    def read(self, path: Path, headers_only: bool = False, meta: Mapping[str, str] | None = None) -> CacheEntry | None:
        """One entry (without its segments if ``headers_only``), or None with a
        :class:`CacheCorruptionWarning` when it is unreadable or of an older layout."""
        from safetensors.torch import load_file

        try:
            meta = read_header(path) if meta is None else meta
            if meta is None:
                raise ValueError("not a StyleFusion cache entry")
            if not is_current(meta):
                raise ValueError(f"an entry of an older cache layout ({meta.get('format')}); "
                                 "`stylefusion extract` recomputes it")
            header = EntryHeader.from_metadata(meta)
            if headers_only or not header.valid:
                return CacheEntry(path, header, None)
            segments = VideoSegments.from_tensors(load_file(str(path)))
            if len(segments) != header.segments:
                raise ValueError(f"holds {len(segments)} segments, its header says {header.segments}")
            return CacheEntry(path, header, segments)
        except Exception as exc:  # a corrupt entry must not stop training on the other 4,999
            warnings.warn(f"{path}: skipped unreadable cache entry ({type(exc).__name__}: {exc})",
                          CacheCorruptionWarning, stacklevel=2)
            return None

    def entries(self, splits: Sequence[str] | None = None, include_invalid: bool = False,
                headers_only: bool = False) -> Iterator[CacheEntry]:
        """Readable entries of the given splits; invalid ones are skipped with a warning unless asked,
        and so are entries of an older layout (one warning for all)."""
        invalid = old = 0
        for path in self.files():
            meta = read_header(path)
            if meta is not None and not is_current(meta):
                old += 1
                continue
            entry = self.read(path, headers_only=headers_only, meta=meta)
            if entry is None or (splits and entry.header.record.split not in splits):
                continue
            if not entry.valid:
                invalid += 1
                if not include_invalid:
                    logger.debug("%s: invalid entry (%s)", path, entry.header.reason)
                    continue
            yield entry
        if invalid and not include_invalid:
            warnings.warn(f"{self.root}: skipped {invalid} invalid entries (videos that failed extraction; "
                          "see their 'reason' metadata or `stylefusion extract --retry-failed`)",
                          CacheCorruptionWarning, stacklevel=2)
        if old:
            warnings.warn(f"{self.root}: skipped {old} entries of an older cache layout (format other than "
                          f"{CACHE_FORMAT!r}); run `stylefusion extract` again to recompute them",
                          CacheCorruptionWarning, stacklevel=2)


def recorded_model(cache_dir: str | Path) -> str:
    """The checkpoint reference (``--model`` of extract) recorded in the cache's entries, or ""."""
    for path in FeatureCache(cache_dir).files():
        header = EntryHeader.read(path)
        if header is not None and header.model_ref:
            return header.model_ref
    return ""
