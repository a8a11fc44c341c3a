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
from ocimerge._version import __version__ as __version__
from ocimerge.errors import *  # noqa: F403  # the whole tree is public, and cheap to import

if TYPE_CHECKING:  # explicit re-exports (`X as X`), so type checkers see the lazy names
    from ocimerge.content import (
        Attestation as Attestation,
    )
    from ocimerge.content import (
        Blob as Blob,
    )
    from ocimerge.content import (
        BlobOrigin as BlobOrigin,
    )
    from ocimerge.content import (
        Image as Image,
    )
    from ocimerge.content import (
        ImageSet as ImageSet,
    )
    from ocimerge.inspection import (
        InspectReport as InspectReport,
    )
    from ocimerge.inspection import (
        VerifyReport as VerifyReport,
    )
    from ocimerge.inspection import (
        inspect as inspect,
    )
    from ocimerge.inspection import (
        verify as verify,
    )
    from ocimerge.model.assemble import (
        Annotation as Annotation,
    )
    from ocimerge.model.assemble import (
        Assembly as Assembly,
    )
    from ocimerge.model.assemble import (
        AttestationPolicy as AttestationPolicy,
    )
    from ocimerge.model.assemble import (
        Child as Child,
    )
    from ocimerge.model.assemble import (
        IndexFormat as IndexFormat,
    )
    from ocimerge.model.assemble import (
        assemble as assemble,
    )
    from ocimerge.model.descriptor import (
        Descriptor as Descriptor,
    )
    from ocimerge.model.digest import (
        Digest as Digest,
    )
    from ocimerge.model.manifest import (
        Document as Document,
    )
    from ocimerge.model.manifest import (
        ImageConfig as ImageConfig,
    )
    from ocimerge.model.manifest import (
        ImageIndex as ImageIndex,
    )
    from ocimerge.model.manifest import (
        ImageManifest as ImageManifest,
    )
    from ocimerge.model.platform import (
        Platform as Platform,
    )
    from ocimerge.model.reference import (
        Reference as Reference,
    )
    from ocimerge.operations import (
        CreateOptions as CreateOptions,
    )
    from ocimerge.operations import (
        CreateResult as CreateResult,
    )
    from ocimerge.operations import (
        PushSourceResult as PushSourceResult,
    )
    from ocimerge.operations import (
        create as create,
    )
    from ocimerge.operations import (
        open_images as open_images,
    )
    from ocimerge.operations import (
        push as push,
    )
    from ocimerge.registry.api import (
        Registry as Registry,
    )
    from ocimerge.registry.api import (
        RegistryOptions as RegistryOptions,
    )
    from ocimerge.registry.credentials import (
        Credentials as Credentials,
    )
    from ocimerge.registry.transport import (
        RetryPolicy as RetryPolicy,
    )
    from ocimerge.registry.transport import (
        TLSOptions as TLSOptions,
    )
    from ocimerge.sinks.registry import (
        BlobAction as BlobAction,
    )
    from ocimerge.sinks.registry import (
        BlobPlan as BlobPlan,
    )
    from ocimerge.sinks.registry import (
        PushEvent as PushEvent,
    )
    from ocimerge.sinks.registry import (
        PushEventKind as PushEventKind,
    )
    from ocimerge.sinks.registry import (
        PushOptions as PushOptions,
    )
    from ocimerge.sinks.registry import (
        PushResult as PushResult,
    )
    from ocimerge.sources import (
        SourceKind as SourceKind,
    )


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


__all__ = sorted(  # noqa: PLE0605 - derived from the one list above, as the issue asks
    [
        *(n for n in _errors.__all__ if isinstance(getattr(_errors, n), type)),
        *_LAZY,
        "__version__",
    ]
)
