"""The registry API: one method per endpoint, model values in and out ([API-1] .. [API-8]).

[API-1] ``GET /v2/`` first: it learns the auth scheme and, for a loopback registry, whether
it speaks TLS. [API-2] Manifest reads send the full ``Accept`` list (OCI and Docker, manifests
and indexes), or a registry may answer another document. [API-3] Every manifest and blob read
is verified against the digest asked for; ``Docker-Content-Digest`` is checked when present.
[API-4] Uploads follow the ``Location`` exactly as given, query string included, resolved
against the request URL; ``digest=`` is appended to its query. [API-5] Bodies stream from the
blob's opener with an explicit ``Content-Length`` and are hashed as they are sent.
[API-6] A mount answered 202 opened an upload session: it is used for the upload.
[API-7] Chunked uploads send ``Content-Range: start-end`` (inclusive, no ``bytes``), chunks no
smaller than ``OCI-Chunk-Min-Length``, and close with an empty PUT.
[API-8] Tag lists follow ``Link: <…>; rel="next"`` until there is none.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import httpx

from ocimerge.content import CHUNK_SIZE, Blob, VerifyingReader
from ocimerge.errors import (
    DigestMismatchError,
    RegistryError,
    TransportError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.reference import DOCKER_HUB
from ocimerge.registry.auth import RegistryAuth
from ocimerge.registry.challenge import Scope
from ocimerge.registry.credentials import Credentials, resolve_credentials
from ocimerge.registry.responses import (
    RegistryCodeError,
    raise_for_response,
    read_capped,
    redact_url,
)
from ocimerge.registry.transport import RetryPolicy, TLSOptions, build_client, is_loopback

__all__ = ["MANIFEST_ACCEPT", "Mounted", "Registry", "RegistryOptions", "RegistryPool"]

DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])
MAX_MANIFEST = 4 * 1024 * 1024


@attrs.frozen
class RegistryOptions:
    """How to reach and authenticate to registries (shared by every host in one run).

    [CRED-4] ``username``/``password`` (and ``OCIMERGE_USERNAME``/``OCIMERGE_PASSWORD``) are
    one registry's credentials: with ``explicit_hosts`` set they go to those hosts only, and
    every other registry of the run gets its own from docker's config (or none). A run that
    reads from one registry and pushes to another never hands one's password to the other.
    """

    tls: TLSOptions = attrs.field(factory=TLSOptions)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    chunk_size: int | None = None
    chunked_threshold: int = 1024 * 1024 * 1024
    explicit_hosts: frozenset[str] | None = None

    def credentials_for(self, host: str) -> Credentials | None:
        """[CRED-4] The credentials ``host`` gets: explicit ones only where they belong."""
        if self.explicit_hosts is None or host in self.explicit_hosts:
            return resolve_credentials(host, username=self.username, password=self.password)
        env = {k: v for k, v in os.environ.items() if k not in ("OCIMERGE_USERNAME", "OCIMERGE_PASSWORD")}
        return resolve_credentials(host, env=env)


@attrs.frozen
class Mounted:
    """A cross-repository mount that succeeded (201)."""

    digest: Digest


class _Chunks:
    """[API-5][API-7] Upload bodies streamed from one verifying reader, hashed on the way.

    A monolithic PUT is one chunk of the whole blob. Chunks are read in order from one stream,
    so a blob is read once however many chunks it takes. A chunk sent again (a retry)
    re-opens the blob and skips to its start; the skipped bytes are hashed too, so the digest
    check, when the last byte is read, still covers the whole blob.
    """

    def __init__(self, blob: Blob, progress: Callable[[int], None] | None) -> None:
        self.blob = blob
        self.progress = progress
        self._reader: VerifyingReader | None = None
        self._position = 0

    def body(self, start: int, length: int) -> Iterator[bytes]:
        if self._reader is None or self._position != start:
            self.close()
            self._reader = self.blob.open()
            self._position = 0
            while self._position < start:
                self._position += len(self._reader.read(min(CHUNK_SIZE, start - self._position)))
        reader = self._reader
        left = length
        while left > 0 and (data := reader.read(min(CHUNK_SIZE, left))):
            left -= len(data)
            self._position += len(data)
            if self.progress is not None:
                self.progress(len(data))
            yield data
        if self._position == self.blob.descriptor.size:
            self.close()  # the whole blob was read (and its digest checked)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


_UNTRUSTED = "TLS certificate not trusted"


def _transport_reason(exc: httpx.HTTPError) -> str:
    """A short reason for a transport failure, with the fix when it is a TLS trust problem."""
    text = str(exc) or exc.__class__.__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"{_UNTRUSTED} ({text.split('certificate verify failed:')[-1].strip(' ()')}); "
            "pass --ca-file, put the CA in /etc/docker/certs.d/HOST/ca.crt, or use --insecure"
        )
    return f"{exc.__class__.__name__}: {text}"


class Registry:
    """A client for one registry host: an ``httpx.Client``, its auth, and the endpoints.

    ``requests`` counts the requests sent, by ``"METHOD kind"`` (``"PUT blob"``,
    ``"HEAD manifest"``…), for ``--json`` and for tests of how economical a push was.
    """

    def __init__(
        self,
        host: str,
        options: RegistryOptions | None = None,
        *,
        credentials: Credentials | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.options = options or RegistryOptions()
        tls = self.options.tls
        if credentials is None:
            credentials = self.options.credentials_for(host)
        self.credentials = credentials
        self._token_clients: dict[str, httpx.Client] = {}
        self._transport = transport
        self._transport = transport
        self.auth = RegistryAuth(
            host,
            credentials,
            self._token_client,
            allow_plain_realm=tls.insecure or tls.plain_http,
            clock=clock,
            api_host=self.api_host,
        )
        self._count_lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.client = build_client(self.api_host, tls, auth=self.auth, transport=transport)
        self._scheme = "http" if tls.plain_http else "https"
        self._pinged = False
        self._sleep = sleep

    # -- plumbing -------------------------------------------------------------------------

    def _token_client(self, netloc: str) -> httpx.Client:
        client = self._token_clients.get(netloc)
        if client is None:
            client = self._token_clients[netloc] = build_client(netloc, self.options.tls, transport=self._transport)
        return client

    def close(self) -> None:
        self.client.close()
        for client in self._token_clients.values():
            client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def api_host(self) -> str:
        """Where the API answers: Docker Hub's references say docker.io, its API is elsewhere."""
        return DOCKER_HUB_API if self.host in (DOCKER_HUB, "index.docker.io") else self.host

    def url(self, path: str) -> str:
        return f"{self._scheme}://{self.api_host}{path}"

    def _count(self, key: str) -> None:
        with self._count_lock:
            self.requests[key] += 1

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        kind: str,
        what: str,
        headers: dict[str, str] | None = None,
        body: Callable[[], Any] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (),
        retry: bool = True,
    ) -> httpx.Response:
        """Send with the retry policy; ``body`` re-creates the content for every attempt.

        Returns the response for 2xx and for statuses in ``ok``; raises the translated error
        otherwise. [RETRY-1] Every request ocimerge sends may be repeated: HEAD, GET and PUT
        are idempotent, a repeated POST opens a fresh upload session, and a PATCH re-sends its
        chunk from a re-opened blob (a registry that kept part of it answers 416, which is
        final).
        """
        if kind != "ping":
            self.ping()
        if isinstance(url, str) and url.startswith("/"):
            url = self.url(url)
        policy = self.options.retry
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            content = body() if body is not None else None
            request = self.client.build_request(method, url, headers=headers, content=content, params=params)
            self._count(f"{method} {kind}")
            try:
                response = self.client.send(request, stream=True)
            except DigestMismatchError:
                raise
            except httpx.HTTPError as exc:
                if retry and attempt < policy.attempts:
                    self._sleep(policy.delay(attempt))
                    continue
                raise TransportError(
                    f"{self.host}: {what} failed: {_transport_reason(exc)} ({redact_url(request.url)})"
                ) from None
            status = response.status_code
            streamed = content is not None and not isinstance(content, bytes)
            if status == 401 and streamed and not reauthenticated:
                # a streamed body cannot be replayed inside the auth flow: the token is now
                # cached, so send it once more
                response.close()
                reauthenticated = True
                attempt -= 1
                continue
            if policy.should_retry_status(status) and attempt < policy.attempts:
                delay = policy.delay(attempt, response)
                response.close()
                self._sleep(delay)
                continue
            if response.is_success or status in ok:
                if not stream:
                    response.read()
                return response
            raise_for_response(
                response, what, self.host, self.credentials.source if self.credentials else "anonymous access"
            )

    # -- endpoints ------------------------------------------------------------------------

    def ping(self) -> None:
        """[API-1] ``GET /v2/``: learn the auth scheme (and TLS or not, for loopback hosts)."""
        if self._pinged:
            return
        fallback = self._scheme == "https" and is_loopback(self.api_host)
        try:
            response = self._send(
                "GET", self.url("/v2/"), kind="ping", what="API version check", ok=(401, 404), retry=not fallback
            )
        except TransportError as exc:
            # only a server that does not speak TLS at all gets plain HTTP; an untrusted
            # certificate is an error, never a reason to downgrade
            if fallback and _UNTRUSTED not in str(exc):
                self._scheme = "http"  # docker's rule: loopback registries may be plain HTTP
                response = self._send("GET", self.url("/v2/"), kind="ping", what="API version check", ok=(401, 404))
            else:
                raise
        if response.status_code == 404:
            raise RegistryError(f"{self.host}: /v2/ answered 404; this is not an OCI/Docker registry")
        self._pinged = True

    def want(self, *scopes: Scope) -> None:
        """Ask for these scopes up front whenever their repository is touched."""
        self.auth.want(*scopes)

    def blob_exists(self, repository: str, digest: Digest) -> int | None:
        """``HEAD /v2/<name>/blobs/<digest>``: the blob's size, or None when absent."""
        response = self._send(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            kind="blob",
            what=f"HEAD blob {digest.short} in {repository}",
            ok=(404,),
        )
        if response.status_code == 404:
            return None
        length = response.headers.get("content-length")
        return int(length) if length and length.isdigit() else 0

    def open_blob(self, repository: str, descriptor: Descriptor) -> httpx.Response:
        """``GET /v2/<name>/blobs/<digest>``, streamed (the caller verifies and closes)."""
        return self._send(
            "GET",
            f"/v2/{repository}/blobs/{descriptor.digest}",
            kind="blob",
            what=f"GET blob {descriptor.digest.short} from {repository}",
            stream=True,
        )

    def start_upload(self, repository: str, *, mount: Digest | None = None, source: str | None = None) -> Mounted | str:
        """``POST /v2/<name>/blobs/uploads/`` (with ``mount``/``from``): a mount, or a Location."""
        params = {"mount": str(mount), "from": source} if mount is not None and source else None
        response = self._send(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            kind="mount" if params else "upload",
            what=f"start upload to {repository}",
            params=params,
            headers={"Content-Length": "0"},
        )
        if response.status_code == 201 and mount is not None:
            return Mounted(mount)
        return self._location(response)

    @staticmethod
    def _location(response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise RegistryError(f"{response.request.url.host}: upload answer without a Location header")
        return str(response.request.url.join(location))  # [API-4]

    @staticmethod
    def _with_digest(location: str, digest: Digest) -> httpx.URL:
        url = httpx.URL(location)
        return url.copy_add_param("digest", str(digest))

    def upload(
        self, repository: str, blob: Blob, location: str | None = None, *, progress: Callable[[int], None] | None = None
    ) -> None:
        """Upload a blob: monolithic PUT, or chunked PATCHes above the threshold or after a 413."""
        size = blob.descriptor.size
        chunk = self.options.chunk_size
        if location is None:
            started = self.start_upload(repository)
            assert isinstance(started, str)
            location = started
        if chunk is None and size <= self.options.chunked_threshold:
            try:
                self._put_blob(location, blob, progress)
                return
            except RegistryCodeError as exc:
                if exc.status != 413:
                    raise
                started = self.start_upload(repository)  # too big for one request: chunk it
                assert isinstance(started, str)
                location = started
        self._upload_chunked(location, blob, chunk or 16 * 1024 * 1024, progress)

    def _put_blob(self, location: str, blob: Blob, progress: Callable[[int], None] | None) -> None:
        digest = blob.digest
        response = self._send(
            "PUT",
            self._with_digest(location, digest),
            kind="blob",
            what=f"upload blob {digest.short}",
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.descriptor.size)},
            body=lambda: _Chunks(blob, progress).body(0, blob.descriptor.size),
        )
        self._check_digest(response, digest, "blob upload")

    def _upload_chunked(self, location: str, blob: Blob, chunk: int, progress: Callable[[int], None] | None) -> None:
        size = blob.descriptor.size
        chunks = _Chunks(blob, progress)
        start = 0
        try:
            while start < size:
                length = min(chunk, size - start)
                response = self._send(
                    "PATCH",
                    location,
                    kind="chunk",
                    what=f"upload chunk of blob {blob.digest.short}",
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(length),
                        "Content-Range": f"{start}-{start + length - 1}",
                    },
                    body=lambda s=start, n=length: chunks.body(s, n),  # type: ignore[misc]
                )
                location = self._location(response)
                minimum = response.headers.get("oci-chunk-min-length")
                if minimum and minimum.isdigit() and chunk < int(minimum):
                    chunk = int(minimum)
                start += length
        finally:
            chunks.close()
        response = self._send(
            "PUT",
            self._with_digest(location, blob.digest),
            kind="blob",
            what=f"finish upload of blob {blob.digest.short}",
            headers={"Content-Length": "0"},
        )
        self._check_digest(response, blob.digest, "blob upload")

    def cancel_upload(self, location: str) -> None:
        """``DELETE <location>``; failures are ignored (the registry expires sessions)."""
        with contextlib.suppress(RegistryError, TransportError):
            self._send("DELETE", location, kind="upload", what="cancel upload", ok=(404, 405))

    def _check_digest(self, response: httpx.Response, digest: Digest, what: str) -> None:
        header = response.headers.get("docker-content-digest")
        if header and header != str(digest):
            raise RegistryError(f"{self.host}: {what}: the registry says {header}, we sent {digest}")

    def manifest_head(self, repository: str, reference: str) -> Descriptor | None:
        """``HEAD /v2/<name>/manifests/<ref>``: the descriptor the registry holds, or None."""
        response = self._send(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            kind="manifest",
            what=f"HEAD manifest {reference} in {repository}",
            headers={"Accept": MANIFEST_ACCEPT},
            ok=(404,),
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("docker-content-digest")
        media_type = (response.headers.get("content-type") or "").split(";")[0].strip()
        length = response.headers.get("content-length") or "0"
        if not digest:  # the header is optional in distribution-spec v1.1: learn it from the bytes
            raw, served_type, actual = self.manifest_get(repository, reference)
            return Descriptor(served_type or media_type or mt.OCI_MANIFEST, actual, len(raw))
        return Descriptor(media_type or mt.OCI_MANIFEST, Digest.parse(digest), int(length) if length.isdigit() else 0)

    def manifest_get(self, repository: str, reference: str) -> tuple[bytes, str, Digest]:
        """[API-2][API-3] The exact stored bytes, their media type and digest (verified)."""
        response = self._send(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            kind="manifest",
            what=f"GET manifest {reference} from {repository}",
            headers={"Accept": MANIFEST_ACCEPT},
            stream=True,
        )
        raw = read_capped(response, MAX_MANIFEST)
        if raw is None:
            raise RegistryError(f"{self.host}: manifest {reference} in {repository} is over 4 MiB")
        actual = Digest.of(raw)
        expected = (
            reference if reference.startswith(("sha256:", "sha512:")) else response.headers.get("docker-content-digest")
        )
        if expected:
            want = Digest.parse(expected)
            got = Digest.of(raw, want.algorithm)
            if got != want:
                raise DigestMismatchError(
                    f"{self.host}: manifest {reference} in {repository} does not match its digest {want} "
                    f"(its bytes hash to {got})"
                )
        media_type = (response.headers.get("content-type") or "").split(";")[0].strip()
        return raw, media_type, actual

    def manifest_put(self, repository: str, reference: str, raw: bytes, media_type: str) -> Digest:
        """``PUT /v2/<name>/manifests/<ref>`` with the exact bytes; the digest is checked."""
        digest = Digest.of(raw)
        response = self._send(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            kind="manifest",
            what=f"PUT manifest {reference} to {repository}",
            headers={"Content-Type": media_type},
            body=lambda: raw,
        )
        self._check_digest(response, digest, f"manifest {reference}")
        return digest

    def tags(self, repository: str, page_size: int = 1000) -> list[str]:
        """[API-8] Every tag of ``repository``, following pagination."""
        url: str | httpx.URL = f"/v2/{repository}/tags/list"
        params: dict[str, str] | None = {"n": str(page_size)}
        found: list[str] = []
        while True:
            response = self._send("GET", url, kind="tags", what=f"list tags of {repository}", params=params)
            value = response.json()
            found.extend(t for t in (value.get("tags") or []) if isinstance(t, str))
            link = response.links.get("next", {}).get("url")
            if not link:
                return found
            url, params = response.request.url.join(link), None


class RegistryPool:
    """[REMOTE-5] One :class:`Registry` per host for a whole run; close it at the end."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options or RegistryOptions()
        self._clients: dict[str, Registry] = {}

    def get(self, host: str) -> Registry:
        client = self._clients.get(host)
        if client is None:
            client = self._clients[host] = Registry(host, self.options)
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> RegistryPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
