"""The registry API: one method per endpoint, model values in and out ([API-1] .. [API-8]).

Nothing of httpx shows in a signature here: requests go out through the transport's
:class:`~ocimerge.registry.transport.Sender` (retries, redirects, errors), uploads through
:mod:`ocimerge.registry.upload`, and answers come back as descriptors, documents, verifying
readers and tuples.

[API-1] ``GET /v2/`` first: it learns the auth scheme and, for a loopback registry, whether
it speaks TLS. [API-2] Manifest reads send the full ``Accept`` list (OCI and Docker, manifests
and indexes), or a registry may answer another document. [API-3] Every manifest and blob read
is verified against the digest asked for; ``Docker-Content-Digest`` is checked when present.
[API-4] Uploads follow the ``Location`` exactly as given (see ``upload``).
[API-6] A mount answered 202 opened an upload session: it is used for the upload; one
refused with 401, 403 or 404 is followed by a plain upload session [PROFILE-6].
[PROFILE-8] Each client takes its host's profile (:func:`~ocimerge.registry.profiles.profile_for`)
and the run's flags for its upload rule and whether to ask for mounts.
[TAG-1] A manifest ``DELETE`` (by tag or digest) succeeds with 202; a refusal (405, or 400 to
a tag: Distribution 2.8's ``DIGEST_INVALID``) is a :class:`DeleteUnsupportedError` [TAG-2].
[API-8] Tag lists follow ``Link: <…>; rel="next"`` until there is none (or it repeats), at
most ``MAX_TAG_PAGES`` pages [SEC-8].
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import attrs
import httpx

from ocimerge.content import Blob, VerifyingReader
from ocimerge.errors import (
    AuthError,
    DeleteUnsupportedError,
    DigestMismatchError,
    RegistryError,
    TLSVerificationError,
    TransportError,
    UnsupportedError,
    UsageError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageIndex, ImageManifest, decode_manifest_or_index
from ocimerge.model.reference import DOCKER_HUB, Reference
from ocimerge.registry.auth import RegistryAuth
from ocimerge.registry.challenge import Scope
from ocimerge.registry.credentials import Credentials
from ocimerge.registry.options import RegistryOptions
from ocimerge.registry.profiles import Profile, profile_for
from ocimerge.registry.responses import decode_server_json, read_capped
from ocimerge.registry.transport import Outgoing, Peer, ResponseStream, Sender, build_client, is_loopback
from ocimerge.registry.upload import Uploader, UploadHooks, UploadSession, UploadTarget, check_digest, location_of

if TYPE_CHECKING:
    from ocimerge.registry.referrers import Referrers

__all__ = ["MANIFEST_ACCEPT", "Mounted", "Registry", "RegistryOptions", "RegistryPool", "UploadSession"]

DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])
MAX_MANIFEST = 4 * 1024 * 1024
TAGS_PAGE = 1000
MAX_TAG_PAGES = 10_000
#: [PROFILE-6] the statuses of a refused mount that a plain upload session follows
MOUNT_REFUSED = (401, 403, 404)


@attrs.frozen
class Mounted:
    """A cross-repository mount that succeeded (201)."""

    digest: Digest


def _api_host(host: str) -> str:
    """Where a host's API answers: Docker Hub's references say docker.io, its API is elsewhere."""
    return DOCKER_HUB_API if host in (DOCKER_HUB, "index.docker.io") else host


def _media_type(response: httpx.Response) -> str:
    """The served ``Content-Type`` without parameters; ``""`` when there is none."""
    return (response.headers.get("content-type") or "").split(";")[0].strip()


class Registry:
    """A client for one registry host: its HTTP client, its auth, and the endpoints.

    ``requests`` counts the requests sent, by ``"METHOD kind"`` (``"PUT blob"``,
    ``"HEAD manifest"``…), for ``--json`` and for tests of how economical a push was.
    ``profile`` is the host's registry family [PROFILE-8].
    ``transport`` replaces the network and ``sleep``/``clock`` the time (unit tests only).
    """

    def __init__(  # noqa: PLR0913 - keyword-only test seams (credentials, sleep, transport, clock)
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
        self.credentials = credentials if credentials is not None else self.options.credentials_for(host)
        deadlines = self.options.deadlines
        self.auth = RegistryAuth(
            host,
            self.credentials,
            # [TOKEN-4][SEC-8] --plain-http (this registry speaks HTTP) allows a plain-HTTP realm
            # elsewhere; --insecure changes TLS verification only, never where secrets may go
            allow_plain_realm=tls.plain_http,
            clock=clock,
            api_host=self.api_host,
            token_deadline=deadlines.other,
            retry=self.options.retry,  # [TOKEN-8] the token service is retried like the registry
            sleep=sleep,
        )
        self.client = build_client(self.api_host, tls, auth=self.auth, transport=transport)
        source = self.credentials.source if self.credentials else "anonymous access"
        peer = Peer(host, self.api_host, source, self.auth.redactor, deadlines)
        self._sender = Sender(self.client, self.options.retry, peer=peer, sleep=sleep, debug=self.options.debug)
        self.requests = self._sender.requests
        self.profile: Profile = profile_for(host)
        self.mounts = self.options.mounts_for(self.profile)
        self._uploader = Uploader(self._sender, self.options.chunking_for(self.profile), sleep=sleep)
        self._scheme = "http" if tls.plain_http else "https"
        self._ping_lock = threading.Lock()
        self._pinged = False

    def close(self) -> None:
        """Close the connections; the client is unusable afterwards."""
        self.client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def api_host(self) -> str:
        """Where the API answers: Docker Hub's references say docker.io, its API is elsewhere."""
        return _api_host(self.host)

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the API, as learnt by the ping (plain HTTP on loopback), which runs first."""
        self.ping()
        return f"{self._scheme}://{self.api_host}"

    # -- plumbing -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **options: Any) -> Callable[[], httpx.Request]:
        """A builder of ``method path`` on this registry (or of an absolute URL, as given).

        The scheme is read when the request is built: the ping may learn that a loopback
        registry speaks plain HTTP after the builder was made.
        """

        def build() -> httpx.Request:
            url = path if "://" in path else f"{self._scheme}://{self.api_host}{path}"
            return self.client.build_request(method, url, **options)

        return build

    def _send(self, out: Outgoing) -> httpx.Response:
        """Send an endpoint's request, after the ping that learns scheme and auth [API-1]."""
        self.ping()
        return self._sender.send(out)

    def request(  # noqa: PLR0913 - the Outgoing fields, keyword-only
        self,
        method: str,
        path: str,
        *,
        kind: str,
        what: str,
        ok: tuple[int, ...] = (),
        retry: bool = True,
        stream: bool = False,
        **options: Any,
    ) -> httpx.Response:
        """Any request on this registry, through its auth and request loop (probes, ``doctor``).

        ``path`` is an API path (``/v2/...``) or an absolute URL the registry gave (a
        ``Location``); ``options`` go to ``httpx.Client.build_request`` (headers, params,
        content). Statuses in ``ok`` are answers; any other non-2xx raises its error class.
        """
        return self._send(Outgoing(self._request(method, path, **options), kind, what, ok, stream, retry))

    def _target(self, reference: Reference) -> tuple[str, str]:
        """The repository and the manifest reference (digest, else tag) ``reference`` names here."""
        if _api_host(reference.registry) != self.api_host:
            raise UsageError(f"{reference} is not on {self.host}")
        name = str(reference.digest) if reference.digest else reference.tag
        if not name:
            raise UsageError(f"{reference} names neither a tag nor a digest")
        return reference.repository, name

    # -- endpoints ------------------------------------------------------------------------

    def ping(self) -> None:
        """[API-1] ``GET /v2/``: learn the auth scheme (and TLS or not, for loopback hosts)."""
        with self._ping_lock:
            if self._pinged:
                return
            fallback = self._scheme == "https" and is_loopback(self.api_host)
            out = Outgoing(
                self._request("GET", "/v2/"), "GET ping", "API version check", ok=(401, 404), retry=not fallback
            )
            try:
                response = self._sender.send(out)
            except TLSVerificationError:
                raise  # an untrusted certificate is an error, never a reason to downgrade
            except TransportError:
                if not fallback:
                    raise
                self._scheme = "http"  # docker's rule: loopback registries may be plain HTTP
                response = self._sender.send(attrs.evolve(out, build=self._request("GET", "/v2/"), retry=True))
            if response.status_code == 404:
                raise RegistryError(f"{self.host}: /v2/ answered 404; this is not an OCI/Docker registry")
            self._pinged = True

    def want(self, *scopes: Scope) -> None:
        """Ask for these scopes up front whenever their repository is touched."""
        self.auth.want(*scopes)

    def blob_exists(self, repository: str, digest: Digest) -> int | None:
        """``HEAD /v2/<name>/blobs/<digest>``: the blob's size, or None when absent."""
        response = self._send(
            Outgoing(
                self._request("HEAD", f"/v2/{repository}/blobs/{digest}"),
                "HEAD blob",
                f"HEAD blob {digest.short} in {repository}",
                ok=(404,),
            )
        )
        if response.status_code == 404:
            return None
        length = response.headers.get("content-length")
        return int(length) if length and length.isdigit() else 0

    def open_blob(self, repository: str, descriptor: Descriptor, where: str | None = None) -> VerifyingReader:
        """[API-3] ``GET /v2/<name>/blobs/<digest>``: a stream verified against ``descriptor``.

        Reads raise :class:`TransportError` when the connection fails and
        :class:`DigestMismatchError` (naming ``where``) when the bytes are not the blob's;
        closing the reader closes the response.
        """
        what = f"GET blob {descriptor.digest.short} from {repository}"
        response = self._send(
            Outgoing(
                self._request("GET", f"/v2/{repository}/blobs/{descriptor.digest}"),
                "GET blob",
                what,
                stream=True,
                blob_size=descriptor.size,  # [SEC-8] a blob body: the blob deadline
            )
        )
        stream = cast(BinaryIO, ResponseStream(response, self.host, what))
        return VerifyingReader(stream, descriptor, where or f"{self.host}/{repository}: blob {descriptor.digest}")

    def start_upload(
        self, repository: str, *, mount: Digest | None = None, source: str | None = None
    ) -> Mounted | UploadSession:
        """``POST /v2/<name>/blobs/uploads/`` (with ``mount``/``from``): a mount, or a session.

        [API-6] A mount the registry refused (202) opened a session: upload into it.
        [PROFILE-6] A mount answered 401, 403 or 404 (Harbor, for a source repository that
        does not exist) is followed by a plain upload session, so a refused mount never fails
        a push; the session carries the status the mount was refused with (``refused``). With
        mounts off (``--no-mounts``, or a profile not worth asking) a mount request is a plain
        upload.
        """
        if mount is None or not source or not self.mounts:
            return _session_of(self._post_upload(repository, None))
        try:
            response = self._post_upload(repository, {"mount": str(mount), "from": source})
        except (AuthError, RegistryError) as exc:
            if exc.status not in MOUNT_REFUSED:
                raise
            return attrs.evolve(_session_of(self._post_upload(repository, None)), refused=exc.status)
        if response.status_code == 201:
            return Mounted(mount)
        return attrs.evolve(_session_of(response), refused=response.status_code)

    def _post_upload(self, repository: str, params: dict[str, str] | None) -> httpx.Response:
        """The ``POST`` that starts an upload (a mount with ``params``) in ``repository``."""
        return self._send(
            Outgoing(
                self._request(
                    "POST", f"/v2/{repository}/blobs/uploads/", params=params, headers={"Content-Length": "0"}
                ),
                "POST mount" if params else "POST upload",
                f"start upload to {repository}",
            )
        )

    def _session(self, repository: str) -> UploadSession:
        """A fresh upload session in ``repository`` (no mount asked, so never ``Mounted``)."""
        return _session_of(self._post_upload(repository, None))

    def upload(
        self,
        repository: str,
        blob: Blob,
        session: UploadSession | None = None,
        hooks: UploadHooks | None = None,
    ) -> None:
        """Upload ``blob`` into ``session`` (a new one when None): one PUT, or chunks.

        See :mod:`ocimerge.registry.upload` for when chunks are used. ``hooks`` follow and
        steer it: progress, checkpoints after every chunk (and, without ``session``, the
        earlier run's session to continue, [RESUME-3]), a stop flag [PUSH-5].
        """
        target = UploadTarget(
            lambda: self._session(repository),
            lambda b: self.blob_exists(repository, b.digest) == b.descriptor.size,
        )
        self._uploader.upload(blob, session, target, hooks)

    def manifest_head(self, reference: Reference) -> Descriptor | None:
        """``HEAD /v2/<name>/manifests/<ref>``: the descriptor the registry holds, or None."""
        repository, name = self._target(reference)
        response = self._send(
            Outgoing(
                self._request("HEAD", f"/v2/{repository}/manifests/{name}", headers={"Accept": MANIFEST_ACCEPT}),
                "HEAD manifest",
                f"HEAD manifest {name} in {repository}",
                ok=(404,),
            )
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("docker-content-digest")
        media_type = _media_type(response)
        if not digest or not media_type:
            # both are optional on a HEAD (distribution-spec v1.1; proxies drop Content-Type):
            # learn them from the verified bytes rather than guess, since an index taken for an
            # image manifest would hide its children from every check that asks
            return self.manifest_get(reference).descriptor
        length = response.headers.get("content-length") or "0"
        return Descriptor(media_type, Digest.parse(digest), int(length) if length.isdigit() else 0)

    def manifest_get(self, reference: Reference) -> Document[ImageManifest | ImageIndex]:
        """[API-2][API-3] The stored document, its bytes exact and verified, parsed.

        Verified against the digest asked for, else ``Docker-Content-Digest`` when present;
        a document over 4 MiB is a :class:`RegistryError`.
        """
        repository, name = self._target(reference)
        where = f"{self.host}: manifest {name} in {repository}"
        response = self._send(
            Outgoing(
                self._request("GET", f"/v2/{repository}/manifests/{name}", headers={"Accept": MANIFEST_ACCEPT}),
                "GET manifest",
                f"GET manifest {name} from {repository}",
                stream=True,
            )
        )
        raw = read_capped(response, MAX_MANIFEST, registry=self.host)  # [SEC-8] capped, within the deadline
        if raw is None:
            raise RegistryError(f"{where} is over 4 MiB")
        # [API-3] the digest asked for wins; a tag read is checked against the header, if any
        header = response.headers.get("docker-content-digest")
        expected = reference.digest or (Digest.parse(header) if header else None)
        if expected is not None and Digest.of(raw, expected.algorithm) != expected:
            raise DigestMismatchError(
                f"{where} does not match its digest {expected} (its bytes hash to {Digest.of(raw, expected.algorithm)})"
            )
        served = _media_type(response)
        named = f"{reference}: manifest"  # a document error names the image as the user wrote it
        value = decode_manifest_or_index(raw, media_type=served or None, where=named)
        by = Descriptor(served or value.effective_media_type, expected or Digest.of(raw), len(raw))
        return Document.reached(raw, value, by, where=named)

    def manifest_put(self, reference: Reference, document: Document[Any]) -> Descriptor:
        """``PUT /v2/<name>/manifests/<ref>`` with the document's exact bytes; the digest is checked."""
        repository, name = self._target(reference)
        raw = document.raw
        response = self._send(
            Outgoing(
                self._request(
                    "PUT",
                    f"/v2/{repository}/manifests/{name}",
                    headers={"Content-Type": document.descriptor.media_type},
                    content=raw,
                ),
                "PUT manifest",
                f"PUT manifest {name} to {repository}",
            )
        )
        check_digest(response, Digest.of(raw), self.host, f"manifest {name}")
        return document.descriptor

    def manifest_delete(self, reference: Reference) -> None:
        """[TAG-1] ``DELETE /v2/<name>/manifests/<tag-or-digest>``; 202 (any 2xx) is success.

        By tag the spec removes the tag alone; by digest the manifest and every tag naming it.
        A missing one is :class:`ManifestUnknownError`; a DELETE the registry refuses (405 with
        any code, 400 ``UNSUPPORTED``, or any 400 to a tag, which Distribution 2.8 answers
        ``DIGEST_INVALID``: it parses every reference as a digest) is
        :class:`DeleteUnsupportedError` [TAG-2]. Distribution's
        token auth wants the ``delete`` action: callers :meth:`want` it for the repository.
        """
        repository, name = self._target(reference)
        out = Outgoing(
            self._request("DELETE", f"/v2/{repository}/manifests/{name}"),
            "DELETE manifest",
            f"DELETE manifest {name} in {repository}",
        )
        try:
            self._send(out)
        except RegistryError as exc:
            unsupported = reference.digest is None or isinstance(exc, UnsupportedError)
            refused = exc.status == 405 or (exc.status == 400 and unsupported)
            if not refused or isinstance(exc, DeleteUnsupportedError):
                raise
            raise DeleteUnsupportedError(
                str(exc),  # the registry's own words: status, code, message
                status=exc.status,
                url=exc.url,
                answered=exc.code,
            ) from exc

    def referrers(self, repository: str, digest: Digest, *, artifact_types: tuple[str, ...] = ()) -> Referrers:
        """[REFAPI-1] What in ``repository`` refers to the manifest ``digest``.

        The referrers API (paginated, filtered to ``artifact_types`` when given), else the
        fallback tag's index; :attr:`Referrers.how` says which answered. See
        :func:`ocimerge.registry.referrers.referrers` for what it raises.
        """
        # imported here: that module builds on this class's public methods
        from ocimerge.registry.referrers import referrers  # noqa: PLC0415

        return referrers(self, repository, digest, artifact_types=artifact_types)

    def tags(self, repository: str, *, limit: int | None = None) -> tuple[str, ...]:
        """[API-8] Every tag of ``repository``, following pagination until no new link.

        With ``limit``, paging stops once more than ``limit`` tags are known (the answer is
        then longer than ``limit``, not complete): for callers that give up past a size. It
        also bounds the pages to ``limit // TAGS_PAGE + 10``: a registry repeating tags under
        fresh ``next`` links gets no more requests than that (a :class:`RegistryError`).

        [SEC-8] A link already followed (the first page's included) ends the list, and more
        than ``MAX_TAG_PAGES`` pages is a :class:`RegistryError`: a registry cannot keep us
        paging forever. Each page must be a JSON object (strictly decoded).
        """
        build = self._request("GET", f"/v2/{repository}/tags/list", params={"n": str(TAGS_PAGE)})
        found: dict[str, None] = {}
        seen: set[str] = set()
        pages = MAX_TAG_PAGES if limit is None else min(MAX_TAG_PAGES, limit // TAGS_PAGE + 10)
        for _page in range(pages):
            response = self._send(Outgoing(build, "GET tags", f"list tags of {repository}"))
            seen.add(str(response.request.url))
            for tag in self._tag_page(response, repository):
                found.setdefault(tag)
            link = response.links.get("next", {}).get("url")
            following = str(response.request.url.join(link)) if link else None
            if following is None or following in seen or (limit is not None and len(found) > limit):
                return tuple(found)  # the last page, or a registry repeating itself
            build = self._request("GET", following)
        raise RegistryError(
            f"{self.host}: the tag list of {repository} runs past {pages} pages with {len(found)} tags known"
        )

    def _tag_page(self, response: httpx.Response, repository: str) -> list[str]:
        """The tags one page of a tag list names; a page that is not a JSON object is refused."""
        try:
            value = decode_server_json(response.content, where="tag list")
        except ValueError as exc:
            raise RegistryError(f"{self.host}: the tag list of {repository} is not JSON") from exc
        tags = value.get("tags") if isinstance(value, dict) else None
        return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _session_of(response: httpx.Response) -> UploadSession:
    """The upload session an answer to an upload ``POST`` opened [API-4][API-7]."""
    minimum = response.headers.get("oci-chunk-min-length") or ""
    return UploadSession(location_of(response), int(minimum) if minimum.isdigit() else None)


class RegistryPool:
    """[REMOTE-5] One :class:`Registry` per host for a whole run; close it at the end."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options or RegistryOptions()
        self._clients: dict[str, Registry] = {}

    def get(self, host: str) -> Registry:
        """The client for ``host``, made on first use."""
        client = self._clients.get(host)
        if client is None:
            client = self._clients[host] = Registry(host, self.options)
        return client

    def close(self) -> None:
        """Close every client made."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> RegistryPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
