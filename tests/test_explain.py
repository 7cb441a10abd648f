"""Evidence through the interfaces: ``detect(explain=True)`` / ``explain(result)``, ``stylefusion
detect --explain DIR`` and the app's "Show evidence" give the same contributions and heatmaps for
one video, and an untrained checkpoint gives none anywhere, saying why.

The checkpoint is tiny, with backbones rescaled to a trained backbone's feature scale
(``trainkit.calibrated_checkpoint``: random tiny backbones give nearly constant features, whose
contributions would be rounding noise) and a random head marked trained: its evidence means nothing
about manipulation, but the arithmetic that produces evidence is the one a trained head gets (the
sanity checks of the evidence itself are in ``tests/test_evidence.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import load_app
from stylefusion import StyleFusionDetector
from stylefusion.cli import main as cli_main
from stylefusion.evidence import EVIDENCE_FILE, HEATMAP_NOTE, EvidenceUnavailable

pytest.importorskip("captum")

FRAMES = 2  # heatmaps per explained segment here (4 by default)


def _contributions(doc: dict) -> list[float]:
    """Every judged segment's per-frame contributions, in (window, person) order, one flat list."""
    segs = sorted((s for p in doc["people"] for s in p["segments"] if s["judged"]),
                  key=lambda s: (s["window"], s["person"]))
    return [f["contribution"] for s in segs for f in s["frames"]]


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory, carphone) -> Path:
    from stylefusion.config import StyleFusionConfig
    from trainkit import calibrated_checkpoint

    out = tmp_path_factory.mktemp("explain") / "ckpt"
    calibrated_checkpoint(out, [str(carphone)])
    det = StyleFusionDetector.from_pretrained(out)
    det.config = StyleFusionConfig.from_dict({**det.config.to_dict(), "trained": True,
                                              "training": {"data_summary": "test fixture (random head)"}})
    det.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def api(trained_ckpt, carphone):
    """The README's evidence call: ``detect(path, explain=True)``, without ``return_crops``."""
    det = StyleFusionDetector.from_pretrained(trained_ckpt)
    return det, det.detect(carphone, explain=True, explain_frames=FRAMES)


def test_api_contributions_and_heatmaps(api):
    det, res = api
    seg = res.deciding_segment
    assert seg is not None and seg.heatmaps is not None and len(seg.heatmaps) == FRAMES
    contrib = np.array([f.contribution for f in seg.frames])
    assert np.isfinite(contrib).all() and len(contrib) == det.config.num_frames
    assert np.abs(contrib).max() > 1e-3  # real numbers, not rounding noise
    # The explained frames are the ones that pushed most toward fake, strongest first.
    assert [h.position for h in seg.heatmaps] == np.argsort(-contrib, kind="stable")[:FRAMES].tolist()
    for h in seg.heatmaps:
        assert h.style.shape == h.content.shape == (det.config.face_size,) * 2
        assert h.source_index == seg.frames[h.position].source_index
    doc = res.to_dict()
    evidence = next(s for p in doc["people"] for s in p["segments"] if s["evidence"])["evidence"]
    assert [e["position"] for e in evidence] == [h.position for h in seg.heatmaps]
    assert evidence[0]["style_sum"] == pytest.approx(float(seg.heatmaps[0].style.sum()))
    assert len(seg.clip_contributions) == det.config.num_clips
    # explain() again on the same result gives the same maps (deterministic, no state kept).
    again = det.explain(res, max_frames=FRAMES)[0]
    np.testing.assert_allclose(again.heatmaps[0].style, seg.heatmaps[0].style, rtol=1e-5, atol=1e-9)
    assert "evidence" in res.timings


def test_detect_explain_then_write_evidence_writes_the_overlays(api, tmp_path):
    """``detect(path, explain=True)`` then ``write_evidence(result, DIR)``: the explained segment keeps
    its crops (its overlays are drawn on them), the other segments' crops are dropped as before."""
    import cv2

    from stylefusion.app.render import evidence_items
    from stylefusion.evidence import overlay, write_evidence

    det, res = api
    seg = res.deciding_segment
    size = det.config.face_size
    assert res.crops is None  # return_crops was not asked for
    assert seg.heatmaps and seg.crops is not None and seg.crops.shape == (det.config.num_frames, size, size, 3)
    assert all(s.crops is None for s in res.segments if s.judged and not s.heatmaps)
    written = write_evidence(res, tmp_path / "evidence")
    pngs = [p for p in written if p.suffix == ".png"]
    assert written[-1].name == EVIDENCE_FILE and len(pngs) == 2 * FRAMES
    doc = json.loads(written[-1].read_text())
    [entry] = [s for s in doc["segments"] if s["heatmaps"]]
    for h, mine in zip(entry["heatmaps"], seg.heatmaps):
        for kind, heatmap in (("style", mine.style), ("content", mine.content)):
            png = cv2.cvtColor(cv2.imread(str(tmp_path / "evidence" / h[f"{kind}_png"])), cv2.COLOR_BGR2RGB)
            # the file is the segment's own crop at that frame with its map drawn over it
            np.testing.assert_array_equal(png, overlay(seg.crops[mine.position], heatmap))
    # The app draws the same overlays from the same result.
    items = evidence_items(res)
    assert len(items) == 2 * FRAMES
    np.testing.assert_array_equal(items[0][0], overlay(seg.crops[seg.heatmaps[0].position], seg.heatmaps[0].style))


def test_cli_api_and_app_agree(api, trained_ckpt, carphone, tmp_path, capsys):
    det, res = api
    out, report = tmp_path / "evidence", tmp_path / "report.json"
    assert cli_main(["detect", str(carphone), "--model", str(trained_ckpt), "--json", str(report),
                     "--explain", str(out), "--explain-frames", str(FRAMES)]) == 0
    capsys.readouterr()
    cli = json.loads(report.read_text())["results"][0]
    api_doc = res.to_dict()
    assert _contributions(cli) == pytest.approx(_contributions(api_doc), abs=1e-6)
    files = json.loads((out / carphone.stem / EVIDENCE_FILE).read_text())
    assert files["note"] == HEATMAP_NOTE
    explained = [s for s in files["segments"] if s["heatmaps"]]
    assert len(explained) == 1 and len(explained[0]["heatmaps"]) == FRAMES
    assert [f["contribution"] for f in explained[0]["frames"]] == pytest.approx(_contributions(api_doc), abs=1e-6)
    for h, mine in zip(explained[0]["heatmaps"], res.deciding_segment.heatmaps):
        assert h["position"] == mine.position and h["style_sum"] == pytest.approx(float(mine.style.sum()), abs=1e-6)
        for kind in ("style_png", "content_png"):
            assert (out / carphone.stem / h[kind]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (out / carphone.stem).rglob(".*")]  # nothing half-written

    app = load_app()
    ui = app.App.load(str(trained_ckpt), demo_fallback=False)
    outputs = ui.analyze(str(carphone), progress=None)
    page = json.loads(Path(outputs[app.OUTPUTS.index("report")]).read_text())
    assert _contributions(page) == pytest.approx(_contributions(api_doc), abs=1e-6)
    fig = outputs[app.OUTPUTS.index("temporal_figure")]
    bars = next(t for t in fig.data if t.name == "contribution to the score")
    assert list(bars.y) == pytest.approx(_contributions(api_doc), abs=1e-6)  # the headline of the plot
    assert any(t.name == "attention weight (not evidence)" for t in fig.data)
    items, text = ui.evidence(outputs[-1], progress=None)
    assert len(items) == 2 * 4 and HEATMAP_NOTE in text  # the app explains 4 frames: style and motion each
    assert all(img.shape == (det.config.face_size, det.config.face_size, 3) for img, _ in items)
    page_maps = outputs[-1].deciding_segment.heatmaps
    for mine, theirs in zip(res.deciding_segment.heatmaps, page_maps):  # the app's first frames are the API's
        assert mine.position == theirs.position
        np.testing.assert_allclose(theirs.style, mine.style, rtol=1e-4, atol=1e-7)


def test_untrained_gives_no_evidence_anywhere(tiny_ckpt, carphone, tmp_path, capsys):
    det = StyleFusionDetector.from_pretrained(tiny_ckpt)
    with pytest.raises(EvidenceUnavailable, match="untrained"):
        det.detect(carphone, explain=True)
    res = det.detect(carphone, return_crops=True)
    assert all(f.contribution is None for f in res.frames)
    with pytest.raises(EvidenceUnavailable, match="untrained"):
        det.explain(res)
    code = cli_main(["detect", str(carphone), "--model", str(tiny_ckpt), "--explain", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "untrained: its evidence would explain random weights" in err
    assert not (tmp_path / "e").exists()
    app = load_app()
    ui = app.App.load(str(tiny_ckpt), demo_fallback=False)
    assert ui.evidence_prompt().startswith("No evidence: this checkpoint's fusion head is untrained")
    items, text = ui.evidence(res, progress=None)
    assert items == [] and "untrained" in text


def test_a_result_without_crops_cannot_be_explained(trained_ckpt, carphone):
    det = StyleFusionDetector.from_pretrained(trained_ckpt)
    res = det.detect(carphone)
    with pytest.raises(EvidenceUnavailable, match="return_crops=True"):
        det.explain(res)
    with pytest.raises(ValueError, match="deciding"):
        det.explain(det.detect(carphone, return_crops=True), "everything")


def test_explain_into_a_file_is_a_one_line_error(trained_ckpt, carphone, tmp_path, capsys):
    taken = tmp_path / "evidence"
    taken.write_text("not a folder")
    code = cli_main(["detect", str(carphone), "--model", str(trained_ckpt), "--explain", str(taken)])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: --explain {taken} is a file: give a folder for the evidence\n"
    assert taken.read_text() == "not a folder"  # nothing written over it
