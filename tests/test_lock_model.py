"""The pure half of a release lock: image lists, the lock codec, comparing, filtering [LOCK-1] .. [LOCK-5]."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocimerge.errors import DocumentError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.lock import (
    LOCK_VERSION,
    Lock,
    LockChange,
    LockedImage,
    LockedPlatform,
    compare_locks,
    filter_index,
    parse_image_list,
)
from ocimerge.model.manifest import Document, ImageIndex
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference


def d(n: int) -> Digest:
    return Digest.of(b"%d" % n)


# -- [LOCK-1] the image list ------------------------------------------------------------------

GOOD_LISTS = [
    ("redis:7\n", [("docker.io/library/redis:7", [], 1)]),
    ("redis\n", [("docker.io/library/redis:latest", [], 1)]),
    ("# a comment\n\n   \nredis:7  # trailing\n", [("docker.io/library/redis:7", [], 4)]),
    (
        "ghcr.io/acme/app:1.4 linux/amd64,linux/arm64/v8\n",
        [("ghcr.io/acme/app:1.4", ["linux/amd64", "linux/arm64/v8"], 1)],
    ),
    ("a:1 linux/amd64\n\tb:2\n", [("docker.io/library/a:1", ["linux/amd64"], 1), ("docker.io/library/b:2", [], 2)]),
    (
        f"app@sha256:{'a' * 64} linux/arm/v7\n",
        [(f"docker.io/library/app@sha256:{'a' * 64}", ["linux/arm/v7"], 1)],
    ),
    ("app:1 linux/amd64,\n", [("docker.io/library/app:1", ["linux/amd64"], 1)]),
    ("app:1\r\napp:2\r\n", [("docker.io/library/app:1", [], 1), ("docker.io/library/app:2", [], 2)]),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_LISTS)
def test_image_lists_parse(text: str, expected: list[tuple[str, list[str], int]]) -> None:
    lines = parse_image_list(text)
    assert [(str(x.reference), [str(p) for p in x.platforms], x.line) for x in lines] == expected


BAD_LISTS = [
    ("empty", "", "images.txt: no image references in it"),
    ("only comments", "# nothing\n\n#x\n", "images.txt: no image references in it"),
    ("bad reference", "redis:7\nUPPER/Case:1\n", "images.txt:2: "),
    ("bad tag", "redis:-bad\n", "images.txt:1: "),
    ("bad platform", "redis:7 linux\n", "images.txt:1: "),
    ("bad platform char", "redis:7 linux/am$d64\n", "images.txt:1: "),
    (
        "too many fields",
        "redis:7 linux/amd64 linux/arm64\n",
        "images.txt:1: expected 'REF [PLATFORM[,PLATFORM...]]', found 3",
    ),
    ("duplicate", "redis:7\n\nredis:7\n", "images.txt:3: docker.io/library/redis:7 is listed already, on line 1"),
    (
        "duplicate normalised",
        "redis\ndocker.io/library/redis:latest\n",
        "images.txt:2: docker.io/library/redis:latest is listed already",
    ),
    (
        "duplicate platform",
        "redis:7 linux/arm64,linux/arm64/v8\n",
        "images.txt:1: platform linux/arm64/v8 is listed twice",
    ),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in BAD_LISTS], ids=[i for i, _, _ in BAD_LISTS])
def test_bad_image_lists_name_the_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_image_list(text, where="images.txt")
    assert str(caught.value).startswith(message)


def test_an_image_list_too_long_is_refused() -> None:
    text = "".join(f"app:{i}\n" for i in range(10_001))
    with pytest.raises(UsageError, match="more than 10000 images"):
        parse_image_list(text)


# -- [LOCK-2][LOCK-3] the lock and its file ---------------------------------------------------

AMD64 = LockedPlatform(Platform.parse("linux/amd64"), d(1), mt.OCI_MANIFEST, 401, 1000)
ARM64 = LockedPlatform(Platform.parse("linux/arm64/v8"), d(2), mt.OCI_MANIFEST, 402, 2000)
REDIS = LockedImage(Reference.parse("redis:7"), d(10), mt.OCI_INDEX, 900, (AMD64, ARM64), d(10))
LOCK = Lock((REDIS,))


def test_a_lock_round_trips_as_bytes() -> None:
    raw = LOCK.encode()
    assert raw.endswith(b"}\n")
    assert Lock.parse(raw) == LOCK
    assert Lock.parse(raw).encode() == raw
    assert json.loads(raw) == {
        "version": 1,
        "images": [
            {
                "reference": "docker.io/library/redis:7",
                "digest": str(d(10)),
                "mediaType": mt.OCI_INDEX,
                "size": 900,
                "bundled": str(d(10)),
                "platforms": [
                    {
                        "platform": {"architecture": "amd64", "os": "linux"},
                        "digest": str(d(1)),
                        "mediaType": mt.OCI_MANIFEST,
                        "size": 401,
                        "contentSize": 1000,
                    },
                    {
                        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                        "digest": str(d(2)),
                        "mediaType": mt.OCI_MANIFEST,
                        "size": 402,
                        "contentSize": 2000,
                    },
                ],
            }
        ],
    }
    assert REDIS.content_size == 3000
    assert LOCK.image("docker.io/library/redis:7") is REDIS
    assert LOCK.image(Reference.parse("redis:7")) is REDIS
    assert LOCK.image("redis:8") is None


ARCHITECTURES = st.sampled_from(["amd64", "arm64", "arm/v7", "arm/v6", "s390x", "ppc64le", "riscv64", "386"])
NAMES = st.from_regex(r"[a-z][a-z0-9]{0,8}(/[a-z][a-z0-9]{0,8})?", fullmatch=True)
TAGS = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
SIZES = st.integers(min_value=0, max_value=2**53)


@st.composite
def locked_images(draw: st.DrawFn) -> LockedImage:
    architectures = draw(st.lists(ARCHITECTURES, unique=True, max_size=4))
    platforms = tuple(
        LockedPlatform(
            Platform.parse(f"linux/{a}"),
            d(draw(st.integers(0, 10**6))),
            draw(st.sampled_from([mt.OCI_MANIFEST, mt.DOCKER_MANIFEST])),
            draw(SIZES),
            draw(SIZES),
        )
        for a in architectures
    )
    return LockedImage(
        Reference.parse(f"{draw(NAMES)}:{draw(TAGS)}"),
        d(draw(st.integers(0, 10**6))),
        draw(st.sampled_from([mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST])),
        draw(SIZES),
        platforms,
        d(draw(st.integers(0, 10**6))),
    )


@given(st.lists(locked_images(), max_size=5, unique_by=lambda i: str(i.reference)))
def test_any_lock_round_trips(images: list[LockedImage]) -> None:
    lock = Lock(tuple(images))
    raw = lock.encode()
    assert Lock.parse(raw) == lock
    assert Lock.parse(raw).encode() == raw
    assert compare_locks(lock, lock) == ()


def _mutated(change: Any) -> bytes:
    value = LOCK.to_json()
    change(value)
    return json.dumps(value).encode()


def _set(path: tuple[Any, ...], new: Any) -> Any:
    def change(value: Any) -> None:
        for key in path[:-1]:
            value = value[key]
        value[path[-1]] = new

    return change


def _delete(path: tuple[Any, ...]) -> Any:
    def change(value: Any) -> None:
        for key in path[:-1]:
            value = value[key]
        del value[path[-1]]

    return change


def _twice(key: str) -> Any:
    def change(value: Any) -> None:
        if key == "images":
            value["images"].append(value["images"][0])
        else:
            value["images"][0]["platforms"].append(value["images"][0]["platforms"][0])

    return change


IMAGE = ("images", 0)
PLATFORM = ("images", 0, "platforms", 1)
BAD_LOCKS = [
    ("version 2", _set(("version",), 2), "lock file: not an ocimerge lock of version 1 (version 2)"),
    ("version true", _set(("version",), True), "lock file: not an ocimerge lock of version 1 (version True)"),
    ("version 1.0", _set(("version",), 1.0), "lock file: not an ocimerge lock of version 1 (version 1.0)"),
    ("version text", _set(("version",), "1"), "lock file: not an ocimerge lock of version 1 (version '1')"),
    ("no version", _delete(("version",)), "lock file: not an ocimerge lock of version 1 (version None)"),
    ("images object", _set(("images",), {}), "lock file: 'images' must be a list"),
    ("image not object", _set(IMAGE, "redis"), "lock file: images[0]: must be an object"),
    ("missing digest", _delete((*IMAGE, "digest")), "lock file: images[0]: 'digest' must be a string"),
    ("missing bundled", _delete((*IMAGE, "bundled")), "lock file: images[0]: 'bundled' must be a string"),
    ("missing platforms", _delete((*IMAGE, "platforms")), "lock file: images[0]: 'platforms' must be a list"),
    ("size text", _set((*IMAGE, "size"), "900"), "lock file: images[0]: 'size' must be a non-negative integer"),
    ("size bool", _set((*IMAGE, "size"), True), "lock file: images[0]: 'size' must be a non-negative integer"),
    ("size negative", _set((*IMAGE, "size"), -1), "lock file: images[0]: 'size' must be a non-negative integer"),
    ("media type number", _set((*IMAGE, "mediaType"), 3), "lock file: images[0]: 'mediaType' must be a string"),
    ("bad digest", _set((*IMAGE, "digest"), "sha256:abc"), "lock file: images[0]: 'digest': invalid sha256 digest"),
    ("bad bundled", _set((*IMAGE, "bundled"), "md5:x"), "lock file: images[0]: 'bundled': "),
    ("bad reference", _set((*IMAGE, "reference"), "Foo:1"), "lock file: images[0]: 'reference': "),
    (
        "reference twice",
        _twice("images"),
        "lock file: images[1]: 'reference': docker.io/library/redis:7 is locked twice",
    ),
    ("platform not object", _set(PLATFORM, []), "lock file: images[0]: platforms[1]: must be an object"),
    ("platform missing", _delete((*PLATFORM, "platform")), "lock file: images[0]: platforms[1]: platform: "),
    ("platform bad", _set((*PLATFORM, "platform"), {"os": "linux"}), "lock file: images[0]: platforms[1]: platform: "),
    (
        "platform twice",
        _twice("platforms"),
        "lock file: images[0]: platforms[2]: 'platform': linux/amd64 is locked twice",
    ),
    (
        "content size missing",
        _delete((*PLATFORM, "contentSize")),
        "lock file: images[0]: platforms[1]: 'contentSize' must be a non-negative integer",
    ),
    (
        "platform digest bad",
        _set((*PLATFORM, "digest"), "sha256:" + "A" * 64),
        "lock file: images[0]: platforms[1]: 'digest': ",
    ),
]


@pytest.mark.parametrize(("change", "message"), [(c, m) for _, c, m in BAD_LOCKS], ids=[i for i, _, _ in BAD_LOCKS])
def test_bad_locks_name_the_field(change: Any, message: str) -> None:
    with pytest.raises(DocumentError) as caught:
        Lock.parse(_mutated(change))
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("raw", [b"", b"[]", b"{", b'"lock"', b"null"])
def test_not_a_lock_at_all(raw: bytes) -> None:
    with pytest.raises(DocumentError):
        Lock.parse(raw, where="images.lock")


def test_unknown_fields_are_ignored() -> None:
    value = LOCK.to_json()
    value["generator"] = "ocimerge"
    value["images"][0]["note"] = "x"
    assert Lock.parse(json.dumps(value).encode()) == LOCK
    assert LOCK_VERSION == 1


# -- [LOCK-4] comparing locks ----------------------------------------------------------------


def test_compare_locks_added_removed_moved() -> None:
    s390x = LockedPlatform(Platform.parse("linux/s390x"), d(3), mt.OCI_MANIFEST, 403, 3000)
    amd64 = LockedPlatform(Platform.parse("linux/amd64"), d(4), mt.OCI_MANIFEST, 401, 1000)
    moved = LockedImage(REDIS.reference, d(11), mt.OCI_INDEX, 950, (amd64, ARM64, s390x), d(11))
    app = LockedImage(Reference.parse("ghcr.io/acme/app:1.4"), d(1), mt.OCI_MANIFEST, 401, (AMD64,), d(1))
    gone = LockedImage(Reference.parse("nginx:1"), d(20), mt.OCI_INDEX, 900, (AMD64,), d(20))
    changes = compare_locks(Lock((REDIS, gone)), Lock((app, moved)))
    assert changes == (
        LockChange("ghcr.io/acme/app:1.4", "added", f"{d(1).short}, 1 platform(s)"),
        LockChange(
            "docker.io/library/redis:7",
            "moved",
            f"{d(10).short} -> {d(11).short}; linux/amd64 changed; linux/s390x added",
        ),
        LockChange("docker.io/library/nginx:1", "removed", f"was {d(20).short}"),
    )
    assert str(changes[2]) == f"docker.io/library/nginx:1: removed: was {d(20).short}"


def test_compare_locks_a_new_platform_subset_is_a_move() -> None:
    """Same tag digest, fewer platforms kept: the bundle holds another document."""
    subset = LockedImage(REDIS.reference, REDIS.digest, REDIS.media_type, REDIS.size, (AMD64,), d(99))
    (change,) = compare_locks(LOCK, Lock((subset,)))
    assert (change.kind, change.detail) == ("moved", f"{d(10).short} -> {d(10).short}; linux/arm64/v8 removed")
    assert compare_locks(LOCK, Lock((REDIS,))) == ()


# -- [LOCK-5] filter_index --------------------------------------------------------------------


def image(n: int, platform: str, media_type: str = mt.OCI_MANIFEST) -> Descriptor:
    return Descriptor(media_type, d(n), 400 + n, platform=Platform.parse(platform))


def attestation(n: int, of: int) -> Descriptor:
    return Descriptor(
        mt.OCI_MANIFEST,
        d(n),
        500 + n,
        platform=Platform.parse("unknown/unknown"),
        annotations={"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": str(d(of))},
    )


INDEX = Document.author(
    ImageIndex(
        manifests=(
            image(1, "linux/amd64"),
            attestation(11, 1),
            image(2, "linux/arm64/v8"),
            image(3, "linux/s390x"),
            attestation(12, 2),
            attestation(13, 3),
        ),
        annotations={"org.opencontainers.image.created": "2026-12-03"},
    )
)


@pytest.mark.parametrize(
    "platforms",
    [[], ["linux/amd64", "linux/arm64", "linux/s390x"], ["linux/s390x", "linux/aarch64", "linux/amd64"]],
)
def test_filter_index_keeping_all_is_the_same_document(platforms: list[str]) -> None:
    kept = filter_index(INDEX, [Platform.parse(p) for p in platforms])
    assert kept is INDEX
    assert kept.raw == INDEX.raw


def test_filter_index_a_subset_is_a_new_document_in_order() -> None:
    kept = filter_index(INDEX, [Platform.parse("linux/s390x"), Platform.parse("linux/amd64")])
    assert [e.digest for e in kept.value.manifests] == [d(1), d(11), d(3), d(13)]
    assert kept.value.manifests[1] == INDEX.value.manifests[1]  # descriptors kept exactly
    assert kept.value.annotations == INDEX.value.annotations
    assert kept.descriptor.media_type == mt.OCI_INDEX
    assert kept.descriptor.digest != INDEX.descriptor.digest
    assert kept.descriptor.digest == Digest.of(kept.raw)
    assert kept.descriptor.size == len(kept.raw)
    # the canonical encoder: the same subset, the same bytes
    again = filter_index(INDEX, [Platform.parse("linux/amd64"), Platform.parse("linux/s390x")])
    assert again.raw == kept.raw


def test_filter_index_keeps_a_docker_list_a_docker_list() -> None:
    docker = Document.author(
        ImageIndex(
            manifests=(image(1, "linux/amd64", mt.DOCKER_MANIFEST), image(2, "linux/arm64", mt.DOCKER_MANIFEST)),
            media_type=mt.DOCKER_MANIFEST_LIST,
        )
    )
    kept = filter_index(docker, [Platform.parse("linux/arm64")])
    assert kept.descriptor.media_type == mt.DOCKER_MANIFEST_LIST
    assert [e.digest for e in kept.value.manifests] == [d(2)]


@pytest.mark.parametrize(
    ("wanted", "named"), [(["linux/ppc64le"], "linux/ppc64le"), (["linux/amd64", "windows/amd64"], "windows/amd64")]
)
def test_filter_index_a_missing_platform_is_a_usage_error(wanted: list[str], named: str) -> None:
    with pytest.raises(UsageError) as caught:
        filter_index(INDEX, [Platform.parse(p) for p in wanted])
    message = str(caught.value)
    assert f"has no {named} (it has linux/amd64, linux/arm64/v8, linux/s390x)" in message
    assert INDEX.descriptor.digest.short in message


def test_filter_index_an_attestation_platform_is_not_an_image() -> None:
    with pytest.raises(UsageError, match="has no unknown/unknown"):
        filter_index(INDEX, [Platform.parse("unknown/unknown")])
