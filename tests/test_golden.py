"""The tiny preset on the carphone clip gives today's numbers: ``tests/artifacts/carphone_tiny.json``.

The checkpoint is ``init_checkpoint("tiny", seed=0)`` (the ``tiny_ckpt`` fixture), the same one
``tests/make_golden.py`` uses to write the file. A failure names the field that moved; if the move
is intended (a deliberate change to sampling, faces, preprocessing or a network), regenerate with
``python tests/make_golden.py`` and say why in the commit.

Tolerances (|got - want| <= atol + rtol * |want|), chosen well above the run-to-run noise measured
on 1 vs 2 threads (at most 2e-6 relative, on near-zero content values) and well below the spread
between frames, so a real change cannot hide in them:

=========================  ==========  ==========  ==============================================
field                      rtol        atol        why
=========================  ==========  ==========  ==============================================
label, p_fake (None)       exact                   a decision
source_index, fallback     exact                   integers and flags
face_found_ratio           exact                   a ratio of counts
timestamp                  0           1e-9 s      container arithmetic, no network
box                        0           1e-3 px     MTCNN regression, in source pixels
detection_prob             0           1e-4        MTCNN probability
logit                      1e-4        1e-6        the head's raw output (about -0.09)
attention                  1e-4        1e-7        about 1/32 each; frames differ by about 1e-5
style_flow                 1e-3        1e-8        a difference of style vectors that agree to a
                                                   few percent: cancellation magnifies the noise
content mean/std/first8    1e-4        1e-7        values about 1e-3 (ReLU outputs, some 0)
style mean/std/first8      1e-4        1e-6        values about 1e-2
state_fingerprint          1e-9        0           sum |w| of the seeded init
=========================  ==========  ==========  ==============================================
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from make_golden import GOLDEN, record

EXACT = ("source_index", "fallback")
FRAME_TOL = {  # field: (rtol, atol)
    "timestamp": (0.0, 1e-9),
    "box": (0.0, 1e-3),
    "detection_prob": (0.0, 1e-4),
    "attention": (1e-4, 1e-7),
    "style_flow": (1e-3, 1e-8),
}
FEATURE_TOL = {"content": (1e-4, 1e-7), "style": (1e-4, 1e-6)}
LOGIT_TOL = (1e-4, 1e-6)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def fresh(tiny_detector, carphone, carphone_result) -> dict:
    return record(tiny_detector, carphone, result=carphone_result)  # carphone_result: detect() once per session


def _close(got, want, tol, what: str) -> None:
    rtol, atol = tol
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=rtol, atol=atol,
                               err_msg=f"{what} differs from {GOLDEN.name}")


def test_golden_file_is_small_and_for_this_setup(golden, carphone):
    assert GOLDEN.stat().st_size < 30_000
    assert golden["checkpoint"] == {"preset": "tiny", "seed": 0} and golden["video"] == carphone.name


def test_same_weights(fresh, golden):
    """The seeded random init itself: when this fails, every number below moves with it."""
    assert fresh["state_fingerprint"] == pytest.approx(golden["state_fingerprint"], rel=1e-9, abs=0)


def test_decision(fresh, golden):
    assert fresh["label"] == golden["label"] == "untrained"
    assert fresh["p_fake"] is None and golden["p_fake"] is None
    assert fresh["face_found_ratio"] == golden["face_found_ratio"]
    _close(fresh["logit"], golden["logit"], LOGIT_TOL, "logit")


@pytest.mark.parametrize("field", [*EXACT, *FRAME_TOL])
def test_frames(fresh, golden, field):
    got, want = fresh["frames"][field], golden["frames"][field]
    assert len(got) == len(want), field
    if field in EXACT:
        assert got == want, field
    else:
        _close(got, want, FRAME_TOL[field], f"frames.{field}")


@pytest.mark.parametrize("name", list(FEATURE_TOL))
def test_features(fresh, golden, name):
    got, want = fresh["features"][name], golden["features"][name]
    assert got["shape"] == want["shape"], name
    for stat in ("mean", "std", "first8"):
        _close(got[stat], want[stat], FEATURE_TOL[name], f"features.{name}.{stat}")
