"""``stylefusion evaluate``: video-level metrics of a checkpoint on cached features, and the figures.

The field compares detectors by **video-level AUC** (train on FaceForensics++ c23, test on
Celeb-DF v2, DFDC, ...); the report gives accuracy, precision, recall and F1 (its Table 3) and a
classification report (its Table 4). Both are here, plus AP, EER and the confusion matrix, for all
test videos together, per dataset, and per manipulation method (that method's fakes against the
same dataset's reals), written as ``report.json`` and ``report.md``, with ``predictions.csv`` and
the figures (PNG and interactive HTML) beside them.

"Fake" is the positive class. Threshold-dependent numbers use the checkpoint's threshold, which
``stylefusion train`` calibrated on validation data — never on the test set being reported.

``--perturb PRESET|name:level,...`` also runs the detector on the split's video files under each
perturbation (:mod:`stylefusion.perturb`, :mod:`stylefusion.research.robustness`), writing
``robustness.json`` and the heatmap beside the report; perturbed copies are temporary files.

The head scores segments (every judged person in each analysed window of a video, as the cache
holds them); every metric is per video, whose ``p_fake`` is the max over its segments — the
detector's verdict rule, a fake anywhere makes the video fake. ``predictions.csv`` has one row per
video (with the window of its most suspicious segment), ``segments.csv`` one row per segment; the
figures show each video's most suspicious segment.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import torch

from stylefusion._io import atomic_write, atomic_writer
from stylefusion.errors import StyleFusionError
from stylefusion.research.calibrate import (brier_score, expected_calibration_error, head_outputs, reliability,
                                            sigmoid)
from stylefusion.research.metrics import HISTORY_NAME, binary_metrics

logger = logging.getLogger(__name__)


class EvaluationError(StyleFusionError):
    """Evaluation cannot run: an untrained checkpoint, or a cache that does not match the model."""


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------
def _fmt(v: Any, digits: int = 4) -> str:
    return "–" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def table3(m: dict[str, Any]) -> str:
    """The report's Table 3 (overall evaluation), with the field's metrics added."""
    rows = [("Accuracy", m["accuracy"]), ("Precision", m["precision"]), ("Recall", m["recall"]),
            ("F1 Score", m["f1"]), ("AUC", m["auc"]), ("AP", m["ap"]), ("EER", m["eer"]),
            ("Balanced accuracy", m["balanced_accuracy"])]
    return "| Metric | Score |\n| --- | --- |\n" + "\n".join(f"| {k} | {_fmt(v)} |" for k, v in rows)


def table4(m: dict[str, Any]) -> str:
    """The report's Table 4 (classification report) and the confusion matrix."""
    r = m["classification_report"]
    lines = ["| Class | Precision | Recall | F1-Score | Support |", "| --- | --- | --- | --- | --- |"]
    for name, key in (("Real", "real"), ("Fake", "fake")):
        lines.append(f"| {name} | {r[key]['precision']:.2f} | {r[key]['recall']:.2f} | "
                     f"{r[key]['f1-score']:.2f} | {r[key]['support']} |")
    lines.append(f"| Accuracy | - | - | {r['accuracy']:.2f} | {m['n']} |")
    for name in ("macro avg", "weighted avg"):
        lines.append(f"| {name.title()} | {r[name]['precision']:.2f} | {r[name]['recall']:.2f} | "
                     f"{r[name]['f1-score']:.2f} | {r[name]['support']} |")
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    lines += ["", "| true \\ predicted | Real | Fake |", "| --- | --- | --- |",
              f"| Real | {tn} | {fp} |", f"| Fake | {fn} | {tp} |"]
    return "\n".join(lines)


def breakdown_table(groups: dict[str, dict[str, Any]], title: str) -> str:
    """One row per dataset or method: the cross-dataset table of the field."""
    head = f"| {title} | Videos (real/fake) | AUC | AP | EER | Accuracy | Precision | Recall | F1 |"
    lines = [head, "| --- " * 9 + "|"]
    for name, m in groups.items():
        lines.append(f"| {name} | {m['n']} ({m['n_real']}/{m['n_fake']}) | {_fmt(m['auc'])} | {_fmt(m['ap'])} | "
                     f"{_fmt(m['eer'])} | {_fmt(m['accuracy'])} | {_fmt(m['precision'])} | "
                     f"{_fmt(m['recall'])} | {_fmt(m['f1'])} |")
    return "\n".join(lines)


def breakdowns(records: list[dict[str, str]], labels: np.ndarray, p: np.ndarray,
               threshold: float) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Metrics per dataset, and per (dataset, method): a method's fakes against its dataset's reals."""
    datasets = np.array([r["dataset"] for r in records])
    methods = np.array([r["method"] for r in records])
    per_dataset, per_method = {}, {}
    for ds in sorted(set(datasets)):
        in_ds = datasets == ds
        per_dataset[ds] = binary_metrics(labels[in_ds], p[in_ds], threshold)
        reals = in_ds & (labels == 0)
        per_method[ds] = {}
        for m in sorted(set(methods[in_ds & (labels == 1)])):
            sel = reals | (in_ds & (labels == 1) & (methods == m))
            per_method[ds][m] = binary_metrics(labels[sel], p[sel], threshold)
    return per_dataset, per_method


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def evaluate(model: str | Any, cache_dir: str | Path, split: str = "test", report_dir: str | Path | None = None,
             *, allow_untrained: bool = False, history: str | Path | None = None, figures: bool = True,
             device: str | None = None) -> dict[str, Any]:
    """Score every cached video of ``split`` ("all" for every split) and write the report.

    Returns the report as a dict (what ``report.json`` holds).
    """
    from stylefusion.detector import StyleFusionDetector
    from stylefusion.research.cache import FeatureKey
    from stylefusion.research.data import load_features

    det = StyleFusionDetector.from_pretrained(model, device=device) if isinstance(model, (str, Path)) else model
    if not det.config.trained and not allow_untrained:
        raise EvaluationError(f"{model}: the checkpoint's fusion head is untrained, so its scores mean "
                              "nothing (train it with `stylefusion train`, or pass --allow-untrained)")
    key = FeatureKey.from_model(det, str(model))
    splits = None if split == "all" else [split]
    data = load_features(cache_dir, splits=splits, expect=key)
    logits, embeddings = head_outputs(det.fusion, data.content, data.style)
    cal = det.config.calibration
    temperature = cal.temperature if cal is not None else 1.0
    seg_p = sigmoid(logits / temperature)  # the calibrated p_fake inference reports
    p = data.video_scores(seg_p)  # per video: max over its segments
    decisive = data.decisive(seg_p)  # per video: its most suspicious segment
    labels = data.video_labels.numpy().astype(int)
    threshold = float(det.config.threshold)
    overall = binary_metrics(labels, p, threshold)
    overall["n_segments"] = len(data)
    per_dataset, per_method = breakdowns(data.records, labels, p, threshold)
    record = det.config.training  # None for an untrained head
    report = {
        "model": det.identity(), "trained": bool(det.config.trained),
        "training": {k: getattr(record, k) if record else None
                     for k in ("data_summary", "datasets", "best_epoch", "threshold_source")},
        "cache": str(Path(cache_dir).resolve()), "split": split, "threshold": threshold,
        "window_s": float(det.config.window_s), "videos": data.num_videos, "segments": len(data),
        # Valid entries of the split left out: other backbones/preprocessing, or cut into other
        # windows than this checkpoint's window_s (re-extract with this checkpoint to include them).
        "skipped_videos": dict(data.skipped),
        "overall": overall, "per_dataset": per_dataset, "per_method": per_method,
        **honesty(det, data, logits, embeddings),
        "units": unit_rates_report(det, data, seg_p),
    }
    if report_dir is not None:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        predicted = (p >= threshold).astype(int)
        n_segments = data.segments_per_video.tolist()
        with atomic_writer(out / "predictions.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "dataset", "method", "split", "label", "p_fake", "predicted", "segments",
                        "window", "person"])
            for v, (r, y, pf, pred) in enumerate(zip(data.records, labels, p, predicted)):
                i = int(decisive[v])
                w.writerow([r["video_id"], r["dataset"], r["method"], r["split"], int(y), f"{pf:.6f}", int(pred),
                            n_segments[v], int(data.window[i]), int(data.person[i])])
        with atomic_writer(out / "segments.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "label", "window", "person", "p_fake", "predicted"])
            for i in range(len(data)):
                r = data.records[int(data.video_index[i])]
                w.writerow([r["video_id"], r["label"], int(data.window[i]), int(data.person[i]),
                            f"{seg_p[i]:.6f}", int(seg_p[i] >= threshold)])
        if figures:
            from stylefusion.research import figures as fig

            hist = Path(history) if history else _history_beside(det)
            # One point per video: its most suspicious segment, with the video's score.
            report["figures"] = fig.write_all(out, data.subset(decisive), p, threshold, overall["confusion_matrix"],
                                              hist if hist and hist.is_file() else None, predicted=predicted)
            report["figures"] |= fig.reliability_diagram(report["calibration"]["reliability"], out)
            report["figures"] |= fig.risk_coverage(report["risk_coverage"], out)
        atomic_write(out / "report.json", json.dumps(report, indent=2))
        atomic_write(out / "report.md", markdown_report(report))
    return report


def _interval(k: int, n: int, level: float = 0.95) -> list[float] | None:
    """Clopper-Pearson interval of a rate k/n (None without videos)."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level)
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def unit_rates_report(det: Any, data: Any, seg_p: np.ndarray) -> dict[str, Any]:
    """How the false- and true-positive rates vary with the number of judged people and the length
    of a video (its analysed windows), at the threshold each video is answered with
    (:func:`stylefusion.decision.threshold_for`, for as many segments as it was judged on) and, for
    comparison, at the checkpoint's one threshold. Rates come with 95% Clopper-Pearson intervals.

    A video is answered by its most suspicious segment, so with one threshold for all, real videos
    of more people or more windows are called fake more often; the threshold per number of segments
    corrects for it. Groups are (people, windows) of the videos as the cache holds them.
    """
    from stylefusion.decision import threshold_for

    rule = det.rule
    vid = data.video_index.numpy()
    v_p = data.video_scores(seg_p)
    labels = data.video_labels.numpy().astype(int)
    n_seg = data.segments_per_video.numpy()
    people = np.zeros(data.num_videos, int)
    windows = np.zeros(data.num_videos, int)
    for v in range(data.num_videos):
        mine = vid == v
        people[v] = len(set(data.person[mine].tolist()))
        windows[v] = len(set(data.window[mine].tolist()))
    unit_t = np.array([threshold_for(rule, int(n))[0] for n in n_seg])
    one_t = float(rule.threshold)
    groups = []
    for p_n, w_n in sorted(set(zip(people.tolist(), windows.tolist()))):
        sel = (people == p_n) & (windows == w_n)
        real, fake = sel & (labels == 0), sel & (labels == 1)
        fp, fp_one = int((v_p[real] >= unit_t[real]).sum()), int((v_p[real] >= one_t).sum())
        tp = int((v_p[fake] >= unit_t[fake]).sum())
        n_real, n_fake = int(real.sum()), int(fake.sum())
        groups.append({
            "people": p_n, "windows": w_n, "segments": sorted(set(n_seg[sel].tolist())),
            "real": n_real, "fake": n_fake,
            "fpr": fp / n_real if n_real else None, "fpr_interval": _interval(fp, n_real),
            "fpr_one_threshold": fp_one / n_real if n_real else None,
            "tpr": tp / n_fake if n_fake else None, "tpr_interval": _interval(tp, n_fake)})
    policy = rule.threshold_policy
    return {"policy": policy, "one_threshold": one_t, "per_unit": threshold_for(rule, 2)[1] is not None,
            "groups": groups}


def honesty(det: Any, data: Any, logits: np.ndarray, embeddings: torch.Tensor) -> dict[str, Any]:
    """How honest the checkpoint's answers are on this data: calibration, out of domain, abstention.

    - ``calibration``: expected calibration error (15 bins) and Brier score of the raw sigmoid
      ("before") and of the calibrated probability ("after"), per segment (what the temperature
      calibrates) and per video (max over segments), and the reliability diagram's points.
    - ``out_of_domain``: the share of segments, and of videos with a flagged segment, above the
      checkpoint's out-of-domain threshold, overall and per dataset (absent without statistics).
    - ``decision``: each segment answered by :func:`stylefusion.decision.decide` (the detector's
      rule, quality limits included where the cache measured the crops), each video by its most
      suspicious segment; the share of videos with a verdict (fake or real), their error rate, and
      the videos without one by reason.
    - ``risk_coverage``: error rate against the share of videos answered, answering the most
      confident first (by distance of the calibrated logit to the threshold's, and, with
      out-of-domain statistics, the most in-domain first), with the decision rule's own point.
    """
    from stylefusion.decision import DecisionRule, decide
    from stylefusion.quality import Quality
    from stylefusion.results import Label, most_suspicious

    c = det.config
    cal = c.calibration
    temperature = cal.temperature if cal is not None else 1.0
    seg_labels = data.labels.numpy().astype(int)
    v_labels = data.video_labels.numpy().astype(int)
    p_raw, p_cal = sigmoid(logits), sigmoid(logits / temperature)
    v_raw, v_cal = data.video_scores(p_raw), data.video_scores(p_cal)

    def scores(y: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict[str, float]:
        return {"n": int(len(y)), "ece_before": expected_calibration_error(y, before),
                "ece_after": expected_calibration_error(y, after), "brier_before": brier_score(y, before),
                "brier_after": brier_score(y, after)}

    out: dict[str, Any] = {"calibration": {
        "calibrated": cal is not None, "temperature": float(temperature),
        "segments": scores(seg_labels, p_raw, p_cal), "videos": scores(v_labels, v_raw, v_cal),
        "reliability": {"before": reliability(seg_labels, p_raw), "after": reliability(seg_labels, p_cal)}}}

    ood = det.ood_scores(embeddings, data.content, data.style) if det.ood is not None else None
    datasets = np.array([r["dataset"] for r in data.records])
    vid = data.video_index.numpy()
    if ood is not None:
        flagged = ood > cal.ood_threshold
        v_flagged = np.zeros(data.num_videos, bool)
        np.logical_or.at(v_flagged, vid, flagged)
        per = {}
        for ds in sorted(set(datasets)):
            in_ds = datasets == ds
            seg_in = in_ds[vid]
            per[ds] = {"segments": int(seg_in.sum()), "flagged_segments": float(flagged[seg_in].mean()),
                       "videos": int(in_ds.sum()), "flagged_videos": float(v_flagged[in_ds].mean())}
        out["out_of_domain"] = {"threshold": float(cal.ood_threshold), "flagged_segments": float(flagged.mean()),
                                "flagged_videos": float(v_flagged.mean()), "per_dataset": per}

    # The detector's rule on every segment at its video's unit (the threshold for a video judged on
    # as many segments, as detect answers it), then each video's most suspicious answer
    # (most_suspicious reads ``label`` and ``p_fake``).
    rule = DecisionRule.from_config(c)
    per_video = data.segments_per_video.numpy()
    answers = []
    for i in range(len(logits)):
        quality = Quality.from_array(data.quality[i].numpy())
        label, _, record = decide(rule, float(logits[i]), ood_score=None if ood is None else float(ood[i]),
                                  quality=quality, segments=int(per_video[vid[i]]))
        reason = ("unsupported" if label is Label.UNSUPPORTED else "out_of_domain" if record.out_of_domain
                  else "uncertain_band" if label is Label.UNCERTAIN else label.value)
        answers.append(SimpleNamespace(label=label, p_fake=record.p_fake, reason=reason))
    v_answer = []
    for v in range(data.num_videos):
        mine = [answers[i] for i in np.flatnonzero(vid == v)]
        top = most_suspicious(mine)
        v_answer.append(top if top is not None else next(a for a in mine))
    verdict = np.array([a.label in (Label.FAKE, Label.REAL) for a in v_answer])
    wrong = np.array([(a.label is Label.FAKE) != bool(y) for a, y in zip(v_answer, v_labels)])
    reasons: dict[str, int] = {}
    for a in v_answer:
        if a.label not in (Label.FAKE, Label.REAL):
            reasons[a.reason] = reasons.get(a.reason, 0) + 1
    out["decision"] = {
        "videos": int(data.num_videos), "answered": float(verdict.mean()) if len(verdict) else 0.0,
        "error_answered": float(wrong[verdict].mean()) if verdict.any() else None,
        "error_all_at_threshold": float(((v_cal >= c.threshold).astype(int) != v_labels).mean()),
        "not_answered": reasons}

    # Risk-coverage: answer the most confident videos first.
    errors = ((v_cal >= c.threshold).astype(int) != v_labels).astype(float)
    eps = 1e-12
    v_logit = np.log(np.clip(v_cal, eps, 1 - eps) / np.clip(1 - v_cal, eps, 1))
    t_logit = float(np.log(max(c.threshold, eps) / max(1 - c.threshold, eps)))
    rankings = {"calibrated confidence": -np.abs(v_logit - t_logit)}
    if ood is not None:
        v_ood = np.full(data.num_videos, -np.inf)
        np.maximum.at(v_ood, vid, ood)
        rankings["in-domain first"] = v_ood
    curves = {}
    for name, key in rankings.items():
        order = np.argsort(key, kind="stable")
        answered = np.arange(1, len(order) + 1)
        curves[name] = {"coverage": (answered / len(order)).tolist(),
                        "risk": (np.cumsum(errors[order]) / answered).tolist()}
    out["risk_coverage"] = {"curves": curves, "operating_point": {
        "coverage": out["decision"]["answered"], "risk": out["decision"]["error_answered"]}}
    return out


def _history_beside(det: Any) -> Path | None:
    folder = (getattr(det, "source", None) or {}).get("folder")
    return Path(folder) / HISTORY_NAME if folder else None


def markdown_report(report: dict[str, Any]) -> str:
    m = report["overall"]
    parts = [f"# StyleFusion evaluation — split `{report['split']}`", "",
             f"Model: `{report['model'].get('name')}` (weights sha256 "
             f"`{str(report['model'].get('weights_sha256', ''))[:12]}`), threshold {report['threshold']:.4f} "
             f"({report['training'].get('threshold_source') or 'from the checkpoint config'}).",
             f"Cache: `{report['cache']}`; {m['n']} videos ({m['n_real']} real, {m['n_fake']} fake), "
             f"{report.get('segments', m['n'])} segments (every judged person in each window of "
             f"{report.get('window_s', 0):g} s); a video's p_fake is the max over its segments.", ""]
    if not report["trained"]:
        parts += ["**The checkpoint's head is untrained: these numbers are not a detector's.**", ""]
    skipped = report.get("skipped_videos") or {}
    if skipped.get("other_windows"):
        parts += [f"**{skipped['other_windows']} videos of the split were left out**: the cache cut them into "
                  f"other windows than this checkpoint's window_s ({report['window_s']:g} s) does; extract "
                  "again with this checkpoint to include them.", ""]
    parts += ["## Overall evaluation (Table 3)", "", table3(m), "",
              "## Classification report (Table 4)", "", table4(m), "",
              "## Per dataset", "", breakdown_table(report["per_dataset"], "Dataset"), ""]
    for ds, methods in report["per_method"].items():
        if methods:
            parts += [f"## Per manipulation method — {ds} (method's fakes vs the dataset's reals)", "",
                      breakdown_table(methods, "Method"), ""]
    parts += honesty_markdown(report)
    if report.get("figures"):
        parts += ["## Figures", ""] + [f"- [{name}]({Path(p).name})" for name, p in report["figures"].items()] + [""]
    return "\n".join(parts)


def honesty_markdown(report: dict[str, Any]) -> list[str]:
    """The report's calibration, out-of-domain and abstention sections."""
    cal = report.get("calibration")
    if not cal:
        return []
    parts = ["## Calibration", "",
             ("Temperature " + f"{cal['temperature']:.4f}" + " (fitted on validation data by training)."
              if cal["calibrated"] else "**Uncalibrated checkpoint**: temperature 1 (the raw sigmoid)."), "",
             "| | n | ECE before | ECE after | Brier before | Brier after |", "| --- | --- | --- | --- | --- | --- |"]
    for unit in ("segments", "videos"):
        m = cal[unit]
        parts.append(f"| {unit} | {m['n']} | {_fmt(m['ece_before'])} | {_fmt(m['ece_after'])} | "
                     f"{_fmt(m['brier_before'])} | {_fmt(m['brier_after'])} |")
    parts.append("")
    ood = report.get("out_of_domain")
    if ood:
        parts += ["## Out of domain", "", f"Threshold {ood['threshold']:.4f}: {ood['flagged_segments']:.1%} of segments "
                  f"and {ood['flagged_videos']:.1%} of videos flagged.", "",
                  "| Dataset | Segments | Flagged | Videos | Flagged |", "| --- | --- | --- | --- | --- |"]
        for ds, m in ood["per_dataset"].items():
            parts.append(f"| {ds} | {m['segments']} | {m['flagged_segments']:.1%} | {m['videos']} | "
                         f"{m['flagged_videos']:.1%} |")
        parts.append("")
    u = report.get("units")
    if u and u["groups"]:
        how = ("the threshold for a video judged on as many segments (`threshold_for`)" if u["per_unit"]
               else f"the checkpoint's one threshold {u['one_threshold']:.4f}")
        parts += ["## False positives by people and length", "",
                  f"Each video at {how}; the last column at the one threshold {u['one_threshold']:.4f} for "
                  "comparison. Intervals: 95% Clopper-Pearson.", "",
                  "| people | windows | segments | real | FPR | 95% interval | FPR, one threshold | fake | TPR |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

        def rate(v: float | None) -> str:
            return "–" if v is None else f"{v:.1%}"

        for g in u["groups"]:
            ci = g["fpr_interval"]
            parts.append(f"| {g['people']} | {g['windows']} | {', '.join(map(str, g['segments']))} | {g['real']} | "
                         f"{rate(g['fpr'])} | {'–' if ci is None else f'[{ci[0]:.1%}, {ci[1]:.1%}]'} | "
                         f"{rate(g['fpr_one_threshold'])} | {g['fake']} | {rate(g['tpr'])} |")
        parts.append("")
    d = report.get("decision")
    if d:
        why = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(d["not_answered"].items())) or "none"
        parts += ["## Answers and abstentions", "",
                  f"With the detector's rule, {d['answered']:.1%} of {d['videos']} videos get a verdict (fake or real), "
                  f"with an error rate of {_fmt(d['error_answered'])} among them (all videos at the threshold: "
                  f"{_fmt(d['error_all_at_threshold'])}). Without a verdict, by reason: {why}.", ""]
    return parts


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Score a trained checkpoint on cached features: video-level AUC, AP, EER, accuracy, "
        "precision, recall, F1, classification report and confusion matrix, overall, per dataset "
        "and per manipulation method, per video (p_fake = max over its segments); writes report.json, "
        "report.md, predictions.csv (per video), segments.csv (per segment) and figures.")
    parser.add_argument("--model", required=True, help="trained checkpoint folder or hub repo id")
    parser.add_argument("--cache", required=True, help="feature cache made with the same backbones")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                        help="which cached videos to score (default test)")
    parser.add_argument("--report", default="eval-report", help="output folder (default ./eval-report)")
    parser.add_argument("--history", help="training_history.json for the training-curve figure "
                                          "(default: the one beside a local checkpoint)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--allow-untrained", action="store_true",
                        help="evaluate an untrained head anyway (the report says so)")
    parser.add_argument("--device", help="torch device (default cpu)")
    parser.add_argument("--perturb", metavar="PRESET|NAME:LEVEL,...",
                        help="also run the detector on the split's videos under each perturbation (presets: "
                             "deeperforensics, social, all; or e.g. blur:3,h264:5): robustness.json and the heatmap "
                             "in the report folder (stylefusion.perturb)")
    parser.add_argument("--perturb-seed", type=int, default=0, help="seed of the perturbations (default 0)")
    parser.add_argument("--perturb-limit", type=int, default=None, metavar="N",
                        help="at most N videos per class in the perturbation grid (default: all)")


def run_evaluate(args: argparse.Namespace) -> int:
    if getattr(args, "perturb", None):
        from stylefusion.perturb import parse_perturbations

        parse_perturbations(args.perturb)  # a bad level is a one-line error before any work
    report = evaluate(args.model, args.cache, args.split, args.report, allow_untrained=args.allow_untrained,
                      history=args.history, figures=not args.no_figures, device=args.device)
    print(table3(report["overall"]))
    print()
    print(breakdown_table(report["per_dataset"], "Dataset"))
    print(f"\nreport written to {Path(args.report) / 'report.md'}")
    if getattr(args, "perturb", None):
        from stylefusion.research.robustness import evaluate_robustness, markdown_table

        grid = evaluate_robustness(args.model, args.cache, args.split, args.report, args.perturb,
                                   seed=args.perturb_seed, limit=args.perturb_limit, figures=not args.no_figures,
                                   device=args.device)
        print()
        print(markdown_table(grid))
        print(f"\nrobustness written to {Path(args.report) / 'robustness.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stylefusion.research.evaluate`` (the same as ``stylefusion evaluate``)."""
    from stylefusion.research._cli import run_standalone

    return run_standalone("evaluate", add_evaluate_arguments, run_evaluate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
