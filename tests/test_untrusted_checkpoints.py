"""Untrusted checkpoint folders: refused with one clear error, nothing executed, nothing huge allocated.

tests/test_detector.py covers honest strict loading (missing/unexpected keys, one wrong shape, an
empty or missing folder, a truncated safetensors, torn saves). Here: every pickle name and
disguise, crafted safetensors headers, odd files in place of the two files, unparsable JSON, newer
and older versions, absurd and wrongly typed config values, and a memory bound on refusing a
config that asks for a huge model.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import RunsCode, broken_ckpt, copy_ckpt, rss_peak_delta
from stylefusion import StyleFusionDetector
from stylefusion.checkpoint import UNSAFE_WEIGHTS
from stylefusion.errors import CheckpointError, ConfigError, StyleFusionError

REPO = Path(__file__).resolve().parents[1]


# --- pickles: refused by name, never unpickled, whatever they are called -----------------------
@pytest.mark.parametrize("name", UNSAFE_WEIGHTS)
def test_every_pickle_name_refused(tiny_ckpt, tmp_path, name):
    bad = copy_ckpt(tiny_ckpt, tmp_path, "ck")
    (bad / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"x": RunsCode(marker)}, bad / name)
    with pytest.raises(CheckpointError, match="pickle") as info:
        StyleFusionDetector.from_pretrained(bad)
    assert name in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_pickle_disguised_as_safetensors_or_config(tiny_ckpt, tmp_path):
    marker = tmp_path / "pwned"
    bad = copy_ckpt(tiny_ckpt, tmp_path, "as_weights")
    torch.save({"x": RunsCode(marker)}, bad / "model.safetensors")
    with pytest.raises(CheckpointError, match="safetensors"):
        StyleFusionDetector.from_pretrained(bad)
    bad = copy_ckpt(tiny_ckpt, tmp_path, "as_config")
    torch.save({"x": RunsCode(marker)}, bad / "config.json")
    with pytest.raises(ConfigError, match="config.json"):
        StyleFusionDetector.from_pretrained(bad)
    assert not marker.exists()


def test_pickle_beside_safetensors_is_ignored(tiny_ckpt, tmp_path):
    ck = copy_ckpt(tiny_ckpt, tmp_path, "both")
    marker = tmp_path / "pwned"
    torch.save({"x": RunsCode(marker)}, ck / "pytorch_model.bin")
    model = StyleFusionDetector.from_pretrained(ck)
    assert model.config.preset == "tiny"
    assert not marker.exists()


# --- the two files missing, replaced or crafted -------------------------------------------------
def test_missing_or_odd_files(tiny_ckpt, tmp_path):
    noconf = copy_ckpt(tiny_ckpt, tmp_path, "noconf")
    (noconf / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        StyleFusionDetector.from_pretrained(noconf)
    confdir = copy_ckpt(tiny_ckpt, tmp_path, "confdir")
    (confdir / "config.json").unlink()
    (confdir / "config.json").mkdir()
    with pytest.raises(StyleFusionError):
        StyleFusionDetector.from_pretrained(confdir)
    for name, make in [("dangling", lambda p: os.symlink(tmp_path / "gone", p)),
                       ("directory", lambda p: p.mkdir()),
                       ("device", lambda p: os.symlink("/dev/zero", p))]:
        ck = copy_ckpt(tiny_ckpt, tmp_path, f"w_{name}")
        (ck / "model.safetensors").unlink()
        make(ck / "model.safetensors")
        with pytest.raises(CheckpointError, match="model.safetensors") as info:
            StyleFusionDetector.from_pretrained(ck)
        assert "\n" not in str(info.value)
    empty = copy_ckpt(tiny_ckpt, tmp_path, "w_empty")
    (empty / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="safetensors"):
        StyleFusionDetector.from_pretrained(empty)


def _crafted_safetensors(path: Path, header: dict | bytes, declared_len: int | None = None, body: bytes = b"") -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(raw) if declared_len is None else declared_len
    path.write_bytes(struct.pack("<Q", n) + raw + body)


@pytest.mark.parametrize("case", ["header_len_1TB", "shape_1e12", "offsets_past_end", "not_json", "negative_shape"])
def test_crafted_safetensors_headers(tiny_ckpt, tmp_path, case):
    """Lies in the header are caught before any tensor is allocated for them."""
    ck = copy_ckpt(tiny_ckpt, tmp_path, case)
    w = ck / "model.safetensors"
    if case == "header_len_1TB":
        _crafted_safetensors(w, {"__metadata__": {}}, declared_len=10**12)
    elif case == "shape_1e12":
        _crafted_safetensors(w, {"fusion.fc2.weight": {"dtype": "F32", "shape": [10**6, 10**6],
                                                       "data_offsets": [0, 4 * 10**12]}}, body=b"\0" * 64)
    elif case == "offsets_past_end":
        _crafted_safetensors(w, {"fusion.fc2.weight": {"dtype": "F32", "shape": [1, 16],
                                                       "data_offsets": [0, 64]}}, body=b"\0" * 8)
    elif case == "not_json":
        _crafted_safetensors(w, b"\xff\xfe{{{{", body=b"\0" * 8)
    else:
        _crafted_safetensors(w, {"fusion.fc2.weight": {"dtype": "F32", "shape": [-1, 16],
                                                       "data_offsets": [0, 64]}}, body=b"\0" * 64)

    def load():
        with pytest.raises(CheckpointError) as info:
            StyleFusionDetector.from_pretrained(ck)
        assert "\n" not in str(info.value)

    assert rss_peak_delta(load) < 200 * 2**20


# --- config values -------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, pattern", [
    ({"format_version": 0}, "format_version"),
    ({"format_version": -1}, "format_version"),
    ({"format_version": 2}, "newer"),
    ({"format_version": 10**30}, "newer"),
    ({"format_version": "1"}, "format_version"),
    ({"num_frames": -32}, "num_frames"),
    ({"num_frames": 0}, "num_frames"),
    ({"num_frames": 32.5}, "num_frames"),
    ({"num_frames": "32"}, "num_frames"),
    ({"num_frames": None}, "num_frames"),
    ({"num_frames": True}, "num_frames"),
    ({"num_frames": 10**9}, "num_frames"),
    ({"clip_len": 10**9}, "clip_len"),
    ({"style_width": 10**6}, "style_width"),
    ({"gru_hidden": 10**9}, "gru_hidden"),
    ({"attn_dim": 10**9}, "attn_dim"),
    ({"transformer_ff": 10**12}, "transformer_ff"),
    ({"transformer_layers": 10**6}, "transformer_layers"),
    ({"content_depths": [10**6, 1, 1, 1]}, "content_depths"),
    ({"style_units": [1, 1, 1, 10**9]}, "style_units"),
    ({"face_size": 10**9}, "face_size"),
    ({"face_size": -256}, "face_size"),
    ({"detect_max_side": -1}, "detect_max_side"),
    ({"threshold": float("nan")}, "threshold"),
    ({"threshold": float("inf")}, "threshold"),
    ({"threshold": -0.5}, "threshold"),
    ({"dropout": 5}, "dropout"),
    ({"uncertain_margin": float("-inf")}, "uncertain_margin"),
    ({"face_margin": float("nan")}, "face_margin"),
    ({"mtcnn_thresholds": ["a", "b", "c"]}, "malformed|mtcnn"),
    ({"mtcnn_thresholds": [0.5]}, "mtcnn_thresholds"),
    ({"content_std": [0, 1, 1]}, "content_std"),
    ({"style_levels": list(range(10**5))}, "style_levels"),
    ({"style_levels": []}, "style_levels"),
    ({"style_levels": "9"}, "style_levels"),
    ({"training": "x"}, "training"),
    ({"content_width": {"a": 1}}, "content_width"),
    ({"content_width": 10**6}, "content_width"),
    ({"style_levels": [25]}, "style_levels"),
    ({"threshold": "high"}, "threshold"),
    ({"made_up": 1}, "unknown fields"),
])
def test_absurd_values_refused_before_any_model_is_built(tiny_ckpt, tmp_path, monkeypatch, changes, pattern):
    import stylefusion.detector as detector_mod

    class Boom:
        @classmethod
        def from_config(cls, config):
            raise AssertionError("a model was built from an invalid config")

    monkeypatch.setattr(detector_mod, "SlowR50Trunk", Boom)
    bad = broken_ckpt(tiny_ckpt, tmp_path, **changes)
    with pytest.raises(ConfigError, match=pattern) as info:
        StyleFusionDetector.from_pretrained(bad)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 500  # values are quoted shortened


@pytest.mark.parametrize("text, pattern", [("{not json", "cannot read config.json"),
                                           ("[" * 100_000 + "]" * 100_000, None)], ids=["not_json", "nested"])
def test_unparsable_config_json(tiny_ckpt, tmp_path, text, pattern):
    bad = copy_ckpt(tiny_ckpt, tmp_path)
    (bad / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        StyleFusionDetector.from_pretrained(bad)


@pytest.mark.parametrize("changes", [{"trained": "false"}, {"gru_bidirectional": "no"}, {"format_version": True},
                                     {"content_mean": ["a", "b", "c"]}, {"content_mean": [float("nan"), 0, 0]},
                                     {"style_std": [float("inf"), 1, 1]}, {"style_levels": [True]}])
def test_wrong_types_refused(tiny_ckpt, tmp_path, changes):
    bad = broken_ckpt(tiny_ckpt, tmp_path, **changes)
    with pytest.raises(ConfigError):
        StyleFusionDetector.from_pretrained(bad)


def test_config_of_another_version_with_extra_fields(tiny_ckpt, tmp_path):
    """A newer writer adds fields and bumps the version: the version message wins, naming the upgrade."""
    bad = broken_ckpt(tiny_ckpt, tmp_path, format_version=2, future_field={"x": 1})
    with pytest.raises(ConfigError, match="upgrade"):
        StyleFusionDetector.from_pretrained(bad)


_PEAK_CODE = """
import resource, sys
from stylefusion import StyleFusionDetector
from stylefusion.errors import StyleFusionError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    StyleFusionDetector.from_pretrained(sys.argv[1])
    outcome = "loaded"
except StyleFusionError as exc:
    outcome = type(exc).__name__
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(outcome, (after - before) * 1024)
"""


def test_huge_model_config_refused_without_allocating(tiny_ckpt, tmp_path):
    bad = broken_ckpt(tiny_ckpt, tmp_path, attn_dim=4096, transformer_ff=16384, transformer_heads=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _PEAK_CODE, str(bad)], capture_output=True, text=True,
                         timeout=300, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    outcome, grew = out.stdout.split()
    assert outcome == "CheckpointError"
    assert int(grew) < 200 * 2**20, f"refusing the checkpoint allocated {int(grew) / 2**20:.0f} MB"
