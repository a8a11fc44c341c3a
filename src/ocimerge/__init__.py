"""ocimerge: assemble multi-platform OCI image indexes and Docker manifest lists.

The public API is ``__all__`` (pinned by ``tests/test_public_api.py``)::

    import ocimerge

    result = ocimerge.create(["amd64.tar", "arm64.tar"], "multiarch.tar")
    print(result.index.descriptor.digest)
    ocimerge.push("multiarch.tar", ["registry.example:5000/team/app:1.0"])
"""

from __future__ import annotations

from ocimerge._version import __version__
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
from ocimerge.inspection import VerifyReport, inspect, inspect_remote, verify
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
from ocimerge.operations import CreateResult, PushSourceResult, create, open_images, push
from ocimerge.push import PushEvent, PushResult
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.registry.credentials import Credentials
from ocimerge.registry.transport import RetryPolicy, TLSOptions

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
    "Credentials",
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
    "PushEvent",
    "PushResult",
    "PushSourceResult",
    "Reference",
    "Registry",
    "RegistryError",
    "RegistryOptions",
    "RemoteError",
    "RetryPolicy",
    "SelectionError",
    "TLSOptions",
    "TransportError",
    "UnsupportedMediaTypeError",
    "UsageError",
    "VerifyReport",
    "__version__",
    "assemble",
    "create",
    "inspect",
    "inspect_remote",
    "open_images",
    "push",
    "verify",
]
