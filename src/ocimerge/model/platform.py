"""Platforms: ``os/arch[/variant]`` with containerd's normalisation ([PLATFORM-1] .. [PLATFORM-5])."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ocimerge.errors import DocumentError, UsageError

__all__ = ["Platform"]

_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """[PLATFORM-2] containerd/platforms ``normalizeArch``, with arm64's implied v8 made explicit."""
    arch = arch.lower()
    variant = variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("", "8", "v8", "v8.0"):
            return "arm64", "v8"
        if variant in ("9", "9.0", "v9.0"):
            return "arm64", "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
        return "arm", variant
    return arch, variant


def _normalize_os(os: str) -> str:
    os = os.lower()
    return "darwin" if os == "macos" else os


def _features(value: Iterable[str] | None) -> tuple[str, ...]:
    return tuple(value or ())


@attrs.frozen(eq=False)
class Platform:
    """The platform an image runs on, as found in a config or an index entry.

    Fields keep the spelling they were read with (an index we write shows the platform as the
    image's config states it), while equality, hashing and ordering use the normalised form:
    ``linux/arm64`` equals ``linux/arm64/v8`` and ``linux/aarch64``, ``linux/arm`` equals
    ``linux/arm/v7`` [PLATFORM-3].

    >>> p = Platform.parse("linux/aarch64")
    >>> str(p), str(p.normalized())
    ('linux/aarch64', 'linux/arm64/v8')
    >>> p == Platform.parse("linux/arm64/v8")
    True
    >>> Platform.parse("linux/arm") == Platform.parse("linux/arm/v6")
    False
    """

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = attrs.field(default=(), converter=_features)
    features: tuple[str, ...] = attrs.field(default=(), converter=_features)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` as given on a command line; raise :class:`UsageError`."""
        parts = text.strip().split("/")
        if not 2 <= len(parts) <= 3 or not all(_COMPONENT.fullmatch(p) for p in parts):
            raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64/v8")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_json(cls, value: object, *, where: str = "platform") -> Platform:
        """Parse the ``platform`` object of a descriptor (or the platform fields of a config)."""
        if not isinstance(value, Mapping):
            raise DocumentError(f"{where}: expected a JSON object")
        os_ = value.get("os")
        arch = value.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise DocumentError(f"{where}: 'os' and 'architecture' must be strings")
        return cls(
            os=os_,
            architecture=arch,
            variant=_optional_str(value, "variant", where),
            os_version=_optional_str(value, "os.version", where),
            os_features=_optional_strs(value, "os.features", where),
            features=_optional_strs(value, "features", where),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``platform`` object in image-spec field order, empty fields left out."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        if self.features:
            out["features"] = list(self.features)
        return out

    def normalized(self) -> Platform:
        """[PLATFORM-2] The containerd-normalised spelling of this platform."""
        arch, variant = _normalize_arch(self.architecture, self.variant)
        return Platform(
            os=_normalize_os(self.os),
            architecture=arch,
            variant=variant,
            os_version=self.os_version,
            os_features=tuple(sorted(set(self.os_features))),
            features=self.features,
        )

    @property
    def key(self) -> tuple[str, str, str, str, tuple[str, ...]]:
        """[PLATFORM-3] What equality compares: normalised os, arch, variant, os.version, os.features.

        It is also the documented sort key of index entries [INDEX-2].
        """
        n = self.normalized()
        return (n.os, n.architecture, n.variant, n.os_version, n.os_features)

    @property
    def is_unknown(self) -> bool:
        """[ATTEST-1] ``unknown/unknown``: the platform BuildKit gives attestation manifests."""
        return self.os == "unknown" and self.architecture == "unknown"

    def with_variant_from(self, other: Platform) -> Platform:
        """Take ``other``'s variant when this one has none and both are the same platform.

        Configs often omit the variant (``arm64``) that the builder's descriptor or the user
        spelled out (``arm64/v8``); the more specific spelling is kept in the index.
        """
        if not self.variant and other.variant and other == self:
            return attrs.evolve(self, variant=other.variant)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Platform):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __lt__(self, other: Platform) -> bool:
        return self.key < other.key

    def __str__(self) -> str:
        text = f"{self.os or 'unknown'}/{self.architecture}"
        if self.variant:
            text += f"/{self.variant}"
        if self.os_version:
            text += f" ({self.os_version})"
        return text


def _optional_str(value: Mapping[str, Any], key: str, where: str) -> str:
    item = value.get(key)
    if item is None:
        return ""
    if not isinstance(item, str):
        raise DocumentError(f"{where}: {key!r} must be a string")
    return item


def _optional_strs(value: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    item = value.get(key)
    if item is None:
        return ()
    if not isinstance(item, list) or not all(isinstance(x, str) for x in item):
        raise DocumentError(f"{where}: {key!r} must be a list of strings")
    return tuple(item)
