"""ocimerge against the real-world corpus in /work/shared/corpus (see its README.md).

Every expected value below comes from the corpus README (the independent source) or, where
the README is silent, from reading the artifact with ``tarfile``/``json`` only (marked
"(artifact)" in the tables). Nothing is copied into the repository: artifacts are read in
place. Tests marked ``xfail(strict=True)`` document a disagreement between the README and the
code that was judged a code defect; the reason names it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import ocimerge
from ocimerge import ImageSet, Platform
from ocimerge.model import mediatype as mt
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import (
    ImageIndex,
    ImageManifest,
    decode_config,
    decode_manifest_or_index,
)

# The corpus sits beside the repository (../shared/corpus), in a developer's checkout and in
# CI's clone alike; OCIMERGE_CORPUS points elsewhere. Missing, it fails the run: a suite that
# skipped it would pass without reading one real archive.
CORPUS = Path(os.environ.get("OCIMERGE_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus")
if not CORPUS.is_dir():
    pytest.fail(f"real-world corpus {CORPUS} is not there; set OCIMERGE_CORPUS to its path", pytrace=False)

LAYOUT = "layout"  # images come from an OCI layout (dir or tar): stored manifest bytes
DOCKER = "docker"  # images come from a docker-save manifest.json: the manifest is authored

REF_TYPE = "vnd.docker.reference.type"
REF_DIGEST = "vnd.docker.reference.digest"

BUSYBOX_INDEX = "sha256:6d9ac9237a84afe1516540f40a0fafdc86859b2141954b4d643af7066d598b74"
HELLO_WORLD_LIST = "sha256:faa03e786c97f07ef34423fccceeec2398ec8a5759259f94d99078f264e9d7af"
HELLO_WORLD_ARM64 = "sha256:432f982638b3aefab73cc58ab28f5c16e96fdb504e8c134fc58dff4bae8bf338"
BUILDKIT_CONFIG = "sha256:1772fd0a3b45a62fc5e23737bf8aa63ea2cb178a02e57cec4d14ef9e6fcc4c95"
HELLO_OCI_AMD64 = "sha256:0f90b7af"  # README: hello-oci-gzip.tar's manifest sha256:0f90b7af…
DELETE_LAYOUT = "containers-image/oci-layout/delete_image_multiple_images"
TEST_LINK = "ggcr/tarball/test_link.tar"
SINGULARITY = "singularity/hello-world-cosign-manifest"

ARCHES4 = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6")

# -- tables --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """One source spec and what the README says reading it gives."""

    path: str  # relative to CORPUS
    platforms: tuple[str, ...]  # of the images read, "os/arch[/variant][ (os.version)]"
    kind: str  # LAYOUT or DOCKER
    selector: str = ""  # ":TAG" or "@DIGEST"
    name: str | None = None  # one of the names the entry carries
    layers: int | None = None  # layers of each image
    attestations: int = 0  # attestation manifests of each image
    absent: int = 0  # index entries whose image manifests the source lacks
    absent_platforms: tuple[str, ...] = ()  # named in the README among those absent
    xfail: str | None = None

    @property
    def spec(self) -> str:
        return f"{CORPUS / self.path}{self.selector}"

    @property
    def id(self) -> str:
        return f"{self.path}{self.selector}"


READS: tuple[Read, ...] = (
    # 1. BuildKit / buildx type=oci
    Read(
        "actions-toolkit/oci-archive/hello-oci-multiplatform-gzip.tar",
        ("linux/amd64", "linux/arm64"),
        LAYOUT,
        layers=1,
        attestations=1,
    ),
    Read("actions-toolkit/oci-archive/hello-oci-gzip.tar", ("linux/amd64",), LAYOUT, layers=1),
    Read("dive/test-oci-gzip-image.tar", ("linux/arm64",), LAYOUT, layers=1),
    Read("dive/test-oci-zstd-image.tar", ("linux/arm64",), LAYOUT, layers=1),
    Read("dive/test-oci-estargz-image.tar", ("linux/arm64",), LAYOUT, layers=1),
    Read("dive/test-oci-uncompressed-image.tar", ("linux/arm64",), LAYOUT, layers=1),
    Read(
        "stereoscope/multiplatform_oci_dir",
        ("linux/amd64", "linux/arm64"),
        LAYOUT,
        name="docker.io/library/multi-platform:latest",
    ),
    *(Read("regclient/testrepo", ARCHES4, LAYOUT, selector=f":{t}", name=t) for t in ("b1", "b2", "b3", "v3")),
    # v1: the two unknown/unknown builder entries are not images
    Read("regclient/testrepo", ("linux/amd64", "linux/arm64"), LAYOUT, selector=":v1"),
    # v2: "3 platforms" (README); which three: (artifact)
    Read("regclient/testrepo", ARCHES4[:3], LAYOUT, selector=":v2"),
    # 2. docker save and other docker-load tarballs ("amd64*": platform from the (artifact)
    # config, the README does not state it)
    Read("dive/test-docker-image.tar", ("linux/amd64",), DOCKER, name="dive-test:latest", layers=14),
    Read("osv-scalibr/basic.tar", ("linux/amd64",), DOCKER, name="basic:latest", layers=2),
    Read(
        "containers-image/docker-archive/almostempty.tar", ("linux/amd64",), DOCKER, name="emptyimage:latest", layers=1
    ),  # amd64*
    Read(
        TEST_LINK,
        ("linux/amd64",),
        DOCKER,
        selector=":bazel/v1/tarball:test_image_1",
        name="bazel/v1/tarball:test_image_1",
        layers=1,
    ),
    Read(
        TEST_LINK,
        ("linux/amd64",),
        DOCKER,
        selector=":bazel/v1/tarball:test_image_3",
        name="bazel/v1/tarball:test_image_3",
        layers=2,
    ),
    # the same two images by the tag part alone ([LAYOUT-3] bare-tag matching)
    Read(TEST_LINK, ("linux/amd64",), DOCKER, selector=":test_image_1", name="bazel/v1/tarball:test_image_1", layers=1),
    Read(TEST_LINK, ("linux/amd64",), DOCKER, selector=":test_image_3", name="bazel/v1/tarball:test_image_3", layers=2),
    Read(
        "ggcr/tarball/test_image_1.tar", ("linux/amd64",), DOCKER, name="bazel/v1/tarball:test_image_1", layers=1
    ),  # amd64*
    Read("trivy/alpine-310.tar.gz", ("linux/amd64",), DOCKER, name="alpine:3.10", layers=1),  # amd64*
    # "manifests": null: the images come from manifest.json
    Read("ggcr/tarball/hello-world-v25.tar", ("linux/arm64",), DOCKER, layers=1),
    Read(
        "snyk/docker-archives/docker-save/hello-world.tar",
        ("linux/amd64",),
        LAYOUT,
        name="docker.io/library/hello-world:latest",
        layers=1,
    ),
    Read(
        "snyk/docker-oci-archives/busybox.armv7.tar",
        ("linux/arm/v7",),
        LAYOUT,
        name="docker.io/library/busybox:latest",
        layers=1,
    ),
    Read(
        "snyk/containerd-archives/busybox-single-arch-with-attestation-manifest.tar",
        ("linux/arm64",),
        LAYOUT,
        name="docker.io/foo/bar:v3",
        layers=1,
        attestations=1,
    ),
    Read(
        "snyk/containerd-archives/busybox.amd64.tar",
        ("linux/amd64",),
        LAYOUT,
        name="docker.io/library/busybox:latest",
        layers=1,
        absent=19,
        absent_platforms=("linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm64/v8"),
    ),
    Read(
        "snyk/containerd-archives/alpine.tar", ("linux/amd64",), LAYOUT, name="docker.io/library/alpine:3.14", layers=1
    ),
    *(
        Read(
            path,
            ("linux/amd64",),
            LAYOUT,
            name="docker.io/library/hello-world:latest",
            layers=1,
            absent=10,
            absent_platforms=(
                "linux/arm/v5",
                "linux/arm/v7",
                "linux/arm64/v8",
                "windows/amd64 (10.0.20348.1249)",
                "windows/amd64 (10.0.17763.3650)",
            ),
        )
        for path in ("oras-go/hello-world.tar", "oras-go/hello-world-prefixed-path.tar")
    ),
    Read("snyk/kaniko-archives/kaniko-busybox.tar", ("linux/amd64",), DOCKER, layers=1),  # amd64*
    # lowercase manifest.json keys; the tag is (artifact)
    Read("jib/jib-image.tar", ("linux/amd64",), DOCKER, name="extraction.test:latest", layers=2),  # amd64*
    # 3. OCI layouts written by other tools (tag 2 has an odd media type: see LAYOUT_ENTRIES)
    *(
        Read("ggcr/layout/test_index", ("linux/amd64",), LAYOUT, selector=f":{t}", name=t, layers=1)
        for t in ("1", "3", "4")
    ),  # amd64*
    *(
        Read(DELETE_LAYOUT, ("linux/amd64", "linux/386"), LAYOUT, selector=f":{t}", name=t, layers=1)
        for t in ("latest", "3.18.3", "3.16.7")
    ),
    *(
        Read(DELETE_LAYOUT, ("linux/amd64",), LAYOUT, selector=f":{t}", name=t, layers=1)
        for t in ("3", "3.18", "3.17.5")
    ),
    *(
        Read("oras/e2e-zot-images", (p,), LAYOUT, selector=f":{t}", name=t, layers=1)
        for t, p in (("linux-amd64", "linux/amd64"), ("linux-arm64", "linux/arm64"), ("linux-armv7", "linux/arm/v7"))
    ),
    Read("oras/e2e-zot-images", ARCHES4[:3], LAYOUT, selector=":multi", layers=1),
    # the untagged hello-world manifest, by digest
    Read(SINGULARITY, ("linux/arm64/v8",), LAYOUT, selector=f"@{HELLO_WORLD_ARM64}", layers=1),
    Read("imgutil/busybox", ("linux/amd64",), LAYOUT, layers=1),
    Read("imgutil/busybox-sparse", ("linux/amd64",), LAYOUT, layers=1),  # layer blob absent
    Read("trivy/test.oci", ("linux/amd64",), LAYOUT, layers=1),  # amd64*
    Read("stereoscope/valid-oci.tar", ("linux/amd64",), LAYOUT, name="sample:latest", layers=1),  # amd64*
)


@dataclass(frozen=True)
class Entries:
    """A layout with several index.json entries, described entry by entry with inspect."""

    path: str
    count: int  # index.json entries (README)
    images: dict[str, tuple[str, ...]]  # entry key (its ref name, else its digest) -> platforms
    xfail: str | None = None
    # [REFERRERS-11] entries that are referrers of something the layout holds: listed with
    # their subjects, not as entries of their own
    referrers: int = 0


LAYOUT_ENTRIES: tuple[Entries, ...] = (
    # 7 tags; 1.0.0 has the config size defect and cannot be read
    Entries(
        DELETE_LAYOUT,
        7,
        {
            **dict.fromkeys(("latest", "3.18.3", "3.16.7"), ("linux/amd64", "linux/386")),
            **dict.fromkeys(("3", "3.18", "3.17.5"), ("linux/amd64",)),
        },
    ),
    # entry 2's media type application/vnd.oci.descriptor.v1+json names no manifest
    Entries("ggcr/layout/test_index", 4, dict.fromkeys(("1", "3", "4"), ("linux/amd64",))),
    # linux-*, multi; empty_index, nonjson-config and foobar are not images
    Entries(
        "oras/e2e-zot-images",
        7,
        {
            "linux-amd64": ("linux/amd64",),
            "linux-arm64": ("linux/arm64",),
            "linux-armv7": ("linux/arm/v7",),
            "multi": ARCHES4[:3],
        },
    ),
    Entries("regclient/external", 3, {}),  # artifacts only: "no platforms"
    # 26 entries; images b1-b3, v1-v3 (plus a referrers-fallback '.meta' tag naming v3's
    # index, (artifact)); the rest are artifacts, referrers indexes, builder manifests; 12 of
    # them (artifacts with a subject, sha256-<hex> fallback indexes) are referrers
    Entries(
        "regclient/testrepo",
        26,
        {
            "b1": ARCHES4,
            "b2": ARCHES4,
            "b3": ARCHES4,
            "v3": ARCHES4,
            "v1": ("linux/amd64", "linux/arm64"),
            "v2": ARCHES4[:3],
            "sha256-7ceb9b6bcc274697d0c38be6214b50cec79d601bc61708747d3f6cb772f6c6fa.6fe828b32b9b4572.meta": ARCHES4,
        },
        referrers=12,
    ),
    # the image, and its cosign signature and attestation under _cosign:sha256-<hex>.sig/.att
    Entries(SINGULARITY, 3, {HELLO_WORLD_ARM64: ("linux/arm64/v8",)}, referrers=2),
)


@dataclass(frozen=True)
class Corpus:
    """What the README's Verify column says about the blobs of an OCI layout artifact."""

    path: str
    blobs: int  # blob files stored
    bad: int = 0  # blob files whose content does not hash to their name
    absent: int = 0  # referenced blobs (walked from index.json) not stored
    size_mismatches: int = 0  # present blobs whose size differs from their descriptor


LAYOUT_BLOBS: tuple[Corpus, ...] = (
    Corpus("actions-toolkit/oci-archive/hello-oci-multiplatform-gzip.tar", 13),
    Corpus("actions-toolkit/oci-archive/hello-oci-gzip.tar", 3),
    *(Corpus(f"dive/test-oci-{c}-image.tar", 3) for c in ("gzip", "zstd", "estargz", "uncompressed")),
    Corpus("stereoscope/multiplatform_oci_dir", 7),
    Corpus("regclient/testrepo", 91),
    Corpus("regclient/external", 6),
    Corpus("ggcr/tarball/hello-world-v25.tar", 4),
    Corpus("snyk/docker-archives/docker-save/hello-world.tar", 4),
    Corpus("snyk/docker-oci-archives/busybox.armv7.tar", 4),
    Corpus("snyk/containerd-archives/busybox-single-arch-with-attestation-manifest.tar", 7),
    Corpus("snyk/containerd-archives/busybox.amd64.tar", 4, absent=19),
    Corpus("snyk/containerd-archives/alpine.tar", 4),
    Corpus("oras-go/hello-world.tar", 4, absent=10),
    Corpus("oras-go/hello-world-prefixed-path.tar", 4, absent=10),
    Corpus("ggcr/layout/test_index", 8),
    # README: "sizes were compared too; no mismatches were found" -- but tag 1.0.0's manifest
    # declares size 585 for its 584-byte config blob 913cf3a3… (checked with wc -c)
    Corpus(DELETE_LAYOUT, 19, size_mismatches=1),
    Corpus("oras/e2e-zot-images", 16),
    Corpus(SINGULARITY, 9),
    Corpus("imgutil/busybox", 3),
    Corpus("imgutil/busybox-sparse", 2, absent=1),
    Corpus("trivy/test.oci", 3),
    Corpus("stereoscope/valid-oci.tar", 3),
    # "blobs 2/3 verify (1 bad); 3 referenced blobs absent"; the bad one (a 509-byte layer
    # declared as 26689802 bytes) is also a size mismatch (artifact)
    Corpus("snyk/oci-archives/oci-with-manifest.tar", 3, bad=1, absent=3, size_mismatches=1),
)

# Valid artifacts whose images have all their blobs: verify must pass. Partial multi-arch
# exports are included: their absent platforms are not images of the source.
VERIFY_OK: tuple[tuple[str, str | None], ...] = (
    *((r.id, None) for r in READS if r.path not in ("imgutil/busybox-sparse", "oras/e2e-zot-images") and not r.xfail),
    (TEST_LINK, None),  # both images, one layer.tar a symlink
    ("ggcr/layout/test_index", None),  # entry 2 is noted as not an image
    (SINGULARITY, None),
    ("regclient/external", None),  # artifacts and a referrers index only: all noted
    ("regclient/testrepo", None),  # regctl builder entries ({} configs) are noted, not images
)

# Artifacts verify must reject: every defect found independently must be named.
VERIFY_BAD: tuple[str, ...] = (
    "snyk/oci-archives/oci-with-manifest.tar",  # 1 bad blob, 3 missing
    "imgutil/busybox-sparse",  # the layer blob is absent
    DELETE_LAYOUT,  # 1.0.0: config declared 585 bytes, blob has 584
)

BUILDKIT_MANIFESTS: tuple[tuple[str, str, str], ...] = (
    ("buildkit-compat/oci/default-gzip/v20/manifest.json", mt.OCI_MANIFEST, mt.OCI_LAYER_GZIP),
    ("buildkit-compat/oci/manifest-annotation/v20/manifest.json", mt.OCI_MANIFEST, mt.OCI_LAYER_GZIP),
    ("buildkit-compat/image/default-gzip/v20/manifest.json", mt.DOCKER_MANIFEST, mt.DOCKER_LAYER_GZIP),
)
BUILDKIT_CONFIG_PATH = "buildkit-compat/common/default-gzip/v20/config.json"

DIVE_LAYER_TYPES: tuple[tuple[str, str], ...] = (
    ("dive/test-oci-gzip-image.tar", mt.OCI_LAYER_GZIP),
    ("dive/test-oci-zstd-image.tar", mt.OCI_LAYER_ZSTD),
    ("dive/test-oci-estargz-image.tar", mt.OCI_LAYER_GZIP),
    ("dive/test-oci-uncompressed-image.tar", mt.OCI_LAYER_TAR),
)
ESTARGZ_ANNOTATIONS = (
    "containerd.io/snapshot/stargz/toc.digest",
    "io.containers.estargz.uncompressed-size",
)

# Paths covered by the loose-document and refusal tests (the tables above cover the rest).
OTHER_COVERED = (
    *(p for p, _, _ in BUILDKIT_MANIFESTS),
    BUILDKIT_CONFIG_PATH,
    "actions-toolkit/imagetools-04.json",
    "actions-toolkit/imagetools-05.json",
    "containers-image/manifest/schema2list.json",
    "docker-library-meta-scripts/oci-sort-manifests/in.json",
    "moby/emptyLayer.tar",
)


# -- helpers: ocimerge side ---------------------------------------------------------------


def _params(rows: Iterable[Any], ident: str = "id") -> list[Any]:
    """pytest params with ids; a row's ``xfail`` reason becomes a strict xfail mark."""
    out = []
    for row in rows:
        reason = getattr(row, "xfail", None)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(row, id=getattr(row, ident), marks=marks))
    return out


def _read(spec: str) -> ImageSet:
    """The images one spec selects (their documents stay usable after the source closes)."""
    with ocimerge.open_images(spec) as images:
        return images


def _platform(text: str) -> Platform:
    """``os/arch[/variant][ (os.version)]``, the form ``str(Platform)`` prints."""
    base, _, version = text.partition(" (")
    os_, arch, *variant = base.split("/")
    return Platform(os_, arch, variant[0] if variant else "", os_version=version.rstrip(")"))


def _norm(text: str) -> str:
    """A platform string in containerd-normalised spelling; unparsable text kept as is."""
    try:
        return str(_platform(text).normalized())
    except (ValueError, ocimerge.OcimergeError):
        return text


def _norms(platforms: Iterable[object]) -> list[str]:
    return sorted(_norm(str(p)) for p in platforms)


def _entry_key(entry: dict[str, Any]) -> str:
    names = entry["names"]
    return str(names[-1] if names else entry["root"]["digest"])


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- helpers: independent reading (tarfile/json only, no ocimerge) -----------------------


def _strip(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _tree(path: Path) -> dict[str, bytes]:
    """Every regular file of a directory or tar (gzip detected), by cleaned member name."""
    if path.is_dir():
        return {f.relative_to(path).as_posix(): f.read_bytes() for f in path.rglob("*") if f.is_file()}
    out: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            stream = tar.extractfile(member) if member.isfile() else None
            if stream is not None:
                out[_strip(member.name)] = stream.read()
    return out


@functools.cache
def _files(rel: str) -> dict[str, bytes]:
    return _tree(CORPUS / rel)


def _blob(files: dict[str, bytes], digest: str) -> bytes | None:
    return files.get("blobs/" + digest.replace(":", "/"))


def _load(files: dict[str, bytes], name: str) -> Any:
    return json.loads(files[name])


@dataclass
class Walk:
    """Descriptors reachable from index.json, and which are absent or mis-sized."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # digest -> JSON
    absent: dict[str, dict[str, Any]] = field(default_factory=dict)  # digest -> descriptor
    size_mismatches: dict[str, tuple[int, int]] = field(default_factory=dict)  # declared, real


def _walk(files: dict[str, bytes]) -> Walk:
    """Follow every descriptor from index.json (indexes nested, configs and layers too)."""
    walk = Walk()
    pending: list[tuple[dict[str, Any], bool]] = [(d, True) for d in _load(files, "index.json").get("manifests") or []]
    seen: set[tuple[str, int, bool]] = set()  # the size too: descriptors may disagree on it
    while pending:
        descriptor, is_document = pending.pop(0)
        digest = descriptor["digest"]
        if (digest, descriptor["size"], is_document) in seen:
            continue
        seen.add((digest, descriptor["size"], is_document))
        data = _blob(files, digest)
        if data is None:
            walk.absent[digest] = descriptor
            continue
        if len(data) != descriptor["size"]:
            walk.size_mismatches[digest] = (descriptor["size"], len(data))
        if not is_document:
            continue
        document = json.loads(data)
        walk.documents[digest] = document
        pending += [(d, True) for d in document.get("manifests") or []]
        if "config" in document:
            pending += [(document["config"], False)]
            pending += [(d, False) for d in document.get("layers") or []]
    return walk


def _blob_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """The ``blobs/sha256/<hex>`` files (AppleDouble and .DS_Store junk left out)."""
    pattern = re.compile(r"blobs/sha256/[0-9a-f]{64}")
    return {n: d for n, d in files.items() if pattern.fullmatch(n)}


def _bad_blobs(files: dict[str, bytes]) -> list[str]:
    """Digests whose stored bytes do not hash to their file name."""
    return [
        "sha256:" + name.rsplit("/", 1)[1]
        for name, data in _blob_files(files).items()
        if hashlib.sha256(data).hexdigest() != name.rsplit("/", 1)[1]
    ]


def _root_index(files: dict[str, bytes]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first index.json entry and the document it names."""
    root = _load(files, "index.json")["manifests"][0]
    data = _blob(files, root["digest"])
    assert data is not None, root
    return root, json.loads(data)


def _readme_rows() -> list[tuple[str, str]]:
    """(corpus path, sha256 cell) of every artifact row of the README tables."""
    rows = []
    for line in (CORPUS / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([^`]+)` \|", line)
        if match:
            rows.append((match.group(1), line.split("|")[-3]))
    return rows


# -- the README itself and the independent reader ----------------------------------------


def test_readme_artifacts_are_present_unchanged_and_covered() -> None:
    """Every README artifact exists with the README's sha256 and is covered by a table here."""
    rows = _readme_rows()
    assert len(rows) == 43  # the README intro says 46 artifacts; its tables list 43
    covered = {
        *(r.path for r in READS),
        *(e.path for e in LAYOUT_ENTRIES),
        *(c.path for c in LAYOUT_BLOBS),
        *VERIFY_BAD,
        *OTHER_COVERED,
    }
    changed = []
    for rel, cell in rows:
        path = CORPUS / rel
        hashed = path / "index.json" if path.is_dir() else path
        expected = re.findall(r"`([0-9a-f]{64})`", cell)[0]
        if hashlib.sha256(hashed.read_bytes()).hexdigest() != expected:
            changed.append(rel)
    assert not changed, f"artifacts differ from the README's sha256: {changed}"
    assert sorted({rel for rel, _ in rows} - covered) == []


@pytest.mark.parametrize("row", _params(LAYOUT_BLOBS, "path"))
def test_independent_reader_agrees_with_readme(row: Corpus) -> None:
    """The tarfile/json oracle the other tests lean on finds what the README's Verify says."""
    files = _files(row.path)
    walk = _walk(files)
    assert len(_blob_files(files)) == row.blobs
    assert len(_bad_blobs(files)) == row.bad
    assert len(walk.absent) == row.absent
    assert len(walk.size_mismatches) == row.size_mismatches


# -- 1. reading every artifact -------------------------------------------------------------


@pytest.mark.parametrize("row", _params(READS))
def test_reads_readme_platforms(row: Read) -> None:
    images = _read(row.spec)
    assert _norms(i.platform for i in images.images) == _norms(row.platforms)
    if row.name is not None:
        assert row.name in images.names
    for image in images.images:
        if row.layers is not None:
            assert len(image.layers) == row.layers, image.platform
        assert len(image.attestations) == row.attestations, image.platform
    assert len(images.absent) == row.absent
    absent = _norms(d.platform for d in images.absent if d.platform is not None)
    assert set(_norms(row.absent_platforms)) <= set(absent)
    assert not set(absent) & set(_norms(row.platforms))


@pytest.mark.parametrize("row", _params(r for r in READS if r.attestations))
def test_attestations_reference_their_image(row: Read) -> None:
    """BuildKit attestation manifests stay with the image their reference digest names."""
    for image in _read(row.spec).images:
        (attestation,) = image.attestations
        assert attestation.entry.annotation(REF_TYPE) == "attestation-manifest"
        assert attestation.entry.annotation(REF_DIGEST) == str(image.digest)
        assert attestation.entry.platform is not None
        assert attestation.entry.platform.is_unknown
    report = ocimerge.inspect(row.spec).to_json()
    for entry in report["entries"]:
        for image in entry["images"]:
            (attestation,) = image["attestations"]
            assert attestation["type"] == "attestation-manifest"
            assert attestation["references"] == image["digest"]


@pytest.mark.parametrize("row", _params(LAYOUT_ENTRIES, "path"))
def test_inspect_describes_every_layout_entry(row: Entries) -> None:
    """inspect lists each index.json entry: the README's images, the others as errors."""
    entries = ocimerge.inspect(str(CORPUS / row.path)).to_json()["entries"]
    assert len(entries) == row.count - row.referrers
    found = {_entry_key(e): _norms(i["platform"] for i in e["images"]) for e in entries if "images" in e}
    assert found == {k: _norms(v) for k, v in row.images.items()}
    errors = [e["error"] for e in entries if "error" in e]
    assert len(errors) == row.count - row.referrers - len(found)
    assert all(str(CORPUS / row.path) in e for e in errors)


def test_odd_descriptor_media_type_is_named() -> None:
    entries = ocimerge.inspect(str(CORPUS / "ggcr/layout/test_index")).to_json()["entries"]
    errors = [e["error"] for e in entries if "error" in e]
    assert len(errors) == 1
    assert "application/vnd.oci.descriptor.v1+json" in errors[0]


def test_multi_image_archive_needs_a_selector() -> None:
    with pytest.raises(ocimerge.SelectionError) as caught:
        _read(str(CORPUS / TEST_LINK))
    message = str(caught.value)
    assert "bazel/v1/tarball:test_image_1" in message
    assert "bazel/v1/tarball:test_image_3" in message


def test_absent_attestation_manifests_are_reported() -> None:
    """All 19 absent entries of Hub's busybox index (README) show in absent or notes."""
    rel = "snyk/containerd-archives/busybox.amd64.tar"
    missing = _walk(_files(rel)).absent
    assert len(missing) == 19
    images = _read(str(CORPUS / rel))
    reported = {str(d.digest) for d in images.absent}
    noted = " ".join(images.notes)
    silent = [d for d in missing if d not in reported and Digest.parse(d).short not in noted]
    assert silent == []


@pytest.mark.parametrize(("path", "layer_type"), DIVE_LAYER_TYPES)
def test_layer_media_types(path: str, layer_type: str) -> None:
    (image,) = _read(str(CORPUS / path)).images
    (layer,) = image.manifest.value.layers
    assert layer.media_type == layer_type
    if "estargz" in path:
        assert {k for k, _ in layer.annotations} >= set(ESTARGZ_ANNOTATIONS)


# -- 2. byte-exactness ---------------------------------------------------------------------


@pytest.mark.parametrize("row", _params(r for r in READS if r.kind == LAYOUT))
def test_layout_manifests_are_byte_exact(row: Read) -> None:
    """Manifests read from OCI layouts are the stored bytes, addressed by their digest."""
    files = _files(row.path)
    images = _read(row.spec)
    for image in images.images:
        raw = image.manifest.raw
        assert _sha256(raw) == str(image.digest)
        assert len(raw) == image.manifest.descriptor.size
        assert raw == _blob(files, str(image.digest))
        assert image.config.raw == _blob(files, str(image.config.descriptor.digest))
        for attestation in image.attestations:
            assert _sha256(attestation.manifest.raw) == str(attestation.entry.digest)
            assert attestation.manifest.raw == _blob(files, str(attestation.entry.digest))


@pytest.mark.parametrize(
    ("path", "root"),
    [
        pytest.param("snyk/containerd-archives/busybox.amd64.tar", BUSYBOX_INDEX, id="busybox"),
        pytest.param("oras-go/hello-world.tar", HELLO_WORLD_LIST, id="hello-world"),
        pytest.param("oras-go/hello-world-prefixed-path.tar", HELLO_WORLD_LIST, id="hello-world-prefixed-path"),
    ],
)
def test_docker_hub_documents_are_the_root(path: str, root: str) -> None:
    """README quick picks: Hub's own index / list, byte-exact, is the entry's root."""
    stored = _blob(_files(path), root)
    assert stored is not None
    assert _sha256(stored) == root
    (entry,) = ocimerge.inspect(str(CORPUS / path)).to_json()["entries"]
    assert entry["root"]["digest"] == root
    assert entry["root"]["size"] == len(stored)


# -- 3. verify -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(spec, id=spec, marks=[pytest.mark.xfail(strict=True, reason=why)] if why else [])
        for spec, why in VERIFY_OK
    ],
)
def test_verify_passes_on_complete_artifacts(row: str) -> None:
    report = ocimerge.verify(str(CORPUS / row))
    assert report.problems == ()
    assert report.ok
    if row == "regclient/external":  # no image at all: each of its 3 entries is noted
        assert len(report.notes) == 3
    else:
        assert report.blobs_checked > 0


@pytest.mark.parametrize("path", VERIFY_BAD)
def test_verify_names_every_defect(path: str) -> None:
    files = _files(path)
    walk = _walk(files)
    defects = {*walk.absent, *walk.size_mismatches, *_bad_blobs(files)}
    assert defects
    report = ocimerge.verify(str(CORPUS / path))
    assert not report.ok
    for problem in report.problems:
        assert str(CORPUS / path) in problem
    text = "\n".join(report.problems)
    unnamed = [d for d in defects if Digest.parse(d).short not in text]
    assert unnamed == []


def test_verify_reports_config_size_defect() -> None:
    """1.0.0 declares 585 bytes for its 584-byte config: one problem naming the blob file."""
    walk = _walk(_files(DELETE_LAYOUT))
    ((digest, (declared, real)),) = walk.size_mismatches.items()
    assert (declared, real) == (585, 584)
    (problem,) = ocimerge.verify(str(CORPUS / DELETE_LAYOUT)).problems
    assert f"blobs/{digest.replace(':', '/')}" in problem
    assert "585" in problem
    assert "584" in problem
    with pytest.raises(ocimerge.DigestMismatchError, match=digest.split(":")[1]):
        _read(f"{CORPUS / DELETE_LAYOUT}:1.0.0")


def test_verify_flags_configs_without_rootfs() -> None:
    """oras's e2e configs hold only os/architecture: no rootfs.diff_ids for their layer."""
    report = ocimerge.verify(str(CORPUS / "oras/e2e-zot-images"))
    for tag in ("linux-amd64", "linux-arm64", "linux-armv7", "multi"):
        assert any(f"({tag})" in p and "rootfs.diff_ids" in p for p in report.problems), tag


def test_verify_does_not_count_an_empty_index_as_a_problem() -> None:
    """oras's 'empty_index' holds no image: a note, not a problem."""
    report = ocimerge.verify(str(CORPUS / "oras/e2e-zot-images"))
    assert [p for p in report.problems if "rootfs.diff_ids" not in p] == []
    assert any("(empty_index)" in n for n in report.notes)


# -- 4. refusals ---------------------------------------------------------------------------


def test_pre_docker_110_save_is_refused() -> None:
    path = str(CORPUS / "moby/emptyLayer.tar")
    with pytest.raises(ocimerge.NotAnImageError, match=r"manifest\.json"):
        _read(path)
    with pytest.raises(ocimerge.NotAnImageError, match=r"manifest\.json"):
        ocimerge.inspect(path)


def test_cli_refuses_pre_docker_110_save_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OCIMERGE_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-m", "ocimerge", "inspect", str(CORPUS / "moby/emptyLayer.tar")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 3
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ocimerge: error:")
    assert "manifest.json" in lines[0]
    assert "Traceback" not in done.stderr


# -- 5. merging real per-arch exports ------------------------------------------------------


def test_merge_per_arch_exports(tmp_path: Path) -> None:
    sources = {
        "actions-toolkit/oci-archive/hello-oci-gzip.tar": "linux/amd64",
        "dive/test-oci-gzip-image.tar": "linux/arm64",
        "snyk/docker-oci-archives/busybox.armv7.tar": "linux/arm/v7",
    }
    # each source's index.json names its image manifest directly (README)
    expected = {_norm(p): _load(_files(rel), "index.json")["manifests"][0]["digest"] for rel, p in sources.items()}
    assert expected["linux/amd64"].startswith(HELLO_OCI_AMD64)
    output = tmp_path / "merged.tar"
    ocimerge.create([str(CORPUS / rel) for rel in sources], str(output))

    merged = _read(str(output))
    assert {_norm(str(i.platform)): str(i.digest) for i in merged.images} == expected
    source_of = {_norm(p): rel for rel, p in sources.items()}
    for image in merged.images:
        source = _files(source_of[_norm(str(image.platform))])
        assert image.manifest.raw == _blob(source, str(image.digest))  # byte-preserved
    _, index = _root_index(_tree(output))
    assert sorted(m["digest"] for m in index["manifests"]) == sorted(expected.values())
    report = ocimerge.verify(str(output))
    assert report.ok, report.problems


def test_merge_keeps_attestations_with_their_images(tmp_path: Path) -> None:
    multi = "actions-toolkit/oci-archive/hello-oci-multiplatform-gzip.tar"
    _, source_index = _root_index(_files(multi))
    source_refs = {
        m["digest"]: m["annotations"][REF_DIGEST]
        for m in source_index["manifests"]
        if REF_DIGEST in m.get("annotations", {})
    }
    assert len(source_refs) == 2
    output = tmp_path / "attested.tar"
    ocimerge.create(
        [str(CORPUS / multi), str(CORPUS / "snyk/docker-oci-archives/busybox.armv7.tar")],
        str(output),
    )

    files = _tree(output)
    _, index = _root_index(files)
    attested = {
        m["digest"]: m["annotations"][REF_DIGEST] for m in index["manifests"] if REF_DIGEST in m.get("annotations", {})
    }
    assert attested == source_refs
    images = {m["digest"] for m in index["manifests"]} - set(attested)
    assert set(attested.values()) <= images
    assert len(images) == 3
    for digest in attested:
        document = _blob(files, digest)
        assert document is not None
        assert _blob(files, json.loads(document)["layers"][0]["digest"]) is not None
    for image in _read(str(output)).images:
        refs = [a.entry.annotation(REF_DIGEST) for a in image.attestations]
        assert refs == ([] if image.platform.architecture == "arm" else [str(image.digest)])
    report = ocimerge.verify(str(output))
    assert report.ok, report.problems


# -- loose JSON documents ------------------------------------------------------------------


def _decode(rel: str) -> ImageManifest | ImageIndex:
    return decode_manifest_or_index((CORPUS / rel).read_bytes(), where=rel)


def _descriptors(rel: str) -> ImageIndex:
    """A JSON array of descriptors, decoded as the manifests of an index."""
    wrapped = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": json.loads((CORPUS / rel).read_bytes())}
    decoded = decode_manifest_or_index(json.dumps(wrapped).encode(), where=rel)
    assert isinstance(decoded, ImageIndex)
    return decoded


def _is_attestation(descriptor: Any) -> bool:
    return bool(descriptor.annotation(REF_TYPE) == "attestation-manifest")


@pytest.mark.parametrize(("path", "media_type", "layer_type"), BUILDKIT_MANIFESTS)
def test_buildkit_compat_manifests(path: str, media_type: str, layer_type: str) -> None:
    manifest = _decode(path)
    assert isinstance(manifest, ImageManifest)
    assert manifest.media_type == media_type
    config = (CORPUS / BUILDKIT_CONFIG_PATH).read_bytes()
    assert str(manifest.config.digest) == _sha256(config) == BUILDKIT_CONFIG
    assert manifest.config.size == len(config)
    assert [d.media_type for d in manifest.layers] == [layer_type] * 4
    if media_type == mt.OCI_MANIFEST:
        assert all(d.annotation("buildkit/rewritten-timestamp") for d in manifest.layers)
    title = dict(manifest.annotations).get("org.opencontainers.image.title")
    assert (title is not None) == ("manifest-annotation" in path)


def test_buildkit_compat_config() -> None:
    raw = (CORPUS / BUILDKIT_CONFIG_PATH).read_bytes()
    config = decode_config(raw, where=BUILDKIT_CONFIG_PATH)
    assert _sha256(raw) == BUILDKIT_CONFIG
    assert len(config.diff_ids) == 4  # one per layer of the three manifests
    value = json.loads(raw)
    assert config.platform == Platform(value["os"], value["architecture"])


def test_buildx_rendered_index() -> None:
    index = _decode("actions-toolkit/imagetools-04.json")
    assert isinstance(index, ImageIndex)
    assert index.media_type == mt.OCI_INDEX
    images = [d for d in index.manifests if not _is_attestation(d)]
    attestations = [d for d in index.manifests if _is_attestation(d)]
    assert _norms(d.platform for d in images) == _norms(
        ("linux/amd64", "linux/arm/v7", "linux/arm64", "linux/s390x", "linux/ppc64le", "linux/riscv64")
    )
    assert len(attestations) == 6
    assert sorted(d.annotation(REF_DIGEST) or "" for d in attestations) == sorted(str(d.digest) for d in images)


def test_buildx_attestation_listing_matches_its_index() -> None:
    index = _decode("actions-toolkit/imagetools-04.json")
    assert isinstance(index, ImageIndex)
    listed = _descriptors("actions-toolkit/imagetools-05.json").manifests
    assert len(listed) == 6
    assert all(_is_attestation(d) for d in listed)
    assert set(listed) == {d for d in index.manifests if _is_attestation(d)}


def test_docker_manifest_list() -> None:
    index = _decode("containers-image/manifest/schema2list.json")
    assert isinstance(index, ImageIndex)
    assert index.media_type == mt.DOCKER_MANIFEST_LIST
    platforms = _norms(d.platform for d in index.manifests)
    assert len(set(platforms)) == 7
    assert set(_norms(("linux/arm/v5", "linux/arm/v6", "linux/arm64/v8"))) <= set(platforms)


def test_official_images_descriptor_array() -> None:
    descriptors = _descriptors("docker-library-meta-scripts/oci-sort-manifests/in.json").manifests
    images = [d for d in descriptors if not _is_attestation(d)]
    assert len(images) == 12
    assert len(descriptors) - len(images) == 10
    platforms = [d.platform for d in images if d.platform is not None]
    assert len(set(_norms(platforms))) == 12
    assert set(_norms(("linux/arm/v5", "linux/arm/v6", "linux/arm/v7"))) <= set(_norms(platforms))
    windows = {p.os_version for p in platforms if p.os == "windows"}
    assert windows == {"10.0.20348.2340", "10.0.17763.5576"}
