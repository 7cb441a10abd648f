"""research/metrics.py against values worked out by hand on small examples (fake = positive)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stylefusion.research.metrics import (binary_metrics, calibrate_threshold, equal_error_rate, predict_logits,
                                          video_max)

# Scores ranked: 0.8 (fake), 0.4 (real), 0.35 (fake), 0.1 (real).
LABELS = np.array([0, 0, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def test_ranking_metrics_of_a_small_example():
    m = binary_metrics(LABELS, SCORES, 0.5)
    # AUC: of the 4 (fake, real) pairs, only (0.35, 0.4) is ranked wrong.
    assert m["auc"] == pytest.approx(3 / 4)
    # AP: precision 1/1 at the first fake, 2/3 at the second; each is half of the recall.
    assert m["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # At threshold 0.4 one real and one fake are wrong: FPR = FNR = 1/2.
    assert m["eer"] == pytest.approx(0.5)


def test_threshold_metrics_and_confusion_counts():
    m = binary_metrics(LABELS, SCORES, 0.5)  # predicted fake: only 0.8
    assert m["confusion_matrix"] == [[2, 0], [1, 1]]  # [[tn, fp], [fn, tp]]
    assert (m["n"], m["n_real"], m["n_fake"], m["threshold"]) == (4, 2, 2, 0.5)
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(1.0)  # of fakes: 1 of 1 predicted fake is fake
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    r = m["classification_report"]
    assert r["real"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1-score": 0.8, "support": 2})
    assert r["fake"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1-score": 2 / 3, "support": 2})
    assert r["accuracy"] == pytest.approx(3 / 4)
    assert r["macro avg"]["f1-score"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert type(r["real"]["support"]) is int and type(m["confusion_matrix"][0][0]) is int
    json.dumps(m)  # the report is written as JSON


def test_threshold_is_inclusive():
    # p_fake >= threshold is a fake prediction.
    assert binary_metrics(LABELS, SCORES, 0.35)["confusion_matrix"] == [[1, 1], [0, 2]]


def test_separable_scores():
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.7, 0.9])
    m = binary_metrics(labels, scores, 0.5)
    assert m["auc"] == 1.0 and m["ap"] == 1.0 and m["eer"] == 0.0
    assert m["confusion_matrix"] == [[2, 0], [0, 2]] and m["f1"] == 1.0
    # Youden's J is 1 from 0.7 down to just above 0.2: halfway between 0.7 and 0.2.
    t, source = calibrate_threshold(labels, scores)
    assert t == pytest.approx(0.45)
    assert "Youden" in source and "balanced accuracy 1.0000" in source


def test_eer_interpolates_between_roc_points():
    # A tie at 0.5 between a real and a fake: the ROC goes straight from (0, 1/2) to (1/2, 1),
    # i.e. tpr = 1/2 + fpr, which meets fnr = 1 - tpr = fpr at fpr = 1/4.
    labels, scores = np.array([1, 1, 0, 0]), np.array([0.9, 0.5, 0.5, 0.1])
    assert equal_error_rate(labels, scores) == pytest.approx(0.25)
    assert binary_metrics(labels, scores, 0.5)["auc"] == pytest.approx(3.5 / 4)  # the tie counts half


def test_youden_threshold_of_the_small_example():
    # ROC thresholds 0.8 and 0.35 both give J = 1/2; the first (higher) one is kept, and the
    # threshold is put halfway to the next lower score, 0.4.
    t, source = calibrate_threshold(LABELS, SCORES)
    assert t == pytest.approx(0.6)
    assert "balanced accuracy 0.7500" in source and "4 videos" in source
    assert binary_metrics(LABELS, SCORES, t)["balanced_accuracy"] == pytest.approx(0.75)


def test_one_class_has_no_ranking_metrics_and_a_default_threshold():
    labels, scores = np.array([0, 0, 0]), np.array([0.2, 0.6, 0.9])
    m = binary_metrics(labels, scores, 0.5)
    assert m["auc"] is None and m["ap"] is None and m["eer"] is None and m["balanced_accuracy"] is None
    assert m["confusion_matrix"] == [[1, 2], [0, 0]] and m["accuracy"] == pytest.approx(1 / 3)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0  # zero_division=0
    assert calibrate_threshold(labels, scores) == (0.5, "default 0.5: the validation data has one class")


def test_no_threshold_beats_chance():
    # Every fake scores below every real: J is never positive.
    t, source = calibrate_threshold(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert t == 0.5 and "no threshold beats chance" in source


def test_predict_logits_batches_in_order():
    calls = []

    def head(content, style):
        calls.append(len(content))
        return SimpleNamespace(logits=content.sum(dim=(1, 2)) - style.sum(dim=(1, 2, 3)))

    content, style = torch.randn(7, 2, 3), torch.randn(7, 4, 1, 3)
    got = predict_logits(head, content, style, batch_size=3)
    assert calls == [3, 3, 1]
    torch.testing.assert_close(got, content.sum(dim=(1, 2)) - style.sum(dim=(1, 2, 3)))
    assert predict_logits(head, content[:0], style[:0]).shape == (0,)


def test_a_videos_score_is_the_max_over_its_segments():
    # Video 0: one segment; video 1: a real-looking window and a fake one (fake anywhere = fake).
    segment_scores = torch.tensor([0.2, 0.1, 0.9, 0.4])
    video_index = np.array([0, 1, 1, 2])
    np.testing.assert_allclose(video_max(segment_scores, video_index), [0.2, 0.9, 0.4])
    assert video_max(np.array([0.3]), np.array([0]), 1).dtype == np.float64
    with pytest.raises(ValueError, match="no segment"):
        video_max(np.array([0.3]), np.array([1]), 3)
    with pytest.raises(ValueError, match="3 scores for 2"):
        video_max(np.zeros(3), np.zeros(2, int))
    # The metrics then count videos: 3 videos, video 1 a fake caught by its second window.
    m = binary_metrics(np.array([0, 1, 0]), video_max(segment_scores, video_index), 0.5)
    assert m["n"] == 3 and m["confusion_matrix"] == [[2, 0], [0, 1]]
