"""The front end on hostile and edited input (issue 21): cannot-judge reasons it can measure, bounded
work on videos of cuts and crowds, one bad stretch losing nothing else; the result's shots and
spans, the same from the API and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import av
import cv2
import numpy as np
import pytest

from stylefusion import video
from stylefusion.config import StyleFusionConfig
from stylefusion.faces import FaceCropper
from stylefusion.people import analyse_people, scan_indices
from stylefusion.results import Label, result_schema
from videogen import carphone_path, encode_frames


@pytest.fixture(scope="module")
def cropper():
    return FaceCropper(StyleFusionConfig())


@pytest.fixture(scope="module")
def car_frames():
    with av.open(str(carphone_path())) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_a_dark_video_is_too_dark_not_faceless(tiny_detector, car_frames, tmp_path):
    """Carphone at 12% brightness: a person is plainly there, the detector cannot find the face;
    the answer says it is too dark, with the measured brightness."""
    dark = [np.clip(f * 0.12, 0, 255).astype(np.uint8) for f in car_frames]
    res = tiny_detector.detect(encode_frames(tmp_path / "dark.mp4", dark, width=176, height=144, fps=30))
    assert res.label is Label.UNSUPPORTED and res.p_fake is None
    assert "too_dark" in res.message and "mean brightness 1" in res.message, res.message


@pytest.mark.parametrize("side", [44, 36])
def test_tiny_faces_are_listed_as_too_small(tiny_trained_ckpt, car_frames, tmp_path, side):
    """The carphone face at about 13 px (found by the scan, and too small for the input-quality
    limit) and at about 9 px (below the scan's smallest face, found by the one-off fine search) in a
    320x240 frame: answered as too small to judge, with the size, never 'no face'."""
    from stylefusion import StyleFusionDetector

    def frame(f):
        img = np.full((240, 320, 3), 110, np.uint8)
        small = cv2.resize(f, (side, side * 9 // 11), interpolation=cv2.INTER_AREA)  # the face: 52 px of 176
        img[100:100 + small.shape[0], 140:140 + side] = small
        return img

    det = StyleFusionDetector.from_pretrained(tiny_trained_ckpt, precision="fp32")
    res = det.detect(encode_frames(tmp_path / "tiny.mp4", [frame(f) for f in car_frames],
                                             width=320, height=240, fps=30))
    assert res.label is Label.UNSUPPORTED and res.p_fake is None, res.message
    assert re.search(r"too.small", res.message) and "px" in res.message, res.message


def test_a_video_of_cuts_and_a_crowd_is_bounded(cropper, car_frames, tmp_path):
    """A cut at every frame (another background each time) with 6 faces moving about: the scan looks
    at a bounded number of frames per window, whatever the cuts, and nothing is judged as one
    person across a cut."""
    rng = np.random.default_rng(0)
    face = cv2.resize(car_frames[0], (88, 72))

    def frame(i):
        img = np.empty((288, 704, 3), np.uint8)
        img[:] = rng.integers(0, 255, 3)
        for k in range(6):
            x, y = 20 + 110 * k + int(rng.integers(-10, 10)), 100 + int(rng.integers(-40, 40))
            img[y:y + 72, x:x + 88] = face
        return img

    path = encode_frames(tmp_path / "cuts.mp4", (frame(i) for i in range(1000)), width=704, height=288, fps=25)
    config = StyleFusionConfig(window_s=15.0)
    a = analyse_people(path, config, cropper, 2, 4)
    analysed = [w for w in a.windows if w.analysed]
    n_scan = sum(len(scan_indices(w, config)[0]) for w in analysed)
    assert n_scan <= 2 * config.scan_max_frames
    assert len(a.shots) == n_scan  # every scan frame is its own shot
    assert not any(s.judged for s in a.segments)  # nobody is on screen for 1 s in one shot
    assert all(s.end_s - s.start_s < 1.0 for s in a.segments)


def test_an_undecodable_stretch_loses_nothing_else(tiny_detector, car_frames, tmp_path, monkeypatch):
    """The carphone clip looped to 12 s in 4 windows; the scan frames of window 1 cannot be decoded:
    the other windows are judged, and the timeline says which stretch failed and why."""
    frames = (car_frames * 4)[:360]
    path = encode_frames(tmp_path / "long.mp4", frames, width=176, height=144, fps=30)
    det = tiny_detector
    det.config = det.config.replace(window_s=3.0)
    real = video._decode_targets
    calls = []

    def flaky(path_, container, stream, scan, wanted, max_side):
        calls.append(wanted[0])
        if 90 <= wanted[0] < 180 and calls.count(wanted[0]) == 1:  # window 1's scan, the first read of it
            return {}
        return real(path_, container, stream, scan, wanted, max_side)

    monkeypatch.setattr(video, "_decode_targets", flaky)
    try:
        res = det.detect(path)
    finally:
        det.config = det.config.replace(window_s=StyleFusionConfig().window_s)
    entries = {t.window: t for t in res.timeline}
    assert not entries[1].analysed and entries[1].message == "could not be decoded"
    assert all(entries[w].analysed and entries[w].people == [0] for w in (0, 2, 3))
    assert {s.window for s in res.segments if s.judged} == {0, 2, 3}


def test_shots_and_spans_in_the_result_and_the_cli(tiny_ckpt, tiny_detector, car_frames, tmp_path):
    """Two shots (a background change at 2 s): the API's result lists them with the segments' shots
    and spans, it validates against the shipped schema, and the CLI's JSON says the same."""
    import jsonschema

    def frame(i):
        f = car_frames[i % len(car_frames)]
        return f if i < 60 else np.ascontiguousarray(f[:, ::-1])  # mirrored: the picture changes, a cut

    path = encode_frames(tmp_path / "two_shots.mp4", [frame(i) for i in range(120)], width=176, height=144, fps=30)
    res = tiny_detector.detect(path)
    doc = res.to_dict()
    jsonschema.validate(doc, result_schema())
    assert [s["cut"] for s in doc["shots"]] == [False, True]
    assert doc["shots"][1]["start_s"] == pytest.approx(2.0, abs=0.2)
    segs = [s for p in doc["people"] for s in p["segments"]]
    assert sorted(s["shot"] for s in segs if s["judged"]) == [0, 1]
    assert len(doc["people"]) == 1  # the same man, mirrored: one id
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "stylefusion.cli", "detect", str(path), "--model", str(tiny_ckpt),
                           "--precision", "fp32", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(out.read_text())["results"][0]
    keys = ("window", "person", "shot", "start_s", "end_s", "judged", "label", "distinct_frames")

    def spans(d):
        return [[{k: s[k] for k in keys} | {"frames": [f["source_index"] for f in s["frames"]]}
                 for s in p["segments"]] for p in d["people"]]

    assert cli["shots"] == doc["shots"] and spans(cli) == spans(doc)


def test_one_duration_per_video(tiny_detector, carphone):
    """The result states one length: the video's duration is where its last window ends (it was the
    first-to-last frame time, one frame period shorter)."""
    res = tiny_detector.detect(carphone, provenance=False)
    assert res.video["duration"] == pytest.approx(res.timeline[-1].end_s, abs=1e-4)
    assert res.video["duration"] == pytest.approx(120 / 29.97, abs=1e-3)
