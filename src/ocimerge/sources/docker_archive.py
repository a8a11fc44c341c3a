"""``docker save`` archives (classic and Docker 25+) and other docker-load tarballs.

[DOCKER-1] .. [DOCKER-4]. ``manifest.json`` lists each image's config and layer paths; we
author an OCI manifest for it. An uncompressed layer's digest is its DiffID, verified when
the layer streams; a compressed layer (kaniko, Jib) is hashed once here and its
decompressed stream checked against ``rootfs.diff_ids``.

Docker 25+ archives also hold an OCI layout; ``sources.open_source`` decides whether to
trust that layout's manifest or this module's authored one ([DOCKER-5]). This module only
reads ``manifest.json`` and the files it names: the legacy ``repositories`` and ``<id>/json``
files are ignored, because ``docker load`` itself has not needed them since Docker 1.10.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import attrs
import zstandard

from ocimerge.content import Blob, BlobOrigin
from ocimerge.errors import BlobMissingError, DigestMismatchError, DocumentError, NotAnImageError, SelectionError
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import MAX_DOCUMENT_SIZE, decode_json
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest, decode_config
from ocimerge.sources._tarfs import FileSystem, clean_member_name, read_small
from ocimerge.sources.core import Listed, Root, SourceKind
from ocimerge.sources.selector import Selector, matches_name

__all__ = ["DockerArchive", "sniff_compression"]

_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
# 1 MiB reads: large enough that hashing, not syscalls, dominates a compressed-layer pass
_CHUNK = 1024 * 1024
# [SEC-3] the most one inflate step returns: inflated bytes are hashed and dropped
_INFLATE_STEP = 1024 * 1024
# [SEC-3] zstd's own default limit (windowLog 27): a frame asking for more is refused
_ZSTD_MAX_WINDOW = 1 << 27


def sniff_compression(head: bytes) -> mt.Compression:
    """[DOCKER-3] A layer's compression from its leading bytes (not from its name).

    ``head`` is the first bytes of the file (four suffice for every magic we know); the
    answer is gzip, zstd or none and this never raises. Names lie: kaniko and Jib write
    gzip layers as ``layer.tar``, so only the magic is trusted.
    """
    if head.startswith(_GZIP):
        return mt.Compression.GZIP
    if head.startswith(_ZSTD):
        return mt.Compression.ZSTD
    return mt.Compression.NONE


@attrs.frozen
class _Entry:
    """One ``manifest.json`` image: cleaned config and layer paths, its tags, foreign layers.

    ``layer_sources`` maps a DiffID to the descriptor of a layer whose file docker left out
    (a Windows base layer, [MEDIA-4]); it is excluded from equality because it is raw JSON.
    """

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]
    layer_sources: dict[str, Any] = attrs.field(eq=False)


def _get(item: dict[str, Any], key: str) -> Any:
    """[DOCKER-1] manifest.json keys are matched case-insensitively, as ``docker load`` does.

    Unambiguous only because :func:`_refuse_case_duplicates` has run on ``item``.
    """
    for k, v in item.items():
        if k.lower() == key.lower():
            return v
    return None


def _refuse_case_duplicates(item: dict[str, Any], where: str) -> None:
    """[SEC-7] ``DocumentError`` when two keys of ``item`` differ only in case.

    ``docker load`` (Go's encoding/json) folds case and lets the last key win; we would read
    another one, so the same archive would load as two different images. Refusing is the
    only reading both agree on.
    """
    seen: dict[str, str] = {}
    for key in item:
        other = seen.setdefault(key.lower(), key)
        if other != key:
            raise DocumentError(
                f"{where}: keys {other!r} and {key!r} differ only in case; refusing the ambiguous entry"
            )


class DockerArchive:
    """A docker-load tarball: ``manifest.json`` plus config and layer files; a [SOURCE-4] source.

    Docker-save archives store no manifest: each root's OCI manifest is authored on read,
    once, and its config and layers are served by digest like any other source's content.
    """

    kind = SourceKind.DOCKER_ARCHIVE
    origin: BlobOrigin | None = None

    def __init__(self, fs: FileSystem) -> None:
        """Read and check ``manifest.json`` of ``fs``; configs and layers are read later.

        Raises ``NotAnImageError`` when there is no ``manifest.json`` (naming the pre-1.10
        format when its ``repositories`` file is there) and ``DocumentError`` when the file
        is not an array of well-formed entries. Every path is cleaned by [TAR-1] here, so a
        hostile ``manifest.json`` cannot point a later read outside the archive. The
        archive takes ownership of ``fs``: :meth:`close` closes it.
        """
        self.fs = fs
        self.name = fs.name
        if not fs.exists("manifest.json"):
            if fs.exists("repositories"):
                raise NotAnImageError(
                    f"{self.name}: a pre-Docker-1.10 'docker save' archive (no manifest.json); "
                    "re-save the image with a current docker"
                )
            raise NotAnImageError(f"{self.name}: no manifest.json and no OCI layout")
        raw = read_small(fs, "manifest.json", MAX_DOCUMENT_SIZE)
        value = decode_json(raw, where=f"{self.name}: manifest.json")
        if not isinstance(value, list):
            raise DocumentError(f"{self.name}: manifest.json: expected a JSON array")
        self.entries = tuple(self._entry(item, i) for i, item in enumerate(value))
        # what the authored manifests name: documents by digest, layer blobs by digest
        self._authored: dict[str, Descriptor] = {}
        self._documents: dict[str, bytes] = {}
        self._blobs: dict[str, Blob] = {}
        # [SEC-3] compressed layers already inflated: (stored digest, inflated hex) or the error
        self._inflated: dict[tuple[object, str], tuple[Digest, str] | str] = {}

    def _entry(self, item: object, i: int) -> _Entry:
        """[DOCKER-1] Entry ``i``, type-checked; ``RepoTags: null`` is untagged, not an error."""
        where = f"{self.name}: manifest.json[{i}]"
        if not isinstance(item, dict):
            raise DocumentError(f"{where}: expected an object")
        _refuse_case_duplicates(item, where)
        config = _get(item, "Config")
        layers = _get(item, "Layers") or []
        tags = _get(item, "RepoTags") or []
        sources = _get(item, "LayerSources") or {}
        if not isinstance(config, str) or not config:
            raise DocumentError(f"{where}: 'Config' must be a path")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise DocumentError(f"{where}: 'Layers' must be a list of paths")
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            raise DocumentError(f"{where}: 'RepoTags' must be a list of strings")
        return _Entry(
            config=clean_member_name(config, self.name),
            repo_tags=tuple(tags),
            layers=tuple(clean_member_name(x, self.name) for x in layers),
            layer_sources=sources if isinstance(sources, dict) else {},
        )

    def select_entry(self, selector: Selector) -> _Entry:
        """[DOCKER-2] The entry ``selector`` names by RepoTags (or by config digest).

        Exactly one entry must match; otherwise ``SelectionError`` lists every entry's tags
        so the user can retry with ``SRC:TAG``. An empty selector picks the only entry.
        """
        entries = self.entries
        if selector.digest is not None:
            # the config's file name carries the image ID: <hex>.json, blobs/sha256/<hex>, sha256:<hex>
            found = [
                e
                for e in entries
                if e.config.rsplit("/", 1)[-1].removesuffix(".json").endswith(selector.digest.encoded)
            ]
        elif selector.tag is not None:
            found = [e for e in entries if matches_name(selector.tag, e.repo_tags)]
        else:
            found = list(entries)
        if len(found) == 1:
            return found[0]
        choices = "; ".join(", ".join(e.repo_tags) or f"untagged ({e.config})" for e in entries)
        if not found:
            if not entries:
                raise SelectionError(f"{self.name}: manifest.json lists no image")
            raise SelectionError(f"{self.name}: no image matches {selector}; choices: {choices}")
        raise SelectionError(
            f"{self.name}: the archive holds several images; choose one with {self.name}:TAG "
            f"(e.g. {self.name}:{_example_tag(entries)}); choices: {choices}"
        )

    # -- the source core [SOURCE-4]: roots are manifests we author on read ----------------

    def select(self, selector: Selector) -> Root:
        """The root of the one entry ``selector`` names; raises as :meth:`select_entry`."""
        return self._root(self.select_entry(selector))

    def roots(self) -> tuple[Root, ...]:
        """Every entry's root, in ``manifest.json`` order; authors each manifest once."""
        return tuple(self._root(e) for e in self.entries)

    def has(self, descriptor: Descriptor) -> bool:
        """Whether the content is here; only content of roots authored so far is known.

        A foreign layer (listed in ``LayerSources``, its file absent) is known but not had.
        """
        key = str(descriptor.digest)
        return key in self._documents or (key in self._blobs and self._blobs[key].available)

    def document(self, descriptor: Descriptor, what: str) -> bytes:
        """The raw bytes of an authored manifest or its config; ``BlobMissingError`` if unknown.

        No verification is needed here: the bytes were hashed when they were registered.
        """
        raw = self._documents.get(str(descriptor.digest))
        if raw is None:
            raise BlobMissingError(f"{self.name}: {what}: {descriptor.digest} is not in the archive")
        return raw

    def blob(self, descriptor: Descriptor, what: str) -> Blob:
        """A layer blob by digest; an absent one is a ``Blob`` without opener ([LAYOUT-2])."""
        found = self._blobs.get(str(descriptor.digest))
        if found is None:
            return Blob(descriptor, None, f"{self.name}: {what}")
        return found

    def referrers_of(self, digest: Digest) -> tuple[Listed, ...]:  # noqa: ARG002 - the protocol's signature
        """A docker-save archive stores no referrers (``docker save`` drops them)."""
        return ()

    def close(self) -> None:
        """Close the file system (and delete its decompressed temporary copy, [TAR-3])."""
        self.fs.close()

    def _root(self, entry: _Entry) -> Root:
        """Author the entry's manifest once; its config and layers become servable content."""
        authored = self._authored.get(entry.config)
        if authored is None:
            authored = self._authored[entry.config] = self._author(entry)
        label = f"{self.name}" + (f" ({entry.repo_tags[0]})" if entry.repo_tags else "")
        return Root(authored, entry.repo_tags, label, stored=False)

    def _author(self, entry: _Entry) -> Descriptor:
        """[DOCKER-1] An OCI manifest for a ``manifest.json`` entry, its content registered.

        Raises ``DocumentError`` when the layer count and ``rootfs.diff_ids`` disagree (the
        pairing of layer and DiffID is by position, so a mismatch has no sound reading).
        Nothing is registered until every layer has been checked.
        """
        config_raw = read_small(self.fs, entry.config, MAX_DOCUMENT_SIZE)
        config = decode_config(config_raw, where=f"{self.name}: {entry.config}")
        if len(config.diff_ids) != len(entry.layers):
            raise DocumentError(
                f"{self.name}: {entry.config}: {len(entry.layers)} layers in manifest.json but "
                f"{len(config.diff_ids)} rootfs.diff_ids in the config"
            )
        config_descriptor = Descriptor(mt.OCI_CONFIG, Digest.of(config_raw), len(config_raw))
        layers = tuple(
            self._layer(path, diff_id, entry) for path, diff_id in zip(entry.layers, config.diff_ids, strict=True)
        )
        document = Document.author(ImageManifest(config=config_descriptor, layers=tuple(b.descriptor for b in layers)))
        self._documents[str(config_descriptor.digest)] = config_raw
        self._documents[str(document.descriptor.digest)] = document.raw
        for layer in layers:
            self._blobs.setdefault(str(layer.digest), layer)
        return document.descriptor

    def _layer(self, path: str, diff_id: Digest, entry: _Entry) -> Blob:
        """The blob of one layer file, its descriptor built by [DOCKER-3] or [DOCKER-4].

        A missing file is allowed only when ``LayerSources`` describes it (a foreign layer
        docker does not save); any other missing layer is ``BlobMissingError``.
        """
        where = f"{self.name}: {path}"
        if not self.fs.exists(path):
            foreign = entry.layer_sources.get(str(diff_id))
            if isinstance(foreign, dict):
                _refuse_case_duplicates(foreign, f"{where} (LayerSources)")
                # docker save omits non-distributable layers and records them here instead
                descriptor = Descriptor.from_json(foreign, where=f"{where} (LayerSources)")
                return Blob(descriptor, None, where)
            raise BlobMissingError(f"{where}: layer named in manifest.json is not in the archive")
        size = self.fs.size(path)
        fs = self.fs
        with fs.open(path) as stream:
            compression = sniff_compression(stream.read(4))
        if compression is mt.Compression.NONE:
            # [DOCKER-3] the DiffID is the digest of the uncompressed tar: VerifyingReader
            # checks it when the layer streams.
            descriptor = Descriptor(mt.OCI_LAYER_TAR, diff_id, size)
        else:
            digest = self._hash_compressed(path, compression, diff_id)
            descriptor = Descriptor(mt.layer_media_type(compression, docker=False), digest, size)
        return Blob(descriptor, lambda: fs.open(path), where)

    def _hash_compressed(self, path: str, compression: mt.Compression, diff_id: Digest) -> Digest:
        """[DOCKER-4] The stored digest of a compressed layer; its inflated stream must be ``diff_id``.

        [SEC-3] One pass per file however often it is listed (by several images, or several
        times in one): the result, or the failure, is kept by the file's identity, so two
        names of one file (links) share it too. Raises ``DigestMismatchError`` for a corrupt
        or truncated stream and for a DiffID that does not match.
        """
        key = (self.fs.identity(path), diff_id.algorithm)
        outcome = self._inflated.get(key)
        if outcome is None:
            try:
                outcome = self._inflated[key] = _digests(self.fs, path, compression, diff_id)
            except DigestMismatchError as exc:
                self._inflated[key] = str(exc)
                raise
        if isinstance(outcome, str):
            raise DigestMismatchError(outcome)
        stored, uncompressed = outcome
        if uncompressed != diff_id.encoded:
            raise DigestMismatchError(
                f"{self.name}: {path}: the uncompressed layer does not match rootfs.diff_ids entry {diff_id}"
            )
        return stored


class _HashingReader:
    """The stored bytes of a layer, hashed as a decompressor reads them (one pass, no copy kept)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.hasher = Digest.new_hasher()

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at most one chunk when ``n < 0``), hashed on the way."""
        data = self._stream.read(n if n >= 0 else _CHUNK)
        self.hasher.update(data)
        return data


def _inflate_gzip(source: _HashingReader) -> Iterator[bytes]:
    """[SEC-3] The inflated bytes of a gzip stream (members concatenated), at most 1 MiB a step.

    ``max_length`` bounds every step and ``unconsumed_tail`` carries the rest of the input
    to the next one, so a bomb costs time, never memory. Raises ``zlib.error`` for a corrupt
    stream and ``EOFError`` for one that ends inside a member.
    """
    # wbits=47 (32 + 15): zlib detects the gzip header itself and uses the largest window
    decompressor = zlib.decompressobj(wbits=47)
    while chunk := source.read(_CHUNK):
        data, full = chunk, False
        while data or full:
            if decompressor.eof:  # a member ended: what follows is the next member
                decompressor = zlib.decompressobj(wbits=47)
            out = decompressor.decompress(data, _INFLATE_STEP)
            yield out
            data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
            # a full step may leave output pending inside zlib with no input left: ask again
            full = len(out) == _INFLATE_STEP and not decompressor.eof
    if not decompressor.eof:
        raise EOFError("the gzip stream ends inside a member")


def _inflate_zstd(source: _HashingReader) -> Iterator[bytes]:
    """[SEC-3] The inflated bytes of a zstd stream (frames concatenated), at most 1 MiB a step.

    A stream reader pulls input only as output is read, so memory is its window (capped
    at 128 MiB, zstd's default limit) whatever the stream claims. Raises ``ZstdError``.
    """
    decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
    # the reader needs only read(): a _HashingReader is enough
    reader = decompressor.stream_reader(source, read_size=_CHUNK, read_across_frames=True, closefd=False)  # type: ignore[arg-type]
    with reader:
        while out := reader.read(_INFLATE_STEP):
            yield out


def _digests(fs: FileSystem, path: str, compression: mt.Compression, diff_id: Digest) -> tuple[Digest, str]:
    """[DOCKER-4] One pass over a compressed layer: (its stored digest, the inflated hex digest).

    The inflated hash uses ``diff_id``'s algorithm. Raises ``DigestMismatchError`` when the
    stream cannot be decompressed to its end.
    """
    uncompressed = diff_id.hasher()
    with fs.open(path) as stream:
        source = _HashingReader(stream)
        inflate = _inflate_gzip if compression is mt.Compression.GZIP else _inflate_zstd
        try:
            for out in inflate(source):
                uncompressed.update(out)
        except (zlib.error, EOFError, zstandard.ZstdError) as exc:
            # a corrupt stream cannot yield its DiffID: report it as a content mismatch
            raise DigestMismatchError(f"{fs.name}: {path}: cannot decompress the layer ({exc})") from None
        while source.read(_CHUNK):  # bytes after the last frame are part of the stored blob
            pass
    return Digest("sha256", source.hasher.hexdigest()), uncompressed.hexdigest()


def _example_tag(entries: tuple[_Entry, ...]) -> str:
    """A RepoTag to show in the "several images" advice, or the placeholder TAG."""
    return next((e.repo_tags[0] for e in entries if e.repo_tags), "TAG")
