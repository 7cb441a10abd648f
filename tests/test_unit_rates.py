"""Every rate an answer states holds for the unit answered (issue 22): a video is answered by its
most suspicious judged segment, so a real video of n segments gets n chances to be called fake.

Generated held-out data at the score level: real videos of 1, 2 and 4 people, short (one window)
and long (4 windows), i.e. 1 to 16 judged segments, each segment's calibrated p_fake drawn from the
same distribution. The checkpoint keeps the validation real segments' score quantiles
(``stylefusion.research.calibrate.real_segment_quantiles``, what ``stylefusion train`` stores);
``stylefusion.decision.threshold_for`` inverts them per number of segments. With one threshold for
all, the false-positive rate grows as ``1 - 0.95^n``; per unit it holds at 5% in every group, within
the binomial interval of the held-out count.

    PYTHONPATH=tests python tests/test_unit_rates.py    # prints the table of the note
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest

from stylefusion.config import CalibrationRecord, TrainingRecord, preset_config
from stylefusion.decision import checkpoint_decision, decide, threshold_for, unit_threshold
from stylefusion.research.calibrate import real_segment_quantiles, threshold_at_fpr

RATE = 0.05
GROUPS = [(people, windows) for windows in (1, 4) for people in (1, 2, 4)]  # n = people x windows
VAL_PER_GROUP, HELD_OUT_PER_GROUP = 1500, 4000


def _p(rng: np.random.Generator, shape) -> np.ndarray:
    """Calibrated p_fake of real segments: logits ~ N(-1.5, 1.2)."""
    return 1 / (1 + np.exp(-rng.normal(-1.5, 1.2, shape)))


def measure(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    val_segments = np.concatenate([_p(rng, VAL_PER_GROUP * p * w) for p, w in GROUPS])
    quantiles = real_segment_quantiles(val_segments, np.zeros(len(val_segments), int))
    # The single threshold of old: fpr 5% on validation videos of one segment.
    single = threshold_at_fpr(np.zeros(VAL_PER_GROUP, int), _p(rng, VAL_PER_GROUP), RATE)
    rows = []
    for people, windows in GROUPS:
        n = people * windows
        videos = _p(rng, (HELD_OUT_PER_GROUP, n)).max(axis=1)  # the video's answer: its max
        t, _ = unit_threshold(quantiles, RATE, n)
        flagged = int((videos >= t).sum())
        ci = binomtest(flagged, HELD_OUT_PER_GROUP, RATE).proportion_ci(confidence_level=0.99)
        rows.append({"people": people, "windows": windows, "segments": n, "threshold": t,
                     "fpr": flagged / HELD_OUT_PER_GROUP, "ci": (ci.low, ci.high),
                     "single_fpr": float((videos >= single).mean()), "expected_single": 1 - (1 - RATE) ** n})
    return rows


def test_video_false_positive_rate_holds_per_number_of_segments():
    rows = measure()
    one = rows[0]["single_fpr"]  # the single threshold's own rate on one-segment videos
    for r in rows:
        # The stated 5% lies within the 99% binomial interval of the held-out rate, per group.
        lo, hi = r["ci"]
        assert lo <= RATE <= hi, r
        # Without the correction the rate grows with the draws, as 1 - (1 - its one-segment rate)^n.
        assert abs(r["single_fpr"] - (1 - (1 - one) ** r["segments"])) < 0.03, r
    assert rows[-1]["single_fpr"] > 0.4  # 16 segments: more than 40% of real videos called fake
    thresholds = [r["threshold"] for r in sorted(rows, key=lambda r: r["segments"])]
    assert thresholds == sorted(thresholds)  # more segments, a higher bar


def test_the_decision_applies_and_states_the_unit():
    rng = np.random.default_rng(1)
    segments = _p(rng, 4000)
    quantiles = real_segment_quantiles(segments, np.zeros(len(segments), int))
    config = preset_config("tiny").replace(
        trained=True, threshold=float(unit_threshold(quantiles, RATE, 1)[0]),
        training=TrainingRecord(datasets=["generated scores"], data_summary="generated scores"),
        calibration=CalibrationRecord(real_segment_quantiles=quantiles, conformal_quantile=0.55,
                                      val_by_segments={"8": {"real": 40, "fake": 40, "fpr": 0.05, "tpr": 0.8}}))
    t1, _ = threshold_for(config, 1)
    t8, how = threshold_for(config, 8)
    assert t8 > t1 and "judged on 8 segments" in how
    record = checkpoint_decision(config, 8)
    assert record.threshold == t8 and record.segments == 8 and record.val_fpr == 0.05
    assert record.band[0] <= t8 <= record.band[1]  # the band holds the threshold it is decided by
    logit = math.log((t1 + t8) / 2 / (1 - (t1 + t8) / 2))  # between the two thresholds
    assert decide(config, logit, segments=1)[0].value == "fake"  # one segment: above its bar
    label, _, rec = decide(config, logit, segments=8)  # eight segments: below theirs
    assert label.value != "fake" and rec.threshold == t8


if __name__ == "__main__":
    print("| people | windows | segments | threshold | held-out FPR | 99% interval | one threshold for all |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in measure():
        print(f"| {r['people']} | {r['windows']} | {r['segments']} | {r['threshold']:.3f} | {r['fpr']:.3f} | "
              f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {r['single_fpr']:.3f} (1 - 0.95^n = {r['expected_single']:.3f}) |")
