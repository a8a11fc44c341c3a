"""Tables and properties for the pure value types: Digest, Platform, Reference, Descriptor."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocimerge.errors import DocumentError, UsageError
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference

HEX64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
HEX128 = st.text(alphabet="0123456789abcdef", min_size=128, max_size=128)

# -- Digest -------------------------------------------------------------------------------


@given(st.one_of(HEX64.map(lambda h: f"sha256:{h}"), HEX128.map(lambda h: f"sha512:{h}")))
def test_digest_round_trips(text: str) -> None:
    digest = Digest.parse(text)
    assert str(digest) == text
    assert Digest.parse(str(digest)) == digest


@given(st.binary(max_size=4096))
def test_digest_of_equals_hashlib(data: bytes) -> None:
    assert str(Digest.of(data)) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert Digest.of(data, "sha512").encoded == hashlib.sha512(data).hexdigest()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sha256:" + "A" * 64, "uppercase hex"),
        ("sha256:" + "a" * 63, "too short"),
        ("sha256:" + "a" * 65, "too long"),
        ("sha512:" + "a" * 64, "sha512 needs 128"),
        ("md5:" + "a" * 32, "unsupported algorithm"),
        ("blake3:" + "a" * 64, "not verifiable here"),
        ("sha256" + "a" * 64, "no colon"),
        ("SHA256:" + "a" * 64, "uppercase algorithm"),
        ("", "empty"),
        ("sha256:", "empty hex"),
    ],
)
def test_digest_rejects(text: str, reason: str) -> None:
    with pytest.raises(DocumentError):
        Digest.parse(text)


# -- Platform -----------------------------------------------------------------------------

NORMALISATION = [
    ("linux/x86_64", "linux/amd64"),
    ("linux/x86-64", "linux/amd64"),
    ("linux/amd64/v1", "linux/amd64"),
    ("linux/amd64/v3", "linux/amd64/v3"),
    ("linux/aarch64", "linux/arm64/v8"),
    ("linux/arm64", "linux/arm64/v8"),
    ("linux/arm64/8", "linux/arm64/v8"),
    ("linux/arm64/v8.0", "linux/arm64/v8"),
    ("linux/arm64/9", "linux/arm64/v9"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/7", "linux/arm/v7"),
    ("linux/arm/5", "linux/arm/v5"),
    ("linux/i386", "linux/386"),
    ("macos/arm64", "darwin/arm64/v8"),
    ("Linux/AMD64", "linux/amd64"),
    ("linux/ppc64le", "linux/ppc64le"),
    ("linux/s390x", "linux/s390x"),
    ("linux/riscv64", "linux/riscv64"),
]


@pytest.mark.parametrize(("given_", "normal"), NORMALISATION)
def test_platform_normalisation(given_: str, normal: str) -> None:
    platform = Platform.parse(given_)
    assert str(platform.normalized()) == normal
    assert platform == Platform.parse(normal)
    assert hash(platform) == hash(Platform.parse(normal))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("linux/arm/v6", "linux/arm/v7"),
        ("linux/arm64", "linux/amd64"),
        ("linux/amd64", "windows/amd64"),
        ("linux/amd64/v2", "linux/amd64"),
    ],
)
def test_platforms_that_differ(a: str, b: str) -> None:
    assert Platform.parse(a) != Platform.parse(b)


def test_platform_os_version_and_features_count() -> None:
    a = Platform("windows", "amd64", os_version="10.0.17763.1")
    b = Platform("windows", "amd64", os_version="10.0.20348.1")
    assert a != b
    c = Platform("windows", "amd64", os_features=("win32k", "win32k"))
    assert c == Platform("windows", "amd64", os_features=("win32k",))


@pytest.mark.parametrize(
    "bad",
    ["linux", "linux/", "/amd64", "linux/arm/v7/x", "linux amd64", "", "windows/amd64:", "windows/amd64:a b", ":10.0"],
)
def test_platform_parse_rejects(bad: str) -> None:
    with pytest.raises(UsageError):
        Platform.parse(bad)


COMPONENT = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,10}", fullmatch=True)


@given(COMPONENT, COMPONENT, st.one_of(st.just(""), COMPONENT))
def test_platform_round_trips(os_: str, arch: str, variant: str) -> None:
    text = f"{os_}/{arch}" + (f"/{variant}" if variant else "")
    platform = Platform.parse(text)
    assert str(platform) == text
    assert Platform.from_json(platform.to_json()) == platform
    # normalisation is idempotent and preserves equality
    assert platform.normalized().normalized().key == platform.normalized().key
    assert platform.normalized() == platform


@given(st.lists(st.sampled_from([p for p, _ in NORMALISATION]), min_size=2))
def test_platform_sort_is_total_and_stable(texts: list[str]) -> None:
    platforms = [Platform.parse(t) for t in texts]
    backwards = list(platforms)
    backwards.reverse()
    assert [p.key for p in sorted(backwards)] == [p.key for p in sorted(platforms)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("windows/amd64:10.0.17763.5329", Platform("windows", "amd64", os_version="10.0.17763.5329")),
        ("windows/arm64/v8:10.0.26100", Platform("windows", "arm64", "v8", os_version="10.0.26100")),
        ("linux/amd64", Platform("linux", "amd64")),
    ],
)
def test_platform_parse_os_version(text: str, expected: Platform) -> None:
    """[PLATFORM-7] ``:os.version`` after os/arch[/variant]; the str() shows it in parentheses."""
    parsed = Platform.parse(text)
    assert parsed == expected
    assert parsed.os_version == expected.os_version


@pytest.mark.parametrize(
    ("wanted", "image", "matches"),
    [
        ("windows/amd64", Platform("windows", "amd64", os_version="10.0.17763.5329"), True),
        ("windows/amd64", Platform("windows", "amd64", os_version="10.0.20348.2227"), True),
        ("windows/amd64", Platform("windows", "amd64", os_features=("win32k",)), True),
        ("windows/amd64:10.0.17763.5329", Platform("windows", "amd64", os_version="10.0.17763.5329"), True),
        ("windows/amd64:10.0.17763.5329", Platform("windows", "amd64", os_version="10.0.20348.2227"), False),
        ("windows/amd64:10.0.17763.5329", Platform("windows", "amd64"), False),
        ("windows/amd64", Platform("windows", "arm64", os_version="10.0.17763.5329"), False),
        ("linux/arm64", Platform("linux", "aarch64", "v8"), True),
        ("linux/arm/v6", Platform("linux", "arm"), False),
        ("linux/amd64", Platform("windows", "amd64"), False),
    ],
)
def test_platform_matches(wanted: str, image: Platform, matches: bool) -> None:
    """[PLATFORM-7] A wanted platform asks only for what it names; equality stays exact."""
    assert Platform.parse(wanted).matches(image) is matches
    assert image.matches_any([Platform("plan9", "mips"), Platform.parse(wanted)]) is matches


@given(COMPONENT, COMPONENT, st.one_of(st.just(""), COMPONENT))
def test_platform_matches_itself(os_: str, arch: str, os_version: str) -> None:
    platform = Platform(os_, arch, os_version=os_version)
    assert platform.matches(platform)
    assert Platform(os_, arch).matches(platform)


def test_platform_variant_filled_from_descriptor() -> None:
    config = Platform("linux", "arm64")
    assert config.with_variant_from(Platform("linux", "arm64", "v8")).variant == "v8"
    assert config.with_variant_from(Platform("linux", "amd64", "v2")).variant == ""


# -- Reference ----------------------------------------------------------------------------

REFERENCES = [
    ("ubuntu", "docker.io", "library/ubuntu", "latest", "ubuntu:latest"),
    ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", "ubuntu:22.04"),
    ("acme/app:1.0", "docker.io", "acme/app", "1.0", "acme/app:1.0"),
    ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", "busybox:latest"),
    ("localhost:5000/team/app:v1", "localhost:5000", "team/app", "v1", "localhost:5000/team/app:v1"),
    ("localhost/app", "localhost", "app", "latest", "localhost/app:latest"),
    ("ghcr.io/o/r/s:t", "ghcr.io", "o/r/s", "t", "ghcr.io/o/r/s:t"),
    ("127.0.0.1:5000/a", "127.0.0.1:5000", "a", "latest", "127.0.0.1:5000/a:latest"),
    ("[::1]:5000/a:b", "[::1]:5000", "a", "b", "[::1]:5000/a:b"),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "familiar"), REFERENCES)
def test_reference_parse(text: str, registry: str, repository: str, tag: str, familiar: str) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert ref.familiar == familiar
    assert Reference.parse(str(ref)) == ref


def test_reference_with_digest_has_no_default_tag() -> None:
    ref = Reference.parse("quay.io/a/b@sha256:" + "0" * 64)
    assert ref.tag is None
    assert str(ref.digest) == "sha256:" + "0" * 64


@pytest.mark.parametrize("bad", ["acme/UPPER", "a/b:bad tag", "a@sha256:xyz", "a//b", "-a/b", "a/b:" + "x" * 129])
def test_reference_rejects(bad: str) -> None:
    with pytest.raises(UsageError):
        Reference.parse(bad)


@given(
    st.sampled_from(["docker.io", "ghcr.io", "localhost:5000", "registry.example.com:443"]),
    st.lists(st.from_regex(r"[a-z0-9]+(?:[._-][a-z0-9]+)?", fullmatch=True), min_size=1, max_size=3),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)
def test_reference_round_trips(registry: str, path: list[str], tag: str) -> None:
    repository = "/".join(path)
    if registry == "docker.io" and "/" not in repository:
        repository = f"library/{repository}"
    ref = Reference.parse(f"{registry}/{repository}:{tag}")
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar) == ref


# -- Descriptor ---------------------------------------------------------------------------


@given(
    st.binary(max_size=64),
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3),
)
def test_descriptor_round_trips(data: bytes, annotations: dict[str, str]) -> None:
    d = Descriptor(
        "application/octet-stream",
        Digest.of(data),
        len(data),
        annotations=annotations,
        platform=Platform("linux", "arm", "v7"),
    )
    assert Descriptor.from_json(d.to_json()) == d


@pytest.mark.parametrize(
    "value",
    [
        {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": -1},
        {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": "1"},
        {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": True},
        {"mediaType": "", "digest": "sha256:" + "a" * 64, "size": 1},
        {"mediaType": "x", "digest": "nope", "size": 1},
        {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": 1, "annotations": {"a": 1}},
        {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": 1, "platform": {"os": "linux"}},
        ["not", "an", "object"],
    ],
)
def test_descriptor_rejects(value: object) -> None:
    with pytest.raises(DocumentError):
        Descriptor.from_json(value)
