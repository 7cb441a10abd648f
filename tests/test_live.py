"""Live (issue 24), on loopback only: a generated scene of two real people served as an HLS stream by a
local HTTP server and as MPEG-TS over TCP from a PyAV writer, at real-time pace, watched through
:func:`stylefusion.live.watch`; cut mid-way; with the networks slowed down; bad sources; and the same
per-window answers from the CLI, the API and a :class:`~stylefusion.live.LiveSession` fed by hand.

The scene is test_tracking's: the carphone man (left, larger) and Grace Hopper (right), 320x240,
25 fps. Windows of 3 s keep each case to a few seconds of stream.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from stylefusion.live import LiveRecord, LiveSession, StreamError, WindowReader, clock, open_source, watch
from videogen import carphone_path, encode_frames

pytestmark = pytest.mark.usefixtures("one_thread")

W, H, FPS = 320, 240, 25
WINDOW = 3.0
SKIP = re.compile(r"^window \d+:\d\d–\d+:\d\d not analysed: \d+\.\d s behind$")


# --- the scene -----------------------------------------------------------------------------------
def _scene(n: int, width: int = W, height: int = H) -> list[np.ndarray]:
    from matplotlib import cbook

    hopper = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    hopper = cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB)[50:410, 85:445]
    with av.open(str(carphone_path())) as c:
        car = [f.to_ndarray(format="rgb24")[10:130, 30:150] for f in c.decode(video=0)]
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    shade = (0.75 + 0.25 * np.sin(x / 37.0 + y / 53.0))[..., None]
    background = np.clip(np.asarray((90, 110, 140), np.float32) * shade, 0, 255).astype(np.uint8)

    def paste(img, tile, x0, y0, size):
        img[y0:y0 + size, x0:x0 + size] = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA
                                                     if tile.shape[0] > size else cv2.INTER_CUBIC)
        return img

    frames = []
    for i in range(n):
        img = paste(background.copy(), car[i % len(car)], 10 + int(4 * np.sin(i / 6)), 45, 150)
        img = paste(img, hopper, 195 - int(4 * np.sin(i / 7)), 65 + int(3 * np.cos(i / 5)), 110)
        if (width, height) != (W, H):
            img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        frames.append(img)
    return frames


@pytest.fixture(scope="module")
def scene() -> list[np.ndarray]:
    """9 s of the two people."""
    return _scene(9 * FPS)


@pytest.fixture(scope="module")
def scene_ts(scene, tmp_path_factory) -> Path:
    return encode_frames(tmp_path_factory.mktemp("live") / "two.ts", scene, width=W, height=H, fps=FPS,
                         container_format="mpegts")


@pytest.fixture(scope="module")
def detector(tiny_trained_ckpt):
    """A marked-trained tiny checkpoint: every judged person gets a number to compare."""
    from stylefusion import StyleFusionDetector

    return StyleFusionDetector.from_pretrained(tiny_trained_ckpt, precision="fp32")


# --- loopback servers ----------------------------------------------------------------------------
class TsServer:
    """MPEG-TS over TCP from a PyAV writer: one client, frames encoded at real-time pace; ``cut_after``
    seconds in, the connection is dropped as a crashed server would."""

    def __init__(self, frames: list[np.ndarray], cut_after: float | None = None):
        self.frames, self.cut_after = frames, cut_after
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        out = conn.makefile("wb", buffering=0)
        try:
            with av.open(out, "w", format="mpegts") as mux:
                stream = mux.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "tune": "zerolatency",
                                                                      "crf": "20"})
                stream.width, stream.height, stream.pix_fmt = self.frames[0].shape[1], self.frames[0].shape[0], "yuv420p"
                t0 = time.monotonic()
                for i, img in enumerate(self.frames):
                    if self.cut_after is not None and i / FPS >= self.cut_after:
                        raise ConnectionAbortedError
                    time.sleep(max(0.0, t0 + i / FPS - time.monotonic()))
                    for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        mux.mux(packet)
                for packet in stream.encode():
                    mux.mux(packet)
        except (ConnectionAbortedError, BrokenPipeError, ConnectionResetError, av.FFmpegError, OSError):
            pass
        finally:
            conn.close()
            self.sock.close()


class HlsServer:
    """A live HLS stream from a plain ``http.server``: the segments (1 s, PyAV's ``hls`` muxer) are
    published as a live encoder would, one a second, and the playlist ends once all are out. ``cut``
    stops the server."""

    def __init__(self, frames: list[np.ndarray], folder: Path, cut_after: float | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        encode_frames(folder / "all.m3u8", frames, width=frames[0].shape[1], height=frames[0].shape[0], fps=FPS,
                      container_format="hls",
                      options={"x264-params": f"keyint={FPS}:min-keyint={FPS}:scenecut=0"},
                      container_options={"hls_time": "1", "hls_list_size": "0",
                                         "hls_segment_filename": str(folder / "seg%03d.ts")})
        lines = (folder / "all.m3u8").read_text().splitlines()
        self.segments = [(float(lines[i].split(":")[1].rstrip(",")), lines[i + 1])
                         for i in range(len(lines)) if lines[i].startswith("#EXTINF")]
        self.folder, self.t0 = folder, time.monotonic()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k):
                super().__init__(*a, directory=str(folder), **k)

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/live.m3u8"):
                    body = server.playlist().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.apple.mpegurl")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/live.m3u8"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        if cut_after is not None:
            threading.Timer(cut_after, self.cut).start()

    def playlist(self) -> str:
        elapsed = time.monotonic() - self.t0
        out, start = [], 0.0
        for duration, name in self.segments:
            if start > elapsed:
                break
            out += [f"#EXTINF:{duration:.6f},", name]
            start += duration
        done = len(out) // 2 == len(self.segments)
        return "\n".join(["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0",
                          *out, *(["#EXT-X-ENDLIST"] if done else [])]) + "\n"

    def cut(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _judged_by_window(records: list[LiveRecord]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for r in records:
        if r.kind == "judged":
            out.setdefault(r.window, []).append(r.person)
    return out


# --- streams at real-time pace -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["hls", "tcp"])
def test_a_live_stream_gets_per_window_answers_for_two_people_whose_ids_persist(kind, detector, scene, tmp_path):
    server = HlsServer(scene, tmp_path / "hls") if kind == "hls" else TsServer(scene)
    t0 = time.monotonic()
    records = list(watch(detector, server.url, window_s=WINDOW, connect_timeout=5))
    wall = time.monotonic() - t0
    by_window = _judged_by_window(records)
    assert len([w for w in by_window if by_window[w]]) >= 2, [r.line() for r in records]
    for w, people in by_window.items():
        assert sorted(people) == [0, 1], (w, [r.line() for r in records])  # the same two ids in every window
    judged = [r for r in records if r.kind == "judged"]
    assert all(r.label not in (None, "untrained") and r.p_fake is not None and r.decision for r in judged)
    assert all(r.latency_s is not None and 0 <= r.latency_s < 30 for r in judged)
    end = records[-1]
    assert end.kind == "ended" and end.summary.people == 2, end.to_dict()
    assert end.summary.windows_judged >= 2 and end.summary.latency_p50 is not None
    assert end.message.startswith("stream ended after 0:0"), end.message
    assert wall >= 7.0  # it was watched at the stream's pace, not read ahead
    json.dumps([r.to_dict() for r in records])  # every record is one JSON line


@pytest.mark.parametrize("kind", ["tcp", "hls"])
def test_cutting_the_server_mid_way_ends_cleanly_with_the_summary(kind, detector, scene, tmp_path):
    server = (HlsServer(scene, tmp_path / "hls", cut_after=4.5) if kind == "hls"
              else TsServer(scene, cut_after=4.5))
    t0 = time.monotonic()
    records = list(watch(detector, server.url, window_s=WINDOW, connect_timeout=3))
    assert time.monotonic() - t0 < 20
    end = records[-1]
    assert end.kind == "ended", [r.line() for r in records]
    assert re.match(r"stream ended after 0:0[3-7]", end.message), end.message
    assert end.summary.windows_judged >= 1 and end.summary.people == 2, end.summary.to_dict()
    assert 0 in _judged_by_window(records)


def test_slow_networks_skip_whole_windows_and_say_so(detector, scene, monkeypatch):
    """The networks made slower than the stream (each window's forward pass sleeps 4 s, windows of
    1.5 s): whole windows are skipped, each with a record that says how far behind, some are still
    judged, and at most one completed window ever waits."""
    real = detector.forward

    def slow(*args, **kwargs):
        time.sleep(4.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(detector, "forward", slow)
    server = TsServer(scene)
    gen = watch(detector, server.url, window_s=1.5, max_lag_s=2.0, connect_timeout=5)
    records = list(gen)
    skipped = [r for r in records if r.kind == "skipped"]
    assert skipped and all(SKIP.match(r.message) for r in skipped), [r.line() for r in records]
    end = records[-1].summary
    assert end.windows_skipped == len(skipped) >= 2 and end.windows_judged >= 1, end.to_dict()
    assert end.windows_skipped + end.windows_judged >= 5  # every window of 9 s is accounted for


def test_memory_stays_flat_when_the_networks_fall_behind(detector, monkeypatch):
    """A LiveSession fed 640x480 frames far faster than a (stubbed, slow) worker judges them: the
    frames held and the windows queued stay bounded, and the process does not grow from 20 windows
    to 60."""
    def slow_judge(self, win):
        time.sleep(0.05)
        return [LiveRecord("no_face", win.index, win.start_s, win.end_s)]

    monkeypatch.setattr(LiveSession, "_judge", slow_judge)
    session = LiveSession(detector, window_s=1.0, max_lag_s=0.5)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    rss = {}
    for i in range(60 * FPS):
        session.push(frames[i % 4], i / FPS)
        if i % FPS == 0:
            session.poll()
        if i + 1 in (20 * FPS, 60 * FPS):
            rss[i + 1] = _rss()
    stats = session.stats()
    summary = session.close("stream ended")
    assert stats["peak_queued_windows"] <= 1
    assert stats["peak_buffered_frames"] <= 2 * 2 * detector.config.num_frames + 2, stats
    assert summary.windows_skipped > 10 and summary.windows_judged >= 1
    assert summary.windows_skipped + summary.windows_judged == 60, summary.to_dict()
    assert rss[60 * FPS] - rss[20 * FPS] < 30e6, rss


def _rss() -> int:
    """Resident set size of this process in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status")


# --- bad sources ---------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def silent_server():
    """A listening socket that accepts and never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    conns = []
    stop = threading.Event()

    sock.settimeout(0.2)

    def accept():
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield sock.getsockname()[1]
    stop.set()
    for c in conns:
        c.close()
    sock.close()


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:{closed}", "http://127.0.0.1:{closed}/live.m3u8",
                                 "tcp://127.0.0.1:{silent}", "http://127.0.0.1:{silent}/live.m3u8"])
def test_a_source_that_does_not_answer_fails_within_the_connect_timeout(url, silent_server):
    url = url.format(closed=_closed_port(), silent=silent_server)
    t0 = time.monotonic()
    with pytest.raises(StreamError) as err:
        open_source(url, connect_timeout=1.5)
    assert time.monotonic() - t0 < 1.5 + 1.0
    assert "\n" not in str(err.value) and url in str(err.value)


def test_the_cli_says_so_in_one_line_and_exits_2(tiny_ckpt, silent_server, tmp_path):
    audio = tmp_path / "audio.m4a"
    from videogen import audio_only

    audio_only(audio)
    for source in (f"tcp://127.0.0.1:{silent_server}", str(audio)):
        proc = subprocess.run([sys.executable, "-m", "stylefusion", "watch", source, "--model", str(tiny_ckpt),
                               "--connect-timeout", "1.5"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("note:")]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stdout == ""
    assert "no video track" in lines[0]


def test_a_corrupt_burst_and_a_resolution_change_are_handled(detector, scene, tmp_path):
    """A burst of garbage in the middle of an MPEG-TS stream, then the stream switching from 320x240
    to 400x300 with its timestamps starting again (a concatenated TS): answers before and after,
    and one clean end."""
    first = encode_frames(tmp_path / "a.ts", scene[:4 * FPS], width=W, height=H, fps=FPS, container_format="mpegts")
    big = [cv2.resize(f, (400, 300)) for f in scene[4 * FPS:7 * FPS]]
    second = encode_frames(tmp_path / "b.ts", big, width=400, height=300, fps=FPS, container_format="mpegts")
    data = bytearray(first.read_bytes())
    mid = len(data) // 2 // 188 * 188
    rng = np.random.default_rng(1)
    data[mid:mid + 188 * 40] = rng.integers(0, 255, 188 * 40, dtype=np.uint8).tobytes()
    joined = tmp_path / "joined.ts"
    joined.write_bytes(bytes(data) + second.read_bytes())
    records = list(watch(detector, str(joined), window_s=WINDOW))
    end = records[-1]
    assert end.kind == "ended" and end.message.startswith("stream ended after"), [r.line() for r in records]
    by_window = _judged_by_window(records)
    assert 0 in by_window and max(by_window) >= 1, [r.line() for r in records]
    assert not [r for r in records if r.kind == "error"], [r.line() for r in records]
    assert 6.0 <= end.summary.stream_s <= 7.5, end.summary.to_dict()


# --- the same answers from the CLI, the API and a LiveSession --------------------------------------
def _answers(records) -> list[tuple]:
    return [(r["kind"], r["window"], r["person"], r["label"], r["p_fake"], r["start_s"], r["end_s"],
             json.dumps(r["decision"], sort_keys=True)) for r in records if r["kind"] != "ended"]


def test_cli_api_and_session_give_the_same_answers(detector, tiny_trained_ckpt, scene_ts):
    api = [r.to_dict() for r in detector.watch(str(scene_ts), window_s=WINDOW)]
    session = LiveSession(detector, window_s=WINDOW, realtime=False)
    by_hand = []
    with av.open(str(scene_ts)) as c:
        first = None
        for frame in c.decode(video=0):
            first = frame.time if first is None else first
            session.push(frame.to_ndarray(format="rgb24"), frame.time - first)
            by_hand += [r.to_dict() for r in session.poll()]
    session.close("stream ended")
    by_hand += [r.to_dict() for r in session.poll()]
    # The app's Live tab: its per-session view over an engine fed the same frames at the same times.
    from stylefusion.app.live_tab import LiveView

    view = LiveView(LiveSession(detector, window_s=WINDOW, realtime=False), trained=detector.config.trained)
    with av.open(str(scene_ts)) as c:
        for frame in c.decode(video=0):
            view.push(frame.to_ndarray(format="rgb24"), now=frame.time)
            view.update()
    view.finish("stream ended")
    app = [r.to_dict() for r in view.records]
    # The CLI with this process's one thread (one_thread): float sums in another order differ in the last bits.
    proc = subprocess.run([sys.executable, "-m", "stylefusion", "watch", str(scene_ts), "--model",
                           str(tiny_trained_ckpt), "--window", str(WINDOW), "--precision", "fp32"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert proc.returncode == 0, proc.stderr
    cli = [json.loads(line) for line in proc.stdout.splitlines()]
    assert cli[-1]["kind"] == "ended" and cli[-1]["summary"]["windows_judged"] == 3
    assert len(_answers(api)) == 6 and {r[2] for r in _answers(api)} == {0, 1}
    assert _answers(cli) == _answers(api) == _answers(by_hand) == _answers(app)
    assert "0:00–0:03 person 0:" in proc.stderr and "stream ended after 0:09" in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def file_answers(detector, scene_ts) -> list[tuple]:
    """The API's answers on the MPEG-TS file, every window judged: what the other sources must give."""
    return _answers([r.to_dict() for r in detector.watch(str(scene_ts), window_s=WINDOW)])


def test_a_stream_on_standard_input(tiny_trained_ckpt, scene_ts, file_answers):
    # --no-realtime: decoding waits for the networks, so every window is judged, as for the file.
    with open(scene_ts, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "stylefusion", "watch", "-", "--model", str(tiny_trained_ckpt),
                               "--window", str(WINDOW), "--precision", "fp32", "--no-realtime"], stdin=stdin,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert proc.returncode == 0, proc.stderr
    assert _answers([json.loads(line) for line in proc.stdout.splitlines()]) == file_answers
    assert "stream ended after 0:09" in proc.stderr


def test_a_file_still_being_written_is_followed(detector, scene_ts, file_answers, tmp_path):
    growing = tmp_path / "growing.ts"
    data = scene_ts.read_bytes()
    growing.write_bytes(data[:188 * 200])  # the first packets: enough to open and probe
    done = threading.Event()

    def write_on() -> None:  # the rest in slices, as a recorder writes it (about 4x real time)
        with open(growing, "ab") as f:
            for i in range(188 * 200, len(data), 188 * 400):
                time.sleep(0.1)
                f.write(data[i:i + 188 * 400])
                f.flush()
        done.set()

    writer = threading.Thread(target=write_on, daemon=True)
    writer.start()
    records = [r.to_dict() for r in watch(detector, str(growing), window_s=WINDOW, follow=True, connect_timeout=2.0,
                                          realtime=False)]
    writer.join()
    assert done.is_set()
    assert _answers(records) == file_answers  # every window, as from the finished file
    assert records[-1]["kind"] == "ended"


def test_a_person_beyond_max_people_is_listed_not_judged(detector, scene_ts):
    records = [r for r in watch(detector, str(scene_ts), window_s=WINDOW, max_people=1) if r.kind != "ended"]
    for w in sorted({r.window for r in records}):
        kinds = sorted(r.kind for r in records if r.window == w)
        assert kinds == ["judged", "not_judged"], (w, [r.line() for r in records])
    assert all("not among the 1 people longest" in r.message for r in records if r.kind == "not_judged")


@pytest.mark.parametrize("window, judged", [(4.0, 2), (3.2, 3)])
def test_the_last_stretch_is_judged_only_when_long_enough(detector, scene_ts, window, judged):
    # 9 s: with 4 s windows the last stretch is 1 s (< 2 x min_person_s: nobody could be seen long
    # enough, so it is not analysed); with 3.2 s windows it is 2.6 s, and judged.
    end = [r for r in watch(detector, str(scene_ts), window_s=window)][-1]
    assert end.summary.windows_judged == judged and end.summary.windows_skipped == 0, end.summary.to_dict()


def test_ctrl_c_prints_the_summary_so_far_and_exits_0(tiny_trained_ckpt, scene_ts):
    import signal

    # --realtime: the file is played at its own pace (9 s), as a stream arrives; Ctrl-C after the first window.
    proc = subprocess.Popen([sys.executable, "-m", "stylefusion", "watch", str(scene_ts), "--model",
                             str(tiny_trained_ckpt), "--window", str(WINDOW), "--realtime"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    first = json.loads(proc.stdout.readline())  # blocks until the first window is answered
    assert first["kind"] == "judged" and first["window"] == 0
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    last = json.loads(out.splitlines()[-1])
    assert last["kind"] == "ended" and last["message"].startswith("stopped by the user after 0:0")
    assert last["summary"]["windows_judged"] >= 1 and last["summary"]["people"] == 2
    assert "Traceback" not in err and "stopped by the user" in err.splitlines()[-1]


# --- pieces --------------------------------------------------------------------------------------
def test_a_window_in_memory_reads_like_a_file(scene):
    images = scene[:10] + [cv2.resize(scene[10], (400, 300))]  # the stream changed size in the window
    reader = WindowReader(images, [i / FPS for i in range(11)], index=3, start_s=0.0, end_s=11 / FPS,
                          source_size=(W, H), max_frame_side=1920)
    (w,) = reader.windows()
    assert (w.index, w.start, w.stop) == (3, 0, 11) and reader.info.to_dict()["width"] == W
    got = dict(reader.iter_frames([("a", [10, 0]), ("small", [5])], max_side=160))
    assert got["a"].images.shape == (2, 120, 160, 3) and got["a"].scale == pytest.approx(0.5)
    np.testing.assert_allclose(got["a"].timestamps, [0.4, 0.0])
    with pytest.raises(ValueError):
        next(reader.iter_frames([("bad", [11])]))


def test_clock_and_bad_options(detector):
    assert (clock(42.9), clock(63), clock(3725)) == ("0:42", "1:03", "1:02:05")
    with pytest.raises(ValueError):
        LiveSession(detector, window_s=0)
    session = LiveSession(detector, window_s=1.0)
    with pytest.raises(ValueError):
        session.push(np.zeros((4, 4), np.float32), 0.0)
    assert session.close().windows_judged == 0
