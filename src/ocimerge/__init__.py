"""ocimerge: assemble multi-platform OCI image indexes and Docker manifest lists.

The public API is ``__all__`` (pinned by ``test_public_api_is_pinned`` in
``tests/test_structure.py``); submodules are the implementation behind it::

    import ocimerge

    result = ocimerge.create(["amd64.tar", "arm64.tar"], "multiarch.tar")
    print(result.index.descriptor.digest)
    ocimerge.push("multiarch.tar", ["registry.example:5000/team/app:1.0"])

What the names are for: ``create``, ``push`` and ``open_images`` are the commands as
functions; ``inspect`` and ``verify`` report on a source without changing anything; the
model values (``Descriptor``, ``Digest``, ``Platform``, ``Reference``, the documents and
``assemble``) are pure and usable without any source; ``Registry`` is the low-level client,
one method per endpoint. Every error is an ``OcimergeError`` subclass exported here by
name, so callers catch by category (``InputError``, ``OutputError``, ``RegistryError``)
instead of matching messages.

Importing the package is cheap: only the error tree is loaded eagerly, every other name is
imported on first access through the module ``__getattr__`` (PEP 562), so
``ocimerge --version`` and a local merge never load httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ocimerge import errors as _errors

# kept in step with pyproject.toml's version by hand; _version imports nothing, so
# `ocimerge --version` stays instant
from ocimerge._version import __version__ as __version__
from ocimerge.errors import *  # noqa: F403  # the whole tree is public, and cheap to import

# The lazy ``__getattr__`` below is invisible to mypy and editors, hence these static
# imports; they never run. Keep them, ``_EXPORTS`` and ``PUBLIC_API`` in
# tests/test_structure.py in step: the test catches a name missing from ``_EXPORTS``.
if TYPE_CHECKING:  # explicit re-exports (`X as X`), so type checkers see the lazy names
    # content values: what walking a source yields, blobs that verify as they stream
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
    from ocimerge.content import (
        Referrer as Referrer,
    )

    # the typed reports of inspect and verify
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

    # the pure model (layer 0): assembly, descriptors, digests, documents, platforms
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

    # the commands as functions, with their frozen options and results
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
        partial_result as partial_result,
    )
    from ocimerge.operations import (
        push as push,
    )

    # the registry client and its connection settings (these pull in httpx)
    from ocimerge.registry.api import (
        Registry as Registry,
    )
    from ocimerge.registry.api import (
        RegistryOptions as RegistryOptions,
    )
    from ocimerge.registry.credentials import (
        Credentials as Credentials,
    )
    from ocimerge.registry.referrers import (
        Referrers as Referrers,
    )
    from ocimerge.registry.transport import (
        RetryPolicy as RetryPolicy,
    )
    from ocimerge.registry.transport import (
        TLSOptions as TLSOptions,
    )

    # cosign signatures, offline: keys in, signatures checked
    from ocimerge.signatures import (
        load_private_key as load_private_key,
    )
    from ocimerge.signatures import (
        load_public_key as load_public_key,
    )

    # what a push reports: per-blob plans, progress events, per-repository results
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
        PushFailure as PushFailure,
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

    # the registry chores around a merge: more tags without moving blobs, tags removed safely
    from ocimerge.tagging import (
        TagResult as TagResult,
    )
    from ocimerge.tagging import (
        UntagOutcome as UntagOutcome,
    )
    from ocimerge.tagging import (
        UntagResult as UntagResult,
    )
    from ocimerge.tagging import (
        tag as tag,
    )
    from ocimerge.tagging import (
        untag as untag,
    )
    from ocimerge.tagging import (
        untag_sources as untag_sources,
    )


# The one list of what the package exports lazily, by module. Everything but the errors is
# imported on first use: `ocimerge --version` and a local merge never pay for the registry
# client (httpx) they do not touch. `__all__` and the lazy table are both derived from it.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "ocimerge.content": ("Attestation", "Blob", "BlobOrigin", "Image", "ImageSet", "Referrer"),
    "ocimerge.inspection": ("InspectReport", "VerifyReport", "inspect", "verify"),
    "ocimerge.model.assemble": ("Annotation", "Assembly", "AttestationPolicy", "Child", "IndexFormat", "assemble"),
    "ocimerge.model.descriptor": ("Descriptor",),
    "ocimerge.model.digest": ("Digest",),
    "ocimerge.model.manifest": ("Document", "ImageConfig", "ImageIndex", "ImageManifest"),
    "ocimerge.model.platform": ("Platform",),
    "ocimerge.model.reference": ("Reference",),
    "ocimerge.operations": (
        "CreateOptions",
        "CreateResult",
        "PushSourceResult",
        "create",
        "open_images",
        "partial_result",
        "push",
    ),
    "ocimerge.registry.api": ("Registry", "RegistryOptions"),
    "ocimerge.registry.credentials": ("Credentials",),
    "ocimerge.registry.referrers": ("Referrers",),
    "ocimerge.registry.transport": ("RetryPolicy", "TLSOptions"),
    "ocimerge.signatures": ("load_private_key", "load_public_key"),
    "ocimerge.sinks.registry": (
        "BlobAction",
        "BlobPlan",
        "PushEvent",
        "PushEventKind",
        "PushFailure",
        "PushOptions",
        "PushResult",
    ),
    # from sources only the kind: reports and results name it, the readers stay internal
    "ocimerge.sources": ("SourceKind",),
    "ocimerge.tagging": ("TagResult", "UntagOutcome", "UntagResult", "tag", "untag", "untag_sources"),
}
# name -> defining module, for __getattr__; every name appears under exactly one module
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """PEP 562: import the module that defines ``name`` on first access and return it.

    The value is cached in the module's globals, so the import happens once and later
    lookups never come back here. Raises ``AttributeError`` for a name that is not exported,
    as a plain module would, so ``hasattr`` and ``getattr(ocimerge, name, default)`` work.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocimerge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


# Only the error classes are exported from the error module (its __all__ also lists
# constants such as RETRYABLE_STATUSES); ``from ocimerge import *`` resolves the lazy names
# through __getattr__, so it imports everything, httpx included.
__all__ = sorted(  # noqa: PLE0605 - derived from the one list above, as the issue asks
    [
        *(n for n in _errors.__all__ if isinstance(getattr(_errors, n), type)),
        *_LAZY,
        "__version__",
    ]
)
