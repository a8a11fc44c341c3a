"""What each registry family is known to do, keyed by host ([PROFILE-1] .. [PROFILE-7]).

A :class:`Profile` holds only facts a registry's public documentation or issue reports state
(``spec-notes/profiles.md`` cites each); :func:`profile_for` picks one by host. The profile
sets the upload defaults; ``RegistryOptions`` flags choose within what the registry can do
(see :meth:`ocimerge.registry.options.RegistryOptions.chunking_for`).
"""

from __future__ import annotations

import re

import attrs

__all__ = ["DOCKER_HUB", "ECR", "GAR", "GENERIC", "GHCR", "PROFILES", "QUAY", "Profile", "profile_for"]

MIB = 1024 * 1024
#: [RESUME-3] blobs above this go in chunks where chunks are taken, so that an interrupted
#: upload can be continued: 4 chunks of the default 16 MiB
RESUMABLE_ABOVE = 64 * MIB


@attrs.frozen
class Profile:
    """Upload facts of one registry family.

    ``max_chunk`` is the largest ``PATCH`` chunk it takes (None: no known limit); ``chunked``
    whether it takes chunked uploads at all; ``mounts`` whether a cross-repository mount is
    worth asking for; ``trusts_range`` whether its upload-status ``Range`` may be resumed from
    [API-10]; blobs above ``chunked_threshold`` go in chunks where chunks are taken.
    """

    name: str
    max_chunk: int | None = None
    chunked: bool = True
    mounts: bool = True
    trusts_range: bool = True
    chunked_threshold: int = RESUMABLE_ABOVE


#: [PROFILE-7] any other registry (Distribution, Harbor, zot, Nexus...): the spec's behaviour
GENERIC = Profile("registry")
#: [PROFILE-1] GitHub Container Registry: a chunk over 4 MiB is refused
GHCR = Profile("GitHub Container Registry", max_chunk=4 * MIB)
#: [PROFILE-2] Google Artifact Registry (and gcr.io, which it serves): no chunked uploads
GAR = Profile("Google Artifact Registry", chunked=False)
#: [PROFILE-3] Amazon ECR: its upload-status Range cannot be trusted, so recovery restarts
ECR = Profile("Amazon ECR", trusts_range=False)
#: [PROFILE-4] Docker Hub: nothing to change from the spec (its non-JSON 429 is handled by [ERR-1])
DOCKER_HUB = Profile("Docker Hub")
#: [PROFILE-5] Quay: no documented upload limit found, so the spec's behaviour
QUAY = Profile("Quay")

PROFILES: tuple[tuple[re.Pattern[str], Profile], ...] = (
    (re.compile(r"ghcr\.io"), GHCR),
    (re.compile(r"[a-z0-9-]+-docker\.pkg\.dev|gcr\.io|[a-z0-9-]+\.gcr\.io"), GAR),
    (re.compile(r"[0-9]+\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"), ECR),
    (re.compile(r"docker\.io|index\.docker\.io|registry-1\.docker\.io"), DOCKER_HUB),
    (re.compile(r"quay\.io"), QUAY),
)


def _bare_host(host: str) -> str:
    """``host`` lower-cased, without a port and a trailing dot (``GHCR.io:443`` is ``ghcr.io``)."""
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal: no family of ours
        return name
    return name.rsplit(":", 1)[0].rstrip(".") if ":" in name else name.rstrip(".")


def profile_for(host: str) -> Profile:
    """The profile of the family ``host`` belongs to (case and port ignored); else :data:`GENERIC`.

    >>> profile_for("ghcr.io").max_chunk, profile_for("europe-west1-docker.pkg.dev").chunked
    (4194304, False)
    >>> profile_for("123456789012.dkr.ecr.eu-west-1.amazonaws.com:443").name, profile_for("harbor.example").name
    ('Amazon ECR', 'registry')
    """
    name = _bare_host(host)
    for pattern, profile in PROFILES:
        if pattern.fullmatch(name):
            return profile
    return GENERIC
