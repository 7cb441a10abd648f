"""No answer contradicts its own conformal prediction set, for any quantile, threshold and p_fake.

A conformal method's answer is its set (Angelopoulos & Bates 2021, section 1): ``fake`` is honest
only where the set is exactly {fake}, ``real`` only where it is exactly {real}. The rule of
:func:`stylefusion.decision.decide` gets there with an uncertain band that always contains the
threshold, ``[min(t, q, 1 - q), max(t, q, 1 - q)]``. Here hypothesis searches (q, t, p) for a
counter-example, the reference sets coming from :func:`stylefusion.research.calibrate.prediction_sets`
(the sets whose coverage training measures, checked against crepes in ``test_calibration.py``),
and a grid over (q, t) counts contradictions under this rule and under the previous one
(band ``[1 - q, q]``, none when ``q < 0.5``).

``python tests/test_decision_rule.py`` prints the grid as a table.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stylefusion.config import CalibrationRecord, StyleFusionConfig, TrainingRecord, preset_config
from stylefusion.decision import conformal_band, decide, prediction_set, record_facts
from stylefusion.research.calibrate import prediction_sets
from stylefusion.results import Label

BASE = preset_config("tiny", trained=True, training=TrainingRecord(datasets=["property test"]))
#: The set each answer must equal, as prediction_sets' (real, fake) columns.
ONLY = {Label.FAKE: (False, True), Label.REAL: (True, False)}


def _config(q: float, t: float) -> StyleFusionConfig:
    record = CalibrationRecord(temperature=1.0, conformal_quantile=q, conformal_n=100, coverage_val=0.9)
    return BASE.replace(threshold=t, calibration=record)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _reference_set(p: float, q: float) -> tuple[bool, bool]:
    real, fake = prediction_sets(np.array([p]), q)[0]
    return bool(real), bool(fake)


unit = st.floats(0.0, 1.0, allow_nan=False)
probability = st.floats(1e-6, 1 - 1e-6, allow_nan=False)


@settings(max_examples=1500, deadline=None)
@given(q=unit, t=unit, p=probability)
@example(q=0.70, t=0.82, p=0.76)  # the issue's example: the set is {fake}, p < t
@example(q=0.30, t=0.50, p=0.45)  # q < 0.5: the set is empty
@example(q=0.90, t=0.20, p=0.15)  # t below 1 - q: the set is {real}, p >= t
@example(q=0.50, t=0.50, p=0.50)
@example(q=1.00, t=0.50, p=0.99)  # too few calibration points: every set holds both labels
@example(q=0.00, t=0.00, p=1e-6)
def test_an_answer_is_never_outside_its_prediction_set(q, t, p):
    config = _config(q, t)
    label, message, record = decide(config, _logit(p))
    p = record.p_fake  # as the rule computed it (float32), the set is of this one
    real_in, fake_in = _reference_set(p, q)
    lo, hi = record.band
    assert label in (Label.FAKE, Label.REAL, Label.UNCERTAIN)
    assert lo <= t <= hi and (lo, hi) == conformal_band(q, t)  # the band always holds the threshold
    if label is not Label.UNCERTAIN:
        assert (real_in, fake_in) == ONLY[label], (q, t, p, label)  # the set is exactly the answer
        assert (p >= t) == (label is Label.FAKE)  # and the threshold agrees with it
        assert not lo <= p <= hi
    else:
        assert "uncertain band" in message
    # The band is no wider than it must be: strictly inside it the set is not exactly the
    # threshold's label (rounding at its ends aside), strictly outside it there is an answer.
    if lo + 1e-9 < p < hi - 1e-9:
        assert (real_in, fake_in) != ONLY[Label.FAKE if p >= t else Label.REAL]
    if p < lo or p > hi:
        assert label is not Label.UNCERTAIN
    assert prediction_set(p, q) == {lab for lab, inside in ((Label.REAL, real_in), (Label.FAKE, fake_in)) if inside}


def test_the_issue_example_and_what_the_answer_says():
    label, message, record = decide(_config(0.70, 0.82), _logit(0.76))
    assert label is Label.UNCERTAIN and record.band == (pytest.approx(0.30), 0.82)
    assert message == ("p_fake 0.760 is in the uncertain band [0.300, 0.820]: the 90% conformal prediction set "
                       "is {fake} but p_fake is below the threshold 0.820")
    label, message, _ = decide(_config(0.30, 0.50), _logit(0.45))
    assert label is Label.UNCERTAIN and message.endswith("the 90% conformal prediction set is empty (no label fits "
                                                         "at this level)")
    label, message, _ = decide(_config(0.80, 0.70), _logit(0.60))
    assert label is Label.UNCERTAIN and message.endswith("set holds both labels")
    assert decide(_config(0.70, 0.82), _logit(0.83))[0] is Label.FAKE
    assert decide(_config(0.70, 0.82), _logit(0.29))[0] is Label.REAL
    assert "min(t, q, 1 - q), max(t, q, 1 - q)" in record.band_source and "never contradicts" in record.band_source
    facts = record_facts(record)
    assert any(f.startswith("uncertain band [0.300, 0.820]") and "not exactly the threshold's label" in f
               for f in facts)


# ----------------------------------------------------------------------------------------------
# the (q, t) grid
# ----------------------------------------------------------------------------------------------
QS = (0.2, 0.3, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
TS = (0.05, 0.3, 0.5, 0.7, 0.82, 0.95)


def _previous_rule(p: float, q: float, t: float) -> Label:
    """The rule before this fix: band [1 - q, q] (none when q < 0.5), then the threshold."""
    if q >= 0.5 and 1 - q <= p <= q:
        return Label.UNCERTAIN
    return Label.FAKE if p >= t else Label.REAL


def grid(qs=QS, ts=TS, n: int = 2001) -> list[dict]:
    """Per (q, t): the band, how many of ``n`` p_fake on a uniform grid get each answer, and how
    many answers contradict their set under this rule and the previous one."""
    rows = []
    ps = np.linspace(0.0005, 0.9995, n)
    for q in qs:
        for t in ts:
            config = _config(q, t)
            sets = prediction_sets(ps, q)
            counts = {Label.FAKE: 0, Label.REAL: 0, Label.UNCERTAIN: 0}
            wrong = wrong_before = 0
            for p, members in zip(ps, map(tuple, sets)):
                label, _, record = decide(config, _logit(float(p)))
                counts[label] += 1
                mine = tuple(prediction_sets(np.array([record.p_fake]), q)[0])
                wrong += label in ONLY and mine != ONLY[label]
                before = _previous_rule(float(p), q, t)
                wrong_before += before in ONLY and members != ONLY[before]
            rows.append({"q": q, "t": t, "band": record.band, "fake": counts[Label.FAKE], "real": counts[Label.REAL],
                         "uncertain": counts[Label.UNCERTAIN], "contradictions": wrong,
                         "contradictions_before": wrong_before})
    return rows


def test_no_answer_contradicts_its_set_on_a_grid_of_q_and_t():
    rows = grid(n=401)
    assert all(r["contradictions"] == 0 for r in rows)
    # The grid holds the cases of the issue, which the previous rule answered against the set.
    assert sum(r["contradictions_before"] > 0 for r in rows) >= 20
    by_qt = {(r["q"], r["t"]): r for r in rows}
    assert by_qt[(0.7, 0.82)]["contradictions_before"] > 0 and by_qt[(0.3, 0.5)]["contradictions_before"] > 0
    assert by_qt[(1.0, 0.5)]["uncertain"] == 401  # q = 1: every set holds both labels


def format_grid(rows: list[dict]) -> str:
    lines = ["| q | t | uncertain band | fake | real | uncertain | contradictions | before the fix |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lo, hi = r["band"]
        lines.append(f"| {r['q']:.2f} | {r['t']:.2f} | [{lo:.2f}, {hi:.2f}] | {r['fake']} | {r['real']} | "
                     f"{r['uncertain']} | {r['contradictions']} | {r['contradictions_before']} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    n = 2001
    print(f"{n} p_fake per (q, t), uniform on [0.0005, 0.9995]; a contradiction is a fake/real answer whose "
          "90% conformal prediction set is not exactly that label")
    print(format_grid(grid(n=n)))


# ----------------------------------------------------------------------------------------------
# the rule and the card need neither torch nor OpenCV
# ----------------------------------------------------------------------------------------------
def test_the_rule_is_one_record_stored_in_the_config_and_rebuilt_from_it():
    from stylefusion.decision import DecisionRule
    from stylefusion.history import HistoryLimits

    record = CalibrationRecord(temperature=1.7, conformal_quantile=0.8, conformal_n=100, coverage_val=0.9,
                               real_segment_quantiles=[float(v) for v in np.linspace(0.01, 0.9, 1001)], history_source="test")
    rule = DecisionRule(trained=True, threshold=0.61, threshold_policy="fpr:0.05", conformal_alpha=0.1,
                        uncertain_margin=0.1, calibration=record,
                        quality={"min_face_px": 30.0, "min_sharpness": 0.05, "min_brightness": 20.0,
                                 "max_brightness": 230.0},
                        history=HistoryLimits(min_bpp=0.01, max_h264_qp=43.5, min_recapture_score=3))
    config = StyleFusionConfig.from_dict({**BASE.replace(**rule.config_fields()).to_dict()})  # through JSON
    assert DecisionRule.from_config(config) == rule
    for p in (0.05, 0.5, 0.7, 0.95):
        assert decide(rule, _logit(p), segments=3) == decide(config, _logit(p), segments=3)


def test_the_card_and_the_rule_import_neither_torch_nor_cv2(tmp_path):
    """``import stylefusion.card`` (and rendering a calibrated checkpoint's card, which runs the rule)
    loads neither torch nor cv2: ``python -X importtime`` lists every module imported."""
    import re
    import subprocess
    import sys

    config = _config(0.7, 0.82)
    (tmp_path / "config.json").write_text(config.to_json())
    code = ("import stylefusion.card\n"
            "from stylefusion.card import render_model_card\n"
            "from stylefusion.config import StyleFusionConfig\n"
            "from stylefusion.decision import decide\n"
            "from stylefusion.quality import Quality\n"
            f"c = StyleFusionConfig.from_json_file({str(tmp_path / 'config.json')!r})\n"
            "card = render_model_card(c)\n"
            "assert 'max(t, q, 1 - q)' in card, card\n"
            "assert str(decide(c, 3.0, quality=Quality(100.0, 0.3, 120.0))[0]) == 'fake'\n")
    for program in ("import stylefusion.card", code):
        run = subprocess.run([sys.executable, "-X", "importtime", "-c", program], capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        imported = set(re.findall(r"\|\s+([\w.]+)$", run.stderr, flags=re.M))
        assert "stylefusion.card" in imported  # the listing is what it claims to be
        assert not {"torch", "cv2"} & imported, sorted(m for m in imported if m.split(".")[0] in ("torch", "cv2"))
