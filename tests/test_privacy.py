"""The page's privacy promise, tested through the real server: nothing of an analysis stays on disk.

The page says that an upload is deleted when its analysis ends, and the face crops and the JSON
report within a stated time. This test serves ``python app.py`` (a tiny untrained checkpoint,
``STYLEFUSION_KEEP_S=4`` so that the stated time is seconds), uploads a clip that exists nowhere
else (the carphone sequence with a random stamp, under a random name) through gradio_client,
downloads the report, waits the time the page states, and then searches Gradio's temporary folder,
the server's temporary folder and the whole of /tmp for any copy of the video or of the report:
by name, and by content for files of the same size. The client's own download folder (the
visitor's machine) is the one place left out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from helpers import load_app  # noqa: E402

app = load_app()


def _unique_clip(carphone: Path, out: Path) -> Path:
    """The carphone clip re-encoded with a random 8x8 stamp in a corner: bytes found nowhere else."""
    import av
    from videogen import encode_frames

    with av.open(str(carphone)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    stamp = np.random.default_rng(uuid.uuid4().int % 2**32).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for frame in frames:
        frame[-8:, -8:] = stamp
    height, width = frames[0].shape[:2]
    return encode_frames(out, frames, width=width, height=height, fps=30)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copies(roots: list[Path], token: str, originals: list[Path], skip: list[Path]) -> list[str]:
    """Files under ``roots`` whose name holds ``token`` or whose bytes equal one of ``originals``."""
    wanted = {p.stat().st_size: _sha(p) for p in originals}
    skip = [s.resolve() for s in skip]
    found: set[str] = set()
    for root in roots:
        for folder, dirs, files in os.walk(root, onerror=lambda _e: None):
            here = Path(folder).resolve()
            if any(here == s or s in here.parents for s in skip):
                dirs[:] = []
                continue
            for name in dirs + files:
                path = here / name
                if token in name:
                    found.add(str(path))
                    continue
                if name not in files or path.is_symlink():
                    continue
                try:
                    size = path.stat().st_size
                    if size in wanted and _sha(path) == wanted[size]:
                        found.add(str(path))
                except OSError:  # a file of someone else's, gone or unreadable
                    continue
    return sorted(found)


def _stated_seconds(page: str) -> int:
    """The time the page promises, in seconds ("deleted within 5 seconds" / "within 11 minutes")."""
    match = re.search(r"deleted within (\d+) (second|minute)s?", page)
    assert match, "the page must say within how long the crops and the report are deleted"
    return int(match.group(1)) * (60 if match.group(2) == "minute" else 1)


@pytest.mark.slow
def test_no_copy_of_the_video_or_the_report_is_left_after_the_stated_time(tiny_ckpt, carphone, tmp_path):
    from appserver import serve_app
    from gradio_client import Client, handle_file

    token = uuid.uuid4().hex[:12]
    (tmp_path / "in").mkdir()
    video = _unique_clip(carphone, tmp_path / "in" / f"privacy-{token}.mp4")
    gradio_tmp, server_tmp, downloads = tmp_path / "gradio", tmp_path / "server-tmp", tmp_path / "client"
    server_tmp.mkdir()
    env = {"GRADIO_TEMP_DIR": str(gradio_tmp), "TMPDIR": str(server_tmp), "STYLEFUSION_KEEP_S": "4"}
    roots = [gradio_tmp, server_tmp, Path("/tmp")]
    skip = [tmp_path / "in", downloads]  # the visitor's own files: the source video and what they downloaded

    with serve_app(tiny_ckpt, tmp_path / "app.log", timeout=180, env=env) as (url, proc):
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            page = response.read().decode()
        assert "Your video is deleted from this server as soon as its analysis ends" in page
        stated = _stated_seconds(page)
        assert stated == 5  # 4 s kept, swept every second

        client = Client(url, verbose=False, download_files=str(downloads))
        out = dict(zip(app.OUTPUTS, client.predict(handle_file(str(video)), api_name="/detect")))
        answered = time.monotonic()
        report = Path(out["report"])
        assert downloads in report.parents and report.name == f"privacy-{token}.stylefusion.json"
        doc = json.loads(report.read_text())
        assert doc["label"] == "untrained" and len(doc["people"]) == 1

        # The upload is gone as soon as the answer is delivered; the report is still served.
        upload_copies = _copies(roots, token, [video], skip)
        assert not [p for p in upload_copies if p.endswith(".mp4")], upload_copies
        served = [p for p in _copies([gradio_tmp, server_tmp], token, [report], skip)]
        assert served, "the report must stay downloadable for the stated time"

        time.sleep(max(0.0, stated + 1 - (time.monotonic() - answered)))
        assert proc.poll() is None  # deleted by the running server, not by its exit
        left = _copies(roots, token, [video, report], skip)
        assert left == [], left
        # Nor any crop: what remains in Gradio's folder is the page's own example video.
        examples = {_sha(Path(p)) for p in app.example_videos()}
        others = [p for p in gradio_tmp.rglob("*") if p.is_file() and _sha(p) not in examples]
        assert others == [], others

    log = (tmp_path / "app.log").read_text()
    assert token not in log  # the log notes the answer and the time, not the file's name
    assert "analysed an upload in" in log
    assert not list(server_tmp.glob("stylefusion-reports-*"))  # the app's report folder went with it


def test_an_upload_is_deleted_when_its_analysis_ends_even_on_error(tiny_ckpt, carphone, tmp_path, monkeypatch):
    """In-process, the app's own part of the promise: an upload is deleted as soon as its analysis
    ends, also when it fails, but not while another accepted request for the same file (Gradio
    stores both at one path) still waits; files outside Gradio's upload folder are never touched."""
    import shutil

    import gradio as gr

    root = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(root))
    ui = app.App.load(str(tiny_ckpt), demo_fallback=False)
    upload = root / "0123abcd" / "clip.mp4"
    upload.parent.mkdir(parents=True)
    shutil.copy(carphone, upload)

    for _ in range(2):  # two visitors sent the same file
        assert all(check["is_valid"] for check in ui.validate_inputs(str(upload), 1))
    ui.analyze(str(upload), 1, progress=None)
    assert upload.is_file()  # the second request still needs it
    *_outputs, res = ui.analyze(str(upload), 1, progress=None)
    assert not upload.exists() and not upload.parent.exists()  # and Gradio's folder of it
    assert res.label == "untrained"

    broken = root / "feedbeef" / "broken.mp4"
    broken.parent.mkdir()
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2048))
    ui.validate_inputs(str(broken), 1)
    with pytest.raises(gr.Error, match="Cannot analyse this file"):
        ui.analyze(str(broken), 1, progress=None)
    assert not broken.exists()

    ui.analyze(str(carphone), 1, progress=None)  # a path given in-process, outside the upload folder
    assert carphone.is_file()
    ui.retention.protect([str(upload)])  # an example's copy is the page's own file
    upload.parent.mkdir()
    shutil.copy(carphone, upload)
    ui.analyze(str(upload), 1, progress=None)
    assert upload.is_file()


def test_reports_expire_after_the_stated_time(monkeypatch, tmp_path):
    """The report is served from the app's folder for ``keep_s`` seconds, then deleted; all of it at exit."""
    from stylefusion.app.privacy import Retention, deleted_within_s, retention_markdown

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    kept = Retention(keep_s=1)
    first = Path(kept.write_report({"path": "/up/load/My clip.mp4", "label": "untrained"}))
    second = Path(kept.write_report({"path": "/elsewhere/My clip.mp4", "label": "untrained"}))
    assert first.name == second.name == "My_clip.stylefusion.json" and first != second
    assert tmp_path in first.parents and json.loads(first.read_text())["label"] == "untrained"
    time.sleep(deleted_within_s(1) + 0.5)
    assert not first.exists() and not first.parent.exists() and not second.exists()
    third = Path(kept.write_report({"path": "x.mp4"}))
    kept.close()
    assert not third.exists() and not list(tmp_path.glob("stylefusion-reports-*"))
    assert "within 11 minutes" in retention_markdown(600) and deleted_within_s(4) == 5

