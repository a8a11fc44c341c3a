"""Deterministic gzip of uncompressed layers ([COMPRESS-1], [COMPRESS-2]).

docker-save layers are uncompressed tars. A Docker manifest list needs gzip layers, and
``--compress gzip`` asks for them in OCI output too. The compressed bytes must be identical on
every run (same digest, so a re-run or a re-push finds the blob already there): gzip header
with mtime 0, no file name, fixed level, one member. Each layer is compressed once, streaming,
into a spool directory, hashed as it is written.
"""

from __future__ import annotations

import gzip
import os

import attrs

from ocimerge.content import CHUNK_SIZE, Blob, Image
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest

__all__ = ["GZIP_LEVEL", "gzip_image", "gzip_layer"]

#: [COMPRESS-1] The level Go's and BuildKit's gzip default to: a fair size for the time.
GZIP_LEVEL = 6


class _HashingFile:
    """Counts and hashes what gzip writes, on its way to the spool file.

    Hashing on the way out means the new digest is known when compression ends, without
    reading the spooled file back. Only the methods :class:`gzip.GzipFile` calls exist.
    """

    def __init__(self, path: str) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.hasher = Digest.new_hasher()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Hash, count and write ``data``; the return value is what the file wrote."""
        self.hasher.update(data)
        self.size += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def gzip_layer(blob: Blob, directory: str) -> Blob:
    """[COMPRESS-2] The gzip form of an uncompressed layer, spooled under ``directory``.

    The source is verified as it streams ([VERIFY-1]); the result's descriptor keeps the
    vocabulary (OCI or Docker) of the input's media type and its annotations, with the new
    digest and size. The spool file is named after the source digest, so the same layer in
    two images is compressed to the same path with the same bytes ([COMPRESS-1]). Raises
    whatever reading the blob raises (a digest mismatch, an I/O error) and :class:`OSError`
    when the spool file cannot be written.
    """
    descriptor = blob.descriptor
    path = os.path.join(directory, f"{descriptor.digest.encoded}.gz")
    sink = _HashingFile(path)
    try:
        with (
            blob.open() as reader,
            # [COMPRESS-1] mtime 0 and an explicit empty name: GzipFile otherwise stamps the
            # current time (and a file object's name) in the header, giving a new digest each run.
            gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=GZIP_LEVEL) as gz,
        ):
            # One reused buffer: layers can be gigabytes, and readinto avoids a copy per chunk.
            buffer = bytearray(CHUNK_SIZE)
            view = memoryview(buffer)
            while n := reader.readinto(view):
                gz.write(view[:n])
    finally:
        sink.close()
    media_type = mt.layer_media_type(mt.Compression.GZIP, docker=mt.is_docker(descriptor.media_type))
    compressed = Descriptor(
        media_type=media_type,
        digest=Digest("sha256", sink.hasher.hexdigest()),
        size=sink.size,
        annotations=descriptor.annotations,
    )
    return Blob(compressed, lambda: open(path, "rb", buffering=0), f"{blob.where} (gzip)")


def gzip_image(image: Image, directory: str) -> Image:
    """The image with every uncompressed layer gzipped and its manifest re-authored.

    Returns ``image`` itself when no layer is uncompressed. A rewritten manifest has a new
    digest, so the image's attestations (which name the old one) no longer apply and are
    dropped ([ATTEST-2]). The config and its DiffIDs stay as they are: DiffIDs are digests of
    the uncompressed tars, which recompression does not change. Raises as :func:`gzip_layer`.
    """
    manifest = image.manifest.value
    if not any(mt.layer_compression(d.media_type) is mt.Compression.NONE for d in manifest.layers):
        return image
    layers = tuple(
        gzip_layer(b, directory) if mt.layer_compression(b.descriptor.media_type) is mt.Compression.NONE else b
        for b in image.layers
    )
    rewritten = attrs.evolve(manifest, layers=tuple(b.descriptor for b in layers))
    document: Document[ImageManifest] = Document.author(rewritten)
    return attrs.evolve(image, manifest=document, layers=layers, attestations=())
