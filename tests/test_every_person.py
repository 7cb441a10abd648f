"""Training data is what inference judges (issue 22): every judged person, and fake labels read as
the datasets allow them.

The fixtures are made by the real producers: ``stylefusion extract`` writes the cache from videos
with two real faces (test_tracking's side-by-side scene: the carphone man and Grace Hopper), and
``stylefusion train`` trains on it. A fake video of two people is read as a multiple-instance bag
(no dataset here says which face is fake); a fake video of one person gives that person every
segment's label.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from stylefusion.detector import StyleFusionDetector, init_checkpoint
from stylefusion.research import extract as extract_mod
from stylefusion.research import train as train_mod
from stylefusion.research.cache import FeatureCache
from stylefusion.research.data import load_features
from stylefusion.research.manifest import ManifestRecord, write_manifest
from stylefusion.research.train import bag_logits
from test_tracking import cropper, faces, side_by_side  # noqa: F401  (fixtures)
from videogen import carphone_path

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory, side_by_side, one_thread):  # noqa: F811
    """A manifest of two-person fakes and one-person reals, extracted and trained on by the CLIs."""
    work = tmp_path_factory.mktemp("every_person")
    ckpt = work / "ckpt"
    # 2 s windows: the 4 s two-person scene is 2 windows x 2 people = 4 segments.
    init_checkpoint("tiny", ckpt, seed=0, window_s=2.0)
    rows = []
    for i, split in enumerate(["train", "train", "val"]):
        two = work / f"two{i}.mp4"
        one = work / f"one{i}.mp4"
        shutil.copy(side_by_side, two)
        shutil.copy(carphone_path(), one)
        rows.append(ManifestRecord(f"two{i}", str(two), 1, split, "synthetic", "face-swap"))
        rows.append(ManifestRecord(f"one{i}", str(one), 0, split, "synthetic", "original"))
    one_fake = work / "one_fake.mp4"  # a fake of one person: every segment is that person's
    shutil.copy(carphone_path(), one_fake)
    rows.append(ManifestRecord("one_fake", str(one_fake), 1, "train", "synthetic", "face-swap"))
    manifest = work / "manifest.csv"
    write_manifest(rows, manifest)
    cache = work / "cache"
    assert extract_mod.main(["--manifest", str(manifest), "--model", str(ckpt), "--cache", str(cache),
                             "--no-progress", "--threads", "1"]) == 0
    trained = work / "trained"
    assert train_mod.main(["--cache", str(cache), "--out", str(trained), "--epochs", "3", "--batch-size", "4",
                           "--seed", "0", "--threads", "1"]) == 0
    return {"work": work, "ckpt": ckpt, "cache": cache, "trained": trained, "two": rows[0].path}


def _entry(cache: Path, video_id: str):
    entry = next(e for e in FeatureCache(cache).entries(headers_only=True) if e.header.record.video_id == video_id)
    return FeatureCache(cache).read(entry.path)


def test_extract_keeps_every_judged_person_as_detect_judges_them(run):
    entry = _entry(run["cache"], "two0")
    seg = entry.features
    pairs = sorted(zip(np.asarray(seg.window).tolist(), np.asarray(seg.person).tolist()))
    assert pairs == [(0, 0), (0, 1), (1, 0), (1, 1)]  # both people in both windows
    # The same segments, on the same frames, as detect judges.
    det = StyleFusionDetector.from_pretrained(run["ckpt"])
    result = det.detect(run["two"], max_windows=extract_mod.MAX_WINDOWS)
    judged = sorted((s.window, s.person, tuple(f.source_index for f in s.frames))
                    for p in result.people for s in p.segments if s.judged)
    cached = sorted((int(w), int(p), tuple(np.asarray(idx).tolist()))
                    for w, p, idx in zip(seg.window, seg.person, seg.source_indices))
    assert cached == judged
    assert result.decision.segments == 4  # the unit the answer is calibrated at


def test_a_fake_video_of_two_people_is_one_bag(run):
    data = load_features(run["cache"], splits=("train", "val"))
    units = data.units()
    by_video = {r["video_id"]: v for v, r in enumerate(data.records)}
    bags = [units.segments[units.ptr[u]:units.ptr[u + 1]].tolist() for u in range(len(units))
            if units.ptr[u + 1] - units.ptr[u] > 1]
    two_videos = sorted(by_video[f"two{i}"] for i in range(3))
    assert units.bags == 3 and len(bags) == 3
    assert sorted(int(data.video_index[b[0]]) for b in bags) == two_videos
    assert all(len(b) == 4 and len({int(data.video_index[i]) for i in b}) == 1 for b in bags)
    # Every other segment is its own unit with its video's label (one-person fakes included).
    single = [units.segments[units.ptr[u]].item() for u in range(len(units)) if units.ptr[u + 1] - units.ptr[u] == 1]
    assert len(single) + 12 == len(data)
    one_fake = [i for i in single if int(data.video_index[i]) == by_video["one_fake"]]
    assert one_fake and all(bool(units.known[i]) for i in one_fake)
    assert not units.known[bags[0]].any()
    # Segment-level calibration reads the bag's witness: the segment with the highest score.
    scores = torch.arange(len(data), dtype=torch.float64)
    inst = data.instances(scores)
    for b in bags:
        assert [i for i in inst if i in b] == [max(b)]
    assert set(single) <= set(inst.tolist())


def test_train_says_which_view_it_chose(run):
    config = json.loads((run["trained"] / "config.json").read_text())
    training = config["training"]
    assert training["fake_labels"].startswith("multiple-instance: 2 fake videos of several judged people")
    assert "per bag (2 bags" in training["recipe"]["loss"]
    card = (run["trained"] / "README.md").read_text()
    assert f"| labels of fake videos | {training['fake_labels']} |" in card
    det = StyleFusionDetector.from_pretrained(run["trained"])
    assert det.config.max_people == 4
    res = det.detect(run["two"])
    judged = [s for p in res.people for s in p.segments if s.judged]
    assert {s.person for s in judged} == {0, 1}  # both people, in the trained window_s's windows
    assert res.decision.segments == len(judged) and res.label.value != "untrained"


def test_the_band_coverage_is_measured_at_the_unit_answered(run):
    from stylefusion.research.calibrate import coverage, head_outputs, sigmoid

    det = StyleFusionDetector.from_pretrained(run["trained"])
    cal = det.rule.calibration
    val = load_features(run["cache"], splits=("val",))  # the 2 val videos (a two-person fake, a real)
    logits, _ = head_outputs(det.fusion, val.content, val.style)
    v_p = val.video_scores(sigmoid(logits / cal.temperature))
    expected = coverage(val.video_labels.numpy().astype(int), v_p, cal.conformal_quantile)
    assert cal.coverage_val_videos == pytest.approx(expected)
    words = det.detect(run["two"]).decision.band_source
    assert f"{expected:.1%} of videos, each by the segment that decides its answer" in words


def test_bag_logit_is_the_max_and_teaches_only_its_witness():
    logits = torch.tensor([0.2, 1.5, -0.3, 0.7], requires_grad=True)
    owner = torch.tensor([0, 0, 0, 1])
    out = bag_logits(logits, owner, 2)
    assert out.tolist() == pytest.approx([1.5, 0.7])
    out.sum().backward()
    assert logits.grad.tolist() == [0.0, 1.0, 0.0, 1.0]
    same = torch.tensor([0.1, 0.2])
    assert bag_logits(same, torch.arange(2), 2) is same  # no bag: the identity


def test_evaluate_reports_the_rates_by_people_and_windows(run):
    from stylefusion.research.calibrate import sigmoid, head_outputs
    from stylefusion.research.evaluate import unit_rates_report
    from stylefusion.decision import threshold_for

    det = StyleFusionDetector.from_pretrained(run["trained"])
    data = load_features(run["cache"], splits=("train", "val"))
    logits, _ = head_outputs(det.fusion, data.content, data.style)
    seg_p = sigmoid(logits / det.rule.calibration.temperature)
    report = unit_rates_report(det, data, seg_p)
    groups = {(g["people"], g["windows"]): g for g in report["groups"]}
    # 2 people (the fakes) in the 4 s scene's 2 windows of 2 s; 1 person in carphone's 3 (4.4 s)
    assert set(groups) == {(2, 2), (1, 3)}
    two, one = groups[(2, 2)], groups[(1, 3)]
    assert (two["real"], two["fake"], two["segments"]) == (0, 3, [4])
    assert (one["real"], one["fake"], one["segments"]) == (3, 1, [3])
    # The rates are the videos' at the threshold for their number of segments.
    v_p = data.video_scores(seg_p)
    t = threshold_for(det.rule, 4)[0]
    fakes = [v for v, r in enumerate(data.records) if r["video_id"].startswith("two")]
    assert two["tpr"] == pytest.approx(np.mean([v_p[v] >= t for v in fakes]))
    assert two["fpr"] is None and two["fpr_interval"] is None
    assert one["fpr_interval"][0] <= one["fpr"] <= one["fpr_interval"][1]
