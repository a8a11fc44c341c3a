"""Blob routes: HEAD, GET (with ``Range``), DELETE, and uploads ([TESTREG-3]).

Uploads as distribution-spec describes them and Distribution answers them: ``POST`` opens a
session (202, ``Location`` with an opaque ``_state``, ``Range: 0-0``, ``Docker-Upload-UUID``,
``OCI-Chunk-Min-Length`` when set) or completes a monolithic upload (``?digest=`` with the
body, 201) or mounts (``?mount=&from=``, 201, else a session); ``PATCH`` appends a chunk whose
``Content-Range`` must start where the session stands (else 416); ``PUT ?digest=`` closes it,
the bytes hashed as they streamed in (400 ``DIGEST_INVALID`` and the session gone when they
differ); ``GET`` tells where it stands (204 with ``Range``); ``DELETE`` cancels it.
"""

from __future__ import annotations

import re

from ocimerge.model.digest import Digest
from ocimerge.testing.exchange import Answer, Refusal, Request
from ocimerge.testing.site import Site, parse_digest
from ocimerge.testing.storage import Upload, UploadDigestError

__all__ = ["delete_blob", "get_blob", "upload_delete", "upload_patch", "upload_put", "upload_start", "upload_status"]

_CONTENT_RANGE = re.compile(r"(?:bytes )?([0-9]+)-([0-9]+)(?:/[0-9*]+)?")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def _blob_unknown(digest: Digest) -> Refusal:
    return Refusal(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": str(digest)})


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` a ``Range`` header asks for; None for the whole blob."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None  # a form we do not serve: the whole blob, as RFC 9110 allows
    first, last = match.group(1), match.group(2)
    if first == "":  # a suffix: the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise Refusal(
            416, "RANGE_INVALID", "the range is not satisfiable", headers=[("Content-Range", f"bytes */{size}")]
        )
    return start, end


def get_blob(site: Site, request: Request, name: str, reference: str) -> Answer:
    """``GET``/``HEAD /v2/<name>/blobs/<digest>``: the bytes, streamed; ``Range`` gives 206."""
    digest = parse_digest(reference)
    size = site.storage.blob_size(name, digest)
    if size is None:
        raise _blob_unknown(digest)
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Docker-Content-Digest", str(digest)),
        ("Accept-Ranges", "bytes"),
        ("ETag", f'"{digest}"'),
    ]
    span = _byte_range(request.header("range"), size)
    status, start, length = 200, 0, size
    if span is not None:
        status, start, length = 206, span[0], span[1] - span[0] + 1
        headers.append(("Content-Range", f"bytes {span[0]}-{span[1]}/{size}"))
    if request.method == "HEAD":
        return Answer(status, headers, length=length)
    return Answer(status, headers, stream=site.storage.open_blob(digest, start), length=length)


def delete_blob(site: Site, _request: Request, name: str, reference: str) -> Answer:
    """``DELETE /v2/<name>/blobs/<digest>``: unlink it from the repository (202)."""
    digest = parse_digest(reference)
    if not site.storage.delete_blob(name, digest):
        raise _blob_unknown(digest)
    return Answer(202, [("Docker-Content-Digest", str(digest))])


# -- uploads -----------------------------------------------------------------------------------


def _session_headers(site: Site, request: Request, upload: Upload) -> list[tuple[str, str]]:
    path = f"/v2/{upload.repository}/blobs/uploads/{upload.uuid}?_state={upload.state}"
    headers = [
        ("Location", site.location(request.base, path)),
        ("Range", f"0-{max(upload.size - 1, 0)}"),  # "0-0" for 0 and for 1 byte, as Distribution
        ("Docker-Upload-UUID", upload.uuid),
    ]
    if site.behaviour.chunk_min_length is not None:
        headers.append(("OCI-Chunk-Min-Length", str(site.behaviour.chunk_min_length)))
    return headers


def _created(name: str, digest: Digest) -> Answer:
    return Answer(201, [("Location", f"/v2/{name}/blobs/{digest}"), ("Docker-Content-Digest", str(digest))])


def upload_start(site: Site, request: Request, name: str, _reference: str) -> Answer:
    """``POST /v2/<name>/blobs/uploads/``: a mount, a monolithic upload, or a new session."""
    mount, source = request.param("mount"), request.param("from")
    if mount is not None and source:
        digest = parse_digest(mount)
        if site.behaviour.mounts and site.storage.mount(name, digest, source):
            return _created(name, digest)
    upload = site.storage.start_upload(name)
    wanted = request.param("digest")
    if wanted is not None and mount is None:
        digest = parse_digest(wanted)
        _receive(site, request, upload)
        return _commit(site, upload, digest, name)
    return Answer(202, _session_headers(site, request, upload))


def _session(site: Site, request: Request, name: str, uuid: str) -> Upload:
    upload = site.storage.upload(name, uuid)
    if upload is None:
        raise Refusal(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": uuid})
    _check_state(request, upload)
    return upload


def _check_state(request: Request, upload: Upload) -> None:
    """The Location is opaque and must be used whole, the latest one [API-4]: a client that
    rebuilt it, or kept an older one, is refused with Distribution's code and status (404)."""
    if request.param("_state") != upload.state:
        detail = {"uuid": upload.uuid}
        raise Refusal(404, "BLOB_UPLOAD_INVALID", "the upload's _state is missing, wrong or stale", detail)


def _still_open(site: Site, request: Request, upload: Upload) -> None:
    """Under the session's lock: a request that waited on another to the same session finds
    it gone (a PUT or DELETE), or its Location stale (a PATCH)."""
    if site.storage.upload(upload.repository, upload.uuid) is not upload:
        raise Refusal(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": upload.uuid})
    _check_state(request, upload)


def _check_range(request: Request, upload: Upload) -> None:
    """A ``Content-Range`` must start where the session stands and span ``Content-Length``."""
    header = request.header("content-range")
    if header is None:
        return
    match = _CONTENT_RANGE.fullmatch(header.strip())
    refused = Refusal(
        416,
        "RANGE_INVALID",
        f"Content-Range {header} does not go on from the {upload.size} bytes stored",
        headers=[("Range", f"0-{max(upload.size - 1, 0)}")],
    )
    if match is None:
        raise refused
    start, end = int(match.group(1)), int(match.group(2))
    if start != upload.size or end < start:
        raise refused
    if request.body.length is not None and request.body.length != end - start + 1:
        raise refused


def _receive(site: Site, request: Request, upload: Upload) -> None:
    site.storage.receive(upload, request.body.pieces())


def _commit(site: Site, upload: Upload, digest: Digest, name: str) -> Answer:
    try:
        site.storage.commit(upload, digest)
    except UploadDigestError as exc:
        raise Refusal(400, "DIGEST_INVALID", "provided digest did not match uploaded content", str(exc)) from None
    return _created(name, digest)


def upload_patch(site: Site, request: Request, name: str, uuid: str) -> Answer:
    """``PATCH <location>``: one chunk, streamed; 416 when it does not go on from the stored end."""
    upload = _session(site, request, name, uuid)
    request.body.refuse_over(site.behaviour.max_chunk)
    with upload.lock:
        _still_open(site, request, upload)
        _check_range(request, upload)
        _receive(site, request, upload)
    return Answer(202, _session_headers(site, request, upload))


def upload_put(site: Site, request: Request, name: str, uuid: str) -> Answer:
    """``PUT <location>&digest=``: the last bytes (if any), then the blob, verified."""
    upload = _session(site, request, name, uuid)
    wanted = request.param("digest")
    if wanted is None:
        raise Refusal(400, "DIGEST_INVALID", "the closing PUT names no digest")
    digest = parse_digest(wanted)
    with upload.lock:
        _still_open(site, request, upload)
        header = request.header("content-range")
        if header is not None and request.body.length is not None:
            match = _CONTENT_RANGE.fullmatch(header.strip())
            if match and int(match.group(2)) - int(match.group(1)) + 1 != request.body.length:
                raise Refusal(400, "SIZE_INVALID", f"Content-Range {header} disagrees with Content-Length")
        _check_range(request, upload)
        _receive(site, request, upload)
        return _commit(site, upload, digest, name)


def upload_status(site: Site, request: Request, name: str, uuid: str) -> Answer:
    """``GET <location>``: where the session stands (204 with ``Range``)."""
    upload = _session(site, request, name, uuid)
    return Answer(204, _session_headers(site, request, upload))


def upload_delete(site: Site, request: Request, name: str, uuid: str) -> Answer:
    """``DELETE <location>``: cancel the session (204)."""
    upload = _session(site, request, name, uuid)
    with upload.lock:
        _still_open(site, request, upload)
        site.storage.cancel(upload)
    return Answer(204)
