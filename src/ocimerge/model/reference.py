"""Image references: ``[registry/]repository[:tag][@digest]`` with Docker Hub normalisation.

[REF-1] .. [REF-4]; the grammar is distribution/reference's.
"""

from __future__ import annotations

import re

import attrs

from ocimerge.errors import DocumentError, UsageError
from ocimerge.model.digest import Digest

__all__ = ["DOCKER_HUB", "Reference"]

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)


@attrs.frozen
class Reference:
    """A parsed image reference, normalised the way docker does it [REF-2].

    >>> r = Reference.parse("ubuntu")
    >>> str(r)
    'docker.io/library/ubuntu:latest'
    >>> r.familiar
    'ubuntu:latest'
    >>> Reference.parse("localhost:5000/team/app@sha256:" + "a" * 64).tag is None
    True
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: str | None = "latest") -> Reference:
        """Parse and normalise; a reference with neither tag nor digest gets ``default_tag``."""
        original = text
        digest: Digest | None = None
        if "@" in text:
            text, _, digest_text = text.partition("@")
            try:
                digest = Digest.parse(digest_text)
            except DocumentError as exc:
                raise UsageError(f"invalid reference {original!r}: {exc}") from None
        tag: str | None = None
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            text, tag = text[:colon], text[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise UsageError(f"invalid reference {original!r}: bad tag {tag!r}")
        first, sep, rest = text.partition("/")
        # [REF-1] the first component is a registry when it looks like a host name.
        looks_like_host = "." in first or ":" in first or first == "localhost" or first != first.lower()
        if sep and (looks_like_host or first.startswith("[")):
            if not _DOMAIN.fullmatch(first):
                raise UsageError(f"invalid reference {original!r}: bad registry {first!r}")
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, text
        if registry in _HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in repository:
                repository = f"library/{repository}"  # [REF-2]
        if not _REPOSITORY.fullmatch(repository) or len(repository) > 255:
            raise UsageError(
                f"invalid reference {original!r}: repository {repository!r} must be lowercase "
                "path components of [a-z0-9._-]"
            )
        if tag is None and digest is None:
            tag = default_tag
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)

    @property
    def familiar(self) -> str:
        """[REF-3] The short form users type: Docker Hub and ``library/`` left out."""
        name = self.repository
        first = name.split("/", 1)[0]
        looks_like_host = "." in first or ":" in first or first == "localhost"
        if self.registry == DOCKER_HUB and not looks_like_host:
            name = name.removeprefix("library/")
        else:  # keep the registry where the short form would read as another host
            name = f"{self.registry}/{name}"
        return name + self._suffix()

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()
