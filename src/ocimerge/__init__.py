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

from ocimerge import errors as _errors
from ocimerge._version import __version__
from ocimerge.errors import *  # noqa: F403  # the whole tree is public, and cheap to import

if TYPE_CHECKING:
    from ocimerge.content import Attestation, Blob, BlobOrigin, Image, ImageSet
    from ocimerge.inspection import InspectReport, VerifyReport, inspect, verify
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
    from ocimerge.operations import CreateOptions, CreateResult, PushSourceResult, create, open_images, push
    from ocimerge.registry.api import Registry, RegistryOptions
    from ocimerge.registry.credentials import Credentials
    from ocimerge.registry.transport import RetryPolicy, TLSOptions
    from ocimerge.sinks.registry import BlobAction, BlobPlan, PushEvent, PushEventKind, PushOptions, PushResult
    from ocimerge.sources import SourceKind


# The one list of what the package exports lazily, by module. Everything but the errors is
# imported on first use: `ocimerge --version` and a local merge never pay for the registry
# client (httpx) they do not touch. `__all__` and the lazy table are both derived from it.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "ocimerge.content": ("Attestation", "Blob", "BlobOrigin", "Image", "ImageSet"),
    "ocimerge.inspection": ("InspectReport", "VerifyReport", "inspect", "verify"),
    "ocimerge.model.assemble": ("Annotation", "Assembly", "AttestationPolicy", "Child", "IndexFormat", "assemble"),
    "ocimerge.model.descriptor": ("Descriptor",),
    "ocimerge.model.digest": ("Digest",),
    "ocimerge.model.manifest": ("Document", "ImageConfig", "ImageIndex", "ImageManifest"),
    "ocimerge.model.platform": ("Platform",),
    "ocimerge.model.reference": ("Reference",),
    "ocimerge.operations": ("CreateOptions", "CreateResult", "PushSourceResult", "create", "open_images", "push"),
    "ocimerge.registry.api": ("Registry", "RegistryOptions"),
    "ocimerge.registry.credentials": ("Credentials",),
    "ocimerge.registry.transport": ("RetryPolicy", "TLSOptions"),
    "ocimerge.sinks.registry": ("BlobAction", "BlobPlan", "PushEvent", "PushEventKind", "PushOptions", "PushResult"),
    "ocimerge.sources": ("SourceKind",),
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocimerge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted(
    [
        *(n for n in _errors.__all__ if isinstance(getattr(_errors, n), type)),
        *_LAZY,
        "__version__",
    ]
)
