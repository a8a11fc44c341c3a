"""House rules held by tests: the layering table, the public API, and module doctests."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import ocimerge

SRC = Path(__file__).resolve().parents[1] / "src" / "ocimerge"

# DESIGN.md's table: each module's layer, and the layers each layer may import from.
LAYERS: dict[str, int] = {
    "ocimerge.errors": 0,
    "ocimerge._version": 0,
    "ocimerge.text": 0,  # [SEC-5] printable(): pure text escaping
    "ocimerge.model": 0,
    "ocimerge.content": 1,
    "ocimerge.events": 1,  # [PROGRESS-2] the blob events every command that moves blobs reports
    "ocimerge.sources": 2,
    "ocimerge.sinks": 2,
    "ocimerge.recompress": 2,
    "ocimerge.specfile": 2,
    "ocimerge.registry.challenge": 2,
    "ocimerge.registry.credentials": 2,
    "ocimerge.registry": 3,
    "ocimerge.signatures": 3,
    "ocimerge.signed": 3,  # which images a key signed: signatures over content values
    "ocimerge.registry.api": 4,
    "ocimerge.registry.referrers": 4,
    "ocimerge.registry.login": 5,  # login/logout: the registry client checks, docker's config keeps
    "ocimerge.sinks.registry": 5,  # the push: orchestration over the registry API
    "ocimerge.inspection": 5,
    "ocimerge.doctor": 5,
    "ocimerge.operations": 5,
    "ocimerge.restore": 5,
    "ocimerge.bundle": 5,
    "ocimerge.tagging": 5,  # tag, untag, untag_sources: registry chores over the API and the push
    "ocimerge.progress": 6,
    "ocimerge.cli": 6,
    "ocimerge.__main__": 6,
    "ocimerge.testing": 6,
    "ocimerge": 6,  # the package facade re-exports everything
}
# Third-party imports allowed per layer (stdlib is always allowed except I/O in the model).
THIRD_PARTY = {0: {"attrs"}, 1: {"attrs"}, 2: {"attrs", "zstandard"}, 3: {"attrs", "httpx", "cryptography"}}
MODEL_FORBIDDEN = {
    "os",
    "io",
    "socket",
    "logging",
    "time",
    "datetime",
    "pathlib",
    "tempfile",
    "shutil",
    "subprocess",
    "urllib",
    "http",
    "random",
    "tarfile",
    "gzip",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int:
    best = max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len)
    return LAYERS[best]


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_follow_the_layering(path: Path) -> None:
    name = module_name(path)
    mine = layer_of(name)
    for imported in imports(path):
        top = imported.split(".")[0]
        if top == "ocimerge":
            theirs = layer_of(imported)
            assert theirs <= mine, f"{name} (layer {mine}) imports {imported} (layer {theirs})"
            if mine < 6:
                assert imported not in ("ocimerge.cli", "ocimerge.__main__")
        elif mine <= 1:
            # layer 1 wraps streams (io.BytesIO for in-memory documents) but opens nothing
            forbidden = MODEL_FORBIDDEN - ({"io"} if mine == 1 else set())
            assert top not in forbidden, f"{name} must do no I/O but imports {imported}"
            if top not in THIRD_PARTY[mine] and top not in {
                "__future__",
                "typing",
                "collections",
                "enum",
                "re",
                "json",
                "hashlib",
                "abc",
                "dataclasses",
                "functools",
                "io",
            }:
                raise AssertionError(f"{name} (layer {mine}) imports {imported}")
        elif mine in THIRD_PARTY and top in {"httpx", "cryptography", "attrs", "zstandard"}:
            assert top in THIRD_PARTY[mine], f"{name} (layer {mine}) may not use {top}"


PUBLIC_API = sorted(
    [
        "TagResult",
        "UntagOutcome",
        "UntagResult",
        "tag",
        "untag",
        "untag_sources",
        "Annotation",
        "ArchiveError",
        "Assembly",
        "Attestation",
        "AttestationPolicy",
        "AuthError",
        "Blob",
        "BlobAction",
        "BlobMissingError",
        "BlobOrigin",
        "BlobPlan",
        "BlobUnknownError",
        "BlobUploadInvalidError",
        "BlobUploadUnknownError",
        "Child",
        "ConversionError",
        "CreateOptions",
        "CreateResult",
        "Credentials",
        "DeleteUnsupportedError",
        "DeniedError",
        "Descriptor",
        "Digest",
        "DigestInvalidError",
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
        "InspectReport",
        "ManifestBlobUnknownError",
        "ManifestInvalidError",
        "ManifestUnknownError",
        "ModelError",
        "NameInvalidError",
        "NameUnknownError",
        "NotAnImageError",
        "OcimergeError",
        "OutputError",
        "Platform",
        "PlatformConflictError",
        "PlatformMismatchError",
        "PushEvent",
        "PushEventKind",
        "PushFailure",
        "PushOptions",
        "PushResult",
        "PushSourceResult",
        "Reference",
        "Referrer",
        "Referrers",
        "Registry",
        "RegistryError",
        "RegistryOptions",
        "RemoteError",
        "RequestTooLargeError",
        "RetryPolicy",
        "SelectionError",
        "SignatureError",
        "SizeInvalidError",
        "SourceKind",
        "SourceNotFoundError",
        "TLSOptions",
        "TLSVerificationError",
        "TagMovedError",
        "TagNeededError",
        "TooManyRequestsError",
        "TransportError",
        "UnauthorizedError",
        "UnsupportedError",
        "UnsupportedMediaTypeError",
        "UsageError",
        "VerifyReport",
        "__version__",
        "assemble",
        "load_private_key",
        "load_public_key",
        "create",
        "inspect",
        "open_images",
        "partial_result",
        "push",
        "verify",
    ]
)


def test_public_api_is_pinned() -> None:
    assert sorted(ocimerge.__all__) == PUBLIC_API
    for name in ocimerge.__all__:
        assert hasattr(ocimerge, name), name


def test_every_error_derives_from_the_root() -> None:
    from ocimerge import errors

    classes = [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    assert len(classes) >= 30
    for cls in classes:
        assert issubclass(cls, errors.OcimergeError)


def _doctest_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(SRC)], prefix="ocimerge."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _doctest_modules())
def test_module_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_public_value_types_carry_a_doctest() -> None:
    for cls in (
        ocimerge.Digest,
        ocimerge.Platform,
        ocimerge.Descriptor,
        ocimerge.Reference,
        ocimerge.Document,
        ocimerge.Annotation,
    ):
        assert ">>>" in (cls.__doc__ or ""), cls.__name__
