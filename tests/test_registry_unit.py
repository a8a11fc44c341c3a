"""Registry client edge cases a real registry will not produce on demand.

Pure parts (challenges, scopes, credentials, retry policy) are tested as tables. Where HTTP is
involved, ``httpx.MockTransport`` stands in for edge cases only: token expiry and renewal,
cross-origin redirects, Retry-After, a 413 on a monolithic upload, relative Locations, a lying
``Docker-Content-Digest``. The real protocol is exercised against Distribution in test_push.py.
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ocimerge.content import Blob
from ocimerge.errors import (
    RETRYABLE_STATUSES,
    AuthError,
    DeniedError,
    DigestMismatchError,
    ManifestUnknownError,
    RegistryError,
    RequestTooLargeError,
    TLSVerificationError,
    TransportError,
    UnauthorizedError,
    UsageError,
    retryable_status,
)
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageIndex
from ocimerge.model.reference import Reference
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.registry.auth import RegistryAuth, scopes_for_request
from ocimerge.registry.challenge import Scope, merge_scopes, parse_challenges
from ocimerge.registry.credentials import DOCKER_HUB_KEY, Credentials, resolve_credentials
from ocimerge.registry.responses import DEADLINE_KEY, Deadline, Redactor, decode_server_json, raise_for_response
from ocimerge.registry.transport import Deadlines, RetryPolicy, TLSOptions, is_loopback, is_origin

# -- challenges and scopes --------------------------------------------------------------------

CHALLENGES = [
    (
        ['Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'],
        [
            (
                "bearer",
                {"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull"},
            )
        ],
    ),
    (['bearer Realm="https://a/t", SERVICE=reg'], [("bearer", {"realm": "https://a/t", "service": "reg"})]),
    (['Basic realm="my \\"registry\\""'], [("basic", {"realm": 'my "registry"'})]),
    (
        ['Basic realm="r"', 'Bearer realm="https://t",service="s"'],
        [("basic", {"realm": "r"}), ("bearer", {"realm": "https://t", "service": "s"})],
    ),
    (
        ['Basic realm="r", Bearer realm="https://t",error="insufficient_scope"'],
        [("basic", {"realm": "r"}), ("bearer", {"realm": "https://t", "error": "insufficient_scope"})],
    ),
    (
        ['Bearer realm="https://t",scope="repository:a:pull repository:b:pull,push"'],
        [("bearer", {"realm": "https://t", "scope": "repository:a:pull repository:b:pull,push"})],
    ),
    ([""], []),
]


@pytest.mark.parametrize(("headers", "expected"), CHALLENGES)
def test_challenge_parser(headers: list[str], expected: list[tuple[str, dict[str, str]]]) -> None:
    parsed = parse_challenges(headers)
    assert [(c.scheme, dict(c.params)) for c in parsed] == expected


def test_challenge_scopes_and_merging() -> None:
    [challenge] = parse_challenges(['Bearer realm="x",scope="repository:a:pull repository:localhost:5000/b:push"'])
    assert [str(s) for s in challenge.scopes] == ["repository:a:pull", "repository:localhost:5000/b:push"]
    merged = merge_scopes([Scope.repository("a", "pull"), Scope.repository("a", "push"), Scope.repository("b", "pull")])
    assert [str(s) for s in merged] == ["repository:a:pull,push", "repository:b:pull"]
    assert Scope.repository("a", "pull", "push").covers(Scope.repository("a", "pull"))
    assert not Scope.repository("a", "pull").covers(Scope.repository("a", "push"))


@pytest.mark.parametrize(
    ("method", "url", "scopes"),
    [
        ("HEAD", "https://r/v2/team/app/blobs/sha256:x", ["repository:team/app:pull"]),
        ("GET", "https://r/v2/a/manifests/1", ["repository:a:pull"]),
        ("PUT", "https://r/v2/a/b/c/manifests/1", ["repository:a/b/c:pull,push"]),
        (
            "POST",
            "https://r/v2/dst/blobs/uploads/?mount=sha256:x&from=src/repo",
            ["repository:dst:pull,push", "repository:src/repo:pull"],
        ),
        ("GET", "https://r/v2/", []),
    ],
)
def test_least_scopes_per_request(method: str, url: str, scopes: list[str]) -> None:
    assert [str(s) for s in scopes_for_request(httpx.Request(method, url))] == scopes


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1:5000")
    assert is_loopback("localhost")
    assert is_loopback("[::1]:5000")
    assert not is_loopback("registry.example:5000")
    assert not is_loopback("10.0.0.1")


# -- credentials ------------------------------------------------------------------------------


def write_config(tmp_path: Path, value: dict[str, object]) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(value))
    return {"DOCKER_CONFIG": str(tmp_path), "PATH": "/usr/bin:/bin"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_credentials_from_auths(tmp_path: Path) -> None:
    env = write_config(
        tmp_path,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:hubpass")},
                "https://registry.example:5000/v2/": {"auth": b64("me:pa:ss\0")},
                "idt.example": {"identitytoken": "rt-1"},
                "empty.example": {},
            }
        },
    )
    hub = resolve_credentials("docker.io", env=env)
    assert hub is not None
    assert (hub.username, hub.password) == ("hub", "hubpass")
    other = resolve_credentials("registry.example:5000", env=env)
    assert other is not None
    assert (other.username, other.password) == ("me", "pa:ss")
    idt = resolve_credentials("idt.example", env=env)
    assert idt is not None
    assert idt.identity_token == "rt-1"
    assert resolve_credentials("empty.example", env=env) is None
    assert resolve_credentials("unknown.example", env=env) is None
    assert "hubpass" not in repr(hub)
    assert "hubpass" not in str(hub)


def test_explicit_and_environment_credentials_win(tmp_path: Path) -> None:
    env = {
        **write_config(tmp_path, {"auths": {"r.example": {"auth": b64("cfg:cfg")}}}),
        "OCIMERGE_USERNAME": "envuser",
        "OCIMERGE_PASSWORD": "envpass",
    }
    found = resolve_credentials("r.example", env=env)
    assert found is not None
    assert found.username == "envuser"
    explicit = resolve_credentials("r.example", username="u", password="p", env=env)
    assert explicit is not None
    assert explicit.username == "u"
    with pytest.raises(AuthError):
        resolve_credentials("r.example", username="u", env=env)


def helper(tmp_path: Path, name: str, script: str) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    path = bindir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bindir}:/usr/bin:/bin"}


def test_credential_helpers(tmp_path: Path) -> None:
    env = write_config(
        tmp_path,
        {
            "credHelpers": {"a.example": "token", "b.example": "none"},
            "credsStore": "store",
            "auths": {"c.example": {"auth": b64("c:c")}},
        },
    )
    env.update(
        helper(
            tmp_path,
            "token",
            'read s; echo "{\\"ServerURL\\":\\"$s\\",\\"Username\\":\\"<token>\\",\\"Secret\\":\\"rt\\"}"\n',
        )
    )
    helper(tmp_path, "none", "echo 'credentials not found in native keychain'; exit 1\n")
    helper(
        tmp_path,
        "store",
        'read s; if [ "$s" = "https://index.docker.io/v1/" ]; then echo \'{"Username":"hub","Secret":"h"}\'; '
        "else echo 'credentials not found in native keychain'; exit 1; fi\n",
    )
    a = resolve_credentials("a.example", env=env)
    assert a is not None
    assert a.identity_token == "rt"
    assert resolve_credentials("b.example", env=env) is None
    hub = resolve_credentials("docker.io", env=env)
    assert hub is not None
    assert hub.username == "hub"
    c = resolve_credentials("c.example", env=env)  # the store has nothing: auths still count
    assert c is not None
    assert c.username == "c"
    assert DOCKER_HUB_KEY == "https://index.docker.io/v1/"


def test_broken_helper_is_a_clear_error(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"credHelpers": {"x.example": "broken"}})
    env.update(helper(tmp_path, "broken", "echo 'keychain locked'; exit 3\n"))
    with pytest.raises(AuthError, match="keychain locked"):
        resolve_credentials("x.example", env=env)
    missing = write_config(tmp_path, {"credHelpers": {"y.example": "absent"}})
    with pytest.raises(AuthError, match="not on PATH"):
        resolve_credentials("y.example", env=missing)


# -- retry policy -----------------------------------------------------------------------------


def test_retry_policy_backoff_and_retry_after() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=8, random=lambda: 1.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 8]
    assert RetryPolicy(random=lambda: 0.0).delay(3) == 0
    response = httpx.Response(429, headers={"Retry-After": "3"})
    assert policy.delay(1, response) == 3
    dated = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert policy.delay(1, dated) == 0  # a date in the past: go now
    assert policy.should_retry_status(503)
    assert not policy.should_retry_status(404)


# -- HTTP edge cases with MockTransport ---------------------------------------------------------


def test_retry_policy_statuses_are_the_error_tree_s() -> None:
    assert RetryPolicy().statuses == RETRYABLE_STATUSES
    assert all(RetryPolicy().should_retry_status(s) == retryable_status(s) for s in range(400, 600))


Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Routes requests to handlers and records every request seen, per host."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.handler(request)


def token_registry(lifetime: int = 60) -> tuple[Recorder, dict[str, int]]:
    issued = {"count": 0}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            issued["count"] += 1
            return httpx.Response(200, json={"token": f"tok-{issued['count']}", "expires_in": lifetime})
        if request.headers.get("authorization", "").startswith("Bearer tok-"):
            if request.method == "HEAD":
                return httpx.Response(404)
            return httpx.Response(200, json={})
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="reg"'}
        )

    return Recorder(handle), issued


def test_tokens_are_reused_then_renewed_before_expiry() -> None:
    recorder, issued = token_registry(lifetime=300)
    now = [1000.0]
    with Registry(
        "reg.example",
        transport=httpx.MockTransport(recorder),
        clock=lambda: now[0],
        credentials=Credentials("test", "u", "p"),
    ) as registry:
        digest = Digest.of(b"x")
        assert registry.blob_exists("a/b", digest) is None
        assert registry.blob_exists("a/b", digest) is None
        assert issued["count"] == 1
        now[0] += 300 - 29  # under a tenth of a 300 s token left: renewed before it expires
        assert registry.blob_exists("a/b", digest) is None
        assert issued["count"] == 2
    token_requests = [r for r in recorder.requests if r.url.host == "auth.example"]
    assert all(r.headers["authorization"].startswith("Basic ") for r in token_requests)
    assert "account=u" in str(token_requests[0].url)


def test_credentials_never_follow_a_redirect_to_another_host() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "reg.example":
            if request.url.path == "/v2/":
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            if "authorization" not in request.headers:
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            return httpx.Response(307, headers={"Location": "https://cdn.example/blob?sig=1"})
        return httpx.Response(200, content=b"x")

    recorder = Recorder(handle)
    descriptor = Descriptor("application/octet-stream", Digest.of(b"x"), 1)
    with (
        Registry(
            "reg.example", transport=httpx.MockTransport(recorder), credentials=Credentials("test", "user", "secret")
        ) as registry,
        registry.open_blob("a", descriptor) as reader,
    ):
        assert reader.read() == b"x"
    cdn = [r for r in recorder.requests if r.url.host == "cdn.example"]
    assert cdn
    assert all("authorization" not in r.headers for r in cdn)


def test_plain_http_realm_elsewhere_gets_no_credentials() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example/token"'})

    with (
        Registry(
            "reg.example", transport=httpx.MockTransport(handle), credentials=Credentials("test", "u", "p")
        ) as registry,
        pytest.raises(AuthError, match="plain HTTP"),
    ):
        registry.blob_exists("a", Digest.of(b"x"))


def test_a_refused_fresh_token_is_final() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return httpx.Response(200, json={"access_token": "t"})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/token"'})

    recorder = Recorder(handle)
    with (
        Registry(
            "reg.example",
            transport=httpx.MockTransport(recorder),
            credentials=None,
            options=RegistryOptions(retry=RetryPolicy(attempts=1)),
        ) as registry,
        # anonymous here, so the final 401 says where credentials were looked for [MSG-1]
        pytest.raises(AuthError, match=r"refused to anonymous access \(401\) and no credentials were found"),
    ):
        registry.manifest_put(
            Reference.parse("reg.example/a:1"),
            Document(b"{}", None, Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of(b"{}"), 2)),
        )
    assert len(recorder.requests) < 8


def test_retry_after_is_honoured_on_429() -> None:
    calls = {"n": 0}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(429, headers={"Retry-After": "2"})
        return httpx.Response(404)

    slept: list[float] = []
    with Registry(
        "reg.example", transport=httpx.MockTransport(handle), credentials=None, sleep=slept.append
    ) as registry:
        assert registry.blob_exists("a", Digest.of(b"x")) is None
    assert slept == [2.0]


def test_relative_location_query_kept_and_413_falls_back_to_chunks() -> None:
    data = b"0123456789" * 100
    blob = Blob.from_bytes(Descriptor("application/octet-stream", Digest.of(data), len(data)), data, "test blob")
    stored = bytearray()

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v2/":
            return httpx.Response(200)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/a/blobs/uploads/u1?_state=abc"})
        assert request.url.params.get("_state") == "abc"  # the Location is followed exactly
        if request.method == "PUT" and request.content:
            return httpx.Response(413)
        if request.method == "PATCH":
            start, end = map(int, request.headers["content-range"].split("-"))
            assert start == len(stored)
            stored.extend(request.content)
            assert end == len(stored) - 1
            return httpx.Response(202, headers={"Location": "/v2/a/blobs/uploads/u1?_state=abc"})
        assert request.url.params.get("digest") == str(blob.digest)
        return httpx.Response(201, headers={"Docker-Content-Digest": str(blob.digest)})

    with Registry(
        "reg.example",
        transport=httpx.MockTransport(handle),
        credentials=None,
        options=RegistryOptions(chunked_threshold=10_000),
    ) as registry:
        registry.upload("a", blob)
    assert bytes(stored) == data


def test_manifest_that_does_not_match_its_digest_is_refused() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(
            200,
            content=b'{"schemaVersion":2}',
            headers={
                "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                "Docker-Content-Digest": str(Digest.of(b"something else")),
            },
        )

    with (
        Registry("reg.example", transport=httpx.MockTransport(handle), credentials=None) as registry,
        pytest.raises(DigestMismatchError),
    ):
        registry.manifest_get(Reference.parse("reg.example/a:latest"))


def test_token_response_shapes() -> None:
    bodies: tuple[dict[str, object], ...] = (
        {"token": "a"},
        {"access_token": "b"},
        {"token": "c", "access_token": "c", "expires_in": 3},
    )
    for body in bodies:

        def handle(request: httpx.Request, body: dict[str, object] = body) -> httpx.Response:
            if request.url.host == "auth.example":
                return httpx.Response(200, json=body)
            if "authorization" in request.headers:
                return httpx.Response(404)
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/t"'})

        with Registry("reg.example", transport=httpx.MockTransport(handle), credentials=None) as registry:
            assert registry.blob_exists("a", Digest.of(b"x")) is None
            [token] = registry.auth._tokens
            assert token.lifetime >= 60
            assert "redacted" in repr(token)


def test_tls_options_build_contexts(tmp_path: Path) -> None:
    assert TLSOptions(insecure=True).ssl_context("h") is False
    context = TLSOptions(certs_dir=str(tmp_path)).ssl_context("h:5000")
    assert context is not False


def test_password_grant_when_the_get_form_is_not_served() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            if request.method == "GET":
                return httpx.Response(404)
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            assert form["grant_type"] == "password"
            assert form["username"] == "u"
            return httpx.Response(200, json={"access_token": "t2"})
        if request.headers.get("authorization") == "Bearer t2":
            return httpx.Response(404)
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="s"'}
        )

    with Registry(
        "reg.example", transport=httpx.MockTransport(handle), credentials=Credentials("t", "u", "p")
    ) as registry:
        assert registry.blob_exists("a", Digest.of(b"x")) is None


def test_chunked_upload_reads_the_blob_once_and_a_retried_chunk_rereads() -> None:
    import io

    data = bytes(range(256)) * 40  # 10 KiB
    opens = {"n": 0}

    def opener() -> io.BytesIO:
        opens["n"] += 1
        return io.BytesIO(data)

    blob = Blob(Descriptor("application/octet-stream", Digest.of(data), len(data)), opener, "counted blob")
    stored = bytearray()
    failures = {"left": 1}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/a/blobs/uploads/u"})
        if request.method == "PATCH":
            start, _end = map(int, request.headers["content-range"].split("-"))
            if start == 4096 and failures["left"]:
                failures["left"] -= 1
                return httpx.Response(503)
            assert start == len(stored)
            stored.extend(request.content)
            return httpx.Response(202, headers={"Location": "/v2/a/blobs/uploads/u"})
        if request.method == "GET":  # [API-10] asked where the session stands after the 503
            return httpx.Response(204, headers={"Range": f"0-{len(stored) - 1}", "Location": "/v2/a/blobs/uploads/u"})
        return httpx.Response(201, headers={"Docker-Content-Digest": str(blob.digest)})

    options = RegistryOptions(chunk_size=2048, retry=RetryPolicy(attempts=3, base_delay=0))
    with Registry("reg.example", options, transport=httpx.MockTransport(handle), credentials=None) as registry:
        registry.upload("a", blob)
    assert bytes(stored) == data
    assert opens["n"] == 2  # once for the whole blob, once more for the chunk sent again


def test_explicit_credentials_go_only_to_their_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("OCIMERGE_USERNAME", "envuser")
    monkeypatch.setenv("OCIMERGE_PASSWORD", "envpass")
    options = RegistryOptions(username="u", password="p", explicit_hosts=frozenset({"target.example"}))
    mine = options.credentials_for("target.example")
    assert mine is not None
    assert mine.username == "u"
    assert options.credentials_for("source.example") is None  # neither --username nor OCIMERGE_*
    unscoped = RegistryOptions().credentials_for("any.example")
    assert unscoped is not None
    assert unscoped.username == "envuser"


def test_an_upload_location_on_another_host_gets_no_credentials() -> None:
    data = b"layer bytes"
    blob = Blob.from_bytes(Descriptor("application/octet-stream", Digest.of(data), len(data)), data, "blob")
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "storage.example":
            return httpx.Response(201, headers={"Docker-Content-Digest": str(blob.digest)})
        if "authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "https://storage.example/upload/1?sig=abc"})
        return httpx.Response(200)

    with Registry(
        "reg.example", transport=httpx.MockTransport(handle), credentials=Credentials("t", "u", "secret")
    ) as registry:
        registry.upload("a", blob)
    storage = [r for r in seen if r.url.host == "storage.example"]
    assert storage
    assert all("authorization" not in r.headers for r in storage)
    assert any("authorization" in r.headers for r in seen if r.url.host == "reg.example")


# -- the auth flow, driven by hand as httpx's own tests do --------------------------------------

BEARER = {"WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="reg"'}


def manifest_request(method: str = "GET", url: str = "https://reg.example/v2/a/manifests/1") -> httpx.Request:
    return httpx.Request(method, url, content=b"" if method == "GET" else b"{}")


def test_flow_fetches_an_anonymous_token_then_reuses_it() -> None:
    auth = RegistryAuth("reg.example", None, clock=lambda: 1000.0)
    request = manifest_request()
    flow = auth.sync_auth_flow(request)
    sent = next(flow)
    assert sent is request
    assert "authorization" not in sent.headers
    token_request = flow.send(httpx.Response(401, headers=BEARER, request=request))
    assert token_request.method == "GET"
    assert token_request.url.host == "auth.example"
    assert token_request.url.params["service"] == "reg"
    assert token_request.url.params.get_list("scope") == ["repository:a:pull"]
    assert "authorization" not in token_request.headers  # anonymous
    retried = flow.send(httpx.Response(200, json={"token": "t1"}, request=token_request))
    assert retried.headers["authorization"] == "Bearer t1"
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200, request=retried))
    again = auth.sync_auth_flow(manifest_request())  # a second request: the cached token, no fetch
    assert next(again).headers["authorization"] == "Bearer t1"
    with pytest.raises(StopIteration):
        again.send(httpx.Response(200, request=request))
    assert auth.token_requests == [("repository:a:pull",)]


def test_flow_sends_basic_credentials_to_the_token_realm() -> None:
    auth = RegistryAuth("reg.example", Credentials("test", "u", "p"))
    request = manifest_request("PUT")
    flow = auth.sync_auth_flow(request)
    next(flow)
    token_request = flow.send(httpx.Response(401, headers=BEARER, request=request))
    assert token_request.headers["authorization"] == "Basic " + b64("u:p")
    assert token_request.url.params["account"] == "u"
    assert token_request.url.params.get_list("scope") == ["repository:a:pull,push"]
    retried = flow.send(httpx.Response(200, json={"access_token": "t2"}, request=token_request))
    assert retried.headers["authorization"] == "Bearer t2"


def test_flow_answers_a_basic_challenge_once() -> None:
    auth = RegistryAuth("reg.example", Credentials("test", "u", "p"))
    request = manifest_request()
    flow = auth.sync_auth_flow(request)
    next(flow)
    retried = flow.send(httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'}, request=request))
    assert retried.headers["authorization"] == "Basic " + b64("u:p")
    with pytest.raises(StopIteration):  # [TOKEN-6] the credentials were refused: final
        flow.send(httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'}, request=request))
    later = auth.sync_auth_flow(manifest_request())
    assert next(later).headers["authorization"] == "Basic " + b64("u:p")  # sent up front from now on


def test_flow_a_401_after_a_fresh_token_is_final() -> None:
    auth = RegistryAuth("reg.example", None)
    request = manifest_request()
    flow = auth.sync_auth_flow(request)
    next(flow)
    token_request = flow.send(httpx.Response(401, headers=BEARER, request=request))
    retried = flow.send(httpx.Response(200, json={"token": "t"}, request=token_request))
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(401, headers=BEARER, request=retried))
    assert len(auth.token_requests) == 1


def test_flow_gives_a_request_to_another_host_nothing() -> None:
    auth = RegistryAuth("reg.example", Credentials("test", "u", "secret"))
    prime = auth.sync_auth_flow(manifest_request())
    next(prime)
    prime.send(httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'}, request=manifest_request()))
    request = httpx.Request("PUT", "https://storage.example/upload/1?sig=abc", content=b"x")
    flow = auth.sync_auth_flow(request)
    assert "authorization" not in next(flow).headers
    with pytest.raises(StopIteration):  # a challenge from elsewhere fetches nothing and sends nothing
        flow.send(
            httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://evil.example/t"'}, request=request)
        )
    assert auth.token_requests == []


def test_flow_token_requests_follow_no_redirects() -> None:
    auth = RegistryAuth("reg.example", Credentials("test", identity_token="rt-1"))
    request = manifest_request()
    flow = auth.sync_auth_flow(request)
    next(flow)
    token_request = flow.send(httpx.Response(401, headers=BEARER, request=request))
    assert token_request.method == "POST"
    assert b"refresh_token=rt-1" in token_request.read()
    with pytest.raises(AuthError, match="redirect"):
        flow.send(httpx.Response(307, headers={"Location": "https://elsewhere.example/t"}, request=token_request))


@pytest.mark.parametrize(("status", "error"), [(401, UnauthorizedError), (403, AuthError), (500, AuthError)])
def test_flow_token_service_failures(status: int, error: type[AuthError]) -> None:
    auth = RegistryAuth("reg.example", Credentials("test", "u", "p"), retry=RetryPolicy(attempts=1))
    request = manifest_request()
    flow = auth.sync_auth_flow(request)
    next(flow)
    token_request = flow.send(httpx.Response(401, headers=BEARER, request=request))
    with pytest.raises(error) as caught:
        flow.send(httpx.Response(status, request=token_request))
    assert caught.value.status == status


def test_the_flow_is_not_usable_as_a_plain_auth_flow() -> None:
    with pytest.raises(NotImplementedError):
        RegistryAuth("reg.example", None).auth_flow(manifest_request())


# -- redirects, TLS, error translation --------------------------------------------------------------


def ping_ok(handler: Handler) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200) if request.url.path == "/v2/" else handler(request)

    return handle


def test_a_redirect_target_cannot_plant_a_bearer_challenge() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "reg.example":
            if request.url.path == "/v2/" or "authorization" not in request.headers:
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            return httpx.Response(307, headers={"Location": "https://cdn.example/blob"})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://evil.example/token"'})

    descriptor = Descriptor("application/octet-stream", Digest.of(b"x"), 1)
    with (
        Registry(
            "reg.example", transport=httpx.MockTransport(handle), credentials=Credentials("test", "u", "secret")
        ) as registry,
        pytest.raises(UnauthorizedError),
    ):
        registry.open_blob("a", descriptor)
    assert not any(r.url.host == "evil.example" for r in seen)
    assert all("authorization" not in r.headers for r in seen if r.url.host != "reg.example")


def test_redirects_are_followed_for_reads_only_and_not_forever() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/blobs/" + str(Digest.of(b"x"))):
            return httpx.Response(302, headers={"Location": "/v2/a/blobs/moved"})
        if request.url.path == "/v2/a/blobs/moved":
            return httpx.Response(200, content=b"x")
        if request.url.path == "/v2/a/blobs/" + str(Digest.of(b"y")):
            return httpx.Response(307, headers={"Location": request.url.path})  # itself, forever
        return httpx.Response(307, headers={"Location": "https://elsewhere.example/put"})

    with Registry("reg.example", transport=httpx.MockTransport(ping_ok(handle)), credentials=None) as registry:
        with registry.open_blob("a", Descriptor("application/octet-stream", Digest.of(b"x"), 1)) as reader:
            assert reader.read() == b"x"  # a relative Location, resolved against the request URL
        with pytest.raises(RegistryError, match="more than 5 redirects"):
            registry.blob_exists("a", Digest.of(b"y"))
        with pytest.raises(RegistryError, match="PUT answered with a redirect"):
            registry.manifest_put(
                Reference.parse("reg.example/a:1"),
                Document(b"{}", None, Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of(b"{}"), 2)),
            )


def test_an_untrusted_certificate_is_a_tls_error_never_retried_nor_downgraded() -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)",
            request=request,
        )

    with (
        Registry("127.0.0.1:5000", transport=httpx.MockTransport(handle), credentials=None) as registry,
        pytest.raises(TLSVerificationError, match="--ca-file") as caught,
    ):
        registry.ping()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert not caught.value.retryable
    assert [r.url.scheme for r in calls] == ["https"]


def test_a_failed_connection_is_retried_then_a_chained_transport_error() -> None:
    slept: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    options = RegistryOptions(retry=RetryPolicy(attempts=3, random=lambda: 0.0))
    with (
        Registry(
            "reg.example", options, transport=httpx.MockTransport(handle), credentials=None, sleep=slept.append
        ) as registry,
        pytest.raises(TransportError) as caught,
    ):
        registry.ping()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert registry.requests["GET ping"] == 3
    assert len(slept) == 2


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (413, {}, RequestTooLargeError),
        (403, {}, DeniedError),
        (401, {}, UnauthorizedError),
        (404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "gone"}]}, ManifestUnknownError),
        (400, {"errors": [{"code": "DENIED"}]}, DeniedError),
    ],
)
def test_error_answers_become_the_error_tree(status: int, body: dict[str, object], error: type[Exception]) -> None:
    request = httpx.Request("GET", "https://reg.example/v2/a/manifests/1?_state=x")
    with pytest.raises(error) as caught:
        raise_for_response(httpx.Response(status, json=body, request=request), "GET manifest 1", "reg.example")
    assert getattr(caught.value, "status", None) == status


# -- manifests and tags ----------------------------------------------------------------------------


def test_manifest_get_returns_the_verified_document() -> None:
    raw = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=raw,
            headers={
                "Content-Type": "application/vnd.oci.image.index.v1+json",
                "Docker-Content-Digest": str(Digest.of(raw)),
            },
        )

    with Registry("reg.example", transport=httpx.MockTransport(ping_ok(handle)), credentials=None) as registry:
        document = registry.manifest_get(Reference.parse("reg.example/a:1"))
        assert document.raw == raw
        assert isinstance(document.value, ImageIndex)
        assert document.descriptor == Descriptor("application/vnd.oci.image.index.v1+json", Digest.of(raw), len(raw))
        head = registry.manifest_head(Reference.parse(f"reg.example/a@{Digest.of(raw)}"))
        assert head is not None
        assert head.digest == Digest.of(raw)
        with pytest.raises(UsageError):
            registry.manifest_get(Reference.parse("other.example/a:1"))


def test_tags_follow_links_until_one_repeats_and_refuse_non_json() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/bad/tags/list":
            return httpx.Response(200, text="<html>")
        last = request.url.params.get("last")
        if last is None:
            return httpx.Response(200, json={"tags": ["a"]}, headers={"Link": '</v2/a/tags/list?last=a>; rel="next"'})
        return httpx.Response(200, json={"tags": ["b"]}, headers={"Link": '</v2/a/tags/list?last=a>; rel="next"'})

    with Registry("reg.example", transport=httpx.MockTransport(ping_ok(handle)), credentials=None) as registry:
        assert registry.tags("a") == ("a", "b")
        with pytest.raises(RegistryError, match="not JSON"):
            registry.tags("bad")


# -- [SEC-1] origins, [SEC-8] deadlines, redaction, strict server JSON -----------------------------


@pytest.mark.parametrize(
    ("url", "origin", "same"),
    [
        ("https://reg.example/v2/", "reg.example", True),
        ("https://reg.example:443/v2/", "reg.example", True),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000", True),
        ("http://127.0.0.1:5001/blob", "127.0.0.1:5000", False),  # same address, another server
        ("https://cdn.example/blob", "reg.example", False),
        ("https://REG.example/v2/", "reg.example", True),
    ],
)
def test_origins(url: str, origin: str, same: bool) -> None:
    assert is_origin(httpx.URL(url), origin) is same


def test_the_redactor_cuts_every_secret_and_its_basic_form() -> None:
    redactor = Redactor.basic("alice", "pw", "rt-1", None)
    redactor.add("tok-9")
    text = f"Basic {b64('alice:pw')} / {b64('alice:pw').rstrip('=')} pw rt-1 tok-9 alice"
    assert redactor.redact(text) == "Basic <redacted> / <redacted> <redacted> <redacted> <redacted> alice"
    assert Redactor().redact("nothing held") == "nothing held"


def test_an_error_body_echoing_a_token_we_obtained_is_redacted() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return httpx.Response(200, json={"token": "tok-obtained"})
        if "authorization" not in request.headers:
            return httpx.Response(401, headers=BEARER)
        echoed = f"you sent {request.headers['authorization']}"
        return httpx.Response(400, json={"errors": [{"code": "MANIFEST_INVALID", "message": echoed}]})

    with (
        Registry(
            "reg.example", transport=httpx.MockTransport(ping_ok(handle)), credentials=Credentials("t", "u", "p")
        ) as registry,
        pytest.raises(RegistryError) as caught,
    ):
        registry.manifest_get(Reference.parse("reg.example/a:1"))
    assert "you sent Bearer <redacted>" in str(caught.value)
    assert "tok-obtained" not in str(caught.value)


@pytest.mark.parametrize("body", [b"[" * 10_000, b'{"a": "\xff"}', b'{"a": "\\ud800"}', b'{"a": 1, "a": 2}', b"<html>"])
def test_server_json_is_decoded_strictly(body: bytes) -> None:
    with pytest.raises(ValueError, match=r"^token response: "):
        decode_server_json(body, where="token response")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 100_000, "not a JSON object"),
        (b'{"token": "two words"}', "not visible ASCII"),
        (b'{"token": "\\u00e9t\\u00e9"}', "not visible ASCII"),
    ],
)
def test_hostile_token_responses_are_auth_errors(body: bytes, message: str) -> None:
    auth = RegistryAuth("reg.example", None)
    request = manifest_request()
    flow = auth.sync_auth_flow(request)
    next(flow)
    token_request = flow.send(httpx.Response(401, headers=BEARER, request=request))
    with pytest.raises(AuthError, match=message):
        flow.send(httpx.Response(200, content=body, request=token_request))


def test_insecure_does_not_open_a_plain_realm_elsewhere_but_plain_http_does() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return httpx.Response(200, json={"token": "t"})
        if "authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example/token"'})
        return httpx.Response(404)

    insecure = RegistryOptions(tls=TLSOptions(insecure=True))
    with (
        Registry(
            "reg.example", insecure, transport=httpx.MockTransport(handle), credentials=Credentials("t", "u", "p")
        ) as registry,
        pytest.raises(AuthError, match="--insecure only skips TLS verification"),
    ):
        registry.blob_exists("a", Digest.of(b"x"))
    plain = RegistryOptions(tls=TLSOptions(plain_http=True))
    with Registry(
        "reg.example", plain, transport=httpx.MockTransport(handle), credentials=Credentials("t", "u", "p")
    ) as registry:
        assert registry.blob_exists("a", Digest.of(b"x")) is None


def test_a_deadline_past_is_a_transport_error_naming_registry_and_deadline() -> None:
    Deadline.after(60.0).check("reg.example", "https://reg.example/v2/")  # time left: nothing
    with pytest.raises(TransportError, match=r"^reg\.example: .*https://reg\.example/v2/a .*within the 5 s deadline"):
        Deadline(at=0.0, seconds=5.0).check("reg.example", "https://reg.example/v2/a?_state=secret")


def test_requests_carry_their_deadline_and_blob_bodies_the_long_one() -> None:
    stamped: dict[str, float] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        deadline = request.extensions[DEADLINE_KEY]
        assert isinstance(deadline, Deadline)
        stamped[request.method] = deadline.seconds
        assert request.extensions["timeout"]["read"] <= deadline.seconds
        return httpx.Response(200, content=b"x", headers={"Docker-Content-Digest": str(Digest.of(b"x"))})

    options = RegistryOptions(deadlines=Deadlines(blob=30.0, other=3.0, min_rate=1.0))  # 1 byte: 1 s more
    with Registry("reg.example", options, transport=httpx.MockTransport(handle), credentials=None) as registry:
        registry.blob_exists("a", Digest.of(b"x"))
        assert stamped == {"GET": 3.0, "HEAD": 3.0}
        with registry.open_blob("a", Descriptor("application/octet-stream", Digest.of(b"x"), 1)) as reader:
            assert reader.read() == b"x"
        assert stamped["GET"] == 31.0


def test_a_short_manifest_body_is_a_transport_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        def short() -> Iterator[bytes]:
            yield b"{"
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

        return httpx.Response(200, content=short(), headers={"Content-Length": "100"})

    with (
        Registry("reg.example", transport=httpx.MockTransport(ping_ok(handle)), credentials=None) as registry,
        pytest.raises(TransportError, match="broke off"),
    ):
        registry.manifest_get(Reference.parse("reg.example/a:1"))


def test_tags_stop_when_a_link_points_back_at_the_first_page() -> None:
    pages: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        pages.append(str(request.url))
        if "last" not in request.url.params:
            return httpx.Response(200, json={"tags": ["a"]}, headers={"Link": '</v2/a/tags/list?last=a>; rel="next"'})
        return httpx.Response(200, json={"tags": ["b", "a"]}, headers={"Link": '</v2/a/tags/list?n=1000>; rel="next"'})

    with Registry("reg.example", transport=httpx.MockTransport(ping_ok(handle)), credentials=None) as registry:
        assert registry.tags("a") == ("a", "b")
    assert len(pages) == 2


# -- [API-10] [API-11] uploads that recover, [TOKEN-7] [TOKEN-8] tokens that renew ----------------------


def chunk_registry(
    fail: Callable[[httpx.Request, bytearray], httpx.Response | None], location: str = "/v2/a/blobs/uploads/u"
) -> tuple[Callable[[httpx.Request], httpx.Response], bytearray, list[str]]:
    """A registry that keeps one session's bytes and answers the status GET; ``fail`` may refuse a request."""
    stored = bytearray()
    log: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:  # noqa: PLR0911 - one answer per request kind
        if request.url.path == "/v2/":
            return httpx.Response(200)
        log.append(f"{request.method} {request.headers.get('content-range', '')}".strip())
        refused = fail(request, stored)
        if refused is not None:
            return refused
        if request.method == "POST":
            stored.clear()
            return httpx.Response(202, headers={"Location": location})
        if request.method == "GET":
            return httpx.Response(204, headers={"Range": f"0-{max(len(stored) - 1, 0)}", "Location": location})
        if request.method == "PATCH":
            start, _end = map(int, request.headers["content-range"].split("-"))
            if start != len(stored):
                return httpx.Response(416, headers={"Range": f"0-{len(stored) - 1}"})
            stored.extend(request.content)
            return httpx.Response(202, headers={"Location": location})
        stored.extend(request.content)
        return httpx.Response(201)

    return handle, stored, log


def counted_blob(data: bytes) -> Blob:
    return Blob.from_bytes(Descriptor("application/octet-stream", Digest.of(data), len(data)), data, "blob")


FAST_UNIT = RetryPolicy(attempts=3, base_delay=0)


def test_a_416_on_a_chunk_reads_the_offset_and_continues() -> None:
    data = bytes(range(256)) * 12
    lose = {"left": 1}

    def fail(request: httpx.Request, stored: bytearray) -> httpx.Response | None:
        if request.method == "PATCH" and request.headers["content-range"].startswith("1024-") and lose["left"]:
            lose["left"] -= 1  # the registry kept only part of the previous chunk
            del stored[1000:]
        return None

    handle, stored, log = chunk_registry(fail)
    options = RegistryOptions(chunk_size=1024, retry=FAST_UNIT)
    with Registry("reg.example", options, transport=httpx.MockTransport(handle), credentials=None) as registry:
        registry.upload("a", counted_blob(data))
    assert bytes(stored) == data
    assert log == [
        "POST",
        "PATCH 0-1023",
        "PATCH 1024-2047",
        "GET",
        "PATCH 1000-2023",
        "PATCH 2024-3047",
        "PATCH 3048-3071",
        "PUT",
    ]


def test_a_lost_session_restarts_the_blob_in_a_new_one() -> None:
    data = b"z" * 3000
    lose = {"left": 1}

    def fail(request: httpx.Request, stored: bytearray) -> httpx.Response | None:
        if request.method == "PATCH" and request.headers["content-range"].startswith("1000-") and lose["left"]:
            lose["left"] -= 1
            return httpx.Response(404, json={"errors": [{"code": "BLOB_UPLOAD_UNKNOWN", "message": "gone"}]})
        return None

    handle, stored, log = chunk_registry(fail)
    options = RegistryOptions(chunk_size=1000, retry=FAST_UNIT)
    with Registry("reg.example", options, transport=httpx.MockTransport(handle), credentials=None) as registry:
        registry.upload("a", counted_blob(data))
    assert bytes(stored) == data
    assert log.count("POST") == 2
    assert log[-5:] == ["POST", "PATCH 0-999", "PATCH 1000-1999", "PATCH 2000-2999", "PUT"]


def test_recovery_gives_up_after_the_policys_attempts() -> None:
    def fail(request: httpx.Request, stored: bytearray) -> httpx.Response | None:
        return httpx.Response(503) if request.method == "PATCH" else None

    handle, _stored, log = chunk_registry(fail)
    options = RegistryOptions(chunk_size=1000, retry=FAST_UNIT)
    with (
        Registry("reg.example", options, transport=httpx.MockTransport(handle), credentials=None) as registry,
        pytest.raises(RegistryError, match="503"),
    ):
        registry.upload("a", counted_blob(b"q" * 1500))
    assert log.count("PATCH 0-999") == 3  # the policy's three attempts, the session asked between them


def test_a_413_on_a_chunk_at_the_floor_is_final() -> None:
    def fail(request: httpx.Request, stored: bytearray) -> httpx.Response | None:
        return httpx.Response(413) if request.method in ("PUT", "PATCH") and request.content else None

    handle, _stored, log = chunk_registry(fail)
    with (
        Registry("reg.example", transport=httpx.MockTransport(handle), credentials=None) as registry,
        pytest.raises(RequestTooLargeError),
    ):
        registry.upload("a", counted_blob(b"r" * 5000))
    assert log == ["POST", "PUT", "POST", "PATCH 0-4999"]  # the whole PUT, then one chunked try


def test_flow_retries_the_token_service_under_the_policy() -> None:
    slept: list[float] = []
    policy = RetryPolicy(random=lambda: 1.0)
    auth = RegistryAuth("reg.example", Credentials("test", "u", "p"), retry=policy, sleep=slept.append)
    request = manifest_request()
    flow = auth.sync_auth_flow(request)
    next(flow)
    token_request = flow.send(httpx.Response(401, headers=BEARER, request=request))
    again = flow.send(httpx.Response(429, headers={"Retry-After": "2"}, request=token_request))
    assert again.url == token_request.url
    again = flow.send(httpx.Response(503, request=again))
    retried = flow.send(httpx.Response(200, json={"token": "t"}, request=again))
    assert retried.headers["authorization"] == "Bearer t"
    assert slept == [2.0, 1.0]


def test_flow_a_401_on_a_cached_token_evicts_it() -> None:
    auth = RegistryAuth("reg.example", None)
    first = auth.sync_auth_flow(manifest_request())
    request = next(first)
    token_request = first.send(httpx.Response(401, headers=BEARER, request=request))
    sent = first.send(httpx.Response(200, json={"token": "old"}, request=token_request))
    with pytest.raises(StopIteration):
        first.send(httpx.Response(200, request=sent))
    second = auth.sync_auth_flow(manifest_request())
    cached = next(second)
    assert cached.headers["authorization"] == "Bearer old"
    token_request = second.send(httpx.Response(401, headers=BEARER, request=cached))
    renewed = second.send(httpx.Response(200, json={"token": "new"}, request=token_request))
    assert renewed.headers["authorization"] == "Bearer new"
    with pytest.raises(StopIteration):
        second.send(httpx.Response(200, request=renewed))
    assert next(auth.sync_auth_flow(manifest_request())).headers["authorization"] == "Bearer new"


def test_a_413_halves_from_the_profile_capped_chunk() -> None:
    """[API-11][PROFILE-1] on GHCR a refused 4 MiB chunk halves to 2 MiB, not from 16 MiB."""
    mib = 1024 * 1024
    data = b"h" * (5 * mib)
    log: list[str] = []

    def fail(request: httpx.Request, stored: bytearray) -> httpx.Response | None:
        if request.method == "PATCH" and int(request.headers["content-length"]) > 2 * mib:
            log.append(f"413 {request.headers['content-length']}")
            return httpx.Response(413)
        return None

    handle, stored, _ = chunk_registry(fail)
    options = RegistryOptions(chunk_size=16 * mib, retry=FAST_UNIT)
    with Registry("ghcr.io", options, transport=httpx.MockTransport(handle), credentials=None) as registry:
        registry.upload("a", counted_blob(data))
        assert registry._uploader.limit == 2 * mib
    assert log == [f"413 {4 * mib}"]
    assert bytes(stored) == data


def test_a_known_request_limit_is_never_raised_by_the_uploader() -> None:
    """[PROFILE-8] max_request_size seeds the kept limit; a 413 only lowers it."""
    with Registry("reg.example", RegistryOptions(max_request_size=300_000), credentials=None) as registry:
        assert registry._uploader.limit == 300_000
        assert registry.profile.name == "registry"
