"""Registry profiles and the flags over them ([PROFILE-1] .. [PROFILE-8]).

``profile_for`` and the option overrides are tested as tables. ``httpx.MockTransport`` stands
in for what no local registry does: a mount refused with 401/403/404 (Harbor's 401,
goharbor/harbor#17097), Google Artifact Registry's missing chunked upload, GHCR's 4 MiB chunk
cap and ECR's untrusted ``Range``. The real protocol is tested against Distribution in
test_push.py and test_faults.py.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import httpx
import pytest

from ocimerge.content import Blob
from ocimerge.errors import RegistryError, RequestTooLargeError
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.registry.api import Mounted, Registry, RegistryOptions
from ocimerge.registry.credentials import Credentials
from ocimerge.registry.profiles import DOCKER_HUB, ECR, GAR, GENERIC, GHCR, QUAY, Profile, profile_for
from ocimerge.registry.transport import RetryPolicy
from ocimerge.registry.upload import DEFAULT_CHUNK, UploadSession

MIB = 1024 * 1024
FAST = RetryPolicy(attempts=3, base_delay=0, random=lambda: 0.0)
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("ghcr.io", GHCR),
        ("GHCR.IO", GHCR),
        ("ghcr.io:443", GHCR),
        ("ghcr.io.", GHCR),
        ("europe-west1-docker.pkg.dev", GAR),
        ("us-docker.pkg.dev:443", GAR),
        ("gcr.io", GAR),
        ("eu.gcr.io", GAR),
        ("Asia.GCR.io", GAR),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", ECR),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com:443", ECR),
        ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", ECR),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", ECR),
        ("docker.io", DOCKER_HUB),
        ("registry-1.docker.io", DOCKER_HUB),
        ("index.docker.io", DOCKER_HUB),
        ("quay.io", QUAY),
        ("harbor.example", GENERIC),
        ("localhost:5000", GENERIC),
        ("[::1]:5000", GENERIC),
        ("127.0.0.1:5000", GENERIC),
        # look-alikes are not the family
        ("ghcr.io.evil.example", GENERIC),
        ("notgcr.io", GENERIC),
        ("docker.pkg.dev", GENERIC),
        ("dkr.ecr.eu-west-1.amazonaws.com", GENERIC),
        ("quay.io.example", GENERIC),
    ],
)
def test_profile_for_picks_the_family_by_host(host: str, expected: Profile) -> None:
    assert profile_for(host) == expected


def test_profiles_hold_the_cited_facts() -> None:
    assert (GHCR.max_chunk, GHCR.chunked) == (4 * MIB, True)  # [PROFILE-1]
    assert (GAR.chunked, GAR.max_chunk) == (False, None)  # [PROFILE-2]
    assert (ECR.trusts_range, ECR.mounts) == (False, True)  # [PROFILE-3]
    # [PROFILE-4][PROFILE-5][PROFILE-7] the spec's behaviour, under their own names
    for profile in (DOCKER_HUB, QUAY, GENERIC):
        assert (profile.max_chunk, profile.chunked, profile.mounts, profile.trusts_range) == (None, True, True, True)
        assert profile.chunked_threshold == 64 * MIB  # [RESUME-3] chunks, so an upload can be continued


def test_flags_choose_within_the_profile() -> None:
    """[PROFILE-8] chunk size capped by the profile's max chunk and the request limit."""
    assert RegistryOptions().chunking_for(GHCR).size == 4 * MIB
    assert RegistryOptions(chunk_size=16 * MIB).chunking_for(GHCR).size == 4 * MIB
    assert RegistryOptions(chunk_size=1 * MIB).chunking_for(GHCR).size == 1 * MIB
    assert RegistryOptions(max_request_size=2 * MIB).chunking_for(GHCR).size == 2 * MIB
    assert RegistryOptions().chunking_for(GENERIC).size == DEFAULT_CHUNK
    assert RegistryOptions(max_request_size=5 * MIB).chunking_for(GENERIC).max_request == 5 * MIB
    # the threshold: the profile's unless set
    assert RegistryOptions().chunking_for(GENERIC).threshold == GENERIC.chunked_threshold
    assert RegistryOptions(chunked_threshold=10).chunking_for(GENERIC).threshold == 10
    # no chunks where there are none, whatever the flags
    rule = RegistryOptions(chunk_size=MIB).chunking_for(GAR)
    assert (rule.supported, rule.registry) == (False, "Google Artifact Registry")
    assert RegistryOptions().chunking_for(ECR).trusts_range is False
    assert RegistryOptions(mounts=False).mounts_for(GENERIC) is False
    assert RegistryOptions().mounts_for(GENERIC) is True


def blob_of(data: bytes) -> Blob:
    return Blob.from_bytes(Descriptor("application/octet-stream", Digest.of(data), len(data)), data, "test blob")


class Uploads:
    """An in-memory upload endpoint: POST opens a session, PATCH appends, PUT closes."""

    ROUTE = re.compile(r"/v2/(?P<name>.+?)/blobs/uploads/(?P<id>.*)")

    def __init__(self) -> None:
        self.sessions: dict[str, bytes] = {}
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.log: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append(request)
        if request.url.path == "/v2/":
            return httpx.Response(200)
        match = self.ROUTE.fullmatch(request.url.path)
        assert match is not None, request.url
        name, upload = match["name"], match["id"] or uuid.uuid4().hex[:8]
        if request.method == "GET":
            end = max(len(self.sessions.get(upload, b"")) - 1, 0)
            return httpx.Response(204, headers={"Range": f"0-{end}", "Location": request.url.path})
        self.sessions[upload] = self.sessions.get(upload, b"") + request.read()
        if request.method == "PUT":
            data = self.sessions.pop(upload)
            assert str(Digest.of(data)) == request.url.params["digest"]
            self.blobs[(name, request.url.params["digest"])] = data
            return httpx.Response(201)
        return httpx.Response(202, headers={"Location": f"/v2/{name}/blobs/uploads/{upload}"})

    def methods(self) -> list[str]:
        return [r.method for r in self.log if r.url.path != "/v2/"]


def client(host: str, handler: Handler, **options: object) -> Registry:
    """A client of ``host`` served by ``handler``, retrying fast; ``options`` are RegistryOptions'."""
    options.setdefault("retry", FAST)
    return Registry(
        host,
        RegistryOptions(**options),  # type: ignore[arg-type]
        credentials=Credentials("test"),
        sleep=lambda _seconds: None,
        transport=httpx.MockTransport(handler),
    )


def refusing(status: int, uploads: Uploads) -> Handler:
    """A registry that answers every mount with ``status`` and serves plain uploads."""

    def handle(request: httpx.Request) -> httpx.Response:
        if "mount" in request.url.params:
            uploads.log.append(request)
            return httpx.Response(status, json={"errors": [{"code": "UNAUTHORIZED", "message": "project not found"}]})
        return uploads(request)

    return handle


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_refused_mount_falls_back_to_an_upload(status: int) -> None:
    """[PROFILE-6] 401 (Harbor), 403, 404 on the mount POST: a plain session, then the upload."""
    uploads = Uploads()
    data = b"mount me" * 100
    with client("harbor.example", refusing(status, uploads)) as registry:
        started = registry.start_upload("library/app", mount=Digest.of(data), source="team/missing")
        assert isinstance(started, UploadSession)
        registry.upload("library/app", blob_of(data), started)
        assert started.refused == status
        assert registry.requests["POST mount"] == 1
        assert registry.requests["POST upload"] == 1
    assert uploads.blobs[("library/app", str(Digest.of(data)))] == data
    assert uploads.methods() == ["POST", "POST", "PUT"]
    assert "mount" not in uploads.log[-2].url.params


def test_a_mount_failing_otherwise_still_fails() -> None:
    """Only the refusals fall back: a 400 on a mount is the registry's error."""
    uploads = Uploads()
    with client("harbor.example", refusing(400, uploads)) as registry, pytest.raises(RegistryError):
        registry.start_upload("library/app", mount=Digest.of(b"x"), source="team/app")


def test_a_202_mount_is_the_session_and_a_201_a_mount() -> None:
    """[API-6] unchanged: one POST either way."""
    uploads = Uploads()
    with client("reg.example", uploads) as registry:
        started = registry.start_upload("a", mount=Digest.of(b"x"), source="b")
        assert isinstance(started, UploadSession)
        assert started.refused == 202

    def mounted(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201) if "mount" in request.url.params else uploads(request)

    with client("reg.example", mounted) as registry:
        assert registry.start_upload("a", mount=Digest.of(b"x"), source="b") == Mounted(Digest.of(b"x"))


def test_mounts_off_never_asks_for_one() -> None:
    uploads = Uploads()
    with client("reg.example", uploads, mounts=False) as registry:
        started = registry.start_upload("a", mount=Digest.of(b"x"), source="b")
        assert isinstance(started, UploadSession)
        assert registry.requests.get("POST mount") is None
    assert all("mount" not in r.url.params for r in uploads.log)


def test_gar_sends_one_put_whatever_the_flags() -> None:
    """[PROFILE-2] no PATCH, even with a chunk size and a blob over the threshold."""
    uploads = Uploads()
    data = b"g" * 50_000
    with client("europe-west1-docker.pkg.dev", uploads, chunk_size=1000, chunked_threshold=10) as registry:
        registry.upload("p/r/app", blob_of(data))
    assert uploads.methods() == ["POST", "PUT"]
    assert uploads.blobs[("p/r/app", str(Digest.of(data)))] == data


def test_a_413_on_gar_is_final_and_names_the_registry_and_size() -> None:
    """[PROFILE-2] a 413 cannot be answered with chunks: one PUT, then a clear error."""
    uploads = Uploads()

    def too_large(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            uploads.log.append(request)
            return httpx.Response(413)
        return uploads(request)

    data = b"big" * 10_000
    with client("us-docker.pkg.dev", too_large) as registry, pytest.raises(RequestTooLargeError) as caught:
        registry.upload("p/r/app", blob_of(data))
    message = str(caught.value)
    assert message.startswith("us-docker.pkg.dev: ")
    assert f"({len(data)} bytes)" in message
    assert "Google Artifact Registry takes no chunked uploads" in message
    assert caught.value.status == 413
    assert uploads.methods() == ["POST", "PUT"]  # no chunked retry, no new session


def test_ghcr_chunks_never_exceed_4_mib() -> None:
    """[PROFILE-1] a chunk size over 4 MiB is capped; so is the default for a blob over the threshold."""
    data = bytes(range(256)) * (41 * 1024)  # 10.25 MiB
    for options in ({"chunk_size": 16 * MIB}, {"chunked_threshold": MIB}):
        uploads = Uploads()
        with client("ghcr.io", uploads, **options) as registry:
            registry.upload("team/app", blob_of(data))
        patches = [r for r in uploads.log if r.method == "PATCH"]
        sizes = [int(r.headers["content-length"]) for r in patches]
        if "chunk_size" in options:  # a chunk size given is kept, capped
            assert sizes == [4 * MIB, 4 * MIB, len(data) - 8 * MIB]
        else:  # [RESUME-4] paced to the link: whatever the pace, never over the cap
            assert max(sizes) <= 4 * MIB
            assert sum(sizes) == len(data)
        assert all(len(r.content) <= 4 * MIB for r in patches)
        assert uploads.blobs[("team/app", str(Digest.of(data)))] == data


def test_ghcr_small_blobs_stay_monolithic() -> None:
    """The cap is on chunks: a blob under the threshold is still one PUT (no extra requests)."""
    uploads = Uploads()
    with client("ghcr.io", uploads) as registry:
        registry.upload("team/app", blob_of(b"s" * (5 * MIB)))
    assert uploads.methods() == ["POST", "PUT"]


def test_a_known_request_limit_chunks_from_the_start() -> None:
    """[PROFILE-8] max_request_size: no 413 needed to learn it."""
    uploads = Uploads()
    data = b"r" * 5000
    with client("reg.example", uploads, max_request_size=2000) as registry:
        registry.upload("a", blob_of(data))
        registry.upload("a", blob_of(b"small"))  # under the limit: one PUT
    sizes = [(r.method, r.headers.get("content-length")) for r in uploads.log if r.method in ("PATCH", "PUT")]
    assert sizes == [("PATCH", "2000"), ("PATCH", "2000"), ("PATCH", "1000"), ("PUT", "0"), ("PUT", "5")]


@pytest.mark.parametrize("chunked", [True, False])
def test_ecr_restarts_a_blob_instead_of_trusting_its_range(chunked: bool) -> None:
    """[PROFILE-3] a failed blob request starts a new session; no GET of the old one."""
    uploads = Uploads()
    lose = {"left": 1}
    method = "PATCH" if chunked else "PUT"

    def resets(request: httpx.Request) -> httpx.Response:
        if request.method == method and request.headers.get("content-length") != "0" and lose["left"]:
            lose["left"] -= 1
            uploads.log.append(request)
            raise httpx.ReadError("connection reset", request=request)
        return uploads(request)

    data = b"e" * 5000
    options = {"chunk_size": 3000} if chunked else {}
    with client("123456789012.dkr.ecr.eu-west-1.amazonaws.com", resets, **options) as registry:
        registry.upload("app", blob_of(data))
    assert "GET" not in uploads.methods()
    assert uploads.methods().count("POST") == 2
    assert uploads.blobs[("app", str(Digest.of(data)))] == data


def test_a_docker_hub_429_that_is_not_json_is_retried() -> None:
    """[PROFILE-4] 'Too Many Requests (HAP429)' as plain text: the status speaks, the request repeats."""
    answers = iter([httpx.Response(429, text="Too Many Requests (HAP429)"), httpx.Response(404)])

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200) if request.url.path == "/v2/" else next(answers)

    with client("docker.io", handle) as registry:
        assert registry.blob_exists("library/alpine", Digest.of(b"x")) is None
    answers = iter([httpx.Response(429, text="Too Many Requests (HAP429)")])
    with (
        client("docker.io", handle, retry=RetryPolicy(attempts=1)) as registry,
        pytest.raises(RegistryError, match="429 Too Many Requests") as caught,
    ):
        registry.blob_exists("library/alpine", Digest.of(b"x"))
    assert caught.value.retryable
