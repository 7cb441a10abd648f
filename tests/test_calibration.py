"""Verdicts you can trust: calibration, threshold policy, conformal band, out of domain, input
quality, older checkpoints — on synthetic data with known distributions, generated videos, the
real carphone clip, and the end-to-end tiny pipeline (``stylefusion train`` on a generated cache).

The synthetic scores and features are drawn from distributions written out in each test, so the
quantities the mechanisms promise (a false-positive rate, a coverage, a calibration gap) have
known targets, checked on held-out draws from the same distributions.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from helpers import copy_ckpt
from stylefusion import StyleFusionDetector
from stylefusion.config import CalibrationRecord, StyleFusionConfig, parse_threshold_policy, preset_config
from stylefusion.decision import decide
from stylefusion.ood import EmbeddingDensity
from stylefusion.quality import Quality
from stylefusion.errors import ConfigError
from stylefusion.research import calibrate as cal
from stylefusion.research.data import CachedFeatures
from stylefusion.results import Label
from videogen import carphone_path, encode_frames

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"


# ----------------------------------------------------------------------------------------------
# temperature scaling
# ----------------------------------------------------------------------------------------------
def _overconfident(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(s) with s ~ N(0, 2): the calibrated logit is s. The "model" says
    3 s, three times too confident, so the right temperature is 3."""
    s = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-s))).astype(int)
    return 3.0 * s, y


def test_temperature_scaling_lowers_the_calibration_error_on_held_out_data():
    rng = np.random.default_rng(0)
    val_logits, val_y = _overconfident(4000, rng)
    test_logits, test_y = _overconfident(4000, rng)
    t = cal.fit_temperature(val_logits, val_y)
    assert t == pytest.approx(3.0, rel=0.1)
    before = cal.expected_calibration_error(test_y, cal.sigmoid(test_logits))
    after = cal.expected_calibration_error(test_y, cal.sigmoid(test_logits / t))
    assert after < before / 3 and after < 0.03, (before, after)
    assert cal.brier_score(test_y, cal.sigmoid(test_logits / t)) < cal.brier_score(test_y, cal.sigmoid(test_logits))


def test_ece_and_reliability_by_hand():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.1, 0.9, 0.5])
    # bins of width 1/15: {0.1, 0.1} (mean 0.1, no fake), {0.5} (fake), {0.9} (fake)
    assert cal.expected_calibration_error(y, p) == pytest.approx(0.5 * 0.1 + 0.25 * 0.5 + 0.25 * 0.1)
    pts = cal.reliability(y, p)
    assert pts["mean_p"] == pytest.approx([0.1, 0.5, 0.9]) and pts["fake_share"] == [0.0, 1.0, 1.0]
    assert pts["count"] == [2, 1, 1]
    assert cal.fit_temperature(np.array([1.0, 2.0]), np.array([1, 1])) == 1.0  # one class: no fit


# ----------------------------------------------------------------------------------------------
# threshold policy
# ----------------------------------------------------------------------------------------------
def test_threshold_at_fpr_holds_on_held_out_reals():
    """Scores of reals ~ Beta(2, 5), fakes ~ Beta(5, 2): fpr:0.05 on 2,000 val reals keeps the
    false-positive rate of 2,000 other reals within 3 points of 5%."""
    rng = np.random.default_rng(1)
    val = np.r_[rng.beta(2, 5, 2000), rng.beta(5, 2, 2000)]
    val_y = np.r_[np.zeros(2000, int), np.ones(2000, int)]
    t, source = cal.choose_threshold("fpr:0.05", val_y, val)
    assert source == "false-positive rate at most 5% on val (2000 real videos, 2000 fake)"
    tpr, fpr = cal.rates_at(val_y, val, t)
    assert fpr <= 0.05 and fpr > 0.045 and tpr > 0.7
    held_out_reals = rng.beta(2, 5, 2000)
    assert abs((held_out_reals >= t).mean() - 0.05) <= 0.03
    # The exact rule: the (k+1)-th highest real score is below the threshold, the k-th not.
    real = np.sort(val[:2000])[::-1]
    assert real[100] < t <= real[99]


def test_threshold_policies_youden_fixed_and_bad_ones():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.5, 0.8, 0.9])
    t, source = cal.choose_threshold("youden", y, s)
    tpr, fpr = cal.rates_at(y, s, t)
    assert "Youden" in source and tpr - fpr == pytest.approx(2 / 3)  # the best J of these scores
    assert cal.choose_threshold("0.7", y, s) == (0.7, "fixed at 0.7 (threshold_policy)")
    # fpr:0.34 allows 1 of 3 reals: the threshold sits between 0.2 and the next score, 0.5
    assert cal.choose_threshold("fpr:0.34", y, s)[0] == pytest.approx(0.35)
    assert parse_threshold_policy(" FPR:0.01 ") == ("fpr", 0.01) and parse_threshold_policy("youden") == ("youden", None)
    for bad in ("fpr:0", "fpr:1.5", "fpr:abc", "median", "1.2", "nan"):
        with pytest.raises(ConfigError, match="threshold policy"):
            parse_threshold_policy(bad)
    with pytest.raises(ConfigError, match="threshold policy"):
        StyleFusionConfig(threshold_policy="fpr:2")
    from stylefusion.research.train import TrainError, TrainOptions

    with pytest.raises(TrainError, match=r"^--threshold-policy: threshold policy 'median' must be"):
        TrainOptions(cache="c", out="o", threshold_policy="median").check()


# ----------------------------------------------------------------------------------------------
# conformal band
# ----------------------------------------------------------------------------------------------
def _calibrated_scores(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    p = rng.beta(0.8, 0.8, n)
    y = (rng.random(n) < p).astype(int)  # p is the true probability of "fake"
    return p, y


def test_conformal_coverage_on_held_out_data():
    rng = np.random.default_rng(2)
    for alpha in (0.05, 0.1, 0.2):
        p_val, y_val = _calibrated_scores(2000, rng)
        q = cal.conformal_quantile(cal.lac_scores(y_val, p_val), alpha)
        p_test, y_test = _calibrated_scores(5000, rng)
        cover = cal.coverage(y_test, p_test, q)
        assert cover >= 1 - alpha - 0.02, (alpha, cover)
        assert cover <= 1 - alpha + 0.03  # not trivially wide
        sets = cal.prediction_sets(p_test, q)
        band = (1 - q, q) if q >= 0.5 else None
        both = sets.all(axis=1)
        if band is None:
            assert not both.any()
        else:  # the set holds both labels exactly on [1 - q, q], which the uncertain band contains
            assert np.array_equal(both, (p_test >= band[0]) & (p_test <= band[1]))


def test_conformal_sets_equal_crepes():
    """Our quantile rule gives the same prediction sets as crepes' standard conformal classifier."""
    from crepes import ConformalClassifier

    rng = np.random.default_rng(3)
    p_val, y_val = _calibrated_scores(500, rng)
    scores = cal.lac_scores(y_val, p_val)
    p_test = rng.random(3000)
    ref = ConformalClassifier().fit(scores).predict_set(np.stack([p_test, 1 - p_test], 1), confidence=0.9,
                                                        smoothing=False)
    ours = cal.prediction_sets(p_test, cal.conformal_quantile(scores, 0.1))
    assert np.array_equal(ref.astype(bool), ours)
    assert cal.conformal_quantile(scores[:5], 0.1) == 1.0  # too few points for 90%: every set is both


# ----------------------------------------------------------------------------------------------
# out of domain, through the same calibrate_head that `stylefusion train` runs
# ----------------------------------------------------------------------------------------------
def _features(config: StyleFusionConfig, n: int, seed: int, *, shift: float = 0.0, spread: float = 1.0):
    """Backbone-like features: content ReLU(mu + 0.5 N(0, 1)), style mu + 0.5 N(0, 1), fakes moved by
    +0.3. A new domain moves the mean by ``shift`` along a fixed random direction or widens the spread."""
    c = config
    g0 = torch.Generator().manual_seed(99)
    mu_c, mu_s = torch.rand(c.content_dim, generator=g0) * 2, torch.randn(len(c.style_levels), c.style_dim, generator=g0)
    dir_c, dir_s = torch.randn(c.content_dim, generator=g0), torch.randn(len(c.style_levels), c.style_dim, generator=g0)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g).float()
    content = (mu_c + 0.5 * spread * torch.randn(n, c.num_clips, c.content_dim, generator=g)
               + 0.3 * y[:, None, None] + shift * dir_c).relu()
    style = (mu_s + 0.5 * spread * torch.randn(n, c.num_frames, len(c.style_levels), c.style_dim, generator=g)
             + 0.3 * y[:, None, None, None] + shift * dir_s)
    return content, style, y


def _cached(content: torch.Tensor, style: torch.Tensor, y: torch.Tensor, quality: np.ndarray | None = None):
    n, t = len(y), style.shape[1]
    records = [{"video_id": f"v{i}", "label": str(int(y[i])), "split": "val", "dataset": "synthetic"} for i in range(n)]
    q = None if quality is None else torch.as_tensor(quality, dtype=torch.float32)
    return CachedFeatures(content, style, y, torch.zeros(n, t, dtype=torch.bool), torch.arange(n),
                          torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), records, "b", "p", q)


@pytest.fixture(scope="module")
def trained_head():
    from stylefusion.models.fusion import FusionHead

    torch.manual_seed(0)
    config = preset_config("tiny")
    head = FusionHead(config)
    xc, xs, y = _features(config, 2000, 1)
    opt = torch.optim.AdamW(head.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        i = torch.randint(0, len(y), (64,), generator=gen)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(xc[i], xs[i]).logits, y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return config, head.eval()


def test_out_of_domain_flags_shifted_features_and_few_in_domain(trained_head):
    config, head = trained_head
    rng = np.random.default_rng(5)
    quality = np.c_[rng.uniform(80, 200, 2000), rng.uniform(0.2, 0.6, 2000), rng.uniform(60, 160, 2000)]
    train = _cached(*_features(config, 2000, 1), quality=quality)
    val = _cached(*_features(config, 1000, 2))
    result = cal.calibrate_head(head, train, val, config)
    record = result.record
    assert record.has_ood and record.ood_train_segments == 2000
    assert record.ood_val_flagged == pytest.approx(0.01, abs=0.002)  # the 99th percentile of val
    density = EmbeddingDensity(EmbeddingDensity.dim(config))
    density.load_state_dict({k.removeprefix("ood."): v for k, v in result.ood_state.items()})

    def scores(content, style, _y):
        with torch.no_grad():
            emb = head(content, style).embedding
        return density(EmbeddingDensity.features(emb, content, style)).numpy()

    held_out = scores(*_features(config, 2000, 3))
    assert (held_out > record.ood_threshold).mean() <= 0.02
    for shift, spread in ((0.5, 1.0), (0.0, 1.5)):
        shifted = scores(*_features(config, 2000, 4, shift=shift, spread=spread))
        auroc = roc_auc_score(np.r_[np.zeros(len(held_out)), np.ones(len(shifted))], np.r_[held_out, shifted])
        assert auroc >= 0.95, (shift, spread, auroc)
    # The rest of the record, from the same run: quality limits from 2,000 measured training
    # segments (their 1st/99th percentiles), a temperature, a conformal quantile with its coverage.
    assert record.quality_source.startswith("percentiles of the 2000 training segments")
    assert result.quality_limits["min_face_px"] == pytest.approx(np.percentile(quality[:, 0], 1))
    assert result.quality_limits["max_brightness"] == pytest.approx(np.percentile(quality[:, 2], 99))
    assert 0.25 <= record.temperature <= 10 and record.coverage_val >= 0.9 and record.conformal_n == 1000
    assert record.val_fpr <= 0.05


# ----------------------------------------------------------------------------------------------
# the decision rule
# ----------------------------------------------------------------------------------------------
def _calibrated_config(**changes) -> StyleFusionConfig:
    from stylefusion.config import TrainingRecord

    record = CalibrationRecord(temperature=2.0, val_tpr=0.87, val_fpr=0.05, conformal_quantile=0.8, conformal_n=500,
                               coverage_val=0.91, ood_threshold=3.0, quality_source="test")
    return preset_config("tiny", **{"trained": True, "training": TrainingRecord(datasets=["x"]), "threshold": 0.7,
                                    "calibration": record, **changes})


def test_decide_in_order_quality_ood_band_threshold():
    c = _calibrated_config()
    good = Quality(100.0, 0.3, 120.0)

    def label(logit, ood=1.0, quality=good):
        return decide(c, logit, ood_score=ood, quality=quality)

    p = lambda logit: 1 / (1 + math.exp(-logit / 2.0))  # noqa: E731 - temperature 2
    # above the band (0.2-0.8) and the threshold → fake; the probability is calibrated
    lab, msg, rec = label(4.0)
    assert lab is Label.FAKE and rec.p_fake == pytest.approx(p(4.0), rel=1e-6) and rec.band == (pytest.approx(0.2), 0.8)
    assert rec.val_fpr == 0.05 and rec.alpha == 0.1 and "90%" in rec.band_source and rec.calibrated
    assert label(-4.0)[0] is Label.REAL
    assert label(1.0)[0] is Label.UNCERTAIN and "uncertain band" in label(1.0)[1]  # p 0.62
    # out of domain: uncertain, with the reason, and the probability still given
    lab, msg, rec = label(4.0, ood=3.5)
    assert lab is Label.UNCERTAIN and msg.startswith("unlike the videos this detector was trained on")
    assert rec.out_of_domain and rec.p_fake == pytest.approx(p(4.0), rel=1e-6)
    # input quality first: cannot judge, no probability
    for q, reason in ((Quality(20.0, 0.3, 120.0), "face_too_small"), (Quality(100.0, 0.01, 120.0), "too_blurry"),
                      (Quality(100.0, 0.3, 10.0), "too_dark"), (Quality(100.0, 0.3, 250.0), "too_bright")):
        lab, msg, rec = label(4.0, ood=9.0, quality=q)
        assert lab is Label.UNSUPPORTED and rec.quality_reasons == [reason] and rec.p_fake is None
        assert msg.startswith("cannot judge: ")
    # p 0.75 is above the threshold 0.7 but inside the band [0.2, 0.8]: uncertain. With a conformal
    # quantile under 0.5 no set holds both labels, and p in (q, 1 - q) has an empty set: the band
    # [min(t, q, 1 - q), max(t, q, 1 - q)] = [0.3, 0.7] answers it "uncertain", not by the threshold.
    assert label(2 * math.log(0.75 / 0.25))[0] is Label.UNCERTAIN
    narrow = _calibrated_config(calibration=CalibrationRecord(temperature=2.0, conformal_quantile=0.3))
    assert decide(narrow, 2 * math.log(0.75 / 0.25))[0] is Label.FAKE
    lab, msg, rec = decide(narrow, 2 * math.log(0.65 / 0.35))
    assert lab is Label.UNCERTAIN and rec.band == (0.3, 0.7) and "prediction set is empty" in msg
    assert decide(narrow, 2 * math.log(0.25 / 0.75))[0] is Label.REAL
    # The threshold above the conformal band stretches it: q 0.8 with t 0.9 gives [0.2, 0.9], so
    # p 0.85 (set {fake}, below t) is uncertain instead of "real" against its own set.
    high = _calibrated_config(threshold=0.9)
    lab, msg, rec = decide(high, 2 * math.log(0.85 / 0.15), ood_score=1.0, quality=good)
    assert lab is Label.UNCERTAIN and rec.band == (pytest.approx(0.2), 0.9) and msg.endswith(
        "set is {fake} but p_fake is below the threshold 0.900")


# ----------------------------------------------------------------------------------------------
# input quality on generated videos and the real carphone clip
# ----------------------------------------------------------------------------------------------
def _carphone_frames() -> list[np.ndarray]:
    with av.open(str(carphone_path())) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _tiny_face(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    canvas = np.full_like(frame, 90)
    small = cv2.resize(frame, (int(w * 0.4), int(h * 0.4)), interpolation=cv2.INTER_AREA)
    canvas[20:20 + small.shape[0], 30:30 + small.shape[1]] = small
    return canvas


VARIANTS = {
    "tiny face": (_tiny_face, "face_too_small"),
    "blur": (lambda f: cv2.GaussianBlur(f, (0, 0), 2.5), "too_blurry"),
    "dark": (lambda f: (f.astype(np.float32) * 0.22).astype(np.uint8), "too_dark"),
    "bright": (lambda f: (255 - (255 - f.astype(np.float32)) * 0.35).astype(np.uint8), "too_bright"),
}


@pytest.fixture(scope="module")
def quality_videos(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("quality")
    frames = _carphone_frames()
    h, w = frames[0].shape[:2]
    paths = {}
    for name, (fn, _) in VARIANTS.items():
        paths[name] = encode_frames(out / f"{name.replace(' ', '_')}.mp4", [fn(f) for f in frames], width=w,
                                    height=h, fps=30, crf="18")
    return paths


def test_quality_reasons_on_generated_videos_and_none_on_carphone(tiny_trained_ckpt, quality_videos, carphone):
    det = StyleFusionDetector.from_pretrained(tiny_trained_ckpt, precision="fp32")
    for name, (_, reason) in VARIANTS.items():
        res = det.detect(quality_videos[name])
        assert res.label == "unsupported" and res.p_fake is None, (name, res.message)
        assert res.decision.quality_reasons == [reason], (name, res.decision.quality)
        # (the span's end is the person's last seen frame plus one interval: 0:03 or 0:04 for this clip)
        assert re.match(r"unsupported: person 0, 0:00–0:0[34] \(cannot judge: ", res.message), res.message
        assert not res.is_verdict and res.people[0].label == "unsupported"
        assert [t.label for t in res.timeline] == ["unsupported"]
    res = det.detect(carphone)
    assert res.decision.quality_reasons == [] and res.label in ("fake", "real", "uncertain")
    q = res.decision.quality
    assert 50 < q["face_px"] < 70 and q["sharpness"] > 0.2 and 90 < q["brightness"] < 130


# ----------------------------------------------------------------------------------------------
# older checkpoints
# ----------------------------------------------------------------------------------------------
NEW_FIELDS = ("threshold_policy", "conformal_alpha", "min_face_px", "min_sharpness", "min_brightness",
              "max_brightness", "calibration")


def _as_older_checkpoint(src: Path, tmp: Path) -> Path:
    """``src`` as the previous version wrote it: config.json without this round's fields, and
    model.safetensors carrying the digest of that config."""
    from safetensors.torch import load_file, save_file

    from stylefusion.checkpoint import CONFIG_DIGEST_KEY, config_digest

    old = copy_ckpt(src, tmp)
    cfg = json.loads((old / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if k not in NEW_FIELDS}
    (old / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    weights = load_file(str(old / "model.safetensors"))
    save_file(weights, str(old / "model.safetensors"), metadata={"format": "pt", CONFIG_DIGEST_KEY: config_digest(cfg)})
    return old


def test_older_checkpoints_work_and_say_they_are_uncalibrated(tiny_trained_ckpt, tiny_ckpt, carphone, tmp_path):
    from stylefusion.cli import verdict_line

    old = _as_older_checkpoint(tiny_trained_ckpt, tmp_path)
    det = StyleFusionDetector.from_pretrained(old, precision="fp32")
    assert det.config.calibration is None and det.ood is None and det.config.threshold_policy == "fpr:0.05"
    res = det.detect(carphone)
    d = res.decision
    assert not d.calibrated and d.temperature == 1.0 and d.val_fpr is None and d.out_of_domain is None
    assert d.band_source == "fixed ±0.1 around the threshold (uncalibrated checkpoint)"
    assert res.label in ("fake", "real", "uncertain") and res.p_fake == pytest.approx(1 / (1 + math.exp(-d.logit)))
    assert "(uncalibrated checkpoint: raw sigmoid)" in verdict_line(res.to_dict())
    # An untrained head still never yields a verdict, old layout or new.
    untrained = StyleFusionDetector.from_pretrained(_as_older_checkpoint(tiny_ckpt, tmp_path), precision="fp32")
    res = untrained.detect(carphone)
    assert res.label == "untrained" and res.p_fake is None and res.decision.p_fake is None


def test_a_calibration_record_needs_a_trained_head_and_sane_values():
    with pytest.raises(ConfigError, match="trained=false"):
        preset_config("tiny", calibration={"temperature": 1.0})
    for bad, match in (({"temperature": 0.0}, "temperature"), ({"val_fpr": 1.5}, "val_fpr"),
                       ({"ood_threshold": -1.0}, "ood_threshold"), ({"surprise": 1}, "unknown fields")):
        with pytest.raises(ConfigError, match=match):
            _calibrated_config(calibration=bad)


# ----------------------------------------------------------------------------------------------
# end to end: `stylefusion train` records it all; the CLI and the app say it on a real clip
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibrated_ckpt(tmp_path_factory) -> Path:
    """A tiny checkpoint trained and calibrated by ``stylefusion train`` on a generated cache."""
    from trainkit import train_on_features

    content, style, y = _features(preset_config("tiny"), 60, 7)
    return train_on_features(tmp_path_factory.mktemp("calibrated"), content, style, y,
                             ["train" if i < 40 else "val" for i in range(60)],
                             quality=[100.0, 0.4, 110.0], epochs=4, batch_size=8)


def test_a_trained_checkpoint_carries_every_record(calibrated_ckpt):
    from safetensors import safe_open

    config = StyleFusionConfig.from_json_file(calibrated_ckpt / "config.json")
    c = config.calibration
    assert c is not None and config.threshold_policy == "fpr:0.05" and config.conformal_alpha == 0.1
    assert sum(c.val_videos.values()) == 20 and c.val_fpr <= 0.05
    for name in ("temperature", "val_tpr", "conformal_quantile", "coverage_val", "ood_threshold", "ece_before",
                 "ece_after", "brier_before", "brier_after"):
        assert getattr(c, name) is not None, name
    with safe_open(str(calibrated_ckpt / "model.safetensors"), "pt") as f:  # tensors, never pickled
        keys = set(f.keys())
        assert {"ood.mean", "ood.precision"} <= keys
        assert tuple(f.get_slice("ood.precision").get_shape()) == (EmbeddingDensity.dim(config),) * 2
    det = StyleFusionDetector.from_pretrained(calibrated_ckpt)
    assert det.ood is not None and torch.equal(det.ood.mean, det.state_dict()["ood.mean"])


def _real_clip() -> Path:
    clip = SHARED_CLIPS / "real_ffpp_004.mp4"
    if not clip.is_file():
        pytest.skip(f"{SHARED_CLIPS} is absent: the real-clip check needs the shared research clips")
    return clip


def test_cli_and_app_show_the_band_and_its_reasons_on_a_real_clip(calibrated_ckpt, tmp_path, capsys):
    """The checkpoint learnt from random features, so a real video is far outside its domain: both
    the CLI's line and the page say "uncertain", why, and the numbers behind it, identically."""
    from helpers import load_app
    from stylefusion.cli import main as cli_main
    from stylefusion.decision import record_facts

    clip = _real_clip()
    out = tmp_path / "report.json"
    assert cli_main(["detect", str(clip), "--model", str(calibrated_ckpt), "--max-windows", "1",
                     "--json", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    doc = json.loads(out.read_text())["results"][0]
    d = doc["decision"]
    assert doc["label"] == "uncertain" and d["out_of_domain"] is True, line
    assert "unlike the videos this detector was trained on" in line
    facts = record_facts(d)
    assert all(f in line for f in facts)
    # The threshold names the unit it is for (a video judged on as many segments as this one), and
    # says how it did on validation videos of that unit, or that there were none to check it on.
    n = d["segments"]
    unit = "one segment" if n == 1 else f"{n} segments"
    threshold_fact = next(f for f in facts if f.startswith("threshold "))
    assert f"for a video judged on {unit}" in threshold_fact
    assert (f"this threshold flagged {d['val_fpr']:.0%} of real validation videos judged on {unit}" in threshold_fact
            if d["val_fpr"] is not None else f"no validation video was judged on {n} segments" in threshold_fact)
    assert any(f.startswith("uncertain band [") and "conformal" in f for f in facts)

    app = load_app()
    ui = app.App.load(str(calibrated_ckpt), demo_fallback=False)
    res = ui.analyze(str(clip), max_windows=1, progress=None)
    verdict = res[0]
    assert "## Verdict: UNCERTAIN" in verdict
    assert "**Uncertain: this video is unlike the videos this detector was trained on**" in verdict
    assert all(f"- {f}" in verdict for f in facts)
    page_doc = json.loads(Path(res[app.OUTPUTS.index("report")]).read_text())
    assert page_doc["decision"] == d and page_doc["label"] == doc["label"]
