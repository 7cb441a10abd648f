"""hub/publish.py: model cards, staged uploads and the Space README header.

No network is used: pushes either stop before it (no token, dry run) or are pointed at a closed
local port, where they must fail with one readable line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("jinja2")

REPO = Path(__file__).resolve().parents[1]
PUBLISH = REPO / "hub" / "publish.py"


def _load_publish():
    """hub/ is a folder of release scripts, not a package: import publish.py by path."""
    spec = importlib.util.spec_from_file_location("stylefusion_publish", PUBLISH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["stylefusion_publish"] = module
    spec.loader.exec_module(module)
    return module


publish = _load_publish()


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    head, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(head)


@pytest.fixture()
def untrained_ckpt(tmp_path) -> Path:
    """A checkpoint folder as init_checkpoint writes it (weights are not read by publish.py)."""
    from stylefusion.config import preset_config

    out = tmp_path / "untrained"
    out.mkdir()
    config = preset_config("tiny").to_dict()
    config["provenance"] = {"init": {"preset": "tiny", "seed": 0}}
    (out / "config.json").write_text(json.dumps(config))
    (out / "model.safetensors").write_bytes(b"\0" * 64)
    (out / "README.md").write_text("stale short card\n")
    (out / "optimizer.pt").write_bytes(b"pickle")  # never uploaded
    return out


@pytest.fixture()
def trained_ckpt(untrained_ckpt, tmp_path) -> Path:
    out = tmp_path / "trained"
    out.mkdir()
    config = json.loads((untrained_ckpt / "config.json").read_text())
    config.update(trained=True, threshold=0.42, training={
        "dataset": "FaceForensics++ c23", "split": "official", "threshold_source": "validation EER",
        "metrics": {"ff++ c23 test": {"auc": 0.991, "accuracy": 0.95},
                    "celeb-df v2": {"auc": 0.781}},
    })
    (out / "config.json").write_text(json.dumps(config))
    (out / "model.safetensors").write_bytes(b"\0" * 64)
    (out / "metrics.json").write_text("{}")
    return out


def test_card_for_untrained_checkpoint_says_so_and_has_no_metrics(untrained_ckpt, tmp_path):
    path = publish.write_model_card(untrained_ckpt, tmp_path / "card")
    card = path.read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "stylefusion" and meta["license"] == "other"
    assert "untrained" in meta["tags"]
    assert "UNTRAINED CHECKPOINT: NOT A DETECTOR" in card
    assert "| evaluation |" not in card and "| metric |" not in card
    assert "No metrics are recorded" in card
    assert "seed 0" in card
    _assert_licence_section(card)


def test_card_for_trained_checkpoint_has_metrics_table(trained_ckpt, tmp_path):
    card = publish.render_model_card(json.loads((trained_ckpt / "config.json").read_text()),
                                     repo_id="org/stylefusion-test")
    assert "UNTRAINED" not in card and "untrained" not in _front_matter(card)["tags"]
    assert "trained** on FaceForensics++ c23" in card
    assert "| evaluation | auc | accuracy |" in card
    assert "| ff++ c23 test | 0.9910 | 0.9500 |" in card
    assert "| celeb-df v2 | 0.7810 |  |" in card
    assert "0.420 (validation EER)" in card
    assert 'from_pretrained("org/stylefusion-test")' in card
    _assert_licence_section(card)


def test_flat_and_list_metrics_shapes():
    assert publish.metrics_table({"auc": 0.9}) == (["metric", "value"], [["auc", "0.9000"]])
    cols, rows = publish.metrics_table([{"dataset": "dfdc", "auc": 0.7}])
    assert cols == ["evaluation", "auc"] and rows == [["dfdc", "0.7000"]]
    assert publish.metrics_table(None) == ([], [])


def _assert_licence_section(card: str) -> None:
    section = card.split("## Upstream components and their licences", 1)[1]
    for needle in ("eladrich/pixel2style2pixel", "MIT", "NVIDIA Source Code License-NC",
                   "CC BY-NC-SA 4.0", "Apache-2.0", "Kinetics-400", "CC BY 4.0", "facenet-pytorch",
                   "unclear", "uncertain", "check the upstream terms"):
        assert needle in section, needle


def test_dry_run_lists_checkpoint_and_fresh_card(untrained_ckpt, tmp_path):
    staging = tmp_path / "staging"
    names = publish.push_checkpoint(untrained_ckpt, "org/stylefusion-test", dry_run=True,
                                    staging_dir=staging)
    assert names == ["README.md", "config.json", "model.safetensors"]
    assert "stale short card" not in (staging / "README.md").read_text()
    assert not (staging / "optimizer.pt").exists()


def test_push_without_token_fails_with_one_line(untrained_ckpt, tmp_path, monkeypatch):
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import huggingface_hub

    if huggingface_hub.get_token() is not None:  # constants are read at import time
        pytest.skip("a Hugging Face token is configured in this environment")
    with pytest.raises(publish.PublishError, match="no Hugging Face token") as info:
        publish.push_checkpoint(untrained_ckpt, "org/stylefusion-test")
    assert "\n" not in str(info.value)


def test_cli_push_without_network_fails_with_one_line(untrained_ckpt, tmp_path):
    env = {**os.environ, "HF_TOKEN": "hf_not_a_real_token", "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    proc = subprocess.run([sys.executable, str(PUBLISH), "push", "--model", str(untrained_ckpt),
                           "--repo-id", "org/stylefusion-test"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot upload to"), proc.stderr


def test_cli_card_and_errors(untrained_ckpt, tmp_path):
    ok = subprocess.run([sys.executable, str(PUBLISH), "card", "--model", str(untrained_ckpt),
                         "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and (tmp_path / "out" / "README.md").is_file()
    bad = subprocess.run([sys.executable, str(PUBLISH), "card", "--model", str(tmp_path / "nope"),
                          "--out", str(tmp_path / "out2")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip() == f"error: {tmp_path / 'nope'}: no such checkpoint folder"


def test_space_readme_header_from_space_yaml(tmp_path):
    out = publish.write_space_readme(REPO / "Space.yaml", tmp_path / "README_SPACE.md")
    text = out.read_text()
    header = _front_matter(text)
    manifest = yaml.safe_load((REPO / "Space.yaml").read_text())
    for key in ("title", "emoji", "sdk", "sdk_version", "python_version", "app_file",
                "suggested_hardware", "license", "short_description", "models"):
        assert key in header, key
    assert header["sdk"] == "gradio" and header["sdk_version"] == "6.31.0"
    assert header["python_version"] == "3.11" and header["app_file"] == "app.py"
    assert header["models"] == [manifest["model"]]
    assert "model" not in header and "model_placeholder" not in header
    assert len(header["short_description"]) <= 60
    # A placeholder model repo must not be preloaded (the Space build would fail on it).
    assert ("preload_from_hub" in header) == (not manifest.get("model_placeholder"))
    assert "Generated by hub/publish.py" in text


def test_space_readme_preloads_a_published_model(tmp_path):
    space = tmp_path / "Space.yaml"
    space.write_text("title: T\nsdk: gradio\nsdk_version: 6.31.0\npython_version: '3.11'\n"
                     "app_file: app.py\nmodel: org/m\nmodel_placeholder: false\n"
                     "preload_from_hub:\n  - org/m config.json,model.safetensors\n")
    header = _front_matter(publish.render_space_readme(space))
    assert header["preload_from_hub"] == ["org/m config.json,model.safetensors"]
    space.write_text("title: T\nsdk: gradio\n")
    with pytest.raises(publish.PublishError, match="missing required keys"):
        publish.render_space_readme(space)
