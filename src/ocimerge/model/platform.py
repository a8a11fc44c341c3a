"""Platforms: ``os/arch[/variant]`` with containerd's normalisation ([PLATFORM-1] .. [PLATFORM-5]).

A platform is what an index entry is keyed on, so this module decides which images are "the
same platform" for conflict detection ([INDEX-3]), ``SRC=PLATFORM`` selection ([PLATFORM-5]),
per-platform annotations ([INDEX-6]) and entry order ([INDEX-2]). It implements the object
and its spellings ([PLATFORM-1]), containerd's normalisation ([PLATFORM-2]), equality on
the normalised form ([PLATFORM-3]) and the looser matching of a wanted platform
([PLATFORM-7]); taking the platform from the config and only the variant
from a descriptor ([PLATFORM-4]) is :meth:`Platform.with_variant_from`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ocimerge.errors import DocumentError, UsageError
from ocimerge.text import printable

__all__ = ["Platform"]

# [PLATFORM-1] One command-line component (os, arch or variant); anything else, a space or a
# comma from a mistyped --platforms list, is rejected before it can become a non-matching key.
_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")
# [PLATFORM-6] [SEC-5] What containerd's platform parser accepts in every field read from a
# document: os, architecture, variant, os.version and each os.feature / feature. Empty is
# allowed here (an absent field); a control character, a space or a slash never is.
_FIELD = re.compile(r"[A-Za-z0-9_.-]*")

# [PLATFORM-2] Aliases that fix the variant whatever was given: i386 has none, and Debian's
# armhf / armel names carry none of their own, so containerd's fixed v7 / v6 is used.
_FIXED_ARCH = {"i386": ("386", ""), "armhf": ("arm", "v7"), "armel": ("arm", "v6")}


def _normalize_arm64_variant(variant: str) -> str:
    # Unlike containerd (which drops it), the implied v8 is written out: [PLATFORM-2] "Differs
    # from upstream". Equality is the same either way, only the printed normal form differs.
    if variant in ("", "8", "v8", "v8.0"):
        return "v8"
    if variant in ("9", "9.0", "v9.0"):
        return "v9"
    return variant


def _normalize_arm_variant(variant: str) -> str:
    # A bare "arm" means v7, as in containerd, which treats v7 as the default 32-bit arm; so
    # "linux/arm" and "linux/arm/v7" are one platform and conflict ([INDEX-3]).
    if variant in ("", "7"):
        return "v7"
    if variant in ("5", "6", "8"):
        return "v" + variant
    return variant


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """[PLATFORM-2] containerd/platforms ``normalizeArch``, with arm64's implied v8 made explicit."""
    arch = arch.lower()
    variant = variant.lower()
    if arch in _FIXED_ARCH:
        return _FIXED_ARCH[arch]
    if arch in ("x86_64", "x86-64", "amd64"):
        # v1 is the baseline every amd64 CPU meets, so it says nothing; v2..v4 are kept.
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", _normalize_arm64_variant(variant)
    if arch == "arm":
        return "arm", _normalize_arm_variant(variant)
    # Unknown architectures (riscv64, s390x, ppc64le, ...) are compared as written, lowercased.
    return arch, variant


def _normalize_os(os: str) -> str:
    """[PLATFORM-2] containerd's ``normalizeOS``: lowercase, and ``macos`` is ``darwin``."""
    os = os.lower()
    return "darwin" if os == "macos" else os


def _features(value: Iterable[str] | None) -> tuple[str, ...]:
    """attrs converter: a JSON list (or None) becomes a tuple, so platforms stay hashable."""
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
        """[PLATFORM-1] [PLATFORM-7] Parse ``os/arch[/variant][:os.version]`` as given on a command line.

        The spelling is kept as typed (not normalised). Raises :class:`UsageError` for fewer
        than two or more than three parts, a part outside ``[A-Za-z0-9_.-]+``, or an empty
        or malformed ``os.version`` after the ``:``.

        >>> Platform.parse("windows/amd64:10.0.20348.2227").os_version
        '10.0.20348.2227'
        """
        base, colon, os_version = text.strip().partition(":")
        parts = base.split("/")
        if (
            not 2 <= len(parts) <= 3
            or not all(_COMPONENT.fullmatch(p) for p in parts)
            or (colon and not _COMPONENT.fullmatch(os_version))
        ):
            raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant][:os.version], e.g. linux/arm64/v8")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "", os_version)

    @classmethod
    def from_json(cls, value: object, *, where: str = "platform") -> Platform:
        """[PLATFORM-1] Parse the ``platform`` object of a descriptor, or a config's platform fields.

        ``value`` is the decoded JSON; unknown members are ignored, because a config carries
        many other fields at the same level. ``where`` prefixes error messages. Raises
        :class:`DocumentError` when it is not an object, ``os`` / ``architecture`` are not
        strings, an optional field has the wrong type, or a field holds a character outside
        ``[A-Za-z0-9_.-]`` ([PLATFORM-6]: the error names the field, its value escaped).
        """
        if not isinstance(value, Mapping):
            raise DocumentError(f"{where}: expected a JSON object")
        os_ = value.get("os")
        arch = value.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise DocumentError(f"{where}: 'os' and 'architecture' must be strings")
        return cls(
            os=_checked(os_, "os", where),
            architecture=_checked(arch, "architecture", where),
            variant=_checked(_optional_str(value, "variant", where), "variant", where),
            os_version=_checked(_optional_str(value, "os.version", where), "os.version", where),
            os_features=tuple(_checked(f, "os.features", where) for f in _optional_strs(value, "os.features", where)),
            features=tuple(_checked(f, "features", where) for f in _optional_strs(value, "features", where)),
        )

    def to_json(self) -> dict[str, Any]:
        """[PLATFORM-1] The ``platform`` object in image-spec field order, empty fields left out.

        The fields are written as read, not normalised: the index we author shows the platform
        the image's config states ([INDEX-1]).
        """
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
        """[PLATFORM-2] The containerd-normalised spelling of this platform (a new value).

        ``os.features`` are sorted and de-duplicated because they are a set; ``features`` are
        copied as they are, since they take no part in equality ([PLATFORM-3]).
        """
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

    def matches(self, other: Platform) -> bool:
        """[PLATFORM-7] Whether ``other`` (an image's platform) is what this wanted platform asks for.

        Used by every filter (``--platform``, ``SRC=PLATFORM``, ``manifest-descriptor[PLATFORM]:``),
        never by conflict detection, which needs equality ([INDEX-3]). What this platform
        leaves out it does not ask for: without an ``os.version`` any ``os.version`` matches
        (``windows/amd64`` is every Windows Server release's amd64 image), without
        ``os.features`` any set does. os, architecture and variant compare normalised
        ([PLATFORM-3]).

        >>> ltsc2019 = Platform("windows", "amd64", os_version="10.0.17763.5329")
        >>> Platform.parse("windows/amd64").matches(ltsc2019)
        True
        >>> Platform.parse("windows/amd64:10.0.20348").matches(ltsc2019)
        False
        """
        mine, theirs = self.key, other.key
        if mine[:3] != theirs[:3]:
            return False
        if self.os_version and mine[3] != theirs[3]:
            return False
        return not self.os_features or mine[4] == theirs[4]

    def matches_any(self, wanted: Iterable[Platform]) -> bool:
        """[PLATFORM-7] Whether one of the ``wanted`` platforms :meth:`matches` this one."""
        return any(w.matches(self) for w in wanted)

    @property
    def is_unknown(self) -> bool:
        """[ATTEST-1] ``unknown/unknown``: the platform BuildKit gives attestation manifests."""
        return self.os == "unknown" and self.architecture == "unknown"

    def with_variant_from(self, other: Platform) -> Platform:
        """Take ``other``'s variant when this one has none and both are the same platform.

        Configs often omit the variant (``arm64``) that the builder's descriptor or the user
        spelled out (``arm64/v8``); the more specific spelling is kept in the index.
        """
        # Equality ignores a variant that normalisation implies (arm64 ~ arm64/v8), so this
        # never copies a variant across genuinely different platforms (arm/v6 vs arm/v7).
        if not self.variant and other.variant and other == self:
            return attrs.evolve(self, variant=other.variant)
        return self

    # [PLATFORM-3] eq=False above: attrs would compare fields as spelled, and "linux/aarch64"
    # must equal "linux/arm64/v8" wherever platforms are compared, hashed or sorted.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Platform):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __lt__(self, other: Platform) -> bool:
        return self.key < other.key

    def __str__(self) -> str:
        """[PLATFORM-1] ``os/arch[/variant]`` plus `` (os.version)``; an empty os reads ``unknown``."""
        text = f"{self.os or 'unknown'}/{self.architecture}"
        if self.variant:
            text += f"/{self.variant}"
        if self.os_version:
            text += f" ({self.os_version})"
        return text


def _checked(text: str, key: str, where: str) -> str:
    """[PLATFORM-6] [SEC-5] ``text`` if it is in containerd's platform grammar, else a DocumentError.

    The value is quoted escaped ([SEC-5]): it is hostile by definition when it fails here.
    """
    if not _FIELD.fullmatch(text):
        raise DocumentError(
            f"{where}: platform field {key!r} is {printable(repr(text))}: "
            "only letters, digits, '_', '-' and '.' are allowed"
        )
    return text


def _optional_str(value: Mapping[str, Any], key: str, where: str) -> str:
    """An optional string member; absent or ``null`` is ``""``, another type a DocumentError."""
    item = value.get(key)
    if item is None:
        return ""
    if not isinstance(item, str):
        raise DocumentError(f"{where}: {key!r} must be a string")
    return item


def _optional_strs(value: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """An optional list of strings; absent or ``null`` is ``()``, another shape a DocumentError."""
    item = value.get(key)
    if item is None:
        return ()
    if not isinstance(item, list) or not all(isinstance(x, str) for x in item):
        raise DocumentError(f"{where}: {key!r} must be a list of strings")
    return tuple(item)
