"""The app's Live tab (issue 24): the webcam judged window by window, and nothing kept afterwards.

- the pure render helpers: a row per person (id, crop, latest state, "not enough yet", no verdict
  for an untrained checkpoint), a timeline that grows window by window with its skipped windows;
- the tab's callbacks on a scripted engine: one engine per browser session, closed (its buffers
  empty, nothing written to disk) when the stream stops or the page unloads, a limit on sessions;
- the tab's words: what it keeps (nothing), and what to do when the camera is denied or absent;
- the real page in headless Chromium, a generated two-person video fed as the webcam
  (``--use-file-for-fake-video-capture``): person rows, a timeline that grows, a screenshot.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from stylefusion.app import live_tab  # noqa: E402
from stylefusion.app.live_tab import LiveTab, LiveView, PersonState, people_html, timeline_html  # noqa: E402
from stylefusion.live import LiveRecord, LiveSummary  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


# ---------------------------------------------------------------------------------------------
# a scripted engine with the contract of stylefusion.live (records are what the tab draws)
# ---------------------------------------------------------------------------------------------
# The engine's own record types: the stand-in below makes what the real engine makes.
Rec, Summary = LiveRecord, LiveSummary


@dataclass
class ScriptedSession:
    """Windows of ``window_s`` in stream time: person 0 judged in each, person 1 "not enough yet" in
    the first; window 2 skipped. Keeps the frames of the current window, as an engine buffers them."""

    detector: object
    window_s: float | None = None
    keep_crops: bool = True
    label: str = "untrained"
    frames: list = field(default_factory=list)
    out: list = field(default_factory=list)
    window: int = 0
    closed: bool = False
    ended: str = ""

    def push(self, frame: np.ndarray, t: float) -> None:
        assert not self.closed
        w = self.window_s or 3.0
        self.frames.append(frame)
        if t >= (self.window + 1) * w:
            i, start, end = self.window, self.window * w, (self.window + 1) * w
            if i == 2:
                self.out.append(Rec("skipped", i, start, end, message="not analysed: 6.2 s behind"))
            else:
                self.out.append(Rec("judged", i, start, end, person=0, label=self.label,
                                    p_fake=None if self.label == "untrained" else 0.9, latency_s=0.5,
                                    crop=frame[:40, :40].copy()))
                self.out.append(Rec("not_enough_yet" if i == 0 else "judged", i, start, end, person=1,
                                    label=None if i == 0 else self.label, latency_s=0.5, crop=frame[-40:, -40:].copy(),
                                    message="seen 1.0 s of 3 s" if i == 0 else ""))
            self.window += 1
            self.frames = []

    def poll(self) -> list:
        out, self.out = self.out, []
        return out

    @property
    def summary(self) -> Summary:
        return Summary(2 if self.window else 0, max(0, self.window - (self.window > 2)), int(self.window > 2),
                       0.5 if self.window else None, 0.5 if self.window else None, self.ended)

    def close(self, ended: str = "", *, flush: bool = True) -> Summary:
        self.closed, self.ended, self.frames, self.out = True, ended or "stopped after 0:10", [], []
        return self.summary


class FakeDetector:
    class config:  # noqa: N801 - the attribute the tab reads
        trained = False
        window_s = 15.0


def _request(session: str):
    return type("Request", (), {"session_hash": session})()


def _frame(i: int = 0) -> np.ndarray:
    return np.full((120, 160, 3), 40 + i % 100, np.uint8)


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


# ---------------------------------------------------------------------------------------------
# the render helpers
# ---------------------------------------------------------------------------------------------
def test_person_rows_show_id_crop_and_latest_state():
    crop = np.zeros((50, 40, 3), np.uint8)
    untrained = Rec("judged", 1, 3.0, 6.0, person=0, label="untrained", latency_s=0.8, crop=crop)
    waiting = Rec("not_enough_yet", 1, 3.0, 6.0, person=1, message="seen 1.2 s of 3 s")
    fake = Rec("judged", 1, 3.0, 6.0, person=2, label="fake", p_fake=0.912)
    rows = people_html([PersonState(1, waiting), PersonState(0, untrained, live_tab.crop_data_url(crop)),
                        PersonState(2, fake)], trained=False)
    # one row per person, by id, with their crop inline (a data: URL: no file) and their state in words
    assert [int(x) for x in re.findall(r'id="live-person-(\d+)"', rows)] == [0, 1, 2]
    assert rows.count("data:image/jpeg;base64,") == 1
    assert "person 0</span> · <span class=\"live-state\">present · no verdict (untrained checkpoint)" in rows
    assert "not enough yet: seen 1.2 s of 3 s" in rows
    assert "Likely FAKE (p_fake 0.912)" in rows
    assert "latest window 0:03–0:06, answered 0.8 s after its end" in rows
    assert "Nobody yet" in people_html([])
    # more people than rows: counted in a line
    many = people_html([PersonState(i, untrained) for i in range(10)], max_rows=8)
    assert many.count('class="live-person"') == 8 and "2 more people on camera" in many


def test_state_words_never_turn_not_enough_or_untrained_into_a_verdict():
    assert live_tab.state_words(Rec("not_enough_yet", 0, 0, 3, person=0)).startswith("not enough yet")
    assert "no verdict" in live_tab.state_words(Rec("judged", 0, 0, 3, person=0, label="untrained"))
    assert live_tab.state_words(Rec("judged", 0, 0, 3, person=0, label="real", p_fake=0.1)) == \
        "Likely REAL (p_fake 0.100)"
    assert live_tab.state_words(Rec("judged", 0, 0, 3, person=0, label="uncertain", p_fake=0.5)).startswith("UNCERTAIN")
    assert "cannot judge" in live_tab.state_words(Rec("judged", 0, 0, 3, person=0, label="unsupported"))


def test_timeline_grows_window_by_window_with_skipped_windows():
    recs = [Rec("judged", 0, 0, 3, person=0, label="untrained"),
            Rec("not_enough_yet", 0, 0, 3, person=1),
            Rec("judged", 1, 3, 6, person=0, label="untrained"), Rec("judged", 1, 3, 6, person=1, label="untrained"),
            Rec("skipped", 2, 6, 9, message="window 0:06–0:09 not analysed: 6.2 s behind"),
            Rec("no_face", 3, 9, 12), Rec("ended", 3, 0, 12)]
    one = timeline_html(recs[:2])
    all_ = timeline_html(recs)
    assert 'data-windows="1"' in one and 'data-windows="4"' in all_
    assert all_.count('class="live-person-row"') == 2
    assert "0:06–0:09" in all_ and "not analysed: 6.2 s behind" in all_
    # a skipped window is skipped for the window and for each person on camera
    assert all_.count('data-kind="skipped"') == 3
    assert 'data-kind="not_enough_yet"' in all_ and "not enough yet" in all_
    assert 'data-kind="no_face"' in all_ and ">seen<" in all_
    # bounded: the latest windows only, the others counted
    long = [Rec("judged", i, 3 * i, 3 * i + 3, person=0, label="real", p_fake=0.2) for i in range(30)]
    html = timeline_html(long, max_windows=24)
    assert len(re.findall(r"<th>\d+:\d\d–", html)) == 24
    assert "6 earlier windows not shown" in html and ">REAL 0.20<" in html


def test_what_a_view_holds_stays_bounded_over_a_long_stream():
    """An hour of 3 s windows, a new person every 10 windows: the view keeps the latest windows'
    records and the people seen in them, one small crop each."""
    view = LiveView(ScriptedSession(None), trained=False)
    crop = np.zeros((64, 64, 3), np.uint8)
    for w in range(1200):
        view._ingest([Rec("judged", w, 3.0 * w, 3.0 * w + 3, person=w // 10, label="untrained", crop=crop.copy()),
                      Rec("skipped", w, 3.0 * w, 3.0 * w + 3) if w % 7 == 0 else
                      Rec("not_enough_yet", w, 3.0 * w, 3.0 * w + 3, person=999)])
    assert len({r.window for r in view.records}) == live_tab.MAX_TIMELINE_WINDOWS
    assert view.dropped_windows == 1200 - live_tab.MAX_TIMELINE_WINDOWS
    assert len(view.people) <= 5 and all(r.crop is None for r in view.records)
    rows = people_html(view.people.values(), trained=False)
    assert 'id="live-person-119"' in rows and 'id="live-person-0"' not in rows


# ---------------------------------------------------------------------------------------------
# the callbacks: one engine per browser session, closed and emptied when the session ends
# ---------------------------------------------------------------------------------------------
def test_a_session_is_closed_and_emptied_when_the_stream_stops(tmp_path, monkeypatch):
    import tempfile

    # This process's temp folder and Gradio's cache, fresh: whatever the session wrote would be there.
    temp = tmp_path / "tmp"
    (temp / "gradio").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(temp / "gradio"))
    tab = LiveTab(FakeDetector(), window_s=3.0, session_factory=ScriptedSession)
    req = _request("a")
    outs = []
    t = 100.0
    for i in range(50):  # 10 s of stream at 5 frames a second
        monkeypatch.setattr(live_tab.time, "monotonic", lambda t=t + i * 0.2: t)
        outs.append(tab.on_frame(_frame(i), req))
    view = tab.views["a"]
    engine = view.session
    assert isinstance(engine, ScriptedSession) and engine.window == 3 and engine.frames
    drawn = [o for o in outs if not isinstance(o[1], dict)]  # gr.skip() is a dict update
    assert len(drawn) >= 3, "the page is redrawn as windows complete"
    status, people, timeline = drawn[-1]
    assert "**Watching**" in status and 'id="live-person-0"' in people and 'id="live-person-1"' in people
    assert 'data-windows="3"' in timeline and 'data-kind="skipped"' in timeline

    status, people, timeline = tab.on_stop(req)
    assert "**Stopped after 0:10.**" in status and "frames, crops and records are gone" in status
    assert 'id="live-person-1"' in people  # the last picture stays on the page, in the browser
    # ...and nothing on the server: the engine closed, its buffers and the view's empty, forgotten
    assert engine.closed and engine.frames == [] and engine.out == [] and engine.ended == "stopped after 0:10"
    assert view.closed and not view.records and not view.people and "a" not in tab.views
    # nothing written to disk by the whole session
    assert _files(temp) == set()

    # Record again: a new engine
    tab.on_frame(_frame(), req)
    assert tab.views["a"].session is not engine


def test_unload_idle_and_the_session_limit(monkeypatch):
    tab = LiveTab(FakeDetector(), window_s=3.0, session_factory=ScriptedSession, max_sessions=2, idle_close_s=30)
    clock = {"t": 0.0}
    monkeypatch.setattr(live_tab.time, "monotonic", lambda: clock["t"])
    tab.on_frame(_frame(), _request("a"))
    tab.on_frame(_frame(), _request("b"))
    busy = tab.on_frame(_frame(), _request("c"))
    assert "Busy" in busy[0] and "c" not in tab.views
    # the page is closed or reloaded: its engine is closed at once
    a = tab.views["a"].session
    tab.on_unload(_request("a"))
    assert a.closed and "page was closed" in a.ended and "a" not in tab.views
    # a browser that stopped sending frames without telling us: closed by the next sweep
    b = tab.views["b"].session
    clock["t"] = 31.0
    tab.on_frame(_frame(), _request("c"))
    assert b.closed and "b" not in tab.views and "c" in tab.views
    tab.close_all()
    assert not tab.views


def test_trained_answers_are_drawn_with_their_probability():
    tab = LiveTab(FakeDetector(), window_s=3.0,
                  session_factory=lambda det, **kw: ScriptedSession(det, label="fake", **kw))
    view = tab.view_for("x")
    for i in range(20):
        view.push(_frame(i), now=i * 0.2)
    view.update()
    _, people, timeline = tab.render(view)
    assert "Likely FAKE (p_fake 0.900)" in people and ">FAKE 0.90<" in timeline


# ---------------------------------------------------------------------------------------------
# the page: the tab's words, and the upload tab untouched
# ---------------------------------------------------------------------------------------------
def test_the_tab_says_what_it_keeps_and_what_to_do_without_a_camera(tiny_ckpt):
    from stylefusion.app.page import App

    ui = App.load(str(tiny_ckpt), demo_fallback=False, live_window_s=3.0)
    page = ui.blocks()
    blocks = {getattr(b, "elem_id", None): b for b in page.blocks.values()}
    intro = blocks["live-intro"].value
    for words in ("Nothing is kept", "nothing is written to disk", "deleted", "denied", "allow the camera",
                  "untrained", "never a verdict", "not enough yet", "skipped", "Every 3 s window"):
        assert words in intro, words
    # both tabs, the upload tab's elements and API as they were
    labels = [b.label for b in page.blocks.values() if isinstance(b, gr.Tab)]
    assert labels == ["Video file", "Live"]
    assert {"video-input", "analyze", "verdict", "live-camera", "live-people-box", "live-timeline-box"} <= set(blocks)
    cam = blocks["live-camera"]
    assert cam.streaming and cam.sources == ["webcam"]
    assert any(dep.api_name == "detect" for dep in page.fns.values())


# ---------------------------------------------------------------------------------------------
# the real page in headless Chromium, a generated two-person video as the webcam
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def webcam_y4m(tmp_path_factory) -> Path:
    """The two-people scene of test_tracking (carphone man, Grace Hopper), 4 s at 25 fps, as y4m:
    Chromium's fake camera plays it in a loop."""
    import av

    from test_live import H, W, _scene  # the same scene the stream tests watch

    w, h = W, H
    path = tmp_path_factory.mktemp("webcam") / "two_people.y4m"
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for img in _scene(100):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_the_real_engine_behind_the_tab_two_people_then_nothing_kept(tiny_detector, webcam_y4m):
    """The tab over :class:`stylefusion.live.LiveSession` on the two-people scene at the webcam's pace
    (5 frames a second, 2 s windows): a row per person with a crop, no verdict (untrained), the
    engine's own records; once stopped, the engine holds no frame, window or record."""
    import av

    with av.open(str(webcam_y4m)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][::5]  # 25 fps -> 5 a second
    tab = LiveTab(tiny_detector, window_s=2.0)
    view = tab.view_for("s")
    engine = view.session
    seen = []
    start = time.monotonic()
    for i, frame in enumerate(frames + frames[:10]):  # 6 s
        time.sleep(max(0.0, start + i * live_tab.STREAM_EVERY_S - time.monotonic()))
        view.push(frame)
        view.update()
        seen += [r for r in view.records if r not in seen]
    status, people, timeline = tab.on_stop(_request("s"))
    assert "**Stopped after 0:0" in status and "2 people" in status, status
    assert 'id="live-person-0"' in people and 'id="live-person-1"' in people and people.count("data:image/jpeg") == 2
    assert "no verdict (untrained checkpoint)" in people
    assert int(re.search(r'data-windows="(\d+)"', timeline).group(1)) >= 2
    judged = [r for r in seen if r.kind == "judged"]
    assert {r.person for r in judged} == {0, 1} and all(r.label == "untrained" and r.p_fake is None for r in judged)
    # nothing kept: the engine's buffers and queue empty, no record left, the view empty and forgotten
    assert engine.stats()["buffered_frames"] == 0 and engine.stats()["queued_windows"] == 0
    assert engine.poll() == [] and view.closed and not view.records and not view.people and not tab.views


@pytest.mark.slow
@pytest.mark.browser
def test_live_tab_in_headless_chromium_with_a_fake_webcam(tiny_ckpt, webcam_y4m, tmp_path):
    """Chromium's fake camera plays two people; the Live tab shows a row per person with a crop and
    no verdict (untrained), a timeline that grows; Stop closes the session, and the server's temp
    folders hold nothing new."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium to run the browser check")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives Debian's chromium)")
    from appserver import APP, serve_app

    shot_dir = Path(os.environ.get("STYLEFUSION_SCREENSHOTS") or tmp_path) / "live"
    shot_dir.mkdir(parents=True, exist_ok=True)
    temp = tmp_path / "server-tmp"
    (temp / "gradio").mkdir(parents=True)
    env = {"TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(temp / "gradio"), "STYLEFUSION_LIVE_WINDOW": None}
    log = tmp_path / "app.log"
    command = [sys.executable, str(APP), "--live-window", "3"]
    with serve_app(tiny_ckpt, log, timeout=120, env=env, command=command) as (url, _):
        before = _files(temp)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                      "--disable-sync", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                      f"--use-file-for-fake-video-capture={webcam_y4m}"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url, wait_until="domcontentloaded", timeout=60_000)
                page.get_by_role("tab", name="Live").click()
                intro = page.inner_text("#live-intro")
                page.locator("#live-camera [title='grant webcam access'] button").click()
                page.wait_for_selector("#live-camera button.capture-button", timeout=30_000)
                page.locator("#live-camera button.capture-button").click()  # Record: the stream starts
                t0 = time.monotonic()
                page.wait_for_function(
                    "() => document.querySelectorAll('#live-people .live-person img').length >= 2", timeout=90_000)
                windows_seen = []
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    n = int(page.locator("#live-timeline").get_attribute("data-windows") or 0)
                    if not windows_seen or n != windows_seen[-1]:
                        windows_seen.append(n)
                    if len(windows_seen) >= 2 and n >= 2:
                        break
                    page.wait_for_timeout(250)
                t_rows = time.monotonic() - t0
                page.wait_for_timeout(300)
                page.screenshot(path=str(shot_dir / "live_tab.png"), full_page=True)
                rows = [page.inner_text(f"#live-person-{i}") for i in range(2)]
                timeline = page.inner_text("#live-timeline")
                page.locator("#live-camera button.capture-button").click()  # Stop
                page.wait_for_function(
                    "() => (document.querySelector('#live-status')?.innerText || '').includes('Stopped')",
                    timeout=30_000)
                stopped = page.inner_text("#live-status")
                camera_note = page.inner_text("#live-camera-note")
                page.screenshot(path=str(shot_dir / "live_tab_stopped.png"), full_page=True)
            finally:
                browser.close()
            # The camera denied (no fake consent: the browser refuses it): a line under the camera says so.
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url, wait_until="domcontentloaded", timeout=60_000)
                page.get_by_role("tab", name="Live").click()
                page.locator("#live-camera [title='grant webcam access'] button").click()
                page.wait_for_function(
                    "() => (document.querySelector('#live-camera-note')?.innerText || '').includes('blocked')",
                    timeout=30_000)
                denied_note = page.inner_text("#live-camera-note")
                page.screenshot(path=str(shot_dir / "live_tab_denied.png"))
            finally:
                browser.close()
        deadline = time.monotonic() + 20
        while "live session closed" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.5)
        after = _files(temp)
        server_log = log.read_text(errors="replace")
    assert "Nothing is kept" in intro and "denied" in intro and "never a verdict" in intro
    for i, text in enumerate(rows):
        assert f"person {i}" in text and ("no verdict (untrained checkpoint)" in text or "not enough yet" in text), text
    assert windows_seen[-1] >= 2 and len(windows_seen) >= 2, windows_seen  # the timeline grew
    assert "person 0" in timeline and "person 1" in timeline and "0:00–0:03" in timeline
    assert "Stopped" in stopped and "gone from the server" in stopped
    assert camera_note.strip() == "" and "site settings" in denied_note and "reload" in denied_note
    assert "live session closed" in server_log, server_log[-2000:]
    assert after - before == set(), sorted(after - before)  # no frame, crop or report on disk
    (shot_dir / "live_timing.json").write_text(json.dumps({"record_to_two_windows_s": t_rows,
                                                           "windows_seen": windows_seen}))
