"""``ocimerge.testing.Registry``, the in-process registry: driven by ocimerge itself, by raw
httpx for the edge cases, and by skopeo as a foreign client ([TESTREG-1] .. [TESTREG-13]).

Where it differs from Distribution 2.8 on purpose, the test says so ([TESTREG-13]).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

import ocimerge
from imagebuilder import Image, oci_layout, sample_images
from ocimerge.errors import DeniedError
from ocimerge.registry.api import Mounted, RegistryOptions
from ocimerge.registry.api import Registry as Client
from ocimerge.registry.transport import RetryPolicy, TLSOptions
from ocimerge.sinks.registry import BlobAction
from ocimerge.testing import BasicAuth, Behaviour, Registry, TokenAuth
from registries import make_cert

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_TYPES = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def reg() -> Iterator[Registry]:
    with Registry() as registry:
        yield registry


@pytest.fixture
def http(reg: Registry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=reg.url) as client:
        yield client


def closing(location: str, blob_digest: str) -> str:
    """The Location with ``digest`` appended (httpx's ``params=`` would replace its ``_state``)."""
    return f"{location}{'&' if '?' in location else '?'}digest={blob_digest}"


def push_blob(http: httpx.Client, repo: str, data: bytes) -> str:
    """POST then PUT: the blob's digest."""
    started = http.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    done = http.put(closing(started.headers["location"], digest(data)), content=data)
    assert done.status_code == 201, done.text
    return digest(data)


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def image_manifest(http: httpx.Client, repo: str, *, layer: bytes = b"layer", **extra: Any) -> bytes:
    """An OCI image manifest whose config and layer are pushed to ``repo`` (not the manifest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    push_blob(http, repo, config.encode())
    push_blob(http, repo, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config.encode()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        **extra,
    }
    return json.dumps(manifest).encode()


def put_manifest(http: httpx.Client, repo: str, reference: str, raw: bytes, media_type: str) -> httpx.Response:
    return http.put(f"/v2/{repo}/manifests/{reference}", content=raw, headers={"Content-Type": media_type})


def error_codes(response: httpx.Response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    return [
        oci_layout([image], attestations=(i == 0)).write_tar(str(tmp_path / f"in{i}.tar"))
        for i, image in enumerate(sample_images())
    ]


# -- driven by ocimerge ---------------------------------------------------------------------------


def test_ocimerge_creates_pushes_mounts_and_inspects(reg: Registry, inputs: list[str]) -> None:
    """[TESTREG-1][TESTREG-3][TESTREG-4] create with two repositories: uploads to the first,
    mounts into the second; inspect reads it back; a second push writes nothing."""
    result = ocimerge.create(
        inputs, tags=[f"{reg.host}/team/app:1.0", f"{reg.host}/team/app:latest", f"{reg.host}/team/b:1"]
    )
    first, second = result.pushed
    assert first.tags == ("1.0", "latest")
    assert first.count(BlobAction.UPLOAD) > 0
    assert second.count(BlobAction.MOUNT) == first.count(BlobAction.UPLOAD)
    assert second.count(BlobAction.UPLOAD) == 0
    assert ocimerge.inspect(f"{reg.host}/team/b:1").raw() == result.index.raw
    mounts = [r for r in reg.requests() if r[0] == "POST" and "mount=" in r[1]]
    assert mounts
    assert all(status == 201 for _m, _p, status in mounts)
    before = len(reg.requests())
    again = ocimerge.create(inputs, tags=[f"{reg.host}/team/app:1.0"])
    assert again.pushed[0].count(BlobAction.UPLOAD) == 0
    assert [r for r in reg.requests()[before:] if r[0] in ("POST", "PUT", "PATCH")] == []
    with Client(reg.host) as client:
        got = client.manifest_get(ocimerge.Reference.parse(f"{reg.host}/team/app:latest"))
    assert got.raw == result.index.raw
    assert got.descriptor.media_type == OCI_INDEX


def test_ocimerge_chunked_push_and_push_of_an_archive(reg: Registry, tmp_path: Path, inputs: list[str]) -> None:
    """[TESTREG-3] ocimerge's chunked uploads (PATCH with Content-Range) and ``push`` of an archive."""
    image = Image(gzip_layers=False, layers=[os.urandom(300_000)])
    path = oci_layout([image]).write_tar(str(tmp_path / "big.tar"))
    ocimerge.push(path, [f"{reg.host}/team/chunks:1"], registry_options=RegistryOptions(chunk_size=100_000))
    patches = [r for r in reg.requests() if r[0] == "PATCH"]
    assert len(patches) >= 3
    assert all(status == 202 for _m, _p, status in patches)
    layer = ocimerge.Digest.parse(json.loads(image.manifest)["layers"][0]["digest"])
    with Client(reg.host) as client:
        assert client.blob_exists("team/chunks", layer) == 300_000
    archive = tmp_path / "multi.tar"
    created = ocimerge.create(inputs, str(archive))
    carried = ocimerge.push(str(archive), [f"{reg.host}/team/airgap:1"])
    assert carried.root.digest == created.index.descriptor.digest


# -- blobs and uploads, raw ---------------------------------------------------------------------


def test_ping_and_unknown_paths(http: httpx.Client) -> None:
    """[TESTREG-1] /v2/ with the API version header; an unknown path is Go's plain 404."""
    ping = http.get("/v2/")
    assert ping.status_code == 200
    assert ping.headers["docker-distribution-api-version"] == "registry/2.0"
    missing = http.get("/nothing/here")
    assert (missing.status_code, missing.text) == (404, "404 page not found\n")


def test_monolithic_uploads_blob_reads_and_ranges(reg: Registry, http: httpx.Client) -> None:
    """[TESTREG-3] POST ?digest= with the body completes at once ([TESTREG-13]: Distribution
    2.8 answers 202 and wants a PUT); HEAD, GET, Range (206, 416), DELETE."""
    data = bytes(range(256)) * 1000
    single = http.post("/v2/team/mono/blobs/uploads/", params={"digest": digest(data)}, content=data)
    assert single.status_code == 201
    assert single.headers["docker-content-digest"] == digest(data)
    head = http.head(f"/v2/team/mono/blobs/{digest(data)}")
    assert (head.status_code, head.headers["content-length"]) == (200, str(len(data)))
    assert http.get(f"/v2/team/mono/blobs/{digest(data)}").content == data
    part = http.get(f"/v2/team/mono/blobs/{digest(data)}", headers={"Range": "bytes=10-19"})
    assert (part.status_code, part.content, part.headers["content-range"]) == (
        206,
        data[10:20],
        f"bytes 10-19/{len(data)}",
    )
    tail = http.get(f"/v2/team/mono/blobs/{digest(data)}", headers={"Range": "bytes=-5"})
    assert tail.content == data[-5:]
    beyond = http.get(f"/v2/team/mono/blobs/{digest(data)}", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    # another repository does not hold it until it is mounted or uploaded there [TESTREG-2]
    assert http.head(f"/v2/team/other/blobs/{digest(data)}").status_code == 404
    assert http.delete(f"/v2/team/mono/blobs/{digest(data)}").status_code == 202
    gone = http.get(f"/v2/team/mono/blobs/{digest(data)}")
    assert (gone.status_code, error_codes(gone)) == (404, ["BLOB_UNKNOWN"])
    assert ("POST", f"/v2/team/mono/blobs/uploads/?digest={digest(data).replace(':', '%3A')}", 201) in reg.requests()


def test_chunked_upload_checks_content_range(http: httpx.Client) -> None:
    """[TESTREG-3] POST, PATCH with Content-Range, a wrong range is 416 with the stored Range,
    GET tells where the session stands, PUT closes it with a last chunk."""
    data = os.urandom(200_000)
    started = http.post("/v2/team/chunks/blobs/uploads/")
    assert started.status_code == 202
    assert started.headers["range"] == "0-0"
    assert started.headers["docker-upload-uuid"]
    assert started.headers["location"].startswith("http://127.0.0.1:")
    assert "_state=" in started.headers["location"]
    first = http.patch(started.headers["location"], content=data[:100_000], headers={"Content-Range": "0-99999"})
    assert (first.status_code, first.headers["range"]) == (202, "0-99999")
    wrong = http.patch(first.headers["location"], content=data[150_000:], headers={"Content-Range": "150000-199999"})
    assert (wrong.status_code, wrong.headers["range"], error_codes(wrong)) == (416, "0-99999", ["RANGE_INVALID"])
    status = http.get(first.headers["location"])
    assert (status.status_code, status.headers["range"]) == (204, "0-99999")
    done = http.put(
        closing(status.headers["location"], digest(data)),
        content=data[100_000:],
        headers={"Content-Range": "100000-199999"},
    )
    assert done.status_code == 201, done.text
    assert http.get(f"/v2/team/chunks/blobs/{digest(data)}").content == data


def test_a_patch_without_content_range_and_a_chunked_body_stream(http: httpx.Client) -> None:
    """[TESTREG-3] Docker's engine streams a blob in one PATCH with no Content-Range; a body
    in chunked transfer coding is read as it comes."""
    data = os.urandom(150_000)
    started = http.post("/v2/team/stream/blobs/uploads/")

    def pieces() -> Iterator[bytes]:
        for at in range(0, len(data), 40_000):
            yield data[at : at + 40_000]

    patched = http.patch(started.headers["location"], content=pieces())
    assert patched.request.headers.get("transfer-encoding") == "chunked"
    assert (patched.status_code, patched.headers["range"]) == (202, f"0-{len(data) - 1}")
    done = http.put(closing(patched.headers["location"], digest(data)))
    assert done.status_code == 201
    assert http.head(f"/v2/team/stream/blobs/{digest(data)}").headers["content-length"] == str(len(data))


def test_a_digest_mismatch_is_refused_and_ends_the_session(http: httpx.Client) -> None:
    """[TESTREG-3] The bytes are hashed as they come: a PUT naming another digest is 400
    DIGEST_INVALID, and the session is gone (404 BLOB_UPLOAD_UNKNOWN)."""
    started = http.post("/v2/team/bad/blobs/uploads/")
    refused = http.put(closing(started.headers["location"], digest(b"other")), content=b"these bytes")
    assert (refused.status_code, error_codes(refused)) == (400, ["DIGEST_INVALID"])
    again = http.get(started.headers["location"])
    assert (again.status_code, error_codes(again)) == (404, ["BLOB_UPLOAD_UNKNOWN"])
    assert http.head(f"/v2/team/bad/blobs/{digest(b'these bytes')}").status_code == 404
    bad = http.put(closing(http.post("/v2/team/bad/blobs/uploads/").headers["location"], "sha256:nothex"))
    assert (bad.status_code, error_codes(bad)) == (400, ["DIGEST_INVALID"])


def test_the_location_must_be_used_whole(http: httpx.Client) -> None:
    """[TESTREG-3] A client that drops the Location's query (its ``_state``) is refused."""
    started = http.post("/v2/team/state/blobs/uploads/")
    rebuilt = started.headers["location"].split("?")[0]
    refused = http.put(closing(rebuilt, digest(b"x")), content=b"x")
    assert (refused.status_code, error_codes(refused)) == (404, ["BLOB_UPLOAD_INVALID"])  # Distribution's status
    # the latest Location only: its _state changes with every chunk stored, as Distribution's
    first = http.patch(started.headers["location"], content=b"abc", headers={"Content-Range": "0-2"})
    assert first.headers["location"] != started.headers["location"]
    stale = http.patch(started.headers["location"], content=b"def", headers={"Content-Range": "3-5"})
    assert (stale.status_code, error_codes(stale)) == (404, ["BLOB_UPLOAD_INVALID"])
    assert http.patch(first.headers["location"], content=b"def", headers={"Content-Range": "3-5"}).status_code == 202
    started = http.post("/v2/team/state/blobs/uploads/")
    assert http.delete(started.headers["location"]).status_code == 204
    assert http.get(started.headers["location"]).status_code == 404


def test_mounts_and_refused_mounts(http: httpx.Client) -> None:
    """[TESTREG-3] A mount from a repository holding the blob is 201; from one that does not,
    202 and a session to upload into."""
    blob = push_blob(http, "team/src", b"shared layer")
    mounted = http.post("/v2/team/dst/blobs/uploads/", params={"mount": blob, "from": "team/src"})
    assert (mounted.status_code, mounted.headers["docker-content-digest"]) == (201, blob)
    assert http.head(f"/v2/team/dst/blobs/{blob}").status_code == 200
    refused = http.post("/v2/team/dst2/blobs/uploads/", params={"mount": blob, "from": "team/nowhere"})
    assert refused.status_code == 202
    done = http.put(closing(refused.headers["location"], blob), content=b"shared layer")
    assert done.status_code == 201


def test_mounts_off_gives_sessions_and_ocimerge_uploads(inputs: list[str]) -> None:
    """[TESTREG-7] ``mounts=False``: every mount is a session; ocimerge then uploads into it."""
    with Registry(behaviour=Behaviour(mounts=False)) as reg:
        result = ocimerge.create(inputs, tags=[f"{reg.host}/team/a:1", f"{reg.host}/team/b:1"])
        second = result.pushed[1]
        assert second.count(BlobAction.MOUNT) == 0
        assert second.count(BlobAction.UPLOAD) == result.pushed[0].count(BlobAction.UPLOAD)
        mounts = [r for r in reg.requests() if "mount=" in r[1]]
        assert mounts
        assert all(status == 202 for _m, _p, status in mounts)


# -- manifests ----------------------------------------------------------------------------------


def test_manifests_by_tag_and_digest(http: httpx.Client) -> None:
    """[TESTREG-4] PUT by tag and by digest, stored byte for byte; HEAD, GET, DELETE."""
    raw = image_manifest(http, "team/m")
    put = put_manifest(http, "team/m", "v1", raw, OCI_MANIFEST)
    assert (put.status_code, put.headers["docker-content-digest"]) == (201, digest(raw))
    assert put.headers["location"] == f"/v2/team/m/manifests/{digest(raw)}"
    for reference in ("v1", digest(raw)):
        got = http.get(f"/v2/team/m/manifests/{reference}", headers={"Accept": ALL_TYPES})
        assert (got.content, got.headers["content-type"]) == (raw, OCI_MANIFEST)
        assert got.headers["docker-content-digest"] == digest(raw)
        head = http.head(f"/v2/team/m/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert (head.status_code, head.headers["content-length"]) == (200, str(len(raw)))
    wrong = put_manifest(http, "team/m", digest(b"another"), raw, OCI_MANIFEST)
    assert (wrong.status_code, error_codes(wrong)) == (400, ["DIGEST_INVALID"])
    # delete by tag (distribution-spec v1.1; [TESTREG-13]) leaves the manifest
    assert http.delete("/v2/team/m/manifests/v1").status_code == 202
    assert http.get("/v2/team/m/manifests/v1", headers={"Accept": ALL_TYPES}).status_code == 404
    assert http.head(f"/v2/team/m/manifests/{digest(raw)}", headers={"Accept": ALL_TYPES}).status_code == 200
    assert put_manifest(http, "team/m", "v2", raw, OCI_MANIFEST).status_code == 201
    assert http.delete(f"/v2/team/m/manifests/{digest(raw)}").status_code == 202
    gone = http.get("/v2/team/m/manifests/v2", headers={"Accept": ALL_TYPES})
    assert (gone.status_code, error_codes(gone)) == (404, ["MANIFEST_UNKNOWN"])
    unknown = http.get("/v2/team/never/manifests/v1", headers={"Accept": ALL_TYPES})
    assert (unknown.status_code, error_codes(unknown)) == (404, ["MANIFEST_UNKNOWN"])  # as Distribution 2.8


def test_manifest_put_is_validated_as_distribution_does(http: httpx.Client) -> None:
    """[TESTREG-4] Media type against body, JSON, missing blobs (one error each), size."""
    raw = image_manifest(http, "team/v")
    mismatch = put_manifest(http, "team/v", "a", raw, DOCKER_MANIFEST)
    assert (mismatch.status_code, error_codes(mismatch)) == (400, ["MANIFEST_INVALID"])
    plain = put_manifest(http, "team/v", "a", raw, "application/json")
    assert (plain.status_code, error_codes(plain)) == (400, ["MANIFEST_INVALID"])
    junk = put_manifest(http, "team/v", "a", b"{not json", OCI_MANIFEST)
    assert (junk.status_code, error_codes(junk)) == (400, ["MANIFEST_INVALID"])
    value = json.loads(raw)
    value["layers"] += [
        descriptor("application/vnd.oci.image.layer.v1.tar", b"missing one"),
        descriptor("application/vnd.oci.image.layer.v1.tar", b"missing two"),
    ]
    missing = put_manifest(http, "team/v", "a", json.dumps(value).encode(), OCI_MANIFEST)
    assert (missing.status_code, error_codes(missing)) == (400, ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"])
    elsewhere = put_manifest(http, "team/elsewhere", "a", raw, OCI_MANIFEST)  # its blobs are in team/v only
    assert error_codes(elsewhere) == ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"]
    huge = put_manifest(http, "team/v", "a", b" " * (4 * 1024 * 1024 + 1), OCI_MANIFEST)
    assert huge.status_code == 413
    # a manifest with no mediaType is taken under the Content-Type it came with
    del value["mediaType"]
    value["layers"] = value["layers"][:1]
    assert put_manifest(http, "team/v", "a", json.dumps(value).encode(), OCI_MANIFEST).status_code == 201


def test_an_index_with_a_missing_child_is_refused(http: httpx.Client) -> None:
    """[TESTREG-4] Children first: an index PUT while a child is missing is 400 MANIFEST_BLOB_UNKNOWN."""
    child = image_manifest(http, "team/idx")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, child, platform={"architecture": "amd64", "os": "linux"})],
        }
    ).encode()
    refused = put_manifest(http, "team/idx", "1", index, OCI_INDEX)
    assert (refused.status_code, error_codes(refused)) == (400, ["MANIFEST_BLOB_UNKNOWN"])
    assert refused.json()["errors"][0]["detail"] == digest(child)  # Distribution's detail: the digest
    assert put_manifest(http, "team/idx", digest(child), child, OCI_MANIFEST).status_code == 201
    assert put_manifest(http, "team/idx", "1", index, OCI_INDEX).status_code == 201


def test_accept_negotiation_as_distribution(http: httpx.Client) -> None:
    """[TESTREG-4] OCI documents only for an Accept naming them (404 otherwise); a Docker list
    by tag without the list type answers its linux/amd64 child; by digest, the list."""
    amd64 = image_manifest(http, "team/neg", layer=b"amd64 layer")
    assert put_manifest(http, "team/neg", digest(amd64), amd64, OCI_MANIFEST).status_code == 201
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, amd64)]}
    ).encode()
    assert put_manifest(http, "team/neg", "oci", index, OCI_INDEX).status_code == 201
    refused = http.get("/v2/team/neg/manifests/oci", headers={"Accept": OCI_MANIFEST})
    assert (refused.status_code, error_codes(refused)) == (404, ["MANIFEST_UNKNOWN"])
    assert http.get("/v2/team/neg/manifests/oci").status_code == 404
    assert http.get("/v2/team/neg/manifests/oci", headers={"Accept": f"{OCI_INDEX}; q=0.5"}).content == index
    # Docker manifests and lists
    value = json.loads(amd64)
    value["mediaType"] = DOCKER_MANIFEST
    value["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    value["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    docker = json.dumps(value).encode()
    assert put_manifest(http, "team/neg", digest(docker), docker, DOCKER_MANIFEST).status_code == 201
    arm = image_manifest(http, "team/neg", layer=b"arm layer")
    arm_docker = json.dumps({**json.loads(arm), "mediaType": DOCKER_MANIFEST}).encode()
    assert put_manifest(http, "team/neg", digest(arm_docker), arm_docker, DOCKER_MANIFEST).status_code == 201
    platforms = [("arm64", arm_docker), ("amd64", docker)]
    entries = [descriptor(DOCKER_MANIFEST, raw, platform={"architecture": a, "os": "linux"}) for a, raw in platforms]
    listing = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries}).encode()
    assert put_manifest(http, "team/neg", "list", listing, DOCKER_LIST).status_code == 201
    rewritten = http.get("/v2/team/neg/manifests/list", headers={"Accept": DOCKER_MANIFEST})
    assert (rewritten.content, rewritten.headers["docker-content-digest"]) == (docker, digest(docker))
    assert http.get(f"/v2/team/neg/manifests/{digest(listing)}", headers={"Accept": DOCKER_MANIFEST}).content == listing
    assert http.get("/v2/team/neg/manifests/list", headers={"Accept": ALL_TYPES}).content == listing
    # [TESTREG-13] a Docker manifest without its type in Accept is served as it is (2.8: schema 1)
    assert http.get(f"/v2/team/neg/manifests/{digest(docker)}").content == docker


# -- tags, catalog, referrers ---------------------------------------------------------------------


def test_tags_and_catalog_paginate_with_link(http: httpx.Client) -> None:
    """[TESTREG-11] n/last pagination and Link, for tags and the catalog; ocimerge follows it."""
    raw = image_manifest(http, "team/tags")
    for tag in ("b", "a", "d", "c", "e"):
        assert put_manifest(http, "team/tags", tag, raw, OCI_MANIFEST).status_code == 201
    page = http.get("/v2/team/tags/tags/list", params={"n": "2"})
    assert page.json() == {"name": "team/tags", "tags": ["a", "b"]}
    assert page.headers["link"] == '</v2/team/tags/tags/list?last=b&n=2>; rel="next"'
    following = http.get(page.links["next"]["url"])
    assert following.json()["tags"] == ["c", "d"]
    last = http.get(following.links["next"]["url"])
    assert (last.json()["tags"], "link" in last.headers) == (["e"], False)
    assert http.get("/v2/team/tags/tags/list", params={"n": "0"}).json()["tags"] == []
    bad = http.get("/v2/team/tags/tags/list", params={"n": "many"})
    assert (bad.status_code, error_codes(bad)) == (400, ["PAGINATION_NUMBER_INVALID"])
    unknown = http.get("/v2/team/none/tags/list")
    assert (unknown.status_code, error_codes(unknown)) == (404, ["NAME_UNKNOWN"])
    push_blob(http, "alpha/one", b"x")
    push_blob(http, "zulu/two", b"y")
    catalog = http.get("/v2/_catalog", params={"n": "2"})
    assert catalog.json() == {"repositories": ["alpha/one", "team/tags"]}
    assert http.get(catalog.links["next"]["url"]).json() == {"repositories": ["zulu/two"]}
    with Client(http.base_url.netloc.decode()) as client:
        assert client.tags("team/tags") == ("a", "b", "c", "d", "e")


def test_referrers_api_with_filter_and_oci_subject(http: httpx.Client) -> None:
    """[TESTREG-10] OCI-Subject answers a PUT with a subject (absent or not); the referrers
    index lists artifactType (its own, else the config's) and annotations; the filter applies."""
    subject = image_manifest(http, "team/ref")
    assert put_manifest(http, "team/ref", "1", subject, OCI_MANIFEST).status_code == 201
    empty = push_blob(http, "team/ref", b"{}")
    assert empty == digest(b"{}")
    sbom = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        "layers": [descriptor("application/vnd.oci.empty.v1+json", b"{}")],
        "subject": descriptor(OCI_MANIFEST, subject),
        "annotations": {"org.example.kind": "sbom"},
    }
    signature = {**sbom, "config": descriptor("application/vnd.example.signature", b"{}")}
    del signature["artifactType"], signature["annotations"]
    http.post("/v2/team/ref/blobs/uploads/", params={"digest": digest(b"{}")}, content=b"{}")
    for value in (sbom, signature):
        raw = json.dumps(value).encode()
        put = put_manifest(http, "team/ref", digest(raw), raw, OCI_MANIFEST)
        assert (put.status_code, put.headers["oci-subject"]) == (201, digest(subject))
    listed = http.get(f"/v2/team/ref/referrers/{digest(subject)}")
    assert listed.headers["content-type"] == OCI_INDEX
    entries = listed.json()["manifests"]
    by_type = {e["artifactType"]: e for e in entries}
    assert set(by_type) == {"application/spdx+json", "application/vnd.example.signature"}
    assert by_type["application/spdx+json"]["annotations"] == {"org.example.kind": "sbom"}
    assert by_type["application/spdx+json"]["digest"] == digest(json.dumps(sbom).encode())
    filtered = http.get(f"/v2/team/ref/referrers/{digest(subject)}", params={"artifactType": "application/spdx+json"})
    assert filtered.headers["oci-filters-applied"] == "artifactType"
    assert [e["artifactType"] for e in filtered.json()["manifests"]] == ["application/spdx+json"]
    assert http.get(f"/v2/team/ref/referrers/{digest(b'nothing')}").json()["manifests"] == []
    # a subject that is not (yet) in the repository is accepted [TESTREG-4]
    orphan = {**sbom, "subject": descriptor(OCI_MANIFEST, b"not pushed")}
    raw = json.dumps(orphan).encode()
    assert put_manifest(http, "team/ref", digest(raw), raw, OCI_MANIFEST).status_code == 201


def test_without_referrers_it_answers_as_distribution_2_8() -> None:
    """[TESTREG-7] ``referrers=False``: the API is a plain 404 and no OCI-Subject is answered."""
    with Registry(behaviour=Behaviour(referrers=False)) as reg, httpx.Client(base_url=reg.url) as http:
        subject = image_manifest(http, "team/old")
        push_blob(http, "team/old", b"{}")
        value = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
            "layers": [],
            "subject": descriptor(OCI_MANIFEST, subject),
        }
        raw = json.dumps(value).encode()
        put = put_manifest(http, "team/old", digest(raw), raw, OCI_MANIFEST)
        assert (put.status_code, "oci-subject" in put.headers) == (201, False)
        missing = http.get(f"/v2/team/old/referrers/{digest(subject)}")
        assert (missing.status_code, missing.text) == (404, "404 page not found\n")


# -- auth -----------------------------------------------------------------------------------------

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
ACL: dict[str, list[tuple[str, str | tuple[str, ...]]]] = {
    "alice": [("*", "pull,push,delete")],
    "bob": [("*", ("pull",))],
    "": [("public/*", "pull")],
}


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    import ipaddress

    pair = make_cert("127.0.0.1", sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    return cert, key


def test_basic_auth_over_tls(tls_files: tuple[Path, Path], inputs: list[str]) -> None:
    """[TESTREG-5][TESTREG-1] Basic credentials on every request, over HTTPS with our CA."""
    with Registry(auth=BasicAuth(USERS), tls=tls_files) as reg:
        assert (reg.scheme, reg.url) == ("https", f"https://{reg.host}")
        assert reg.ca_file == tls_files[0]
        with httpx.Client(base_url=reg.url, verify=ssl.create_default_context(cafile=str(reg.ca_file))) as http:
            refused = http.get("/v2/")
            assert (refused.status_code, refused.headers["www-authenticate"]) == (401, 'Basic realm="ocimerge-testing"')
            assert error_codes(refused) == ["UNAUTHORIZED"]
            assert http.get("/v2/", auth=("alice", "wrong")).status_code == 401
            assert http.get("/v2/", auth=("alice", "alice-pw")).status_code == 200
        # plain HTTP on the TLS port gets Go's answer, which ocimerge recognises [TESTREG-1]
        plain = httpx.get(f"http://{reg.host}/v2/")
        assert (plain.status_code, plain.text) == (400, "Client sent an HTTP request to an HTTPS server.\n")
        options = RegistryOptions(tls=TLSOptions(ca_file=str(reg.ca_file)), username="alice", password="alice-pw")
        result = ocimerge.create(inputs, tags=[f"{reg.host}/team/app:1"], registry_options=options)
        assert result.pushed[0].tags == ("1",)
        assert all(status != 401 for _m, path, status in reg.requests() if path != "/v2/")


def token(http: httpx.Client, scope: str, auth: tuple[str, str] | None = None) -> dict[str, Any]:
    answer = http.get("/token", params={"service": "ocimerge-testing", "scope": scope}, auth=auth)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_bearer_challenge_and_both_token_forms() -> None:
    """[TESTREG-6] The challenge names the realm, service and scope; GET (Basic or anonymous)
    and OAuth2 POST (password, then refresh_token) give opaque tokens for what the ACL allows."""
    with Registry(auth=TokenAuth(USERS, ACL)) as reg, httpx.Client(base_url=reg.url) as http:
        refused = http.head("/v2/team/app/manifests/1")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == (
            f'Bearer realm="{reg.url}/token",service="ocimerge-testing",scope="repository:team/app:pull"'
        )
        upload = http.post("/v2/team/app/blobs/uploads/", params={"mount": digest(b"x"), "from": "team/src"})
        assert 'scope="repository:team/app:pull,push repository:team/src:pull"' in upload.headers["www-authenticate"]
        got = token(http, "repository:team/app:pull,push", auth=("alice", "alice-pw"))
        assert set(got) >= {"token", "access_token", "expires_in", "issued_at"}
        assert got["expires_in"] == 300
        payload = got["token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
        bearer = {"Authorization": f"Bearer {got['token']}"}
        assert http.post("/v2/team/app/blobs/uploads/", headers=bearer).status_code == 202
        assert http.get("/token", params={"scope": "repository:team/app:pull"}, auth=("alice", "no")).status_code == 401
        # anonymous: pull on public/* only
        anonymous = token(http, "repository:public/base:pull,push")
        assert (
            http.get("/v2/public/base/tags/list", headers={"Authorization": f"Bearer {anonymous['token']}"}).status_code
            == 404
        )
        denied = http.post("/v2/public/base/blobs/uploads/", headers={"Authorization": f"Bearer {anonymous['token']}"})
        assert denied.status_code == 401
        assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
        # OAuth2 POST: password grant with a refresh token, then the refresh grant
        form = {
            "grant_type": "password",
            "username": "alice",
            "password": "alice-pw",
            "scope": "repository:team/app:pull",
            "access_type": "offline",
            "service": "ocimerge-testing",
            "client_id": "test",
        }
        posted = http.post("/token", data=form)
        assert posted.status_code == 200
        assert "token" not in posted.json()
        refresh = posted.json()["refresh_token"]
        renewed = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh, "scope": "repository:team/app:pull"},
        )
        pull = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
        assert http.get("/v2/team/app/tags/list", headers=pull).status_code == 404  # allowed; nothing there
        assert http.post("/token", data={**form, "password": "wrong"}).status_code == 401
        assert http.post("/token", data={"grant_type": "client_credentials"}).status_code == 400
        # the catalog: registry:catalog:* goes to a named user, not to anonymous
        catalog = http.get("/v2/_catalog")
        assert 'scope="registry:catalog:*"' in catalog.headers["www-authenticate"]
        named = token(http, "registry:catalog:*", auth=("bob", "bob-pw"))["token"]
        assert http.get("/v2/_catalog", headers={"Authorization": f"Bearer {named}"}).status_code == 200
        nobody = token(http, "registry:catalog:*")["token"]
        assert http.get("/v2/_catalog", headers={"Authorization": f"Bearer {nobody}"}).status_code == 401
        # the token endpoint's requests are logged apart, as a token service's are from Distribution's
        assert not [r for r in reg.requests() if r[1].startswith("/token")]
        assert [m for m, _p, _s in reg.token_requests()] == ["GET"] * 3 + ["POST"] * 4 + ["GET"] * 2


def test_an_expired_token_is_refused_and_ocimerge_renews_it(inputs: list[str]) -> None:
    """[TESTREG-6][TESTREG-8] After expire_tokens() the old token is 401 invalid_token; ocimerge
    asks for a new one and the push goes on. (Distribution allows 60 s of leeway [TESTREG-13].)"""
    with Registry(auth=TokenAuth(USERS, ACL)) as reg, httpx.Client(base_url=reg.url) as http:
        old = token(http, "repository:team/app:pull", auth=("alice", "alice-pw"))["token"]
        assert http.get("/v2/", headers={"Authorization": f"Bearer {old}"}).status_code == 200
        reg.expire_tokens()
        expired = http.get("/v2/", headers={"Authorization": f"Bearer {old}"})
        assert expired.status_code == 401
        assert 'error="invalid_token"' in expired.headers["www-authenticate"]
        assert http.get("/v2/", headers={"Authorization": "Bearer made-up"}).status_code == 401
        options = RegistryOptions(username="alice", password="alice-pw")
        ocimerge.create(inputs[:1], tags=[f"{reg.host}/team/app:1"], registry_options=options)
        reg.expire_tokens()
        again = ocimerge.create(inputs, tags=[f"{reg.host}/team/app:2"], registry_options=options)
        assert again.pushed[0].tags == ("2",)


def test_a_pull_only_user_is_refused_push_and_mounts_need_pull_on_from(inputs: list[str]) -> None:
    """[TESTREG-6] bob may pull but not push: the token's ``access`` claim says so, and ocimerge
    names what was withheld [TOKEN-9]. A mount from a
    repository the user may not pull is refused (401) and ocimerge uploads instead."""
    acl: dict[str, list[tuple[str, str | tuple[str, ...]]]] = {**ACL, "carol": [("team/*", "pull,push")]}
    users = {**USERS, "carol": "carol-pw"}
    with Registry(auth=TokenAuth(users, acl)) as reg:
        bob = RegistryOptions(username="bob", password="bob-pw")
        # with parallel uploads too: a request refused with a token a parallel one already evicted
        # still says what was granted (it was the generic UnauthorizedError about 5 times in 12)
        for jobs in (1, 4, 4, 4, 4, 4, 4):
            with pytest.raises(DeniedError, match="bob may pull team/app but not push"):
                ocimerge.create(inputs, tags=[f"{reg.host}/team/app:1"], registry_options=bob, jobs=jobs)
        alice = RegistryOptions(username="alice", password="alice-pw")
        ocimerge.create(inputs, tags=[f"{reg.host}/private/src:1"], registry_options=alice)
        carol = RegistryOptions(username="carol", password="carol-pw")
        with Client(reg.host, carol) as client:
            blob = ocimerge.Digest.parse(json.loads(sample_images()[0].manifest)["config"]["digest"])
            session = client.start_upload("team/dst", mount=blob, source="private/src")
            assert not isinstance(session, Mounted)
            assert session.refused == 401
        mounts = [status for method, path, status in reg.requests() if "mount=" in path]
        assert mounts
        assert set(mounts) == {401}


# -- knobs ----------------------------------------------------------------------------------------


def test_chunk_and_request_limits_answer_413(tmp_path: Path) -> None:
    """[TESTREG-7] max_chunk refuses a larger PATCH (413), max_request any larger body; the
    connection stays usable and ocimerge, told the limit, stays under it."""
    with (
        Registry(behaviour=Behaviour(max_chunk=1000, chunk_min_length=500)) as reg,
        httpx.Client(base_url=reg.url) as http,
    ):
        started = http.post("/v2/team/lim/blobs/uploads/")
        assert started.headers["oci-chunk-min-length"] == "500"
        big = http.patch(started.headers["location"], content=b"x" * 1001, headers={"Content-Range": "0-1000"})
        assert (big.status_code, error_codes(big)) == (413, ["SIZE_INVALID"])
        small = http.patch(started.headers["location"], content=b"x" * 1000, headers={"Content-Range": "0-999"})
        assert small.status_code == 202
        # a chunked body is refused when it goes over, and nothing of it is kept
        streamed = http.patch(small.headers["location"], content=iter([b"y" * 800, b"y" * 800]))
        assert streamed.status_code == 413
        assert http.get(small.headers["location"]).headers["range"] == "0-999"
    with Registry(behaviour=Behaviour(max_request=1_500_000)) as reg:
        with httpx.Client(base_url=reg.url) as http:
            refused = http.post(
                "/v2/team/lim/blobs/uploads/", params={"digest": digest(b"z" * 1_600_000)}, content=b"z" * 1_600_000
            )
            assert refused.status_code == 413
            assert http.get("/v2/").status_code == 200
        image = Image(gzip_layers=False, layers=[os.urandom(3_000_000)])
        layout = oci_layout([image]).write_tar(str(tmp_path / "big.tar"))
        before = len(reg.requests())
        options = RegistryOptions(max_request_size=1_000_000)
        ocimerge.push(layout, [f"{reg.host}/team/lim:1"], registry_options=options)
        assert 413 not in {status for _m, _p, status in reg.requests()[before:]}
        assert len([r for r in reg.requests()[before:] if r[0] == "PATCH"]) >= 3


def test_relative_locations_plain_errors_and_no_deletion(inputs: list[str]) -> None:
    """[TESTREG-7] Relative Location headers (ocimerge resolves them), plain-text error
    bodies, and DELETE refused with 405 UNSUPPORTED."""
    behaviour = Behaviour(relative_locations=True, json_errors=False, deletion=False)
    with Registry(behaviour=behaviour) as reg, httpx.Client(base_url=reg.url) as http:
        started = http.post("/v2/team/rel/blobs/uploads/")
        assert started.headers["location"].startswith("/v2/team/rel/blobs/uploads/")
        missing = http.get(f"/v2/team/rel/blobs/{digest(b'none')}")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/plain")
        assert missing.text == "404 BLOB_UNKNOWN: blob unknown to registry\n"
        result = ocimerge.create(inputs, tags=[f"{reg.host}/team/rel:1"])
        assert result.pushed[0].tags == ("1",)
        refused = http.delete(f"/v2/team/rel/manifests/{result.index.descriptor.digest}")
        assert (refused.status_code, refused.text) == (405, "405 UNSUPPORTED: The operation is unsupported.\n")
        some_blob = next(r[1] for r in reg.requests() if r[0] == "HEAD" and "/blobs/" in r[1])
        assert http.delete(some_blob).status_code == 405


# -- faults ---------------------------------------------------------------------------------------


def test_fail_with_retry_after_and_plain_text_429(inputs: list[str]) -> None:
    """[TESTREG-8] A 503 on the index PUT and a plain-text 429 with Retry-After on a blob:
    ocimerge waits and sends them again; the log shows the refusals."""
    with Registry(behaviour=Behaviour(json_errors=False)) as reg:
        reg.faults.fail("PUT", "/manifests/1", 503)
        reg.faults.fail("PUT", "/blobs/uploads/", 429, retry_after=0)
        options = RegistryOptions(retry=FAST_RETRY)
        result = ocimerge.create(inputs, tags=[f"{reg.host}/team/f:1"], registry_options=options)
        assert result.pushed[0].tags == ("1",)
        statuses = [(m, status) for m, path, status in reg.requests() if m == "PUT"]
        assert ("PUT", 503) in statuses
        assert ("PUT", 429) in statuses
        assert statuses[-1] == ("PUT", 201)
        with httpx.Client(base_url=reg.url) as http:
            reg.faults.fail("GET", "/v2/", 429, retry_after=7, times=2)
            for _ in range(2):
                limited = http.get("/v2/")
                assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
                assert limited.text.startswith("429 TOOMANYREQUESTS")
            assert http.get("/v2/").status_code == 200


def test_fail_nth_and_drop_after(inputs: list[str]) -> None:
    """[TESTREG-8] The n-th request from now fails whatever it is; a dropped connection
    (after N body bytes) is logged with status 0, and ocimerge sends the blob again."""
    with Registry() as reg, httpx.Client(base_url=reg.url) as http:
        reg.faults.fail_nth(2, 500)
        assert http.get("/v2/").status_code == 200
        assert http.get("/v2/").status_code == 500
        assert http.get("/v2/").status_code == 200
        started = http.post("/v2/team/drop/blobs/uploads/")
        reg.faults.drop_after("PATCH", "/team/drop/", 70_000)
        with pytest.raises(httpx.TransportError):
            http.patch(started.headers["location"], content=os.urandom(200_000), headers={"Content-Range": "0-199999"})
        assert reg.requests()[-1][2] == 0
        # [TESTREG-3] a request cut short leaves the session as it was: it goes on from 0
        status = http.get(started.headers["location"])
        assert (status.status_code, status.headers["range"]) == (204, "0-0")
        data = os.urandom(1000)
        patched = http.patch(status.headers["location"], content=data, headers={"Content-Range": "0-999"})
        assert patched.status_code == 202
        assert http.put(closing(patched.headers["location"], digest(data))).status_code == 201
        reg.faults.drop_after("PUT", "/blobs/uploads/", 10)
        options = RegistryOptions(retry=FAST_RETRY)
        result = ocimerge.create(inputs, tags=[f"{reg.host}/team/drop:1"], registry_options=options)
        assert result.pushed[0].tags == ("1",)
        assert [r for r in reg.requests() if r[2] == 0 and r[0] == "PUT"]


# -- storage, standalone --------------------------------------------------------------------------


def test_directory_storage_survives_a_restart(tmp_path: Path, inputs: list[str]) -> None:
    """[TESTREG-2] Blobs, manifests and tags are kept in the directory; sessions are not."""
    with Registry(storage=tmp_path / "store") as reg:
        result = ocimerge.create(inputs, tags=[f"{reg.host}/team/keep:1"])
        with httpx.Client(base_url=reg.url) as http:
            session = http.post("/v2/team/keep/blobs/uploads/").headers["location"].split(reg.host, 1)[1]
    with Registry(storage=tmp_path / "store") as again, httpx.Client(base_url=again.url) as http:
        assert ocimerge.inspect(f"{again.host}/team/keep:1").raw() == result.index.raw
        assert http.get("/v2/team/keep/tags/list").json()["tags"] == ["1"]
        assert http.get("/v2/_catalog").json() == {"repositories": ["team/keep"]}
        assert http.get(session).status_code == 404
        before = len(again.requests())
        ocimerge.create(inputs, tags=[f"{again.host}/team/keep:1"])
        assert [r for r in again.requests()[before:] if r[0] in ("POST", "PUT", "PATCH")] == []


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_standalone_prints_its_address_and_exits_0_on_a_signal(tmp_path: Path, stop: signal.Signals) -> None:
    """[TESTREG-12] python -m ocimerge.testing: the address on stdout, /v2/ answers, SIGINT or SIGTERM ends it with 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ocimerge.testing", "--storage", str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        assert address.startswith("127.0.0.1:")
        assert httpx.get(f"http://{address}/v2/").status_code == 200
        with httpx.Client(base_url=f"http://{address}") as http:
            push_blob(http, "team/cli", b"kept")
        process.send_signal(stop)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert any((tmp_path / "s" / "blobs" / "sha256").iterdir())


def test_import_ocimerge_leaves_the_test_registry_out() -> None:
    """[TESTREG-1] ``import ocimerge`` does not import ocimerge.testing (nor http.server)."""
    code = "import sys, ocimerge; print(sorted(m for m in sys.modules if m.startswith(('ocimerge.testing', 'http.server'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


# -- skopeo, a foreign client ---------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["anonymous", "basic", "token"])
def test_skopeo_copies_in_and_out_with_digests_preserved(mode: str, tmp_path: Path, inputs: list[str]) -> None:
    """[TESTREG-1][TESTREG-5][TESTREG-6] skopeo copy --all of an archive ocimerge wrote, into the
    registry and back into an OCI layout, anonymous, with Basic auth and with Bearer tokens
    (skopeo's GET token form): every digest preserved."""
    auth = {"anonymous": None, "basic": BasicAuth(USERS), "token": TokenAuth(USERS, ACL)}[mode]
    with Registry(auth=auth) as reg:
        skopeo_round_trip(reg, tmp_path, inputs, [] if auth is None else ["--src-creds", "alice:alice-pw"])
        if mode == "token":
            assert {m for m, _p, _s in reg.token_requests()} == {"GET"}


def skopeo_round_trip(reg: Registry, tmp_path: Path, inputs: list[str], creds: list[str]) -> None:
    skopeo = shutil.which("skopeo")
    assert skopeo is not None, "skopeo is not installed: apt-get install skopeo"
    archive = tmp_path / "multi.tar"
    created = ocimerge.create(inputs, str(archive))
    common = [skopeo, "--insecure-policy", "copy", "--all", "--preserve-digests"]
    flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
    dest_creds = ["--dest-creds", creds[1]] if creds else []
    into = subprocess.run(
        [*common, *flags, *dest_creds, f"oci-archive:{archive}", f"docker://{reg.host}/team/skopeo:1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert into.returncode == 0, into.stderr
    out = tmp_path / "back"
    back = subprocess.run(
        [*common, *flags, *creds, f"docker://{reg.host}/team/skopeo:1", f"oci:{out}:1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert back.returncode == 0, back.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(created.index.descriptor.digest)
    options = RegistryOptions(username="alice", password="alice-pw") if creds else None
    with Client(reg.host, options) as client:
        stored = client.manifest_get(ocimerge.Reference.parse(f"{reg.host}/team/skopeo:1"))
    assert stored.raw == created.index.raw
    for child in json.loads(created.index.raw)["manifests"]:
        data = (out / "blobs" / "sha256" / child["digest"].split(":")[1]).read_bytes()
        assert digest(data) == child["digest"]


def test_the_readme_example_is_the_file_the_suite_runs() -> None:
    """[TESTREG-12] The README's pytest example is tests/test_readme_testing_example.py, byte for byte."""
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing your own registry tooling with ocimerge.testing", 1)[1]
    block = section.split("```python\n", 1)[1].split("```\n", 1)[0]
    assert block == (root / "tests" / "test_readme_testing_example.py").read_text(encoding="utf-8")


def test_ocimerge_doctor_sees_every_knob() -> None:
    """[TESTREG-7][TESTREG-6] ``ocimerge doctor`` against the registry with Bearer auth and
    every knob turned: each shows up as a registry that does it would show it."""
    from ocimerge.doctor import Outcome, diagnose

    behaviour = Behaviour(deletion=False, max_request=2 * 1024 * 1024, referrers=False, chunk_min_length=4096)
    with Registry(auth=TokenAuth({"alice": "pw"}, {"alice": [("*", "*")]}), behaviour=behaviour) as reg:
        with Client(reg.host, RegistryOptions(username="alice", password="pw")) as client:
            report = diagnose(client, "team/doctor", max_probe_body=4 * 1024 * 1024)
        outcomes = {check.name: check.outcome for check in report.checks}
        assert outcomes["authentication"] is Outcome.YES
        assert report.check("authentication").value == "bearer"
        assert outcomes["tokenGet"] is outcomes["tokenPost"] is Outcome.YES
        assert outcomes["anonymousPull"] is Outcome.NO
        assert "OCI-Chunk-Min-Length 4096" in report.check("chunkedUpload").detail
        assert outcomes["requestLimit"] is Outcome.YES
        assert outcomes["referrers"] is outcomes["manifestDeletion"] is Outcome.NO
        assert outcomes["crossRepositoryMount"] is outcomes["ociIndex"] is Outcome.YES


def test_locations_follow_the_host_the_client_addressed(http: httpx.Client) -> None:
    """[TESTREG-3] An absolute upload Location is built from the request's Host (or a proxy's
    X-Forwarded-Host/-Proto), as Distribution builds it, so a proxy in front stays in the path."""
    through = http.post("/v2/team/h/blobs/uploads/", headers={"Host": "proxy.example:8080"})
    assert through.headers["location"].startswith("http://proxy.example:8080/v2/team/h/blobs/uploads/")
    forwarded = http.post(
        "/v2/team/h/blobs/uploads/", headers={"X-Forwarded-Host": "edge.example", "X-Forwarded-Proto": "https"}
    )
    assert forwarded.headers["location"].startswith("https://edge.example/v2/team/h/blobs/uploads/")
