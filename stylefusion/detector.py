"""StyleFusionDetector: both feature extractors and the fusion head behind one ``from_pretrained``.

A checkpoint is a folder (or a Hugging Face hub repo) with ``config.json`` — a
:class:`~stylefusion.config.StyleFusionConfig` with the architecture AND the preprocessing — and one
``model.safetensors`` whose keys start with ``content.`` (slow_r50 trunk), ``style.`` (pSp encoder
subset) or ``fusion.`` (the head); :mod:`stylefusion.checkpoint` reads and writes them. Loading is
strict: a missing or unexpected key is an error that lists them (huggingface_hub's mixin loads
non-strictly by default, which would let an incomplete checkpoint run with random weights).

``detect`` is three calls, as a transformers pipeline: :meth:`~StyleFusionDetector.preprocess` (the
front end of :mod:`stylefusion.people`: shots, people, spans, each judged span's crops; no network)
→ :meth:`~StyleFusionDetector.forward` (both extractors, the head, the out-of-domain distance and
the contributions, every segment of the video batched, in one inference context) →
:meth:`~StyleFusionDetector.postprocess` (each segment's answer and record at the unit of this video,
then people, timeline and the video's answer). It answers honestly: a checkpoint whose head was
never trained yields the label ``untrained`` and no probability (:func:`stylefusion.decision.decide`,
which also calibrates, bands, checks the domain, the input's quality and the file's history).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from stylefusion import __version__
from stylefusion.card import render_model_card
from stylefusion.checkpoint import checkpoint_files, read_weights, resolve_checkpoint, save_checkpoint, weight_digests
from stylefusion.config import StyleFusionConfig, preset_config
from stylefusion.faces import FaceCropper, FaceTrack
from stylefusion.models.content import SlowR50Trunk
from stylefusion.models.fusion import FusionHead, FusionOutput
from stylefusion.models.style import StyleEncoder
from stylefusion.decision import DecisionRule, checkpoint_decision, judge_segment
from stylefusion.ood import EmbeddingDensity
from stylefusion.quality import measure_quality
from stylefusion.evidence import DEFAULT_MAX_FRAMES, batched_contributions, require_trained
from stylefusion.results import (
    DetectionResult, Label, SegmentResult, TimelineEntry, VideoFeatures, aggregate,
)
from stylefusion.transforms import content_clips, style_inputs
from stylefusion.people import Analysis, NoJudgedPersonError, analyse_people, timed
from stylefusion.precision import PRECISIONS, resolve_precision

logger = logging.getLogger(__name__)

#: On the CPU, by precision: (faces per style-encoder pass, faces that run the first stages together),
#: see ``StyleEncoder.forward_features``. fp32 (Winograd, tuned on 2 AVX2 cores): 4 and 1, the large
#: early maps of one face stay in cache (and these exact batches are what the fp32 numbers are pinned
#: to: a stem batch of 4 changes the last bits). bf16 (oneDNN's AVX512-BF16 kernels, 2 cores, full
#: preset, ``benchmarks/bench_style.py``): 16 and 4 are as fast as 4 and 1 on an idle machine (0.21-0.22
#: s per face; larger stems are 5-10% slower, the maps leave the cache) and 1.9x faster on a loaded one
#: (a quarter as many operations per face, so the two threads wait less for each other), for about
#: 220 MB more activations.
CPU_STYLE_BATCH: dict[str, tuple[int, int]] = {"fp32": (4, 1), "bf16": (16, 4)}
#: Faces per style-encoder pass on a GPU (bounds activation memory), all stages together.
GPU_STYLE_BATCH = 16
#: Content clips per pass of the 3D ResNet (activation memory of a clip is ~0.1 GB on the CPU). Two is
#: also the fastest in bf16 on 2 cores (0.18 s per clip against 0.19 with 4 and 0.23 with 8).
CPU_CONTENT_BATCH, GPU_CONTENT_BATCH = 2, 32
#: Windows analysed at most per video by default (spread evenly over a longer video).
CPU_MAX_WINDOWS, GPU_MAX_WINDOWS = 8, 32

ProgressFn = Callable[[str, float], None]




@dataclass
class Forward:
    """What :meth:`StyleFusionDetector.forward` computes for a video's judged segments: their
    features (the cache boundary), the head's logits [S] and attention [S, T], the out-of-domain
    distances [S] (None without statistics) and, for a trained head, each frame's contribution."""

    features: list[VideoFeatures]
    logits: np.ndarray
    attention: np.ndarray
    ood: np.ndarray | None
    contributions: Any


class StyleFusionDetector(nn.Module, PyTorchModelHubMixin, library_name="stylefusion",
                          tags=["deepfake-detection", "video-classification"],
                          repo_url="https://github.com/stylefusion/stylefusion"):
    """The detector: ``content`` (slow_r50 trunk), ``style`` (pSp encoder subset), ``fusion`` (head).

    Args:
        config: architecture, preprocessing and decision rule (what the weights were made with).
        style_batch_size: faces per style-encoder pass (default: on a CPU 4 in fp32 and 16 in bf16,
            :data:`CPU_STYLE_BATCH`; 16 on a GPU). A runtime setting, not part of the checkpoint.
        precision: ``"auto"`` (default), ``"fp32"`` or ``"bf16"``: the number format of both
            feature extractors (:mod:`stylefusion.precision`). ``fp32`` is exact; ``bf16`` runs them
            under bf16 autocast (CPU or CUDA); ``auto`` is bf16 on CUDA and on CPUs with native bf16
            (AVX512-BF16, AMX), fp32 elsewhere. Resolved for the model's current device:
            :attr:`precision` says which is in use, and each result's ``checkpoint`` records it.
        autocast: deprecated alias: ``True`` means ``precision="bf16"`` (``False``: no change).
        winograd: use the Winograd F(4x4,3x3) CPU path of the style encoder's 3x3 convolutions
            (``stylefusion.models.winograd``) when fp32 is in use; False gives oneDNN's direct
            convolutions. The bf16 path never uses it (nor builds its filter cache).

    Example:
        >>> det = StyleFusionDetector.from_pretrained("path/or/org-name")  # doctest: +SKIP
        >>> result = det.detect("video.mp4")  # doctest: +SKIP
        >>> result.label, result.p_fake  # doctest: +SKIP
    """

    def __init__(self, config: StyleFusionConfig, *, style_batch_size: int | None = None,
                 precision: str = "auto", autocast: bool | None = None, winograd: bool = True):
        super().__init__()
        self.config = config
        self.content = SlowR50Trunk.from_config(config)
        self.style = StyleEncoder.from_config(config)
        self.fusion = FusionHead(config)
        # Out-of-domain statistics of the training embeddings (``ood.*`` in model.safetensors):
        # only in checkpoints whose calibration recorded them, so older ones still load strictly.
        cal = config.calibration
        self.ood = EmbeddingDensity(EmbeddingDensity.dim(config)) if cal is not None and cal.has_ood else None
        if style_batch_size is not None and style_batch_size < 1:
            raise ValueError(f"style_batch_size={style_batch_size} must be >= 1")
        self.style_batch_size = style_batch_size
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} must be one of {', '.join(PRECISIONS)}")
        self.requested_precision = "bf16" if autocast else precision
        self.winograd = winograd
        self._precision = "fp32"
        self._sync_precision()
        # oneDNN and cuDNN run the style encoder's 2-D convolutions faster in NHWC; set once here.
        self.style.to(memory_format=torch.channels_last)
        self.source: dict[str, Any] = {"name": None, "revision": None}
        self._cropper: FaceCropper | None = None
        self._identity: dict[str, Any] | None = None
        self._rule: tuple[StyleFusionConfig, DecisionRule] | None = None  # (the config it was built from, rule)

    # ------------------------------------------------------------------------------------------
    # loading and saving
    # ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def precision(self) -> str:
        """The precision the extractors run in on the current device: ``"fp32"`` or ``"bf16"``."""
        return self._precision

    def set_precision(self, precision: str) -> "StyleFusionDetector":
        """Ask for ``"auto"``, ``"fp32"`` or ``"bf16"`` (resolved for the current device, and again
        after every move)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} must be one of {', '.join(PRECISIONS)}")
        self.requested_precision = precision
        self._sync_precision()
        return self

    @property
    def autocast(self) -> bool:
        """Deprecated: True when the extractors run in bf16 (setting it = ``set_precision``)."""
        return self._precision == "bf16"

    @autocast.setter
    def autocast(self, value: bool) -> None:
        self.set_precision("bf16" if value else "fp32")

    def _sync_precision(self) -> None:
        """Resolve the requested precision for the current device; Winograd only on the fp32 path."""
        try:
            device = self.device
        except StopIteration:  # pragma: no cover - a model without parameters
            device = torch.device("cpu")
        self._precision = resolve_precision(self.requested_precision, device)
        # Winograd is an fp32 algorithm: on the bf16 path its layers run nn.Conv2d (oneDNN's bf16
        # kernels), so its transformed-filter cache (434 MB for the full encoder) is never built.
        self.style.set_winograd(bool(self.winograd) and self._precision == "fp32")

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        # After .to(device): "auto" may mean another precision there.
        if "style" in self._modules and hasattr(self, "requested_precision"):
            self._sync_precision()
        return out

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | os.PathLike, revision: str | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> "StyleFusionDetector":
        """Load a checkpoint from a local folder or a Hugging Face hub repo id, strictly.

        The mixin's own ``from_pretrained`` parses ``config.json`` without limits and turns a
        missing folder into a repo-id validation error; here the reference is resolved and
        checked first (one-line :class:`CheckpointError`), then the mixin's ``_from_pretrained``
        hook loads it.

        Args:
            repo_id_or_dir: a folder with ``config.json`` + ``model.safetensors``, or a hub repo id
                (``org/name``). With ``HF_HUB_OFFLINE=1`` a repo id is read from the hub cache only.
            revision: hub branch, tag or commit (ignored for folders).
            device: where to put the model; CPU by default.
            **kwargs: runtime settings of the detector (``style_batch_size``, ``precision``,
                ``winograd``; ``autocast=True`` = ``precision="bf16"``) and hub options passed to
                ``snapshot_download`` (``token``, ``cache_dir``, ``local_files_only``, ``force_download``).

        Raises:
            CheckpointError: the folder does not exist or is not a StyleFusion checkpoint, the repo
                cannot be fetched, the weights are not safetensors, or keys/shapes do not match.
        """
        return cls._from_pretrained(model_id=str(repo_id_or_dir), revision=revision, device=device, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None = None,
                         device: str | torch.device | None = None, style_batch_size: int | None = None,
                         precision: str = "auto", autocast: bool | None = None, winograd: bool = True,
                         config: Any = None, map_location: Any = None, strict: Any = None,
                         **hub_kwargs: Any) -> "StyleFusionDetector":
        """The mixin's loading hook: resolve, check on a meta skeleton, then read and load strictly.

        ``config`` (the JSON the mixin may have parsed already), ``map_location`` and ``strict``
        are accepted for the mixin's sake and ignored: the config is read from the folder with
        size limits, loading is always strict, and ``device`` says where the model goes.
        """
        hub_kwargs = {k: v for k, v in hub_kwargs.items() if v is not None and v is not False}
        folder = resolve_checkpoint(model_id, revision=revision, **hub_kwargs)
        files = checkpoint_files(folder, model_id)
        settings = dict(style_batch_size=style_batch_size, precision=precision, autocast=autocast,
                        winograd=winograd)
        # Check the weights against a skeleton on the meta device first: a config that does not match
        # its weights (or asks for a huge model) fails before any real memory is allocated.
        with torch.device("meta"):
            skeleton = cls(files.config, **settings)
        state = read_weights(files.weights, skeleton.state_dict(), files.config_sha256)
        del skeleton
        model = cls(files.config, **settings)
        model.load_state_dict(state, strict=True)
        model.source = {"name": model_id, "revision": revision, "folder": str(folder)}
        if device is not None:
            model.to(device)
        return model.eval()

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's saving hook: config.json, model.safetensors and the model card, atomically.

        ``save_pretrained`` / ``push_to_hub`` (the mixin's) call this; since it writes config.json
        and README.md itself, the mixin writes neither.
        """
        save_checkpoint(save_directory, self.config, self.state_dict(), card=render_model_card(self.config))
        self._identity = None

    def identity(self) -> dict[str, Any]:
        """What checkpoint this is: name, revision, sha256 of all weights and of the backbones,
        preset, what the head was trained on, and the ``precision`` its extractors run in."""
        if self._identity is None:
            training = self.config.training
            self._identity = {
                "name": self.source.get("name"), "revision": self.source.get("revision"),
                **weight_digests(self.state_dict()), "preset": self.config.preset,
                "trained": bool(self.config.trained),
                "trained_on": training.summary if training is not None else None,
            }
        return {**self._identity, "precision": self.precision}

    # ------------------------------------------------------------------------------------------
    # pipeline stages
    # ------------------------------------------------------------------------------------------
    @property
    def rule(self) -> DecisionRule:
        """The checkpoint's decision rule (:class:`stylefusion.decision.DecisionRule`): threshold,
        calibration, quality and history limits, from the config it is stored in."""
        if self._rule is None or self._rule[0] is not self.config:
            self._rule = (self.config, DecisionRule.from_config(self.config))
        return self._rule[1]

    @property
    def cropper(self) -> FaceCropper:
        if self._cropper is None or self._cropper.device != self.device:
            self._cropper = FaceCropper(self.config, device=self.device)
        return self._cropper

    def _autocast(self) -> torch.autocast:
        """bf16 autocast on the bf16 path (CPU or CUDA); a no-op context on the fp32 path."""
        kind = self.device.type
        enabled = self._precision == "bf16" and kind in ("cpu", "cuda")
        return torch.autocast(device_type=kind if kind in ("cpu", "cuda") else "cpu", dtype=torch.bfloat16,
                              enabled=enabled)

    def style_features(self, crops: np.ndarray) -> torch.Tensor:
        """Stage 3a: [T, S, S, 3] uint8 crops → [T, n_levels, style_dim] pSp latents.

        On the CPU the batching depends on the precision in use (:data:`CPU_STYLE_BATCH`: fp32 4 faces
        per pass, the first stages one face at a time; bf16 16 per pass, the first stages 4 at a
        time); GPUs want large batches. ``style_batch_size`` replaces the faces per pass.
        """
        if self.device.type == "cpu":
            bs, stem_batch = CPU_STYLE_BATCH[self._precision]
        else:
            bs, stem_batch = GPU_STYLE_BATCH, None
        bs = self.style_batch_size or bs
        chunks = []
        x_all = torch.from_numpy(np.ascontiguousarray(crops))
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(x_all), bs):
                x = style_inputs(x_all[start:start + bs], self.config, self.device)
                chunks.append(self.style(x, stem_batch).float())
        if not chunks:
            return torch.zeros(0, len(self.config.style_levels), self.config.style_dim)
        return torch.cat(chunks).cpu()

    def content_features(self, crops: np.ndarray) -> torch.Tensor:
        """Stage 3b: [T, S, S, 3] uint8 crops → [num_clips, content_dim], one vector per clip."""
        with torch.inference_mode(), self._autocast():
            return self.content(content_clips(crops, self.config, self.device)).float().cpu()

    def extract_features(self, path: str | Path, timings: dict[str, float] | None = None) -> VideoFeatures:
        """The features of a video's first judged segment (its first window's longest span).

        Raises:
            NoJudgedPersonError: nobody is visible long enough to judge in any analysed window.
        """
        segments = self.extract_segments(path, timings=timings)
        if not segments:
            raise NoJudgedPersonError(path, f"no person is on screen for {self.config.min_person_s:g} s or more "
                                            "in one shot of any analysed stretch")
        return segments[0]

    def classify(self, content: torch.Tensor, style: torch.Tensor) -> FusionOutput:
        """Stage 4: the head on a batch of videos' features ([B, C, Dc], [B, T, L, Ds])."""
        with torch.inference_mode():
            return self.fusion(content.to(self.device).float(), style.to(self.device).float())

    def ood_scores(self, embedding: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> np.ndarray | None:
        """[B] out-of-domain scores of B segments (the head's embeddings and the segments' features),
        or None when this checkpoint has no out-of-domain statistics."""
        if self.ood is None:
            return None
        with torch.inference_mode():
            feats = EmbeddingDensity.features(embedding.to(self.device), content.to(self.device), style.to(self.device))
            return self.ood(feats).float().cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------------------------------
    # windows and people
    # ------------------------------------------------------------------------------------------
    def default_max_windows(self) -> int:
        """Windows analysed at most when the caller does not say (more on a GPU)."""
        return GPU_MAX_WINDOWS if self.device.type == "cuda" else CPU_MAX_WINDOWS

    def people(self, path: str | Path, max_windows: int | None = None, max_people: int | None = None,
               timings: dict[str, float] | None = None, progress: ProgressFn | None = None) -> Analysis:
        """Stages 1-2 for a whole video: windows, frames, every person's track, judged segments' crops."""
        return analyse_people(path, self.config, self.cropper,
                              self.default_max_windows() if max_windows is None else max_windows,
                              self.config.max_people if max_people is None else max_people,
                              {} if timings is None else timings, progress or _no_progress)

    def _features(self, crops: list[FaceTrack], timings: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """All segments' crops through each extractor together: ([S, C, Dc], [S, T, L, Ds])."""
        c = self.config
        if not crops:
            return (torch.zeros(0, c.num_clips, c.content_dim),
                    torch.zeros(0, c.num_frames, len(c.style_levels), c.style_dim))
        all_crops = np.concatenate([t.crops for t in crops])  # [S*T, S, S, 3]
        with timed(timings, "style"):
            style = self.style_features(all_crops).view(len(crops), c.num_frames, len(c.style_levels), c.style_dim)
        with timed(timings, "content"):
            content = self._content_batched(all_crops, len(crops))
        return content, style

    def _content_batched(self, crops: np.ndarray, n: int) -> torch.Tensor:
        """[n*T, S, S, 3] crops of n segments → [n, num_clips, content_dim], a few clips per pass."""
        c = self.config
        bs = CPU_CONTENT_BATCH if self.device.type == "cpu" else GPU_CONTENT_BATCH
        out = []
        with torch.inference_mode(), self._autocast():
            for seg in range(n):
                out.append(content_clips(crops[seg * c.num_frames:(seg + 1) * c.num_frames], c, self.device))
            clips = torch.cat(out)  # [n*C, 3, L, s, s]
            feats = [self.content(clips[i:i + bs]).float().cpu() for i in range(0, len(clips), bs)]
        return torch.cat(feats).view(n, c.num_clips, c.content_dim)

    def extract_segments(self, path: str | Path, max_windows: int | None = None,
                         timings: dict[str, float] | None = None) -> list[VideoFeatures]:
        """Every judged segment (each of the ``config.max_people`` longest spans of every analysed
        window), through the front end ``detect`` runs (:func:`stylefusion.people.analyse_people`,
        the same settings): what training reads and what calibration measures, so a head learns
        from, and states its error rates for, exactly the segments inference judges.

        A labelled video's label belongs to the video, not to a person: ``stylefusion train``
        gives it to every segment when one person is judged, and reads a fake video of several
        people as a bag of which at least one is fake (the multiple-instance view,
        :meth:`stylefusion.research.data.CachedFeatures.units`).
        """
        timings = {} if timings is None else timings
        a = self.people(path, max_windows, None, timings)
        content, style = self._features(a.crops, timings)
        return [self._segment_features(a, i, content, style) for i in range(len(a.judged))]

    def _segment_features(self, a: Analysis, i: int, content: torch.Tensor, style: torch.Tensor) -> VideoFeatures:
        """The i-th judged segment's features with the quality of its crops."""
        feats = a.features(i, content, style)
        feats.quality = measure_quality(a.crops[i], self.config.face_margin).as_array()
        return feats

    # ------------------------------------------------------------------------------------------
    # detect = preprocess -> forward -> postprocess
    # ------------------------------------------------------------------------------------------
    def preprocess(self, path: str | Path, *, max_windows: int | None = None, max_people: int | None = None,
                   timings: dict[str, float] | None = None, progress: ProgressFn | None = None) -> Analysis:
        """The front end (:mod:`stylefusion.people`): shots, people, spans and the judged segments'
        crops. No network runs here."""
        return self.people(path, max_windows, max_people, timings, progress)

    def forward(self, analysis: Analysis, timings: dict[str, float] | None = None) -> Forward:
        """Every network on every judged segment of a video, batched: both extractors, the head, the
        out-of-domain distance and (trained heads) each frame's contribution, in one inference
        context. The hot path; what surrounds it decides nothing."""
        timings = {} if timings is None else timings
        with torch.inference_mode():
            content, style = self._features(analysis.crops, timings)
            feats = [self._segment_features(analysis, i, content, style) for i in range(len(analysis.judged))]
            if not feats:
                return Forward(feats, np.zeros(0), np.zeros((0, self.config.num_frames)), None, None)
            content, style = torch.stack([f.content for f in feats]), torch.stack([f.style for f in feats])
            with timed(timings, "head"):
                out = self.classify(content, style)
                ood = self.ood_scores(out.embedding, content, style)
                contributions = None
                if self.config.trained:
                    contributions = batched_contributions(self.fusion, content.to(self.device), style.to(self.device))
        return Forward(feats, out.logits.float().cpu().numpy(), out.attention.float().cpu().numpy(), ood,
                       contributions)

    def postprocess(self, path: str | Path, analysis: Analysis, forward: Forward,
                    timings: dict[str, float] | None = None,
                    history: tuple[list[str], list[str]] | None = None) -> DetectionResult:
        """Each judged segment's answer and record (:func:`stylefusion.decision.judge_segment`, at the
        unit of this video: as many segments as were judged), then the people, the timeline and the
        video's answer (:func:`stylefusion.results.aggregate`). ``history``: the file's
        processing-history reasons and sentences (:meth:`read_history`)."""
        timings = {} if timings is None else timings
        n = len(analysis.judged)
        for i, (seg, f) in enumerate(zip(analysis.judged, forward.features)):
            judge_segment(self.rule, seg, f, float(forward.logits[i]), forward.attention[i],
                          ood_score=None if forward.ood is None else float(forward.ood[i]),
                          contributions=None if forward.contributions is None else forward.contributions[i],
                          history=history, segments=n)
            seg.features = f
        a = analysis
        timeline = [TimelineEntry(w.index, w.start_s, w.end_s, w.analysed, None, None, [],
                                  "" if w.analysed else _not_analysed(w, a)) for w in a.windows]
        result = self._result(path, a.segments, timeline, timings, a.info, a.face_found_ratio, a.unsupported)
        result.shots = [shot.to_dict() for shot in a.shots]
        return result

    def _result(self, path: str | Path, segments: list[SegmentResult], timeline: list[TimelineEntry],
                timings: dict[str, float], video: dict[str, Any] | None, found_ratio: float,
                unsupported: str | None = None) -> DetectionResult:
        answer = aggregate(segments, timeline, unsupported)
        # `frames` (and crops): the most present person's first judged segment.
        main = max(answer.people, key=lambda p: (sum(s.distinct_frames for s in p.segments if s.judged), -p.id),
                   default=None)
        first = next((s for s in (main.segments if main else []) if s.judged), None)
        decision = answer.segment.decision if answer.segment is not None else None
        return DetectionResult(
            path=str(path), label=answer.label, p_fake=answer.p_fake, threshold=float(self.config.threshold),
            face_found_ratio=found_ratio, frames=list(first.frames) if first else [], timings=timings,
            checkpoint=self.identity(), decision=decision or checkpoint_decision(self.config),
            message=answer.message, video=video or {}, people=answer.people, timeline=timeline,
            crops=None if first is None else first.crops,
            style_latents=None if first is None else first.style_latents)

    def read_history(self, path: str | Path) -> tuple[dict[str, Any], tuple[list[str], list[str]]]:
        """The file's processing history (:func:`stylefusion.history.measure_history`: bits per pixel,
        quantiser, signs of a screen recording) as a dict with its ``reasons`` and their sentences
        under this checkpoint's limits (``max_h264_qp``, ``min_bpp``, ``min_recapture_score``)."""
        from stylefusion.history import history_reason_text, history_reasons, measure_history

        limits = self.rule.history
        history = measure_history(path, limits=limits)
        reasons, text = history_reasons(history, limits), history_reason_text(history, limits)
        return {**history.to_dict(), "reasons": reasons, "reason_text": text, "limits": limits.to_dict()}, (reasons, text)

    def detect(self, path: str | Path, return_crops: bool = False, progress: ProgressFn | None = None, *,
               max_windows: int | None = None, max_people: int | None = None, explain: bool = False,
               explain_frames: int = DEFAULT_MAX_FRAMES, provenance: bool = True) -> DetectionResult:
        """The whole pipeline for one video: every person, every analysed stretch.

        Args:
            path: the video file.
            return_crops: keep each judged segment's [T, S, S, 3] face crops (for display, and for
                :meth:`explain` later).
            progress: called as ``progress(stage, fraction)`` with stages ``sampling``, ``faces``,
                ``features``, ``verdict`` (and ``evidence`` when explaining).
            max_windows: windows analysed at most, spread evenly over a longer video (default 8 on
                a CPU, 32 on a GPU).
            max_people: people judged at most per window, the most present ones (default
                ``config.max_people``, 4: the number the head was trained and calibrated on); the
                others are listed with the reason.
            explain: also compute heatmaps (:meth:`explain`) of the deciding segment's
                ``explain_frames`` most contributing frames. Per-frame contributions are always
                computed for a trained head; heatmaps cost about 30 s a frame with the full preset
                on 2 CPU cores.
            provenance: also read what the file says about itself (``result.provenance``: its
                Content Credentials, with ``c2pa-python`` installed; ``result.history``: its
                processing history, whose reasons make a verdict ``uncertain``). False: neither.

        Raises:
            VideoReadError: the file cannot be read as a video.
            EvidenceUnavailable: ``explain`` with an untrained head (it has no evidence to give).
        """
        if explain:
            require_trained(self.config)  # before the work, not after it
        report = progress or _no_progress
        timings: dict[str, float] = {}
        a = self.preprocess(path, max_windows=max_windows, max_people=max_people, timings=timings, progress=report)
        report("features", 0.5)
        forward = self.forward(a, timings)
        report("verdict", 0.9)
        history, reasons = None, None
        if provenance:
            with timed(timings, "provenance"):
                history, reasons = self.read_history(path)
        if return_crops or explain:
            for seg, track in zip(a.judged, a.crops):
                seg.crops = track.crops
        result = self.postprocess(path, a, forward, timings, reasons)
        if provenance:
            from stylefusion.provenance import provenance_words, read_provenance

            with timed(timings, "provenance"):
                prov = read_provenance(path)
            result.provenance = {**prov.to_dict(), "summary": prov.summary(),
                                 "words": provenance_words(prov, Label(result.label).value)}
            result.history = {**history, **_crop_scaling(result, self.config.face_size),
                              "robustness": _robustness(self.config, history)}
        if explain:
            with timed(timings, "evidence"):
                self.explain(result, max_frames=explain_frames,
                             progress=lambda done, total: report("evidence", 0.9 + 0.1 * done / max(total, 1)))
        if not return_crops:
            result.crops = None
            for seg in a.judged:
                # An explained segment keeps its crops: its heatmaps are drawn over them
                # (evidence.write_evidence, the app's overlays). The others are dropped.
                if not seg.heatmaps:
                    seg.crops = None
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        report("verdict", 1.0)
        return result

    def watch(self, source: str, **options: Any) -> Iterator["LiveRecord"]:
        """Watch a live source (a stream URL, a webcam, ``-`` for standard input, a file) and yield a
        record per person as each rolling window is judged, then one ``ended`` record with the
        summary (:func:`stylefusion.live.watch`, which lists the ``options``: ``window_s``, ``hop_s``,
        ``max_lag_s``, ``connect_timeout``, ``realtime``, ...). Each window is answered as
        :meth:`detect` answers a file: the same front end, networks and decision.

        Raises:
            StreamError: the source does not answer within ``connect_timeout`` or has no video.
        """
        from stylefusion.live import watch

        return watch(self, source, **options)

    def explain(self, result: DetectionResult, segments: str | list[SegmentResult] = "deciding", *,
                max_frames: int = DEFAULT_MAX_FRAMES, progress: Callable[[int, int], None] | None = None
                ) -> list[SegmentResult]:
        """Heatmaps of the frames that moved a judged segment's logit most (:mod:`stylefusion.evidence`).

        For each chosen segment, its ``max_frames`` frames with the largest contribution toward
        "fake" get a style-path and a content-path heatmap (Integrated Gradients from the
        neighbouring frames, signed: red toward fake, blue toward real), stored in
        ``segment.heatmaps``; the segment's JSON lists them under ``evidence``. A heatmap shows
        what moved the score, not proof of manipulation.

        Args:
            result: from :meth:`detect` with ``return_crops=True`` (the crops are needed; with
                ``explain=True`` alone only the segments explained then keep theirs).
            segments: ``"deciding"`` (the segment the video's answer comes from), ``"people"``
                (each person's most suspicious judged segment), ``"all"`` (every judged segment),
                or a list of the result's segments.
            max_frames: frames explained per segment (each costs two extractor passes per step).
            progress: ``progress(done, total)`` in frames.

        Returns:
            The segments explained.

        Raises:
            EvidenceUnavailable: the head is untrained, or the result kept no crops.
        """
        from stylefusion.evidence import EvidenceUnavailable, Networks, frame_heatmaps
        from stylefusion.results import most_suspicious

        require_trained(self.config)
        if isinstance(segments, str):
            if segments == "deciding":
                chosen = [s for s in [result.deciding_segment] if s is not None]
            elif segments == "people":
                chosen = [s for s in (most_suspicious(p.segments) for p in result.people) if s is not None]
            elif segments == "all":
                chosen = [s for s in result.segments if s.judged and s.features is not None]
            else:
                raise ValueError(f"segments={segments!r} must be 'deciding', 'people', 'all' or a list of segments")
        else:
            chosen = list(segments)
        missing = [s for s in chosen if s.crops is None or s.features is None]
        if missing:
            raise EvidenceUnavailable("this result kept no face crops to explain: run detect(..., return_crops=True) "
                                      "or detect(..., explain=True)")
        # The evidence gets the pieces it reads, not the detector: it does not depend on this class.
        networks = Networks(style=self.style, content=self.content, fusion=self.fusion, config=self.config)
        total = sum(min(max_frames, len(s.frames)) for s in chosen)
        done = 0
        for seg in chosen:
            frames = np.argsort(-np.array([f.contribution for f in seg.frames]), kind="stable")[:max_frames]

            def step(n: int, _total: int, base: int = done) -> None:
                if progress is not None:
                    progress(base + n, total)

            seg.heatmaps = frame_heatmaps(networks, seg.crops, seg.features.content, seg.features.style,
                                          frames.tolist(), source_indices=[f.source_index for f in seg.frames],
                                          max_frames=max_frames, progress=step)
            done += len(frames)
        return chosen


def _no_progress(stage: str, fraction: float) -> None:
    return None


def _robustness(config: StyleFusionConfig, history: dict[str, Any]) -> str | None:
    """How this checkpoint did on validation videos like this file (bit rate and size matched to the
    nearest condition of the figures ``stylefusion train --robustness`` kept), or None."""
    from stylefusion.history import robustness_sentence

    w, h = history.get("width") or 0, history.get("height") or 0
    condition = {"bitrate_bps": history.get("bit_rate"), "short_side": min(w, h) or None, "fps": history.get("fps")}
    return robustness_sentence(config, condition)


def _crop_scaling(result: DetectionResult, face_size: int) -> dict[str, float | None]:
    """How much the judged faces were scaled to the networks' input: the median crop side in source
    pixels over the judged frames, and ``face_size`` over it (above 1: the faces were upsampled, so
    the file had fewer pixels on the face than the model sees)."""
    sides = [f.box[2] - f.box[0] for s in result.segments if s.judged for f in s.frames if not f.fallback]
    if not sides:
        return {"face_crop_px": None, "face_crop_upscale": None}
    side = float(np.median(sides))
    return {"face_crop_px": round(side, 1), "face_crop_upscale": round(face_size / side, 3) if side > 0 else None}


def _not_analysed(window: Any, analysis: Analysis) -> str:
    """Why a stretch of the timeline was not analysed, in words."""
    failed = [f for f in analysis.failed if f.startswith(f"{window.start_s:.1f}-{window.end_s:.1f} s")]
    if failed:
        return "could not be decoded"
    if window.stop <= window.start:
        return "no frame starts in this stretch"
    return "left out: at most max_windows stretches are analysed, spread evenly"


def init_checkpoint(preset: str, out_dir: str | Path, seed: int = 0, **overrides: Any) -> StyleFusionDetector:
    """Write a checkpoint with random weights, marked untrained (for tests and for conversion)."""
    torch.manual_seed(seed)
    model = StyleFusionDetector(preset_config(preset, **overrides))
    model.config.provenance = {"init": {"preset": preset, "seed": seed}, "created_by": f"stylefusion {__version__}"}
    model.save_pretrained(out_dir)
    return model.eval()


__all__ = ["StyleFusionDetector", "init_checkpoint"]
