"""Raw elementary streams (.264/.h264, .265/.hevc) as cameras and encoders write them: no container,
no packet timestamps, no seeking. They are sampled in one sequential pass (issue 13, item 5).

The carphone clip (a real face video) is remuxed packet for packet into a raw H.264 stream, so its
decoded frames must equal the mp4's; an HEVC stream is re-encoded from the same frames (lossy, so
compared with a tolerance). The two real raw clips in ``../shared/clips`` are used when present.
"""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
from helpers import main_segment, NoSeek
import pytest

from stylefusion import video
from stylefusion.cli import collect_videos, main
from stylefusion.errors import VideoReadError
from stylefusion.video import read_frames, sample_indices
from videogen import encode_frames, read_barcode, remux_raw, write_video

SHARED_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "clips"
REAL_RAW_CLIPS = ["real_openh264_men_whisper_640x320.264", "real_openh264_zhling_1280x720.264"]


def _all_frames(path: Path, fmt: str | None = None) -> list[np.ndarray]:
    """Every frame of ``path`` in presentation order, decoded plainly (the reference)."""
    with av.open(str(path), format=fmt) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def carphone_frames(carphone) -> list[np.ndarray]:
    return _all_frames(carphone)


@pytest.fixture(scope="module")
def carphone_264(carphone, tmp_path_factory) -> Path:
    return remux_raw(carphone, tmp_path_factory.mktemp("raw") / "carphone.264", "h264")


def _check_faces_output(out: Path, n_source: int) -> dict:
    """32 PNG crops of the one person and a faces.json that lists them with the sampled source
    indices; returns that person's segment (with the video's info under "video")."""
    doc = json.loads((out / "faces.json").read_text())
    seg = main_segment(doc)
    pngs = sorted((out / "person_0").glob("*.png"))
    assert len(pngs) == 32 and len(seg["frames"]) == 32
    assert [f"person_0/{p.name}" for p in pngs] == sorted(f["file"] for f in seg["frames"])
    assert [f["source_index"] for f in seg["frames"]] == sample_indices(n_source, 32).tolist()
    assert doc["video"]["num_frames"] == n_source
    return {**seg, "video": doc["video"], "face_found": sum(not f["fallback"] for f in seg["frames"])}


def test_raw_h264_is_sampled_like_its_mp4(carphone, carphone_264, carphone_frames):
    assert carphone_264.read_bytes()[:4] == b"\0\0\0\1"  # Annex B start code: no container
    with av.open(str(carphone_264)) as c:  # what made it fail before: no timestamps, no seeking
        assert all(p.pts is None and p.dts is None for p in c.demux(video=0) if p.size)
    mp4 = read_frames(carphone, 32)
    raw = read_frames(carphone_264, 32)
    assert raw.info.codec == "h264" and raw.info.num_frames == 120 == mp4.info.num_frames
    np.testing.assert_array_equal(raw.source_indices, mp4.source_indices)
    assert (np.diff(raw.source_indices) > 0).all()
    # Same packets, same decoder: the frames are the mp4's (tolerance for a decoder difference).
    diff = np.abs(raw.images.astype(np.int16) - mp4.images.astype(np.int16))
    assert diff.mean() < 1.0, diff.mean()
    # ... and each is the frame its index names, not a neighbour.
    for img, i in zip(raw.images.astype(np.int16), raw.source_indices):
        errs = {j: np.abs(img - carphone_frames[j]).mean() for j in (i - 1, i, i + 1) if 0 <= j < 120}
        assert min(errs, key=errs.get) == i, (i, errs)
    # Without timestamps frames are timed as index / frame rate (29.97 from the stream's SPS).
    assert raw.info.fps == pytest.approx(30000 / 1001, rel=1e-6)
    np.testing.assert_allclose(raw.timestamps, raw.source_indices * 1001 / 30000, atol=1e-9)
    np.testing.assert_allclose(raw.timestamps, mp4.timestamps, atol=1e-3)


def test_faces_command_on_raw_h264(carphone_264, carphone_frames, tmp_path, capsys):
    out = tmp_path / "crops"
    assert main(["faces", str(carphone_264), "--out", str(out)]) == 0
    assert "wrote 32 crops of 1 judged segments (1 people)" in capsys.readouterr().out
    doc = _check_faces_output(out, 120)
    assert doc["face_found"] == 32 and doc["video"]["codec"] == "h264"
    indices = [f["source_index"] for f in doc["frames"]]
    assert indices == sorted(set(indices))  # strictly increasing
    # The face boxes lie on the frames they name: the box's pixels in the mp4's frame at that
    # index match the crop better than those of a frame 10 later (the head moves).
    import cv2

    def err(crop: np.ndarray, box: list[float], j: int) -> float:
        """Mean difference between a crop and the box's pixels in source frame ``j``."""
        x0, y0, x1, y1 = (round(v) for v in box)
        patch = carphone_frames[j][y0:y1, x0:x1]  # crop boxes are kept inside the frame
        resized = cv2.resize(patch, crop.shape[1::-1], interpolation=cv2.INTER_AREA)
        return float(np.abs(resized.astype(np.float32) - crop).mean())

    for entry in doc["frames"][::8]:
        crop = cv2.cvtColor(cv2.imread(str(out / entry["file"])), cv2.COLOR_BGR2RGB).astype(np.float32)
        i = entry["source_index"]
        other = i + 10 if i + 10 < 120 else i - 10
        here, there = err(crop, entry["box"], i), err(crop, entry["box"], other)
        assert here < there, (i, here, there)


@pytest.mark.parametrize("name", REAL_RAW_CLIPS)
def test_faces_command_on_real_raw_clips(name, tmp_path, capsys):
    if not SHARED_CLIPS.is_dir():
        pytest.skip("../shared/clips is absent: the real raw H.264 clips are not on this machine")
    clip = SHARED_CLIPS / name
    reference = _all_frames(clip, "h264")  # 9 and 19 frames: a plain decode of the whole stream
    out = tmp_path / "crops"
    assert main(["faces", str(clip), "--out", str(out)]) == 0
    capsys.readouterr()
    doc = _check_faces_output(out, len(reference))
    assert doc["face_found"] >= 30, doc["face_found"]  # one person, facing the camera
    first = [f["source_index"] for f in doc["frames"]][:len(reference)]
    assert first == list(range(len(reference)))  # increasing, then padded circularly
    frames = read_frames(clip, 32)
    for img, i in zip(frames.images, frames.source_indices):
        assert np.abs(img.astype(np.int16) - reference[i]).mean() < 1.0, i
    np.testing.assert_allclose(frames.timestamps, frames.source_indices / 25.0, atol=1e-9)


def test_raw_hevc_stream(tmp_path, carphone_frames):
    if "libx265" not in av.codec.codecs_available:
        pytest.skip("this PyAV build has no libx265 encoder to write a raw HEVC stream")
    frames = carphone_frames
    for suffix in (".hevc", ".265"):
        path = encode_frames(tmp_path / f"carphone{suffix}", frames, width=176, height=144, codec="libx265",
                             container_format="hevc",
                             options={"preset": "ultrafast", "x265-params": "log-level=none:crf=18"})
        assert path.read_bytes()[:4] == b"\0\0\0\1"
        got = read_frames(path, 32)
        assert got.info.codec == "hevc" and got.info.num_frames == 120
        np.testing.assert_array_equal(got.source_indices, sample_indices(120, 32))
        for img, i in zip(got.images.astype(np.int16), got.source_indices):
            errs = {j: np.abs(img - frames[j]).mean() for j in (i - 1, i, i + 1) if 0 <= j < 120}
            assert errs[i] < 4.0 and min(errs, key=errs.get) == i, (i, errs)  # lossy, but that frame


def test_b_frames_and_long_gops_keep_frame_identity(tmp_path):
    """Decoder delay (B-frames) and many GOPs: the n-th decoded frame is source frame n."""
    path = write_video(tmp_path / "barcodes.h264", 400, container_format="h264",
                       options={"preset": "fast", "bf": "3", "g": "24"})
    frames = read_frames(path, 32)
    assert frames.info.num_frames == 400
    assert [read_barcode(im) for im in frames.images] == frames.source_indices.tolist()
    # The stream's rate (the encoder's 25 fps, from the SPS) times the frames.
    np.testing.assert_allclose(frames.timestamps, frames.source_indices / 25.0, atol=1e-9)


def test_sequential_pass_keeps_only_the_sampled_frames(carphone_264, monkeypatch):
    """Memory is bounded by the sampled frames: only they are converted to RGB and kept."""
    converted = []
    real = video._to_rgb

    def counting(frame, max_side):
        converted.append(frame)
        return real(frame, max_side)

    monkeypatch.setattr(video, "_to_rgb", counting)
    frames = read_frames(carphone_264, 8)
    assert len(converted) == 8 and frames.info.num_frames == 120


def test_stream_cut_out_of_a_longer_one(tmp_path):
    """A stream that starts mid-GOP: the pictures before the first keyframe are not counted, so
    index n is still the n-th decoded frame."""
    full = write_video(tmp_path / "full.264", 120, container_format="h264", options={"g": "30"})
    with av.open(str(full)) as c:
        sizes = [p.size for p in c.demux(video=0) if p.size]
    data = full.read_bytes()
    cut = tmp_path / "cut.264"
    cut.write_bytes(data[sum(sizes[:10]):])  # packets 10.. (the next keyframe is 30)
    frames = read_frames(cut, 16)
    assert frames.info.num_frames == 90
    assert [read_barcode(im) - 30 for im in frames.images] == frames.source_indices.tolist()


def test_non_seekable_file_with_timestamps_is_read_sequentially(carphone, monkeypatch, caplog):
    """A demuxer that refuses to seek (no index) gets the same frames through one sequential pass."""
    expected = read_frames(carphone, 32)
    opened = video._open
    seeks = []


    monkeypatch.setattr(video, "_open", lambda path: NoSeek(opened(path), seeks))
    with caplog.at_level(logging.INFO, logger="stylefusion.video"):
        got = read_frames(carphone, 32)
    assert len(seeks) == 1 and "cannot seek" in caplog.text
    np.testing.assert_array_equal(got.source_indices, expected.source_indices)
    np.testing.assert_array_equal(got.images, expected.images)
    np.testing.assert_allclose(got.timestamps, expected.timestamps)


def test_folder_scan_finds_raw_streams(tmp_path):
    names = ["cam1.264", "cam2.h264", "cam3.265", "cam4.hevc", "CAM5.H264", "clip.mp4"]
    (tmp_path / "sub").mkdir()
    for name in names:
        (tmp_path / "sub" / name).write_bytes(b"x")
    (tmp_path / "sub" / "notes.txt").write_text("not a video")
    found = collect_videos([str(tmp_path)])
    assert sorted(p.name for p in found) == sorted(names)
    from stylefusion.research import datasets

    assert datasets.VIDEO_EXTENSIONS is video.VIDEO_EXTENSIONS  # one list for every caller
    assert {".264", ".h264", ".265", ".hevc", ".mp4", ".mov", ".ts", ".gif"} <= set(video.VIDEO_EXTENSIONS)


def test_damaged_raw_streams_give_one_line_errors(tmp_path, carphone_264, capsys):
    data = carphone_264.read_bytes()
    bad = {
        "garbage.264": np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        "text.h264": b"this is not a camera stream\n" * 100,
        "headers_only.264": data[:60],  # parameter sets, not one whole picture
        "no_parameter_sets.264": data[len(data) // 2:],  # the tail of a stream with SPS/PPS only at the start
        "garbage.hevc": np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
    }
    for name, payload in bad.items():
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(VideoReadError) as info:
            read_frames(path, 32)
        msg = str(info.value)
        assert msg.startswith(str(path) + ": ") and "\n" not in msg, (name, msg)
        assert main(["faces", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == f"error: {msg}" and "Traceback" not in "".join(err), (name, err)


def test_truncated_raw_stream_keeps_what_is_there(tmp_path):
    full = write_video(tmp_path / "full.264", 100, container_format="h264")
    cut = tmp_path / "cut.264"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    frames = read_frames(cut, 32)
    n = frames.info.num_frames
    assert 0 < n < 100
    np.testing.assert_array_equal(frames.source_indices, sample_indices(n, 32))
    got = [read_barcode(img) for img in frames.images]
    assert got[:-1] == frames.source_indices[:-1].tolist()
    # The last packet is cut in half: that picture is concealed by the decoder or filled from the
    # nearest sampled frame, so it shows a frame close to the end.
    assert abs(got[-1] - (n - 1)) <= 2, (got[-1], n)


def test_frame_rate_fallback_for_streams_without_one():
    none = SimpleNamespace(guessed_rate=None, average_rate=None, base_rate=None)
    assert video._nominal_rate(none) == video.FALLBACK_FPS == 25
    absurd = SimpleNamespace(guessed_rate=Fraction(90000, 1), average_rate=None, base_rate=Fraction(30, 1))
    assert video._nominal_rate(absurd) == 30


def test_yuv4mpeg_seek_that_lands_short(tmp_path):
    """yuv4mpeg (uncompressed, every frame a keyframe) seeks to one frame before the target; the
    reader reads on to it instead of giving up on that target."""
    path = write_video(tmp_path / "v.y4m", 60, codec="rawvideo", container_format="yuv4mpegpipe")
    frames = read_frames(path, 8)
    assert [read_barcode(im) for im in frames.images] == frames.source_indices.tolist()
