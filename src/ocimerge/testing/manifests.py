"""Manifest routes and the referrers API ([TESTREG-4], [TESTREG-10]).

``PUT`` validates as Distribution 2.8 does: at most 4 MiB, strict JSON, a ``Content-Type``
among the four image types agreeing with the body's ``mediaType``, a by-digest reference
equal to the bytes' digest, every config and layer of an image manifest (but those with
``urls``) and every child of an index already in the repository (400
``MANIFEST_BLOB_UNKNOWN``, one error each); a missing ``subject`` is accepted. The bytes are
stored unchanged. ``GET``/``HEAD`` negotiate on ``Accept`` as Distribution 2.8 does.
"""

from __future__ import annotations

import json
from typing import Any

from ocimerge.errors import DocumentError, UnsupportedMediaTypeError
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import ImageIndex, ImageManifest, decode_index, decode_manifest
from ocimerge.testing.exchange import Answer, Refusal, Request
from ocimerge.testing.site import TAG, Site, parse_digest
from ocimerge.testing.storage import Stored

__all__ = ["delete_manifest", "get_manifest", "put_manifest", "referrers"]

MAX_MANIFEST = 4 * 1024 * 1024
IMAGE_TYPES = (mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST)


def _manifest_unknown(reference: str) -> Refusal:
    return Refusal(404, "MANIFEST_UNKNOWN", "manifest unknown", {"reference": reference})


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip()


def _accepted(request: Request) -> set[str]:
    """The media types ``Accept`` names (parameters and ``q`` ignored, as Distribution does)."""
    return {_media_type(part) for part in (request.header("accept") or "").split(",") if part.strip()}


def _lookup(site: Site, name: str, reference: str) -> Stored:
    if ":" not in reference and not TAG.fullmatch(reference):
        raise Refusal(400, "TAG_INVALID", "manifest tag did not match URI", {"tag": reference})
    if ":" in reference:
        parse_digest(reference)
    digest = site.storage.resolve(name, reference)
    stored = site.storage.manifest(name, digest) if digest is not None else None
    if stored is None:
        raise _manifest_unknown(reference)  # in a repository never pushed to too, as Distribution 2.8
    return stored


def _negotiate(site: Site, name: str, reference: str, stored: Stored, accepted: set[str]) -> Stored:
    """What Distribution 2.8 serves for ``Accept``: OCI documents only to clients that name
    their type (404 otherwise); a Docker list asked by tag without the list type is replaced
    by its linux/amd64 child. Docker manifests are served as they are (no schema 1)."""
    if stored.media_type in (mt.OCI_MANIFEST, mt.OCI_INDEX) and stored.media_type not in accepted:
        one, many = ("manifest", "manifests") if stored.media_type == mt.OCI_MANIFEST else ("index", "indexes")
        raise Refusal(404, "MANIFEST_UNKNOWN", f"OCI {one} found, but accept header does not support OCI {many}")
    if (
        stored.media_type == mt.DOCKER_MANIFEST_LIST
        and mt.DOCKER_MANIFEST_LIST not in accepted
        and ":" not in reference
    ):
        for child in decode_index(stored.raw).manifests:
            if child.platform is not None and (child.platform.os, child.platform.architecture) == ("linux", "amd64"):
                found = site.storage.manifest(name, child.digest)
                if found is not None:
                    return found
        raise _manifest_unknown(reference)
    return stored


def get_manifest(site: Site, request: Request, name: str, reference: str) -> Answer:
    """``GET``/``HEAD /v2/<name>/manifests/<reference>``: the stored bytes, negotiated."""
    stored = _negotiate(site, name, reference, _lookup(site, name, reference), _accepted(request))
    headers = [
        ("Content-Type", stored.media_type),
        ("Docker-Content-Digest", str(stored.digest)),
        ("ETag", f'"{stored.digest}"'),
    ]
    if request.method == "HEAD":
        return Answer(200, headers, length=len(stored.raw))
    return Answer(200, headers, stored.raw)


def _decode(raw: bytes, media_type: str) -> ImageManifest | ImageIndex:
    """The body as the ``Content-Type`` says, or 400 ``MANIFEST_INVALID``."""
    if media_type not in IMAGE_TYPES:
        raise Refusal(400, "MANIFEST_INVALID", "manifest invalid", f"unsupported Content-Type {media_type!r}")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refusal(400, "MANIFEST_INVALID", "manifest invalid", f"not JSON: {exc}") from None
    body_type = value.get("mediaType") if isinstance(value, dict) else None
    if body_type is not None and body_type != media_type:
        detail = f"mediaType in manifest should be {media_type!r} not {body_type!r}"
        raise Refusal(400, "MANIFEST_INVALID", "manifest invalid", detail)
    try:
        return decode_index(raw) if media_type in mt.INDEX_TYPES else decode_manifest(raw)
    except (DocumentError, UnsupportedMediaTypeError) as exc:
        raise Refusal(400, "MANIFEST_INVALID", "manifest invalid", str(exc)) from None


def _missing(site: Site, name: str, value: ImageManifest | ImageIndex) -> list[tuple[str, str, Any]]:
    """One ``MANIFEST_BLOB_UNKNOWN`` per referenced blob or child not in the repository."""
    missing: list[Descriptor] = []
    if isinstance(value, ImageManifest):
        for blob in (value.config, *value.layers):
            if not blob.urls and site.storage.blob_size(name, blob.digest) is None:
                missing.append(blob)
    else:
        missing = [child for child in value.manifests if site.storage.manifest(name, child.digest) is None]
    # the detail is the digest itself, as Distribution writes it
    return [("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", str(d.digest)) for d in missing]


def put_manifest(site: Site, request: Request, name: str, reference: str) -> Answer:
    """``PUT /v2/<name>/manifests/<reference>``: validated, stored byte for byte, tagged."""
    raw = request.body.read_all(MAX_MANIFEST)
    if raw is None:
        raise Refusal(413, "MANIFEST_INVALID", "manifest invalid", f"the manifest is over {MAX_MANIFEST} bytes")
    media_type = _media_type(request.header("content-type"))
    value = _decode(raw, media_type)
    digest = Digest.of(raw)
    tag = None
    if ":" in reference:
        wanted = parse_digest(reference)
        if Digest.of(raw, wanted.algorithm) != wanted:
            raise Refusal(
                400, "DIGEST_INVALID", "provided digest did not match uploaded content", {"digest": reference}
            )
        digest = wanted
    elif TAG.fullmatch(reference):
        tag = reference
    else:
        raise Refusal(400, "TAG_INVALID", "manifest tag did not match URI", {"tag": reference})
    missing = _missing(site, name, value)
    if missing:
        raise Refusal.several(400, missing)
    subject = value.subject.digest if value.subject is not None else None
    site.storage.put_manifest(name, Stored(raw, media_type, digest), tag=tag, subject=subject)
    headers = [("Location", f"/v2/{name}/manifests/{digest}"), ("Docker-Content-Digest", str(digest))]
    if subject is not None and site.behaviour.referrers:
        headers.append(("OCI-Subject", str(subject)))  # [TESTREG-10] we keep the referrers ourselves
    return Answer(201, headers)


def delete_manifest(site: Site, _request: Request, name: str, reference: str) -> Answer:
    """``DELETE /v2/<name>/manifests/<reference>``: a digest removes the manifest and its tags,
    a tag only the tag (distribution-spec v1.1)."""
    if ":" not in reference:
        if not TAG.fullmatch(reference) or not site.storage.untag(name, reference):
            raise _manifest_unknown(reference)
        return Answer(202)
    digest = parse_digest(reference)
    stored = site.storage.manifest(name, digest)
    if stored is None:
        raise _manifest_unknown(reference)
    subject = _decode(stored.raw, stored.media_type).subject
    site.storage.delete_manifest(name, digest, subject.digest if subject else None)
    return Answer(202)


def _referrer(stored: Stored) -> dict[str, Any]:
    """[TESTREG-10] The descriptor of one referrer: ``artifactType`` (its own, else its config's
    media type) and its annotations."""
    value = _decode(stored.raw, stored.media_type)
    artifact_type = value.artifact_type
    if artifact_type is None and isinstance(value, ImageManifest):
        artifact_type = value.config.media_type
    entry: dict[str, Any] = {"mediaType": stored.media_type, "digest": str(stored.digest), "size": len(stored.raw)}
    if artifact_type:
        entry["artifactType"] = artifact_type
    if value.annotations:
        entry["annotations"] = dict(value.annotations)
    return entry


def referrers(site: Site, request: Request, name: str, reference: str) -> Answer:
    """[TESTREG-10] ``GET /v2/<name>/referrers/<digest>[?artifactType=]``: an OCI index of the
    manifests whose ``subject`` is the digest (empty when none)."""
    digest = parse_digest(reference)
    entries = [_referrer(stored) for stored in site.storage.referrers(name, digest)]
    headers = [("Content-Type", mt.OCI_INDEX)]
    wanted = request.query.get("artifactType")
    if wanted:
        entries = [e for e in entries if e.get("artifactType") in wanted]
        headers.append(("OCI-Filters-Applied", "artifactType"))
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    return Answer(200, headers, json.dumps(index, separators=(",", ":")).encode())
