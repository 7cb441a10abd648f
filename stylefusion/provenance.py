"""What a file says about itself: its Content Credentials (a C2PA manifest store), read and validated
with ``c2pa-python``, the C2PA project's own bindings (the optional extra ``stylefusion[c2pa]``).

A verdict about pixels is half of what a fact-checker weighs; the other half is the file's own claim
("created by a generative model", "captured by this camera, signed") and whether that claim still
holds (signature intact, signer trusted, the media unchanged since signing). This module reports that
claim beside the verdict; it never changes the detector's label. When the two disagree,
:func:`provenance_words` says so in words.

Reading a manifest means parsing untrusted CBOR, JUMBF and X.509 inside a native library, so:

- the reader runs in a **child process** (:func:`read_provenance` starts ``python -c`` on
  :func:`_worker`), with an address-space limit (:data:`READER_MEMORY_BYTES`) and a timeout
  (:data:`READER_TIMEOUT_S`): an exception, a crash or a runaway allocation in it gives the state
  ``unreadable`` with the reason, never a crash of the detector;
- for ISO BMFF files (MP4, MOV, HEIF, AVIF, M4A) the top-level boxes are walked first and a manifest
  store larger than :data:`MAX_MANIFEST_BYTES`, or a box that claims to run past the end of the file,
  is refused **before** anything parses it;
- the child's output is capped (:data:`MAX_REPORT_BYTES`) before the parent parses it.

Trust: the signer is checked against the PEM trust anchors passed as ``trust_anchors`` (PEM text or a
path to a PEM file), else those named by the environment variable ``STYLEFUSION_C2PA_TRUST`` (the
same), else none, since no installed package ships the C2PA conformance trust list; then every intact
manifest is "signed by a certificate that is not on a trust list".
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The environment variable naming the trust anchors (PEM text, or a path to a PEM file).
TRUST_ENV = "STYLEFUSION_C2PA_TRUST"
#: What to install when the library is missing.
INSTALL_HINT = "pip install 'stylefusion[c2pa]'"
#: Largest manifest store read (bytes). Real stores are kilobytes to a few megabytes (a thumbnail
#: and a certificate chain per manifest); a bigger one is refused unparsed.
MAX_MANIFEST_BYTES = 16 << 20
#: Address-space limit of the reader process. Python and the native library need about 64 MB of
#: address space to start (measured: the library fails to load under 40 MB); the rest bounds what a
#: hostile manifest can make it allocate. The reader hashes a video in chunks, so size does not matter.
READER_MEMORY_BYTES = 1 << 30
#: Wall-clock limit of the reader process (s). Validating a video hashes the whole file.
READER_TIMEOUT_S = 120.0
#: Largest report accepted back from the reader process (bytes of JSON).
MAX_REPORT_BYTES = 8 << 20
#: Most top-level ISO BMFF boxes walked by the pre-check.
MAX_BOXES = 100_000
#: The UUID of the ``uuid`` box holding a C2PA manifest store in ISO BMFF (C2PA spec, "Embedding
#: manifests into BMFF-based assets").
C2PA_BMFF_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
#: IPTC digital source types (the last part of ``http://cv.iptc.org/newscodes/digitalsourcetype/...``)
#: and what each says about how the content came to be.
GENERATED_SOURCE_TYPES = {"trainedAlgorithmicMedia": "generated"}
PARTLY_GENERATED_SOURCE_TYPES = {"compositeWithTrainedAlgorithmicMedia": "partly_generated",
                                 "algorithmicallyEnhanced": "partly_generated"}
CAPTURED_SOURCE_TYPES = {"digitalCapture": "captured", "computationalCapture": "captured",
                         "negativeFilm": "captured", "positiveFilm": "captured", "print": "captured"}
#: Failure codes that mean the media no longer matches the hash the manifest signed: it was changed
#: after signing.
HARD_BINDING_MISMATCH = frozenset({
    "assertion.dataHash.mismatch", "assertion.bmffHash.mismatch", "assertion.boxesHash.mismatch",
    "assertion.collectionHash.mismatch",
})
UNTRUSTED_CODES = frozenset({"signingCredential.untrusted"})
EXPIRED_CODES = frozenset({"signingCredential.expired", "claimSignature.outsideValidity"})
#: Codes about the signer's status rather than the manifest's integrity.
CREDENTIAL_CODES = UNTRUSTED_CODES | EXPIRED_CODES | frozenset({
    "signingCredential.ocsp.skipped", "signingCredential.ocsp.inaccessible", "signingCredential.ocsp.unknown",
})
#: MIME types by file suffix, for the reader (it also sniffs the bytes).
MIME_TYPES = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".avi": "video/x-msvideo",
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
    ".heic": "image/heic", ".heif": "image/heif", ".avif": "image/avif", ".tif": "image/tiff",
    ".tiff": "image/tiff", ".gif": "image/gif", ".svg": "image/svg+xml", ".dng": "image/x-adobe-dng",
    ".m4a": "audio/mp4", ".mp3": "audio/mpeg", ".wav": "audio/wav", ".pdf": "application/pdf",
}
BMFF_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".heic", ".heif", ".avif", ".m4a", ".3gp"})

STATES = ("not_checked", "absent", "present", "unreadable")
VALIDATIONS = ("valid", "untrusted", "self_signed", "expired", "invalid")


@dataclass(frozen=True)
class Provenance:
    """The Content Credentials of one file.

    status: ``not_checked`` (the library is not installed, or cannot read this file type; ``reason``
        says which), ``absent`` (no manifest), ``present``,
        or ``unreadable`` (malformed, hostile, too large, or the reader failed; ``reason`` says why).
    validation (present only): ``valid`` (intact, signer on the trust list), ``untrusted`` (intact,
        signer not on a trust list), ``self_signed`` (intact, the signing certificate signed itself),
        ``expired`` (the signing certificate had expired), ``invalid`` (``failure_codes`` say how;
        ``tampered`` when the media changed after signing).
    signer: the signing certificate's names (common_name, organization, serial, alg, and when found
        in the store: issuer, not_before, not_after, self_signed).
    actions: ``{"action", "digital_source_type", "software_agent", "when"}`` of the active manifest.
    source: what the actions' digital source types say (``generated``, ``partly_generated``,
        ``captured``) or None.
    ingredients: ``{"title", "format", "relationship", "has_credentials", "failure_codes"}``.
    """

    status: str
    reason: str | None = None
    validation: str | None = None
    validation_state: str | None = None
    failure_codes: tuple[str, ...] = ()
    tampered: bool | None = None
    trusted: bool | None = None
    signer: dict[str, Any] = field(default_factory=dict)
    claim_generator: str | None = None
    title: str | None = None
    format: str | None = None
    actions: tuple[dict[str, Any], ...] = ()
    source: str | None = None
    digital_source_types: tuple[str, ...] = ()
    ingredients: tuple[dict[str, Any], ...] = ()
    manifests: int = 0
    trust_list: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field (lists for the tuples)."""
        return {
            "status": self.status, "reason": self.reason, "validation": self.validation,
            "validation_state": self.validation_state, "failure_codes": list(self.failure_codes),
            "tampered": self.tampered, "trusted": self.trusted, "signer": dict(self.signer),
            "claim_generator": self.claim_generator, "title": self.title, "format": self.format,
            "actions": [dict(a) for a in self.actions], "source": self.source,
            "digital_source_types": list(self.digital_source_types),
            "ingredients": [dict(i) for i in self.ingredients], "manifests": self.manifests,
            "trust_list": dict(self.trust_list),
        }

    def summary(self) -> str:
        """One line for the CLI: ``provenance: <state> (...)``."""
        if self.status == "not_checked":
            return f"provenance: not checked ({self.reason or INSTALL_HINT})"
        if self.status == "absent":
            return "provenance: absent"
        if self.status == "unreadable":
            return f"provenance: unreadable ({self.reason})"
        who = self.signer.get("common_name") or self.signer.get("organization") or "unknown signer"
        parts = [f"provenance: {self.validation}"]
        if self.validation == "invalid":
            parts.append(f"({', '.join(self.failure_codes)})")
        parts.append(f"signed by {who}")
        if self.tampered:
            parts.append("- changed after signing")
        if self.source:
            parts.append(f"- {self.source.replace('_', ' ')}")
        return " ".join(parts)


# ----------------------------------------------------------------------------------------------
# trust anchors
# ----------------------------------------------------------------------------------------------
def _trust_anchors(trust_anchors: str | None) -> tuple[str | None, dict[str, Any]]:
    """(PEM text or None, a description of where it came from) for ``trust_anchors`` or the env var.

    A value containing ``-----BEGIN`` is PEM text; anything else is a path to a PEM file.
    """
    source, value = ("argument", trust_anchors) if trust_anchors else ("env:" + TRUST_ENV, os.environ.get(TRUST_ENV))
    if not value:
        return None, {"source": "none", "anchors": 0}
    if "-----BEGIN" in value:
        pem = value
    else:
        try:
            pem = Path(value).read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            return None, {"source": source, "anchors": 0, "error": f"cannot read {value}: {exc.strerror or exc}"}
        source += f" ({value})"
    n = pem.count("-----BEGIN CERTIFICATE-----")
    if not n:
        return None, {"source": source, "anchors": 0, "error": "no PEM certificate in the trust list"}
    return pem, {"source": source, "anchors": n}


# ----------------------------------------------------------------------------------------------
# the pre-check: find (and size) an ISO BMFF manifest store without parsing it
# ----------------------------------------------------------------------------------------------
class ManifestRefused(Exception):
    """The file's structure is refused before any parser sees it."""


def bmff_manifest_boxes(path: str | Path) -> list[tuple[int, int]]:
    """(offset, size) of each top-level C2PA ``uuid`` box of an ISO BMFF file, from box headers only.

    Raises :class:`ManifestRefused` for a C2PA box that claims to run past the end of the file or exceeds
    :data:`MAX_MANIFEST_BYTES`, or for more than :data:`MAX_BOXES` boxes.
    """
    found: list[tuple[int, int]] = []
    end = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        for _ in range(MAX_BOXES):
            if pos + 8 > end:
                return found
            f.seek(pos)
            head = f.read(32)
            size, kind = struct.unpack(">I4s", head[:8])
            header = 8
            if size == 1:
                if len(head) < 16:
                    return found
                size = struct.unpack(">Q", head[8:16])[0]
                header = 16
            elif size == 0:
                size = end - pos
            if size < header:
                return found  # not a box structure we can walk; the reader decides
            if kind == b"uuid" and head[header:header + 16] == C2PA_BMFF_UUID:
                if pos + size > end:
                    raise ManifestRefused(f"the C2PA box declares {size} bytes but only {end - pos} remain in the file")
                found.append((pos, size))
                if sum(s for _, s in found) > MAX_MANIFEST_BYTES:
                    raise ManifestRefused(f"the manifest store is {sum(s for _, s in found)} bytes, "
                                   f"over the {MAX_MANIFEST_BYTES} byte limit")
            pos += size
    raise ManifestRefused(f"more than {MAX_BOXES} top-level boxes")


# ----------------------------------------------------------------------------------------------
# the reader process
# ----------------------------------------------------------------------------------------------
def _limit_memory() -> None:  # pragma: no cover - runs in the child between fork and exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (READER_MEMORY_BYTES, READER_MEMORY_BYTES))


def _find_signer_certificate(blob: bytes, serial: str | None) -> dict[str, Any]:
    """The signing certificate's dates and whether it signed itself, found among the DER
    certificates embedded in ``blob`` (the manifest store) by its serial number.

    The reader reports the signer's names and serial but not its certificate; a self-signed signer
    is valid to the library (only "untrusted"), so it is detected here.
    """
    if not serial:
        return {}
    try:
        from cryptography import x509
    except ImportError:
        return {}
    want = int(serial)
    i = blob.find(b"\x30\x82")
    tried = 0
    while i >= 0 and tried < 5000:
        tried += 1
        if blob[i + 4:i + 6] == b"\x30\x82":
            n = 4 + int.from_bytes(blob[i + 2:i + 4], "big")
            try:
                cert = x509.load_der_x509_certificate(blob[i:i + n])
            except ValueError:
                cert = None
            if cert is not None and cert.serial_number == want:
                self_signed = cert.issuer == cert.subject
                if self_signed:
                    try:
                        cert.verify_directly_issued_by(cert)
                    except Exception:  # noqa: BLE001 - same names but another key signed it
                        self_signed = False
                return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                        "not_before": cert.not_valid_before_utc.isoformat(),
                        "not_after": cert.not_valid_after_utc.isoformat(), "self_signed": self_signed}
        i = blob.find(b"\x30\x82", i + 1)
    return {}


def _worker() -> None:  # pragma: no cover - runs in the reader process; covered through read_provenance
    """Read one file's manifest store; print one JSON object on stdout.

    Input (stdin, JSON): path, mime, trust (PEM or null), boxes ([offset, size] of the store, or null).
    Output: ``{"status": "absent"}``, ``{"status": "unreadable" | "not_checked", "reason": ...}`` or
    ``{"status": "present", "report": <the reader's JSON>, "certificate": {...}}``.
    """
    args = json.loads(sys.stdin.read())
    out: dict[str, Any]
    try:
        import c2pa

        settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
        if args.get("trust"):
            settings["trust"] = {"trust_anchors": args["trust"]}
            settings["verify"]["verify_trust"] = True
        context = c2pa.Context.from_dict(settings)
        with open(args["path"], "rb") as f:
            reader = c2pa.Reader.try_create(args.get("mime") or None, f, None, context)
            if reader is None:
                out = {"status": "absent"}
            else:
                report = json.loads(reader.json())
                out = {"status": "present", "report": report}
                active = (report.get("manifests") or {}).get(report.get("active_manifest") or "", {})
                serial = (active.get("signature_info") or {}).get("cert_serial_number")
                if args.get("boxes"):
                    blob = b""
                    for off, size in args["boxes"]:
                        f.seek(off)
                        blob += f.read(size)
                else:
                    f.seek(0, 2)
                    blob = b""
                    if f.tell() <= MAX_MANIFEST_BYTES * 4:
                        f.seek(0)
                        blob = f.read()
                out["certificate"] = _find_signer_certificate(blob, serial)
    except MemoryError:
        out = {"status": "unreadable", "reason": "the reader ran out of memory"}
    except Exception as exc:  # noqa: BLE001 - any failure of the reader is "unreadable", with its words
        name = type(exc).__name__.lstrip("_").removeprefix("C2pa")
        if name == "NotSupported":  # a file type the library cannot read is not a bad manifest
            kind = args.get("mime") or Path(args["path"]).suffix or "this file type"
            out = {"status": "not_checked", "reason": f"the C2PA library cannot read {kind} files"}
        else:
            out = {"status": "unreadable", "reason": f"{name}: {' '.join(str(exc).split())[:300]}"}
    sys.stdout.write(json.dumps(out))


def _run_reader(path: str, mime: str | None, trust: str | None, boxes: list[tuple[int, int]] | None,
                timeout: float) -> dict[str, Any]:
    """Run :func:`_worker` in a child process; its answer, or ``unreadable`` with why it gave none."""
    pkg_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("RUST_BACKTRACE", "0")
    payload = json.dumps({"path": path, "mime": mime, "trust": trust, "boxes": boxes})
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from stylefusion.provenance import _worker; _worker()"],
            input=payload.encode(), capture_output=True, timeout=timeout, env=env,
            preexec_fn=_limit_memory if os.name == "posix" else None)
    except subprocess.TimeoutExpired:
        return {"status": "unreadable", "reason": f"the reader took longer than {timeout:g} s"}
    except OSError as exc:
        return {"status": "unreadable", "reason": f"the reader could not start: {exc}"}
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return {"status": "unreadable", "reason": f"the reader crashed ({how}) {tail[0][:200]}".strip()}
    if len(proc.stdout) > MAX_REPORT_BYTES:
        return {"status": "unreadable", "reason": f"the manifest report is over {MAX_REPORT_BYTES} bytes"}
    try:
        answer = json.loads(proc.stdout)
    except (ValueError, RecursionError) as exc:
        return {"status": "unreadable", "reason": f"the reader's report is not JSON ({exc})"}
    return answer if isinstance(answer, dict) else {"status": "unreadable", "reason": "the reader's report is not an object"}


# ----------------------------------------------------------------------------------------------
# interpretation of the reader's report
# ----------------------------------------------------------------------------------------------
def _short_source_type(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.rstrip("/").rsplit("/", 1)[-1]


def _codes(entries: Any) -> list[str]:
    return [str(e.get("code")) for e in entries or [] if isinstance(e, dict) and e.get("code")]


def _generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, dict):
        info = [info]
    names = []
    for g in info or []:
        if isinstance(g, dict) and g.get("name"):
            names.append(" ".join(str(x) for x in (g.get("name"), g.get("version")) if x))
    if names:
        return "; ".join(names)
    cg = manifest.get("claim_generator")
    return str(cg) if cg else None


def _agent(value: Any) -> str | None:
    if isinstance(value, dict):
        return " ".join(str(value[k]) for k in ("name", "version") if value.get(k)) or None
    return str(value) if value else None


def interpret_report(report: dict[str, Any], certificate: dict[str, Any] | None = None,
                     trust_list: dict[str, Any] | None = None) -> Provenance:
    """A :class:`Provenance` from the reader's JSON report (``c2pa.Reader.json()``).

    Kept apart from the reading so the classification can be checked on any report. The order of
    the validation: an integrity failure is ``invalid``; else an expired certificate ``expired``;
    else a self-signed one ``self_signed``; else ``valid`` when the library found the signer on the
    trust list (state ``Trusted``), ``untrusted`` otherwise.
    """
    certificate = certificate or {}
    manifests = report.get("manifests") or {}
    active = manifests.get(report.get("active_manifest") or "")
    if not isinstance(active, dict):
        return Provenance(status="unreadable", reason="no active manifest in the store", trust_list=trust_list or {})
    results = (report.get("validation_results") or {}).get("activeManifest") or {}
    failures = _codes(results.get("failure")) if results else _codes(report.get("validation_status"))
    failure_entries = results.get("failure") or report.get("validation_status") or []
    explanations = " ".join(str(e.get("explanation", "")) for e in failure_entries if isinstance(e, dict)).lower()
    state = report.get("validation_state")
    tampered = any(c in HARD_BINDING_MISMATCH for c in failures)
    integrity = [c for c in failures if c not in CREDENTIAL_CODES]
    expired = any(c in EXPIRED_CODES for c in failures) or "expired" in explanations
    self_signed = bool(certificate.get("self_signed")) or "self-signed" in explanations
    trusted = state == "Trusted"
    if integrity or state == "Invalid" and not expired:
        validation = "invalid"
    elif expired:
        validation = "expired"
    elif self_signed and not trusted:
        validation = "self_signed"
    elif trusted:
        validation = "valid"
    else:
        validation = "untrusted"

    sig = active.get("signature_info") or {}
    signer = {"common_name": sig.get("common_name"), "organization": sig.get("issuer"),
              "serial": sig.get("cert_serial_number"), "alg": sig.get("alg"), "time": sig.get("time")}
    signer.update({k: certificate[k] for k in ("subject", "issuer", "not_before", "not_after", "self_signed")
                   if k in certificate})
    actions: list[dict[str, Any]] = []
    for a in active.get("assertions") or []:
        if not isinstance(a, dict) or not str(a.get("label", "")).startswith("c2pa.actions"):
            continue
        for act in (a.get("data") or {}).get("actions") or []:
            if isinstance(act, dict):
                actions.append({"action": act.get("action"),
                                "digital_source_type": _short_source_type(act.get("digitalSourceType")),
                                "software_agent": _agent(act.get("softwareAgent")), "when": act.get("when")})
    types = tuple(dict.fromkeys(a["digital_source_type"] for a in actions if a["digital_source_type"]))
    source = None
    for table in (GENERATED_SOURCE_TYPES, PARTLY_GENERATED_SOURCE_TYPES, CAPTURED_SOURCE_TYPES):
        hit = next((table[t] for t in types if t in table), None)
        if hit:
            source = hit
            break
    ingredients = []
    for ing in active.get("ingredients") or []:
        if isinstance(ing, dict):
            ing_results = ing.get("validation_results") or {}
            codes = _codes((ing_results.get("activeManifest") or {}).get("failure")) or _codes(ing.get("validation_status"))
            ingredients.append({"title": ing.get("title"), "format": ing.get("format"),
                                "relationship": ing.get("relationship"),
                                "has_credentials": bool(ing.get("active_manifest") or ing.get("manifest_data")),
                                "failure_codes": codes})
    return Provenance(
        status="present", validation=validation, validation_state=state, failure_codes=tuple(failures),
        tampered=tampered, trusted=trusted, signer=signer, claim_generator=_generator(active),
        title=active.get("title"), format=active.get("format"), actions=tuple(actions), source=source,
        digital_source_types=types, ingredients=tuple(ingredients), manifests=len(manifests),
        trust_list=trust_list or {})


# ----------------------------------------------------------------------------------------------
# the API
# ----------------------------------------------------------------------------------------------
def c2pa_available() -> bool:
    """Whether ``c2pa-python`` is installed (checked without loading its native library here)."""
    return importlib.util.find_spec("c2pa") is not None


def read_provenance(path: str | Path, trust_anchors: str | None = None, *,
                    timeout: float = READER_TIMEOUT_S) -> Provenance:
    """Read and validate the Content Credentials of the file at ``path``.

    ``trust_anchors``: PEM text or a path to a PEM file of trusted root certificates; default the
    environment variable :data:`TRUST_ENV`, else no trust list. Never raises for anything in the file:
    a missing library, or a file type it cannot read (WebM, raw streams), gives ``not_checked``, a bad
    or hostile manifest ``unreadable``, each with the reason.
    """
    p = Path(path)
    pem, trust_list = _trust_anchors(trust_anchors)
    if not c2pa_available():
        return Provenance(status="not_checked", reason=INSTALL_HINT, trust_list=trust_list)
    if not p.is_file():
        return Provenance(status="unreadable", reason=f"no such file: {p}", trust_list=trust_list)
    suffix = p.suffix.lower()
    boxes: list[tuple[int, int]] | None = None
    try:
        if suffix in BMFF_SUFFIXES:
            boxes = bmff_manifest_boxes(p)
            if not boxes:
                # The only place C2PA puts a store in BMFF; skip starting the reader for nothing.
                return Provenance(status="absent", trust_list=trust_list)
    except ManifestRefused as exc:
        return Provenance(status="unreadable", reason=str(exc), trust_list=trust_list)
    except (OSError, struct.error) as exc:
        return Provenance(status="unreadable", reason=f"cannot walk the file's boxes: {exc}", trust_list=trust_list)
    answer = _run_reader(str(p.resolve()), MIME_TYPES.get(suffix), pem, boxes, timeout)
    status = answer.get("status")
    if status == "present" and isinstance(answer.get("report"), dict):
        try:
            return interpret_report(answer["report"], answer.get("certificate") or {}, trust_list)
        except Exception as exc:  # noqa: BLE001 - a report of an unexpected shape is unreadable, not a crash
            return Provenance(status="unreadable", reason=f"unexpected report: {type(exc).__name__}: {exc}",
                              trust_list=trust_list)
    if status == "absent":
        return Provenance(status="absent", trust_list=trust_list)
    if status == "not_checked":
        return Provenance(status="not_checked", reason=str(answer.get("reason")), trust_list=trust_list)
    return Provenance(status="unreadable", reason=str(answer.get("reason") or "the reader gave no answer"),
                      trust_list=trust_list)


# ----------------------------------------------------------------------------------------------
# words beside the verdict
# ----------------------------------------------------------------------------------------------
def _validity_sentence(prov: Provenance) -> str:
    who = prov.signer.get("common_name") or prov.signer.get("organization") or "an unnamed signer"
    v = prov.validation
    if v == "invalid":
        if prov.tampered:
            return "The credentials are invalid: the file was changed after signing."
        codes = ", ".join(c for c in prov.failure_codes if c not in CREDENTIAL_CODES) or prov.validation_state
        return f"The credentials are invalid ({codes})."
    if v == "expired":
        return f"The credentials were signed by {who} with a certificate that had expired."
    if v == "self_signed":
        return (f"The credentials are signed by {who} with a self-signed certificate: anyone can make one, "
                "so they show only that the file is unchanged since signing.")
    if v == "untrusted":
        where = ("on the configured trust list" if prov.trust_list.get("anchors")
                 else "on a trust list (none is configured)")
        return f"The credentials are intact, but their signer ({who}) is not {where}."
    return f"The credentials are intact and signed by {who}, a signer on the trust list."


def provenance_words(prov: Provenance, label: str | None) -> list[str]:
    """The sentences shown beside a verdict: what the credentials say, whether they hold, and where
    they and the detector's ``label`` (``fake``, ``real``, ``uncertain``, ...) disagree.

    They only describe; the label is never changed here.
    """
    if prov.status == "not_checked":
        return [f"Content Credentials were not checked ({prov.reason or INSTALL_HINT})."]
    if prov.status == "absent":
        return ["The file carries no Content Credentials."]
    if prov.status == "unreadable":
        return [f"The file's Content Credentials could not be read ({prov.reason}); they were ignored."]
    words = []
    lab = str(getattr(label, "value", label)) if label is not None else None
    said = "The file's Content Credentials say" if prov.validation != "invalid" else \
        "The file's Content Credentials, which no longer hold, say"
    if prov.source == "generated":
        claim = f"{said} it was made by a generative model"
    elif prov.source == "partly_generated":
        claim = f"{said} parts of it were made by a generative model"
    elif prov.source == "captured":
        claim = f"{said} it was captured by a camera"
    else:
        claim = None
    if claim:
        if prov.source in ("generated", "partly_generated") and lab == "real":
            words.append(f"{claim}; the detector found no sign of manipulation in the faces. "
                         "Generated video may contain no manipulated faces.")
        elif prov.source in ("generated", "partly_generated") and lab == "fake":
            words.append(f"{claim}, and the detector also found signs of manipulation in the faces.")
        elif prov.source == "captured" and lab == "fake":
            words.append(f"{claim}; the detector found signs of manipulation in the faces. The two "
                         "disagree: the credentials describe how the file was made, the detector what the faces show.")
        elif lab == "uncertain":
            words.append(f"{claim}; the detector could not decide about the faces.")
        else:
            words.append(f"{claim}.")
    words.append(_validity_sentence(prov))
    return words


__all__ = ["INSTALL_HINT", "MAX_MANIFEST_BYTES", "ManifestRefused", "Provenance", "TRUST_ENV", "bmff_manifest_boxes",
           "c2pa_available", "interpret_report", "provenance_words", "read_provenance"]
