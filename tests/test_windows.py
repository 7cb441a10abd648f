"""Windows (issue 14, item 1): a long video analysed as consecutive stretches of ``window_s``.

Generated videos carry their frame numbers as barcodes (tests/videogen.py), so every check of a
sampled frame is a check of frame identity, not only of indices. Raw H.264 streams are made by
remuxing the mp4's packets (same pictures, no container), so both paths must give the same frames.
"""

from __future__ import annotations

import itertools
import logging
import math
from fractions import Fraction

import numpy as np
from helpers import NoSeek
import pytest

from stylefusion import video
from stylefusion.errors import VideoReadError
from stylefusion.video import VideoReader, Window, read_frames, sample_indices
from videogen import read_barcode, write_video, remux_raw

W, H = 48, 112  # the barcode needs 96 rows; small, so 1800 frames encode in about a second
FPS = 10


def _barcodes(frames) -> list[int]:
    return [read_barcode(img) for img in frames.images]


@pytest.fixture(scope="module")
def three_minutes(tmp_path_factory):
    """180 s at 10 fps (1800 barcoded frames), GOP 100."""
    return write_video(tmp_path_factory.mktemp("win") / "3min.mp4", 1800, width=W, height=H, fps=FPS,
                       options={"g": "100"})


@pytest.fixture(scope="module")
def ninety_seconds(tmp_path_factory):
    """90 s at 10 fps (900 frames) as an mp4 and the same packets as a raw H.264 stream."""
    d = tmp_path_factory.mktemp("raw")
    mp4 = write_video(d / "90s.mp4", 900, width=W, height=H, fps=FPS, options={"g": "50"})
    return mp4, remux_raw(mp4, d / "90s.264")


def _check_cover(windows: list[Window], reader: VideoReader, window_s: float) -> None:
    """Contiguous, equal, at most window_s each, covering every frame and the whole duration."""
    assert [w.index for w in windows] == list(range(len(windows)))
    assert windows[0].start == 0 and windows[-1].stop == reader.num_source
    assert windows[0].start_s == 0 and windows[-1].end_s == pytest.approx(reader.duration)
    lengths = [w.end_s - w.start_s for w in windows]
    assert max(lengths) <= window_s + 1e-9 and max(lengths) - min(lengths) < 1e-9
    for a, b in itertools.pairwise(windows):
        assert a.stop == b.start and a.end_s == b.start_s


def _check_frames_in_window(frames, w: Window, num_frames: int) -> None:
    np.testing.assert_array_equal(frames.source_indices, sample_indices(w.stop - w.start, num_frames) + w.start)
    assert _barcodes(frames) == frames.source_indices.tolist()  # each is the frame its index names
    assert (frames.timestamps >= w.start_s - 1e-9).all() and (frames.timestamps < w.end_s).all()


# ------------------------------------------------------------------------------------------------
# One window: exactly read_frames
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("container", ["mp4", "h264"])
def test_short_video_is_one_window_sampled_as_read_frames(tmp_path, container):
    mp4 = write_video(tmp_path / "short.mp4", 100, width=W, height=H, fps=25)  # 4 s
    path = mp4 if container == "mp4" else remux_raw(mp4, tmp_path / "short.264")
    expected = read_frames(path, 32)
    with VideoReader(path) as reader:
        windows = reader.windows(15.0, 8)
        assert len(windows) == 1
        w = windows[0]
        assert (w.index, w.start, w.stop, w.start_s, w.analysed) == (0, 0, 100, 0.0, True)
        assert w.end_s == pytest.approx(4.0) == reader.duration
        got = reader.read(w, 32)
        [(w2, it)] = list(reader.iter_read(windows, 32))
    assert w2 is w
    for frames in (got, it):
        np.testing.assert_array_equal(frames.source_indices, expected.source_indices)
        np.testing.assert_array_equal(frames.images, expected.images)
        np.testing.assert_array_equal(frames.timestamps, expected.timestamps)
        assert frames.info.to_dict() == expected.info.to_dict()
        assert frames.info.decoded_scale == expected.info.decoded_scale


def test_fewer_frames_than_t_pad_circularly(tmp_path):
    path = write_video(tmp_path / "five.mp4", 5, width=W, height=H, fps=25)
    with VideoReader(path) as reader:
        [w] = reader.windows(15.0, None)
        frames = reader.read(w, 12)
    assert frames.source_indices.tolist() == [i % 5 for i in range(12)]
    assert _barcodes(frames) == frames.source_indices.tolist()
    one = write_video(tmp_path / "one.mp4", 1, width=W, height=H, fps=25)
    with VideoReader(one) as reader:
        [w] = reader.windows(15.0, 8)
        assert (w.start, w.stop, w.start_s) == (0, 1, 0.0) and w.end_s == pytest.approx(1 / 25)
        assert reader.read(w, 4).source_indices.tolist() == [0, 0, 0, 0]


# ------------------------------------------------------------------------------------------------
# A 3-minute video
# ------------------------------------------------------------------------------------------------
def test_three_minutes_in_fifteen_second_windows(three_minutes, monkeypatch):
    sequential = []
    real_seq = video._decode_sequential
    monkeypatch.setattr(video, "_decode_sequential", lambda *a, **k: sequential.append(1) or real_seq(*a, **k))
    with VideoReader(three_minutes) as reader:
        assert reader.num_source == 1800 and reader.duration == pytest.approx(180.0)
        everything = reader.windows(15.0, None)
        assert len(everything) == 12 and all(w.analysed for w in everything)
        _check_cover(everything, reader, 15.0)
        assert [(w.start, w.stop) for w in everything] == [(150 * k, 150 * (k + 1)) for k in range(12)]
        assert [w.start_s for w in everything] == pytest.approx([15.0 * k for k in range(12)])

        windows = reader.windows(15.0, 4)
        assert [(w.start, w.stop, w.start_s, w.end_s) for w in windows] == \
            [(w.start, w.stop, w.start_s, w.end_s) for w in everything]  # same stretches, fewer analysed
        assert [w.index for w in windows if w.analysed] == [0, 4, 7, 11]  # spread evenly, first and last
        got = list(reader.iter_read(windows, 32))
        assert [w.index for w, _ in got] == [0, 4, 7, 11]
        for w, frames in got:
            assert frames.images.shape == (32, H, W, 3)
            _check_frames_in_window(frames, w, 32)
            np.testing.assert_allclose(frames.timestamps, frames.source_indices / FPS, atol=1e-6)
            assert frames.info is reader.info  # one VideoInfo per video
        # a window left out can still be read on demand
        frames = reader.read(windows[1], 8)
        _check_frames_in_window(frames, windows[1], 8)
        assert reader.info.num_frames == 1800 and reader.info.duration == pytest.approx(180.0) == reader.duration
    assert not sequential  # a seekable file is read by seeking only

    with VideoReader(three_minutes) as reader:
        assert [w.index for w in reader.windows(15.0, 1) if w.analysed] == [0]  # max_windows=1: the FIRST
        assert [w.index for w in reader.windows(15.0, 2) if w.analysed] == [0, 11]
        assert all(w.analysed for w in reader.windows(15.0, 12))
        assert len(reader.windows(60.0, None)) == 3
        assert len(reader.windows(math.inf, 3)) == 1


def test_info_before_any_read_is_the_one_reads_carry(three_minutes):
    with VideoReader(three_minutes) as reader:
        before = reader.info.to_dict()  # decodes frame 0 for the sizes
        frames = reader.read(reader.windows(15.0, 4)[-1], 4)
        assert frames.info.to_dict() == before
    assert read_frames(three_minutes, 4).info.to_dict() == before


def test_non_seekable_file_reads_all_windows_in_one_pass(three_minutes, monkeypatch, caplog):
    """A demuxer that refuses to seek: one refused seek, then ONE pass for every analysed window."""
    opened = video._open
    seeks, passes = [], []


    with VideoReader(three_minutes) as reader:
        windows = reader.windows(15.0, 4)
        expected = [(w.index, f.source_indices, f.images) for w, f in reader.iter_read(windows, 16)]
    real_seq = video._decode_sequential
    monkeypatch.setattr(video, "_open", lambda path: NoSeek(opened(path), seeks))
    monkeypatch.setattr(video, "_decode_sequential", lambda *a, **k: passes.append(1) or real_seq(*a, **k))
    with caplog.at_level(logging.INFO, logger="stylefusion.video"), VideoReader(three_minutes) as reader:
        got = [(w.index, f.source_indices, f.images) for w, f in reader.iter_read(reader.windows(15.0, 4), 16)]
    assert len(seeks) == 1 and len(passes) == 1 and "cannot seek" in caplog.text
    assert [g[0] for g in got] == [e[0] for e in expected]
    for (_, gi, gim), (_, ei, eim) in zip(got, expected):
        np.testing.assert_array_equal(gi, ei)
        np.testing.assert_array_equal(gim, eim)


# ------------------------------------------------------------------------------------------------
# Raw streams: one sequential pass for all windows, each handed out when complete
# ------------------------------------------------------------------------------------------------
def test_raw_stream_windows_in_one_sequential_pass(ninety_seconds, monkeypatch):
    mp4, raw = ninety_seconds
    with VideoReader(mp4) as reader:
        expected = [(w, f) for w, f in reader.iter_read(reader.windows(15.0, 4), 32)]

    passes, targets, opens, converted = [], [], [], []
    progress = [-1]  # the last source index the sequential pass has handed over
    real_seq, real_targets, real_open, real_rgb = (video._decode_sequential, video._decode_targets,
                                                   video._open, video._to_rgb)

    def seq(*args, **kwargs):
        passes.append(1)
        for index, item in real_seq(*args, **kwargs):
            progress[0] = index
            yield index, item

    monkeypatch.setattr(video, "_decode_sequential", seq)
    monkeypatch.setattr(video, "_decode_targets", lambda *a, **k: targets.append(1) or real_targets(*a, **k))
    monkeypatch.setattr(video, "_open", lambda path: opens.append(1) or real_open(path))
    monkeypatch.setattr(video, "_to_rgb", lambda frame, side: converted.append(1) or real_rgb(frame, side))
    with VideoReader(raw) as reader:
        assert reader.num_source == 900 and reader.duration == pytest.approx(90.0)
        windows = reader.windows(15.0, 4)
        assert len(windows) == 6 and [w.index for w in windows if w.analysed] == [0, 2, 3, 5]
        got = []
        for w, frames in reader.iter_read(windows, 32):
            # handed out as soon as its last sampled frame is decoded, before the next is decoded
            assert progress[0] == frames.source_indices.max(), (w.index, progress[0])
            got.append((w, frames))
    assert len(passes) == 1 and not targets  # ONE sequential pass, no seeking
    assert len(opens) == 2  # the scan, and the pass
    assert len(converted) == 4 * 32  # only the sampled frames become RGB
    assert [w.index for w, _ in got] == [w.index for w, _ in expected] == [0, 2, 3, 5]
    for (w, f), (ew, ef) in zip(got, expected):
        assert (w.start, w.stop) == (ew.start, ew.stop) and w.start_s == pytest.approx(ew.start_s)
        _check_frames_in_window(f, w, 32)
        np.testing.assert_array_equal(f.source_indices, ef.source_indices)
        np.testing.assert_allclose(f.timestamps, ef.timestamps, atol=1e-3)
        assert np.abs(f.images.astype(np.int16) - ef.images.astype(np.int16)).mean() < 1.0


def test_raw_stream_read_of_one_window(ninety_seconds):
    """``read`` on a raw stream decodes from the start to that window (iter_read is for several)."""
    _, raw = ninety_seconds
    with VideoReader(raw) as reader:
        w = reader.windows(15.0, None)[2]
        frames = reader.read(w, 8)
    _check_frames_in_window(frames, w, 8)


# ------------------------------------------------------------------------------------------------
# Boundaries
# ------------------------------------------------------------------------------------------------
def test_exactly_two_windows_long(tmp_path):
    two = write_video(tmp_path / "30s.mp4", 300, width=W, height=H, fps=FPS)  # exactly 2 x 15 s
    with VideoReader(two) as reader:
        windows = reader.windows(15.0, None)
        assert [(w.start, w.stop) for w in windows] == [(0, 150), (150, 300)]
        assert [(w.start_s, w.end_s) for w in windows] == [pytest.approx((0.0, 15.0)), pytest.approx((15.0, 30.0))]
        for w, frames in reader.iter_read(windows, 32):
            _check_frames_in_window(frames, w, 32)
        assert len(reader.windows(30.0, None)) == 1  # exactly one window long: one window
        assert len(reader.windows(29.9, None)) == 2
    one_more = write_video(tmp_path / "30.1s.mp4", 301, width=W, height=H, fps=FPS)
    with VideoReader(one_more) as reader:
        windows = reader.windows(15.0, None)
        assert len(windows) == 3
        _check_cover(windows, reader, 15.0)


def test_millisecond_timestamps_of_an_exact_length(tmp_path):
    """15 s at 30 fps with pts rounded to milliseconds measures 15.0004 s: still one window."""
    pts = [round(i * 1000 / 30) for i in range(450)]
    path = write_video(tmp_path / "ms.mkv", 450, width=W, height=H, fps=30, pts=pts, time_base=Fraction(1, 1000))
    with VideoReader(path) as reader:
        assert reader.duration == pytest.approx(15.0, abs=1e-3)
        assert len(reader.windows(15.0, None)) == 1
        windows = reader.windows(5.0, None)
        _check_cover(windows, reader, 5.0 + 1e-3)
        # The measured length (15.0004 s) puts the boundaries 0.1 ms after the frames at 5 s and
        # 10 s: by their timestamps those frames end the stretch before. Boundaries follow the
        # timestamps; they are never more than one frame off the exact ones.
        assert [(w.start, w.stop) for w in windows] == [(0, 151), (151, 301), (301, 450)]
        seconds = np.array(pts) / 1000.0
        for w in windows:
            assert ((seconds[w.start:w.stop] >= w.start_s) & (seconds[w.start:w.stop] < w.end_s)).all()


def test_variable_frame_rate_boundaries(tmp_path):
    gaps = [40 if i % 3 else 120 for i in range(1, 300)]  # ms, irregular
    pts = np.cumsum([0] + gaps)
    path = write_video(tmp_path / "vfr.mp4", 300, width=W, height=H, pts=pts, time_base=Fraction(1, 1000))
    with VideoReader(path) as reader:
        assert reader.duration == pytest.approx(pts[-1] / 1000 * 300 / 299, abs=1e-3)
        windows = reader.windows(4.0, None)
        assert len(windows) == math.ceil(reader.duration / 4.0)
        _check_cover(windows, reader, 4.0)
        seconds = pts / 1000.0
        for w in windows:  # a frame belongs to the stretch its timestamp falls in
            assert ((seconds[w.start:w.stop] >= w.start_s - 1e-9) & (seconds[w.start:w.stop] < w.end_s)).all()
        for w, frames in reader.iter_read(reader.windows(4.0, 3), 16):
            _check_frames_in_window(frames, w, 16)
            np.testing.assert_allclose(frames.timestamps, seconds[frames.source_indices], atol=1e-3)


def test_pause_longer_than_a_window_leaves_empty_windows_unanalysed(tmp_path):
    """VFR with a 36-second pause: the stretches where no frame starts are not analysed, and the
    spread of max_windows counts only the others."""
    pts = [100 * i for i in range(40)] + [40_000 + 100 * i for i in range(10)]  # ms
    path = write_video(tmp_path / "pause.mp4", 50, width=W, height=H, pts=pts, time_base=Fraction(1, 1000))
    with VideoReader(path) as reader:
        windows = reader.windows(5.0, None)
        _check_cover(windows, reader, 5.0)
        full = [w.index for w in windows if w.num_source]
        assert full == [0, len(windows) - 1]
        assert [w.index for w in windows if w.analysed] == full
        assert all(w.start == w.stop == 40 for w in windows[1:-1])
        assert [w.index for w in reader.windows(5.0, 2) if w.analysed] == full
        got = list(reader.iter_read(windows, 8))
        assert [w.index for w, _ in got] == full
        for w, frames in got:
            _check_frames_in_window(frames, w, 8)
        with pytest.raises(ValueError, match="has no frames"):
            reader.read(windows[1], 8)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
def test_bad_arguments(three_minutes):
    with VideoReader(three_minutes) as reader:
        for bad in (0, -1, float("nan"), "x"):
            with pytest.raises(ValueError, match="window_s"):
                reader.windows(bad, None)
        for bad in (0, -2, 1.5, True):
            with pytest.raises(ValueError, match="max_windows"):
                reader.windows(15.0, bad)
        with pytest.raises(ValueError, match="more than"):
            reader.windows(1e-7, None)
        w = reader.windows(15.0, None)[0]
        with pytest.raises(ValueError, match="num_frames"):
            reader.read(w, 0)
        with pytest.raises(ValueError, match="has no frames"):
            reader.read(Window(0, 1700, 1900, 170.0, 190.0), 8)  # not a window of this video
        with pytest.raises(ValueError, match="num_frames"):
            reader.iter_read([w], 0)  # checked at once, not at the first next()


def test_bad_files_give_one_line_errors(tmp_path):
    text = tmp_path / "text.mp4"
    text.write_bytes(b"not a video\n" * 100)
    for path in (text, tmp_path / "missing.mp4", tmp_path):
        with pytest.raises(VideoReadError) as info:
            VideoReader(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_undecodable_window_is_skipped_and_marked(three_minutes, monkeypatch, caplog):
    real = video._decode_targets

    def broken_middle(path, container, stream, scan, wanted, max_side):
        return {} if 600 <= wanted[0] < 1200 else real(path, container, stream, scan, wanted, max_side)

    monkeypatch.setattr(video, "_decode_targets", broken_middle)
    with VideoReader(three_minutes) as reader:
        windows = reader.windows(15.0, 4)  # analysed: 0, 4, 7, 11 (frames 600.. and 1050..)
        with caplog.at_level(logging.WARNING, logger="stylefusion.video"):
            got = [w.index for w, _ in reader.iter_read(windows, 8)]
        assert got == [0, 11]
        assert [w.index for w in windows if w.analysed] == [0, 11]
        assert "no frame of window 4 (60.0-75.0 s) could be decoded" in caplog.text
        with pytest.raises(VideoReadError, match="no frame of window 7"):
            reader.read(windows[7], 8)
    monkeypatch.setattr(video, "_decode_targets", lambda *a, **k: {})
    with VideoReader(three_minutes) as reader, pytest.raises(VideoReadError, match="no frame could be decoded"):
        list(reader.iter_read(reader.windows(15.0, 3), 8))


def test_stopping_early_closes_the_pass(ninety_seconds, monkeypatch):
    _, raw = ninety_seconds
    closed = []
    real_open = video._open

    def tracking_open(path):
        container = real_open(path)
        real_close = container.close
        closed.append(False)
        slot = len(closed) - 1

        class Tracked:
            def __getattr__(self, name):
                return getattr(container, name)

            def close(self):
                closed[slot] = True
                real_close()

        return Tracked()

    monkeypatch.setattr(video, "_open", tracking_open)
    with VideoReader(raw) as reader:
        windows = reader.windows(15.0, None)
        it = reader.iter_read(windows, 8)
        w, _ = next(it)
        assert w.index == 0
        it.close()  # the caller leaves the loop
        assert all(closed)  # the scan's and the pass's containers
        assert [w.index for w, _ in reader.iter_read(windows[4:], 8)] == [4, 5]  # the reader still works


# ------------------------------------------------------------------------------------------------
# Decoding ahead (issue 17): the next window decodes while the faces of this one are detected
# ------------------------------------------------------------------------------------------------
# No timings are asserted (speed is measured by benchmarks/bench_extract.py): events and spies show
# the order in which things happen, and each wait has a generous deadline only so that a broken
# overlap fails instead of hanging.
DEADLINE_S = 60.0
DECODE_THREAD = "stylefusion-decode"


def _decode_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == DECODE_THREAD]


class _SpyCropper:
    """A FaceCropper stand-in: no face anywhere; records what each detect call saw, and may wait
    for an event or raise (``on_detect(k)``, k = 0, 1, ... in call order)."""

    def __init__(self, on_detect=None):
        self.calls: list[int] = []  # first source frame of each detect call's window
        self.returned = 0  # detect calls that have returned
        self.on_detect = on_detect

    def detect(self, images):
        k = len(self.calls)
        self.calls.append(read_barcode(images[0]))
        if self.on_detect is not None:
            self.on_detect(k)
        self.returned += 1
        return [(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))] * len(images)



class _DecodeSpy:
    """Wraps ``video._decode_targets`` (one call per window of a seekable file): an event per call
    (set when it starts), how many detect calls had returned then, and whether one is running."""

    def __init__(self, monkeypatch, cropper: _SpyCropper, fail_on: int | None = None):
        import threading

        self.started = [threading.Event() for _ in range(16)]
        self.returned_at: list[int] = []
        self.threads: list[str] = []
        self.running = 0
        real = video._decode_targets

        def spy(*args, **kwargs):
            j = len(self.returned_at)
            self.returned_at.append(cropper.returned)
            self.threads.append(threading.current_thread().name)
            self.started[j].set()
            self.running += 1
            try:
                if j == fail_on:
                    raise RuntimeError(f"disk gone while decoding window #{j}")
                return real(*args, **kwargs)
            finally:
                self.running -= 1

        monkeypatch.setattr(video, "_decode_targets", spy)


def _analyse(path, cropper, max_windows: int = 4, prefetch: bool | None = True):
    from stylefusion.config import StyleFusionConfig
    from stylefusion.people import analyse_people

    return analyse_people(path, StyleFusionConfig(window_s=15.0), cropper, max_windows, 4, prefetch=prefetch)


def test_next_window_decodes_while_faces_are_detected(three_minutes, monkeypatch):
    """Decoding of window k+1 starts before the face detection of window k returns, in a worker
    thread, and never more than one window ahead of the detection."""
    overlapped = []

    def wait_for_next_decode(k):  # detection of window k waits until window k+1 is being decoded
        if k + 1 < 4:
            overlapped.append(spy.started[k + 1].wait(DEADLINE_S))

    cropper = _SpyCropper(wait_for_next_decode)
    spy = _DecodeSpy(monkeypatch, cropper)
    analysis = _analyse(three_minutes, cropper)  # analysed windows 0, 4, 7, 11 of 12
    assert cropper.calls == [0, 600, 1050, 1650]  # every window, in order (first sampled frame)
    assert overlapped == [True, True, True]  # without decoding ahead, each wait would run out
    assert set(spy.threads) == {DECODE_THREAD}
    # Window j decodes while window j-1's faces are detected, and only once window j-2's detection
    # has returned (window j-1 taken by the consumer): one window ahead at most.
    assert spy.returned_at == [0, 0, 1, 2]
    assert [w.index for w in analysis.windows if w.analysed] == [0, 4, 7, 11]
    assert not _decode_threads()


def test_without_prefetch_decoding_waits_for_detection(three_minutes, monkeypatch):
    """The control: reading in the consumer's thread, window k+1 is decoded only after detection of
    window k has returned (what the test above tells apart)."""
    cropper = _SpyCropper()
    spy = _DecodeSpy(monkeypatch, cropper)
    _analyse(three_minutes, cropper, prefetch=False)
    assert cropper.calls == [0, 600, 1050, 1650]
    assert spy.returned_at == [0, 1, 2, 3]
    assert DECODE_THREAD not in spy.threads


@pytest.mark.parametrize("free_core", [True, False])
def test_by_default_decoding_ahead_follows_decode_ahead(three_minutes, monkeypatch, free_core):
    from stylefusion import people

    monkeypatch.setattr(people, "decode_ahead", lambda cropper: free_core)
    cropper = _SpyCropper()
    spy = _DecodeSpy(monkeypatch, cropper)
    _analyse(three_minutes, cropper, prefetch=None)
    assert (DECODE_THREAD in spy.threads) is free_core
    assert cropper.calls == [0, 600, 1050, 1650]


def test_decode_ahead_only_where_a_core_is_free(monkeypatch):
    """On a GPU, or with fewer PyTorch threads than usable cores; not when every core runs them."""
    import torch

    from stylefusion import people

    monkeypatch.setattr(people.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(people.torch, "get_num_threads", lambda: 2)
    assert people.decode_ahead(_SpyCropper()) is False  # 2 cores, 2 threads (no device: the CPU)
    monkeypatch.setattr(people.torch, "get_num_threads", lambda: 1)
    assert people.decode_ahead(_SpyCropper()) is True

    class OnGpu(_SpyCropper):
        device = torch.device("cuda", 0)

    monkeypatch.setattr(people.torch, "get_num_threads", lambda: 2)
    assert people.decode_ahead(OnGpu()) is True


def test_decode_error_reaches_the_consumer_after_the_windows_before_it(three_minutes, monkeypatch):
    cropper = _SpyCropper()
    spy = _DecodeSpy(monkeypatch, cropper, fail_on=2)  # the third analysed window (7)
    with pytest.raises(RuntimeError, match="disk gone while decoding window #2"):
        _analyse(three_minutes, cropper)
    assert cropper.calls == [0, 600]  # the windows before it were detected, nothing after it
    assert len(spy.returned_at) == 3 and spy.running == 0
    assert not _decode_threads()  # the worker was joined


def test_detection_error_stops_and_joins_the_decoder(three_minutes, monkeypatch):
    """The consumer stops early (face detection raises on the second window): the worker stops
    after the one window it may be decoding, is joined before analyse_people returns, and the
    reader is closed after it."""
    def fail_second(k):
        if k == 1:
            assert spy.started[2].wait(DEADLINE_S)  # window 7 is being decoded ahead meanwhile
            raise KeyboardInterrupt  # the worst case: the user presses Ctrl-C

    cropper = _SpyCropper(fail_second)
    spy = _DecodeSpy(monkeypatch, cropper)
    closed = []
    real_close = VideoReader.close

    def close(self):
        closed.append([t.name for t in _decode_threads()])  # what is still running when it closes
        real_close(self)

    monkeypatch.setattr(VideoReader, "close", close)
    with pytest.raises(KeyboardInterrupt):
        _analyse(three_minutes, cropper)
    assert cropper.calls == [0, 600]
    assert len(spy.returned_at) == 3  # window 11 was never decoded: one window ahead at most
    assert spy.running == 0 and not _decode_threads()
    assert closed == [[]]  # the reader was closed once, after the decoder had stopped


def test_one_person_keeps_one_id_across_windows(carphone):
    """The carphone clip in 2 windows: one person, one id, a span in each window."""
    from stylefusion import people
    from stylefusion.config import StyleFusionConfig
    from stylefusion.faces import FaceCropper

    config = StyleFusionConfig(window_s=2.5)  # the 4-second clip in 2 windows
    a = people.analyse_people(carphone, config, FaceCropper(config), 2, 4)
    assert [(s.window, s.person, s.judged) for s in a.segments] == [(0, 0, True), (1, 0, True)]
    assert len(a.shots) == 1  # adjacent windows continue the shot


# -- Prefetch itself ------------------------------------------------------------------------------
def _source(n: int, log: list, taken: list, fail_at: int | None = None):
    """Items 0..n-1; logs (item, items the consumer had taken) at each production."""
    try:
        for i in range(n):
            log.append((i, len(taken)))
            if i == fail_at:
                raise ValueError(f"bad item {i}")
            yield i
    finally:
        log.append("closed")


def test_prefetch_hands_out_every_item_in_order_one_ahead_at_most():
    log, taken = [], []
    with video.Prefetch(_source(6, log, taken)) as items:
        for i in items:
            taken.append(i)
    assert taken == list(range(6))
    # item i is produced only once the consumer has taken item i-1 (never two ahead)
    assert all(i <= seen + 1 for i, seen in log[:-1]) and log[-1] == "closed"
    assert next(items, "end") == "end"  # exhausted stays exhausted


def test_prefetch_raises_the_error_at_its_item():
    log, taken = [], []
    items = video.Prefetch(_source(6, log, taken, fail_at=3))
    with pytest.raises(ValueError, match="bad item 3") as info:
        for i in items:
            taken.append(i)
    assert taken == [0, 1, 2]
    assert any(frame.name == "_source" for frame in info.traceback)  # where it happened
    assert log[-1] == "closed" and not items._thread.is_alive()
    assert next(items, "end") == "end"
    items.close()  # idempotent


def test_prefetch_early_stop_closes_the_source_in_the_worker_and_joins():
    import threading

    closed_in = []

    def source():
        try:
            yield from range(100)
        finally:
            closed_in.append(threading.current_thread().name)

    with video.Prefetch(source(), name="prefetch-test") as items:
        assert next(items) == 0
    assert closed_in == ["prefetch-test"] and not items._thread.is_alive()
    with pytest.raises(StopIteration):
        next(items)
    with pytest.raises(ValueError, match="depth"):
        video.Prefetch(iter([]), depth=0)


def test_prefetch_dropped_without_close_lets_its_worker_end():
    import gc

    items = video.Prefetch(iter(range(100)))
    assert next(items) == 0
    worker = items._thread
    del items
    gc.collect()
    worker.join(DEADLINE_S)
    assert not worker.is_alive()
