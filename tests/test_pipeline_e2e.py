"""The research pipeline end to end on a synthetic dataset: manifest → extract → train → evaluate.

The dataset is 16 real + 16 fake 96x96 H.264 clips in the generic ``real/`` + ``fake/`` layout.
Fakes carry a "blending region": a checkerboard texture whose phase and brightness jump from frame
to frame (the temporal inconsistency the style path is meant to catch). There are no faces: every
frame falls back to a centre crop, which the checkpoint is told to accept (``min_face_ratio=0``).

Random backbones produce features with a tiny, nearly constant scale (e.g. style latents varying by
1e-4 around a common offset), unlike trained ones (pSp latents vary by ~1). The test checkpoint is
therefore *calibrated*: its random style codes are centred and scaled to unit spread and its content
output scaled to unit size, exact rescalings of the final layers — what trained backbones give.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from stylefusion.research import datasets as ds_mod
from stylefusion.research import evaluate as eval_mod
from stylefusion.research import extract as extract_mod
from stylefusion.research.cache import FeatureCache, load_features, read_header
from stylefusion.research.datasets import read_manifest, write_manifest
from stylefusion.research.train import train_main

REPO = Path(__file__).resolve().parents[1]
N_PER_CLASS = 16


def write_video(path: Path, fake: bool, seed: int, n_frames: int = 40, size: int = 96, fps: int = 25) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base, grad = rng.uniform(40, 200, 3), rng.uniform(-60, 60, (2, 3))
    cx, cy = rng.uniform(0.35, 0.65, 2)
    vx, vy = rng.uniform(-0.004, 0.004, 2)
    colour = rng.uniform(80, 220, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(n_frames):
            img = base + grad[0] * xx[..., None] + grad[1] * yy[..., None]
            px, py = cx + vx * t, cy + vy * t
            img[(((xx - px) / 0.22) ** 2 + ((yy - py) / 0.28) ** 2) < 1] = colour  # a "head"
            if fake:
                shift = rng.integers(0, 4)
                check = (((xx * size + shift) // 3 + (yy * size) // 3) % 2)[..., None]
                region = (((xx - px) / 0.16) ** 2 + ((yy - py) / 0.2) ** 2) < 1
                img[region] += (check[region] * 2 - 1) * 45 + rng.uniform(-25, 25)
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def calibrated_checkpoint(out: Path, sample_videos: list[str], seed: int = 0) -> None:
    """A tiny random checkpoint whose features have a trained backbone's scale (see module doc)."""
    from stylefusion.detector import StyleFusionDetector, init_checkpoint

    # 64-px crops keep the style encoder fast; the style-flow head input (Choi et al. 2024) makes the
    # frame-to-frame inconsistency learnable from 16 training videos.
    init_checkpoint("tiny", out, seed, face_size=64, min_face_ratio=0.0, style_diff=True)
    det = StyleFusionDetector.from_pretrained(out)
    feats = [det.extract_features(v) for v in sample_videos]
    style = torch.cat([f.style for f in feats])  # [N*T, L, D]
    content = torch.cat([f.content for f in feats])  # [N*C, Dc]
    k_s, k_c = 1.0 / style.std(0).mean().item(), 1.0 / content.abs().mean().item()
    state = det.state_dict()
    with torch.no_grad():
        for i, level in enumerate(det.config.style_levels):  # codes = linear(x) + latent_avg
            state[f"style.styles.{level}.linear.weight"] *= k_s
            state[f"style.styles.{level}.linear.bias"] *= k_s
            state["style.latent_avg"][level] = -style[:, i].mean(0) * k_s
        # The tiny trunk's last block is ReLU(branch1_norm(.) + norm_c(.)): scaling both is exact.
        last = max(int(k.split(".")[4]) for k in state if k.startswith("content.blocks.4.res_blocks."))
        for k in state:
            if (k.startswith(f"content.blocks.4.res_blocks.{last}.") and (".norm_c." in k or ".branch1_norm." in k)
                    and k.endswith((".weight", ".bias"))):
                state[k] *= k_c
    det.load_state_dict(state)
    det.save_pretrained(out)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on shared 2-core machines, OpenMP threads waiting for a busy core make the
    small ops here many times slower (the CLI steps get ``--threads 1`` for the same reason)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    assert train_main(["--cache", str(cache), "--out", str(trained), "--epochs", "40", "--batch-size", "4",
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


def test_trained_head_beats_chance_on_held_out_videos(pipeline):
    report = json.loads((pipeline["report"] / "report.json").read_text())
    overall = report["overall"]
    assert overall["n"] == 8 and overall["n_real"] == 4 and overall["n_fake"] == 4
    assert overall["auc"] > 0.8, overall
    assert overall["accuracy"] >= 0.75, overall
    assert set(report["per_dataset"]) == {"synthetic"}
    assert set(report["per_method"]["synthetic"]) == {"fake"}
    assert len(overall["confusion_matrix"]) == 2 and sum(map(sum, overall["confusion_matrix"])) == 8


def test_reports_and_figures_exist(pipeline):
    out = pipeline["report"]
    md = (out / "report.md").read_text()
    assert "Table 3" in md and "Table 4" in md and "| Real |" in md and "Per manipulation method" in md
    for stem in ("confusion_matrix", "temporal_style_patterns", "style_patterns", "decision_boundaries",
                 "training_curves"):
        assert (out / f"{stem}.png").stat().st_size > 5000, stem
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "plotly" in (out / f"{stem}.html").read_text()
    assert (out / "plotly.min.js").stat().st_size > 100_000  # HTML works offline
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("video_id,") and len(rows) == 9


def test_saved_checkpoint_is_complete_reloads_and_detects(pipeline):
    from stylefusion.detector import StyleFusionDetector

    det = StyleFusionDetector.from_pretrained(pipeline["trained"])
    c = det.config
    assert c.trained is True and 0.0 < c.threshold < 1.0
    t = c.training
    assert t["counts"] == {"train": {"real": 8, "fake": 8}, "val": {"real": 4, "fake": 4}}
    assert t["datasets"] == ["synthetic"] and t["best_epoch"] >= 1 and t["epochs_run"] >= t["best_epoch"]
    assert "Youden" in t["threshold_source"] and t["val_metrics"]["auc"] is not None
    assert t["recipe"]["mixup_prob"] == 0.7 and t["recipe"]["patience"] == 12
    history = json.loads((pipeline["trained"] / "training_history.json").read_text())
    assert len(history["epochs"]) == t["epochs_run"]
    assert list((pipeline["trained"] / "runs").glob("events.out.tfevents.*"))
    # The backbones are the ones that made the cache, so the cache stays valid for this checkpoint.
    base = StyleFusionDetector.from_pretrained(pipeline["ckpt"])
    for k, v in base.state_dict().items():
        if not k.startswith("fusion."):
            assert torch.equal(v, det.state_dict()[k]), k
    test_video = next(r for r in pipeline["records"] if r.split == "test" and r.label == 1)
    result = det.detect(test_video.path)
    assert result.label in ("fake", "real", "uncertain") and result.p_fake is not None


def test_rerun_reuses_every_entry(pipeline, capsys):
    assert extract_mod.main(["--manifest", str(pipeline["manifest"]), "--model", str(pipeline["ckpt"]),
                             "--cache", str(pipeline["cache"]), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "0 extracted" in out and f"{2 * N_PER_CLASS} already cached" in out


def test_train_refuses_a_model_that_did_not_make_the_cache(pipeline, tmp_path, capsys):
    from stylefusion.detector import init_checkpoint

    init_checkpoint("tiny", tmp_path / "other", seed=1, face_size=64)
    with pytest.warns(UserWarning, match="other backbones"):
        code = train_main(["--cache", str(pipeline["cache"]), "--out", str(tmp_path / "o"),
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


# ----------------------------------------------------------------------------------------------
# Interrupted and sharded extraction give the cache of one uninterrupted process
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


def test_kill_9_during_extract_then_resume_gives_the_same_cache(pipeline, tmp_path):
    records = _subset_manifest(pipeline, tmp_path / "m.csv", 8)
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "stylefusion.research.extract", "--manifest", str(tmp_path / "m.csv"),
           "--model", str(pipeline["ckpt"]), "--cache", str(cache), "--no-progress", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if len(FeatureCache(cache).files()) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode(errors="replace")
    done_before = len(FeatureCache(cache).files())
    assert 2 <= done_before < len(records)
    out = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(records) - done_before} extracted (0 failed), {done_before} already cached" in out.stdout, out.stdout
    _assert_same_cache(pipeline["cache"], cache, records)


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
