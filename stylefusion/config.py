"""The one configuration of a StyleFusion checkpoint: architecture AND preprocessing.

A checkpoint is ``config.json`` (this dataclass) + ``model.safetensors``. The config carries the
preprocessing the weights were made with (frames, face crops, normalisations), so a caller cannot
pair weights with the wrong inputs, and it says whether the fusion head was trained and on what
(a :class:`TrainingRecord`), so no caller presents the output of an untrained head as a verdict.

Every field is declared once, with :func:`param`: its default, its limits, and whether it changes
the extracted features. Validation and :meth:`StyleFusionConfig.preprocessing_dict` (what the
feature cache hashes to decide whether a cached entry is still valid) are derived from those
declarations, so a new feature-changing field cannot be forgotten by the cache.

Defaults follow the report (Humphrey et al., *Deepfake Detection Final Report*); a value that
differs from the report or is not in it says why beside it. Settings that do not belong to a
checkpoint (batch sizes, precision, devices) are arguments of the detector, not fields here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import reprlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stylefusion.errors import ConfigError

logger = logging.getLogger(__name__)

#: Version of the config layout. A config written by a newer layout is refused with a clear message.
CONFIG_FORMAT_VERSION = 1

#: pSp's GradualStyleEncoder produces 18 style levels for a 1024px StyleGAN2 (pSp, Richardson et al.).
N_STYLE_LEVELS = 18

#: Quantiles of the validation real segments' scores kept at most (CalibrationRecord).
MAX_QUANTILES = 1001
#: A config.json larger than this is not ours (ours is about 3 KB); refused before parsing.
MAX_CONFIG_BYTES = 1_000_000
#: Parameters a config may ask for (the full preset has 80M): refused before anything is allocated.
MAX_PARAMETERS = 1_000_000_000

#: Fields of earlier configs that are no longer part of a checkpoint; read and ignored.
#: ``style_batch_size`` is a runtime setting now (``StyleFusionDetector(style_batch_size=...)``).
#: ``min_face_ratio`` became ``min_person_frames``, which became ``min_person_s`` (seconds of a person's
#: visible span in a shot); ``track_iou`` served the retired single-main-face path and
#: ``track_min_appearance`` the colour-histogram veto that a flickering face defeated.
RETIRED_FIELDS = frozenset({"style_batch_size", "min_face_ratio", "min_person_frames", "track_iou",
                            "track_min_appearance"})

#: Input-quality limits of checkpoints whose training did not measure its data's crops (see the
#: README's "Input quality" for the measurements on the shared clips behind them).
QUALITY_DEFAULTS = {"min_face_px": 40.0, "min_sharpness": 0.04, "min_brightness": 35.0, "max_brightness": 195.0}
#: Processing-history limits of checkpoints whose training did not measure its videos' history
#: (:class:`stylefusion.history.HistoryLimits` explains each; measured on the shared clips and
#: carphone, ``benchmarks/provenance_table.py``).
HISTORY_DEFAULTS = {"max_h264_qp": 40.0, "min_bpp": 0.02, "min_recapture_score": 2}

_short_repr = reprlib.Repr()
_short_repr.maxlist = _short_repr.maxtuple = 8
_short_repr.maxstring = _short_repr.maxother = 60


def _quote(value: Any) -> str:
    """A value quoted in an error message, shortened (a hostile config may hold huge lists)."""
    return _short_repr.repr(value)


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is not an int here


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


# ----------------------------------------------------------------------------------------------
# One declaration per field
# ----------------------------------------------------------------------------------------------
def param(default: Any, *, lo: float | None = None, hi: float | None = None, features: bool = False,
          length: int | None = None, lo_open: bool = False, hi_open: bool = False) -> Any:
    """A config field: default, limits and whether it changes extracted features, in one place.

    Args:
        default: the value (its type is the field's type: bool, int, float, str, or a tuple of
            ints or floats).
        lo, hi: inclusive limits of the value (of every element for tuples); they also keep a
            hostile config.json from asking for absurd allocations.
        lo_open, hi_open: make a limit exclusive.
        features: True when a change of this value changes the features the extractors produce
            for the same video and weights; such fields are hashed by the feature cache.
        length: the required length of a tuple field (None: any non-empty length).
    """
    meta: dict[str, Any] = {"kind": tuple if isinstance(default, tuple) else type(default), "lo": lo, "hi": hi,
                            "lo_open": lo_open, "hi_open": hi_open, "features": features}
    if isinstance(default, tuple):
        meta["element"] = float if any(isinstance(v, float) for v in default) else int
        meta["length"] = length
    return field(default=default, metadata=meta)


def _limit_text(m: dict[str, Any]) -> str:
    lo = "(" if m["lo_open"] else "["
    hi = ")" if m["hi_open"] else "]"
    return f"{lo}{m['lo']}, {m['hi']}{hi}"


def _in_limits(value: float, m: dict[str, Any]) -> bool:
    lo, hi = m["lo"], m["hi"]
    if lo is not None and (value <= lo if m["lo_open"] else value < lo):
        return False
    if hi is not None and (value >= hi if m["hi_open"] else value > hi):
        return False
    return True


def _check_field(name: str, value: Any, m: dict[str, Any]) -> None:
    """Raise ConfigError when ``value`` does not fit the declaration ``m`` of field ``name``."""
    kind = m["kind"]
    limits = f" in {_limit_text(m)}" if m["lo"] is not None or m["hi"] is not None else ""
    if kind is bool:
        if type(value) is not bool:
            raise ConfigError(f"config {name}={_quote(value)} must be true or false")
    elif kind is int:
        if not _is_int(value) or not _in_limits(value, m):
            raise ConfigError(f"config {name}={_quote(value)} must be an integer{limits}")
    elif kind is float:
        if not _is_number(value) or not _in_limits(value, m):
            raise ConfigError(f"config {name}={_quote(value)} must be a finite number{limits}")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"config {name}={_quote(value)} must be a string")
    elif kind is tuple:
        element, length = m["element"], m["length"]
        ok_element = _is_int if element is int else _is_number
        what = "integers" if element is int else "finite numbers"
        count = f"{length} " if length else ""
        if (not isinstance(value, tuple) or not value or (length and len(value) != length)
                or not all(ok_element(v) and _in_limits(v, m) for v in value)):
            raise ConfigError(f"config {name}={_quote(value)} must be {count or 'a list of '}{what}{limits}")


# ----------------------------------------------------------------------------------------------
# The training record
# ----------------------------------------------------------------------------------------------
def _record(cls: type, data: dict[str, Any], name: str) -> Any:
    """``cls(**data)`` for a record of config.json, refusing fields it does not know by name."""
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"config {name} has unknown fields {_quote(unknown)}")
    return cls(**data)



@dataclass
class TrainingRecord:
    """What a trained fusion head was trained on and how: filled by ``stylefusion train``.

    Every reader (the model card, the app, the CLI, ``StyleFusionDetector.identity``) reads these
    fields; nothing reads the training record as a free-form dict.
    """

    datasets: list[str] = field(default_factory=list)  # e.g. ["ffpp"]
    data_summary: str = ""  # one line for people: "ffpp (720+2880 train videos)"
    data: str | None = None  # the feature cache the head was trained from
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {"real": n, "fake": n}
    val_source: str | None = None  # "cache" (a val split) or "carved from train (15%)"
    val_metrics: dict[str, Any] = field(default_factory=dict)  # auc, ap, eer, accuracy, ... at the threshold
    threshold_source: str | None = None  # how the decision threshold was chosen
    features: dict[str, Any] = field(default_factory=dict)  # backbone/preprocessing sha256 of the cache
    init_from: str | None = None  # the checkpoint fine-tuned, if any
    recipe: dict[str, Any] = field(default_factory=dict)  # optimiser, schedule, loss, every option
    epochs_run: int | None = None
    best_epoch: int | None = None
    history_file: str | None = None  # per-epoch curves beside the checkpoint
    hub_datasets: list[str] = field(default_factory=list)  # dataset ids on the Hub, for the card
    # How the checkpoint holds up (stylefusion.research.robustness.record_summary): AUC, FPR, TPR
    # and share answered per perturbation and level on validation videos; {} when not measured.
    robustness: dict[str, Any] = field(default_factory=dict)
    # Where the fake class came from: "" (labelled fakes) or "self-blend" (pseudo-fakes made from
    # the real videos by `stylefusion extract --self-blend`: trained on real videos only).
    pseudo_fakes: str = ""
    # How the labels of fake videos were read (research.data.CachedFeatures.units): per segment
    # (every judged person of a fake video fake), or multiple-instance (a fake video of several
    # people as a bag, at least one fake); "" in records written before every person was judged.
    fake_labels: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "TrainingRecord | None":
        """Parse the ``training`` object of config.json (None or ``{}`` for an untrained head)."""
        if data is None or data == {}:
            return None
        if isinstance(data, TrainingRecord):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"config training={_quote(data)} must be a JSON object or null")
        data = dict(data)
        if "dataset" in data:  # hand-written records of earlier versions
            dataset = data.pop("dataset")
            data.setdefault("datasets", [str(dataset)])
            data.setdefault("data_summary", str(dataset))
        record = _record(cls, data, "training")
        for name in ("datasets", "hub_datasets"):
            value = getattr(record, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"config training.{name}={_quote(value)} must be a list of strings")
        for name in ("counts", "val_metrics", "features", "recipe", "robustness"):
            if not isinstance(getattr(record, name), dict):
                raise ConfigError(f"config training.{name}={_quote(getattr(record, name))} must be an object")
        if not isinstance(record.pseudo_fakes, str):
            raise ConfigError(f"config training.pseudo_fakes={_quote(record.pseudo_fakes)} must be a string")
        if not isinstance(record.data_summary, str):
            raise ConfigError(f"config training.data_summary={_quote(record.data_summary)} must be a string")
        return record

    @property
    def summary(self) -> str:
        """What the head was trained on, in a few words."""
        return self.data_summary or "+".join(self.datasets) or "an unnamed dataset"


# ----------------------------------------------------------------------------------------------
# The calibration record
# ----------------------------------------------------------------------------------------------
@dataclass
class CalibrationRecord:
    """What ``stylefusion train`` measured on validation data to make the head's answers honest.

    Read by :func:`stylefusion.decision.decide` (temperature, conformal quantile, out-of-domain
    threshold), the model card, the app and the CLI. The out-of-domain statistics themselves (the
    training embeddings' mean and precision) are tensors in ``model.safetensors`` (``ood.*``),
    present exactly when ``ood_threshold`` is set. A checkpoint without this record (trained before
    it existed) is *uncalibrated*: raw sigmoid, a fixed band, no out-of-domain check.
    """

    temperature: float = 1.0  # p_fake = sigmoid(logit / temperature), fitted on val segments (NLL)
    val_tpr: float | None = None  # at config.threshold, on val videos (p = max over segments)
    val_fpr: float | None = None
    val_videos: dict[str, int] = field(default_factory=dict)  # {"real": n, "fake": n}
    conformal_quantile: float | None = None  # q of the scores 1 - p(true label) at config.conformal_alpha
    conformal_n: int = 0  # validation segments the quantile comes from
    coverage_val: float | None = None  # share of val segments whose set holds their label
    # The same at the unit answered: share of val videos whose deciding segment (the most
    # suspicious, which gives the video's answer) has a set holding the video's label.
    coverage_val_videos: float | None = None
    ood_threshold: float | None = None  # 99th percentile of val out-of-domain scores
    ood_percentile: float = 99.0
    ood_val_flagged: float | None = None  # share of val segments above it
    ood_train_segments: int = 0  # training segments the statistics were fitted on
    quality_source: str = ""  # where min_face_px, min_sharpness, min/max_brightness came from
    history_source: str = ""  # where max_h264_qp, min_bpp, min_recapture_score came from
    ece_before: float | None = None  # expected calibration error (15 bins) on val segments
    ece_after: float | None = None
    brier_before: float | None = None
    brier_after: float | None = None
    # The calibrated p_fake of the validation REAL segments as quantiles at evenly spaced levels
    # (0, 1/K, ..., 1): the per-segment false-positive curve behind the threshold of a video judged
    # on n segments (decision.threshold_for). Empty: one threshold for every video.
    real_segment_quantiles: list[float] = field(default_factory=list)
    # On validation, per number of judged segments of a video: {"n": {"real": videos, "fpr": rate
    # at that video's threshold, "fake": videos, "tpr": rate}}.
    val_by_segments: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "CalibrationRecord | None":
        """Parse the ``calibration`` object of config.json (None: an uncalibrated checkpoint)."""
        if data is None:
            return None
        if isinstance(data, CalibrationRecord):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"config calibration={_quote(data)} must be a JSON object or null")
        record = _record(cls, data, "calibration")
        if not (_is_number(record.temperature) and 0.01 <= record.temperature <= 100):
            raise ConfigError(f"config calibration.temperature={_quote(record.temperature)} must be in [0.01, 100]")
        for name in ("val_tpr", "val_fpr", "conformal_quantile", "coverage_val", "coverage_val_videos",
                     "ood_val_flagged"):
            value = getattr(record, name)
            if value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"config calibration.{name}={_quote(value)} must be a number in [0, 1] or null")
        if record.ood_threshold is not None and not (_is_number(record.ood_threshold) and record.ood_threshold >= 0):
            raise ConfigError(f"config calibration.ood_threshold={_quote(record.ood_threshold)} must be >= 0 or null")
        if not isinstance(record.val_videos, dict):
            raise ConfigError(f"config calibration.val_videos={_quote(record.val_videos)} must be an object")
        q = record.real_segment_quantiles
        if (not isinstance(q, list) or len(q) > MAX_QUANTILES or not all(_is_number(v) and 0 <= v <= 1 for v in q)
                or any(b < a for a, b in zip(q, q[1:])) or len(q) == 1):
            raise ConfigError("config calibration.real_segment_quantiles must be an empty list or 2 to "
                              f"{MAX_QUANTILES} non-decreasing numbers in [0, 1]")
        if not isinstance(record.val_by_segments, dict):
            raise ConfigError(f"config calibration.val_by_segments={_quote(record.val_by_segments)} must be an object")
        return record

    @property
    def has_ood(self) -> bool:
        """True when the checkpoint carries out-of-domain statistics (``ood.*`` tensors)."""
        return self.ood_threshold is not None


def parse_threshold_policy(policy: str) -> tuple[str, float | None]:
    """``"fpr:0.05"`` → ("fpr", 0.05); ``"youden"`` → ("youden", None); ``"0.7"`` → ("fixed", 0.7).

    Raises:
        ConfigError: anything else, quoted.
    """
    text = str(policy).strip().lower()
    try:
        if text == "youden":
            return "youden", None
        if text.startswith("fpr:"):
            value = float(text[4:])
            if 0.0 < value < 1.0:
                return "fpr", value
        else:
            value = float(text)
            if 0.0 <= value <= 1.0 and math.isfinite(value):
                return "fixed", value
    except ValueError:
        pass
    raise ConfigError(f"threshold policy {_quote(policy)} must be 'fpr:RATE' (0 < RATE < 1, e.g. 'fpr:0.05'), "
                      "'youden', or a fixed threshold in [0, 1]")


# ----------------------------------------------------------------------------------------------
# The config
# ----------------------------------------------------------------------------------------------
@dataclass
class StyleFusionConfig:
    """Architecture, preprocessing, decision rule and provenance of a StyleFusion checkpoint."""

    format_version: int = param(CONFIG_FORMAT_VERSION, lo=1, hi=CONFIG_FORMAT_VERSION)
    preset: str = param("full")

    # --- frames (report: T=32 uniform, circular padding; 64 for Celeb-DF in the report)
    num_frames: int = param(32, lo=1, hi=1024, features=True)
    # Not in the report: a longer video is analysed as consecutive stretches of at most this many
    # seconds, T frames each, so the head sees what it was trained on (FaceForensics++, Celeb-DF
    # and DFDC videos last 10-20 s). `stylefusion train` records its training videos' median.
    window_s: float = param(15.0, lo=1.0, hi=3600.0, features=True)
    # Not in the report: frames with a longer side are downscaled while decoding (a 4K RGB frame is
    # 25 MB; 32 of them would dominate memory). Boxes are always reported in source pixels.
    max_frame_side: int = param(1920, lo=64, hi=16384, features=True)

    # --- faces (report: MTCNN, 20% margin, 256x256 crops, centre-crop fallback)
    face_size: int = param(256, lo=32, hi=1024, features=True)
    face_margin: float = param(0.2, lo=0.0, hi=2.0, features=True)  # box grown by 20% of its size in source pixels
    mtcnn_thresholds: tuple[float, float, float] = param(
        (0.6, 0.7, 0.7), lo=0.0, hi=1.0, lo_open=True, hi_open=True, length=3, features=True)  # facenet-pytorch defaults
    mtcnn_min_face_size: int = param(20, lo=4, hi=1024, features=True)  # in pixels of the frame MTCNN sees
    mtcnn_factor: float = param(0.709, lo=0.0, hi=1.0, lo_open=True, hi_open=True, features=True)
    # Not in the report: on frames with a longer side than this, MTCNN skips the fine pyramid levels
    # that only small faces need (as if the frame were downscaled to this side; the smallest face
    # searched in 720p becomes ~40 px), with the same boxes for larger faces. 0 = every level.
    detect_max_side: int = param(640, lo=0, hi=8192, features=True)
    min_face_confidence: float = param(0.9, lo=0.0, hi=1.0, features=True)  # weaker boxes are ignored
    # The scan (people.scan): every analysed window is looked at scan_fps frames a second (at most
    # scan_max_frames of them) to find shot cuts and every person's visible spans before any crop is
    # cut: a window of up to num_frames / scan_fps seconds (10.7 s) on the report's own T frames at
    # full size, a longer one on its own grid decoded with a long side of at most scan_max_side.
    scan_fps: float = param(3.0, lo=0.1, hi=60.0, features=True)
    scan_max_side: int = param(640, lo=64, hi=8192, features=True)
    scan_max_frames: int = param(64, lo=2, hi=1024, features=True)
    # Linking faces of consecutive scan frames into one track per person (faces.track_faces):
    # GEOMETRY decides: a pair failing either gate is never the same person; appearance only breaks
    # ties between faces that pass both, and never vetoes the only face inside the gates.
    track_max_shift: float = param(1.0, lo=0.0, hi=10.0, features=True)  # centre shift, in face sizes
    track_max_size_ratio: float = param(1.6, lo=1.0, hi=10.0, features=True)  # larger / smaller side
    shot_cut_threshold: float = param(0.5, lo=0.0, hi=1.0, features=True)  # frame histogram distance
    track_max_gap: int = param(4, lo=1, hi=64, features=True)  # scan frames a face may go undetected
    # Re-identification (faces.reidentify): two tracks of different shots or windows are one person
    # when their identity descriptors (faces.identity_descriptor) are at least this similar and
    # they never appear at the same time; otherwise they keep two ids.
    reid_min_similarity: float = param(0.97, lo=0.0, hi=1.0, features=True)
    # A person visible for less than this many seconds within one shot and window is listed but not
    # judged. 0: no face is required, and a window where nobody is tracked is judged on centre crops
    # (data without faces).
    min_person_s: float = param(1.0, lo=0.0, hi=3600.0, features=True)
    # People judged at most per window: the longest spans (the others are listed, not judged).
    # `detect` and `extract` both judge this many, so a head is trained and calibrated on every
    # person inference answers for (a video's answer is the max over people x windows).
    max_people: int = param(4, lo=1, hi=64, features=True)

    # --- content path (PyTorchVideo slow_r50 trunk, clips 3x16x112x112, 0.45/0.225)
    content_size: int = param(112, lo=32, hi=512, features=True)
    clip_len: int = param(16, lo=1, hi=256, features=True)
    content_mean: tuple[float, float, float] = param((0.45, 0.45, 0.45), length=3, features=True)
    content_std: tuple[float, float, float] = param((0.225, 0.225, 0.225), lo=0.0, lo_open=True, length=3,
                                                    features=True)
    content_width: int = param(64, lo=1, hi=256, features=True)  # stem channels; the feature is content_width * 32
    content_depths: tuple[int, int, int, int] = param((3, 4, 6, 3), lo=1, hi=64, length=4, features=True)

    # --- style path (pSp GradualStyleEncoder, IR-SE-50, level 9, 0.5/0.5)
    style_mean: tuple[float, float, float] = param((0.5, 0.5, 0.5), length=3, features=True)
    style_std: tuple[float, float, float] = param((0.5, 0.5, 0.5), lo=0.0, lo_open=True, length=3, features=True)
    style_levels: tuple[int, ...] = param((9,), lo=0, hi=N_STYLE_LEVELS - 1, features=True)
    style_width: int = param(64, lo=1, hi=256, features=True)  # input_layer channels; the latent is style_width * 8
    style_units: tuple[int, int, int, int] = param((3, 4, 14, 3), lo=1, hi=64, length=4, features=True)

    # --- fusion head (report: StyleGRU, style attention, transformer with class token, 2 FC)
    gru_hidden: int = param(128, lo=1, hi=8192)  # the report gives no size; 128 keeps a training epoch short
    gru_layers: int = param(1, lo=1, hi=16)
    gru_bidirectional: bool = param(True)
    style_diff: bool = param(False)  # Choi et al. 2024 feed frame-to-frame differences; the report does not
    attn_dim: int = param(256, lo=1, hi=8192)
    transformer_layers: int = param(2, lo=0, hi=32)
    transformer_heads: int = param(4, lo=1, hi=64)
    transformer_ff: int = param(512, lo=1, hi=65536)
    fc_hidden: int = param(128, lo=1, hi=65536)
    dropout: float = param(0.1, lo=0.0, hi=1.0)

    # --- decision (stylefusion.decision; `stylefusion train` chooses and records it on validation data)
    threshold: float = param(0.5, lo=0.0, hi=1.0)  # on the calibrated p_fake
    # How `stylefusion train` chooses the threshold on validation videos: "fpr:0.05" (at most 5% of
    # real videos called fake: the field's most common complaint is real videos called fake),
    # "youden" (max balanced accuracy), or a fixed value.
    threshold_policy: str = param("fpr:0.05")
    # The uncertain band is where the split-conformal prediction set at this level holds both
    # labels (the set holds the true label with probability >= 1 - alpha); fitted by training.
    conformal_alpha: float = param(0.1, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    # The band of checkpoints without calibration (trained before it existed): |p - threshold| < margin.
    uncertain_margin: float = param(0.1, lo=0.0, hi=0.5)
    # Input quality (stylefusion.decision.Quality): a judged segment outside these limits is
    # "unsupported" (cannot judge). Training sets them to its data's 1st (99th for max_brightness)
    # percentiles; these defaults, for checkpoints without that, pass every one of the 51 judged
    # segments of the 37 shared real-world clips with a face (README, "Input quality").
    min_face_px: float = param(QUALITY_DEFAULTS["min_face_px"], lo=0.0, hi=8192.0)  # face side, source px
    min_sharpness: float = param(QUALITY_DEFAULTS["min_sharpness"], lo=0.0, hi=1e3)  # Laplacian / image variance
    min_brightness: float = param(QUALITY_DEFAULTS["min_brightness"], lo=0.0, hi=255.0)  # mean face luma
    max_brightness: float = param(QUALITY_DEFAULTS["max_brightness"], lo=0.0, hi=255.0)
    # Processing history of the file (stylefusion.history): an answer becomes `uncertain` (never
    # `unsupported`: p_fake is still given) when the file was re-encoded more coarsely than this (mean
    # H.264 quantiser; bits per pixel for other codecs) or shows this many signs of a screen
    # recording. Training sets them from its videos' histories (research.calibrate.history_limits_from);
    # these documented defaults, from the shared clips, serve checkpoints without that.
    max_h264_qp: float = param(HISTORY_DEFAULTS["max_h264_qp"], lo=0.0, hi=51.0)
    min_bpp: float = param(HISTORY_DEFAULTS["min_bpp"], lo=0.0, hi=100.0)
    min_recapture_score: int = param(HISTORY_DEFAULTS["min_recapture_score"], lo=1, hi=100)

    # --- provenance (honest outputs: an untrained head never yields fake/real)
    trained: bool = param(False)
    training: TrainingRecord | None = None  # what the head was trained on; None when untrained
    calibration: CalibrationRecord | None = None  # temperature, rates, conformal, ood; None: uncalibrated
    provenance: dict[str, Any] = field(default_factory=dict)  # converted from, sha256 of inputs

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for f in _declared_fields():
            value = getattr(self, f.name)
            if f.metadata["kind"] is tuple and isinstance(value, list):
                setattr(self, f.name, tuple(value))
        if not isinstance(self.training, TrainingRecord):
            self.training = TrainingRecord.from_dict(self.training)
        if not isinstance(self.calibration, CalibrationRecord):
            self.calibration = CalibrationRecord.from_dict(self.calibration)
        self.validate()

    def validate(self) -> None:
        """Reject bad values and combinations with a message that quotes them."""
        if not _is_int(self.format_version) or self.format_version > CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"config format_version={_quote(self.format_version)} is newer than this StyleFusion "
                f"understands ({CONFIG_FORMAT_VERSION}) or not a version; upgrade the stylefusion package")
        for f in _declared_fields():
            _check_field(f.name, getattr(self, f.name), f.metadata)
        levels = self.style_levels
        if len(set(levels)) != len(levels) or list(levels) != sorted(levels):
            raise ConfigError(f"config style_levels={_quote(levels)} must be distinct and in increasing order")
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
        if not isinstance(self.provenance, dict):
            raise ConfigError("config provenance must be a JSON object")
        parse_threshold_policy(self.threshold_policy)
        if self.min_brightness > self.max_brightness:
            raise ConfigError(f"config min_brightness={self.min_brightness} must not exceed "
                              f"max_brightness={self.max_brightness}")
        if self.calibration is not None and not self.trained:
            raise ConfigError("config has a calibration record but trained=false: calibration belongs to a trained head")
        if self.trained and self.training is None:
            raise ConfigError("config says trained=true but has no training record: not a checkpoint "
                              "written by `stylefusion train`")
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
        version = data.get("format_version", CONFIG_FORMAT_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version > CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"config format_version={version} is newer than this StyleFusion understands "
                f"({CONFIG_FORMAT_VERSION}); upgrade the stylefusion package")
        retired = sorted(RETIRED_FIELDS & set(data))
        if retired:
            logger.debug("config: ignoring retired fields %s", retired)
            data = {k: v for k, v in data.items() if k not in RETIRED_FIELDS}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"config has unknown fields {_quote(unknown)}: not a StyleFusion config of this version")
        try:
            return cls(**data)
        except TypeError as exc:  # e.g. a string where a tuple belongs
            raise ConfigError(f"config is malformed: {exc}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> "StyleFusionConfig":
        """Read and check a config.json (size-limited before parsing; errors name the file)."""
        return read_config_json(path)[0]

    def to_json(self) -> str:
        """The canonical config.json text (sorted keys), as written next to the weights."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def replace(self, **changes: Any) -> "StyleFusionConfig":
        return dataclasses.replace(self, **changes)

    def preprocessing_dict(self) -> dict[str, Any]:
        """The fields that change extracted features (declared with ``features=True``)."""
        return {name: getattr(self, name) for name in FEATURE_FIELDS}


def read_config_json(path: str | Path) -> tuple[StyleFusionConfig, dict[str, Any]]:
    """A config.json as a checked config and as the parsed JSON it was built from.

    The raw JSON is what the weights' config digest was computed over when they were saved.

    Raises:
        ConfigError: too large, unreadable, not JSON, or not a valid config; the message names the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is far too large for a StyleFusion config.json")
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ConfigError(f"{path}: cannot read config.json ({reason})") from None
    try:
        return StyleFusionConfig.from_dict(raw), raw
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _declared_fields() -> tuple[dataclasses.Field, ...]:
    return _DECLARED


_DECLARED = tuple(f for f in dataclasses.fields(StyleFusionConfig) if "kind" in f.metadata)
#: Names of the fields whose value changes the extracted features (hashed by the feature cache).
FEATURE_FIELDS: tuple[str, ...] = tuple(f.name for f in _DECLARED if f.metadata["features"])


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
