"""The research pipeline end to end on a synthetic dataset: manifest → extract → train → evaluate.

The dataset is 16 real + 16 fake 96x96 H.264 clips in the generic ``real/`` + ``fake/`` layout.
Fakes carry a "blending region": a checkerboard texture whose phase and brightness jump from frame
to frame (the temporal inconsistency the style path is meant to catch). There are no faces: each
window is judged on centre crops, which the checkpoint is told to accept (``min_person_s=0``).
The clips (1.6 s) are one window each; a second, smaller dataset of longer clips with a 2 s
``window_s`` checks that a video's windows become one entry of several segments and several
training samples of one video, and that ``train`` records the median training duration.

Random backbones produce features with a tiny, nearly constant scale (e.g. style latents varying by
1e-4 around a common offset), unlike trained ones (pSp latents vary by ~1). The test checkpoint is
therefore *calibrated*: its random style codes are centred and scaled to unit spread and its content
output scaled to unit size, exact rescalings of the final layers — what trained backbones give.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stylefusion.research import datasets as ds_mod
from stylefusion.research import evaluate as eval_mod
from stylefusion.research import extract as extract_mod
from stylefusion.research import train as train_mod
from stylefusion.research.cache import CacheError, FeatureCache, read_header
from stylefusion.research.data import load_features
from stylefusion.research.manifest import read_manifest, write_manifest
from trainkit import calibrated_checkpoint
from videogen import encode_frames

REPO = Path(__file__).resolve().parents[1]
N_PER_CLASS = 16


def synthetic_frames(fake: bool, seed: int, n_frames: int = 40, size: int = 96):
    """RGB frames of a moving "head"; fakes add a flickering checkerboard "blending region"."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base, grad = rng.uniform(40, 200, 3), rng.uniform(-60, 60, (2, 3))
    cx, cy = rng.uniform(0.35, 0.65, 2)
    vx, vy = rng.uniform(-0.004, 0.004, 2)
    colour = rng.uniform(80, 220, 3)
    for t in range(n_frames):
        img = base + grad[0] * xx[..., None] + grad[1] * yy[..., None]
        px, py = cx + vx * t, cy + vy * t
        img[(((xx - px) / 0.22) ** 2 + ((yy - py) / 0.28) ** 2) < 1] = colour  # a "head"
        if fake:
            shift = rng.integers(0, 4)
            check = (((xx * size + shift) // 3 + (yy * size) // 3) % 2)[..., None]
            region = (((xx - px) / 0.16) ** 2 + ((yy - py) / 0.2) ** 2) < 1
            img[region] += (check[region] * 2 - 1) * 45 + rng.uniform(-25, 25)
        yield np.clip(img, 0, 255).astype(np.uint8)


def write_video(path: Path, fake: bool, seed: int, n_frames: int = 40, size: int = 96, fps: int = 25) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # libx264's own defaults (crf 23, preset medium), as these clips were always encoded
    encode_frames(path, synthetic_frames(fake, seed, n_frames, size), width=size, height=size, fps=fps,
                  crf="23", options={"preset": "medium"})


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, one_thread):
    """Run the four steps once through their CLI entry points; the tests inspect the results."""
    work = tmp_path_factory.mktemp("pipeline")
    data = work / "data"
    for i in range(N_PER_CLASS):
        write_video(data / "real" / f"r{i:02d}.mp4", False, 100 + i)
        write_video(data / "fake" / f"f{i:02d}.mp4", True, 200 + i)
    manifest = work / "manifest.csv"
    assert ds_mod.main(["--dataset", "folders", "--root", str(data), "--out", str(manifest),
                        "--ratios", "0.5,0.25,0.25", "--name", "synthetic"]) == 0
    records = read_manifest(manifest)
    train_real = [r.path for r in records if r.split == "train" and r.label == 0][:2]
    train_fake = [r.path for r in records if r.split == "train" and r.label == 1][:2]
    ckpt = work / "ckpt"
    calibrated_checkpoint(ckpt, train_real + train_fake)
    cache = work / "cache"
    timings = {}
    t0 = time.perf_counter()
    assert extract_mod.main(["--manifest", str(manifest), "--model", str(ckpt), "--cache", str(cache),
                             "--no-progress", "--threads", "1"]) == 0
    timings["extract"] = time.perf_counter() - t0
    trained = work / "trained"
    t0 = time.perf_counter()
    # Fresh head on the backbones the cache records (no --model): the default path of `train`.
    assert train_mod.main(["--cache", str(cache), "--out", str(trained), "--epochs", "40", "--batch-size", "4",
                           "--lr", "3e-3", "--seed", "0", "--threads", "1"]) == 0
    timings["train"] = time.perf_counter() - t0
    report = work / "report"
    t0 = time.perf_counter()
    assert eval_mod.main(["--model", str(trained), "--cache", str(cache), "--split", "test",
                          "--report", str(report)]) == 0
    timings["evaluate"] = time.perf_counter() - t0
    print("pipeline timings", {k: round(v, 1) for k, v in timings.items()})
    return {"work": work, "manifest": manifest, "records": records, "ckpt": ckpt, "cache": cache,
            "trained": trained, "report": report}


def test_cache_has_one_valid_entry_per_video(pipeline):
    cache = FeatureCache(pipeline["cache"])
    files = cache.files()
    assert len(files) == 2 * N_PER_CLASS
    assert sorted(p.parent.name for p in files).count("fake") == N_PER_CLASS
    metas = [read_header(p) for p in files]
    assert all(m["valid"] == "1" and m["face_found_ratio"] == "0.000000" for m in metas)
    assert {m["video_id"] for m in metas} == {r.video_id for r in pipeline["records"]}
    # 1.6-second clips, one 15-second window each: one segment, window 0, durations recorded.
    assert all(m["segments"] == "1" and m["num_windows"] == "1" and m["window_s"] == "15.0" for m in metas)
    assert {round(float(m["duration"]), 3) for m in metas} == {1.6}
    data = load_features(pipeline["cache"])
    assert len(data) == data.num_videos == 2 * N_PER_CLASS and data.window.tolist() == [0] * len(data)


def test_trained_head_beats_chance_on_held_out_videos(pipeline):
    report = json.loads((pipeline["report"] / "report.json").read_text())
    overall = report["overall"]
    assert overall["n"] == 8 and overall["n_real"] == 4 and overall["n_fake"] == 4
    assert overall["auc"] > 0.8, overall
    # The threshold keeps validation false positives at 5% or less (fpr:0.05): at most one of the
    # four held-out reals is called fake, and most fakes are still caught.
    (tn, fp), (fn, tp) = overall["confusion_matrix"]
    assert fp <= 1 and tp >= 2, overall
    # The report says how honest the answers are (the detector's rule on every video).
    assert report["calibration"]["calibrated"] and report["calibration"]["segments"]["n"] == 8
    assert set(report["risk_coverage"]["curves"]) == {"calibrated confidence", "in-domain first"}
    d = report["decision"]
    assert d["videos"] == 8 and sum(d["not_answered"].values()) == round(8 * (1 - d["answered"]))
    assert set(report["per_dataset"]) == {"synthetic"}
    assert set(report["per_method"]["synthetic"]) == {"fake"}
    assert len(overall["confusion_matrix"]) == 2 and sum(map(sum, overall["confusion_matrix"])) == 8


def test_reports_and_figures_exist(pipeline):
    out = pipeline["report"]
    md = (out / "report.md").read_text()
    assert "Table 3" in md and "Table 4" in md and "| Real |" in md and "Per manipulation method" in md
    for stem in ("confusion_matrix", "temporal_style_patterns", "style_patterns", "decision_boundaries",
                 "training_curves", "reliability_diagram", "risk_coverage"):
        assert (out / f"{stem}.png").stat().st_size > 5000, stem
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "plotly" in (out / f"{stem}.html").read_text()
    assert (out / "plotly.min.js").stat().st_size > 100_000  # HTML works offline
    # report.json and report.md are written once, after the figures they list; nothing half-written.
    assert "training_curves.png" in json.loads((out / "report.json").read_text())["figures"]
    assert "[training_curves.png](training_curves.png)" in md
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("video_id,") and len(rows) == 9  # one row per video
    assert rows[0].endswith(",segments,window,person") and all(r.split(",")[-3] == "1" for r in rows[1:])
    assert len((out / "segments.csv").read_text().splitlines()) == 9  # one segment each


def test_saved_checkpoint_is_complete_reloads_and_detects(pipeline):
    from stylefusion.detector import StyleFusionDetector

    det = StyleFusionDetector.from_pretrained(pipeline["trained"])
    c = det.config
    assert c.trained is True and 0.0 < c.threshold < 1.0
    t = c.training
    assert t.counts == {"train": {"real": 8, "fake": 8}, "val": {"real": 4, "fake": 4}}
    assert t.datasets == ["synthetic"] and t.best_epoch >= 1 and t.epochs_run >= t.best_epoch
    assert "false-positive rate at most 5% on val (4 real videos, 4 fake)" == t.threshold_source
    assert t.val_metrics["auc"] is not None
    # Calibrated on val: temperature, the rates at the threshold, the conformal band, the
    # out-of-domain statistics (as tensors in the weights), the quality limits of its data.
    cal = c.calibration
    assert cal is not None and cal.val_fpr <= 0.05 and cal.val_videos == {"real": 4, "fake": 4}
    assert 0.05 <= cal.temperature <= 20 and cal.conformal_n == 8 and cal.coverage_val >= 0.9
    assert det.ood is not None and cal.ood_train_segments == 16
    assert cal.quality_source.startswith("documented defaults: 16 measured training segments are too few")
    assert t.recipe["mixup_prob"] == 0.7 and t.recipe["patience"] == 12
    assert t.history_file == "training_history.json"
    # window_s: the median duration of the training videos (all 1.6 s), recorded and explained.
    assert c.window_s == pytest.approx(1.6) and t.recipe["window_s"] == c.window_s
    assert "median duration of 16 of 16 training videos" in t.recipe["window_s_source"]
    assert "other windows" not in t.recipe["window_s_source"]  # 1.6 s cuts them as 15 s did: one window
    history = json.loads((pipeline["trained"] / t.history_file).read_text())
    assert len(history["epochs"]) == t.epochs_run and history["best_epoch"] == t.best_epoch
    assert list((pipeline["trained"] / "runs").glob("events.out.tfevents.*"))
    # The backbones are the ones that made the cache, so the cache stays valid for this checkpoint.
    base = StyleFusionDetector.from_pretrained(pipeline["ckpt"])
    for k, v in base.state_dict().items():
        if not k.startswith("fusion."):
            assert torch.equal(v, det.state_dict()[k]), k
    test_video = next(r for r in pipeline["records"] if r.split == "test" and r.label == 1)
    result = det.detect(test_video.path)
    assert result.decision.calibrated and result.decision.p_fake is not None
    if result.label == "unsupported":  # outside the training data's quality percentiles: no p_fake shown
        assert result.p_fake is None and result.decision.quality_reasons
    else:
        assert result.label in ("fake", "real", "uncertain") and result.p_fake == result.decision.p_fake


def test_rerun_reuses_every_entry(pipeline, capsys):
    assert extract_mod.main(["--manifest", str(pipeline["manifest"]), "--model", str(pipeline["ckpt"]),
                             "--cache", str(pipeline["cache"]), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "0 extracted" in out and f"{2 * N_PER_CLASS} already cached" in out


def test_train_refuses_a_model_that_did_not_make_the_cache(pipeline, tmp_path, capsys):
    from stylefusion.detector import init_checkpoint

    init_checkpoint("tiny", tmp_path / "other", seed=1, face_size=64)
    with pytest.warns(UserWarning, match="other backbones"):
        code = train_mod.main(["--cache", str(pipeline["cache"]), "--out", str(tmp_path / "o"),
                               "--model", str(tmp_path / "other"), "--epochs", "1"])
    assert code == 2
    assert "no entry was extracted with this model" in capsys.readouterr().err


def test_failed_video_becomes_an_invalid_entry(pipeline, tmp_path):
    from stylefusion.detector import StyleFusionDetector

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(4096))
    good = pipeline["records"][0]
    records = [ds_mod.ManifestRecord("x/broken", str(broken), 1, "test", "x", "fake"), good]
    det = StyleFusionDetector.from_pretrained(pipeline["ckpt"])
    summary = extract_mod.extract(records, det, tmp_path / "cache", progress=False)
    assert summary.failed == 1 and summary.extracted == 2
    meta = read_header(FeatureCache(tmp_path / "cache").path_for("x/broken", 1))
    assert meta["valid"] == "0" and meta["reason"]
    with pytest.warns(UserWarning, match="1 invalid"):
        assert len(load_features(tmp_path / "cache")) == 1

    # Nobody visible long enough (no face, and the default needs a person on screen for 1 s):
    # no segment, recorded as a failed entry with the reason.
    det.config = det.config.replace(min_person_s=1.0)
    summary = extract_mod.extract([good], det, tmp_path / "faces", progress=False)
    assert summary.failed == 1
    meta = read_header(FeatureCache(tmp_path / "faces").path_for(good.video_id, good.label))
    assert meta["valid"] == "0" and meta["reason"].startswith("no person visible long enough to judge")
    assert meta["segments"] == "0" and float(meta["duration"]) == pytest.approx(1.6)


# ----------------------------------------------------------------------------------------------
# Videos longer than a window: several segments per entry, samples of one video, window_s
# ----------------------------------------------------------------------------------------------
def test_windows_of_a_long_video_are_one_entry_of_segments_and_train_records_the_median(pipeline, tmp_path):
    from stylefusion.detector import StyleFusionDetector

    # The calibrated backbones with 2-second windows: a 2.4 s or 3.2 s clip is 2 windows.
    ckpt = tmp_path / "ckpt2s"
    det = StyleFusionDetector.from_pretrained(pipeline["ckpt"])
    det.config = det.config.replace(window_s=2.0)
    det.save_pretrained(ckpt)
    plan = [("train", 0, 60), ("train", 1, 80), ("val", 0, 60), ("val", 1, 60)]  # frames at 25 fps
    records = []
    for i, (split, label, frames) in enumerate(plan):
        path = tmp_path / "videos" / f"w{i}.mp4"
        write_video(path, bool(label), 300 + i, n_frames=frames)
        records.append(ds_mod.ManifestRecord(f"long/{i}", str(path), label, split, "synthetic",
                                             "fake" if label else "real"))
    write_manifest(records, tmp_path / "m.csv")
    cache = tmp_path / "cache"
    assert extract_mod.main(["--manifest", str(tmp_path / "m.csv"), "--model", str(ckpt), "--cache", str(cache),
                             "--no-progress", "--threads", "1"]) == 0
    store = FeatureCache(cache)
    for r, (_, _, frames) in zip(records, plan):
        entry = store.read(store.path_for(r.video_id, r.label))
        assert entry.valid and len(entry.features) == 2, r.video_id  # ONE entry, S == 2 segments
        assert entry.features.window.tolist() == [0, 1]
        # Each segment records its person (face-less windows: centre crops, a new id per window).
        assert entry.features.person.shape == (2,) and (entry.features.person >= 0).all()
        assert entry.header.duration == pytest.approx(frames / 25) and entry.header.num_windows == 2
        assert entry.header.window_s == 2.0 and entry.header.segments == 2
        first, second = entry.features[0], entry.features[1]  # each segment samples its own stretch
        assert first.timestamps.max() < 0.5 * frames / 25 <= second.timestamps.min() + 1e-6
    data = load_features(cache)
    assert (len(data), data.num_videos) == (8, 4)
    for v, r in enumerate(data.records):  # 2 samples per video, pointing at that video
        mine = data.video_index == v
        assert mine.sum() == 2 and sorted(data.window[mine].tolist()) == [0, 1]
        assert data.labels[mine].tolist() == [float(r["label"])] * 2
    trained = tmp_path / "trained"
    assert train_mod.main(["--cache", str(cache), "--out", str(trained), "--epochs", "2", "--batch-size", "4",
                           "--seed", "0", "--threads", "1"]) == 0
    c = StyleFusionDetector.from_pretrained(trained).config
    median = float(np.median([60 / 25, 80 / 25]))  # the TRAINING videos' durations: 2.4 and 3.2 s
    assert c.window_s == pytest.approx(median) and c.training.recipe["window_s"] == c.window_s
    source = c.training.recipe["window_s_source"]
    assert "median duration of 2 of 2 training videos" in source
    assert "1 of them are cut into other windows" in source  # the 2.4 s video is one 2.8 s window
    assert c.training.counts == {"train": {"real": 1, "fake": 1}, "val": {"real": 1, "fake": 1}}
    assert c.training.features["segments"] == {"train": {"real": 2, "fake": 2}, "val": {"real": 2, "fake": 2}}
    assert c.training.val_metrics["n"] == 2  # per video (of 4 val segments)
    # Evaluation reads only what the trained checkpoint would judge: its 2.8 s windows cut the val
    # videos (2.4 s) as one window, the cache holds two; re-extraction with it recomputes only the
    # videos its window_s cuts otherwise, and then they are evaluated, one segment each.
    with pytest.raises(CacheError, match="no entry was cut into the windows"), \
            pytest.warns(UserWarning, match="2 videos cut into other windows"):
        eval_mod.evaluate(str(trained), cache, split="val", figures=False)
    summary = extract_mod.extract(records, str(trained), cache, progress=False)
    assert (summary.extracted, summary.reused) == (3, 1)
    assert [len(store.read(store.path_for(r.video_id, r.label)).features) for r in records] == [1, 2, 1, 1]
    report = eval_mod.evaluate(str(trained), cache, split="val", figures=False)
    assert (report["overall"]["n"], report["segments"], report["skipped_videos"]["other_windows"]) == (2, 2, 0)


# ----------------------------------------------------------------------------------------------
# Sharded extraction gives the cache of one process (kill -9 and resume: test_interrupts.py)
# ----------------------------------------------------------------------------------------------
def _subset_manifest(pipeline, path: Path, n: int) -> list:
    records = sorted(pipeline["records"], key=lambda r: r.video_id)[::max(1, len(pipeline["records"]) // n)][:n]
    write_manifest(records, path)
    return records


def _assert_same_cache(reference: Path, other: Path, records) -> None:
    ref, oth = FeatureCache(reference), FeatureCache(other)
    assert len(oth.files()) == len(records)
    for r in records:
        a, b = ref.read(ref.path_for(r.video_id, r.label)), oth.read(oth.path_for(r.video_id, r.label))
        assert b is not None and b.valid, r.video_id
        drop = {"created"}
        assert {k: v for k, v in a.meta.items() if k not in drop} == {k: v for k, v in b.meta.items() if k not in drop}
        # Thread counts differ between processes: allow float reassociation noise, nothing more.
        torch.testing.assert_close(a.features.content, b.features.content, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a.features.style, b.features.style, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(a.features.source_indices, b.features.source_indices)
    leftovers = [p for p in Path(other).rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_torchrun_sharding_equals_one_process(pipeline, tmp_path):
    pytest.importorskip("torch.distributed.run")
    records = _subset_manifest(pipeline, tmp_path / "m.csv", 6)
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "stylefusion.research.extract", "--manifest", str(tmp_path / "m.csv"),
           "--model", str(pipeline["ckpt"]), "--cache", str(cache), "--no-progress"]
    out = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("rank ")]
    assert sorted(line.split(":")[0] for line in lines) == ["rank 0/2", "rank 1/2"], out.stdout
    # Every video extracted exactly once across the two ranks.
    assert sum(int(line.split("— ")[1].split(" extracted")[0]) for line in lines) == len(records)
    _assert_same_cache(pipeline["cache"], cache, records)
