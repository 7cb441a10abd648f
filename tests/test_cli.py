"""The command line: faces, detect (same result as the API), init, help, bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylefusion import StyleFusionDetector
from stylefusion.cli import COMMANDS, main


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylefusion", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_help_for_every_command():
    out = run_cli("--help")
    assert out.returncode == 0 and "detect" in out.stdout and "faces" in out.stdout
    for name, *_ in COMMANDS:
        out = run_cli(name, "--help")
        assert out.returncode == 0, (name, out.stderr)
        assert "usage: stylefusion " + name in out.stdout


def test_faces_command_on_carphone(carphone, tmp_path):
    out = run_cli("faces", carphone, "--out", tmp_path / "d")
    assert out.returncode == 0, out.stderr
    assert "face found in 32 of 32 frames" in out.stdout
    pngs = sorted((tmp_path / "d").glob("*.png"))
    assert len(pngs) == 32
    assert Image.open(pngs[0]).size == (256, 256)
    doc = json.loads((tmp_path / "d" / "faces.json").read_text())
    assert len(doc["frames"]) == 32 and doc["face_found"] == 32
    first = doc["frames"][0]
    assert set(first) == {"file", "source_index", "timestamp", "box", "probability", "fallback"}
    assert [f["source_index"] for f in doc["frames"]] == sorted(f["source_index"] for f in doc["frames"])


def test_detect_cli_equals_api(tiny_trained_ckpt, carphone, tmp_path):
    out = run_cli("detect", carphone, "--model", tiny_trained_ckpt, "--json", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    cli = json.loads((tmp_path / "r.json").read_text())["results"][0]
    api = StyleFusionDetector.from_pretrained(tiny_trained_ckpt).detect(carphone).to_dict()
    assert cli["label"] == api["label"]
    assert cli["p_fake"] == pytest.approx(api["p_fake"], abs=1e-6)
    for a, b in zip(cli["frames"], api["frames"]):
        assert a["source_index"] == b["source_index"] and a["box"] == b["box"]
        assert a["attention"] == pytest.approx(b["attention"], abs=1e-6)
        assert a["style_flow"] == pytest.approx(b["style_flow"], rel=1e-5, abs=1e-6)


def test_detect_batch_carries_on_past_bad_files(tiny_ckpt, carphone, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(carphone.read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    (folder / "notes.txt").write_text("ignored: not a video extension")
    out = run_cli("detect", folder, tmp_path / "missing.mp4", "--model", tiny_ckpt, "--csv", tmp_path / "r.csv")
    assert out.returncode == 1  # some files failed
    assert "Traceback" not in out.stderr
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    by_name = {Path(r["path"]).name: r for r in rows}
    assert set(by_name) == {"a.mp4", "broken.mp4", "missing.mp4"}
    assert by_name["a.mp4"]["label"] == "untrained"
    assert by_name["broken.mp4"]["label"] == "error" and "not a readable video" in by_name["broken.mp4"]["error"]
    assert "does not exist" in by_name["missing.mp4"]["error"]
    assert "2 failed" in out.stderr


def test_bad_model_is_one_line_error(tmp_path, carphone):
    out = run_cli("detect", carphone, "--model", tmp_path / "nope")
    assert out.returncode == 2
    lines = [l for l in out.stderr.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no such checkpoint folder" in lines[0]


def test_faces_bad_video_is_one_line_error(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"")
    out = run_cli("faces", bad, "--out", tmp_path / "o")
    assert out.returncode == 2 and out.stderr.strip() == f"error: {bad}: file is empty"


def test_init_in_process(tmp_path, capsys):
    assert main(["init", "--preset", "tiny", "--out", str(tmp_path / "t"), "--seed", "3"]) == 0
    assert "UNTRAINED" in capsys.readouterr().out
    det = StyleFusionDetector.from_pretrained(tmp_path / "t")
    assert det.config.preset == "tiny" and det.config.trained is False
    assert det.config.provenance["init"]["seed"] == 3
