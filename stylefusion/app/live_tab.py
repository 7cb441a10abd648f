"""The Live tab: the browser's webcam, judged window by window while it plays (issue 24).

A thin layer over :class:`stylefusion.live.LiveSession`, the engine behind ``stylefusion watch``
and ``detector.watch``: the page shows the same :class:`~stylefusion.live.LiveRecord` s, nothing
computed here. The browser streams webcam frames with Gradio's streaming input
(``gr.Image(sources=["webcam"], streaming=True)`` and ``.stream``); each frame is pushed into the
browser session's own :class:`LiveSession` at its arrival time (seconds since the first frame),
and the records it has ready are drawn:

- :func:`people_html`: one row per person: id, their latest face crop, and their latest state
  (an answer, "not enough yet", or, with an untrained checkpoint, presence without a verdict);
- :func:`timeline_html`: a strip that grows window by window, one line per person, with the
  windows that were skipped (the engine fell behind) or had no face;
- :func:`status_markdown`: the counts so far, then the summary once the stream stops.

What it keeps, and for how long: frames and crops stay in the server's memory, in the session's
:class:`LiveView` only. Nothing is written to disk: the crops reach the page as inline ``data:``
images inside HTML (an image component would store each one in Gradio's cache folder), and frames
arrive as ``data:`` URLs that Gradio decodes in memory. When the stream stops (the *Stop* button,
or the time limit), or the page is closed or reloaded (``demo.unload``), the session is closed and
its buffers dropped; the tab says so in words.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from stylefusion.app.render import label_words, person_colour, span
from stylefusion.results import Label

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from stylefusion.live import LiveRecord, LiveSession, LiveSummary

logger = logging.getLogger("stylefusion.app.live")

#: Seconds between two webcam frames sent by the browser (5 frames a second: enough for the front
#: end's sampling of a window, and a few small requests a second per viewer).
STREAM_EVERY_S = 0.2
#: The longest one stream runs before Gradio ends it (the summary is shown; Record starts another).
TIME_LIMIT_S = 30 * 60
#: Live sessions at once on this server: each runs the networks in its own worker, beside uploads.
MAX_LIVE_SESSIONS = 2
#: A session whose browser sent no frame for this long is closed (its stream ended without telling us).
IDLE_CLOSE_S = 60.0
#: Windows the timeline shows (the latest ones): what the page keeps stays bounded over an hour.
MAX_TIMELINE_WINDOWS = 24
#: Person rows shown at most (the latest seen first beyond that are counted in a line).
MAX_LIVE_PEOPLE = 8
#: The option's environment variable: the live window in seconds (``--live-window``).
ENV_LIVE_WINDOW = "STYLEFUSION_LIVE_WINDOW"
#: What the page asks of the camera (``getUserMedia`` constraints).
CAMERA_CONSTRAINTS = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}
#: Side of the face crop shown in a person's row (pixels).
CROP_PX = 96

#: Colours of the timeline's cells: answers, then the states that are not answers.
_CELL = {
    Label.FAKE.value: ("#ffe3e3", "#c92a2a"), Label.REAL.value: ("#d3f9d8", "#2b8a3e"),
    Label.UNCERTAIN.value: ("#fff3bf", "#e67700"), Label.UNTRAINED.value: ("#d0ebff", "#1864ab"),
    "not_enough_yet": ("#f1f3f5", "#868e96"), "skipped": ("#e9ecef", "#495057"),
    "no_face": ("#ffffff", "#adb5bd"), "error": ("#fff0f6", "#a61e4d"), "other": ("#f8f0fc", "#862e9c"),
}
#: Run in the browser when the page loads: says in the tab when the camera is denied or absent. The
#: webcam component's own request fails silently (its promise is not caught), so the failure is read
#: from the browser: the permission's state, the devices it lists, and the rejected request.
CAMERA_CHECK_JS = """
() => {
  const say = (text) => {
    const el = document.querySelector('#live-camera-note');
    if (el) { el.innerText = text; el.style.display = text ? 'block' : 'none'; }
  };
  const DENIED = 'The camera is blocked for this page. Allow it in the site settings (the camera icon in the ' +
                 'address bar), then reload the page.';
  const ABSENT = 'No camera was found. Connect one and reload the page, or use the Video file tab.';
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say('This browser gives this page no camera: it needs HTTPS (or localhost). Use the Video file tab.');
    return;
  }
  window.addEventListener('unhandledrejection', (e) => {
    const name = e.reason && e.reason.name;
    if (name === 'NotAllowedError' || name === 'SecurityError') say(DENIED);
    else if (name === 'NotFoundError' || name === 'OverconstrainedError') say(ABSENT);
    else if (name === 'NotReadableError') say('The camera is in use by another program: close it and reload.');
  });
  navigator.mediaDevices.enumerateDevices()
    .then((d) => { if (!d.some((x) => x.kind === 'videoinput')) say(ABSENT); }).catch(() => {});
  if (navigator.permissions) {
    navigator.permissions.query({name: 'camera'}).then((st) => {
      const update = () => { if (st.state === 'denied') say(DENIED); else if (st.state === 'granted') say(''); };
      update();
      st.onchange = update;
    }).catch(() => {});
  }
}
"""
LIVE_CSS = """
.live-people { display: flex; flex-direction: column; gap: 6px; }
.live-person { display: flex; align-items: center; gap: 12px; padding: 6px 10px; border: 1px solid #dee2e6;
  border-left-width: 6px; border-radius: 6px; }
.live-person img, .live-person .live-nocrop { width: 72px; height: 72px; object-fit: cover; border-radius: 4px;
  flex: none; background: #f1f3f5; }
.live-person .live-who { font-weight: 600; }
.live-person .live-state { font-size: 1.05em; }
.live-person .live-when { color: #868e96; font-size: 0.85em; }
.live-timeline { overflow-x: auto; }
.live-timeline table { border-collapse: separate; border-spacing: 3px; font-size: 0.8em; border: none;
  width: auto; margin: 0; }
.live-timeline th, .live-timeline td { border: none !important; }
.live-timeline th { font-weight: normal; color: #868e96; white-space: nowrap; padding: 0 6px; text-align: left; }
.live-timeline td { min-width: 64px; height: 28px; text-align: center; border-radius: 4px; padding: 0 6px;
  white-space: nowrap; }
.live-timeline h4 { margin: 4px 0; }
.live-legend { color: #868e96; font-size: 0.85em; margin: 4px 0 0 0; }
#live-camera-note { display: none; color: #c92a2a; font-weight: 600; margin: 6px 0; }
.live-timeline td.live-skipped { background: repeating-linear-gradient(45deg, #e9ecef, #e9ecef 5px, #f8f9fa 5px,
  #f8f9fa 10px) !important; }
.live-timeline td.live-not_enough_yet { border: 1px dashed #adb5bd !important; }
.live-timeline td.live-empty { background: transparent; }
"""


# ---------------------------------------------------------------------------------------------
# pure helpers: what a record says, a crop as an inline image, the person rows, the timeline
# ---------------------------------------------------------------------------------------------
def state_words(rec: "LiveRecord", trained: bool = True) -> str:
    """A person's state in words, from their latest record, as the upload tab words answers.

    A judged record of an untrained checkpoint (label ``untrained``) says the person is present and
    that there is no verdict; "not enough yet" is a state, never a verdict.
    """
    if rec.kind == "not_enough_yet":
        return "not enough yet" + (f": {rec.message}" if rec.message else " (seen for less than a window)")
    if rec.kind != "judged":
        return rec.kind.replace("_", " ") + (f": {rec.message}" if rec.message else "")
    label = rec.label or Label.NOT_JUDGED.value
    try:
        label_enum = Label(label)
    except ValueError:
        return label
    if label_enum is Label.UNTRAINED or not trained and not label_enum.is_verdict:
        return "present · no verdict (untrained checkpoint)"
    if label_enum.is_verdict:
        words = {Label.FAKE: "Likely FAKE", Label.REAL: "Likely REAL", Label.UNCERTAIN: "UNCERTAIN"}[label_enum]
        return words + (f" (p_fake {rec.p_fake:.3f})" if rec.p_fake is not None else "")
    return label_words(label_enum) + (f": {rec.message}" if rec.message else "")


def cell_key(rec: "LiveRecord") -> str:
    """The timeline colour of a record: its label when judged, else its kind."""
    if rec.kind == "judged":
        return rec.label if rec.label in _CELL else "other"
    return rec.kind if rec.kind in _CELL else "other"


def cell_text(rec: "LiveRecord") -> str:
    """A timeline cell's few characters."""
    if rec.kind == "judged":
        short = {"fake": "FAKE", "real": "REAL", "uncertain": "UNCERTAIN", "untrained": "seen"}.get(rec.label or "")
        if short is None:
            return label_words(rec.label or Label.NOT_JUDGED.value).split(" (")[0]
        return short + (f" {rec.p_fake:.2f}" if rec.p_fake is not None and rec.label != "untrained" else "")
    return {"not_enough_yet": "not enough yet", "skipped": "skipped", "no_face": "no face",
            "not_judged": "not judged"}.get(rec.kind, rec.kind)


def crop_data_url(crop: np.ndarray | None, size: int = CROP_PX) -> str:
    """A face crop as an inline JPEG ``data:`` URL: shown by the page, never written to a file."""
    if crop is None or not isinstance(crop, np.ndarray) or crop.ndim != 3 or crop.size == 0:
        return ""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(crop[..., :3]).astype(np.uint8))
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class PersonState:
    """What one person's row shows: their latest record, and their latest face crop (as a data URL)."""

    person: int
    latest: "LiveRecord"
    crop_url: str = ""
    last_answer: "LiveRecord | None" = None  # their latest judged record (kept when "not enough yet" follows)


def _when(rec: "LiveRecord") -> str:
    text = f"latest window {span(rec.start_s, rec.end_s)}"
    if rec.latency_s is not None:
        text += f", answered {rec.latency_s:.1f} s after its end"
    return text


def people_html(people: Iterable[PersonState], *, trained: bool = True, max_rows: int = MAX_LIVE_PEOPLE) -> str:
    """One row per person (by id): a colour, their face crop, their latest state and its window.

    Ids are those of the engine (and of ``stylefusion watch``): a person keeps their id while on
    camera. With nobody yet, a line says what will appear here.
    """
    people = list(people)
    # the people of the latest windows when there are more than rows, listed by id
    shown = sorted(sorted(people, key=lambda p: (-p.latest.window, p.person))[:max_rows], key=lambda p: p.person)
    if not people:
        return ('<div class="live-people" id="live-people"><p class="live-empty-note">Nobody yet: people appear '
                "here once the first window with a face is done.</p></div>")
    rows = []
    for p in shown:
        colour = person_colour(p.person)
        crop = (f'<img src="{p.crop_url}" alt="face of person {p.person}">' if p.crop_url
                else '<div class="live-nocrop"></div>')
        state = state_words(p.latest, trained)
        earlier = ""
        if p.latest.kind != "judged" and p.last_answer is not None and p.last_answer is not p.latest:
            earlier = (f'<div class="live-when">before that, {html.escape(state_words(p.last_answer, trained))} '
                       f"({span(p.last_answer.start_s, p.last_answer.end_s)})</div>")
        rows.append(
            f'<div class="live-person" id="live-person-{p.person}" style="border-left-color:{colour}">{crop}'
            f'<div><div><span class="live-who" style="color:{colour}">person {p.person}</span> · '
            f'<span class="live-state">{html.escape(state)}</span></div>'
            f'<div class="live-when">{html.escape(_when(p.latest))}</div>{earlier}</div></div>')
    more = len(people) - max_rows
    if more > 0:
        rows.append(f'<p class="live-more">{more} more {"person" if more == 1 else "people"} on camera '
                    "(see the timeline).</p>")
    return '<div class="live-people" id="live-people">' + "".join(rows) + "</div>"


def timeline_html(records: Iterable["LiveRecord"], *, max_windows: int = MAX_TIMELINE_WINDOWS,
                  earlier: int = 0) -> str:
    """The timeline: a column per window (the latest ``max_windows``), a line per person.

    The first line is the window's own state: analysed, *skipped* (the engine fell behind; the
    message says by how much), *no face*. A person's cell is their record in that window (an answer,
    "seen" for an untrained checkpoint, "not enough yet"), empty where they were not on camera.
    ``earlier`` counts windows already dropped from the view (said in a line under the strip).
    """
    windows: dict[int, dict[str, Any]] = {}
    people: set[int] = set()
    for rec in records:
        if rec.kind in ("ended",):
            continue
        w = windows.setdefault(rec.window, {"start": rec.start_s, "end": rec.end_s, "state": None, "people": {}})
        if rec.person is None:
            w["state"] = rec
        else:
            w["people"][rec.person] = rec
            people.add(rec.person)
    if not windows:
        return ('<div class="live-timeline" id="live-timeline" data-windows="0"><h4>Timeline</h4>'
                '<p class="live-legend">It grows here, one column per window, once the first window is done.</p></div>')
    order = sorted(windows)
    dropped = max(0, len(order) - max_windows)
    order = order[dropped:]
    earlier += dropped

    def td(rec: "LiveRecord | None", title: str = "") -> str:
        if rec is None:
            return '<td class="live-empty"></td>'
        key = cell_key(rec)
        bg, fg = _CELL[key]
        tip = html.escape(title or rec.message or cell_text(rec), quote=True)
        return (f'<td class="live-cell live-{html.escape(rec.kind)}" data-kind="{html.escape(rec.kind)}" '
                f'style="background:{bg};color:{fg}" title="{tip}">{html.escape(cell_text(rec))}</td>')

    head = "".join(f'<th>{span(windows[w]["start"], windows[w]["end"])}</th>' for w in order)
    lines = ['<tr><th></th>' + head + "</tr>"]
    state_cells = []
    for w in order:
        state = windows[w]["state"]
        if state is None:
            state_cells.append('<td class="live-empty" style="color:#868e96">analysed</td>' if windows[w]["people"]
                               else '<td class="live-empty"></td>')
        else:
            state_cells.append(td(state))
    lines.append('<tr class="live-window-row"><th>window</th>' + "".join(state_cells) + "</tr>")
    for pid in sorted(people):
        colour = person_colour(pid)
        cells = []
        for w in order:
            rec = windows[w]["people"].get(pid)
            if rec is None and windows[w]["state"] is not None and windows[w]["state"].kind == "skipped":
                rec = windows[w]["state"]  # a skipped window is skipped for everyone on camera
            cells.append(td(rec))
        lines.append(f'<tr class="live-person-row" data-person="{pid}"><th style="color:{colour}">person {pid}</th>'
                     + "".join(cells) + "</tr>")
    note = f"{earlier} earlier window{'s' if earlier != 1 else ''} not shown. " if earlier else ""
    untrained = any(r.label == Label.UNTRAINED.value for w in order for r in windows[w]["people"].values())
    answers = ("<i>seen</i>: on camera, no verdict (untrained checkpoint)" if untrained
               else "an answer with its p_fake")
    legend = (f'<p class="live-legend">{note}One column per window, the latest on the right. {answers}; '
              "<i>not enough yet</i>: seen for less than a window; <i>skipped</i>: not analysed because the server "
              "fell behind (hover for by how much).</p>")
    return (f'<div class="live-timeline" id="live-timeline" data-windows="{len(order) + earlier}"><h4>Timeline</h4>'
            "<table>" + "".join(lines) + "</table>" + legend + "</div>")


# ---------------------------------------------------------------------------------------------
# one browser session's live analysis
# ---------------------------------------------------------------------------------------------
class LiveView:
    """One browser session: its :class:`LiveSession`, and what the page shows of its records.

    Memory stays bounded: the timeline keeps the latest :data:`MAX_TIMELINE_WINDOWS` windows'
    records, each person their latest record and one small crop. :meth:`close` closes the engine
    and drops everything; a closed view holds no frame, crop or record.
    """

    def __init__(self, session: "LiveSession", *, trained: bool, max_windows: int = MAX_TIMELINE_WINDOWS) -> None:
        self.session: "LiveSession | None" = session
        self.trained = trained
        self.max_windows = max_windows
        self.records: deque["LiveRecord"] = deque()
        self.people: dict[int, PersonState] = {}
        self.errors: deque[str] = deque(maxlen=3)
        self.dropped_windows = 0
        self.t0: float | None = None
        self.last_frame = time.monotonic()
        self.frames = 0
        self.summary: "LiveSummary | None" = None
        self.lock = threading.Lock()
        #: A counter bumped by each new record: the page redraws only when it moved.
        self.version = 0
        self.drawn = -1

    @property
    def closed(self) -> bool:
        return self.session is None

    def push(self, frame: np.ndarray, now: float | None = None) -> None:
        """One webcam frame, at its arrival time (seconds since this session's first frame)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            if self.session is None:
                return
            if self.t0 is None:
                self.t0 = now
            self.last_frame = now
            self.frames += 1
            self.session.push(frame, now - self.t0)

    def update(self) -> bool:
        """Take the engine's new records; True when there is anything new to draw."""
        with self.lock:
            if self.session is None:
                return False
            return self._ingest(self.session.poll())

    def _ingest(self, records: list["LiveRecord"]) -> bool:
        for rec in records:
            self.version += 1
            if rec.kind == "error":
                self.errors.append(rec.message or "the analysis failed")
                logger.warning("live window %d: error (%s)", rec.window, rec.message)
            if rec.kind == "ended":
                continue
            self.records.append(rec)
            if rec.person is not None:
                state = self.people.get(rec.person)
                url = crop_data_url(rec.crop) if rec.crop is not None else ""
                if state is None:
                    state = self.people[rec.person] = PersonState(rec.person, rec, url)
                else:
                    state.latest = rec
                    state.crop_url = url or state.crop_url
                if rec.kind == "judged":
                    state.last_answer = rec
            rec.crop = None  # the row holds the crop, as a small JPEG; the timeline needs none
        windows = sorted({r.window for r in self.records})
        if len(windows) > self.max_windows:
            cut = windows[len(windows) - self.max_windows]
            self.dropped_windows += len(windows) - self.max_windows
            self.records = deque(r for r in self.records if r.window >= cut)
            # people last seen before the timeline's first window leave the rows too: memory stays flat
            self.people = {pid: p for pid, p in self.people.items() if p.latest.window >= cut}
        return bool(records)

    def finish(self, ended: str = "", *, flush: bool = True) -> "LiveSummary | None":
        """Close the engine (``flush``: it judges the window under way first) and take its last records.

        What the page shows stays until :meth:`clear`; the engine is forgotten here (its frames, its
        people's descriptors and its worker go with it).
        """
        with self.lock:
            session, self.session = self.session, None
            if session is None:
                return self.summary
            try:
                self.summary = session.close(ended, flush=flush)
                self._ingest(session.poll())
            except Exception as exc:  # noqa: BLE001 - closing must never keep the session alive
                logger.warning("closing a live session failed (%s)", type(exc).__name__)
                logger.debug("traceback", exc_info=True)
                self.summary = getattr(session, "summary", None)
            return self.summary

    def clear(self) -> None:
        """Drop what the page was shown: records, people and their crops."""
        with self.lock:
            self.records.clear()
            self.people.clear()
            self.errors.clear()

    def close(self, ended: str = "", *, flush: bool = False) -> "LiveSummary | None":
        """:meth:`finish` then :meth:`clear`: a closed view holds no frame, crop or record."""
        summary = self.finish(ended, flush=flush)
        self.clear()
        return summary


def summary_words(summary: "LiveSummary | None") -> str:
    """The summary's counts in words (people, windows judged and skipped, latency percentiles)."""
    if summary is None:
        return ""
    parts = [f"{summary.people} {'person' if summary.people == 1 else 'people'}",
             f"{summary.windows_judged} window{'s' if summary.windows_judged != 1 else ''} judged",
             f"{summary.windows_skipped} skipped"]
    if summary.latency_p50 is not None:
        parts.append(f"latency p50 {summary.latency_p50:.1f} s"
                     + (f", p95 {summary.latency_p95:.1f} s" if summary.latency_p95 is not None else ""))
    return ", ".join(parts)


def status_markdown(view: LiveView | None, *, window_s: float | None = None, stopped: bool = False) -> str:
    """The line above the rows: watching (with the counts so far) or stopped (with the summary)."""
    if view is None:
        return "Press **Record** under the camera to start."
    if stopped or view.closed:
        ended = (view.summary.ended if view.summary is not None else "").strip().rstrip(".") or "stopped"
        counts = summary_words(view.summary)
        return (f"**{ended[:1].upper() + ended[1:]}.** " + (f"{counts}. " if counts else "")
                + "This session's analysis is closed and its frames, crops and records are gone from the server: "
                "press **Record** to start a new one.")
    session = view.session
    summary = getattr(session, "summary", None) if session is not None else None
    elapsed = 0.0 if view.t0 is None else max(0.0, view.last_frame - view.t0)
    text = f"**Watching** · {elapsed:.0f} s of stream, {view.frames} frames"
    counts = summary_words(summary)
    if counts:
        text += f" · {counts}"
    if not view.records and window_s:
        text += f" · the first answers come after the first {window_s:g} s window"
    if view.errors:
        text += f"\n\n**{view.errors[-1]}**"
    return text


# ---------------------------------------------------------------------------------------------
# the tab
# ---------------------------------------------------------------------------------------------
def live_window_from_env() -> float | None:
    """``$STYLEFUSION_LIVE_WINDOW`` in seconds, when set (the serve option's fallback)."""
    value = os.environ.get(ENV_LIVE_WINDOW, "").strip()
    if not value:
        return None
    try:
        window = float(value)
    except ValueError:
        logger.warning("%s=%r is not a number of seconds: using the checkpoint's window", ENV_LIVE_WINDOW, value)
        return None
    return window if window > 0 else None


class LiveTab:
    """The Live tab of one app: its settings, the browser sessions' views, and the callbacks.

    ``detector`` is the app's (None: no model, the tab says so). ``window_s`` (None:
    ``$STYLEFUSION_LIVE_WINDOW``, else the engine's default: the checkpoint's ``window_s`` capped at
    10 s). ``session_factory`` makes one engine per browser session (default:
    :class:`stylefusion.live.LiveSession` on ``detector``); tests pass a stand-in.
    """

    def __init__(self, detector: Any, *, window_s: float | None = None,
                 session_factory: Callable[..., "LiveSession"] | None = None,
                 max_sessions: int = MAX_LIVE_SESSIONS, idle_close_s: float = IDLE_CLOSE_S) -> None:
        self.detector = detector
        self.window_s = window_s if window_s is not None else live_window_from_env()
        self.session_factory = session_factory
        self.max_sessions = max_sessions
        self.idle_close_s = idle_close_s
        self.views: dict[str, LiveView] = {}
        self._lock = threading.Lock()

    @property
    def trained(self) -> bool:
        return self.detector is not None and bool(self.detector.config.trained)

    @property
    def shown_window_s(self) -> float:
        """The window the engine uses, for the page's words."""
        from stylefusion.live import MAX_DEFAULT_WINDOW_S  # the engine's cap of the checkpoint's window_s

        if self.window_s is not None:
            return float(self.window_s)
        if self.detector is None:
            return MAX_DEFAULT_WINDOW_S
        return min(float(self.detector.config.window_s), MAX_DEFAULT_WINDOW_S)

    # -- sessions ---------------------------------------------------------------------------------
    def _new_session(self) -> "LiveSession":
        if self.session_factory is not None:
            return self.session_factory(self.detector, window_s=self.window_s, keep_crops=True)
        from stylefusion.live import LiveSession

        return LiveSession(self.detector, window_s=self.window_s, keep_crops=True)

    def view_for(self, key: str) -> LiveView:
        """This browser session's view, made (with a new engine) on its first frame."""
        with self._lock:
            view = self.views.get(key)
            if view is not None and not view.closed:
                return view
            live = [k for k, v in self.views.items() if not v.closed]
            if len(live) >= self.max_sessions:
                raise _Busy(len(live))
            view = self.views[key] = LiveView(self._new_session(), trained=self.trained)
            logger.info("live session started (%d running)", len(live) + 1)
            return view

    def end(self, key: str, ended: str = "") -> LiveView | None:
        """Close this browser session's view and forget it; return it (closed, its buffers empty).

        The window under way is not judged: nobody is left to see it.
        """
        with self._lock:
            view = self.views.pop(key, None)
        if view is not None:
            summary = view.close(ended, flush=False)
            logger.info("live session closed (%s): %s", ended or "ended", summary_words(summary) or "no summary")
        return view

    def sweep(self, now: float | None = None) -> None:
        """Close sessions whose browser stopped sending frames without a stop or unload reaching us."""
        now = time.monotonic() if now is None else now
        stale = [k for k, v in list(self.views.items()) if now - v.last_frame > self.idle_close_s]
        for key in stale:
            self.end(key, "no frame for a while")

    def close_all(self) -> None:
        for key in list(self.views):
            self.end(key, "the app stopped")

    # -- callbacks --------------------------------------------------------------------------------
    @staticmethod
    def _key(request: "gr.Request | None") -> str:
        return getattr(request, "session_hash", None) or "local"

    def render(self, view: LiveView | None, *, stopped: bool = False) -> tuple[str, str, str]:
        """(status, people, timeline) of a view."""
        if view is None:
            return status_markdown(None), people_html([]), timeline_html([])
        with view.lock:
            return (status_markdown(view, window_s=self.shown_window_s, stopped=stopped),
                    people_html(view.people.values(), trained=view.trained),
                    timeline_html(view.records, max_windows=view.max_windows, earlier=view.dropped_windows))

    def on_frame(self, frame: np.ndarray | None, request: "gr.Request | None" = None) -> tuple[Any, Any, Any]:
        """The stream's callback: push the frame, draw what is new (nothing when nothing changed)."""
        import gradio as gr

        if self.detector is None:
            raise gr.Error("No model is loaded: the Live tab needs one (see *About the model behind this page*).")
        self.sweep()
        if frame is None:
            return gr.skip(), gr.skip(), gr.skip()
        key = self._key(request)
        try:
            view = self.view_for(key)
        except _Busy as busy:
            return (f"**Busy:** {busy.running} live sessions are running on this server, its limit. Stop the "
                    "camera and try again in a while, or use the *Video file* tab.", gr.skip(), gr.skip())
        try:
            view.push(np.asarray(frame))
        except ValueError as exc:  # a frame the engine cannot take (the browser sent something odd)
            raise gr.Error(f"This camera frame cannot be analysed: {exc}") from None
        view.update()
        if view.version == view.drawn and view.frames % 5 != 1:  # the status's counts still move now and then
            return gr.skip(), gr.skip(), gr.skip()
        view.drawn = view.version
        return self.render(view)

    def on_stop(self, request: "gr.Request | None" = None) -> tuple[str, str, str]:
        """After the stream ends (Stop, the time limit): take the last records, close, draw the summary."""
        key = self._key(request)
        view = self.views.get(key)
        if view is None:
            return self.render(None)
        view.update()
        view.finish("", flush=True)  # the window under way is judged; the summary says "stopped after 0:42"
        status, people, timeline = self.render(view, stopped=True)
        self.end(key, "stopped in the browser")
        return status, people, timeline

    def on_unload(self, request: "gr.Request | None" = None) -> None:
        """The page was closed or reloaded: close its session now (Gradio keeps ``gr.State`` an hour)."""
        self.end(self._key(request), "the page was closed")

    # -- layout -----------------------------------------------------------------------------------
    def intro_markdown(self) -> str:
        """What the tab does, what it keeps (nothing), and what to do without a camera."""
        w = self.shown_window_s
        if self.detector is None:
            answers = ("No model is loaded, so the Live tab cannot analyse anything: see *About the model behind "
                       "this page*.")
        elif not self.trained:
            answers = ("This checkpoint is **untrained**: the tab shows who is on camera, their face crops and the "
                       "timeline, **never a verdict** (its score would be noise).")
        else:
            answers = ("Each person gets *Likely FAKE*, *Likely REAL* or *UNCERTAIN* per window, by the same rule "
                       "as the *Video file* tab.")
        return (f"**Live: your webcam, judged while it plays.** Allow the camera, then press **Record** under it. "
                f"Every {w:g} s window, each person on camera gets an answer; someone seen for less than a window "
                "is *not enough yet*, never a verdict. When the server falls behind, whole windows are *skipped* "
                f"and marked so on the timeline. {answers}\n\n"
                "**Nothing is kept.** Frames are analysed in the server's memory and dropped as each window is "
                "done; nothing is written to disk. When you press **Stop**, close or reload this page, the "
                "session's analysis is closed and its frames, crops and records are deleted.\n\n"
                "**No camera?** If the browser asks, allow it. If you denied it, allow the camera in the site's "
                "settings (the camera icon in the address bar) and reload the page. A browser gives no camera to "
                "a page served over plain HTTP other than from localhost, nor when none is connected: a line under "
                "the camera then says so. The *Video file* tab works without one.")

    def build(self, page: "gr.Blocks") -> None:
        """Lay out the tab inside ``page`` (within its ``gr.Tab``), and wire its events.

        Three ends close a browser session's engine: the stream's end (Stop, or the time limit),
        the page's unload (closed or reloaded; Gradio would keep a ``gr.State`` for an hour), and a
        sweep of sessions that sent no frame for :data:`IDLE_CLOSE_S` seconds.
        """
        import gradio as gr

        gr.Markdown(self.intro_markdown(), elem_id="live-intro")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                # Not mirrored: the detector sees the picture as the other side of a call does. 640x480
                # at most: a JPEG of a few tens of kB every STREAM_EVERY_S, not Gradio's 1920x1440 default.
                camera = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy",
                                  height=300, elem_id="live-camera", interactive=self.detector is not None,
                                  webcam_options=gr.WebcamOptions(mirror=False, constraints=CAMERA_CONSTRAINTS))
                # Filled in by CAMERA_CHECK_JS when the browser denies the camera or has none.
                gr.HTML('<div id="live-camera-note" role="alert"></div>', elem_id="live-camera-note-box",
                        padding=False, container=False, min_height=0)
            with gr.Column(scale=2):
                status = gr.Markdown(status_markdown(None), elem_id="live-status")
                people = gr.HTML(people_html([]), elem_id="live-people-box")
        timeline = gr.HTML(timeline_html([]), elem_id="live-timeline-box")
        outputs = [status, people, timeline]
        stream = camera.stream(self.on_frame, inputs=[camera], outputs=outputs, stream_every=STREAM_EVERY_S,
                               time_limit=TIME_LIMIT_S, concurrency_limit=None, show_progress="hidden",
                               api_visibility="private")
        # A stream's event ends when the browser stops it (or at its time limit): then close the session.
        stream.then(self.on_stop, inputs=None, outputs=outputs, show_progress="hidden", api_visibility="private",
                    concurrency_limit=None)  # not behind an upload's analysis in the default queue
        page.unload(self.on_unload)
        page.load(None, js=CAMERA_CHECK_JS)


class _Busy(Exception):
    def __init__(self, running: int) -> None:
        super().__init__(running)
        self.running = running


__all__ = ["LiveTab", "LiveView", "PersonState", "people_html", "timeline_html", "status_markdown", "state_words",
           "crop_data_url", "summary_words", "live_window_from_env", "LIVE_CSS", "ENV_LIVE_WINDOW",
           "STREAM_EVERY_S", "MAX_LIVE_SESSIONS", "MAX_TIMELINE_WINDOWS"]
