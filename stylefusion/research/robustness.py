"""How a checkpoint holds up: the detector run on perturbed videos, one cell per condition.

``stylefusion evaluate --perturb PRESET|name:level,...`` and ``stylefusion train --robustness``
run this. Unlike the clean evaluation (which scores cached features), each cell runs the *whole*
detector (``StyleFusionDetector.detect``: decoding, people, faces, features, the decision rule) on
every video after the perturbation, because compression or blur act on face finding and quality
checks as much as on the features. Design choices:

- **Judged as ``evaluate`` judges the cache**: every judged person of each analysed
  window (``extract_segments``), the head, and the detector's rule per segment, the video answered by its
  most suspicious segment; the clean cell is thus the clean evaluation redone from the files.
- **Perturbed copies are temporary files**, written per video and cell into a scratch folder
  (lossless H.264, :func:`stylefusion.perturb.perturb_video`) and deleted after that video is
  judged: the detector reads files, and nothing perturbed is ever written into a dataset. The
  clean cell (``clean``) runs the detector on the original files, so every cell is measured the
  same way.
- **Every video is counted in its cell.** A perturbation that makes a video undecodable, removes
  every face or makes the faces unusable gives a reason (``undecodable``, ``no_face``,
  ``unsupported``, ``out_of_domain``, ``uncertain_band``; ``missing`` for a file that is gone),
  never a crash.
- **Per cell**: the video AUC over the videos that got a probability (every video with a judged
  segment, answered or not), the FPR and TPR at the
  checkpoint's threshold over *all* videos (a video without a probability is not flagged: a fake
  whose face the perturbation removed is a missed fake), the share of videos answered (a ``fake``
  or ``real`` verdict) and the others by reason, and the median bitrate and size of the perturbed
  files, so an upload can be matched to its nearest condition (:func:`robustness_sentence`).

The output is ``robustness.json`` and the heatmap ``robustness.png`` / ``robustness.html`` (rows:
perturbations, columns: levels, value: AUC, with the share answered in each cell).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np

from stylefusion._io import atomic_write
from stylefusion.errors import StyleFusionError
# The unperturbed cell's name and the sentence an answer shows live in the library (history.py).
from stylefusion.history import CLEAN, robustness_sentence  # noqa: F401 (re-exported)
from stylefusion.perturb import Perturbation, PerturbationError, parse_perturbations, perturb_video

logger = logging.getLogger(__name__)

#: What the checkpoint's training record keeps per cell (the full report stays in robustness.json).
RECORD_KEYS = ("condition", "name", "level", "description", "n", "auc", "fpr", "tpr", "answered", "scored",
               "bitrate_bps", "short_side", "fps", "crf", "max_short_side")


@dataclass
class VideoItem:
    """A video of the evaluated split."""

    video_id: str
    path: str
    label: int


@dataclass
class Outcome:
    """The detector's answer on one (perturbed) video."""

    label: str  # fake, real, uncertain, no_face, unsupported, untrained, undecodable, missing, error
    p_fake: float | None
    bitrate_bps: float | None = None
    short_side: int | None = None
    fps: float | None = None


def video_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """AUC as the Mann-Whitney statistic (ties count half); None when a class is absent."""
    y, s = np.asarray(labels).astype(int), np.asarray(scores, float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def auc_interval(labels: np.ndarray, scores: np.ndarray, *, level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the AUC, resampling reals and fakes separately (stratified,
    so every resample has both classes)."""
    y, s = np.asarray(labels).astype(int), np.asarray(scores, float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) < 2 or len(neg) < 2:
        return None
    rng = np.random.default_rng(seed)
    pi = rng.integers(0, len(pos), (n_boot, len(pos)))
    ni = rng.integers(0, len(neg), (n_boot, len(neg)))
    stats = np.empty(n_boot)
    for b in range(n_boot):
        p, n = pos[pi[b]], neg[ni[b]]
        stats[b] = ((p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()) / (len(p) * len(n))
    a = (1 - level) / 2
    return float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))


def probe(path: str | Path) -> dict[str, Any]:
    """Bitrate (bits/s, from the file size and duration, or the container's own figure), the short
    side and the frame rate of a video: what an upload is matched on. Missing values are None."""
    import av

    out: dict[str, Any] = {"bitrate_bps": None, "short_side": None, "fps": None}
    try:
        with av.open(str(path)) as c:
            v = c.streams.video[0] if c.streams.video else None
            duration = float(c.duration / 1e6) if c.duration else None
            if v is not None:
                out["short_side"] = int(min(v.codec_context.width, v.codec_context.height)) or None
                rate = v.average_rate or v.guessed_rate
                out["fps"] = float(rate) if rate else None
                if v.bit_rate:
                    out["bitrate_bps"] = float(v.bit_rate)
            if out["bitrate_bps"] is None and duration:
                out["bitrate_bps"] = Path(path).stat().st_size * 8 / duration
    except (av.error.FFmpegError, OSError, IndexError):
        pass
    return out


def _judge(det: Any, path: str | Path, max_windows: int | None) -> Outcome:
    """One video as ``evaluate`` judges a cached one, but from the (perturbed) file: the front end
    and the extractors (``extract_segments``: every judged person of each analysed window), the
    head, then the detector's rule per segment (:func:`stylefusion.decision.decide`: quality,
    out of domain, band, threshold) and the video's most suspicious answer. ``p_fake`` (max over
    segments, calibrated) is kept even when the rule abstains, so the AUC measures the scores and
    the share answered measures the abstentions. Every failure is a reason, never an exception."""
    import torch

    from stylefusion.decision import decide
    from stylefusion.quality import Quality
    from stylefusion.research.calibrate import head_outputs, sigmoid
    from stylefusion.results import Label, most_suspicious

    try:
        segments = det.extract_segments(str(path), max_windows=max_windows)
    except StyleFusionError as exc:
        logger.info("%s: not judged (%s)", path, getattr(exc, "reason", None) or exc)
        return Outcome("undecodable", None)
    except Exception as exc:  # noqa: BLE001 - one odd video must not end the grid
        logger.warning("%s: extraction failed", path, exc_info=True)
        return Outcome(f"error: {type(exc).__name__}", None)
    if not segments:
        return Outcome("no_face", None)
    c = det.config
    content = torch.stack([torch.as_tensor(s.content) for s in segments])
    style = torch.stack([torch.as_tensor(s.style) for s in segments])
    logits, embeddings = head_outputs(det.fusion, content, style)
    temperature = c.calibration.temperature if c.calibration is not None else 1.0
    ood = det.ood_scores(embeddings, content, style) if det.ood is not None else None
    rule = det.rule  # at the video's unit: the threshold for a video judged on as many segments, as detect
    answers = []
    for i, seg in enumerate(segments):
        quality = Quality.from_array(np.asarray(seg.quality)) if seg.quality is not None else None
        label, _, record = decide(rule, float(logits[i]), ood_score=None if ood is None else float(ood[i]),
                                  quality=quality, segments=len(segments))
        reason = ("unsupported" if label is Label.UNSUPPORTED else "out_of_domain" if record.out_of_domain
                  else "uncertain_band" if label is Label.UNCERTAIN else label.value)
        answers.append(SimpleNamespace(label=label, p_fake=record.p_fake, reason=reason))
    top = most_suspicious(answers) or answers[0]
    return Outcome(top.reason, float(np.max(sigmoid(np.asarray(logits) / temperature))))


def cell_metrics(labels: np.ndarray, outcomes: Sequence[Outcome], threshold: float) -> dict[str, Any]:
    """One cell's numbers (see the module doc for what counts where)."""
    y = np.asarray(labels).astype(int)
    p = np.array([np.nan if o.p_fake is None else o.p_fake for o in outcomes])
    scored = ~np.isnan(p)
    flagged = scored & (np.nan_to_num(p, nan=0.0) >= threshold)
    answered = np.array([o.label in ("fake", "real") for o in outcomes])
    reasons: dict[str, int] = {}
    for o in outcomes:
        if o.label not in ("fake", "real"):
            reasons[o.label] = reasons.get(o.label, 0) + 1

    def med(xs: list[float | None]) -> float | None:
        xs = [x for x in xs if x is not None]
        return float(np.median(xs)) if xs else None

    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    return {
        "n": len(y), "n_real": n_real, "n_fake": n_fake,
        "auc": video_auc(y[scored], p[scored]) if scored.any() else None,
        "fpr": float(flagged[y == 0].mean()) if n_real else None,
        "tpr": float(flagged[y == 1].mean()) if n_fake else None,
        "answered": float(answered.mean()) if len(y) else 0.0,
        "scored": float(scored.mean()) if len(y) else 0.0,
        "not_answered": dict(sorted(reasons.items())),
        "bitrate_bps": med([o.bitrate_bps for o in outcomes]),
        "short_side": med([o.short_side for o in outcomes]),
        "fps": med([o.fps for o in outcomes]),
    }


def run_grid(det: Any, videos: Sequence[VideoItem], perturbations: Sequence[Perturbation] | str, *,
             seed: int = 0, max_windows: int | None = None, scratch: str | Path | None = None,
             clean: bool = True, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run the detector on every video under each perturbation (and clean); return the grid.

    Perturbed copies live in ``scratch`` (a temporary folder by default) only while judged.
    """
    if isinstance(perturbations, str) or any(isinstance(p, str) for p in perturbations):
        chain = parse_perturbations(perturbations)  # a preset or "name:level" strings
    else:
        chain = list(perturbations)
    threshold = float(det.config.threshold)
    labels = np.array([v.label for v in videos], int)
    conditions: list[Perturbation | None] = ([None] if clean else []) + chain
    cells = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sf-robustness-", dir=scratch) as tmp:
        for ci, cond in enumerate(conditions):
            outcomes = []
            for vi, v in enumerate(videos):
                if progress:
                    progress(CLEAN if cond is None else cond.key, ci * len(videos) + vi, len(conditions) * len(videos))
                if not Path(v.path).is_file():
                    outcomes.append(Outcome("missing", None))
                    continue
                if cond is None:
                    path = Path(v.path)
                else:
                    path = Path(tmp) / f"{ci:03d}-{vi:05d}.mp4"
                    try:
                        perturb_video(v.path, path, cond, seed=seed + vi)
                    except PerturbationError as exc:
                        logger.info("%s under %s: %s", v.video_id, cond.key, exc)
                        outcomes.append(Outcome("undecodable", None))
                        continue
                    except Exception as exc:  # noqa: BLE001 - an encoder failure is this cell's, not the run's
                        logger.warning("%s under %s: cannot perturb", v.video_id, cond.key, exc_info=True)
                        outcomes.append(Outcome(f"error: {type(exc).__name__}", None))
                        continue
                o = _judge(det, path, max_windows)
                # The file as a viewer gets it: the compression inside the frames (the lossless
                # container's own bitrate says nothing), so measure the condition's encode instead.
                info = probe(path if cond is None else _condition_encode(v.path, cond, Path(tmp), seed + vi))
                o.bitrate_bps, o.short_side, o.fps = info["bitrate_bps"], info["short_side"], info["fps"]
                outcomes.append(o)
                if cond is not None:
                    path.unlink(missing_ok=True)
            m = cell_metrics(labels, outcomes, threshold)
            if cond is None:
                m.update(condition=CLEAN, name=CLEAN, level=0, description="as given", source="")
            else:
                m.update(condition=cond.key, name=cond.name, level=cond.level, description=cond.describe(),
                         source=cond.spec.source, **{k: v for k, v in cond.condition().items()
                                                     if k not in ("name", "level", "fps")})
            m["videos"] = [{"video_id": v.video_id, "label": int(v.label), "answer": o.label,
                            "p_fake": o.p_fake} for v, o in zip(videos, outcomes)]
            cells.append(m)
            logger.info("robustness %s: auc %s, answered %.0f%%", m["condition"], m["auc"], 100 * m["answered"])
    return {"threshold": threshold, "seed": seed, "videos": len(videos),
            "n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()),
            "seconds": round(time.perf_counter() - t0, 1), "cells": cells}


def _condition_encode(src: str, cond: Perturbation, tmp: Path, seed: int) -> Path:
    """For a compression condition, the size and bitrate a viewer's file has: the clip encoded the
    way the condition encodes it (other conditions: the lossless copy is not what anyone uploads,
    so the source's own figures stand)."""
    from stylefusion.perturb import encode_h264, read_frames

    c = cond.condition()
    if "crf" not in c:
        return Path(src)
    frames, fps = read_frames(src)
    h, w = frames.shape[1:3]
    scale = min(1.0, c.get("max_short_side", 10 ** 9) / min(h, w))
    out = tmp / "probe.mp4"
    return encode_h264(frames, out, fps, crf=int(c["crf"]), width=round(w * scale), height=round(h * scale))


# ----------------------------------------------------------------------------------------------
# Reports, figures, the checkpoint's record
# ----------------------------------------------------------------------------------------------
def heatmap(grid: dict[str, Any], out: Path, stem: str = "robustness") -> dict[str, str]:
    """AUC per perturbation (rows) and level (columns), the share answered written in each cell."""
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    from stylefusion.research.figures import _save

    cells = grid["cells"]
    names = list(dict.fromkeys(c["name"] for c in cells))
    max_level = max(c["level"] for c in cells)
    cols = list(range(0 if any(c["name"] == CLEAN for c in cells) else 1, max_level + 1))
    z = np.full((len(names), len(cols)), np.nan)
    text = [["" for _ in cols] for _ in names]
    for c in cells:
        i, j = names.index(c["name"]), cols.index(c["level"])
        z[i, j] = np.nan if c["auc"] is None else c["auc"]
        text[i][j] = (f"{'–' if c['auc'] is None else format(c['auc'], '.2f')}\n{c['answered']:.0%}")
    col_names = ["clean" if lv == 0 else f"level {lv}" for lv in cols]
    fig = Figure(figsize=(1.3 * len(cols) + 2.5, 0.45 * len(names) + 1.6))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(z), cmap="RdYlGn", vmin=0.5, vmax=1.0, aspect="auto")
    fig.colorbar(im, ax=ax, label="video AUC")
    for i in range(len(names)):
        for j in range(len(cols)):
            if text[i][j]:
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), col_names)
    ax.set_yticks(range(len(names)), names)
    ax.set_title(f"How it holds up: AUC (share answered), {grid['videos']} videos")
    pf = go.Figure(go.Heatmap(z=z, x=col_names, y=names, colorscale="RdYlGn", zmin=0.5, zmax=1.0,
                              text=[[t.replace("\n", " · ") for t in row] for row in text],
                              texttemplate="%{text}", colorbar={"title": "AUC"}))
    pf.update_layout(title=f"How it holds up: video AUC · share answered ({grid['videos']} videos)",
                     yaxis_autorange="reversed", width=220 + 110 * len(cols), height=160 + 34 * len(names))
    return _save(fig, pf, out, stem)


def markdown_table(summary: dict[str, Any]) -> str:
    """The card's and the report's "How it holds up" table."""
    lines = ["| Condition | AUC | FPR | TPR | Answered |", "| --- | --- | --- | --- | --- |"]

    def f(v: Any, pct: bool = False) -> str:
        return "–" if v is None else (f"{v:.0%}" if pct else f"{v:.2f}")

    for c in summary["cells"]:
        lines.append(f"| {c['description'] if c['name'] != CLEAN else 'clean'} | {f(c['auc'])} | "
                     f"{f(c['fpr'], True)} | {f(c['tpr'], True)} | {f(c['answered'], True)} |")
    return "\n".join(lines)


def record_summary(grid: dict[str, Any], split: str) -> dict[str, Any]:
    """What the checkpoint carries (``training.robustness``): the grid without per-video rows."""
    return {"split": split, "videos": grid["videos"], "n_real": grid["n_real"], "n_fake": grid["n_fake"],
            "threshold": grid["threshold"], "seed": grid["seed"],
            "cells": [{k: c.get(k) for k in RECORD_KEYS} for c in grid["cells"]]}


def write_report(grid: dict[str, Any], out: str | Path, *, figures: bool = True, **extra: Any) -> dict[str, Any]:
    """``robustness.json`` (and the heatmap) in ``out``; returns what was written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {**extra, **grid}
    if figures:
        report["figures"] = heatmap(grid, out)
    atomic_write(out / "robustness.json", json.dumps(report, indent=2))
    return report


def split_videos(det: Any, cache_dir: str | Path, split: str, limit: int | None = None) -> list[VideoItem]:
    """The videos of a cache's split (their recorded paths), at most ``limit`` per class (the first
    by video id, so the same ones every run)."""
    from stylefusion.research.cache import FeatureKey
    from stylefusion.research.data import load_features

    key = FeatureKey.from_model(det)
    data = load_features(cache_dir, splits=None if split == "all" else [split], expect=key.any_windows())
    items = sorted((VideoItem(r["video_id"], r["path"], int(r["label"])) for r in data.records
                    if r.get("method") != "self-blend"),  # pseudo-fakes exist as features only
                   key=lambda v: v.video_id)
    if limit is not None:
        items = [v for v in items if v.label == 0][:limit] + [v for v in items if v.label == 1][:limit]
    return items


def evaluate_robustness(model: str | Any, cache_dir: str | Path, split: str, report_dir: str | Path,
                        perturb: str | Sequence[str], *, seed: int = 0, limit: int | None = None,
                        max_windows: int | None = None, figures: bool = True, device: str | None = None
                        ) -> dict[str, Any]:
    """``stylefusion evaluate --perturb``: the grid on a cache's split, written to ``report_dir``."""
    from stylefusion.detector import StyleFusionDetector

    chain = parse_perturbations(perturb)  # a bad level fails here, before any model is loaded
    det = StyleFusionDetector.from_pretrained(model, device=device) if isinstance(model, (str, Path)) else model
    videos = split_videos(det, cache_dir, split, limit)
    grid = run_grid(det, videos, chain, seed=seed, max_windows=max_windows)
    return write_report(grid, report_dir, figures=figures, model=det.identity(), split=split,
                        cache=str(Path(cache_dir).resolve()))


# ----------------------------------------------------------------------------------------------
# The sentence under a verdict
# ----------------------------------------------------------------------------------------------
