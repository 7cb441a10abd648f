"""StyleFusionDetector: detect on the real clip, honest labels, exact round trip, strict loading.

Hostile checkpoints (pickles, absurd config values, crafted headers) are in
test_untrusted_checkpoints.py; the numbers of the tiny preset on carphone in test_golden.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import broken_ckpt, copy_ckpt
from stylefusion import StyleFusionDetector
from stylefusion.config import StyleFusionConfig, preset_config
from stylefusion.errors import CheckpointError, ConfigError
from stylefusion.video import sample_indices


def test_detect_carphone_tiny(carphone_result):
    res = carphone_result
    assert res.label == "untrained" and res.p_fake is None  # untrained head: no verdict, no number
    assert len(res.frames) == 32
    assert [f.source_index for f in res.frames] == sample_indices(120, 32).tolist()
    assert res.face_found_ratio == 1.0 and not any(f.fallback for f in res.frames)
    att = np.array([f.attention for f in res.frames])
    assert att.min() >= 0 and att.sum() == pytest.approx(1.0, abs=1e-5)
    assert res.frames[0].style_flow == 0.0 and all(f.style_flow > 0 for f in res.frames[1:])
    assert res.crops.shape == (32, 256, 256, 3)
    assert set(res.timings) >= {"sampling", "faces", "style", "content", "head", "total"}
    doc = json.loads(json.dumps(res.to_dict()))  # JSON-serialisable
    assert doc["frames"][5]["source_index"] == res.frames[5].source_index
    assert res.checkpoint["trained"] is False and len(res.checkpoint["weights_sha256"]) == 64


def test_trained_fixture_gives_verdict(tiny_trained_ckpt, carphone):
    """A trained head's p_fake is the sigmoid of its logit on the video's features (computed here
    through extract_features + classify), and the label is the decision rule applied to it."""
    det = StyleFusionDetector.from_pretrained(tiny_trained_ckpt)
    res = det.detect(carphone)
    feats = det.extract_features(carphone)
    head = det.classify(feats.content[None], feats.style[None])
    p = 1.0 / (1.0 + math.exp(-float(head.logits[0])))
    assert res.p_fake == pytest.approx(p, rel=1e-6, abs=1e-9)
    assert [f.attention for f in res.frames] == pytest.approx(head.attention[0].tolist(), abs=1e-7)
    c = det.config
    if abs(p - c.threshold) < c.uncertain_margin:
        expected = "uncertain"
    else:
        expected = "fake" if p >= c.threshold else "real"
    assert res.label == expected and res.is_verdict
    assert f"{p:.3f}" in res.message


def test_untrained_never_yields_verdict(tiny_detector):
    from stylefusion.decision import decide
    from stylefusion.results import Label

    for logit in (-9.0, -1.0, 0.0, 1.0, 9.0, None):
        label, _, record = decide(tiny_detector.config, logit)
        assert label is Label.UNTRAINED and record.p_fake is None


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_decision_bands(tiny_trained_ckpt):
    """An uncalibrated checkpoint (trained before calibration existed): raw sigmoid, the fixed band."""
    from stylefusion.decision import decide
    from stylefusion.results import Label

    config = StyleFusionDetector.from_pretrained(tiny_trained_ckpt).config.replace(threshold=0.6,
                                                                                 uncertain_margin=0.1)
    assert config.calibration is None
    assert decide(config, _logit(0.95))[0] is Label.FAKE
    assert decide(config, _logit(0.75))[0] is Label.FAKE
    assert decide(config, _logit(0.55))[0] is Label.UNCERTAIN
    assert decide(config, _logit(0.2))[0] is Label.REAL
    label, message, record = decide(config, _logit(0.2))
    assert message == "p_fake 0.200 < threshold 0.600"
    assert not record.calibrated and record.temperature == 1.0 and record.band == pytest.approx((0.5, 0.7))
    assert record.threshold_policy == "fixed (uncalibrated checkpoint)" and record.val_fpr is None


def test_video_alone_and_in_batch_same_score(tiny_detector, carphone, tmp_path):
    from videogen import composite_face_video

    other = composite_face_video(tmp_path / "o.mp4", seconds=2.0, width=960, height=540)
    fa = tiny_detector.extract_features(carphone)
    fb = tiny_detector.extract_features(other)
    alone = tiny_detector.classify(fa.content[None], fa.style[None])
    both = tiny_detector.classify(torch.stack([fb.content, fa.content]), torch.stack([fb.style, fa.style]))
    torch.testing.assert_close(both.logits[1], alone.logits[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(both.attention[1], alone.attention[0], rtol=0, atol=1e-6)


def test_save_load_round_trip_exact(tiny_detector, tmp_path, carphone):
    tiny_detector.save_pretrained(tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    again = StyleFusionDetector.from_pretrained(tmp_path / "copy")
    assert again.config == tiny_detector.config
    a, b = tiny_detector.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert not again.training  # eval mode
    assert {k.split(".")[0] for k in a} == {"content", "style", "fusion"}


def test_full_preset_parameter_counts():
    with torch.device("meta"):  # counts only: no 80 M-parameter random init
        model = StyleFusionDetector(preset_config("full"))
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in ("content", "style", "fusion")}
    assert counts["content"] == 31_634_496  # spec §2.3: slow_r50 trunk without head
    style_elems = sum(v.numel() for k, v in model.style.state_dict().items()
                      if not k.endswith("num_batches_tracked") and k != "latent_avg")
    assert style_elems == 45_593_536  # spec §1.7: the level-9 subset


# --- strict loading (hostile checkpoints: test_untrusted_checkpoints.py) ------------------------
def test_missing_and_unexpected_keys(tiny_ckpt, tmp_path):
    bad = copy_ckpt(tiny_ckpt, tmp_path)
    state = load_file(bad / "model.safetensors")
    state.pop("fusion.fc2.weight")
    state["fusion.extra"] = torch.zeros(1)
    save_file(state, bad / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys: fusion.fc2.weight.*unexpected keys: fusion.extra"):
        StyleFusionDetector.from_pretrained(bad)


def test_wrong_shapes(tiny_ckpt, tmp_path):
    bad = broken_ckpt(tiny_ckpt, tmp_path, fc_hidden=17)
    with pytest.raises(CheckpointError, match="fusion.fc1.*shape"):
        StyleFusionDetector.from_pretrained(bad)


def test_folder_problems(tiny_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        StyleFusionDetector.from_pretrained(tmp_path / "does" / "not" / "exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a StyleFusion checkpoint"):
        StyleFusionDetector.from_pretrained(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="is a file"):
        StyleFusionDetector.from_pretrained(tiny_ckpt / "config.json")
    nomodel = copy_ckpt(tiny_ckpt, tmp_path)
    (nomodel / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        StyleFusionDetector.from_pretrained(nomodel)


def test_corrupt_safetensors(tiny_ckpt, tmp_path):
    bad = copy_ckpt(tiny_ckpt, tmp_path)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="safetensors"):
        StyleFusionDetector.from_pretrained(bad)


def test_torn_save_detected(tiny_ckpt, tmp_path):
    """Weights from one save with the config of another (same shapes) are refused."""
    bad = broken_ckpt(tiny_ckpt, tmp_path, threshold=0.123)
    with pytest.raises(CheckpointError, match="different config.json"):
        StyleFusionDetector.from_pretrained(bad)


def test_offline_load_from_hub_cache(tiny_ckpt, tmp_path):
    """A repo id resolves from the hub cache layout with HF_HUB_OFFLINE=1 (no network)."""
    cache = tmp_path / "hub"
    snap = cache / "models--someorg--tiny" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_ckpt / name, snap / name)
    (cache / "models--someorg--tiny" / "refs").mkdir()
    (cache / "models--someorg--tiny" / "refs" / "main").write_text("a" * 40)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    code = ("from stylefusion import StyleFusionDetector as D; m = D.from_pretrained('someorg/tiny'); "
            "print(m.config.preset, m.source['folder'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tiny ") and str(snap) in out.stdout
    code_missing = ("from stylefusion import StyleFusionDetector as D\n"
                    "try:\n    D.from_pretrained('someorg/absent')\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code_missing], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("CheckpointError") and "HF_HUB_OFFLINE" in out.stdout, out.stdout + out.stderr


def test_config_round_trip_and_validation():
    cfg = preset_config("tiny", style_levels=(3, 9))
    again = StyleFusionConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and isinstance(again.style_levels, tuple)
    with pytest.raises(ConfigError, match="multiple of clip_len"):
        StyleFusionConfig(num_frames=40)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("huge")
