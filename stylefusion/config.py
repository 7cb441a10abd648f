"""The one configuration of a StyleFusion checkpoint: architecture AND preprocessing.

A checkpoint is ``config.json`` (this dataclass) + ``model.safetensors``. The config carries the
preprocessing the weights were made with (frames, face crops, normalisations), so a caller cannot
pair weights with the wrong inputs, and it says whether the fusion head was trained and on what,
so no caller presents the output of an untrained head as a verdict.

Defaults follow the report (``../shared/seed/deepfake-detection-report.txt``); a value that differs
from the report or is not in it says why beside it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stylefusion.errors import ConfigError

#: Version of the config layout. A config written by a newer layout is refused with a clear message.
CONFIG_FORMAT_VERSION = 1

#: pSp's GradualStyleEncoder produces 18 style levels for a 1024px StyleGAN2 (spec §1.4).
N_STYLE_LEVELS = 18

LABELS = ("fake", "real", "uncertain", "no_face", "untrained")

#: A config.json larger than this is not ours (ours is about 2 KB); refused before parsing.
MAX_CONFIG_BYTES = 1_000_000
#: Parameters a config may ask for (the full preset has 80M): refused before anything is allocated.
MAX_PARAMETERS = 1_000_000_000

_short_repr = reprlib.Repr()
_short_repr.maxlist = _short_repr.maxtuple = 8
_short_repr.maxstring = _short_repr.maxother = 60


def _q(value: Any) -> str:
    """A value quoted in an error message, shortened (a hostile config may hold huge lists)."""
    return _short_repr.repr(value)


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is not an int here


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


@dataclass
class StyleFusionConfig:
    """Architecture, preprocessing, decision rule and provenance of a StyleFusion checkpoint."""

    format_version: int = CONFIG_FORMAT_VERSION
    preset: str = "full"

    # --- frames (report: T=32 uniform, circular padding; 64 for Celeb-DF in the report)
    num_frames: int = 32

    # --- faces (report: MTCNN, 20% margin, 256x256 crops, centre-crop fallback)
    face_size: int = 256
    face_margin: float = 0.2  # box grown by 20% of its size in source pixels
    mtcnn_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # facenet-pytorch defaults
    mtcnn_min_face_size: int = 20  # in pixels of the frame MTCNN sees
    mtcnn_factor: float = 0.709
    # Not in the report: on frames with a longer side than this, MTCNN skips the fine pyramid levels
    # that only small faces need (as if the frame were downscaled to this side; the smallest face
    # searched in 720p becomes ~40 px). Saves most of MTCNN's time with the same boxes for larger
    # faces. 0 = search every level.
    detect_max_side: int = 640
    min_face_confidence: float = 0.9  # boxes below this are ignored when picking the main face

    # --- content path (spec §2: PyTorchVideo slow_r50 trunk, clips 3x16x112x112, 0.45/0.225)
    content_size: int = 112
    clip_len: int = 16
    content_mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    content_std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    content_width: int = 64  # stem channels; the 2048-d feature is content_width * 32
    content_depths: tuple[int, int, int, int] = (3, 4, 6, 3)

    # --- style path (spec §1: pSp GradualStyleEncoder, IR-SE-50, level 9, 0.5/0.5)
    style_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    style_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    style_levels: tuple[int, ...] = (9,)
    style_width: int = 64  # input_layer channels; the style vector is style_width * 8 (512)
    style_units: tuple[int, int, int, int] = (3, 4, 14, 3)
    style_batch_size: int = 16  # crops per style-encoder pass (bounds activation memory)

    # --- fusion head (report: StyleGRU, style attention, transformer with class token, 2 FC)
    gru_hidden: int = 128  # the report gives no size; 128 keeps a training epoch over 5,000 cached videos fast on 2 CPU cores
    gru_layers: int = 1
    gru_bidirectional: bool = True
    style_diff: bool = False  # Choi et al. 2024 feed frame-to-frame differences; the report does not
    attn_dim: int = 256
    transformer_layers: int = 2
    transformer_heads: int = 4
    transformer_ff: int = 512
    fc_hidden: int = 128
    dropout: float = 0.1

    # --- decision (threshold calibrated on validation data by `stylefusion train`)
    threshold: float = 0.5
    uncertain_margin: float = 0.1  # |p_fake - threshold| < margin -> "uncertain"
    min_face_ratio: float = 0.5  # fewer frames with a face than this -> "no_face"

    # --- provenance (honest outputs: an untrained head never yields fake/real)
    trained: bool = False
    training: dict[str, Any] = field(default_factory=dict)  # data, recipe, metrics, threshold source
    provenance: dict[str, Any] = field(default_factory=dict)  # converted from, sha256 of inputs

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for name in ("mtcnn_thresholds", "content_mean", "content_std", "style_mean", "style_std",
                     "style_levels", "content_depths", "style_units"):
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, tuple(value))
        self.validate()

    # Limits that keep a hostile config.json from asking for absurd allocations.
    _LIMITS = {
        "num_frames": (1, 1024), "face_size": (32, 1024), "mtcnn_min_face_size": (4, 1024),
        "detect_max_side": (0, 8192), "content_size": (32, 512), "clip_len": (1, 256),
        "content_width": (1, 256), "style_width": (1, 256), "style_batch_size": (1, 1024),
        "gru_hidden": (1, 8192), "gru_layers": (1, 16), "attn_dim": (1, 8192),
        "transformer_layers": (0, 32), "transformer_heads": (1, 64), "transformer_ff": (1, 65536),
        "fc_hidden": (1, 65536),
    }

    def validate(self) -> None:
        """Reject bad values and combinations with a message that quotes them."""
        if not _is_int(self.format_version) or self.format_version > CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"config format_version={_q(self.format_version)} is newer than this StyleFusion "
                f"understands ({CONFIG_FORMAT_VERSION}) or not a version; upgrade the stylefusion package")
        if self.format_version < 1:
            raise ConfigError(f"config format_version={self.format_version!r} is not a StyleFusion config")
        if not isinstance(self.preset, str):
            raise ConfigError(f"config preset={_q(self.preset)} must be a string")
        for name, (lo, hi) in self._LIMITS.items():
            value = getattr(self, name)
            if not _is_int(value) or not lo <= value <= hi:
                raise ConfigError(f"config {name}={_q(value)} must be an integer in [{lo}, {hi}]")
        for name in ("trained", "gru_bidirectional", "style_diff"):
            if type(getattr(self, name)) is not bool:
                raise ConfigError(f"config {name}={_q(getattr(self, name))} must be true or false")
        for name in ("face_margin", "mtcnn_factor", "min_face_confidence", "dropout", "threshold",
                     "uncertain_margin", "min_face_ratio"):
            if not _is_number(getattr(self, name)):
                raise ConfigError(f"config {name}={_q(getattr(self, name))} must be a finite number")
        if not 0.0 <= self.face_margin <= 2.0:
            raise ConfigError(f"config face_margin={self.face_margin} must be in [0, 2]")
        if not 0.0 < self.mtcnn_factor < 1.0:
            raise ConfigError(f"config mtcnn_factor={self.mtcnn_factor} must be in (0, 1)")
        for name in ("threshold", "min_face_ratio", "min_face_confidence", "dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"config {name}={getattr(self, name)} must be in [0, 1]")
        if not 0.0 <= self.uncertain_margin <= 0.5:
            raise ConfigError(f"config uncertain_margin={self.uncertain_margin} must be in [0, 0.5]")
        thresholds = self.mtcnn_thresholds
        if not isinstance(thresholds, tuple) or len(thresholds) != 3 or not all(
                _is_number(t) and 0 < t < 1 for t in thresholds):
            raise ConfigError(f"config mtcnn_thresholds={_q(thresholds)} must be 3 numbers in (0, 1)")
        for name in ("content_mean", "content_std", "style_mean", "style_std"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 3 or not all(_is_number(v) for v in value) \
                    or (name.endswith("std") and min(value) <= 0):
                raise ConfigError(f"config {name}={_q(value)} must be 3 finite numbers (std > 0)")
        for name in ("content_depths", "style_units"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 4 or not all(_is_int(d) and 1 <= d <= 64 for d in value):
                raise ConfigError(f"config {name}={_q(value)} must be 4 integers in [1, 64]")
        levels = self.style_levels
        if not isinstance(levels, tuple) or not levels or len(set(levels)) != len(levels) or not all(
                _is_int(i) and 0 <= i < N_STYLE_LEVELS for i in levels):
            raise ConfigError(
                f"config style_levels={_q(levels)} must be distinct integers in [0, {N_STYLE_LEVELS - 1}]")
        if list(levels) != sorted(levels):
            raise ConfigError(f"config style_levels={_q(levels)} must be in increasing order")
        if self.num_frames < self.clip_len or self.num_frames % self.clip_len:
            raise ConfigError(
                f"config num_frames={self.num_frames} must be a multiple of clip_len={self.clip_len} "
                "(the content path cuts the frames into whole clips)")
        if self.face_size & (self.face_size - 1):
            raise ConfigError(f"config face_size={self.face_size} must be a power of two (pSp style "
                              "blocks reduce the map to exactly 1x1)")
        if self.attn_dim % self.transformer_heads:
            raise ConfigError(f"config attn_dim={self.attn_dim} must be divisible by "
                              f"transformer_heads={self.transformer_heads}")
        if not isinstance(self.training, dict) or not isinstance(self.provenance, dict):
            raise ConfigError("config training and provenance must be JSON objects")
        params = self.estimated_parameters()
        if params > MAX_PARAMETERS:
            raise ConfigError(f"config asks for about {params:,} parameters (limit {MAX_PARAMETERS:,}): "
                              "not a StyleFusion model")

    def estimated_parameters(self) -> int:
        """An upper-bound estimate of the model size, computed without building it."""
        cw, sw = self.content_width, self.style_width
        content = 2000 * cw * cw * sum(self.content_depths)  # bottlenecks up to 32*cw channels
        style = 700 * sw * sw * sum(self.style_units) + len(self.style_levels) * 6 * 9 * (8 * sw) ** 2
        gru_in = len(self.style_levels) * 8 * sw
        dirs = 2 if self.gru_bidirectional else 1
        gru = 3 * dirs * self.gru_layers * self.gru_hidden * (gru_in + self.gru_hidden * dirs + 2)
        head = (self.attn_dim * (32 * cw + 2 * dirs * self.gru_hidden)
                + self.transformer_layers * (4 * self.attn_dim ** 2 + 2 * self.attn_dim * self.transformer_ff)
                + self.attn_dim * self.fc_hidden)
        return int(content + style + gru + head)

    # --- derived sizes ----------------------------------------------------------------------
    @property
    def content_dim(self) -> int:
        """Size of one clip's content vector (2048 for slow_r50)."""
        return self.content_width * 32

    @property
    def style_dim(self) -> int:
        """Size of one style latent (512 for pSp)."""
        return self.style_width * 8

    @property
    def num_clips(self) -> int:
        return self.num_frames // self.clip_len

    # --- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StyleFusionConfig":
        """Build from a parsed config.json; unknown fields are an error that names them."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        version = data.get("format_version", CONFIG_FORMAT_VERSION)
        if isinstance(version, int) and version > CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"config format_version={version} is newer than this StyleFusion understands "
                f"({CONFIG_FORMAT_VERSION}); upgrade the stylefusion package")
        if unknown:
            raise ConfigError(f"config has unknown fields {_q(unknown)}: not a StyleFusion config of this version")
        try:
            return cls(**data)
        except TypeError as exc:  # e.g. a string where a tuple belongs
            raise ConfigError(f"config is malformed: {exc}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> "StyleFusionConfig":
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: {size:,} bytes is far too large for a StyleFusion config.json")
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ConfigError(f"{path}: cannot read config.json ({reason})") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def replace(self, **changes: Any) -> "StyleFusionConfig":
        return dataclasses.replace(self, **changes)

    def preprocessing_dict(self) -> dict[str, Any]:
        """The fields that change extracted features; hashed by the feature cache."""
        keys = ("num_frames", "face_size", "face_margin", "mtcnn_thresholds", "mtcnn_min_face_size",
                "mtcnn_factor", "detect_max_side", "min_face_confidence", "content_size", "clip_len",
                "content_mean", "content_std", "style_mean", "style_std", "style_levels")
        return {k: getattr(self, k) for k in keys}


PRESETS: dict[str, dict[str, Any]] = {
    # The report's sizes: slow_r50 trunk (31.6M parameters), pSp level-9 subset (45.6M).
    "full": {},
    # The same code with few channels, for tests: a forward pass on 32 crops takes well under a second.
    "tiny": dict(
        preset="tiny", content_width=8, content_depths=(1, 1, 1, 1), style_width=8,
        style_units=(1, 1, 1, 1), gru_hidden=16, attn_dim=16, transformer_layers=1,
        transformer_heads=2, transformer_ff=32, fc_hidden=16,
    ),
}


def preset_config(name: str, **overrides: Any) -> StyleFusionConfig:
    """Config of a named preset (``full`` or ``tiny``) with optional overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return StyleFusionConfig(**{**PRESETS[name], **overrides})
