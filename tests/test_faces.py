"""Face crops of the real carphone clip, centre crops without faces, following each of two people."""

from __future__ import annotations

import numpy as np
import pytest

from stylefusion.config import StyleFusionConfig
from stylefusion.faces import FaceCropper, iou
from stylefusion.people import analyse_people
from stylefusion.video import read_frames
from videogen import carphone_path, composite_face_video, write_video


@pytest.fixture(scope="module")
def cropper():
    return FaceCropper(StyleFusionConfig())


@pytest.fixture(scope="module")
def hd_video(tmp_path_factory):
    """One second of the carphone face moving over a 1280x720 background (encoded once per module)."""
    return composite_face_video(tmp_path_factory.mktemp("hd") / "hd.mp4", seconds=1.0)


def test_carphone_track(cropper, carphone):
    a = analyse_people(carphone, cropper.config, cropper, 8, 4)
    assert len(a.crops) == 1
    track = a.crops[0]
    assert track.crops.shape == (32, 256, 256, 3) and track.crops.dtype == np.uint8
    assert not track.fallback.any() and track.face_found_ratio == 1.0
    assert (track.probs > 0.95).all()
    assert len(np.unique(track.source_indices)) == 32 and (np.diff(track.source_indices) > 0).all()
    # Square boxes inside the 176x144 frame, on the same person throughout.
    w = track.boxes[:, 2] - track.boxes[:, 0]
    h = track.boxes[:, 3] - track.boxes[:, 1]
    np.testing.assert_allclose(w, h, rtol=1e-5)
    assert (track.boxes[:, :2] >= 0).all() and (track.boxes[:, 2] <= 176 + 1e-3).all()
    assert (track.boxes[:, 3] <= 144 + 1e-3).all()
    overlaps = [iou(track.boxes[i], track.boxes[i + 1]) for i in range(31)]
    assert min(overlaps) > 0.6, overlaps


def test_margin_in_source_pixels(cropper):
    box = np.array([40, 30, 80, 90], np.float32)  # 40 x 60 face in a 200 x 300 frame
    crop = cropper.crop_box(box, 200, 300)
    side = crop[2] - crop[0]
    assert side == pytest.approx(60 * 1.2)  # longest side grown by 20%
    assert crop[3] - crop[1] == pytest.approx(side)
    assert (crop[0] + crop[2]) / 2 == pytest.approx(60) and (crop[1] + crop[3]) / 2 == pytest.approx(60)
    # Near the border the square is shifted inside instead of being cut.
    edge = cropper.crop_box(np.array([0, 0, 50, 50], np.float32), 200, 300)
    assert edge[0] == 0 and edge[1] == 0 and edge[2] == pytest.approx(60)


def test_no_face_falls_back_to_centre_crop(cropper, tmp_path):
    """With ``min_person_s=0`` (data without faces) a stretch where nobody is followed is judged on
    centre crops, flagged; with the default it is not judged, and the answer says no face was found."""
    rng = np.random.default_rng(0)
    path = write_video(tmp_path / "noise.mp4", 40, width=160, height=96,
                       frame_fn=lambda i: rng.integers(0, 255, (96, 160, 3), dtype=np.uint8))
    assert analyse_people(path, cropper.config, cropper, 8, 4).judged == []
    config = cropper.config.replace(min_person_s=0)
    a = analyse_people(path, config, FaceCropper(config), 8, 4)
    assert len(a.crops) == 1
    track = a.crops[0]
    assert track.fallback.all() and track.face_found_ratio == 0.0
    assert (track.probs == 0).all()
    np.testing.assert_allclose(track.boxes[0], [32, 0, 128, 96])  # centre square of the short side
    assert track.crops.shape == (32, 256, 256, 3)


def test_follows_each_of_two_people(cropper, tmp_path):
    """Person A (left) stays large; person B (right) grows larger: each judged segment stays on one
    person, and the two are two people."""
    import av

    with av.open(str(carphone_path())) as c:
        face = next(c.decode(video=0)).to_ndarray(format="rgb24")[10:130, 30:150]  # 120 x 120 around the man

    def frame(i):
        img = np.full((360, 640, 3), 70, np.uint8)
        a = np.kron(face, np.ones((2, 2, 1), np.uint8))  # 240 px
        img[60:300, 20:260] = a
        s = 1.0 + i / 20  # B grows from 120 to ~300 px
        bsz = int(120 * s)
        b = np.ascontiguousarray(face[:, ::-1])
        import cv2

        b = cv2.resize(b, (bsz, bsz))
        y0 = max(0, 180 - bsz // 2)
        img[y0:y0 + bsz, 640 - bsz - 10:640 - 10] = b[: 360 - y0]
        return img

    path = write_video(tmp_path / "two.mp4", 40, width=640, height=360, frame_fn=frame)
    frames = read_frames(path, 32)
    dets = cropper.detect(frames.images)
    assert sum(len(b) >= 2 for b, _ in dets) >= 16, "both faces should be detected in many frames"
    a = analyse_people(path, cropper.config, cropper, 8, 4)
    assert len({seg.person for seg in a.judged}) == len(a.judged) >= 1
    for track in a.crops:
        centres = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
        sides = np.where(centres < 320, "left", "right")
        assert len(set(sides)) == 1, sides  # one person throughout


def test_large_frames_skip_fine_pyramid_levels_with_same_boxes(hd_video):
    """On 720p frames MTCNN skips the small-face pyramid levels yet finds the same boxes."""
    frames = read_frames(hd_video, 8)
    fast = FaceCropper(StyleFusionConfig(detect_max_side=640)).detect(frames.images)
    full = FaceCropper(StyleFusionConfig(detect_max_side=0)).detect(frames.images)
    for (bf, pf), (bx, px) in zip(fast, full):
        assert len(bf) >= 1 and len(bx) >= 1
        assert iou(bf[0], bx[0]) > 0.99
        assert pf[0] == pytest.approx(px[0], abs=1e-4)


def test_detection_holds_no_per_video_state(hd_video, carphone):
    """One cropper serves videos of any size, also concurrently: a large video's pyramid setting
    must not leak into the next call (the app shares one cropper between requests)."""
    from concurrent.futures import ThreadPoolExecutor

    hd = read_frames(hd_video, 4).images
    small = read_frames(carphone, 8).images
    expected = FaceCropper(StyleFusionConfig()).detect(small)
    shared = FaceCropper(StyleFusionConfig())
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(shared.detect, imgs) for imgs in (hd, small, hd, small)]
        results = [j.result() for j in jobs]
    shared.detect(hd)  # a large video last: its coarser pyramid is not left behind
    assert shared.mtcnn.min_face_size == StyleFusionConfig().mtcnn_min_face_size
    for got in (results[1], results[3], shared.detect(small)):
        assert len(got) == len(expected)
        for (b, p), (eb, ep) in zip(got, expected):
            np.testing.assert_array_equal(b, eb)
            np.testing.assert_array_equal(p, ep)
