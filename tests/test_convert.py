"""``stylefusion convert``: upstream-layout files -> a checkpoint that loads strictly and computes
the same features as an independent implementation; broken or hostile inputs are refused."""

from __future__ import annotations

import argparse
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import upstream_layouts as U
from helpers import RunsCode, rss_peak_delta
from stylefusion.convert import add_convert_arguments, convert, load_upstream, run_convert
from stylefusion.errors import CheckpointError

W, UNITS, DEPTHS = 8, (1, 1, 1, 1), (1, 1, 1, 1)  # the tiny preset's sizes


@pytest.fixture(scope="module")
def upstream_files(tmp_path_factory) -> tuple[Path, Path, dict, dict]:
    folder = tmp_path_factory.mktemp("upstream")
    psp = U.psp_checkpoint(W, UNITS, 256, seed=11)
    slow = U.slow_r50_checkpoint(W, DEPTHS, seed=12)
    torch.save(psp, folder / "psp_ffhq_encode.pt")
    torch.save(slow, folder / "SLOW_8x8_R50.pyth")
    return folder / "psp_ffhq_encode.pt", folder / "SLOW_8x8_R50.pyth", psp, slow


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_convert_loads_strictly_and_matches_references(upstream_files, tmp_path):
    from stylefusion.detector import StyleFusionDetector

    psp_path, slow_path, psp, slow = upstream_files
    summary = convert(psp_path, slow_path, tmp_path / "ckpt", preset="tiny")
    det = StyleFusionDetector.from_pretrained(tmp_path / "ckpt")  # strict load

    cfg = det.config
    assert cfg.trained is False and cfg.style_levels == (9,)
    assert cfg.provenance["psp"] == {"file": "psp_ffhq_encode.pt", "sha256": _sha(psp_path)}
    assert cfg.provenance["slow_r50"] == {"file": "SLOW_8x8_R50.pyth", "sha256": _sha(slow_path)}
    assert cfg.provenance["converted_by"].startswith("stylefusion ")

    n_counters = sum(k.endswith("num_batches_tracked") for k in slow["model_state"])
    assert summary["keys_dropped"]["slow_r50: Kinetics head (blocks.5)"] == 2
    assert summary["keys_dropped"]["slow_r50: BatchNorm counters (written as 0)"] == n_counters
    assert summary["keys_dropped"]["psp: StyleGAN2 decoder"] == 6
    assert summary["keys_dropped"]["psp: style blocks of unused levels"] == sum(
        1 for k in psp["state_dict"] if k.startswith("encoder.styles.") and not k.startswith("encoder.styles.9."))
    assert summary["keys_converted"]["content"] == len(slow["model_state"]) - 2 - n_counters
    assert summary["parameters"]["content"] == sum(p.numel() for p in det.content.parameters())
    assert summary["trained"] is False

    x_clip = torch.randn(1, 3, 4, 64, 64)
    x_face = torch.randn(2, 3, 256, 256)
    enc = {k[len("encoder."):]: v for k, v in psp["state_dict"].items() if k.startswith("encoder.")}
    with torch.no_grad():
        torch.testing.assert_close(det.content(x_clip), U.slow_r50_reference(slow["model_state"], x_clip),
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(det.style(x_face), U.psp_reference(enc, psp["latent_avg"], x_face, (9,), UNITS),
                                   rtol=0, atol=1e-5)


def test_cli_glue_prints_the_summary(upstream_files, tmp_path, capsys):
    psp_path, slow_path, _, _ = upstream_files
    parser = argparse.ArgumentParser()
    add_convert_arguments(parser)
    args = parser.parse_args(["--psp", str(psp_path), "--slow-r50", str(slow_path), "--out",
                              str(tmp_path / "c"), "--levels", "9", "3", "--preset", "tiny"])
    assert run_convert(args) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED" in out and "keys dropped" in out and _sha(psp_path) in out
    from stylefusion.detector import StyleFusionDetector

    assert StyleFusionDetector.from_pretrained(tmp_path / "c").config.style_levels == (3, 9)


def _head_features(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tiny-preset features (content ``[n, C, Dc]``, style ``[n, T, L, Ds]``) whose fakes are moved
    by +0.5: a head learns them in a few epochs."""
    from stylefusion.config import preset_config

    c = preset_config("tiny")
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    content = (torch.randn(n, c.num_clips, c.content_dim, generator=g) + 0.5 * y[:, None, None]).relu()
    style = torch.randn(n, c.num_frames, len(c.style_levels), c.style_dim, generator=g) + 0.5 * y[:, None, None, None]
    return content, style, y


@pytest.fixture(scope="module")
def trained_head(tmp_path_factory) -> Path:
    """A head as ``stylefusion train`` writes it (trained, calibrated, with ``ood.*`` tensors): the
    real producer, not a hand-made fixture."""
    from trainkit import train_on_features

    content, style, y = _head_features(32, 5)
    return train_on_features(tmp_path_factory.mktemp("head"), content, style, y,
                             ["train" if i < 20 else "val" for i in range(32)], epochs=2, batch_size=8)


def test_a_head_from_stylefusion_train_converts_and_gives_the_same_logits(upstream_files, trained_head, tmp_path,
                                                                          capsys):
    from stylefusion.cli import main as cli_main
    from stylefusion.detector import StyleFusionDetector

    psp_path, slow_path, _, _ = upstream_files
    donor = StyleFusionDetector.from_pretrained(trained_head, precision="fp32")
    assert donor.config.calibration is not None and donor.ood is not None  # what training writes
    # The command itself, as a user runs it.
    assert cli_main(["convert", "--psp", str(psp_path), "--slow-r50", str(slow_path), "--out", str(tmp_path / "out"),
                     "--head", str(trained_head), "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "fusion head: trained (copied from --head)" in out and "ood 2" in out
    det = StyleFusionDetector.from_pretrained(tmp_path / "out", precision="fp32")  # strict load

    # The head's config travels with it: decision rule, calibration, training record.
    for name in ("trained", "threshold", "threshold_policy", "conformal_alpha", "calibration", "training",
                 "min_face_px", "min_sharpness", "min_brightness", "max_brightness"):
        assert getattr(det.config, name) == getattr(donor.config, name), name
    assert det.rule == donor.rule and det.rule.calibration is not None  # the decision's one home, whole
    assert det.config.provenance["fusion_head"] == {"from": str(trained_head), "trained": True}
    # Every non-backbone tensor is the donor's; the backbones are the upstream files'.
    mine, theirs = det.state_dict(), donor.state_dict()
    head_keys = {k for k in theirs if not k.startswith(("content.", "style."))}
    assert {k.split(".")[0] for k in head_keys} == {"fusion", "ood"}
    for k in head_keys:
        assert torch.equal(mine[k], theirs[k]), k
    assert not torch.equal(mine["style.latent_avg"], theirs["style.latent_avg"])

    # Same features in, same logits, out-of-domain scores and answers out.
    content, style, _ = _head_features(6, 9)
    a, b = det.classify(content, style), donor.classify(content, style)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    np.testing.assert_array_equal(det.ood_scores(a.embedding, content, style),
                                  donor.ood_scores(b.embedding, content, style))
    from stylefusion.decision import decide

    for logit in a.logits.tolist():
        assert decide(det.rule, logit)[:2] == decide(donor.config, logit)[:2]

    with pytest.raises(CheckpointError, match="style_levels"):
        convert(psp_path, slow_path, tmp_path / "out2", head=trained_head, preset="tiny", levels=(4,))
    with pytest.raises(CheckpointError, match="content_width"):
        convert(psp_path, slow_path, tmp_path / "out3", head=trained_head, preset="full")


def test_legacy_serialisation_loads(tmp_path):
    ckpt = U.slow_r50_checkpoint(W, DEPTHS)
    torch.save(ckpt, tmp_path / "legacy.pyth", _use_new_zipfile_serialization=False)
    assert set(load_upstream(tmp_path / "legacy.pyth")["model_state"]) == set(ckpt["model_state"])


# ----------------------------------------------------------------------------------------------
# broken and hostile inputs
# ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "raw pickle", "nested in a checkpoint"])
def test_pickle_that_runs_code_is_refused_not_executed(tmp_path, how):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save(RunsCode(marker), path)
    elif how == "raw pickle":
        path.write_bytes(pickle.dumps(RunsCode(marker)))
    else:
        torch.save({"model_state": {"blocks.0.conv.weight": torch.zeros(1)}, "cfg": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        load_upstream(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert "refused" in message or "not a PyTorch checkpoint" in message
    assert not marker.exists()


def test_unreadable_files_give_one_line_errors(upstream_files, tmp_path):
    psp_path, slow_path, psp, _ = upstream_files
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(psp_path.read_bytes()[: psp_path.stat().st_size // 2])
    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    a_list = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], a_list)
    cases = {truncated: "truncated or corrupt", text: "not a PyTorch checkpoint", empty: "empty",
             tmp_path / "missing.pt": "no such file", a_list: "top level is list"}
    for path, words in cases.items():
        with pytest.raises(CheckpointError) as err:
            load_upstream(path)
        assert str(path) in str(err.value) and words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="truncated"):
        convert(truncated, slow_path, tmp_path / "x", preset="tiny")


def test_checkpoint_problems_stop_the_conversion(upstream_files, tmp_path):
    psp_path, slow_path, psp, slow = upstream_files
    no_avg = tmp_path / "no_avg.pt"
    torch.save({k: v for k, v in psp.items() if k != "latent_avg"}, no_avg)
    with pytest.raises(CheckpointError, match=r"no_avg\.pt: has no 'latent_avg'"):
        convert(no_avg, slow_path, tmp_path / "a", preset="tiny")

    bad = tmp_path / "bad_shape.pyth"
    state = dict(slow["model_state"], **{"blocks.4.res_blocks.0.branch2.conv_c.weight": torch.zeros(3, 3)})
    torch.save(dict(slow, model_state=state), bad)
    with pytest.raises(CheckpointError, match=r"bad_shape\.pyth.*conv_c\.weight is \[3, 3\] in the file"):
        convert(psp_path, bad, tmp_path / "b", preset="tiny")

    # full-size networks refuse tiny files, naming the first mismatches, checked against a
    # meta-device skeleton: the 80 M-parameter model (320 MB) is never allocated for files that do not fit
    def full_preset():
        with pytest.raises(CheckpointError, match="wrong shapes"):
            convert(psp_path, slow_path, tmp_path / "c", preset="full")

    assert rss_peak_delta(full_preset) < 150 * 2**20
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
