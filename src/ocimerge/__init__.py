"""ocimerge: assemble multi-platform OCI image indexes and Docker manifest lists.

The public API is ``__all__`` (pinned by ``tests/test_public_api.py``)::

    import ocimerge

    result = ocimerge.create(["amd64.tar", "arm64.tar"], "multiarch.tar")
    print(result.index.descriptor.digest)
"""

from __future__ import annotations

__version__ = "0.1.0"

from ocimerge.content import Attestation, Blob, Image, ImageSet
from ocimerge.errors import (
    ArchiveError,
    AuthError,
    BlobMissingError,
    ConversionError,
    DigestMismatchError,
    DocumentError,
    InputError,
    ModelError,
    NotAnImageError,
    OcimergeError,
    OutputError,
    PlatformConflictError,
    PlatformMismatchError,
    RegistryError,
    RemoteError,
    SelectionError,
    TransportError,
    UnsupportedMediaTypeError,
    UsageError,
)
from ocimerge.model.assemble import (
    Annotation,
    Assembly,
    AttestationPolicy,
    Child,
    IndexFormat,
    assemble,
)
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageConfig, ImageIndex, ImageManifest
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference
from ocimerge.operations import CreateResult, VerifyReport, create, inspect, open_images, verify

__all__ = [
    "Annotation",
    "ArchiveError",
    "Assembly",
    "Attestation",
    "AttestationPolicy",
    "AuthError",
    "Blob",
    "BlobMissingError",
    "Child",
    "ConversionError",
    "CreateResult",
    "Descriptor",
    "Digest",
    "DigestMismatchError",
    "Document",
    "DocumentError",
    "Image",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "ImageSet",
    "IndexFormat",
    "InputError",
    "ModelError",
    "NotAnImageError",
    "OcimergeError",
    "OutputError",
    "Platform",
    "PlatformConflictError",
    "PlatformMismatchError",
    "Reference",
    "RegistryError",
    "RemoteError",
    "SelectionError",
    "TransportError",
    "UnsupportedMediaTypeError",
    "UsageError",
    "VerifyReport",
    "__version__",
    "assemble",
    "create",
    "inspect",
    "open_images",
    "verify",
]
