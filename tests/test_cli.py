"""The command line: faces, detect (same result as the API), init, help, bad input."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import main_segment
from PIL import Image

from stylefusion import StyleFusionDetector
from stylefusion.cli import COMMANDS, main


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylefusion", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


#: The options each command's --help must show (a new command must be listed here).
KEY_OPTIONS = {
    "faces": ["video", "--out", "--model", "--frames", "--device", "--max-windows", "--max-people"],
    "detect": ["paths", "--model", "--json", "--csv", "--device", "--quiet", "--max-windows", "--max-people"],
    "init": ["--preset", "--out", "--seed"],
    "convert": ["--psp", "--slow-r50", "--out", "--levels", "--head", "--preset"],
    "manifest": ["--dataset", "--root", "--out", "--ratios", "--seed"],
    "extract": ["--manifest", "--model", "--cache"],
    "train": ["--cache", "--out", "--model"],
    "evaluate": ["--model", "--cache", "--split", "--report"],
    "card": ["--model", "--out", "--repo-id"],
    "push": ["--model", "--repo-id", "--dry-run"],
    "space": ["--out", "--model"],
    "serve": ["--model", "--host", "--port", "--live-window"],
    "watch": ["source", "--model", "--window", "--hop", "--max-lag", "--connect-timeout", "--max-people",
              "--realtime", "--follow"],
}

#: `python -m stylefusion --help` in a fresh interpreter, then whether it imported torch.
_TOP_HELP = """
import runpy, sys
sys.argv = ["stylefusion", "--help"]
try:
    runpy.run_module("stylefusion", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print("exit", code, "torch imported:", "torch" in sys.modules)
"""


def test_top_level_help_runs_without_importing_torch():
    out = subprocess.run([sys.executable, "-c", _TOP_HELP], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("exit 0 torch imported: False"), out.stdout
    assert out.stdout.startswith("usage: stylefusion")
    for name, *_ in COMMANDS:
        assert name in out.stdout, name


@pytest.mark.parametrize("name", [c[0] for c in COMMANDS])
def test_help_of_each_command(name, capsys):
    assert name in KEY_OPTIONS, f"list the key options of the new command {name!r} in KEY_OPTIONS"
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: stylefusion " + name)
    for option in KEY_OPTIONS[name]:
        assert option in text, (name, option)


def test_faces_command_on_carphone(carphone, tmp_path):
    out = run_cli("faces", carphone, "--out", tmp_path / "d")
    assert out.returncode == 0, out.stderr
    assert "wrote 32 crops of 1 judged segments (1 people)" in out.stdout
    pngs = sorted((tmp_path / "d" / "person_0").glob("*.png"))
    assert len(pngs) == 32
    assert Image.open(pngs[0]).size == (256, 256)
    doc = json.loads((tmp_path / "d" / "faces.json").read_text())
    assert [p["id"] for p in doc["people"]] == [0] and len(doc["windows"]) == 1
    seg = main_segment(doc)
    assert len(seg["frames"]) == 32 and seg["distinct_frames"] == 32 and seg["window"] == 0
    first = seg["frames"][0]
    assert set(first) == {"file", "source_index", "timestamp", "box", "detection_prob", "fallback"}
    assert [f["source_index"] for f in seg["frames"]] == sorted(f["source_index"] for f in seg["frames"])


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
    # one row per segment: the carphone clip is one person in one stretch
    a = [r for r in rows if Path(r["path"]).name == "a.mp4"]
    assert len(a) == 1 and a[0]["person"] == "0" and a[0]["window"] == "0" and a[0]["judged"] == "True"
    assert a[0]["segment_label"] == "untrained" and a[0]["distinct_frames"] == "32"
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


def test_default_model_offline_says_why_and_what_to_do(carphone, tmp_path):
    """A fresh machine, offline, no --model: the packaged default has no published weights. One line
    that says so (and that the Hub is offline), points to --model, `stylefusion init` and the
    demo, and exit 2; the app's page gives the same reason (tests/test_app.py)."""
    env = {k: v for k, v in os.environ.items() if k != "STYLEFUSION_MODEL"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), STYLEFUSION_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "stylefusion", "detect", str(carphone)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no --model given, and the default model "
                                                   "stylefusion/stylefusion-ffpp cannot be loaded: ")
    line = lines[0]
    assert "no trained weights are published under this id yet" in line
    assert "HF_HUB_OFFLINE=1 is set and it is not in the local hub cache" in line
    assert "HF_TOKEN" not in line and "check the repo id" not in line  # not the user's setup to blame
    for pointer in ("--model DIR_OR_REPO_ID", "stylefusion init --out DIR", "`stylefusion serve`"):
        assert pointer in line, pointer
    assert not (tmp_path / "cache").exists()  # nothing was built behind the user's back

    # Once the app has built its demo checkpoint, the line names its folder as a --model value.
    from stylefusion.app import demo

    folder = tmp_path / "cache" / demo.demo_folder("tiny").name
    assert main(["init", "--preset", "tiny", "--out", str(folder)]) == 0
    env["STYLEFUSION_DEMO_PRESET"] = "tiny"
    again = subprocess.run([sys.executable, "-m", "stylefusion", "detect", str(carphone)], capture_output=True,
                           text=True, timeout=300, env=env)
    assert again.returncode == 2 and f"--model {folder} (the app's demo checkpoint)" in again.stderr


def test_detect_shows_progress_within_a_video_and_time_per_stretch(tiny_ckpt, carphone, capsys, monkeypatch):
    """A bar within each video over the detector's stages (as the app's), and a closing summary
    with the time per stretch."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:  # tqdm draws only on a terminal
            return True

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["detect", str(carphone), "--model", str(tiny_ckpt), "--quiet"]) == 0
    text = err.getvalue()
    for stage in ("reading frames", "finding faces", "running the networks", "deciding"):
        assert f"carphone_pristine.mp4 ({stage})" in text, stage
    assert "100%" in text
    summary = text.strip().splitlines()[-1].split("\r")[-1]
    assert re.fullmatch(r"1 of 1 videos analysed, 0 failed; 1 stretch in [\d.]+ s, [\d.]+ s per stretch", summary), summary
