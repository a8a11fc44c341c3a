"""Image sources: OCI layouts (directories and tars), docker-save archives, registry images.

Every source implements one core ([SOURCE-4], :mod:`ocimerge.sources.core`) and one walker
derives the images from it (:mod:`ocimerge.sources.walk`); this module parses source
arguments and opens the right kind. Callers have a single path for every kind:
``with open_source(spec, registries) as source: load(spec, source, walk)``.

[SOURCE-1] A local source is detected from its content, never from its file name: a
directory or a tar (compressed as a whole or not) holding ``index.json`` is an OCI layout;
one holding only ``manifest.json`` is a docker-save archive. Docker 25+ archives hold both:
the OCI half is used when its manifest lists the layers in ``rootfs.diff_ids`` order, else
``manifest.json``.

[SOURCE-2] A source spec is ``[PREFIX:]PATH[:TAG|@DIGEST][=PLATFORM]`` with prefixes
``oci:``, ``oci-archive:`` and ``docker-archive:``. An existing path is always taken whole,
so a file whose name contains ``:`` or ``=`` still works.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import attrs

from ocimerge.content import Image, ImageSet
from ocimerge.errors import (
    DocumentError,
    InputError,
    NotAnImageError,
    OcimergeError,
    PlatformMismatchError,
    UsageError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.digest import Digest
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference
from ocimerge.sources._tarfs import FileSystem, open_filesystem
from ocimerge.sources.core import Root, Source, SourceKind
from ocimerge.sources.docker_archive import DockerArchive
from ocimerge.sources.oci_layout import OciLayout
from ocimerge.sources.registry import RegistryReader, RegistrySource
from ocimerge.sources.selector import Selector
from ocimerge.sources.walk import EVERYTHING, Walk, load_root

__all__ = [
    "RegistryReader",
    "Root",
    "Selector",
    "Source",
    "SourceKind",
    "SourceSpec",
    "Walk",
    "as_spec",
    "check_platform",
    "load",
    "load_all",
    "looks_like_registry_reference",
    "open_source",
    "parse_source",
]

_PREFIXES = tuple(f"{k.value}:" for k in (SourceKind.OCI_ARCHIVE, SourceKind.DOCKER_ARCHIVE, SourceKind.OCI))

#: How a run reaches registries: a registry client for a host (``RegistryPool.get``).
Registries = Callable[[str], RegistryReader]


@attrs.frozen
class SourceSpec:
    """A parsed source argument: where, which entry, and the platform the user says it is.

    ``reference`` is set for a registry image (then ``path`` is its text); ``selector``
    chooses one entry of a local source that holds several.
    """

    text: str
    path: str
    kind: SourceKind = SourceKind.AUTO
    selector: Selector = attrs.field(factory=Selector)
    platform: Platform | None = None
    reference: Reference | None = None


def looks_like_registry_reference(text: str) -> bool:
    """[SOURCE-3] Whether a bare argument names a registry image rather than a local path.

    It does when no such path exists (nor one before a ``:`` selector, as in
    ``save.tar:acme/app:1.0``), it has no local prefix, and its first component is a
    registry host: it holds a ``.`` or a ``:``, or is ``localhost`` (``ghcr.io/o/app:1``,
    ``localhost:5000/app``). Docker Hub images need ``docker://`` or ``docker.io/``.
    """
    if text.startswith("docker://"):
        return True
    if text.startswith((*_PREFIXES, "/", "./", "../", "~")) or os.path.exists(text) or "/" not in text:
        return False
    if _existing_prefix(text) is not None:
        return False  # a local archive with a tag selector
    first = text.split("/", 1)[0]
    return "." in first or ":" in first or first == "localhost"


def _existing_prefix(text: str) -> int | None:
    """The index of the last ``:`` before which ``text`` names an existing path, if any.

    The longest existing path wins, so tags may hold ``:`` themselves (docker-save RepoTags
    such as ``app:1.0``) and file names may too.
    """
    cuts = [i for i, c in enumerate(text) if c == ":"]
    return next((i for i in reversed(cuts) if os.path.exists(text[:i])), None)


def _split_platform(text: str) -> tuple[str, Platform | None]:
    """``SRC=PLATFORM``: the platform part, when what precedes it exists or it has a ``/``."""
    if os.path.exists(text) or "=" not in text:
        return text, None
    head, _, tail = text.rpartition("=")
    if "/" in tail or os.path.exists(head):
        return head, Platform.parse(tail)
    return text, None


def _split_selector(text: str, rest: str) -> tuple[str, Selector]:
    """``PATH:TAG`` or ``PATH@DIGEST`` of a local source whose whole text is not a path."""
    if os.path.exists(rest):
        return rest, Selector()
    if "@" in rest:
        path, _, digest = rest.rpartition("@")
        try:
            return path, Selector(digest=Digest.parse(digest))
        except DocumentError as exc:
            raise UsageError(f"{text}: {exc}") from exc
    cut = _existing_prefix(rest)
    if cut is not None:
        return rest[:cut], Selector(tag=rest[cut + 1 :])
    return rest, Selector()


def parse_source(text: str) -> SourceSpec:
    """[SOURCE-2] Parse ``[PREFIX:]PATH[:TAG|@DIGEST][=PLATFORM]``, or a registry reference."""
    rest, platform = _split_platform(text)
    if rest.startswith("docker://") or looks_like_registry_reference(rest):
        reference = rest.removeprefix("docker://")
        if not reference:
            raise UsageError(f"{text!r}: no image reference after docker://")
        return SourceSpec(
            text=text, path=reference, kind=SourceKind.REGISTRY, platform=platform, reference=Reference.parse(reference)
        )
    kind = SourceKind.AUTO
    for prefix in _PREFIXES:
        if rest.startswith(prefix) and not os.path.exists(rest):
            kind, rest = SourceKind(prefix[:-1]), rest[len(prefix) :]
            break
    rest, selector = _split_selector(text, rest)
    if not rest:
        raise UsageError(f"{text!r}: no path given")
    return SourceSpec(text=text, path=rest, kind=kind, selector=selector, platform=platform)


def as_spec(source: str | SourceSpec) -> SourceSpec:
    """A :class:`SourceSpec`, parsing a string with :func:`parse_source`."""
    return source if isinstance(source, SourceSpec) else parse_source(source)


class _Docker25(OciLayout):
    """[SOURCE-1][DOCKER-5] Docker 25+ ``docker save``: the OCI half, ``manifest.json`` behind it.

    Docker 25.0.0 could write the OCI manifest's layers out of ``diff_ids`` order; such an
    image is read again from ``manifest.json``, whose layer order is docker's own.
    """

    def __init__(self, fs: FileSystem) -> None:
        super().__init__(fs)
        self.archive = DockerArchive(fs)


@contextlib.contextmanager
def open_source(spec: SourceSpec, registries: Registries | None = None) -> Iterator[Source]:
    """[SOURCE-1][SOURCE-4] Open what ``spec`` names; the source is closed when the block ends.

    A registry source takes its client from ``registries`` (one per host, owned by the
    caller); a local one is detected from its content.
    """
    if spec.reference is not None:
        if registries is None:
            raise UsageError(f"{spec.text}: a registry image, and no registry client was given")
        yield RegistrySource(registries(spec.reference.registry), spec.reference)
        return
    source = _open_local(spec)
    try:
        yield source
    finally:
        source.close()


def _open_local(spec: SourceSpec) -> Source:
    fs = open_filesystem(spec.path, name=spec.path)
    try:
        if spec.kind is SourceKind.DOCKER_ARCHIVE or not fs.exists("index.json"):
            if not fs.exists("manifest.json") and not fs.exists("repositories"):
                raise NotAnImageError(
                    f"{spec.path}: not an OCI layout, an OCI archive or a docker-save archive "
                    "(no index.json, no manifest.json)"
                )
            return DockerArchive(fs)
        if not fs.exists("manifest.json"):
            return OciLayout(fs)
        both = _Docker25(fs)
        if not both.entries():
            return both.archive  # docker 25 writes "manifests": null when it has nothing else
        return both
    except BaseException:
        fs.close()
        raise


def load(spec: SourceSpec, source: Source, walk: Walk = EVERYTHING) -> ImageSet:
    """The images ``spec`` selects from ``source``, filtered or checked by its platform."""
    root = source.select(spec.selector)
    loaded = load_root(source, root, walk)
    if isinstance(source, _Docker25) and not all(_layers_in_order(i) for i in loaded.images):
        loaded = load_root(source.archive, source.archive.select(spec.selector), walk)
    return check_platform(spec, loaded)


def load_all(source: Source, walk: Walk = EVERYTHING) -> list[ImageSet | OcimergeError]:
    """Every root of ``source`` walked; a root whose content is bad gives its error in its place.

    Only input errors are kept: a registry, auth or network failure says nothing about the
    entry and is raised.
    """
    out: list[ImageSet | OcimergeError] = []
    try:
        roots = source.roots()
    except InputError as exc:
        return [exc]
    for root in roots:
        try:
            out.append(load_root(source, root, walk))
        except InputError as exc:
            out.append(exc)
    return out


def _layers_in_order(image: Image) -> bool:
    layers = image.manifest.value.layers
    if not all(mt.layer_compression(d.media_type) is mt.Compression.NONE for d in layers):
        return True
    return tuple(d.digest for d in layers) == image.config.value.diff_ids


def check_platform(spec: SourceSpec, loaded: ImageSet) -> ImageSet:
    """[PLATFORM-5] Apply ``SRC=PLATFORM`` to what a source held.

    It picks that platform out of a multi-platform source; for a single image it must agree
    with the image's config, or it is an error naming both.
    """
    if spec.platform is None:
        return loaded
    wanted = spec.platform
    # [PLATFORM-7] matched, not equal: windows/amd64 picks the Windows image whatever its os.version
    matching = tuple(i for i in loaded.images if wanted.matches(i.platform))
    if matching:
        return attrs.evolve(loaded, images=matching)
    found = ", ".join(str(i.platform) for i in loaded.images)
    if len(loaded.images) == 1:
        raise PlatformMismatchError(
            f"{spec.text}: given as {wanted}, but its config says {found}; check which image is which architecture"
        )
    raise PlatformMismatchError(f"{spec.text}: no {wanted} image in the source (it has {found})")
