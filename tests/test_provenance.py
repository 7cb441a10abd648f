"""Content Credentials (stylefusion.provenance) on videos signed here with the C2PA library itself.

The certificate chain (a CA and an end-entity ES256 certificate with digitalSignature and the
emailProtection EKU, as the C2PA signing profile asks) is made in the test with ``cryptography``; the
private keys live only in memory. The files: a generated video signed with a ``c2pa.created`` action
of digitalSourceType ``trainedAlgorithmicMedia``; the same with one byte of ``mdat`` changed; the
manifest stripped; the manifest box fuzzed or given an impossible length.
"""

from __future__ import annotations

import datetime as dt
import random
import struct
import time
from pathlib import Path

import pytest

pytest.importorskip("c2pa", reason="c2pa-python is not installed: pip install -e '.[c2pa]'")
pytest.importorskip("cryptography", reason="cryptography makes the test certificates")

from c2pakit import GENERATED_MANIFEST, IPTC, Chain, mdat_payload  # noqa: E402

from stylefusion import provenance as prov_mod  # noqa: E402
from stylefusion.history import measure_history  # noqa: E402
from stylefusion.provenance import (  # noqa: E402
    C2PA_BMFF_UUID, INSTALL_HINT, bmff_manifest_boxes, interpret_report, provenance_words, read_provenance,
)
from videogen import write_video  # noqa: E402

@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain()


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("c2pa") / "generated.mp4", 30)


@pytest.fixture(scope="module")
def signed(chain, unsigned, tmp_path_factory) -> Path:
    return chain.sign(unsigned, tmp_path_factory.mktemp("c2pa") / "signed.mp4", GENERATED_MANIFEST)


def _store_box(path: Path) -> tuple[int, int]:
    boxes = bmff_manifest_boxes(path)
    assert len(boxes) == 1, boxes
    return boxes[0]


# ----------------------------------------------------------------------------------------------
# signed, tampered, stripped
# ----------------------------------------------------------------------------------------------
def test_signed_generated_video_is_reported_as_generated(signed):
    p = read_provenance(signed)
    assert p.status == "present"
    # the test CA is on no trust list: intact but untrusted, exactly what the library says
    assert p.validation == "untrusted" and p.validation_state == "Valid"
    assert p.failure_codes == ("signingCredential.untrusted",) and p.tampered is False and p.trusted is False
    assert p.actions[0]["action"] == "c2pa.created"
    assert p.actions[0]["digital_source_type"] == "trainedAlgorithmicMedia"
    assert p.actions[0]["software_agent"] == "TestVideoModel 0.1"
    assert p.source == "generated" and p.digital_source_types == ("trainedAlgorithmicMedia",)
    assert p.claim_generator == "stylefusion-tests 1.0" and p.title == "generated.mp4"
    assert p.signer["common_name"] == "Test signer" and p.signer["organization"] == "StyleFusion tests"
    assert p.signer["issuer"] == "O=StyleFusion tests,CN=Test CA" and p.signer["self_signed"] is False
    assert p.manifests == 1 and p.ingredients == () and p.trust_list == {"source": "none", "anchors": 0}
    d = p.to_dict()
    assert d["status"] == "present" and d["actions"][0]["digital_source_type"] == "trainedAlgorithmicMedia"
    assert p.summary() == "provenance: untrusted signed by Test signer - generated"

    words = provenance_words(p, "real")
    assert words[0] == ("The file's Content Credentials say it was made by a generative model; the detector "
                        "found no sign of manipulation in the faces. Generated video may contain no manipulated faces.")
    assert "not on a trust list (none is configured)" in words[1]
    assert "also found signs of manipulation" in provenance_words(p, "fake")[0]
    assert "could not decide" in provenance_words(p, "uncertain")[0]


def test_trust_list_from_argument_and_environment(signed, chain, tmp_path, monkeypatch):
    monkeypatch.delenv(prov_mod.TRUST_ENV, raising=False)
    p = read_provenance(signed, trust_anchors=chain.ca_pem)
    assert p.validation == "valid" and p.trusted and p.validation_state == "Trusted" and p.failure_codes == ()
    assert p.trust_list == {"source": "argument", "anchors": 1}
    assert "a signer on the trust list" in provenance_words(p, None)[-1]

    anchors = tmp_path / "anchors.pem"  # a CA certificate only: public
    anchors.write_text(chain.ca_pem)
    monkeypatch.setenv(prov_mod.TRUST_ENV, str(anchors))
    p = read_provenance(signed)
    assert p.validation == "valid" and p.trust_list["source"].startswith("env:STYLEFUSION_C2PA_TRUST")

    other = Chain()  # a trust list that does not hold this signer's CA
    p = read_provenance(signed, trust_anchors=other.ca_pem)
    assert p.validation == "untrusted" and "signingCredential.untrusted" in p.failure_codes
    assert "not on the configured trust list" in provenance_words(p, None)[-1]

    monkeypatch.setenv(prov_mod.TRUST_ENV, str(tmp_path / "missing.pem"))
    p = read_provenance(signed)
    assert p.validation == "untrusted" and "cannot read" in p.trust_list["error"]


def test_one_byte_changed_after_signing_is_tampered(signed, tmp_path):
    data = bytearray(signed.read_bytes())
    start, end = mdat_payload(bytes(data))
    data[(start + end) // 2] ^= 0x5A
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    p = read_provenance(tampered)
    assert p.status == "present" and p.validation == "invalid" and p.tampered is True
    assert "assertion.bmffHash.mismatch" in p.failure_codes and p.validation_state == "Invalid"
    words = provenance_words(p, "real")
    assert words[-1] == "The credentials are invalid: the file was changed after signing."
    assert words[0].startswith("The file's Content Credentials, which no longer hold, say it was made by a generative model")
    assert "assertion.bmffHash.mismatch" in p.summary() and "changed after signing" in p.summary()


def test_stripped_manifest_is_absent(signed, unsigned, tmp_path):
    assert read_provenance(unsigned).status == "absent"
    # the signed file with its manifest box turned into a `free` box: offsets unchanged, no store
    data = bytearray(signed.read_bytes())
    off, _ = _store_box(signed)
    data[off + 4:off + 8] = b"free"
    stripped = tmp_path / "stripped.mp4"
    stripped.write_bytes(bytes(data))
    p = read_provenance(stripped)
    assert p.status == "absent" and p.validation is None
    assert provenance_words(p, "fake") == ["The file carries no Content Credentials."]
    assert measure_history(stripped).frames_decoded > 0  # still a playable video


def test_self_signed_and_expired_signers_are_reported_as_such(unsigned, tmp_path):
    p = read_provenance(Chain(self_signed=True, cn="Lone signer").sign(unsigned, tmp_path / "self.mp4", GENERATED_MANIFEST))
    assert p.validation == "self_signed" and p.signer["self_signed"] is True and p.tampered is False
    assert "self-signed certificate" in provenance_words(p, None)[-1]

    short = Chain(lifetime=dt.timedelta(seconds=3))  # valid when signing, expired ~3 s later
    expiring = short.sign(unsigned, tmp_path / "expiring.mp4", GENERATED_MANIFEST)
    deadline = short.cert.not_valid_after_utc
    time.sleep(max(0.0, (deadline - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.5)
    p = read_provenance(expiring)
    assert p.validation == "expired" and "signingCredential.expired" in p.failure_codes
    assert "had expired" in provenance_words(p, None)[-1]


def test_ingredients_are_listed(signed, unsigned, chain, tmp_path):
    edited = {"claim_generator_info": [{"name": "editor", "version": "2"}], "title": "edited.mp4",
              "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                  {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                  {"action": "c2pa.edited", "digitalSourceType": IPTC + "compositeWithTrainedAlgorithmicMedia"}]}}]}
    out = chain.sign(unsigned, tmp_path / "edited.mp4", edited, ingredient=signed)
    p = read_provenance(out)
    assert p.manifests == 2 and p.source == "partly_generated"
    assert [a["action"] for a in p.actions][:2] == ["c2pa.opened", "c2pa.edited"]
    assert p.ingredients[0]["title"] == "signed.mp4" and p.ingredients[0]["relationship"] == "parentOf"
    assert p.ingredients[0]["has_credentials"] is True
    assert "parts of it were made by a generative model" in provenance_words(p, "real")[0]


# ----------------------------------------------------------------------------------------------
# hostile manifests
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_fuzzed_manifest_box_is_unreadable_not_a_crash(signed, tmp_path, seed):
    data = bytearray(signed.read_bytes())
    off, size = _store_box(signed)
    rng = random.Random(seed)
    # past the box header, UUID, purpose and offset: inside the JUMBF superbox, overwrite a run of
    # bytes where its own box headers and CBOR live
    jumbf = off + 8 + 16 + 4 + len(b"manifest\0") + 8
    at = rng.randrange(jumbf, jumbf + min(256, size // 4))
    for i in range(24):
        data[at + i] = rng.randrange(256)
    hostile = tmp_path / f"fuzz{seed}.mp4"
    hostile.write_bytes(bytes(data))
    p = read_provenance(hostile)
    assert p.status == "unreadable", p.to_dict()
    assert p.reason and provenance_words(p, "real")[0].startswith("The file's Content Credentials could not be read (")
    assert p.summary().startswith("provenance: unreadable (")
    # the video itself is untouched by the fuzzing and is still measured (and judged)
    assert measure_history(hostile).frames_decoded > 0


def test_oversized_and_truncated_boxes_are_refused_before_parsing(signed, tmp_path, monkeypatch):
    data = bytearray(signed.read_bytes())
    off, size = _store_box(signed)
    lying = bytearray(data)
    lying[off:off + 4] = struct.pack(">I", 0xFFFFFFF0)  # a 4 GiB box in a file of kilobytes
    bad = tmp_path / "oversized.mp4"
    bad.write_bytes(bytes(lying))
    p = read_provenance(bad)
    assert p.status == "unreadable" and "declares 4294967280 bytes" in p.reason

    largesize = bytearray(data[:off]) + struct.pack(">I4sQ", 1, b"uuid", 1 << 62) + C2PA_BMFF_UUID
    huge = tmp_path / "largesize.mp4"
    huge.write_bytes(bytes(largesize))
    assert read_provenance(huge).status == "unreadable"

    monkeypatch.setattr(prov_mod, "MAX_MANIFEST_BYTES", size - 1)  # a store just over the limit
    p = read_provenance(signed)
    assert p.status == "unreadable" and "over the" in p.reason and "byte limit" in p.reason


def test_reader_out_of_memory_or_crashed_is_unreadable(signed, monkeypatch):
    # inside 24 MB of address space the reader process cannot load the library: a real failed child
    monkeypatch.setattr(prov_mod, "READER_MEMORY_BYTES", 24 << 20)
    p = read_provenance(signed)
    assert p.status == "unreadable" and "failed to map" in p.reason and "\n" not in p.reason
    monkeypatch.setattr(prov_mod, "READER_MEMORY_BYTES", 8 << 20)  # not even Python starts: it exits
    p = read_provenance(signed)
    assert p.status == "unreadable" and p.reason.startswith("the reader crashed (exit status")


def test_reader_timeout_is_unreadable(signed):
    p = read_provenance(signed, timeout=0.001)
    assert p.status == "unreadable" and "longer than" in p.reason


def test_missing_library_is_not_checked(signed, monkeypatch):
    monkeypatch.setattr(prov_mod, "c2pa_available", lambda: False)
    p = read_provenance(signed)
    assert p.status == "not_checked" and p.reason == INSTALL_HINT
    assert p.summary() == "provenance: not checked (pip install 'stylefusion[c2pa]')"
    assert provenance_words(p, "fake") == ["Content Credentials were not checked (pip install 'stylefusion[c2pa]')."]


def test_file_type_the_library_cannot_read_is_not_checked(tmp_path):
    mkv = write_video(tmp_path / "clip.mkv", 10, container_format="matroska")
    p = read_provenance(mkv)
    assert p.status == "not_checked" and "cannot read" in p.reason, p.to_dict()
    assert p.summary().startswith("provenance: not checked (the C2PA library cannot read")


def test_report_of_unexpected_shape_and_words_never_change_the_label():
    assert interpret_report({"manifests": {}}).status == "unreadable"
    captured = interpret_report({
        "active_manifest": "m", "validation_state": "Valid",
        "manifests": {"m": {"signature_info": {"common_name": "Camera Co"}, "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [{"action": "c2pa.created",
                                                                "digitalSourceType": IPTC + "digitalCapture"}]}}]}},
        "validation_results": {"activeManifest": {"failure": [{"code": "signingCredential.untrusted"}]}}})
    assert captured.source == "captured" and captured.validation == "untrusted"
    words = provenance_words(captured, "fake")
    assert "captured by a camera; the detector found signs of manipulation" in words[0] and "disagree" in words[0]
    for label in ("fake", "real", "uncertain", None):  # words only: nothing in them is a label
        assert all(isinstance(w, str) and w for w in provenance_words(captured, label))
