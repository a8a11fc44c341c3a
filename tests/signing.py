"""Test keys and cosign artifacts, built without ocimerge: for the signature tests and others.

Everything here is made with ``cryptography`` and ``json`` alone, laid out as cosign writes it
(descriptor members in go-containerregistry's order: ``mediaType``, ``size``, ``digest``), so
a test that checks these artifacts with :mod:`ocimerge.signatures` checks ocimerge against an
independent construction, not against itself.

- :func:`make_key` / :func:`write_keys`: a fresh key pair (``"ecdsa"`` P-256, ``"ecdsa-p384"``,
  ``"rsa"`` 2048, ``"ed25519"``) as unencrypted PKCS#8 / SubjectPublicKeyInfo PEM.
- :func:`signature_for`: a cosign signature manifest of a subject ([COSIGN-4]), with
  ``subject`` and ``artifactType`` set, and its payload and config blobs.
- :func:`intoto_attestation_for`: a cosign attestation manifest of a subject: one DSSE
  envelope layer (``application/vnd.dsse.envelope.v1+json``, annotations ``predicateType``
  and an empty ``dev.cosignproject.cosign/signature``, as ``cosign attest`` writes under the
  ``.att`` tag) whose payload is an in-toto statement naming the subject, plus ``subject``
  and ``artifactType`` ``application/vnd.in-toto+json`` (what cosign's OCI 1.1 referrers mode
  gives attestations).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path
from typing import Any, TypedDict

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

KINDS = ("ecdsa", "ecdsa-p384", "rsa", "ed25519")
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
COSIGN_PREDICATE = "https://cosign.sigstore.dev/attestation/v1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


class Artifact(TypedDict):
    """A manifest to add to a layout or push, its digest, and the blobs it names."""

    manifest: bytes
    digest: str
    blobs: dict[str, bytes]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@functools.cache
def make_key(kind: str) -> tuple[bytes, bytes]:
    """A key pair of ``kind`` as (private PKCS#8 PEM, public PEM); one per kind per test run."""
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if kind == "ecdsa":
        private = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ecdsa-p384":
        private = ec.generate_private_key(ec.SECP384R1())
    elif kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unknown key kind {kind!r}; expected one of {KINDS}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def write_keys(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """``make_key(kind)`` written to ``tmp_path`` as ``<kind>.key`` and ``<kind>.pub``."""
    private_pem, public_pem = make_key(kind)
    private_path, public_path = tmp_path / f"{kind}.key", tmp_path / f"{kind}.pub"
    private_path.write_bytes(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def sign(private_pem: bytes, data: bytes) -> bytes:
    """The raw signature cosign makes over ``data``: ECDSA DER over the curve's hash, RSA
    PKCS#1 v1.5 SHA-256, pure Ed25519."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm: hashes.HashAlgorithm = hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()
        return key.sign(data, ec.ECDSA(algorithm))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise ValueError(f"unsupported key {type(key).__name__}")


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": media_type, "size": len(data), "digest": sha256(data)}
    if annotations:
        out["annotations"] = annotations
    return out


def _config(layers: list[bytes]) -> bytes:
    """The image config cosign writes for its signature and attestation manifests."""
    zero = "0001-01-01T00:00:00Z"
    return _compact(
        {
            "architecture": "",
            "created": zero,
            "history": [{"created": zero} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
            "config": {},
        }
    )


def _artifact(
    layer_type: str,
    layer: bytes,
    annotations: dict[str, str],
    subject: dict[str, Any],
    artifact_type: str | None,
) -> Artifact:
    config = _config([layer])
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        manifest["artifactType"] = artifact_type
    manifest["config"] = _descriptor(OCI_CONFIG, config)
    manifest["layers"] = [_descriptor(layer_type, layer, annotations)]
    manifest["subject"] = subject
    raw = _compact(manifest)
    return {"manifest": raw, "digest": sha256(raw), "blobs": {sha256(layer): layer, sha256(config): config}}


def simple_signing_payload(subject_digest: str, reference: str) -> bytes:
    """cosign's payload for ``subject_digest`` (no optional claims), as Go marshals it."""
    return _compact(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": subject_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


def signature_for(  # noqa: PLR0913 - the subject descriptor's three parts, the key, and two test knobs
    subject_digest: str,
    subject_size: int,
    subject_media_type: str,
    private_pem: bytes,
    reference: str = "example.com/app",
    *,
    payload: bytes | None = None,
) -> Artifact:
    """A cosign signature of the subject, signed with ``private_pem``; ``payload`` overrides
    the simple-signing payload (to sign one that names another digest, say)."""
    body = payload if payload is not None else simple_signing_payload(subject_digest, reference)
    signature = base64.b64encode(sign(private_pem, body)).decode()
    subject = {"mediaType": subject_media_type, "size": subject_size, "digest": subject_digest}
    return _artifact(SIMPLE_SIGNING, body, {SIGNATURE_ANNOTATION: signature}, subject, SIGNATURE_ARTIFACT_TYPE)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature is made over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def intoto_attestation_for(  # noqa: PLR0913 - the subject descriptor's three parts, the key, and three test knobs
    subject_digest: str,
    subject_size: int,
    subject_media_type: str,
    private_pem: bytes,
    reference: str = "example.com/app",
    *,
    predicate_type: str = COSIGN_PREDICATE,
    predicate: dict[str, Any] | None = None,
) -> Artifact:
    """A cosign attestation of the subject: a DSSE envelope of an in-toto statement, signed."""
    algorithm, _, encoded = subject_digest.partition(":")
    statement = _compact(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": predicate_type,
            "subject": [{"name": reference, "digest": {algorithm: encoded}}],
            "predicate": predicate if predicate is not None else {"Data": "", "Timestamp": "2026-01-01T00:00:00Z"},
        }
    )
    envelope = _compact(
        {
            "payloadType": IN_TOTO,
            "payload": base64.b64encode(statement).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(sign(private_pem, pae(IN_TOTO, statement))).decode()}],
        }
    )
    annotations = {SIGNATURE_ANNOTATION: "", "predicateType": predicate_type}
    subject = {"mediaType": subject_media_type, "size": subject_size, "digest": subject_digest}
    return _artifact(DSSE_ENVELOPE, envelope, annotations, subject, IN_TOTO)
