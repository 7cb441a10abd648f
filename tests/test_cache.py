"""Feature cache: atomic entries of stacked segments, reuse rules (window cuts included), invalid,
corrupt and old-layout entries, a full disk."""

from __future__ import annotations

import dataclasses
import errno
import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stylefusion.config import FEATURE_FIELDS, StyleFusionConfig, preset_config
from stylefusion.errors import ConfigError
from stylefusion.research.cache import (
    CACHE_FORMAT, Action, CacheCorruptionWarning, CacheError, CacheWriteError, EntryHeader, FeatureCache,
    FeatureKey, VideoSegments, entry_name, preprocessing_hash, read_header, recorded_model, window_count,
    windows_match,
)
from stylefusion.research.data import load_features
from stylefusion.research.manifest import ManifestRecord, counts
from stylefusion.results import VideoFeatures

T, C, L, DC, DS = 8, 2, 1, 16, 8
KEY = FeatureKey("b" * 64, "p" * 64, {"name": "ckpt", "weights_sha256": "w" * 64}, "/models/ckpt")


def features(seed: int, window: int = 0, person: int = 0) -> VideoFeatures:
    g = torch.Generator().manual_seed(seed)
    return VideoFeatures(content=torch.randn(C, DC, generator=g), style=torch.randn(T, L, DS, generator=g),
                         source_indices=np.arange(T, dtype=np.int64) * 3 + 100 * window,
                         timestamps=np.arange(T) / 10.0 + 10 * window,
                         boxes=np.tile(np.array([1, 2, 30, 40], np.float32), (T, 1)),
                         probs=np.linspace(0, 1, T, dtype=np.float32), fallback=np.arange(T) % 3 == 0,
                         window=window, person=person)


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
    assert isinstance(entry.features, VideoSegments) and len(entry.features) == 1 and meta["segments"] == "1"
    assert entry.features.content.shape == (1, C, DC) and entry.features.style.shape == (1, T, L, DS)
    got = entry.features[0]
    assert torch.equal(got.content, feats.content) and torch.equal(got.style, feats.style)
    for name in ("source_indices", "timestamps", "boxes", "probs", "fallback"):
        np.testing.assert_array_equal(getattr(got, name), getattr(feats, name))
    assert (got.window, got.person) == (0, 0)
    assert abs(float(meta["face_found_ratio"]) - feats.face_found_ratio) < 1e-6
    assert [p.name for p in (tmp_path / "cache" / "fake").iterdir()] == [path.name]  # no temp files left
    assert recorded_model(tmp_path / "cache") == "/models/ckpt"


def test_an_entry_stacks_a_videos_segments_with_their_window_and_person(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    rec = record(tmp_path, "long", label=1)
    segs = [features(0, window=0, person=0), features(1, window=2, person=3)]
    segs[1].quality = np.array([80.0, 0.3, 120.0], np.float32)  # face px, sharpness, brightness
    path = cache.write(rec, KEY, segs, duration=31.5, num_windows=3)
    meta = read_header(path)
    assert meta["format"] == CACHE_FORMAT == "stylefusion-feature-cache/2"
    assert (meta["segments"], meta["duration"], meta["num_windows"], meta["window_s"]) == ("2", "31.5", "3", "15.0")
    from safetensors.torch import load_file

    t = load_file(str(path))
    assert {k: tuple(v.shape) for k, v in t.items()} == {
        "content": (2, C, DC), "style": (2, T, L, DS), "source_indices": (2, T), "timestamps": (2, T),
        "boxes": (2, T, 4), "probs": (2, T), "fallback": (2, T), "window": (2,), "person": (2,),
        "quality": (2, 3)}
    assert torch.isnan(t["quality"][0]).all()  # not measured: NaN
    np.testing.assert_array_equal(t["quality"][1].numpy(), segs[1].quality)
    entry = cache.read(path)
    assert entry.header.duration == 31.5 and entry.header.segments == 2 and entry.header.num_windows == 3
    assert entry.features.window.tolist() == [0, 2] and entry.features.person.tolist() == [0, 3]
    for got, want in zip(entry.features, segs):
        assert torch.equal(got.content, want.content) and torch.equal(got.style, want.style)
        np.testing.assert_array_equal(got.source_indices, want.source_indices)
        assert (got.window, got.person) == (want.window, want.person)
        assert (got.quality is None) == (want.quality is None)
    # load_features: one sample per segment, each pointing at its video.
    cache.write(record(tmp_path, "short"), KEY, [features(2)], duration=4.0, num_windows=1)
    data = load_features(tmp_path / "cache")
    assert len(data) == 3 and data.num_videos == 2
    long_v = [r["video_id"] for r in data.records].index("set/long")
    assert (data.video_index == long_v).sum() == 2 and data.segments_per_video.tolist()[long_v] == 2
    assert data.labels[data.video_index == long_v].tolist() == [1.0, 1.0]
    assert sorted(data.window[data.video_index == long_v].tolist()) == [0, 2]
    assert data.video_scores(np.array([0.1, 0.7, 0.3])).shape == (2,)
    assert data.quality.shape == (3, 3) and int(torch.isfinite(data.quality).all(dim=1).sum()) == 1
    # An entry written before the quality tensor existed (format 2 without it) stays valid.
    from safetensors.torch import save_file

    old = {k: v for k, v in t.items() if k != "quality"}
    save_file(old, str(path), metadata=meta)
    assert torch.isnan(torch.as_tensor(cache.read(path).features.quality)).all()
    assert data.split("train").num_videos == 2 and len(data.videos([long_v])) == 2
    with pytest.raises(ValueError, match="no segment"):
        cache.write(rec, KEY, [])


def test_entries_of_the_old_layout_are_recomputed_not_misread(tmp_path):
    from safetensors.torch import save_file

    cache = FeatureCache(tmp_path / "cache")
    rec = record(tmp_path, "a")
    path = cache.write(rec, KEY, features(0))
    meta = {**read_header(path), "format": "stylefusion-feature-cache/1"}
    f = features(0)  # layout 1: one [T] track per video
    save_file({"content": f.content, "style": f.style, "fallback": torch.from_numpy(f.fallback)}, str(path),
              metadata=meta)
    assert EntryHeader.read(path) is None
    assert cache.plan(rec, KEY).action is Action.COMPUTE
    with pytest.warns(CacheCorruptionWarning, match="1 entries of an older cache layout"), \
            pytest.raises(CacheError, match="no valid cache entries"):
        load_features(tmp_path / "cache")
    cache.write(rec, KEY, features(0))
    assert cache.plan(rec, KEY).action is Action.REUSE


def test_window_cuts_decide_reuse_through_the_recorded_duration(tmp_path):
    assert [window_count(d, 15.0) for d in (0.5, 15.0, 15.02, 15.2, 31.0)] == [1, 1, None, 2, 3]
    assert window_count(None, 15.0) is None and window_count(10.0, float("inf")) == 1
    # A 20 s video cut at 15 s is 2 windows: 12 s cuts it the same, 9 s does not.
    assert windows_match(20.0, 15.0, None, 2, 12.0, None)
    assert not windows_match(20.0, 15.0, None, 2, 9.0, None)
    assert not windows_match(None, 15.0, None, None, 12.0, None)  # unknown duration: only the same window_s
    assert windows_match(None, 15.0, 8, None, 15.0, None)
    # max_windows matters only when it leaves windows out.
    assert windows_match(20.0, 15.0, 32, 2, 15.0, 8) and not windows_match(20.0, 15.0, 32, 2, 15.0, 1)
    # A checkpoint whose window_s is a video's duration cuts it as one window, as 15 s does.
    assert windows_match(12.3456, 15.0, None, 1, 12.3456, None)

    cache = FeatureCache(tmp_path / "cache")
    rec, blind = record(tmp_path, "a"), record(tmp_path, "b")
    key = replace(KEY, max_windows=32)
    cache.write(rec, key, [features(0), features(1, window=1)], duration=20.0, num_windows=2)
    cache.write(blind, key, [features(2)])  # no duration recorded
    assert cache.plan(rec, replace(key, window_s=12.0)).action is Action.REUSE
    assert cache.plan(rec, replace(key, window_s=9.0)).action is Action.COMPUTE
    assert cache.plan(rec, replace(key, max_windows=2)).action is Action.REUSE
    assert cache.plan(rec, replace(key, max_windows=1)).action is Action.COMPUTE
    assert cache.plan(blind, key).action is Action.REUSE
    assert cache.plan(blind, replace(key, window_s=12.0)).action is Action.COMPUTE
    # Reading for a model with another window_s: the videos it cuts differently are left out.
    with pytest.warns(CacheCorruptionWarning, match="1 videos cut into other windows"):
        data = load_features(tmp_path / "cache", expect=replace(KEY, window_s=12.0))
    assert [r["video_id"] for r in data.records] == ["set/a"] and len(data) == 2
    with pytest.raises(CacheError, match="no entry was cut into the windows"), pytest.warns(CacheCorruptionWarning):
        load_features(tmp_path / "cache", expect=replace(KEY, window_s=5.0))


def test_reuse_relabel_and_recompute_rules(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    rec = record(tmp_path, "a")
    assert cache.plan(rec, KEY).action is Action.COMPUTE
    cache.write(rec, KEY, features(0))
    assert cache.plan(rec, KEY).action is Action.REUSE
    # Head changes do not matter; backbones or preprocessing do.
    assert cache.plan(rec, replace(KEY, checkpoint={"weights_sha256": "other"})).action is Action.REUSE
    assert cache.plan(rec, replace(KEY, backbone_sha256="c" * 64)).action is Action.COMPUTE
    assert cache.plan(rec, replace(KEY, preprocessing_sha256="q" * 64)).action is Action.COMPUTE
    # A new split is a relabel, not a recompute, and keeps the features.
    moved = replace(rec, split="val")
    plan = cache.plan(moved, KEY)
    assert plan.action is Action.RELABEL and plan.header.record == rec
    cache.relabel(moved, plan.path)
    path = plan.path
    assert cache.plan(moved, KEY).action is Action.REUSE
    assert torch.equal(cache.read(path).features[0].content, features(0).content)
    # A new label moves the entry to the other folder.
    flipped = replace(moved, label=1, method="fake")
    plan = cache.plan(flipped, KEY)
    assert plan.action is Action.RELABEL
    path = plan.path
    new = cache.relabel(flipped, path)
    assert new.parent.name == "fake" and not path.exists()
    # The video changed: same size and mtime is trusted, a new size or content is not.
    video = Path(rec.path)
    video.write_bytes(b"VIDEO")
    os.utime(video, ns=(1, 1))
    assert cache.plan(flipped, KEY).action is Action.COMPUTE
    video.write_bytes(b"video")  # the same bytes with another mtime: a copied dataset keeps its cache
    os.utime(video, ns=(2, 2))
    assert cache.plan(flipped, KEY).action is Action.REUSE
    video.write_bytes(b"video, longer")
    assert cache.plan(flipped, KEY).action is Action.COMPUTE


def test_invalid_entries_are_recorded_and_skipped(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    good, bad = record(tmp_path, "good"), record(tmp_path, "bad", label=1)
    cache.write(good, KEY, features(0))
    path = cache.write_invalid(bad, KEY, "no video stream\nin file")
    meta = read_header(path)
    assert meta["valid"] == "0" and meta["reason"] == "no video stream in file"
    assert cache.plan(bad, KEY).action is Action.REUSE  # not retried blindly (extract --retry-failed does)
    assert cache.plan(bad, KEY, retry_failed=True).action is Action.COMPUTE
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
    assert counts(data.records) == {"train": {"real": 1, "fake": 1}}
    assert counts(data.labels) == {"real": 1, "fake": 1}
    assert cache.plan(recs[0], KEY).action is Action.COMPUTE  # a corrupt entry is extracted again


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
    assert cache.plan(rec, KEY).action is Action.REUSE


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
        return Full(f) if str(path).endswith(".tmp") and "w" in mode else f

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


def test_entry_header_round_trips_its_metadata(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    rec = record(tmp_path, "a", label=1)
    path = cache.write(rec, KEY, features(0))
    meta = read_header(path)
    header = EntryHeader.from_metadata(meta)
    assert header.valid and header.record == rec and header.fingerprint["video_size"] == "5"
    assert header.checkpoint == KEY.checkpoint and KEY.matches(header)
    assert header.to_metadata() == meta
    bad = cache.write_invalid(record(tmp_path, "b"), KEY, "broken")
    failed = EntryHeader.read(bad)
    assert not failed.valid and failed.reason == "broken" and failed.face_found_ratio is None
    assert failed.to_metadata() == read_header(bad)
    with pytest.raises(ValueError, match="valid="):
        EntryHeader.from_metadata({**meta, "valid": "yes"})
    with pytest.raises(ValueError, match="lacks 'split'"):
        EntryHeader.from_metadata({k: v for k, v in meta.items() if k != "split"})


def test_feature_key_from_model_takes_the_backbone_digest_of_its_identity():
    cfg = preset_config("tiny")
    identity = {"name": "ckpt", "weights_sha256": "w" * 64, "backbone_sha256": "k" * 64}
    key = FeatureKey.from_model(SimpleNamespace(config=cfg, identity=lambda: dict(identity)), "/models/ckpt")
    assert key == FeatureKey("k" * 64, preprocessing_hash(cfg))  # where it came from is not compared
    assert key.checkpoint == identity and key.model_ref == "/models/ckpt"
    retrained = SimpleNamespace(config=cfg.replace(gru_hidden=99, threshold=0.3),
                                identity=lambda: {**identity, "weights_sha256": "x" * 64})
    assert FeatureKey.from_model(retrained) == key  # a new head keeps the cache
    assert FeatureKey.from_config(cfg, "c" * 64) != key  # other backbones do not


def test_feature_key_of_a_detector_follows_its_backbones_only():
    from stylefusion.detector import StyleFusionDetector

    torch.manual_seed(0)
    model = StyleFusionDetector(preset_config("tiny"))
    key = FeatureKey.from_model(model)

    def edited(module: str) -> StyleFusionDetector:
        other = StyleFusionDetector(model.config)
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            next(getattr(other, module).parameters()).add_(1.0)
        return other

    assert key.backbone_sha256 == model.identity()["backbone_sha256"]
    assert FeatureKey.from_model(edited("fusion")) == key
    assert FeatureKey.from_model(edited("style")) != key
    assert FeatureKey.from_model(edited("content")) != key


# ----------------------------------------------------------------------------------------------
# Every feature field is in the reuse fingerprint, and nothing else is
# ----------------------------------------------------------------------------------------------
BACKBONE = "b" * 64
#: Other values for fields bound by a rule across fields (num_frames a multiple of clip_len,
#: face_size a power of two, attn_dim a multiple of transformer_heads), where the generic
#: +1 / -1 makes an invalid config.
OVERRIDES = {
    "threshold_policy": lambda c: "youden",
    "num_frames": lambda c: c.num_frames + c.clip_len,
    "clip_len": lambda c: c.clip_len // 2,
    "face_size": lambda c: c.face_size // 2,
    "attn_dim": lambda c: c.attn_dim + c.transformer_heads,
}
#: Declared fields that do not change features. format_version has one valid value and trained
#: needs a training record, so neither has a generic other value.
NON_FEATURE_FIELDS = tuple(f.name for f in dataclasses.fields(StyleFusionConfig)
                           if f.metadata.get("features") is False and f.name not in ("format_version", "trained"))


def _other_scalars(value):
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [round(value + 0.05, 6), round(value - 0.05, 6)]
    if isinstance(value, str):
        return [value + "-changed"]
    return []


def other_config(config: StyleFusionConfig, name: str) -> StyleFusionConfig:
    """``config`` with field ``name`` changed to another value that still makes a valid config."""
    value = getattr(config, name)
    if name in OVERRIDES:
        candidates = [OVERRIDES[name](config)]
    elif isinstance(value, tuple):  # change one element
        candidates = [(v, *value[1:]) for v in _other_scalars(value[0])]
    else:
        candidates = _other_scalars(value)
    for candidate in candidates:
        try:
            changed = config.replace(**{name: candidate})
        except ConfigError:
            continue
        assert getattr(changed, name) != value
        return changed
    raise AssertionError(f"no other valid value for config {name}={value!r} (tried {candidates}); add one to OVERRIDES")


@pytest.fixture(scope="module")
def cached_entry(tmp_path_factory):
    """A cache holding one entry made with the tiny preset's preprocessing."""
    tmp = tmp_path_factory.mktemp("feature_fields")
    base = preset_config("tiny")
    cache, rec = FeatureCache(tmp / "cache"), record(tmp, "a")
    cache.write(rec, FeatureKey.from_config(base, BACKBONE), features(0))
    assert cache.plan(rec, FeatureKey.from_config(base, BACKBONE)).action is Action.REUSE
    return cache, rec, base


def test_the_front_end_settings_are_feature_fields():
    """Every setting that changes which frames or crops come out is in the cache's key (issue 21):
    the scan, the tracking and re-identification, the minimum time on screen."""
    assert {"max_frame_side", "scan_fps", "scan_max_side", "scan_max_frames", "track_max_gap",
            "reid_min_similarity", "min_person_s", "shot_cut_threshold"} <= set(FEATURE_FIELDS)


@pytest.mark.parametrize("name", FEATURE_FIELDS)
def test_a_changed_feature_field_makes_the_entry_stale(cached_entry, name):
    cache, rec, base = cached_entry
    changed = other_config(base, name)
    if name == "window_s":  # compared per video through its cut (the entry records no duration here)
        assert preprocessing_hash(changed) == preprocessing_hash(base)
    else:
        assert preprocessing_hash(changed) != preprocessing_hash(base)
    assert cache.plan(rec, FeatureKey.from_config(changed, BACKBONE)).action is Action.COMPUTE


@pytest.mark.parametrize("name", NON_FEATURE_FIELDS)
def test_a_changed_head_or_decision_field_keeps_the_entry(cached_entry, name):
    cache, rec, base = cached_entry
    changed = other_config(base, name)
    assert cache.plan(rec, FeatureKey.from_config(changed, BACKBONE)).action is Action.REUSE


def test_an_entry_of_another_precision_is_recomputed_and_a_cache_never_mixes_them(tmp_path):
    """``--precision auto`` is bf16 on one CPU kind and fp32 on the other: a run resumed on the other
    kind recomputes the entry, and a folder holding both is refused when read for training."""
    cache = FeatureCache(tmp_path / "cache")
    bf16 = replace(KEY, checkpoint={**KEY.checkpoint, "precision": "bf16"})
    fp32 = replace(KEY, checkpoint={**KEY.checkpoint, "precision": "fp32"})
    a, b = record(tmp_path, "a"), record(tmp_path, "b")
    cache.write(a, bf16, features(0))
    assert cache.plan(a, bf16).action is Action.REUSE
    assert cache.plan(a, fp32).action is Action.COMPUTE
    cache.write(b, fp32, features(1))
    with pytest.raises(CacheError, match="bf16 and fp32"):
        load_features(tmp_path / "cache")
    cache.write(a, fp32, features(0))  # redone in fp32: one precision again
    assert len(load_features(tmp_path / "cache")) == 2
