"""Publishing: the model card, ``stylefusion card`` / ``push`` / ``space``.

The trained card is checked on a checkpoint that ``stylefusion train`` wrote (from a feature cache
of generated features), so the card reads what training records, not a hand-made config.

No network is used: pushes stop before it (dry run, no token, offline mode), are pointed at a
closed local port, or go to a recording stand-in for ``HfApi``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from stylefusion import __version__, hub
from stylefusion.card import format_metric, render_model_card
from stylefusion.cli import main as cli_main
from stylefusion.config import StyleFusionConfig

REPO = Path(__file__).resolve().parents[1]
N_VIDEOS = 16  # 10 train (5 real, 5 fake) + 6 val (3 + 3)
N_TRAIN = 10


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    head, _, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(head)


def _config(ckpt: Path) -> StyleFusionConfig:
    return StyleFusionConfig.from_json_file(ckpt / "config.json")


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory) -> Path:
    """A tiny checkpoint trained by ``stylefusion train`` on a cache of generated features.

    The cache is written directly with FeatureCache (no videos are decoded): fakes' features are
    shifted, so the head learns something and the validation metrics are real numbers.
    """
    from stylefusion.config import preset_config
    from trainkit import train_on_features

    c = preset_config("tiny")
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(N_VIDEOS) % 2
    content = torch.randn(N_VIDEOS, c.num_clips, c.content_dim, generator=gen) + 0.3 * labels[:, None, None]
    style = (torch.randn(N_VIDEOS, c.num_frames, len(c.style_levels), c.style_dim, generator=gen)
             + 0.3 * labels[:, None, None, None])
    splits = ["train" if i < N_TRAIN else "val" for i in range(N_VIDEOS)]
    return train_on_features(tmp_path_factory.mktemp("hub"), content, style, labels, splits)


# ---------------------------------------------------------------------------------------------
# the card
# ---------------------------------------------------------------------------------------------
def _assert_licence_section(card: str) -> None:
    section = card.split("## Upstream components and their licences", 1)[1]
    for needle in ("eladrich/pixel2style2pixel", "MIT", "NVIDIA Source Code License-NC",
                   "CC BY-NC-SA 4.0", "Apache-2.0", "Kinetics-400", "CC BY 4.0", "facenet-pytorch",
                   "unclear", "uncertain", "check the upstream terms"):
        assert needle in section, needle


def test_card_of_a_trained_checkpoint_shows_what_training_recorded(trained_ckpt):
    config = _config(trained_ckpt)
    training = config.training
    assert config.trained and training is not None and training.val_metrics
    card = render_model_card(config, repo_id="org/stylefusion-test")
    meta = _front_matter(card)
    assert meta["library_name"] == "stylefusion" and meta["license"] == "other"
    assert "untrained" not in meta["tags"] and "UNTRAINED" not in card
    m = training.val_metrics
    assert m["auc"] is not None
    # The metrics, as recorded by training, formatted as the card formats them.
    for name, key in (("AUC (ROC)", "auc"), ("average precision", "ap"), ("equal error rate", "eer"),
                      ("accuracy at the threshold", "accuracy"), ("precision (fake) at the threshold", "precision"),
                      ("recall (fake) at the threshold", "recall"), ("F1 (fake) at the threshold", "f1")):
        assert f"| {name} | {format_metric(m[key])} |" in card, name
    assert "No metrics" not in card and "No validation metrics" not in card
    tn, fp = m["confusion_matrix"][0]
    fn, tp = m["confusion_matrix"][1]
    assert f"| **real** | {tn} | {fp} |" in card and f"| **fake** | {fn} | {tp} |" in card
    # The threshold and how it was chosen, the data summary and the counts.
    threshold = format_metric(config.threshold)
    cal = config.calibration
    assert (f"| decision threshold | {config.threshold:.4f} (policy `fpr:0.05`: {training.threshold_source}); on "
            f"validation data, this threshold flagged {cal.val_fpr:.0%} of real videos and caught {cal.val_tpr:.0%} "
            "of fakes |") in card
    # Everything the decision rests on, and how it was obtained.
    assert f"| probability | sigmoid(logit / T), temperature T = {cal.temperature:.4f} fitted on validation" in card
    assert f"split conformal at alpha 0.1 on {cal.conformal_n} validation segments" in card
    assert f"> {cal.ood_threshold:.4f} (the 99th percentile on validation" in card
    assert "| input quality | face ≥ 40 px, sharpness ≥ 0.04, brightness in [35, 195]" in card
    assert f"decision threshold {threshold}, chosen by {training.threshold_source}" in card
    assert f"trained** on {training.data_summary}" in card
    assert training.data_summary == "synthetic (5+5 train videos)"
    assert "train: 5 real + 5 fake; val: 3 real + 3 fake" in card
    assert f"6 videos: 3 real, 3 fake; {training.val_source}" in card
    assert 'from_pretrained("org/stylefusion-test")' in card
    assert training.data not in card  # a path on the training machine says nothing to readers
    _assert_licence_section(card)


def test_saved_card_is_the_rendered_card(trained_ckpt, capsys):
    """One card: what `train` saved beside the weights is what `stylefusion card` prints."""
    rendered = render_model_card(_config(trained_ckpt))
    assert (trained_ckpt / "README.md").read_text(encoding="utf-8") == rendered
    assert cli_main(["card", "--model", str(trained_ckpt)]) == 0
    assert capsys.readouterr().out == rendered


def test_card_of_an_untrained_checkpoint_says_so_and_has_no_metrics(tiny_ckpt, tmp_path, capsys):
    assert cli_main(["card", "--model", str(tiny_ckpt), "--out", str(tmp_path / "card")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'card' / 'README.md'}"
    card = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "untrained" in _front_matter(card)["tags"]
    assert "UNTRAINED CHECKPOINT: NOT A DETECTOR" in card
    assert "No metrics: the fusion head is untrained" in card
    assert "| metric | value |" not in card and "AUC (ROC)" not in card and "## Evaluation\n\nNo metrics" in card
    assert "random weights, seed 0" in card
    _assert_licence_section(card)
    # `init` saved the same card beside the weights (from the config before its JSON round trip).
    assert (tiny_ckpt / "README.md").read_text(encoding="utf-8") == card


def test_card_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli_main(["card", "--model", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: no such checkpoint folder"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    assert cli_main(["card", "--model", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "config.json" in err[0]


# ---------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------
UPLOADED = ["README.md", "config.json", "model.safetensors"]


def _listed(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.startswith("  ")]


@pytest.fixture()
def no_token(monkeypatch, tmp_path):
    import huggingface_hub.constants

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a safety net: nothing below may reach the network


def test_push_dry_run_lists_exactly_the_three_files(trained_ckpt, capsys, no_token):
    assert (trained_ckpt / "training_history.json").is_file()  # beside the checkpoint, never uploaded
    assert cli_main(["push", "--model", str(trained_ckpt), "--repo-id", "org/stylefusion-test", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would upload 3 files to https://huggingface.co/org/stylefusion-test:")
    assert _listed(out) == UPLOADED


def test_push_without_token_is_a_one_line_error(tiny_ckpt, capsys, no_token):
    assert cli_main(["push", "--model", str(tiny_ckpt), "--repo-id", "org/stylefusion-test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no Hugging Face token"), err


def test_push_offline_is_a_one_line_error(tiny_ckpt, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli_main(["push", "--model", str(tiny_ckpt), "--repo-id", "org/stylefusion-test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: HF_HUB_OFFLINE is set"), err


def test_push_without_network_is_a_one_line_error(tiny_ckpt, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # closed port
    assert cli_main(["push", "--model", str(tiny_ckpt), "--repo-id", "org/stylefusion-test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot upload to http://127.0.0.1:9/org/stylefusion-test"), err


def test_push_commits_the_checkpoint_and_a_fresh_card(trained_ckpt, tmp_path, monkeypatch, capsys):
    """The upload itself, against a stand-in for HfApi: one commit, three files, the rendered card."""
    import shutil

    import huggingface_hub

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_ckpt, ckpt, ignore=shutil.ignore_patterns("runs"))
    (ckpt / "README.md").write_text("stale card\n")
    (ckpt / "optimizer.pt").write_bytes(b"pickle")
    calls = {}

    class FakeApi:
        endpoint = "http://fake"

        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kwargs):
            calls["repo"] = (repo_id, kwargs)

        def create_commit(self, repo_id, operations, **kwargs):
            calls["commit"] = (repo_id, {op.path_in_repo: op.path_or_fileobj for op in operations})

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert cli_main(["push", "--model", str(ckpt), "--repo-id", "org/m", "--private"]) == 0
    assert _listed(capsys.readouterr().out) == UPLOADED
    assert calls["token"] == "hf_not_a_real_token"
    assert calls["repo"] == ("org/m", {"repo_type": "model", "private": True, "exist_ok": True})
    repo_id, files = calls["commit"]
    assert repo_id == "org/m" and sorted(files) == UPLOADED
    assert files["README.md"].decode() == render_model_card(_config(ckpt), repo_id="org/m")
    assert Path(files["model.safetensors"]) == ckpt / "model.safetensors"


def test_push_refuses_weights_of_another_config(tiny_ckpt, tmp_path, capsys, no_token):
    import shutil

    ckpt = tmp_path / "mixed"
    shutil.copytree(tiny_ckpt, ckpt)
    config = _config(ckpt).replace(threshold=0.3)
    (ckpt / "config.json").write_text(config.to_json())
    assert cli_main(["push", "--model", str(ckpt), "--repo-id", "org/m", "--dry-run"]) == 2
    assert "written for a different config.json" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# space
# ---------------------------------------------------------------------------------------------
def test_packaged_space_manifest_is_the_root_one():
    """The root Space.yaml is the one to edit; the wheel ships a byte-identical copy."""
    assert hub.space_manifest_text() == (REPO / "Space.yaml").read_text(encoding="utf-8"), \
        "cp Space.yaml stylefusion/space/Space.yaml"


def test_space_folder_from_space_yaml(tmp_path, capsys):
    out = tmp_path / "space"
    assert cli_main(["space", "--out", str(out)]) == 0
    assert "wrote a Gradio Space" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "app.py", "requirements.txt"]
    manifest = yaml.safe_load((REPO / "Space.yaml").read_text(encoding="utf-8"))
    readme = (out / "README.md").read_text(encoding="utf-8")
    header = _front_matter(readme)
    for key in ("sdk", "sdk_version", "app_file", "python_version", "title", "suggested_hardware",
                "license", "short_description"):
        assert header[key] == str(manifest[key]), key
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    assert "model" not in header and "model_placeholder" not in header
    assert header["models"] == [manifest["model"]]
    # A placeholder model repo must not be preloaded (the Space build would fail on it).
    assert ("preload_from_hub" in header) == (not manifest.get("model_placeholder"))
    # Made without --model, the README says which model the Space will load.
    assert f"Model: [{manifest['model']}](https://huggingface.co/{manifest['model']}) (the default model of Space.yaml" in readme
    assert (out / "requirements.txt").read_text() == f"stylefusion[app]=={__version__}\n"
    app = (out / "app.py").read_text()
    compile(app, "app.py", "exec")
    assert "from stylefusion.app import main" in app and f'MODEL = "{manifest["model"]}"' in app


def test_space_folder_for_a_named_model(tmp_path, tiny_ckpt):
    manifest = hub.read_space_manifest()
    header = _front_matter(hub.render_space_readme(manifest, hub.space_model(manifest, "org/m")))
    assert header["models"] == ["org/m"]
    assert header["preload_from_hub"] == ["org/m config.json,model.safetensors"]
    # A local checkpoint travels inside the Space folder.
    out = tmp_path / "space"
    assert cli_main(["space", "--out", str(out), "--model", str(tiny_ckpt)]) == 0
    assert (out / "model" / "model.safetensors").read_bytes() == (tiny_ckpt / "model.safetensors").read_bytes()
    assert (out / "model" / "config.json").is_file()
    header = _front_matter((out / "README.md").read_text())
    assert "preload_from_hub" not in header and "models" not in header
    compile((out / "app.py").read_text(), "app.py", "exec")


def test_space_manifest_errors(tmp_path, capsys):
    space = tmp_path / "Space.yaml"
    space.write_text("title: T\nsdk: gradio\nsdk_version: 6.31.0\npython_version: '3.11'\n"
                     "app_file: app.py\nmodel: org/m\nmodel_placeholder: false\n"
                     "preload_from_hub:\n  - org/m config.json,model.safetensors\n")
    header = hub.space_header(hub.read_space_manifest(space))
    assert header["preload_from_hub"] == ["org/m config.json,model.safetensors"]
    assert header["python_version"] == "3.11"
    space.write_text("title: T\nsdk: gradio\n")
    assert cli_main(["space", "--out", str(tmp_path / "s"), "--manifest", str(space)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing required keys" in err[0]
    assert cli_main(["space", "--out", str(tmp_path / "s"), "--model", "./no/such/dir"]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err
