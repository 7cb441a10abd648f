"""Feature cache: atomic entries, reuse rules, invalid and corrupt entries, a full disk."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from stylefusion.research.cache import (
    CacheCorruptionWarning, CacheError, CacheWriteError, FeatureCache, FeatureKey, backbone_hash,
    entry_name, load_features, preprocessing_hash, read_header, recorded_model,
)
from stylefusion.research.datasets import ManifestRecord
from stylefusion.results import VideoFeatures

T, C, L, DC, DS = 8, 2, 1, 16, 8
KEY = FeatureKey("b" * 64, "p" * 64, {"name": "ckpt", "weights_sha256": "w" * 64}, "/models/ckpt")


def features(seed: int) -> VideoFeatures:
    g = torch.Generator().manual_seed(seed)
    return VideoFeatures(content=torch.randn(C, DC, generator=g), style=torch.randn(T, L, DS, generator=g),
                         source_indices=np.arange(T, dtype=np.int64) * 3, timestamps=np.arange(T) / 10.0,
                         boxes=np.tile(np.array([1, 2, 30, 40], np.float32), (T, 1)),
                         probs=np.linspace(0, 1, T, dtype=np.float32), fallback=np.arange(T) % 3 == 0)


def record(tmp_path: Path, name: str, label: int = 0, split: str = "train", content: bytes = b"video") -> ManifestRecord:
    video = tmp_path / "videos" / f"{name}.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    if not video.exists():
        video.write_bytes(content)
    return ManifestRecord(f"set/{name}", str(video), label, split, "set", "fake" if label else "real")


def test_write_read_round_trip(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    rec = record(tmp_path, "a", label=1)
    feats = features(0)
    path = cache.write(rec, KEY, feats)
    assert path.parent == tmp_path / "cache" / "fake" and path.name == entry_name("set/a")
    meta = read_header(path)
    assert meta["valid"] == "1" and meta["video_id"] == "set/a" and meta["label"] == "1"
    assert meta["backbone_sha256"] == KEY.backbone_sha256 and meta["model_ref"] == "/models/ckpt"
    assert meta["video_size"] == "5" and len(meta["video_sha256_headtail"]) == 64
    entry = cache.read(path)
    assert torch.equal(entry.features.content, feats.content) and torch.equal(entry.features.style, feats.style)
    for name in ("source_indices", "timestamps", "boxes", "probs", "fallback"):
        np.testing.assert_array_equal(getattr(entry.features, name), getattr(feats, name))
    assert abs(float(meta["face_found_ratio"]) - feats.face_found_ratio) < 1e-6
    assert [p.name for p in (tmp_path / "cache" / "fake").iterdir()] == [path.name]  # no temp files left
    assert recorded_model(tmp_path / "cache") == "/models/ckpt"


def test_reuse_relabel_and_recompute_rules(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    rec = record(tmp_path, "a")
    assert cache.status(rec, KEY)[0] == "compute"
    cache.write(rec, KEY, features(0))
    assert cache.status(rec, KEY)[0] == "reuse"
    # Head changes do not matter; backbones or preprocessing do.
    assert cache.status(rec, replace(KEY, checkpoint={"weights_sha256": "other"}))[0] == "reuse"
    assert cache.status(rec, replace(KEY, backbone_sha256="c" * 64))[0] == "compute"
    assert cache.status(rec, replace(KEY, preprocessing_sha256="q" * 64))[0] == "compute"
    # A new split is a relabel, not a recompute, and keeps the features.
    moved = replace(rec, split="val")
    action, path, _ = cache.status(moved, KEY)
    assert action == "relabel"
    cache.relabel(moved, path)
    assert cache.status(moved, KEY)[0] == "reuse"
    assert torch.equal(cache.read(path).features.content, features(0).content)
    # A new label moves the entry to the other folder.
    flipped = replace(moved, label=1, method="fake")
    action, path, _ = cache.status(flipped, KEY)
    assert action == "relabel"
    new = cache.relabel(flipped, path)
    assert new.parent.name == "fake" and not path.exists()
    # The video changed: same size and mtime is trusted, a new size or content is not.
    video = Path(rec.path)
    video.write_bytes(b"VIDEO")
    os.utime(video, ns=(1, 1))
    assert cache.status(flipped, KEY)[0] == "compute"
    video.write_bytes(b"video")  # the same bytes with another mtime: a copied dataset keeps its cache
    os.utime(video, ns=(2, 2))
    assert cache.status(flipped, KEY)[0] == "reuse"
    video.write_bytes(b"video, longer")
    assert cache.status(flipped, KEY)[0] == "compute"


def test_invalid_entries_are_recorded_and_skipped(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    good, bad = record(tmp_path, "good"), record(tmp_path, "bad", label=1)
    cache.write(good, KEY, features(0))
    path = cache.write_invalid(bad, KEY, "no video stream\nin file")
    meta = read_header(path)
    assert meta["valid"] == "0" and meta["reason"] == "no video stream in file"
    assert cache.status(bad, KEY)[0] == "reuse"  # not retried blindly (extract --retry-failed does)
    with pytest.warns(CacheCorruptionWarning, match="skipped 1 invalid entries"):
        data = load_features(tmp_path / "cache")
    assert [r["video_id"] for r in data.records] == ["set/good"]
    assert len(list(cache.entries(include_invalid=True))) == 2


def test_corrupt_entries_are_skipped_with_a_warning(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    recs = [record(tmp_path, f"v{i}", label=i % 2, split="train") for i in range(3)]
    for i, rec in enumerate(recs):
        cache.write(rec, KEY, features(i))
    victim = cache.path_for(recs[0].video_id, recs[0].label)
    victim.write_bytes(victim.read_bytes()[:100])  # truncated by something outside our control
    (tmp_path / "cache" / "real" / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.warns(CacheCorruptionWarning, match="unreadable cache entry"):
        data = load_features(tmp_path / "cache")
    assert len(data) == 2
    assert data.content.shape == (2, C, DC) and data.style.shape == (2, T, L, DS)
    assert data.counts() == {"train": {"real": 1, "fake": 1}}
    assert cache.status(recs[0], KEY)[0] == "compute"  # a corrupt entry is extracted again


def test_disk_full_leaves_no_entry(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    rec = record(tmp_path, "a")
    old = cache.write(rec, KEY, features(0))
    before = old.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CacheWriteError, match="disk full.*no partial entry"):
        cache.write(replace(rec, split="val"), KEY, features(1))
    with pytest.raises(CacheWriteError, match="disk full"):
        cache.write(record(tmp_path, "b"), KEY, features(2))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "cache" / "real").iterdir()) == [old.name]  # no temp, no "b"
    assert old.read_bytes() == before  # the previous entry is intact
    assert cache.status(rec, KEY)[0] == "reuse"


def test_disk_full_during_write_call(tmp_path, monkeypatch):
    """ENOSPC from write() itself (not only fsync) is handled the same way."""
    import builtins

    cache = FeatureCache(tmp_path / "cache")
    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Full(f) if ".tmp-" in str(path) and "w" in mode else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(CacheWriteError, match="disk full"):
        cache.write(record(tmp_path, "a"), KEY, features(0))
    monkeypatch.undo()
    assert list((tmp_path / "cache" / "real").iterdir()) == []


def test_load_features_refuses_mixed_or_foreign_caches(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.write(record(tmp_path, "a"), KEY, features(0))
    cache.write(record(tmp_path, "b", label=1), replace(KEY, backbone_sha256="c" * 64), features(1))
    with pytest.raises(CacheError, match="2 different backbone"):
        load_features(tmp_path / "cache")
    with pytest.warns(CacheCorruptionWarning, match="other backbones"):
        assert len(load_features(tmp_path / "cache", expect=KEY)) == 1
    with pytest.raises(CacheError, match="no entry was extracted with this model"), pytest.warns(CacheCorruptionWarning):
        load_features(tmp_path / "cache", expect=replace(KEY, backbone_sha256="d" * 64))
    with pytest.raises(CacheError, match="not found"):
        load_features(tmp_path / "nothing")
    with pytest.raises(CacheError, match="no valid cache entries in splits"):
        load_features(tmp_path / "cache", splits=["test"], expect=KEY)


def test_hashes_follow_backbones_and_preprocessing_only():
    from stylefusion.config import preset_config
    from stylefusion.detector import StyleFusionDetector

    torch.manual_seed(0)
    model = StyleFusionDetector(preset_config("tiny"))
    h = backbone_hash(model)
    with torch.no_grad():
        next(model.fusion.parameters()).add_(1.0)
    assert backbone_hash(model) == h
    with torch.no_grad():
        next(model.style.parameters()).add_(1.0)
    assert backbone_hash(model) != h
    cfg = preset_config("tiny")
    assert preprocessing_hash(cfg) == preprocessing_hash(cfg.replace(gru_hidden=99, threshold=0.3))
    assert preprocessing_hash(cfg) != preprocessing_hash(cfg.replace(num_frames=64))
