"""ocimerge: assemble multi-platform OCI image indexes and Docker manifest lists.

The public API is ``__all__`` (pinned by ``tests/test_public_api.py``)::

    import ocimerge

    result = ocimerge.create(["amd64.tar", "arm64.tar"], "multiarch.tar")
    print(result.index.descriptor.digest)
    ocimerge.push("multiarch.tar", ["registry.example:5000/team/app:1.0"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ocimerge._version import __version__
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

if TYPE_CHECKING:
    from ocimerge.content import Attestation, Blob, Image, ImageSet
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
    from ocimerge.publish import PushEvent, PushResult
    from ocimerge.registry.api import Registry, RegistryOptions
    from ocimerge.registry.credentials import Credentials
    from ocimerge.registry.transport import RetryPolicy, TLSOptions


# Everything but the errors is imported on first use: `ocimerge --version` and a local merge
# never pay for the registry client (httpx) they do not touch.
_LAZY = {
    "Annotation": "ocimerge.model.assemble",
    "Assembly": "ocimerge.model.assemble",
    "Attestation": "ocimerge.content",
    "AttestationPolicy": "ocimerge.model.assemble",
    "Blob": "ocimerge.content",
    "Child": "ocimerge.model.assemble",
    "CreateResult": "ocimerge.operations",
    "Credentials": "ocimerge.registry.credentials",
    "Descriptor": "ocimerge.model.descriptor",
    "Digest": "ocimerge.model.digest",
    "Document": "ocimerge.model.manifest",
    "Image": "ocimerge.content",
    "ImageConfig": "ocimerge.model.manifest",
    "ImageIndex": "ocimerge.model.manifest",
    "ImageManifest": "ocimerge.model.manifest",
    "ImageSet": "ocimerge.content",
    "IndexFormat": "ocimerge.model.assemble",
    "Platform": "ocimerge.model.platform",
    "PushEvent": "ocimerge.publish",
    "PushResult": "ocimerge.publish",
    "PushSourceResult": "ocimerge.operations",
    "Reference": "ocimerge.model.reference",
    "Registry": "ocimerge.registry.api",
    "RegistryOptions": "ocimerge.registry.api",
    "RetryPolicy": "ocimerge.registry.transport",
    "TLSOptions": "ocimerge.registry.transport",
    "VerifyReport": "ocimerge.inspection",
    "assemble": "ocimerge.model.assemble",
    "create": "ocimerge.operations",
    "inspect": "ocimerge.inspection",
    "inspect_remote": "ocimerge.inspection",
    "open_images": "ocimerge.operations",
    "push": "ocimerge.operations",
    "verify": "ocimerge.inspection",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocimerge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
