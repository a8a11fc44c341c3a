"""Media types of the OCI image spec and Docker schema 2 ([MEDIA-1] .. [MEDIA-4])."""

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

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})


class Compression(Enum):
    """How a layer's tar stream is stored."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


_LAYERS: dict[str, tuple[Compression, bool]] = {
    # media type -> (compression, is Docker-typed)
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
    """The compression a layer media type declares, or None for a type we do not know."""
    known = _LAYERS.get(media_type)
    return known[0] if known else None


def is_foreign_layer(media_type: str) -> bool:
    """Whether the layer is non-distributable: never pushed, never required in a layout."""
    return "nondistributable" in media_type or "foreign" in media_type


def is_docker(media_type: str | None) -> bool:
    """[MEDIA-2] Whether a media type belongs to Docker's vocabulary."""
    return bool(media_type) and str(media_type).startswith("application/vnd.docker.")


def layer_media_type(compression: Compression, *, docker: bool) -> str:
    """[MEDIA-3] The layer media type for ``compression`` in the OCI or Docker vocabulary."""
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
