"""Video-level scores and metrics, shared by ``stylefusion train`` and ``stylefusion evaluate``.

"Fake" (label 1) is the positive class. The head scores segments (a person's T crops in one
window); a video's score is the max over its segments (:func:`video_max`), the rule the detector's
verdict follows: a fake anywhere makes the video fake. The counting is scikit-learn's; what scikit-learn does not
have is here: the equal error rate (interpolated on the ROC curve) and the decision threshold
calibrated on validation data (max Youden's J on the ROC curve).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

#: Per-epoch curves written by ``stylefusion train`` beside the checkpoint, read by the figures.
HISTORY_NAME = "training_history.json"

#: Class names in label order (0 = real, 1 = fake), as the classification report names them.
CLASS_NAMES = ("real", "fake")


@torch.no_grad()
def predict_logits(head: Callable[[torch.Tensor, torch.Tensor], Any], content: torch.Tensor,
                   style: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits ``[N]`` for N segments' features, ``batch_size`` at a time.

    ``head`` is a fusion head or ``StyleFusionDetector.classify`` (anything returning an object with
    ``.logits``). The logits stay on the head's device; eval mode is the caller's business.
    """
    out = [head(content[i:i + batch_size], style[i:i + batch_size]).logits.float()
           for i in range(0, len(content), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def video_max(scores: np.ndarray | torch.Tensor, video_index: np.ndarray | torch.Tensor,
              num_videos: int | None = None) -> np.ndarray:
    """[V] float64: each video's score, the max of its segments' ``scores`` [N].

    ``video_index`` [N] says which video (0..V-1) each segment belongs to; V is ``num_videos``
    (default: the largest index + 1). A video without a segment would have no score.

    Raises:
        ValueError: lengths differ, an index is out of range, or a video has no segment.
    """
    s = np.asarray(torch.as_tensor(scores).detach().cpu().numpy(), dtype=np.float64).reshape(-1)
    v = np.asarray(torch.as_tensor(video_index).cpu().numpy(), dtype=np.int64).reshape(-1)
    if len(s) != len(v):
        raise ValueError(f"{len(s)} scores for {len(v)} video indices")
    n = int(v.max()) + 1 if num_videos is None and len(v) else int(num_videos or 0)
    if len(v) and (v.min() < 0 or v.max() >= n):
        raise ValueError(f"video indices must lie in [0, {n})")
    out = np.full(n, -np.inf)
    np.maximum.at(out, v, s)
    if np.isneginf(out).any():
        raise ValueError(f"{int(np.isneginf(out).sum())} videos have no segment score")
    return out


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The error rate where false-positive and false-negative rates are equal (ROC interpolation).

    None when one class is absent.
    """
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
    """Video-level metrics with fake as positive; AUC/AP/EER/balanced accuracy are None when one
    class is absent.

    Threshold-dependent values count ``p_fake >= threshold`` as a fake prediction.
    ``confusion_matrix`` is ``[[tn, fp], [fn, tp]]`` (rows: true real, true fake; columns: predicted).
    ``classification_report`` is scikit-learn's ``output_dict`` (keys ``real``, ``fake``,
    ``accuracy``, ``macro avg``, ``weighted avg``), with integer supports.
    """
    from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                                 classification_report, confusion_matrix, precision_recall_fscore_support,
                                 roc_auc_score)

    y = np.asarray(labels).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    cm = confusion_matrix(y, pred, labels=[0, 1])
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, labels=[1], zero_division=0)
    report = classification_report(y, pred, labels=[0, 1], target_names=list(CLASS_NAMES),
                                   output_dict=True, zero_division=0)
    for row in report.values():
        if isinstance(row, dict):
            row["support"] = int(row["support"])
    return {
        "n": len(y), "n_real": int(cm[0].sum()), "n_fake": int(cm[1].sum()), "threshold": float(threshold),
        "auc": float(roc_auc_score(y, p)) if both else None,
        "ap": float(average_precision_score(y, p)) if both else None,
        "eer": equal_error_rate(y, p),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else None,
        "precision": float(precision[0]), "recall": float(recall[0]), "f1": float(f1[0]),
        "confusion_matrix": cm.tolist(),
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
