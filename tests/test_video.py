"""Frame sampling: uniform indices, circular padding, provenance, rotation, VFR, bad files."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest

from stylefusion.errors import VideoReadError
from stylefusion.video import read_frames, sample_indices
from videogen import audio_only, read_barcode, set_mp4_rotation, write_video


@pytest.mark.parametrize("n", [1, 10, 32, 33, 1000])
def test_sampling_synthetic(tmp_path, n):
    path = write_video(tmp_path / f"v{n}.mp4", n, fps=25)
    frames = read_frames(path, 32)
    assert frames.images.shape == (32, 112, 64, 3)
    assert frames.info.num_frames == n
    expected = sample_indices(n, 32)
    np.testing.assert_array_equal(frames.source_indices, expected)
    # Each sampled image really is the frame its source index names.
    decoded = [read_barcode(im) for im in frames.images]
    assert decoded == expected.tolist()
    np.testing.assert_allclose(frames.timestamps, expected / 25.0, atol=1e-6)
    if n >= 32:
        assert expected[0] == 0 and expected[-1] == n - 1
        assert np.all(np.diff(expected) > 0)  # strictly increasing, no duplicates
    else:
        assert expected.tolist() == [i % n for i in range(32)]  # circular padding, in order


def test_sample_indices_spacing():
    idx = sample_indices(1000, 32)
    gaps = np.diff(idx)
    assert gaps.min() >= 32 and gaps.max() <= 33
    assert sample_indices(33, 32).tolist() == list(range(16)) + list(range(17, 33))


def test_matches_sequential_decode(carphone):
    """Seeking decode gives exactly the pixels of a plain sequential decode."""
    with av.open(str(carphone)) as c:
        everything = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    frames = read_frames(carphone, 32)
    assert frames.info.num_frames == len(everything) == 120
    for img, idx in zip(frames.images, frames.source_indices):
        np.testing.assert_array_equal(img, everything[idx])


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata(tmp_path, degrees):
    def frame(i):
        img = np.zeros((32, 64, 3), np.uint8)
        img[:8, :8] = 255  # marker in the top-left corner of the stored picture
        return img

    plain = write_video(tmp_path / "plain.mp4", 5, width=64, height=32, frame_fn=frame)
    rotated = set_mp4_rotation(plain, tmp_path / f"rot{degrees}.mp4", degrees)
    frames = read_frames(rotated, 4)
    img = frames.images[0]
    h, w = img.shape[:2]
    assert (h, w) == ((64, 32) if degrees in (90, 270) else (32, 64))
    ys, xs = np.where(img[..., 0] > 128)
    cy, cx = ys.mean() / h, xs.mean() / w
    # Where a player shows the top-left marker after rotating clockwise.
    corner = {90: (0, 1), 180: (1, 1), 270: (1, 0)}[degrees]
    assert (round(cy), round(cx)) == corner
    assert (frames.info.width, frames.info.height) == (w, h)


def test_variable_frame_rate(tmp_path):
    pts = np.cumsum([0] + [40 if i % 3 else 120 for i in range(1, 90)])  # ms, irregular gaps
    path = write_video(tmp_path / "vfr.mp4", 90, pts=pts, time_base=Fraction(1, 1000))
    frames = read_frames(path, 32)
    assert frames.info.num_frames == 90
    np.testing.assert_array_equal([read_barcode(im) for im in frames.images], frames.source_indices)
    np.testing.assert_allclose(frames.timestamps, pts[frames.source_indices] / 1000.0, atol=1e-3)


def test_long_video_sampled_by_seeking(tmp_path):
    path = write_video(tmp_path / "long.mp4", 1500, width=32, height=112, options={"g": "50"})
    frames = read_frames(path, 8)
    assert [read_barcode(im) for im in frames.images] == frames.source_indices.tolist()


def _bad_files(tmp_path, carphone):
    good = carphone.read_bytes()
    files = {
        "empty": b"",
        "random": np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        "text": b"hello, this is not a video\n" * 100,
        "html": b"<!doctype html><html><body>nope</body></html>",
        "truncated_head": good[:2000],
        "png": bytes.fromhex("89504e470d0a1a0a") + b"\x00" * 100,
        "zip": b"PK\x03\x04" + b"\x00" * 200,
    }
    out = {}
    for name, data in files.items():
        p = tmp_path / f"{name}.mp4"
        p.write_bytes(data)
        out[name] = p
    out["audio_only"] = audio_only(tmp_path / "audio.m4a", n_frames=10)
    out["directory"] = tmp_path
    link = tmp_path / "dangling.mp4"
    os.symlink(tmp_path / "nowhere.mp4", link)
    out["dangling_symlink"] = link
    out["missing"] = tmp_path / "missing.mp4"
    return out


def test_bad_files_raise_our_error(tmp_path, carphone):
    for name, path in _bad_files(tmp_path, carphone).items():
        with pytest.raises(VideoReadError) as info:
            read_frames(path, 32)
        msg = str(info.value)
        assert str(path) in msg and "\n" not in msg, (name, msg)
        assert "Traceback" not in msg


def test_truncated_files(tmp_path, carphone):
    """A cut-off file with its index at the front keeps the frames it has and says it was cut;
    one whose index (moov) was at the end is unreadable and says so in one line."""
    full = write_video(tmp_path / "fs.mp4", 100, container_options={"movflags": "faststart"})
    data = full.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # index first
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    frames = read_frames(cut, 32)
    assert frames.info.truncated and 0 < frames.info.num_frames < 100
    assert read_frames(full, 32).info.truncated is False
    # Sampling covers what is there; each frame is the one its index names, except the last
    # packets cut in half, which are filled from their nearest decoded neighbour.
    n = frames.info.num_frames
    np.testing.assert_array_equal(frames.source_indices, sample_indices(n, 32))
    for img, i in zip(frames.images, frames.source_indices):
        if i < n - 2:
            assert read_barcode(img) == i
        else:
            assert abs(read_barcode(img) - i) <= 2

    tail = carphone.read_bytes()
    assert tail.find(b"moov") > tail.find(b"mdat")  # the carphone clip keeps its index at the end
    (tmp_path / "cut_tail.mp4").write_bytes(tail[: len(tail) * 2 // 3])
    with pytest.raises(VideoReadError, match="not a readable video"):
        read_frames(tmp_path / "cut_tail.mp4", 32)
