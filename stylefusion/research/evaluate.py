"""``stylefusion evaluate``: video-level metrics of a checkpoint on cached features, and the figures.

The field compares detectors by **video-level AUC** (train on FaceForensics++ c23, test on
Celeb-DF v2, DFDC, ...); the report gives accuracy, precision, recall and F1 (its Table 3) and a
classification report (its Table 4). Both are here, plus AP, EER and the confusion matrix, for all
test videos together, per dataset, and per manipulation method (that method's fakes against the
same dataset's reals), written as ``report.json`` and ``report.md``, with ``predictions.csv`` and
the figures (PNG and interactive HTML) beside them.

"Fake" is the positive class. Threshold-dependent numbers use the checkpoint's threshold, which
``stylefusion train`` calibrated on validation data — never on the test set being reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from stylefusion.errors import StyleFusionError

logger = logging.getLogger(__name__)


class EvaluationError(StyleFusionError):
    """Evaluation cannot run: an untrained checkpoint, or a cache that does not match the model."""


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------
def _div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The error rate where false-positive and false-negative rates are equal (ROC interpolation)."""
    from sklearn.metrics import roc_curve

    if len(np.unique(labels)) < 2:
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    diff = fpr - fnr  # rises from <= 0 to >= 0 along the curve
    i = int(np.argmax(diff >= 0))
    if i == 0:
        return float(fpr[0])
    # Linear interpolation between the two ROC points that straddle fpr == fnr.
    d0, d1 = diff[i - 1], diff[i]
    w = d0 / (d0 - d1) if d1 != d0 else 0.0
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def binary_metrics(labels: np.ndarray, p_fake: np.ndarray, threshold: float) -> dict[str, Any]:
    """Video-level metrics with fake as positive; AUC/AP/EER are None when one class is absent."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    both = len(np.unique(y)) == 2
    prec_f, rec_f = _div(tp, tp + fp), _div(tp, tp + fn)
    prec_r, rec_r = _div(tn, tn + fn), _div(tn, tn + fp)
    f1_f = _div(2 * prec_f * rec_f, prec_f + rec_f)
    f1_r = _div(2 * prec_r * rec_r, prec_r + rec_r)
    n, n_real, n_fake = len(y), tn + fp, tp + fn
    report = {
        "real": {"precision": prec_r, "recall": rec_r, "f1": f1_r, "support": n_real},
        "fake": {"precision": prec_f, "recall": rec_f, "f1": f1_f, "support": n_fake},
        "accuracy": {"f1": _div(tp + tn, n), "support": n},
        "macro avg": {"precision": (prec_r + prec_f) / 2, "recall": (rec_r + rec_f) / 2,
                      "f1": (f1_r + f1_f) / 2, "support": n},
        "weighted avg": {k: _div(n_real * r + n_fake * f, n) for k, r, f in
                         (("precision", prec_r, prec_f), ("recall", rec_r, rec_f), ("f1", f1_r, f1_f))}
                        | {"support": n},
    }
    return {
        "n": n, "n_real": n_real, "n_fake": n_fake, "threshold": float(threshold),
        "auc": float(roc_auc_score(y, p)) if both else None,
        "ap": float(average_precision_score(y, p)) if both else None,
        "eer": equal_error_rate(y, p),
        "accuracy": _div(tp + tn, n), "balanced_accuracy": (rec_r + rec_f) / 2 if both else None,
        "precision": prec_f, "recall": rec_f, "f1": f1_f,
        "confusion_matrix": [[tn, fp], [fn, tp]],  # rows: true real, true fake; cols: predicted
        "classification_report": report,
    }


def calibrate_threshold(labels: np.ndarray, p_fake: np.ndarray) -> tuple[float, str]:
    """The threshold that maximises Youden's J (= balanced accuracy) on validation data.

    Placed halfway between the chosen score and the next lower one, so it is not exactly on a
    validation video's score. Returns (threshold, a sentence saying where it came from).
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(labels).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return 0.5, "default 0.5: the validation data has one class"
    fpr, tpr, thresholds = roc_curve(y, p)
    j = tpr - fpr
    i = int(np.argmax(j))
    if j[i] <= 0 or not np.isfinite(thresholds[i]):
        return 0.5, "default 0.5: no threshold beats chance on the validation data"
    lower = p[p < thresholds[i]]
    t = (thresholds[i] + (lower.max() if len(lower) else 0.0)) / 2
    return float(np.clip(t, 0.0, 1.0)), (f"max Youden's J on val ({len(y)} videos): balanced accuracy "
                                         f"{(j[i] + 1) / 2:.4f}")


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
        lines.append(f"| {name} | {r[key]['precision']:.2f} | {r[key]['recall']:.2f} | {r[key]['f1']:.2f} | {r[key]['support']} |")
    lines.append(f"| Accuracy | - | - | {r['accuracy']['f1']:.2f} | {r['accuracy']['support']} |")
    for name in ("macro avg", "weighted avg"):
        lines.append(f"| {name.title()} | {r[name]['precision']:.2f} | {r[name]['recall']:.2f} | "
                     f"{r[name]['f1']:.2f} | {r[name]['support']} |")
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
    from stylefusion.research.cache import FeatureKey, load_features

    det = StyleFusionDetector.from_pretrained(model, device=device) if isinstance(model, (str, Path)) else model
    if not det.config.trained and not allow_untrained:
        raise EvaluationError(f"{model}: the checkpoint's fusion head is untrained, so its scores mean "
                              "nothing (train it with `stylefusion train`, or pass --allow-untrained)")
    key = FeatureKey.from_model(det, str(model))
    splits = None if split == "all" else [split]
    data = load_features(cache_dir, splits=splits, expect=key)
    logits = torch.cat([det.classify(data.content[i:i + 256], data.style[i:i + 256]).logits.float().cpu()
                        for i in range(0, len(data), 256)])
    p = torch.sigmoid(logits).numpy().astype(np.float64)
    labels = data.labels.numpy().astype(int)
    threshold = float(det.config.threshold)
    overall = binary_metrics(labels, p, threshold)
    per_dataset, per_method = breakdowns(data.records, labels, p, threshold)
    report = {
        "model": det.identity(), "trained": bool(det.config.trained),
        "training": {k: det.config.training.get(k) for k in ("data_summary", "datasets", "best_epoch",
                                                              "threshold_source")},
        "cache": str(Path(cache_dir).resolve()), "split": split, "threshold": threshold,
        "overall": overall, "per_dataset": per_dataset, "per_method": per_method,
    }
    if report_dir is not None:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (out / "report.md").write_text(markdown_report(report), encoding="utf-8")
        with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "dataset", "method", "split", "label", "p_fake", "predicted"])
            for r, y, pf in zip(data.records, labels, p):
                w.writerow([r["video_id"], r["dataset"], r["method"], r["split"], int(y), f"{pf:.6f}",
                            int(pf >= threshold)])
        if figures:
            from stylefusion.research import figures as fig

            hist = Path(history) if history else _history_beside(det)
            report["figures"] = fig.write_all(out, data, p, threshold, overall["confusion_matrix"],
                                              hist if hist and hist.is_file() else None,
                                              predicted=(p >= threshold).astype(int))
            (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def _history_beside(det: Any) -> Path | None:
    from stylefusion.research.train import HISTORY_NAME

    folder = (getattr(det, "source", None) or {}).get("folder")
    return Path(folder) / HISTORY_NAME if folder else None


def markdown_report(report: dict[str, Any]) -> str:
    m = report["overall"]
    parts = [f"# StyleFusion evaluation — split `{report['split']}`", "",
             f"Model: `{report['model'].get('name')}` (weights sha256 "
             f"`{str(report['model'].get('weights_sha256', ''))[:12]}`), threshold {report['threshold']:.4f} "
             f"({report['training'].get('threshold_source') or 'from the checkpoint config'}).",
             f"Cache: `{report['cache']}`; {m['n']} videos ({m['n_real']} real, {m['n_fake']} fake).", ""]
    if not report["trained"]:
        parts += ["**The checkpoint's head is untrained: these numbers are not a detector's.**", ""]
    parts += ["## Overall evaluation (Table 3)", "", table3(m), "",
              "## Classification report (Table 4)", "", table4(m), "",
              "## Per dataset", "", breakdown_table(report["per_dataset"], "Dataset"), ""]
    for ds, methods in report["per_method"].items():
        if methods:
            parts += [f"## Per manipulation method — {ds} (method's fakes vs the dataset's reals)", "",
                      breakdown_table(methods, "Method"), ""]
    if report.get("figures"):
        parts += ["## Figures", ""] + [f"- [{name}]({Path(p).name})" for name, p in report["figures"].items()] + [""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Score a trained checkpoint on cached features: video-level AUC, AP, EER, accuracy, "
        "precision, recall, F1, classification report and confusion matrix, overall, per dataset "
        "and per manipulation method; writes report.json, report.md, predictions.csv and figures.")
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


def run_evaluate(args: argparse.Namespace) -> int:
    report = evaluate(args.model, args.cache, args.split, args.report, allow_untrained=args.allow_untrained,
                      history=args.history, figures=not args.no_figures, device=args.device)
    print(table3(report["overall"]))
    print()
    print(breakdown_table(report["per_dataset"], "Dataset"))
    print(f"\nreport written to {Path(args.report) / 'report.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stylefusion.research.evaluate`` (the same as ``stylefusion evaluate``)."""
    from stylefusion.research._cli import run_standalone

    return run_standalone("evaluate", add_evaluate_arguments, run_evaluate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
