"""cosign signatures: the simple-signing payload and the signature manifest ([COSIGN-1] .. [COSIGN-5]).

Pure: bytes and model values in, bytes and model values out. Signing and verifying (which
need keys and ``cryptography``) live in :mod:`ocimerge.signatures`; this module knows only
the format cosign's signature specification fixes: what the signed payload says
([COSIGN-1], [COSIGN-2]), where a signature sits in a manifest ([COSIGN-3]) and what the
manifest cosign writes for it looks like ([COSIGN-4]).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ocimerge.errors import DocumentError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import decode_json, encode_json
from ocimerge.model.descriptor import Annotations, Descriptor, to_annotations
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest

__all__ = [
    "MAX_PAYLOAD_SIZE",
    "SIGNATURE_ANNOTATION",
    "SIGNATURE_ARTIFACT_TYPE",
    "SIGNATURE_TYPE",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "Payload",
    "is_signature",
    "parse_payload",
    "signature_config",
    "signature_entries",
    "signature_manifest",
    "simple_signing_payload",
]

#: [COSIGN-1] The media type of a simple-signing payload layer.
SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
#: [COSIGN-3] The layer annotation holding the base64 signature of that layer's payload.
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
#: [COSIGN-4] The ``artifactType`` cosign gives a signature stored as an OCI 1.1 referrer.
SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
#: [COSIGN-1] ``critical.type`` of every cosign signature payload.
SIGNATURE_TYPE = "cosign container image signature"
#: [COSIGN-2] Payloads larger than this are refused unread. cosign's are about 250 bytes; a
#: few optional claims stay far below 64 KiB, and a hostile "payload" cannot cost memory.
MAX_PAYLOAD_SIZE = 64 * 1024

# Go's encoding/json escapes these even inside strings (HTML safety, and the two JavaScript
# line terminators); Python's json leaves them alone. They occur only inside strings, so a
# textual replace after encoding is exact ([COSIGN-1]).
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
# Go's zero time.Time, as the config cosign writes carries it ([COSIGN-4]).
_ZERO_TIME = "0001-01-01T00:00:00Z"


def _go_json(value: Any) -> bytes:
    """[COSIGN-1] ``value`` as Go's ``json.Marshal`` writes it: compact, keys as given, Go's escapes.

    Raises :class:`UsageError` for a string holding a lone surrogate (not Unicode text; Go
    would silently write U+FFFD instead, so the bytes could never match).
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for char, escape in _GO_ESCAPES.items():
        text = text.replace(char, escape)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("cosign payload: a value is not valid Unicode text (lone surrogate)") from None


def simple_signing_payload(docker_reference: str, digest: Digest, optional: Mapping[str, str] | None = None) -> bytes:
    """[COSIGN-1] The simple-signing payload for ``digest``, byte for byte as cosign marshals it.

    Members in the order of sigstore's ``SimpleContainerImage`` struct (``critical``:
    ``identity``, ``image``, ``type``; then ``optional``); ``optional`` is a Go map, so its keys
    are sorted, and None is ``null`` (an empty mapping is ``{}``, as an empty Go map is).
    Raises :class:`UsageError` only for text that is not Unicode.

    >>> simple_signing_payload("example.com/app", Digest.of(b"{}"))[:60]
    b'{"critical":{"identity":{"docker-reference":"example.com/app'
    """
    value = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": str(digest)},
            "type": SIGNATURE_TYPE,
        },
        "optional": None if optional is None else {key: optional[key] for key in sorted(optional)},
    }
    return _go_json(value)


@attrs.frozen
class Payload:
    """[COSIGN-2] What a simple-signing payload claims: the manifest digest it signs, and more.

    ``docker_reference`` is the claimed identity (cosign ignores it when verifying, and so do
    we); ``optional`` the string-valued members of ``optional`` (annotations given to
    ``cosign sign -a``), key-sorted; members with other JSON values are not modelled (the
    signature covers the raw bytes whatever they hold).

    >>> p = parse_payload(simple_signing_payload("example.com/app", Digest.of(b"{}"), {"by": "ci"}), "payload")
    >>> p.digest == Digest.of(b"{}"), dict(p.optional)
    (True, {'by': 'ci'})
    """

    docker_reference: str
    digest: Digest
    optional: Annotations = attrs.field(default=(), converter=to_annotations)


def _member(value: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    item = value.get(key)
    if not isinstance(item, dict):
        raise DocumentError(f"{where}: '{key}' must be an object")
    return item


def parse_payload(raw: bytes, where: str) -> Payload:
    """[COSIGN-2] Parse a simple-signing payload, strictly; ``where`` names it in messages.

    Refused with a one-line :class:`DocumentError`: more than :data:`MAX_PAYLOAD_SIZE` bytes,
    JSON that is not strict I-JSON ([JSON-1]) or not an object, a ``critical`` that is not an
    object, a ``critical.type`` other than :data:`SIGNATURE_TYPE`, a missing or invalid
    ``critical.image.docker-manifest-digest``, a non-string ``docker-reference``, an
    ``optional`` that is neither null nor an object.
    """
    if len(raw) > MAX_PAYLOAD_SIZE:
        raise DocumentError(f"{where}: payload is {len(raw)} bytes, over the {MAX_PAYLOAD_SIZE}-byte limit")
    value = decode_json(raw, where=where)
    if not isinstance(value, dict):
        raise DocumentError(f"{where}: a simple-signing payload must be a JSON object")
    critical = _member(value, "critical", where)
    kind = critical.get("type")
    if kind != SIGNATURE_TYPE:
        raise DocumentError(f"{where}: critical.type is {kind!r}, not {SIGNATURE_TYPE!r}")
    image = _member(critical, "image", f"{where}: critical")
    digest = image.get("docker-manifest-digest")
    if not isinstance(digest, str):
        raise DocumentError(f"{where}: critical.image.docker-manifest-digest must be a digest string")
    try:
        parsed = Digest.parse(digest)
    except DocumentError as exc:
        raise DocumentError(f"{where}: critical.image.docker-manifest-digest: {exc}") from None
    identity = critical.get("identity")
    if identity is None:
        identity = {}  # cosign ignores the identity, and Go reads a missing or null one as empty
    reference = identity.get("docker-reference", "") if isinstance(identity, dict) else None
    if not isinstance(reference, str):
        raise DocumentError(f"{where}: critical.identity.docker-reference must be a string")
    optional = value.get("optional")
    if optional is not None and not isinstance(optional, dict):
        raise DocumentError(f"{where}: 'optional' must be an object or null")
    strings = {k: v for k, v in (optional or {}).items() if isinstance(v, str)}
    return Payload(docker_reference=reference, digest=parsed, optional=strings)


def signature_entries(manifest: ImageManifest) -> tuple[tuple[Descriptor, str], ...]:
    """[COSIGN-3] The layers of ``manifest`` that are signed payloads, each with its signature text.

    A layer counts when its media type is :data:`SIMPLE_SIGNING_MEDIA_TYPE` and it carries a
    non-empty :data:`SIGNATURE_ANNOTATION` (the base64 text, returned as found: checking it is
    the verifier's job). An attestation's DSSE layer (empty annotation, another media type)
    does not count. Never raises.
    """
    found: list[tuple[Descriptor, str]] = []
    for layer in manifest.layers:
        signature = layer.annotation(SIGNATURE_ANNOTATION)
        if layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE and signature:
            found.append((layer, signature))
    return tuple(found)


def is_signature(manifest: ImageManifest) -> bool:
    """[COSIGN-3] Whether ``manifest`` holds at least one cosign signature layer."""
    return bool(signature_entries(manifest))


def signature_config(payloads: Sequence[Descriptor]) -> bytes:
    """[COSIGN-4] The image config cosign writes for a signature manifest with these layers.

    go-containerregistry's ``empty.Image`` with one layer appended per payload: empty
    ``architecture`` and ``os``, the zero ``created`` time, one zero-time ``history`` entry
    and one ``rootfs.diff_ids`` entry (the payload digest: payloads are not compressed) per
    layer, and an empty ``config``, in Go's struct order.
    """
    value = {
        "architecture": "",
        "created": _ZERO_TIME,
        "history": [{"created": _ZERO_TIME} for _ in payloads],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(p.digest) for p in payloads]},
        "config": {},
    }
    return encode_json(value)


def signature_manifest(
    signatures: Sequence[tuple[Descriptor, str]], *, subject: Descriptor | None
) -> tuple[Document[ImageManifest], bytes]:
    """[COSIGN-4] The signature manifest for ``(payload descriptor, base64 signature)`` pairs.

    Returns the manifest, authored once by the canonical encoder ([DOC-1]), and the bytes of
    its config ([COSIGN-4]: :func:`signature_config`). Each layer is the payload descriptor as
    given with :data:`SIGNATURE_ANNOTATION` set to its signature. With ``subject`` the
    manifest also names it (reduced to media type, digest and size) and has ``artifactType``
    :data:`SIGNATURE_ARTIFACT_TYPE`, so one manifest serves both cosign's ``.sig`` tag and the
    referrers API. Raises :class:`UsageError` for no signatures or an empty signature text.
    """
    if not signatures:
        raise UsageError("a cosign signature manifest needs at least one signature")
    if not all(signature for _, signature in signatures):
        raise UsageError("a cosign signature layer needs a non-empty signature")
    layers = tuple(payload.with_annotations({SIGNATURE_ANNOTATION: signature}) for payload, signature in signatures)
    config = signature_config(layers)
    manifest = ImageManifest(
        config=Descriptor(mt.OCI_CONFIG, Digest.of(config), len(config)),
        layers=layers,
        artifact_type=None if subject is None else SIGNATURE_ARTIFACT_TYPE,
        subject=None if subject is None else Descriptor(subject.media_type, subject.digest, subject.size),
    )
    document: Document[ImageManifest] = Document.author(manifest)
    return document, config
