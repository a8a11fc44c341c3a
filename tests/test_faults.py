"""Pushes that survive faults: the real Distribution in token mode behind the suite's fault proxy.

Every push here goes through :class:`registries.FaultProxy` to ``/usr/bin/docker-registry``
with tokens from the suite's token server, and is confirmed afterwards by a manifest HEAD
straight at the registry. Retries are fast (``base_delay=0.01``) so the file stays short.
[API-10] sessions recover, [API-11] 413 limits adapt, [RETRY-1] a lost answer is recovered
and a 429 waits as its ``Retry-After`` says, [TOKEN-7] a refused cached token is renewed,
[TOKEN-8] the token service is retried, [TOKEN-9] a withheld action is named.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocimerge
from imagebuilder import Image, oci_layout, sample_images
from ocimerge.errors import DeniedError
from ocimerge.model.digest import Digest
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.registry.transport import RetryPolicy
from registries import USERS, Fault, FaultProxy, RegistryServer

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)
MiB = 1024 * 1024


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def options(user: str = "alice", **extra: object) -> RegistryOptions:
    extra.setdefault("retry", FAST)
    return RegistryOptions(username=user, password=USERS[user], **extra)  # type: ignore[arg-type]


@pytest.fixture
def proxy(token_registry: RegistryServer) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(token_registry.host)
    yield fault_proxy
    fault_proxy.stop()


def layout(tmp_path: Path, *sizes: int) -> tuple[str, Image]:
    """An archive of one image whose layers are random (incompressible) bytes of ``sizes``."""
    image = Image(gzip_layers=False, layers=[os.urandom(size) for size in sizes])
    return oci_layout([image]).write_tar(str(tmp_path / f"{uuid.uuid4().hex[:6]}.tar")), image


def layer_hex(image: Image, n: int = 0) -> str:
    return str(json.loads(image.manifest)["layers"][n]["digest"]).split(":")[1]


def push(proxy: FaultProxy, path: str, repo: str, opts: RegistryOptions) -> None:
    ocimerge.push(path, [f"{proxy.host}/{repo}:1"], registry_options=opts, jobs=1)


def stored(server: RegistryServer, repo: str, image: Image) -> bool:
    """Whether the registry itself (not through the proxy) holds ``repo:1`` as ``image``'s manifest."""
    with Registry(server.host, options()) as client:
        found = client.manifest_head(ocimerge.Reference.parse(f"{server.host}/{repo}:1"))
    return found is not None and str(found.digest) == image.digest


def session_queried_or_restarted(proxy: FaultProxy) -> bool:
    gets = [r for r in proxy.log if r[0] == "GET" and "/blobs/uploads/" in r[1]]
    posts = [r for r in proxy.log if r[0] == "POST" and "/blobs/uploads/" in r[1]]
    return bool(gets) or len(posts) > len({r[1] for r in posts})


# -- [API-10] upload sessions recover --------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "forward"),
    [(1, True), (700_000, True), (1_500_000, False)],
    ids=["at-1-forwarded", "at-700k-forwarded", "at-1.5M-unforwarded"],
)
def test_a_connection_dropped_in_a_monolithic_blob(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, offset: int, forward: bool
) -> None:
    path, image = layout(tmp_path, 2 * MiB)
    proxy.faults.append(Fault("PUT", layer_hex(image), status=None, after_bytes=offset, forward=forward))
    repo = unique("faults/put")
    push(proxy, path, repo, options())
    assert proxy.faults[0].seen == 1
    assert [r for r in proxy.log if r[0] == "GET" and "/blobs/uploads/" in r[1]], proxy.log  # asked
    assert stored(token_registry, repo, image)


@pytest.mark.parametrize(
    ("offset", "forward"),
    [(1, True), (100_000, True), (200_000, False)],
    ids=["at-1-forwarded", "at-100k-forwarded", "at-200k-unforwarded"],
)
def test_a_connection_dropped_in_a_chunk(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, offset: int, forward: bool
) -> None:
    path, image = layout(tmp_path, MiB + 12345)
    # the second 256 KiB chunk of the layer (the config's one small PATCH does not match)
    fault = Fault("PATCH", "/blobs/uploads/", status=None, after_bytes=offset, forward=forward, min_body=1000, after=1)
    proxy.faults.append(fault)
    repo = unique("faults/patch")
    push(proxy, path, repo, options(chunk_size=256 * 1024))
    assert fault.seen == 1
    assert session_queried_or_restarted(proxy), proxy.log
    assert stored(token_registry, repo, image)


def test_an_unforwarded_drop_in_a_chunk_continues_where_the_registry_stands(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    path, image = layout(tmp_path, MiB)
    proxy.faults.append(Fault("PATCH", "/blobs/uploads/", status=None, after_bytes=5000, min_body=1000, after=2))
    repo = unique("faults/resume")
    push(proxy, path, repo, options(chunk_size=256 * 1024))
    queried = [r for r in proxy.log if r[0] == "GET" and "/blobs/uploads/" in r[1]]
    assert [status for _m, _p, status in queried] == [204]
    layer_patches = [length for method, length in proxy.bodies if method == "PATCH" and length >= 1000]
    assert layer_patches == [256 * 1024] * 5  # 4 chunks, the third sent twice: no restart from byte 0
    assert stored(token_registry, repo, image)


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_a_5xx_burst_within_the_policy(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, chunked: bool
) -> None:
    path, image = layout(tmp_path, 600_000, 700_000)
    if chunked:  # three 503s in a row, then two 502s: within the policy's five attempts each
        proxy.faults.append(Fault("PATCH", "/blobs/uploads/", status=503, times=3, min_body=1000))
        proxy.faults.append(Fault("PATCH", "/blobs/uploads/", status=502, times=2, min_body=1000, after=1))
    else:
        proxy.faults.append(Fault("PUT", layer_hex(image, 0), status=503, times=4))
        proxy.faults.append(Fault("PUT", layer_hex(image, 1), status=500, times=2))
    repo = unique("faults/burst")
    push(proxy, path, repo, options(chunk_size=256 * 1024) if chunked else options())
    assert [f.seen for f in proxy.faults] == ([3, 2] if chunked else [4, 2])
    assert stored(token_registry, repo, image)


# -- [RETRY-1] answers lost on the way back ----------------------------------------------------------


def index_layout(tmp_path: Path) -> tuple[str, str]:
    """An archive of the three sample images under one OCI index, and the index's digest."""
    layout = oci_layout(sample_images(), shape="index")
    digest = str(json.loads(layout.files["index.json"])["manifests"][0]["digest"])
    return layout.write_tar(str(tmp_path / "index.tar")), digest


def tagged(server: RegistryServer, repo: str) -> str | None:
    """The digest ``repo:1`` names, asked of the registry itself (not through the proxy)."""
    with Registry(server.host, options()) as client:
        found = client.manifest_head(ocimerge.Reference.parse(f"{server.host}/{repo}:1"))
    return None if found is None else str(found.digest)


@pytest.mark.parametrize("what", ["by-digest", "by-tag"])
def test_a_lost_answer_to_the_index_put_is_recovered(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, what: str
) -> None:
    path, index = index_layout(tmp_path)
    repo = unique("faults/lost-index")
    target = f"/v2/{repo}/manifests/{index if what == 'by-digest' else '1'}"
    # the registry stores the index (or the tag), then the proxy closes the client's connection
    proxy.faults.append(Fault("PUT", target, status=None, lose_response=True))
    push(proxy, path, repo, options())
    assert proxy.faults[0].seen == 1
    reached = [status for method, uri, status in token_registry.requests() if method == "PUT" and uri == target]
    assert reached == [201, 201], reached  # applied, its answer lost, then PUT again: idempotent
    assert tagged(token_registry, repo) == index


def test_a_lost_answer_to_a_blobs_put_is_recovered(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    path, image = layout(tmp_path, 700_000)
    # the monolithic PUT with ?digest= commits the blob; its answer is lost
    proxy.faults.append(Fault("PUT", f"digest=sha256%3A{layer_hex(image)}", status=None, lose_response=True))
    repo = unique("faults/lost-blob")
    push(proxy, path, repo, options())
    assert proxy.faults[0].seen == 1
    committed = [r for r in proxy.log if r[0] == "PUT" and layer_hex(image) in r[1]]
    assert committed[0][2] == 201, proxy.log  # the registry did commit it the first time
    with Registry(token_registry.host, options()) as client:
        assert client.blob_exists(repo, Digest.parse(f"sha256:{layer_hex(image)}")) == 700_000
    assert stored(token_registry, repo, image)


# -- [RETRY-1] 429 Too Many Requests -----------------------------------------------------------------

PATIENT = RetryPolicy(base_delay=0.01, max_delay=5.0)  # room for Retry-After: 1 (it is capped at max_delay)
HUB_429 = "Too Many Requests (HAP429).\n"  # Docker Hub's 429 body: plain text, not the JSON errors


def waited_after_429(proxy: FaultProxy) -> float:
    """Seconds between the request answered 429 and the next one of its method to its path, at the proxy.

    The path without the query: a retried chunk goes to the same upload session, whose
    ``_state`` may have changed. Counted from the refused request itself, not from the first
    request to that path (an earlier chunk of the same session may have gone through).
    """
    [(method, uri, _status)] = [r for r in proxy.log if r[2] == 429]
    refused = next(i for i, (m, p, _) in enumerate(proxy.arrivals) if (m, p) == (method, uri))
    bare = uri.split("?")[0]
    later = [t for m, p, t in proxy.arrivals[refused + 1 :] if (m, p.split("?")[0]) == (method, bare)]
    assert later, (method, uri, proxy.log)
    return later[0] - proxy.arrivals[refused][2]


def retried_in_the_same_session(proxy: FaultProxy) -> int:
    """The status of the first request after the 429 of its method to its path (without the query)."""
    [refused] = [r for r in proxy.log if r[2] == 429]
    later = proxy.log[proxy.log.index(refused) + 1 :]
    same = [status for m, p, status in later if (m, p.split("?")[0]) == (refused[0], refused[1].split("?")[0])]
    assert same, proxy.log
    return same[0]


@pytest.mark.parametrize(
    ("retry_after", "text"),
    [("1", None), ("date", None), ("1", HUB_429)],
    ids=["seconds", "http-date", "plain-text-body"],
)
def test_a_429_to_a_manifest_put_waits_as_retry_after_says(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, retry_after: str, text: str | None
) -> None:
    path, image = layout(tmp_path, 1000)
    if retry_after == "date":  # whole seconds: 2.5 s after the answer is at least 1.5 s away
        fault = Fault("PUT", "/manifests/", status=429, retry_after_date=2.5, text=text)
    else:
        fault = Fault("PUT", "/manifests/", status=429, retry_after=retry_after, text=text)
    proxy.faults.append(fault)
    repo = unique("faults/429")
    push(proxy, path, repo, options(retry=PATIENT))
    assert fault.seen == 1
    assert waited_after_429(proxy) >= 0.95  # a behaviour: the retry waited for Retry-After
    assert stored(token_registry, repo, image)


@pytest.mark.parametrize("chunked", [False, True], ids=["blob-put", "chunk-patch"])
def test_a_plain_text_429_to_a_blob_request_is_retried(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, chunked: bool
) -> None:
    path, image = layout(tmp_path, 600_000)
    if chunked:  # the layer's second chunk (the config's one small PATCH does not match)
        fault = Fault("PATCH", "/blobs/uploads/", status=429, retry_after="1", text=HUB_429, min_body=1000, after=1)
    else:
        fault = Fault("PUT", f"digest=sha256%3A{layer_hex(image)}", status=429, retry_after="1", text=HUB_429)
    proxy.faults.append(fault)
    repo = unique("faults/429-blob")
    push(proxy, path, repo, options(retry=PATIENT, chunk_size=256 * 1024) if chunked else options(retry=PATIENT))
    assert fault.seen == 1
    assert retried_in_the_same_session(proxy) in (201, 202, 204), proxy.log
    assert stored(token_registry, repo, image)


# -- [API-11] request-size limits --------------------------------------------------------------------


def test_a_request_size_limit_below_the_chunk_size_is_learnt_and_kept(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.max_body = 1_500_000
    path, image = layout(tmp_path, 4 * MiB, 3 * MiB)
    repo = unique("faults/limit")
    push(proxy, path, repo, options())
    refused = [i for i, r in enumerate(proxy.log) if r[2] == 413]
    assert len(refused) == 2, proxy.log  # the first big blob: its PUT, then its first halved chunk
    assert max(length for _method, length in proxy.bodies) > 1_500_000
    after = proxy.bodies[[i for i, (_m, n) in enumerate(proxy.bodies) if n > 1_500_000][-1] + 1 :]
    assert after
    assert max(n for _m, n in after) <= 1_500_000  # the second big blob: chunked, no 413
    assert stored(token_registry, repo, image)


# -- [TOKEN-7] [TOKEN-8] [TOKEN-9] tokens ---------------------------------------------------------------


def test_the_token_service_failing_once_is_retried(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    assert token_registry.token_server is not None
    token_registry.token_server.failures = [503]
    path, image = layout(tmp_path, 1000)
    repo = unique("faults/token503")
    push(proxy, path, repo, options())
    assert token_registry.token_server.failures == []
    assert {"method": "GET", "failed": 503} in token_registry.token_server.requests
    assert stored(token_registry, repo, image)


def test_a_token_refused_as_expired_mid_push_is_renewed(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    assert token_registry.token_server is not None
    path, image = layout(tmp_path, 800_000)
    proxy.faults.append(Fault("PATCH", "/blobs/uploads/", status=401, expire=True, min_body=1000, after=1))
    repo = unique("faults/expired")
    before = len(token_registry.token_server.requests)
    push(proxy, path, repo, options(chunk_size=256 * 1024))
    assert proxy.faults[0].seen == 1
    assert len(proxy.expired) == 1
    assert len(token_registry.token_server.requests) - before == 2  # the first token, then its renewal
    assert stored(token_registry, repo, image)


@pytest.mark.parametrize("jobs", [1, 4])
def test_a_pull_only_user_is_told_the_push_was_not_granted(
    token_registry: RegistryServer, tmp_path: Path, jobs: int
) -> None:
    """[TOKEN-9] With parallel uploads too: a request refused with a token another one already
    evicted still says what the token service granted (it said "authentication failed" at times)."""
    path, _image = layout(tmp_path, 1000, 2000, 3000, 4000)
    for _ in range(3 if jobs > 1 else 1):
        repo = unique("team/app")
        with pytest.raises(
            DeniedError, match=rf"bob may pull {repo} but not push: the token service granted pull only"
        ):
            ocimerge.push(path, [f"{token_registry.host}/{repo}:1"], registry_options=options("bob"), jobs=jobs)


@pytest.mark.parametrize("chunked", [False, True], ids=["blob-put", "chunk-patch"])
def test_a_429_to_a_blob_request_waits_as_retry_after_says(
    token_registry: RegistryServer,
    proxy: FaultProxy,
    tmp_path: Path,
    chunked: bool,
) -> None:
    """[RETRY-1][API-12] A blob request the uploader recovers itself waits as ``Retry-After`` says too."""
    path, image = layout(tmp_path, 600_000)
    if chunked:
        fault = Fault("PATCH", "/blobs/uploads/", status=429, retry_after="1", min_body=1000, after=1)
    else:
        fault = Fault("PUT", f"digest=sha256%3A{layer_hex(image)}", status=429, retry_after="1")
    proxy.faults.append(fault)
    repo = unique("faults/429-wait")
    push(proxy, path, repo, options(retry=PATIENT, chunk_size=256 * 1024) if chunked else options(retry=PATIENT))
    assert fault.seen == 1
    assert waited_after_429(proxy) >= 0.95
    assert stored(token_registry, repo, image)


def test_a_lost_answer_to_a_chunked_uploads_closing_put_is_recovered(
    token_registry: RegistryServer,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    """[API-12] The closing PUT sent again finds the session closed; a HEAD finds the blob in."""
    path, image = layout(tmp_path, 700_000)
    proxy.faults.append(Fault("PUT", f"digest=sha256%3A{layer_hex(image)}", status=None, lose_response=True))
    repo = unique("faults/lost-close")
    push(proxy, path, repo, options(chunk_size=256 * 1024))
    assert proxy.faults[0].seen == 1
    with Registry(token_registry.host, options()) as client:
        assert client.blob_exists(repo, Digest.parse(f"sha256:{layer_hex(image)}")) == 700_000
    assert stored(token_registry, repo, image)


@pytest.mark.parametrize("status", [401, 404], ids=["harbor-401", "404"])
def test_refused_mounts_fall_back_to_uploads_and_are_noted(
    token_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, status: int
) -> None:
    """[PROFILE-6][PUSH-4] The second repository's mounts refused (as Harbor refuses some): uploads, and one note."""
    path, image = layout(tmp_path, 3000, 4000)
    first, second = unique("team/mount-a"), unique("team/mount-b")
    proxy.faults.append(Fault("POST", "mount=", status=status, times=10))
    result = ocimerge.push(
        path, [f"{proxy.host}/{first}:1", f"{proxy.host}/{second}:1"], registry_options=options(), jobs=1
    )
    assert [p.repository for p in result.pushed] == [first, second]
    assert result.pushed[1].count(ocimerge.BlobAction.UPLOAD) == 3  # config and two layers: none mounted
    assert proxy.faults[0].seen == 3
    notes = [n for n in result.notes if "cross-repository mount" in n]
    assert notes == [
        f"{proxy.host}/{second}: 3 cross-repository mounts from {first} refused ({status}); uploaded instead"
    ]
    assert stored(token_registry, second, image)
