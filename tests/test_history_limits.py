"""The processing-history limits come from the training videos, as the quality limits do (issue 25).

``stylefusion extract`` measures each video's processing history into its cache header;
``stylefusion train`` sets ``max_h264_qp``, ``min_bpp`` and ``min_recapture_score`` from them where
enough videos were measured (:func:`stylefusion.research.calibrate.history_limits_from`), and says
where they came from (``calibration.history_source``, the card). Fixtures are made by the real
producers: carphone re-encoded at 8 quantiser levels, extracted and trained on by the CLIs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from stylefusion.config import HISTORY_DEFAULTS
from stylefusion.detector import StyleFusionDetector, init_checkpoint
from stylefusion.research import calibrate as cal_mod
from stylefusion.research import extract as extract_mod
from stylefusion.research import train as train_mod
from stylefusion.research.cache import FeatureCache
from stylefusion.research.data import load_features
from stylefusion.research.manifest import ManifestRecord, write_manifest
from test_history import _carphone_frames
from videogen import encode_frames

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CRFS = [16, 20, 24, 28, 32, 36, 40, 44]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, one_thread):
    work = tmp_path_factory.mktemp("history_limits")
    frames = _carphone_frames()
    ckpt = work / "ckpt"
    init_checkpoint("tiny", ckpt, seed=0)
    rows = []
    for i, crf in enumerate(CRFS):
        path = encode_frames(work / f"crf{crf}.mp4", frames, width=176, height=144, fps=30, crf=str(crf))
        rows.append(ManifestRecord(f"crf{crf}", str(path), i % 2, "train" if i < 6 else "val", "synthetic",
                                   "generated" if i % 2 else "original"))
    write_manifest(rows, work / "manifest.csv")
    assert extract_mod.main(["--manifest", str(work / "manifest.csv"), "--model", str(ckpt), "--cache",
                             str(work / "cache"), "--no-progress", "--threads", "1"]) == 0
    return work


def _histories(work) -> dict[str, dict]:
    return {e.header.record.video_id: json.loads(e.header.history)
            for e in FeatureCache(work / "cache").entries(headers_only=True)}


def test_extract_records_each_videos_history(cache):
    h = _histories(cache)
    assert set(h) == {f"crf{c}" for c in CRFS}
    qps = [h[f"crf{c}"]["mean_qp"] for c in CRFS]
    assert all(b > a for a, b in zip(qps, qps[1:]))  # a coarser encode has a larger quantiser
    assert all(v["codec"] == "h264" and v["bpp"] > 0 and v["recapture_score"] == 0 for v in h.values())


def test_too_few_measured_videos_keep_the_documented_defaults(cache):
    records = load_features(cache / "cache", splits=("train",)).records
    limits, source = cal_mod.history_limits_from(records)
    assert limits == HISTORY_DEFAULTS
    assert source == ("documented defaults: 6 training videos with a measured history are too few "
                      f"(at least {cal_mod.HISTORY_MIN_VIDEOS} are needed)")


def test_train_takes_the_limits_from_its_videos(cache, monkeypatch, carphone):
    monkeypatch.setattr(cal_mod, "HISTORY_MIN_VIDEOS", 6)  # the 6 train videos are enough here
    out = cache / "trained"
    assert train_mod.main(["--cache", str(cache / "cache"), "--out", str(out), "--epochs", "2", "--batch-size", "2",
                           "--seed", "0", "--threads", "1"]) == 0
    h = _histories(cache)
    train_qp = [h[f"crf{c}"]["mean_qp"] for c in CRFS[:6]]
    train_bpp = [h[f"crf{c}"]["bpp"] for c in CRFS[:6]]
    det = StyleFusionDetector.from_pretrained(out)
    c = det.config
    assert c.max_h264_qp == pytest.approx(np.percentile(train_qp, 99), abs=1e-3)
    assert c.min_bpp == pytest.approx(np.percentile(train_bpp, 1), abs=1e-6)
    assert c.min_recapture_score == HISTORY_DEFAULTS["min_recapture_score"]  # never below the default
    assert c.calibration.history_source.startswith(
        "training videos: 99th percentile of the mean H.264 quantiser of 6 videos; 1st percentile of bits per "
        "pixel of 6 videos; recapture score above the 99th percentile of 6 videos")
    card = (out / "README.md").read_text()
    assert f"mean H.264 quantiser > {c.max_h264_qp:g}" in card and "training videos: 99th percentile" in card
    # The detector holds a file to these limits: the val video at CRF 44 is coarser than any train
    # video (answered uncertain, "heavily compressed"); the train video at CRF 16 is not.
    coarse, fine = cache / "crf44.mp4", cache / "crf16.mp4"
    res = det.detect(coarse)
    assert h["crf44"]["mean_qp"] > c.max_h264_qp
    assert "heavily_recompressed" in res.history["reasons"]
    assert "heavily_recompressed" in res.decision.history_reasons and res.label.value == "uncertain"
    assert det.detect(fine).history["reasons"] == []
