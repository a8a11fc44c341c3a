"""Local image sources: OCI layouts (directories and tars) and docker-save archives.

[SOURCE-1] A source is detected from its content, never from its file name: a directory or a
tar (compressed as a whole or not) holding ``index.json`` is an OCI layout; one holding only
``manifest.json`` is a docker-save archive. Docker 25+ archives hold both: the OCI half is
used when its manifest lists the layers in ``rootfs.diff_ids`` order, else ``manifest.json``.

[SOURCE-2] A source spec is ``[PREFIX:]PATH[:TAG|@DIGEST][=PLATFORM]`` with prefixes
``oci:``, ``oci-archive:`` and ``docker-archive:``. An existing path is always taken whole,
so a file whose name contains ``:`` or ``=`` still works.
"""

from __future__ import annotations

import os
from typing import Protocol

import attrs

from ocimerge.content import Image, ImageSet
from ocimerge.errors import (
    DocumentError,
    NotAnImageError,
    OcimergeError,
    PlatformMismatchError,
    UsageError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.digest import Digest
from ocimerge.model.platform import Platform
from ocimerge.sources._tarfs import FileSystem, open_filesystem
from ocimerge.sources.docker_archive import DockerArchive
from ocimerge.sources.oci_layout import OciLayout
from ocimerge.sources.selector import Selector

__all__ = [
    "Selector",
    "Source",
    "SourceSpec",
    "as_spec",
    "check_platform",
    "load",
    "looks_like_registry_reference",
    "open_source",
    "parse_source",
]

_PREFIXES = ("oci-archive:", "docker-archive:", "oci:")


@attrs.frozen
class SourceSpec:
    """A parsed source argument: where, which entry, and the platform the user says it is.

    ``kind`` is ``auto`` (detect from content), ``oci``, ``oci-archive``, ``docker-archive``,
    or ``registry`` (then ``path`` holds the image reference).
    """

    text: str
    path: str
    kind: str = "auto"
    selector: Selector = attrs.field(factory=Selector)
    platform: Platform | None = None


def looks_like_registry_reference(text: str) -> bool:
    """[SOURCE-3] Whether a bare argument names a registry image rather than a local path.

    It does when no such path exists, it has no local prefix, and its first component is a
    registry host: it holds a ``.`` or a ``:``, or is ``localhost`` (``ghcr.io/o/app:1``,
    ``localhost:5000/app``). Docker Hub images need ``docker://`` or ``docker.io/``.
    """
    if text.startswith(("docker://",)):
        return True
    if text.startswith((*_PREFIXES, "/", "./", "../", "~")) or os.path.exists(text) or "/" not in text:
        return False
    first = text.split("/", 1)[0]
    return "." in first or ":" in first or first == "localhost"


def parse_source(text: str) -> SourceSpec:
    """[SOURCE-2] Parse ``[PREFIX:]PATH[:TAG|@DIGEST][=PLATFORM]``, or a registry reference."""
    rest = text
    platform: Platform | None = None
    if not os.path.exists(rest) and "=" in rest:
        head, _, tail = rest.rpartition("=")
        if "/" in tail or os.path.exists(head):
            platform = Platform.parse(tail)
            rest = head
    if rest.startswith("docker://") or looks_like_registry_reference(rest):
        reference = rest.removeprefix("docker://")
        if not reference:
            raise UsageError(f"{text!r}: no image reference after docker://")
        return SourceSpec(text=text, path=reference, kind="registry", platform=platform)
    kind = "auto"
    for prefix in _PREFIXES:
        if rest.startswith(prefix) and not os.path.exists(rest):
            kind, rest = prefix[:-1], rest[len(prefix) :]
            break
    selector = Selector()
    if not os.path.exists(rest):
        if "@" in rest:
            path, _, digest = rest.rpartition("@")
            try:
                selector = Selector(digest=Digest.parse(digest))
            except DocumentError as exc:
                raise UsageError(f"{text}: {exc}") from None
            rest = path
        else:
            # the longest existing path before a ':' wins, so tags may hold ':' themselves
            # (docker-save RepoTags such as app:1.0) and file names may too.
            cuts = [i for i, c in enumerate(rest) if c == ":"]
            for i in reversed(cuts):
                if os.path.exists(rest[:i]):
                    selector, rest = Selector(tag=rest[i + 1 :]), rest[:i]
                    break
    if not rest:
        raise UsageError(f"{text!r}: no path given")
    return SourceSpec(text=text, path=rest, kind=kind, selector=selector, platform=platform)


def as_spec(source: str | SourceSpec) -> SourceSpec:
    """A :class:`SourceSpec`, parsing a string with :func:`parse_source`."""
    return source if isinstance(source, SourceSpec) else parse_source(source)


class Source(Protocol):
    """An opened local source; close it when its blobs are no longer needed."""

    name: str

    def load(self, selector: Selector) -> ImageSet: ...

    def load_all(self) -> list[ImageSet | OcimergeError]: ...

    def close(self) -> None: ...


class _Layout:
    """An OCI layout, with the docker-save ``manifest.json`` of Docker 25+ as a fallback."""

    def __init__(self, fs: FileSystem) -> None:
        self.fs = fs
        self.name = fs.name
        self.layout = OciLayout(fs)
        self.archive = DockerArchive(fs) if fs.exists("manifest.json") else None

    def load(self, selector: Selector) -> ImageSet:
        if self.archive is not None and not self.layout.roots():
            return self.archive.load(selector)  # docker 25 writes "manifests": null
        loaded = self.layout.load(selector)
        if self.archive is not None and not all(_layers_in_order(i) for i in loaded.images):
            # [DOCKER-5] Docker 25.0.0 could write the OCI manifest's layers out of order.
            return self.archive.load(selector)
        return loaded

    def load_all(self) -> list[ImageSet | OcimergeError]:
        if self.archive is not None and not self.layout.roots():
            return _load_each(self.archive)
        out: list[ImageSet | OcimergeError] = []
        for root in self.layout.roots():
            try:
                out.append(self.layout.load_entry(root))
            except OcimergeError as exc:
                out.append(exc)
        return out

    def close(self) -> None:
        self.fs.close()


class _Archive:
    def __init__(self, fs: FileSystem) -> None:
        self.fs = fs
        self.name = fs.name
        self.archive = DockerArchive(fs)

    def load(self, selector: Selector) -> ImageSet:
        return self.archive.load(selector)

    def load_all(self) -> list[ImageSet | OcimergeError]:
        return _load_each(self.archive)

    def close(self) -> None:
        self.fs.close()


def _load_each(archive: DockerArchive) -> list[ImageSet | OcimergeError]:
    out: list[ImageSet | OcimergeError] = []
    for entry in archive.entries:
        try:
            out.append(archive.load_entry(entry))
        except OcimergeError as exc:
            out.append(exc)
    return out


def _layers_in_order(image: Image) -> bool:
    layers = image.manifest.value.layers
    if not all(mt.layer_compression(d.media_type) is mt.Compression.NONE for d in layers):
        return True
    return tuple(d.digest for d in layers) == image.config.value.diff_ids


def open_source(spec: SourceSpec) -> Source:
    """[SOURCE-1] Open the directory or archive ``spec`` names, detected from its content."""
    if spec.kind == "registry":
        raise UsageError(f"{spec.text}: a registry image, not a local source")
    fs = open_filesystem(spec.path, name=spec.path)
    try:
        if spec.kind == "docker-archive" or not fs.exists("index.json"):
            if not fs.exists("manifest.json") and not fs.exists("repositories"):
                raise NotAnImageError(
                    f"{spec.path}: not an OCI layout, an OCI archive or a docker-save archive "
                    "(no index.json, no manifest.json)"
                )
            return _Archive(fs)
        return _Layout(fs)
    except BaseException:
        fs.close()
        raise


def load(spec: SourceSpec, source: Source) -> ImageSet:
    """The images ``spec`` selects from ``source``, filtered or checked by its platform."""
    return check_platform(spec, source.load(spec.selector))


def check_platform(spec: SourceSpec, loaded: ImageSet) -> ImageSet:
    """[PLATFORM-5] Apply ``SRC=PLATFORM`` to what a source held.

    It picks that platform out of a multi-platform source; for a single image it must agree
    with the image's config, or it is an error naming both.
    """
    if spec.platform is None:
        return loaded
    wanted = spec.platform
    matching = tuple(i for i in loaded.images if i.platform == wanted)
    if matching:
        return attrs.evolve(loaded, images=matching)
    found = ", ".join(str(i.platform) for i in loaded.images)
    if len(loaded.images) == 1:
        raise PlatformMismatchError(
            f"{spec.text}: given as {wanted}, but its config says {found}; check which image is which architecture"
        )
    raise PlatformMismatchError(f"{spec.text}: no {wanted} image in the source (it has {found})")
