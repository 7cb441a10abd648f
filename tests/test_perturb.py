"""Each perturbation of :mod:`stylefusion.perturb` changes frames as specified, reproducibly.

The frames are the real carphone clip (a man talking in a car), so blur, noise and compression act
on real image statistics, not on a synthetic pattern chosen to pass.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from stylefusion.perturb import (PERTURBATIONS, PRESETS, Perturbation, PerturbationError, encode_h264,
                                 parse_perturbations, perturb_video, read_frames)
from videogen import carphone_path


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, float]:
    frames, fps = read_frames(carphone_path())
    return frames[:12], fps


def laplacian_var(frames: np.ndarray) -> float:
    return float(np.mean([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames]))


def high_freq_energy(frames: np.ndarray) -> float:
    """Share of the grey spectrum's energy above 0.1 cycles a pixel (the detail pixelation removes;
    closer to Nyquist, the staircase of the bilinear up-scaling adds energy back)."""
    total = high = 0.0
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64)
        spec = np.abs(np.fft.fftshift(np.fft.fft2(g - g.mean()))) ** 2
        h, w = g.shape
        fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w)), indexing="ij")
        high += spec[np.hypot(fy, fx) > 0.1].sum()
        total += spec.sum()
    return high / total


def hsv(frames: np.ndarray) -> tuple[float, float]:
    """Mean saturation and the V channel's standard deviation."""
    s = np.concatenate([cv2.cvtColor(f, cv2.COLOR_RGB2HSV)[..., 1].ravel() for f in frames]).astype(float)
    v = np.concatenate([cv2.cvtColor(f, cv2.COLOR_RGB2HSV)[..., 2].ravel() for f in frames]).astype(float)
    return s.mean(), v.std()


def levels(name: str, clip, seed: int = 0) -> list[np.ndarray]:
    frames, fps = clip
    return [frames] + [Perturbation(name, lv).apply(frames, fps, seed)[0] for lv in PERTURBATIONS[name].levels]


def strictly_decreasing(xs: list[float]) -> bool:
    return all(a > b for a, b in zip(xs, xs[1:]))


def test_blur_lowers_laplacian_variance_with_each_level(clip):
    v = [laplacian_var(f) for f in levels("blur", clip)]
    assert strictly_decreasing(v), v


def test_pixelation_lowers_high_frequencies_with_each_level(clip):
    e = [high_freq_energy(f) for f in levels("pixelation", clip)]
    assert strictly_decreasing(e), e


def test_noise_raises_the_residual_std_with_each_level(clip):
    frames = clip[0]
    r = [float((f.astype(float) - frames.astype(float)).std()) for f in levels("noise", clip)]
    assert r[0] == 0 and all(a < b for a, b in zip(r, r[1:])), r


def test_saturation_and_contrast_move_hsv_statistics_monotonically(clip):
    sat = [hsv(f)[0] for f in levels("saturation", clip)]
    assert strictly_decreasing(sat), sat
    assert sat[-1] < 3  # level 5 (factor 0): grey, up to rounding
    val_std = [hsv(f)[1] for f in levels("contrast", clip)]
    assert strictly_decreasing(val_std), val_std


def test_blocks_are_grey_8x8_and_more_with_each_level(clip):
    frames = clip[0]
    changed = []
    for f in levels("block", clip)[1:]:
        diff = np.any(f != frames, axis=-1)
        assert np.all(f[diff] == 128)
        changed.append(int(diff.sum()))
    assert all(a < b for a, b in zip(changed, changed[1:])), changed


def test_crf_lowers_the_bitrate(clip, tmp_path):
    frames, fps = clip
    sizes = []
    for crf in PERTURBATIONS["h264"].values:
        sizes.append(os.path.getsize(encode_h264(frames, tmp_path / f"c{crf}.mp4", fps, crf=crf)))
    assert strictly_decreasing([float(s) for s in sizes]), sizes
    # social recompression: the clip (176x144) is never up-scaled; a higher CRF departs further
    errs = [float(np.abs(f.astype(float) - frames.astype(float)).mean()) for f in levels("social_360p", clip)[1:]]
    assert all(f.shape == frames.shape for f in levels("social_720p", clip))
    assert all(a < b for a, b in zip(errs, errs[1:])), errs


def test_social_resizes_the_short_side(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (4, 540, 960, 3), np.uint8)
    out, _ = Perturbation("social_360p", 1).apply(frames, 25.0)
    assert out.shape[1:3] == (360, 640)
    out, _ = Perturbation("social_720p", 1).apply(frames, 25.0)
    assert out.shape[1:3] == (540, 960)


def test_fps_change_resamples_time(clip):
    frames, fps = clip[0][:12], 30.0
    out, new = Perturbation("fps", 2).apply(frames, fps)  # 15 fps: every second frame
    assert new == 15.0 and len(out) == 6
    assert np.array_equal(out, frames[1::2])


def test_recapture_warps_darkens_and_frames_the_picture(clip):
    frames = clip[0]
    outs = levels("recapture", clip)[1:]
    for lv, f in enumerate(outs, 1):
        b = max(1, round(min(frames.shape[1:3]) * PERTURBATIONS["recapture"].values[lv - 1].border))
        assert np.all(f[:, :b] == 12) and np.all(f[:, -b:] == 12)  # the bezel
    err = [float(np.abs(f.astype(float) - frames.astype(float)).mean()) for f in outs]
    assert all(a < b for a, b in zip(err, err[1:])), err


def test_seeded_is_reproducible_and_seeds_differ(clip):
    frames, fps = clip
    for name in ("noise", "block", "recapture"):
        a = Perturbation(name, 3).apply(frames, fps, seed=7)[0]
        b = Perturbation(name, 3).apply(frames, fps, seed=7)[0]
        c = Perturbation(name, 3).apply(frames, fps, seed=8)[0]
        assert np.array_equal(a, b) and not np.array_equal(a, c), name


def test_one_frame_works_like_a_clip(clip):
    frames, fps = clip
    one, _ = Perturbation("blur", 2).apply(frames[0], fps)
    assert one.shape == frames[0].shape
    assert np.array_equal(one, Perturbation("blur", 2).apply(frames[:1], fps)[0][0])


@pytest.mark.parametrize("text, message", [
    ("blur:6", "blur:6: level must be an integer in [1, 5] (Gaussian blur, DeeperForensics-1.0 GB)"),
    ("social_480p:0", "social_480p:0: level must be an integer in [1, 4]"),
    ("blur:x", "blur:x: level must be an integer in [1, 5]"),
    ("sharpen:1", "unknown perturbation 'sharpen'"),
])
def test_bad_level_or_name_is_a_one_line_error(text, message):
    with pytest.raises(PerturbationError) as exc:
        parse_perturbations(text)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_presets_and_lists():
    df = parse_perturbations("deeperforensics")
    assert len(df) == 35 and {p.name for p in df} == set(PRESETS["deeperforensics"])
    assert [p.value for p in df if p.name == "h264"] == [30, 32, 35, 38, 40]
    assert len(parse_perturbations("all")) == 35 + 3 * 4 + 4 + 4
    assert [p.key for p in parse_perturbations("GB:2, vc:5,blur:2")] == ["blur:2", "h264:5"]
    assert [p.key for p in parse_perturbations("fps")] == ["fps:1", "fps:2", "fps:3", "fps:4"]


def test_perturb_video_writes_a_clip_the_reader_opens(clip, tmp_path):
    from stylefusion.video import VideoReader

    out = perturb_video(carphone_path(), tmp_path / "p.mp4", Perturbation("saturation", 5))
    frames, fps = read_frames(out)
    assert frames.shape == (120, 144, 176, 3) and abs(fps - 29.97) < 0.01
    assert hsv(frames[:12])[0] < 3  # lossless: the grey stays grey
    with VideoReader(str(out)) as r:
        assert abs(r.duration - 4.0) < 0.1


def test_undecodable_input_is_a_perturbation_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(PerturbationError):
        perturb_video(bad, tmp_path / "o.mp4", Perturbation("blur", 1))
