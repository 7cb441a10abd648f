"""How a checkpoint holds up (stylefusion.research.robustness): the grid, its files, the card, the
sentence under a verdict, and that failures are counted in their cell.

The checkpoint is made by the real producers on the synthetic dataset of the end-to-end test
(``extract`` → ``train --robustness``), so every number here comes from the whole detector run on
perturbed videos.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stylefusion.research import evaluate as eval_mod
from stylefusion.research import extract as extract_mod
from stylefusion.research import robustness as rb
from stylefusion.research import train as train_mod
from stylefusion.research.manifest import ManifestRecord, write_manifest
from test_pipeline_e2e import write_video
from trainkit import calibrated_checkpoint

REPO = Path(__file__).resolve().parents[1]
GRID = "blur:5,social_360p:4,fps:4"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    work = tmp_path_factory.mktemp("robust")
    rows = []
    for i in range(12):
        label, k = i % 2, i // 2
        split = "train" if k < 4 else "val"
        path = work / "data" / f"v{i:02d}.mp4"
        write_video(path, bool(label), 300 + i)
        rows.append(ManifestRecord(f"v{i:02d}", str(path), label, split, "synthetic",
                                   "generated" if label else "original"))
    manifest = write_manifest(rows, work / "manifest.csv")
    ckpt = work / "ckpt"
    calibrated_checkpoint(ckpt, [rows[0].path, rows[1].path])
    cache = work / "cache"
    assert extract_mod.main(["--manifest", str(manifest), "--model", str(ckpt), "--cache", str(cache),
                             "--no-progress", "--threads", "1"]) == 0
    out = work / "trained"
    assert train_mod.main(["--cache", str(cache), "--out", str(out), "--epochs", "30", "--batch-size", "4",
                           "--lr", "3e-3", "--seed", "0", "--threads", "1", "--robustness", GRID]) == 0
    return {"work": work, "cache": cache, "out": out, "rows": rows}


def test_train_robustness_writes_the_grid_and_the_checkpoint_carries_it(trained):
    from stylefusion.detector import StyleFusionDetector

    report = json.loads((trained["out"] / "robustness" / "robustness.json").read_text())
    assert [c["condition"] for c in report["cells"]] == ["clean", "blur:5", "social_360p:4", "fps:4"]
    assert report["videos"] == 4 and report["split"] == "val"
    for c in report["cells"]:
        assert c["n"] == 4 and c["answered"] + sum(c["not_answered"].values()) / 4 == pytest.approx(1.0)
        assert 0 <= c["fpr"] <= 1 and 0 <= c["tpr"] <= 1 and c["auc"] is not None
    assert (trained["out"] / "robustness" / "robustness.png").stat().st_size > 1000
    assert "plotly" in (trained["out"] / "robustness" / "robustness.html").read_text()
    # The perturbations changed what the detector saw: p_fake moves in every perturbed cell.
    clean = {v["video_id"]: v["p_fake"] for v in report["cells"][0]["videos"]}
    for c in report["cells"][1:]:
        assert any(abs(v["p_fake"] - clean[v["video_id"]]) > 1e-4 for v in c["videos"]), c["condition"]
    social = report["cells"][2]
    assert social["crf"] == 38 and social["bitrate_bps"] < report["cells"][0]["bitrate_bps"]

    det = StyleFusionDetector.from_pretrained(trained["out"])
    rec = det.config.training.robustness
    assert [c["condition"] for c in rec["cells"]] == ["clean", "blur:5", "social_360p:4", "fps:4"]
    assert rec["cells"][1]["auc"] == report["cells"][1]["auc"] and "videos" not in rec["cells"][1]
    card = (trained["out"] / "README.md").read_text()
    assert "## How it holds up" in card and "| Gaussian blur, level 5 (kernel px 21) |" in card


def test_robustness_sentence_names_the_nearest_condition(trained):
    from stylefusion.config import StyleFusionConfig

    config = StyleFusionConfig.from_json_file(trained["out"] / "config.json")
    cells = {c["condition"]: c for c in config.training.robustness["cells"]}
    s = rb.robustness_sentence(config, {"name": "social_360p", "level": 4})
    assert s == (f"on validation videos recompressed like this one (social recompression, 360p, level 4 (CRF 38)), "
                 f"this checkpoint's AUC was {cells['social_360p:4']['auc']:.2f} and it answered "
                 f"{cells['social_360p:4']['answered']:.0%} of them")
    # An upload measured by probe(): a low-bitrate file is matched to the CRF 38 cell, a file at
    # the clean videos' bitrate to the clean cell.
    low = {"bitrate_bps": cells["social_360p:4"]["bitrate_bps"] * 0.9, "short_side": 96, "fps": 25.0}
    assert "CRF 38" in rb.robustness_sentence(config, low)
    high = {"bitrate_bps": cells["clean"]["bitrate_bps"], "short_side": 96, "fps": 25.0}
    assert "as they were" in rb.robustness_sentence(config, high)
    assert rb.robustness_sentence(config, {"name": "noise", "level": 2}) is None  # not measured
    untouched = config.replace(training=config.training.__class__())
    assert rb.robustness_sentence(untouched, low) is None


def test_evaluate_perturb_writes_robustness_json_beside_the_report(trained, tmp_path):
    report = tmp_path / "report"
    assert eval_mod.main(["--model", str(trained["out"]), "--cache", str(trained["cache"]), "--split", "val",
                          "--report", str(report), "--perturb", "noise:5,pixelation:5", "--perturb-limit", "1"]) == 0
    grid = json.loads((report / "robustness.json").read_text())
    assert [c["condition"] for c in grid["cells"]] == ["clean", "noise:5", "pixelation:5"]
    assert grid["videos"] == 2 and (report / "robustness.png").is_file() and (report / "report.json").is_file()


def test_a_bad_level_is_a_one_line_error_before_any_work(trained, tmp_path):
    r = subprocess.run([sys.executable, "-m", "stylefusion.research.evaluate", "--model", str(trained["out"]),
                        "--cache", str(trained["cache"]), "--report", str(tmp_path / "r"), "--perturb", "blur:9"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and not (tmp_path / "r").exists()
    assert r.stderr.strip().splitlines() == [
        "stylefusion evaluate: error: blur:9: level must be an integer in [1, 5] (Gaussian blur, "
        "DeeperForensics-1.0 GB)"]


def test_no_face_and_undecodable_videos_are_counted_in_their_cell(trained, tmp_path):
    """A detector that needs a face (min_person_s 1) on faceless clips answers no_face in every
    cell; a truncated file is undecodable; neither stops the grid."""
    from stylefusion.detector import StyleFusionDetector

    det = StyleFusionDetector.from_pretrained(trained["out"])
    det.config = det.config.replace(min_person_s=1.0)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(Path(trained["rows"][0].path).read_bytes()[:300])
    videos = [rb.VideoItem("v00", trained["rows"][0].path, 0), rb.VideoItem("v01", trained["rows"][1].path, 1),
              rb.VideoItem("broken", str(broken), 1), rb.VideoItem("gone", str(tmp_path / "gone.mp4"), 0)]
    grid = rb.run_grid(det, videos, "contrast:5")
    for c in grid["cells"]:
        assert c["answered"] == 0 and c["auc"] is None
        assert c["not_answered"] == {"missing": 1, "no_face": 2, "undecodable": 1}, c["not_answered"]
        assert c["fpr"] == 0 and c["tpr"] == 0


def test_auc_and_its_interval():
    y = np.array([0] * 20 + [1] * 20)
    p = np.r_[np.linspace(0, 0.6, 20), np.linspace(0.4, 1, 20)]
    auc = rb.video_auc(y, p)
    lo, hi = rb.auc_interval(y, p)
    from sklearn.metrics import roc_auc_score

    assert auc == pytest.approx(roc_auc_score(y, p)) and lo < auc < hi and hi <= 1
    assert rb.video_auc(np.zeros(3), np.ones(3)) is None


def test_configs_without_the_new_fields_load_and_their_card_has_no_table(trained):
    """Checkpoints trained before robustness and self-blends existed: same config, no new keys."""
    from stylefusion.card import render_model_card, robustness_rows
    from stylefusion.config import StyleFusionConfig
    from stylefusion.errors import ConfigError

    data = json.loads((trained["out"] / "config.json").read_text())
    for key in ("robustness", "pseudo_fakes"):
        data["training"].pop(key)
    old = StyleFusionConfig.from_dict(data)
    assert old.training.robustness == {} and old.training.pseudo_fakes == ""
    assert robustness_rows(old.training) == []
    card = render_model_card(old)
    assert "How it holds up" not in card and "real videos only" not in card
    assert rb.robustness_sentence(old, {"name": "blur", "level": 5}) is None
    data["training"]["robustness"] = [1, 2]
    with pytest.raises(ConfigError, match="training.robustness"):
        StyleFusionConfig.from_dict(data)


def test_an_answer_says_how_the_checkpoint_did_on_videos_like_it(trained):
    """detect() matches the file's bit rate and size to the nearest condition the checkpoint kept,
    and says it beside the answer (the app's panel shows the same sentence)."""
    from stylefusion.app.render import provenance_markdown
    from stylefusion.detector import StyleFusionDetector

    det = StyleFusionDetector.from_pretrained(trained["out"])
    res = det.detect(trained["rows"][-1].path)
    h = res.history
    expected = rb.robustness_sentence(det.config, {"bitrate_bps": h["bit_rate"],
                                                   "short_side": min(h["width"], h["height"]), "fps": h["fps"]})
    assert expected and h["robustness"] == expected and "this checkpoint's AUC was" in expected
    assert expected in provenance_markdown(res)

