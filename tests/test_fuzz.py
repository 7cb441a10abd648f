"""Hypothesis fuzzing of the two parsers that read untrusted bytes: the frame reader and the config.

- ``read_frames`` on random byte mutations of small valid videos (moov last and moov first;
  overwritten bytes, cuts, inserted and deleted runs): frames of the right shape or a VideoReadError,
  nothing else.
- ``StyleFusionConfig.from_dict`` on JSON-like values (the tiny config with fields replaced,
  dropped or added, and arbitrary JSON): a config that survives a JSON round trip, or a ConfigError.

Small budgets (CI): 80 + 100 + 60 examples, no deadline; the file runs in well under a minute.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stylefusion.config import StyleFusionConfig, preset_config
from stylefusion.errors import ConfigError, VideoReadError
from stylefusion.video import read_frames

T = 8
_DIR = Path(tempfile.mkdtemp(prefix="stylefusion-fuzz-"))


def _base_videos() -> dict[str, bytes]:
    import hostile

    frames = [np.full((48, 64, 3), 30 * i % 255, np.uint8) for i in range(12)]
    for i, f in enumerate(frames):
        f[8:24, 4 * i:4 * i + 16] = 250
    out = {}
    for name, opts in (("moov_last", None), ("moov_first", {"movflags": "faststart"})):
        path = hostile._encode(_DIR / f"{name}.mp4", frames, width=64, height=48, container_options=opts,
                               options={"g": "4"})
        out[name] = path.read_bytes()
    return out


BASES = _base_videos()


@st.composite
def mutated_video(draw):
    name = draw(st.sampled_from(sorted(BASES)))
    data = bytearray(BASES[name])
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "flip", "cut", "insert", "delete"]))
        n = len(data)
        if n < 16:
            break
        moov = min(max(0, data.find(b"moov") - 8), n - 1)  # the index box: where mutations hurt most
        where = draw(st.one_of(st.integers(0, n - 1), st.integers(0, min(n - 1, 128)), st.integers(moov, n - 1)))
        where = min(where, n - 1)
        if kind == "flip":
            for k in range(draw(st.integers(1, 16))):
                data[min(n - 1, where + k)] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[where:]
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=256))
        else:
            del data[where:where + draw(st.integers(1, 512))]
    return name, bytes(data)


@pytest.mark.timeout(120)
@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_video())
def test_read_frames_on_mutated_bytes(sample):
    name, data = sample
    path = _DIR / "sample.mp4"
    path.write_bytes(data)
    try:
        frames = read_frames(path, T)
    except VideoReadError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(path) in msg
        return
    assert frames.images.dtype == np.uint8 and frames.images.ndim == 4
    assert frames.images.shape[0] == T and frames.images.shape[3] == 3
    assert min(frames.images.shape[1:3]) >= 1
    assert frames.source_indices.shape == (T,) and frames.timestamps.shape == (T,)
    assert np.all(frames.source_indices >= 0) and np.all(frames.source_indices < frames.info.num_frames)
    assert np.all(np.isfinite(frames.timestamps))


# --- config ---------------------------------------------------------------------------------
TINY = preset_config("tiny").to_dict()
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                                 st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)
near_valid_ints = st.one_of(st.integers(-3, 3), st.sampled_from([8, 16, 32, 64, 256, 1024, 1025, 10**9]))


@st.composite
def config_dicts(draw):
    data = dict(TINY)
    fields = sorted(TINY)
    for name in draw(st.lists(st.sampled_from(fields), max_size=4, unique=True)):
        data[name] = draw(st.one_of(json_values, near_valid_ints,
                                    st.lists(st.one_of(near_valid_ints, st.floats()), max_size=5)))
    for name in draw(st.lists(st.sampled_from(fields), max_size=2, unique=True)):
        data.pop(name, None)
    if draw(st.booleans()) and draw(st.booleans()):
        data[draw(st.text(min_size=1, max_size=8))] = draw(json_scalars)
    return data


def _check_config_outcome(data) -> StyleFusionConfig | None:
    try:
        cfg = StyleFusionConfig.from_dict(data)
    except ConfigError as exc:
        assert str(exc)
        return None
    again = StyleFusionConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg or any(isinstance(v, float) and math.isnan(v) for v in _leaves(cfg.to_dict()))
    assert cfg.num_frames % cfg.clip_len == 0 and cfg.attn_dim % cfg.transformer_heads == 0
    return cfg


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


@settings(max_examples=100, deadline=None, derandomize=True)
@given(config_dicts())
def test_config_from_dict_on_mutated_configs(data):
    _check_config_outcome(data)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(json_values)
def test_config_from_dict_on_any_json(data):
    _check_config_outcome(data)


def _strictly_valid(cfg: StyleFusionConfig) -> bool:
    ok = all(isinstance(getattr(cfg, k), bool) for k in ("trained", "gru_bidirectional", "style_diff"))
    for k in ("content_mean", "content_std", "style_mean", "style_std"):
        ok &= all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in getattr(cfg, k))
    ok &= all(type(i) is int for i in cfg.style_levels) and type(cfg.format_version) is int
    return ok


@settings(max_examples=100, deadline=None, derandomize=True)
@given(config_dicts())
def test_accepted_configs_have_the_right_types(data):
    cfg = _check_config_outcome(data)
    assert cfg is None or _strictly_valid(cfg), cfg
