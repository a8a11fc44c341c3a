"""Media types of the OCI image spec and Docker schema 2 ([MEDIA-1] .. [MEDIA-4]).

The one place media-type strings are spelled: every other module compares against these
constants, so a typo cannot silently make a manifest "unknown". Besides the names
([MEDIA-1]) it answers the three questions assembly asks of a type: is it Docker's
vocabulary ([MEDIA-2], which decides OCI index vs Docker list in [INDEX-4]), what
compression does a layer type declare ([MEDIA-3]), and is a layer foreign ([MEDIA-4]).

>>> layer_compression(DOCKER_LAYER_GZIP), is_docker(OCI_INDEX)
(<Compression.GZIP: 'gzip'>, False)
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER_GZIP",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_TAR",
    "DOCKER_LAYER_ZSTD",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SCHEMA1_MANIFEST",
    "DOCKER_SCHEMA1_SIGNED",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_TAR",
    "OCI_LAYER_ZSTD",
    "OCI_LAYOUT_HEADER",
    "OCI_MANIFEST",
    "Compression",
    "is_docker",
    "is_foreign_layer",
    "layer_compression",
    "layer_media_type",
]

# [MEDIA-1] The OCI vocabulary (image-spec media-types.md).
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"

# [MEDIA-1] Docker schema 2 (distribution manifest-v2-2.md). The zstd layer type is not in
# Docker's spec: it is the one containerd and BuildKit write, so it is what we meet in the wild.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
# Schema 1 is known only so that it can be refused by name ([MANIFEST-1], [REMOTE-4]).
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

#: Exactly one OCI and one Docker type each: what ``mediaType`` of a manifest / index may be.
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})


class Compression(Enum):
    """How a layer's tar stream is stored, as its media type declares it ([MEDIA-3]).

    The declared compression is what decides conversion ([CONVERT-1]: only gzip has a Docker
    form) and recompression ([COMPRESS-2]: only NONE is gzipped); docker-save layers, whose
    type says nothing, are sniffed by magic bytes elsewhere ([DOCKER-3]).
    """

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


_LAYERS: dict[str, tuple[Compression, bool]] = {
    # media type -> (compression, is Docker-typed). The OCI non-distributable types are
    # deprecated since image-spec 1.1 but still found in published images, so still recognised.
    OCI_LAYER_TAR: (Compression.NONE, False),
    OCI_LAYER_GZIP: (Compression.GZIP, False),
    OCI_LAYER_ZSTD: (Compression.ZSTD, False),
    "application/vnd.oci.image.layer.nondistributable.v1.tar": (Compression.NONE, False),
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": (Compression.GZIP, False),
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": (Compression.ZSTD, False),
    DOCKER_LAYER_TAR: (Compression.NONE, True),
    DOCKER_LAYER_GZIP: (Compression.GZIP, True),
    DOCKER_LAYER_ZSTD: (Compression.ZSTD, True),
    DOCKER_FOREIGN_LAYER_GZIP: (Compression.GZIP, True),
}


def layer_compression(media_type: str) -> Compression | None:
    """[MEDIA-3] The compression a layer media type declares.

    Returns None for any type not in the table (an in-toto statement, an artifact blob), so a
    caller can tell "uncompressed" (``Compression.NONE``) from "not a layer we understand".
    Never raises.
    """
    known = _LAYERS.get(media_type)
    return known[0] if known else None


def is_foreign_layer(media_type: str) -> bool:
    """[MEDIA-4] Whether the layer is non-distributable: its blob may be absent from a source.

    Such a layer is then neither required, verified nor written; a present blob is copied as
    usual. Never raises.
    """
    # A substring test, not the table: Docker and OCI spell it differently ("foreign",
    # "nondistributable") and both have several compressions, some not in _LAYERS.
    return "nondistributable" in media_type or "foreign" in media_type


def is_docker(media_type: str | None) -> bool:
    """[MEDIA-2] Whether a media type belongs to Docker's vocabulary.

    True exactly for the ``application/vnd.docker.`` prefix; None or ``""`` (a manifest that
    omits ``mediaType``, as OCI allows) is not Docker. Never raises.
    """
    # By prefix, as buildx's Combine does, so Docker types we do not name (attestation
    # manifests, plugin configs) still count as Docker when choosing the output format.
    return bool(media_type) and str(media_type).startswith("application/vnd.docker.")


def layer_media_type(compression: Compression, *, docker: bool) -> str:
    """[MEDIA-3] The layer media type for ``compression`` in the OCI or Docker vocabulary.

    Used when a layer is re-described (recompressed or converted) so that its type stays in
    the vocabulary of the manifest that lists it. Never raises for a :class:`Compression`.
    """
    if docker:
        return {
            Compression.NONE: DOCKER_LAYER_TAR,
            Compression.GZIP: DOCKER_LAYER_GZIP,
            Compression.ZSTD: DOCKER_LAYER_ZSTD,
        }[compression]
    return {
        Compression.NONE: OCI_LAYER_TAR,
        Compression.GZIP: OCI_LAYER_GZIP,
        Compression.ZSTD: OCI_LAYER_ZSTD,
    }[compression]
