"""Image references: ``[registry/]repository[:tag][@digest]`` with Docker Hub normalisation.

Registry sources, push targets and spec-file images are all typed by users as docker does,
so they are parsed here the way ``distribution/reference`` parses them: which part is the
registry ([REF-1]), Docker Hub's aliases and ``library/`` ([REF-2]), the short form for
messages ([REF-3]) and the grammar of tags and repositories ([REF-4]). Getting [REF-1] wrong
would send a request (and credentials, [CRED-4]) to the wrong host, hence the strictness.
"""

from __future__ import annotations

import re

import attrs

from ocimerge.errors import DocumentError, UsageError
from ocimerge.model.digest import Digest

__all__ = ["DOCKER_HUB", "Reference"]

#: The canonical name of Docker Hub; its aliases are folded into it ([REF-2]).
DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# [REF-4] distribution/reference's grammar: lowercase components joined by ".", "_", "__" or
# runs of "-"; a tag starts with a word character and is at most 128 long (re.ASCII keeps out
# non-ASCII letters and digits that \w would otherwise accept).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
# [REF-1] a host name of dot-separated labels, or a bracketed IPv6 literal, with an optional port.
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
        """Parse and normalise ``[registry/]repository[:tag][@digest]`` ([REF-1] .. [REF-4]).

        A reference with neither tag nor digest gets ``default_tag`` (None adds none, for
        callers that must not invent a tag). Raises :class:`UsageError` naming ``text`` for
        a bad digest, tag, registry host or repository.
        """
        # Peel from the right: the digest after "@", then a tag after the last ":" that
        # follows the last "/" (a ":" before a "/" is a registry port, as in host:5000/app).
        rest, digest = _split_digest(text)
        rest, tag = _split_tag(rest, text)
        registry, repository = _split_registry(rest, text)
        if not _REPOSITORY.fullmatch(repository) or len(repository) > 255:
            # [REF-4] 255 caps the repository alone; clients cap host/name ("Differs from upstream").
            raise UsageError(
                f"invalid reference {text!r}: repository {repository!r} must be lowercase "
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
        """``:tag`` and ``@digest``, each when present; both when the reference pins both."""
        out = f":{self.tag}" if self.tag else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        """[REF-2] The full normalised form ``registry/repository[:tag][@digest]``."""
        return self.name + self._suffix()


def _split_digest(text: str) -> tuple[str, Digest | None]:
    """The name part and the digest after ``@`` ([DIGEST-1]); UsageError for a bad digest."""
    if "@" not in text:
        return text, None
    name, _, digest_text = text.partition("@")
    try:
        return name, Digest.parse(digest_text)
    except DocumentError as exc:
        # A typed reference is user input: report it as usage, with the digest's own reason.
        raise UsageError(f"invalid reference {text!r}: {exc}") from exc


def _split_tag(text: str, original: str) -> tuple[str, str | None]:
    """[REF-4] The name and the tag after the last ``:`` past the last ``/``; UsageError if bad."""
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon <= slash:
        return text, None
    name, tag = text[:colon], text[colon + 1 :]
    if not _TAG.fullmatch(tag):
        raise UsageError(f"invalid reference {original!r}: bad tag {tag!r}")
    return name, tag


def _split_registry(text: str, original: str) -> tuple[str, str]:
    """[REF-1] / [REF-2] ``(registry, repository)``, Docker Hub's aliases and ``library/`` applied."""
    first, sep, rest = text.partition("/")
    # [REF-1] the first component is a registry when it looks like a host name; the upper-case
    # test is normalize.go's: repository components are lowercase, so "UPPER/x" names a host.
    looks_like_host = "." in first or ":" in first or first == "localhost" or first != first.lower()
    if sep and (looks_like_host or first.startswith("[")):
        if not _DOMAIN.fullmatch(first):
            raise UsageError(f"invalid reference {original!r}: bad registry {first!r}")
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, text
    if registry in _HUB_ALIASES:
        # registry-1.docker.io is Hub's API host; normalize.go does not fold it, we do ([REF-2]).
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"  # [REF-2] official images live under library/
    return registry, repository
