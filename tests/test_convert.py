"""``stylefusion convert``: upstream-layout files -> a checkpoint that loads strictly and computes
the same features as an independent implementation; broken or hostile inputs are refused."""

from __future__ import annotations

import argparse
import hashlib
import pickle
from pathlib import Path

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


def test_head_is_copied_with_its_config(upstream_files, tmp_path):
    from stylefusion.detector import StyleFusionDetector, init_checkpoint

    psp_path, slow_path, _, _ = upstream_files
    donor = init_checkpoint("tiny", tmp_path / "head", seed=3, trained=True, threshold=0.3,
                            training={"dataset": "ffpp-c23"})
    summary = convert(psp_path, slow_path, tmp_path / "out", head=tmp_path / "head", preset="tiny")
    det = StyleFusionDetector.from_pretrained(tmp_path / "out")
    assert det.config.trained is True and det.config.threshold == 0.3
    assert det.config.training.datasets == ["ffpp-c23"] and det.config.training.summary == "ffpp-c23"
    assert summary["trained"] is True and det.config.provenance["fusion_head"]["trained"] is True
    for k, v in donor.fusion.state_dict().items():
        assert torch.equal(det.fusion.state_dict()[k], v), k
    with pytest.raises(CheckpointError, match="style_levels"):
        convert(psp_path, slow_path, tmp_path / "out2", head=tmp_path / "head", preset="tiny", levels=(4,))
    with pytest.raises(CheckpointError, match="content_width"):
        convert(psp_path, slow_path, tmp_path / "out3", head=tmp_path / "head", preset="full")


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
