"""``ocimerge doctor``: what a registry does, found by asking it ([DOCTOR-1] .. [DOCTOR-7]).

[DOCTOR-1] :func:`diagnose` runs a fixed list of probes against one :class:`Registry` and
returns a :class:`DoctorReport`: one :class:`Check` per probe (``yes``, ``no``, ``unknown``
or ``skipped``, a one-line detail, and a value where there is one). A probe that fails is an
outcome with its reason, never an exception; only a registry that cannot be reached at all
(the first ``GET /v2/``) raises.
[DOCTOR-2] Writes go only to the scratch repository (``REPOSITORY`` if given, else
``ocimerge-doctor/<random>``) and its mount target ``<scratch>-mount``, both named in the
report; every blob, manifest and tag written is unique to the run (random bytes, a labelled
config, a ``ocimerge-doctor-<random>`` tag) and is deleted afterwards where deletion works.
What could not be deleted is listed in the notes. ``read_only`` sends only GET and HEAD to
the registry (and a GET to its token service): the write probes are ``skipped``.
[DOCTOR-3] The auth probes read the challenge of a ``GET /v2/`` sent with no credentials at
all. Credentials go only to the token realm that challenge announced, never to a plain-HTTP
realm on another machine unless ``--plain-http`` was given [TOKEN-4]; no token, password or
answer body from the token service enters the report.
[DOCTOR-4] Distribution answers a DELETE with 405 ``UNSUPPORTED`` when deletion is disabled;
that is ``no``, not an error. A registry without the referrers API answers 404.
[DOCTOR-5] The request-size probe sends ``PATCH`` bodies into one upload session, doubling
from 1 MiB up to ``max_probe_body`` (64 MiB), and stops at the first 413: the largest body
accepted is a power-of-two step at most the limit. The session is cancelled afterwards.
[DOCTOR-6] The report names the built-in profile that applies to the host
(:func:`~ocimerge.registry.profiles.profile_for`) and lists where the findings disagree
with it (chunked uploads, the chunk or request limit, mounts).
[DOCTOR-7] ``to_json()`` has stable camelCase keys; check names are stable identifiers.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import httpx

from ocimerge.content import Blob
from ocimerge.errors import AuthError, OcimergeError, RegistryError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import encode_json
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.reference import Reference
from ocimerge.registry.api import MANIFEST_ACCEPT, Registry
from ocimerge.registry.challenge import Challenge, Scope, parse_challenges
from ocimerge.registry.credentials import Credentials
from ocimerge.registry.profiles import Profile, profile_for
from ocimerge.registry.responses import decode_server_json, read_capped, redact_url
from ocimerge.registry.transport import is_loopback, new_request, transport_error
from ocimerge.registry.upload import location_of

__all__ = ["CHECKS", "Check", "DoctorReport", "Outcome", "diagnose", "parse_target"]

MIB = 1024 * 1024
#: [DOCTOR-5] the largest PATCH body the request-size probe sends
MAX_PROBE_BODY = 64 * MIB
FIRST_PROBE_BODY = MIB
#: a token answer or /v2/ body is read at most this far
MAX_ANSWER = 64 * 1024
#: the largest OCI-Chunk-Min-Length the chunked probe honours (two chunks of it are sent)
MAX_MIN_CHUNK = 16 * MIB
SCRATCH_PREFIX = "ocimerge-doctor"

#: Every check, in report order, with its title for the table.
CHECKS: dict[str, str] = {
    "apiVersion": "API version",
    "authentication": "authentication",
    "tokenGet": "token endpoint: GET",
    "tokenPost": "token endpoint: OAuth2 POST",
    "anonymousPull": "anonymous pull",
    "monolithicUpload": "monolithic upload",
    "chunkedUpload": "chunked upload",
    "crossRepositoryMount": "cross-repository mount",
    "requestLimit": "request size limit (413)",
    "ociIndex": "OCI index",
    "dockerList": "Docker manifest list",
    "referrers": "referrers API",
    "tagDeletion": "tag deletion",
    "manifestDeletion": "manifest deletion",
}


class Outcome(enum.Enum):
    """What a probe found: the registry does it, does not, could not tell, or was not asked."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


@attrs.frozen
class Check:
    """One probe's finding: ``name`` (a key of :data:`CHECKS`), its outcome, a one-line detail.

    ``value`` is what was measured, where there is something: the API version, the auth
    scheme, the announced minimum chunk length, the largest request body accepted.

    >>> c = Check("requestLimit", Outcome.YES, "413 above 4 MiB", 4194304)
    >>> c.title, c.to_json()["outcome"], c.to_json()["value"]
    ('request size limit (413)', 'yes', 4194304)
    """

    name: str = attrs.field(validator=attrs.validators.in_(CHECKS))
    outcome: Outcome
    detail: str = ""
    value: int | str | None = None

    @property
    def title(self) -> str:
        """The check's name for people (the table's first column)."""
        return CHECKS[self.name]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "outcome": self.outcome.value, "detail": self.detail, "value": self.value}


@attrs.frozen
class DoctorReport:
    """[DOCTOR-1] What :func:`diagnose` found on one registry.

    ``repositories`` are the scratch repositories written to (or, read-only, read from);
    ``profile`` the built-in profile's name; ``differences`` where the findings disagree
    with it [DOCTOR-6]; ``notes`` what the clean-up left behind, and why.

    >>> r = DoctorReport("127.0.0.1:5000", ("a",), False, "registry", (Check("referrers", Outcome.NO, "404"),))
    >>> r.check("referrers").outcome, sorted(r.to_json())
    (<Outcome.NO: 'no'>, ['checks', 'differences', 'notes', 'profile', 'readOnly', 'registry', 'repositories'])
    """

    registry: str
    repositories: tuple[str, ...]
    read_only: bool
    profile: str
    checks: tuple[Check, ...]
    differences: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def check(self, name: str) -> Check:
        """The check called ``name``; KeyError when the report has none."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """[DOCTOR-7] The report as JSON values, with stable camelCase keys."""
        return {
            "registry": self.registry,
            "repositories": list(self.repositories),
            "readOnly": self.read_only,
            "profile": self.profile,
            "checks": [c.to_json() for c in self.checks],
            "differences": list(self.differences),
            "notes": list(self.notes),
        }


def parse_target(text: str) -> tuple[str, str | None]:
    """``REGISTRY[/REPOSITORY]`` as (host, repository or None); a bad repository is a UsageError.

    >>> parse_target("127.0.0.1:5000"), parse_target("ghcr.io/acme/scratch")
    (('127.0.0.1:5000', None), ('ghcr.io', 'acme/scratch'))
    """
    host, _, repository = text.removeprefix("docker://").partition("/")
    if not host or host.startswith(".") or any(c in host for c in "@ \t"):
        raise UsageError(f"invalid registry {text!r}: expected REGISTRY[/REPOSITORY], e.g. ghcr.io/acme/scratch")
    if not repository:
        return host, None
    # the reference grammar checks the repository; the host is set apart first, since a
    # registry without a dot (a bare "myhost") would otherwise read as a Docker Hub user
    reference = Reference.parse(f"localhost/{repository}", default_tag=None)
    if reference.tag or reference.digest:
        raise UsageError(f"invalid repository {repository!r}: doctor takes no tag or digest")
    return host, reference.repository


# -- plumbing --------------------------------------------------------------------------------


class _Filler:
    """A request body of ``size`` bytes, re-iterable (each attempt builds a fresh stream)."""

    def __init__(self, size: int, block: bytes) -> None:
        self.size = size
        self.block = block

    def __iter__(self) -> Iterator[bytes]:
        left = self.size
        while left > 0:
            piece = self.block[: min(left, len(self.block))]
            left -= len(piece)
            yield piece


def _one_line(exc: BaseException) -> str:
    """An error's message, on one line (the renderer escapes the rest)."""
    return " ".join(str(exc).split())


def _status_detail(response: httpx.Response) -> str:
    """``"404 NAME_UNKNOWN"``-like words for an answer: its status and first error code."""
    body = read_capped(response, MAX_ANSWER) or b""
    try:
        value = decode_server_json(body, where="error answer") if body else None
    except ValueError:
        value = None
    errors = value.get("errors") if isinstance(value, dict) else None
    code = errors[0].get("code") if isinstance(errors, list) and errors and isinstance(errors[0], dict) else None
    return f"{response.status_code} {code}" if isinstance(code, str) else str(response.status_code)


@attrs.define
class _Written:
    """What the probes wrote, for the clean-up: manifests in push order, tags, blobs by repository."""

    manifests: list[tuple[str, Digest]] = attrs.Factory(list)
    tags: list[tuple[str, str]] = attrs.Factory(list)
    blobs: list[tuple[str, Digest]] = attrs.Factory(list)


class _Doctor:
    """One run of the probes; each ``probe_*`` method returns its :class:`Check`."""

    def __init__(
        self,
        registry: Registry,
        repository: str | None,
        *,
        read_only: bool,
        max_probe_body: int,
        anonymous: Registry | None,
    ) -> None:
        self.registry = registry
        self.anonymous = anonymous
        self.suffix = secrets.token_hex(4)
        self.repo = repository or f"{SCRATCH_PREFIX}/{self.suffix}"
        self.mount_repo = f"{self.repo}-mount"
        self.tag = f"{SCRATCH_PREFIX}-{self.suffix}"
        self.read_only = read_only
        self.max_probe_body = max_probe_body
        self.written = _Written()
        self.bearer: Challenge | None = None
        self.layer: Descriptor | None = None  # a blob uploaded into the scratch repository
        self.config: Descriptor | None = None
        self.raw: dict[Digest, bytes] = {}  # the bytes of every document authored
        self.manifests: dict[str, Descriptor] = {}  # media type -> image manifest pushed
        self.indexes: dict[str, Descriptor] = {}  # media type -> index pushed (by digest)
        self.notes: list[str] = []

    # -- requests ----------------------------------------------------------------------------

    def send(self, method: str, path: str, what: str, **options: Any) -> httpx.Response:
        """One request through the registry's auth and request loop (``ok`` etc. in options)."""
        return self.registry.request(method, path, kind=f"{method} doctor", what=what, **options)

    def bare(self, request: httpx.Request, what: str) -> tuple[httpx.Response, bytes]:
        """Send ``request`` with no auth at all (httpx's ``auth=None`` for this one request)."""
        try:
            response = self.registry.client.send(request, auth=None, stream=True)
            return response, read_capped(response, MAX_ANSWER, registry=self.registry.host) or b""
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.registry.host, what) from exc

    def base_url(self) -> tuple[httpx.URL, httpx.Response | None]:
        """Where ``/v2/`` answers (the scheme the ping settled on), and its answer through the client."""
        try:
            response = self.send("GET", "/v2/", "API version check", ok=(401, 403))
        except OcimergeError:
            scheme = "http" if self.registry.options.tls.plain_http else "https"
            return httpx.URL(f"{scheme}://{self.registry.api_host}/v2/"), None
        return response.request.url.copy_with(query=None), response

    def start_session(self, repository: str, params: dict[str, str] | None = None) -> httpx.Response:
        """``POST /v2/<repository>/blobs/uploads/``; mounts pass ``params`` and accept refusals."""
        ok = (401, 403, 404) if params else ()
        return self.send(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            f"start an upload in {repository}",
            params=params,
            headers={"Content-Length": "0"},
            ok=ok,
        )

    def cancel(self, location: str) -> None:
        """Cancel an upload session; a registry that cannot is only noted."""
        try:
            self.send("DELETE", location, "cancel an upload session", ok=(404, 405), retry=False)
        except OcimergeError as exc:
            self.notes.append(f"an upload session stays open until the registry expires it: {_one_line(exc)}")

    @contextlib.contextmanager
    def cancelled_on_failure(self, location: str) -> Iterator[None]:
        """[DOCTOR-2] A probe's upload session is cancelled when the probe fails in it.

        It is addressed by its first ``Location``: Distribution cancels a session addressed with
        an outdated state as well (its stored size no longer matches that state's offset).
        """
        try:
            yield
        except OcimergeError:
            self.cancel(location)
            raise

    def put_blob(self, location: str, data: bytes, digest: Digest) -> httpx.Response:
        """Close an upload session with ``PUT <location>?digest=`` carrying ``data``."""
        return self.send(
            "PUT",
            str(httpx.URL(location).copy_add_param("digest", str(digest))),
            f"PUT blob {digest.short}",
            content=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        )

    def patch(self, location: str, body: bytes | _Filler, start: int, size: int, **options: Any) -> httpx.Response:
        """One ``PATCH`` of ``size`` bytes at ``start`` of an upload session [API-7]."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + size - 1}",
            "Content-Length": str(size),
        }
        return self.send("PATCH", location, f"PATCH {size} bytes", content=body, headers=headers, **options)

    def put_manifest(self, document: dict[str, Any] | Descriptor, reference: str | None = None) -> Descriptor:
        """PUT an authored document (canonical bytes [JSON-2]) by digest, or one pushed before by tag."""
        if isinstance(document, Descriptor):
            descriptor, raw = document, self.raw[document.digest]
        else:
            raw = encode_json(document)
            descriptor = Descriptor(document["mediaType"], Digest.of(raw), len(raw))
            self.raw[descriptor.digest] = raw
        self.send(
            "PUT",
            f"/v2/{self.repo}/manifests/{reference or descriptor.digest}",
            f"PUT {descriptor.media_type}",
            content=raw,
            headers={"Content-Type": descriptor.media_type},
        )
        if reference is None:
            self.written.manifests.append((self.repo, descriptor.digest))
        else:
            self.written.tags.append((self.repo, reference))
        return descriptor

    # -- read probes -------------------------------------------------------------------------

    def probe_api_version(self, answer: httpx.Response | None, bare: httpx.Response) -> Check:
        """``Docker-Distribution-API-Version`` of ``/v2/`` (through the client, else bare)."""
        for response in (answer, bare):
            version = response.headers.get("docker-distribution-api-version") if response is not None else None
            if version:
                return Check("apiVersion", Outcome.YES, f"/v2/ says {version}", version)
        return Check("apiVersion", Outcome.NO, f"/v2/ answered {bare.status_code} without an API version header")

    def probe_authentication(self, bare: httpx.Response) -> Check:
        """[DOCTOR-3] The scheme a bare ``GET /v2/`` is challenged with."""
        if bare.is_success:
            return Check("authentication", Outcome.NO, "/v2/ answers without credentials", "none")
        challenges = parse_challenges(bare.headers.get_list("www-authenticate"))
        if bare.status_code != 401 or not challenges:
            return Check("authentication", Outcome.UNKNOWN, f"/v2/ answered {bare.status_code} without a challenge")
        self.bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if self.bearer is not None:
            detail = f"Bearer, realm {self.bearer.get('realm')}, service {self.bearer.get('service')}"
            return Check("authentication", Outcome.YES, detail, "bearer")
        first = challenges[0]
        return Check("authentication", Outcome.YES, f"{first.scheme}, realm {first.get('realm')}", first.scheme)

    def realm(self) -> tuple[httpx.URL, bool]:
        """[DOCTOR-3][TOKEN-4] The announced realm, and whether credentials may go to it."""
        assert self.bearer is not None
        url = httpx.URL(self.bearer.get("realm") or "")
        plain_elsewhere = url.scheme != "https" and not is_loopback(url.netloc.decode())
        return url, not (plain_elsewhere and not self.registry.options.tls.plain_http)

    def credentials(self) -> Credentials | None:
        """The username and password the run has, if any (an identity token is not one)."""
        creds = self.registry.credentials
        return creds if creds is not None and creds.username and creds.password else None

    def token_params(self) -> list[tuple[str, str]]:
        service = self.bearer.get("service") if self.bearer is not None else None
        params = [("service", service)] if service else []
        return [*params, ("scope", str(Scope.repository(self.repo, "pull")))]

    def probe_token_get(self) -> Check:
        """[TOKEN-3] ``GET <realm>?service=&scope=``, with Basic credentials when there are any."""
        if self.bearer is None:
            return Check("tokenGet", Outcome.SKIPPED, "no Bearer challenge")
        url, may_send = self.realm()
        creds = self.credentials() if may_send else None
        params, headers = self.token_params(), {}
        if creds is not None:
            params.append(("account", creds.username or ""))
            basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        response, body = self.bare(new_request("GET", url, params=tuple(params), headers=headers), "token GET")
        who = f"with the credentials from {creds.source}" if creds else "anonymously"
        if creds is None and not may_send and self.credentials() is not None:
            who += " (credentials withheld: a plain-HTTP realm on another host)"
        if response.status_code == 200 and _has_token(body, "token", "access_token"):
            return Check("tokenGet", Outcome.YES, f"GET {redact_url(url)} issued a token {who}")
        return Check("tokenGet", Outcome.NO, f"GET {redact_url(url)} {who} answered {response.status_code}")

    def probe_token_post(self) -> Check:
        """[TOKEN-3] The OAuth2 ``password`` grant (POST); only with credentials, never read-only."""
        if self.bearer is None:
            return Check("tokenPost", Outcome.SKIPPED, "no Bearer challenge")
        if self.read_only:
            return Check("tokenPost", Outcome.SKIPPED, "--read-only: a POST is not sent")
        url, may_send = self.realm()
        creds = self.credentials()
        if creds is None or not may_send:
            why = "needs --username and --password-stdin" if creds is None else "the realm is plain HTTP elsewhere"
            return Check("tokenPost", Outcome.SKIPPED, f"the password grant {why}")
        form = {
            "grant_type": "password",
            "username": creds.username or "",
            "password": creds.password or "",
            "client_id": "ocimerge",
            **dict(self.token_params()),
        }
        response, body = self.bare(new_request("POST", url, data=form), "token POST")
        if response.status_code == 200 and _has_token(body, "access_token"):
            return Check("tokenPost", Outcome.YES, f"POST {redact_url(url)} (password grant) issued an access token")
        return Check(
            "tokenPost", Outcome.NO, f"POST {redact_url(url)} (password grant) answered {response.status_code}"
        )

    def anonymous_client(self) -> Registry:
        """A client of the same registry and TLS settings that holds no credentials."""
        options = attrs.evolve(self.registry.options, username=None, password=None)
        return Registry(self.registry.host, options, credentials=Credentials("anonymous probe"))

    def probe_anonymous_pull(self) -> Check:
        """A client with no credentials reads the scratch repository.

        It HEADs the OCI index pushed (by digest) when there is one, else lists the tags: a
        404 there is an answer to an authorised request (the repository is merely empty).
        """
        index = self.indexes.get(mt.OCI_INDEX)
        if index is not None:
            method, path, shown = "HEAD", f"/v2/{self.repo}/manifests/{index.digest}", f"the index {index.digest.short}"
        else:
            method, path = "GET", f"/v2/{self.repo}/tags/list"
            shown = path
        anonymous = self.anonymous or self.anonymous_client()
        try:
            response = anonymous.request(
                method,
                path,
                kind="anonymous",
                what="anonymous read",
                headers={"Accept": MANIFEST_ACCEPT},
                ok=(401, 403, 404),
            )
        except AuthError as exc:
            return Check(
                "anonymousPull", Outcome.NO, f"anonymous {method} {shown} refused ({exc.status or 'no token'})"
            )
        finally:
            if anonymous is not self.anonymous:
                anonymous.close()
        allowed = response.status_code == 200 or (response.status_code == 404 and index is None)
        detail = f"anonymous {method} {shown} answered {_status_detail(response)}"
        return Check("anonymousPull", Outcome.YES if allowed else Outcome.NO, detail)

    def probe_referrers(self) -> Check:
        """``GET /v2/<name>/referrers/<digest>``: an OCI index, or 404 where there is no such API."""
        digest = self.manifests[mt.OCI_MANIFEST].digest if mt.OCI_MANIFEST in self.manifests else _random_digest()
        response = self.send(
            "GET",
            f"/v2/{self.repo}/referrers/{digest}",
            "referrers",
            headers={"Accept": mt.OCI_INDEX},
            ok=(400, 404, 405),
        )
        served = (response.headers.get("content-type") or "").split(";")[0].strip()
        if response.status_code == 200 and served == mt.OCI_INDEX:
            return Check("referrers", Outcome.YES, "answered an OCI index")
        detail = _status_detail(response)
        if response.status_code == 404 and " " in detail:
            # an error code (NAME_UNKNOWN...) is the API's own answer for a repository it does not
            # know, as under --read-only with a scratch name: whether the API exists is not known
            return Check("referrers", Outcome.UNKNOWN, f"answered {detail}: {self.repo} may not exist here")
        return Check("referrers", Outcome.NO, f"answered {detail} ({served or 'no type'})")

    # -- write probes ------------------------------------------------------------------------

    def probe_monolithic(self) -> Check:
        """POST, then one ``PUT ?digest=`` with the whole blob."""
        data = os.urandom(512)
        digest = Digest.of(data)
        location = location_of(self.start_session(self.repo))
        with self.cancelled_on_failure(location):
            self.put_blob(location, data, digest)
        self.written.blobs.append((self.repo, digest))
        self.layer = Descriptor(mt.OCI_LAYER_TAR, digest, len(data))
        return Check("monolithicUpload", Outcome.YES, "POST, then PUT ?digest= with the whole blob: 201")

    def probe_chunked(self) -> Check:
        """POST, two PATCHes, an empty ``PUT ?digest=`` [API-7]; reports ``OCI-Chunk-Min-Length``."""
        started = self.start_session(self.repo)
        announced = started.headers.get("oci-chunk-min-length") or ""
        minimum = int(announced) if announced.isdigit() else None
        piece = min(max(minimum or 0, 1024), MAX_MIN_CHUNK)
        data = os.urandom(2 * piece)
        location = location_of(started)
        digest = Digest.of(data)
        with self.cancelled_on_failure(location):
            for start in (0, piece):
                location = location_of(self.patch(location, data[start : start + piece], start, piece))
            self.put_blob(location, b"", digest)
        self.written.blobs.append((self.repo, digest))
        if self.layer is None:
            self.layer = Descriptor(mt.OCI_LAYER_TAR, digest, len(data))
        said = f"OCI-Chunk-Min-Length {minimum}" if minimum is not None else "no OCI-Chunk-Min-Length announced"
        return Check("chunkedUpload", Outcome.YES, f"POST, 2 PATCHes of {_size(piece)}, PUT: 201; {said}", minimum)

    def probe_mount(self) -> Check:
        """``POST ?mount=&from=`` of a blob of the scratch repository into ``<scratch>-mount``."""
        if self.layer is None:
            return Check("crossRepositoryMount", Outcome.SKIPPED, "no blob could be uploaded to mount")
        digest = self.layer.digest
        response = self.start_session(self.mount_repo, {"mount": str(digest), "from": self.repo})
        if response.status_code == 201:
            self.written.blobs.append((self.mount_repo, digest))
            return Check("crossRepositoryMount", Outcome.YES, f"mounted into {self.mount_repo}: 201")
        if response.status_code == 202:
            self.cancel(location_of(response))
            return Check("crossRepositoryMount", Outcome.NO, "answered 202: an upload session instead of a mount")
        return Check("crossRepositoryMount", Outcome.NO, f"refused: {_status_detail(response)}")

    def probe_request_limit(self) -> Check:
        """[DOCTOR-5] PATCH bodies doubling from 1 MiB into one session, until a 413 or the cap."""
        location = location_of(self.start_session(self.repo))
        block, offset, size, largest = os.urandom(MIB), 0, FIRST_PROBE_BODY, 0
        try:
            while size <= self.max_probe_body:
                try:
                    response = self.patch(location, _Filler(size, block), offset, size, ok=(413,), retry=False)
                except OcimergeError as exc:
                    return self.limit_failed(largest, size, exc)
                if response.status_code == 413:
                    detail = f"413 for {_size(size)}; the largest body accepted was {_size(largest)}"
                    return Check("requestLimit", Outcome.YES, detail, largest)
                location, offset, largest, size = location_of(response), offset + size, size, size * 2
        finally:
            self.cancel(location)
        return Check("requestLimit", Outcome.NO, f"no 413 for bodies up to {_size(largest)}", largest)

    def limit_failed(self, largest: int, size: int, exc: OcimergeError) -> Check:
        """A PATCH that failed otherwise than with a 413: the limit is not known past ``largest``."""
        detail = f"{size} bytes failed after {largest} were accepted: {_one_line(exc)}"
        return Check("requestLimit", Outcome.UNKNOWN, detail, largest or None)

    def push_config(self) -> Descriptor:
        """Upload a config unique to this run (its label is the run's suffix)."""
        assert self.layer is not None
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.ocimerge.doctor": self.suffix}},
            "rootfs": {"type": "layers", "diff_ids": [str(self.layer.digest)]},
        }
        raw = encode_json(config)
        descriptor = Descriptor(mt.OCI_CONFIG, Digest.of(raw), len(raw))
        self.registry.upload(self.repo, Blob.from_bytes(descriptor, raw, "doctor config"))
        self.written.blobs.append((self.repo, descriptor.digest))
        return descriptor

    def image(self, config: Descriptor, *, docker: bool) -> Descriptor:
        """PUT an image manifest (OCI or Docker) of the uploaded config and blob, by digest."""
        assert self.layer is not None
        kinds = (
            (mt.DOCKER_MANIFEST, mt.DOCKER_CONFIG, mt.DOCKER_LAYER_TAR)
            if docker
            else (
                mt.OCI_MANIFEST,
                mt.OCI_CONFIG,
                mt.OCI_LAYER_TAR,
            )
        )
        document = {
            "schemaVersion": 2,
            "mediaType": kinds[0],
            "config": attrs.evolve(config, media_type=kinds[1]).to_json(),
            "layers": [attrs.evolve(self.layer, media_type=kinds[2]).to_json()],
        }
        descriptor = self.put_manifest(document)
        self.manifests[kinds[0]] = descriptor
        return descriptor

    def probe_index(self, name: str, index_type: str, child_type: str) -> Check:
        """PUT an image manifest and an index of ``index_type`` holding it, both by digest."""
        if self.layer is None:
            return Check(name, Outcome.SKIPPED, "no blob could be uploaded to build an image from")
        if self.config is None:
            self.config = self.push_config()
        child = self.image(self.config, docker=child_type == mt.DOCKER_MANIFEST)
        entry = {**child.to_json(), "platform": {"architecture": "amd64", "os": "linux"}}
        self.indexes[index_type] = self.put_manifest(
            {"schemaVersion": 2, "mediaType": index_type, "manifests": [entry]}
        )
        return Check(name, Outcome.YES, "PUT by digest, with its image manifest: 201")

    def probe_tag_deletion(self) -> Check:
        """Tag the OCI index, then ``DELETE /v2/<name>/manifests/<tag>`` [DOCTOR-4]."""
        index = self.indexes.get(mt.OCI_INDEX)
        if index is None:
            return Check("tagDeletion", Outcome.SKIPPED, "no index could be pushed to tag")
        self.put_manifest(index, self.tag)
        response = self.send(
            "DELETE", f"/v2/{self.repo}/manifests/{self.tag}", "delete a tag", ok=(400, 404, 405), retry=False
        )
        if response.is_success:
            self.written.tags.remove((self.repo, self.tag))
            return Check("tagDeletion", Outcome.YES, f"DELETE of tag {self.tag}: {response.status_code}")
        return Check("tagDeletion", Outcome.NO, f"DELETE of tag {self.tag} answered {_status_detail(response)}")

    def probe_manifest_deletion(self) -> Check:
        """``DELETE /v2/<name>/manifests/<digest>`` of the last document pushed [DOCTOR-4]."""
        if not self.written.manifests:
            return Check("manifestDeletion", Outcome.SKIPPED, "no manifest could be pushed to delete")
        repository, digest = self.written.manifests[-1]
        response = self.delete(f"/v2/{repository}/manifests/{digest}", "delete a manifest")
        if response.is_success:
            self.written.manifests.pop()
            return Check("manifestDeletion", Outcome.YES, f"DELETE by digest: {response.status_code}")
        return Check("manifestDeletion", Outcome.NO, f"DELETE by digest answered {_status_detail(response)}")

    def delete(self, path: str, what: str) -> httpx.Response:
        return self.send("DELETE", path, what, ok=(400, 404, 405), retry=False)

    def clean_up(self) -> None:
        """[DOCTOR-2] Delete what was written, parents first; note what is left and why.

        Manifests go by digest first: Distribution removes the tags of a manifest deleted by
        digest, and older versions refuse a DELETE by tag. A tag still there afterwards is
        deleted by name.
        """
        left: list[str] = []
        reasons: list[str] = []
        for repository, digest in reversed(self.written.manifests):
            self.remove(f"/v2/{repository}/manifests/{digest}", f"manifest {digest.short}", left, reasons)
        for repository, digest in reversed(self.written.blobs):
            self.remove(f"/v2/{repository}/blobs/{digest}", f"blob {digest.short} in {repository}", left, reasons)
        for repository, tag in self.written.tags:
            if self.tag_exists(repository, tag):
                self.remove(f"/v2/{repository}/manifests/{tag}", f"tag {tag}", left, reasons)
        if left:
            self.notes.append(f"left in {self.repo}: {', '.join(left)}; the registry said: {'; '.join(reasons)}")

    def tag_exists(self, repository: str, tag: str) -> bool:
        """Whether ``tag`` still names a manifest (a HEAD; True when the registry cannot say)."""
        try:
            headers = {"Accept": MANIFEST_ACCEPT}  # without it Distribution hides an index (404)
            response = self.send("HEAD", f"/v2/{repository}/manifests/{tag}", "HEAD a tag", headers=headers, ok=(404,))
        except OcimergeError:
            return True
        return response.status_code != 404

    def remove(self, path: str, what: str, left: list[str], reasons: list[str]) -> None:
        """DELETE ``path``; when it stays, ``what`` joins ``left`` and a new reason ``reasons``."""
        try:
            response = self.delete(path, f"delete {what}")
        except OcimergeError as exc:
            reason = _one_line(exc)
        else:
            if response.is_success or response.status_code == 404:
                return
            reason = _status_detail(response)
        left.append(what)
        if reason not in reasons:
            reasons.append(reason)


def _has_token(body: bytes, *keys: str) -> bool:
    """Whether a token answer holds a non-empty string under one of ``keys`` (never shown)."""
    try:
        value = decode_server_json(body, where="token answer")
    except ValueError:
        return False
    return isinstance(value, dict) and any(isinstance(value.get(k), str) and value.get(k) for k in keys)


def _random_digest() -> Digest:
    return Digest.of(os.urandom(32))


def _size(n: int) -> str:
    """Whole MiB as ``4 MiB``, anything else in bytes."""
    return f"{n // MIB} MiB" if n and n % MIB == 0 else f"{n} bytes"


#: The probes that write (all skipped with ``read_only``), in the order they run.
WRITE_PROBES = (
    "monolithicUpload",
    "chunkedUpload",
    "crossRepositoryMount",
    "requestLimit",
    "ociIndex",
    "dockerList",
    "tagDeletion",
    "manifestDeletion",
)


def _guarded(name: str, probe: Callable[[], Check]) -> Check:
    """[DOCTOR-1] ``probe()``, or the outcome its failure means: a refusal is ``no``, else ``unknown``.

    A registry's 4xx answer to a well-formed request (MANIFEST_INVALID, UNSUPPORTED…) says it
    does not do that; a denied action, a 5xx or a lost connection says nothing about it.
    """
    try:
        return probe()
    except AuthError as exc:
        return Check(name, Outcome.UNKNOWN, f"not allowed to try: {_one_line(exc)}")
    except RegistryError as exc:
        refused = exc.status is not None and 400 <= exc.status < 500 and not exc.retryable
        return Check(name, Outcome.NO if refused else Outcome.UNKNOWN, _one_line(exc))
    except OcimergeError as exc:
        return Check(name, Outcome.UNKNOWN, _one_line(exc))


def _differences(profile: Profile, found: dict[str, Check]) -> tuple[str, ...]:
    """[DOCTOR-6] Where the findings disagree with the profile ocimerge would use."""
    out: list[str] = []
    named = f"the {profile.name!r} profile"
    chunked = found["chunkedUpload"].outcome
    if profile.chunked and chunked is Outcome.NO:
        out.append(f"{named} uploads large blobs in chunks, but a chunked upload was refused")
    if not profile.chunked and chunked is Outcome.YES:
        out.append(f"{named} never uploads in chunks, but a chunked upload worked")
    out.extend(_limit_differences(named, profile, found["requestLimit"]))
    mount = found["crossRepositoryMount"].outcome
    if profile.mounts and mount is Outcome.NO:
        out.append(f"{named} asks for cross-repository mounts, but none was made (--no-mount saves the request)")
    if not profile.mounts and mount is Outcome.YES:
        out.append(f"{named} asks for no cross-repository mounts, but a mount worked")
    return tuple(out)


def _limit_differences(named: str, profile: Profile, limit: Check) -> list[str]:
    """[DOCTOR-6] The request limit found against the profile's largest chunk."""
    if limit.outcome is Outcome.YES and not limit.value:  # the first body was refused already
        return [
            f"a body of {_size(FIRST_PROBE_BODY)} was refused (413) but {named} knows no such limit: "
            "pass a --max-request-size below it"
        ]
    if not isinstance(limit.value, int):
        return []
    if limit.outcome is Outcome.YES and (profile.max_chunk is None or limit.value < profile.max_chunk):
        allowed = f"chunks up to {_size(profile.max_chunk)}" if profile.max_chunk else "no limit"
        return [
            f"a body over {_size(limit.value)} was refused (413) but {named} knows {allowed}: "
            f"pass --max-request-size {_size(limit.value).replace(' MiB', 'M').replace(' bytes', '')}"
        ]
    if limit.outcome is Outcome.NO and profile.max_chunk is not None and limit.value > profile.max_chunk:
        return [f"{named} caps chunks at {_size(profile.max_chunk)}, but {_size(limit.value)} was accepted"]
    return []


def _run(doctor: _Doctor) -> dict[str, Check]:
    """Every probe, in an order where each finds what it needs; the clean-up always runs."""
    found: dict[str, Check] = {}

    def record(name: str, probe: Callable[[], Check]) -> None:
        found[name] = _guarded(name, probe)

    url, answer = doctor.base_url()
    try:
        bare, _ = doctor.bare(doctor.registry.client.build_request("GET", url), "GET /v2/ without credentials")
    except OcimergeError as exc:
        for name in ("apiVersion", "authentication", "tokenGet", "tokenPost"):
            found[name] = Check(name, Outcome.UNKNOWN, _one_line(exc))
    else:
        record("apiVersion", lambda: doctor.probe_api_version(answer, bare))
        record("authentication", lambda: doctor.probe_authentication(bare))
        record("tokenGet", doctor.probe_token_get)
        record("tokenPost", doctor.probe_token_post)
    if doctor.read_only:
        for name in WRITE_PROBES:
            found[name] = Check(name, Outcome.SKIPPED, "--read-only: nothing is written")
        record("anonymousPull", doctor.probe_anonymous_pull)
        record("referrers", doctor.probe_referrers)
        return found
    try:
        record("monolithicUpload", doctor.probe_monolithic)
        record("chunkedUpload", doctor.probe_chunked)
        record("crossRepositoryMount", doctor.probe_mount)
        record("requestLimit", doctor.probe_request_limit)
        record("ociIndex", lambda: doctor.probe_index("ociIndex", mt.OCI_INDEX, mt.OCI_MANIFEST))
        record("dockerList", lambda: doctor.probe_index("dockerList", mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST))
        record("anonymousPull", doctor.probe_anonymous_pull)
        record("referrers", doctor.probe_referrers)
        # Distribution wants the delete action for a DELETE: asked for only now, so a token
        # service that refuses to hear of it fails the deletion probes alone
        doctor.registry.want(*(Scope.repository(r, "delete", "pull", "push") for r in (doctor.repo, doctor.mount_repo)))
        record("tagDeletion", doctor.probe_tag_deletion)
        record("manifestDeletion", doctor.probe_manifest_deletion)
    finally:
        doctor.clean_up()
    return found


def diagnose(
    registry: Registry,
    repository: str | None = None,
    *,
    read_only: bool = False,
    max_probe_body: int = MAX_PROBE_BODY,
    anonymous: Registry | None = None,
) -> DoctorReport:
    """[DOCTOR-1] Probe ``registry`` and report what it does; see the module docstring.

    ``repository`` is the scratch repository to write into (default
    ``ocimerge-doctor/<random>``); ``read_only`` sends no write [DOCTOR-2];
    ``max_probe_body`` caps the request-size probe [DOCTOR-5]; ``anonymous`` is the client
    without credentials for the anonymous-pull probe (default: one made and closed here).
    Raises only when the registry cannot be reached at all (its first ``GET /v2/``).
    """
    registry.ping()
    doctor = _Doctor(registry, repository, read_only=read_only, max_probe_body=max_probe_body, anonymous=anonymous)
    found = _run(doctor)
    profile = profile_for(registry.host)
    return DoctorReport(
        registry=registry.host,
        repositories=(doctor.repo,) if read_only else (doctor.repo, doctor.mount_repo),
        read_only=read_only,
        profile=profile.name,
        checks=tuple(found[name] for name in CHECKS),
        differences=_differences(profile, found),
        notes=tuple(doctor.notes),
    )
