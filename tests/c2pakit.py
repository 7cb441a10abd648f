"""Content Credentials for tests: a certificate chain made in memory with ``cryptography`` (a CA and
an end-entity ES256 certificate with digitalSignature and the emailProtection EKU, as the C2PA
signing profile asks) that signs files with the C2PA library itself. No private key is ever written.
"""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
GENERATED_MANIFEST = {
    "claim_generator_info": [{"name": "stylefusion-tests", "version": "1.0"}],
    "title": "generated.mp4",
    "assertions": [{"label": "c2pa.actions", "data": {"actions": [
        {"action": "c2pa.created", "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
         "softwareAgent": {"name": "TestVideoModel", "version": "0.1"}}]}}],
}


# ----------------------------------------------------------------------------------------------
# test certificates (in memory only)
# ----------------------------------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "StyleFusion tests")])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, not_before: dt.datetime,
          not_after: dt.datetime) -> x509.Certificate:
    usage = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                 data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                 encipher_only=False, decipher_only=False)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
         .add_extension(x509.KeyUsage(**usage), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    if not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Chain:
    """A test CA and a signer it issued (or, for ``self_signed``, a signer that issued itself)."""

    def __init__(self, *, lifetime: dt.timedelta = dt.timedelta(days=30), self_signed: bool = False,
                 cn: str = "Test signer") -> None:
        now = dt.datetime.now(dt.timezone.utc)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("Test CA", self.ca_key, "Test CA", self.ca_key, ca=True,
                        not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=60))
        self.key = ec.generate_private_key(ec.SECP256R1())
        if self_signed:
            self.cert = _cert(cn, self.key, cn, self.key, ca=False, not_before=now - dt.timedelta(days=1),
                              not_after=now + lifetime)
            self.chain = _pem(self.cert)
        else:
            self.cert = _cert(cn, self.key, "Test CA", self.ca_key, ca=False,
                              not_before=now - dt.timedelta(days=1), not_after=now + lifetime)
            self.chain = _pem(self.cert) + _pem(self.ca)

    @property
    def ca_pem(self) -> str:
        return _pem(self.ca).decode()

    def sign(self, src: Path, dst: Path, manifest: dict, ingredient: Path | None = None) -> Path:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
            alg=b"es256", sign_cert=self.chain, private_key=_key_pem(self.key), ta_url=None))
        builder = c2pa.Builder(manifest)
        if ingredient is not None:
            with open(ingredient, "rb") as f:
                builder.add_ingredient({"title": ingredient.name, "relationship": "parentOf", "label": "parent"},
                                       "video/mp4", f)
        with open(src, "rb") as s, open(dst, "w+b") as d:
            builder.sign(signer, "video/mp4", s, d)
        return dst


def mdat_payload(data: bytes) -> tuple[int, int]:
    """(start, end) of the payload of the top-level mdat box."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        if kind == b"mdat":
            return pos + header, pos + size
        pos += size
    raise AssertionError("no mdat box")
