"""How a run reaches and authenticates to registries: TLS, retries, credentials, chunking ([CRED-4]).

One :class:`RegistryOptions` value is shared by every registry client of a run; each client
combines it with its host's :class:`~ocimerge.registry.profiles.Profile` ([PROFILE-8]).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs

from ocimerge.registry.credentials import Credentials, resolve_credentials
from ocimerge.registry.profiles import Profile
from ocimerge.registry.transport import Deadlines, RetryPolicy, TLSOptions
from ocimerge.registry.upload import Chunking

__all__ = ["RegistryOptions"]


@attrs.frozen
class RegistryOptions:
    """How to reach and authenticate to registries (shared by every host in one run).

    [CRED-4] ``username``/``password`` (and ``OCIMERGE_USERNAME``/``OCIMERGE_PASSWORD``) are
    one registry's credentials: with ``explicit_hosts`` set they go to those hosts only, and
    every other registry of the run gets its own from docker's config (or none). A run that
    reads from one registry and pushes to another never hands one's password to the other.
    ``chunk_size`` forces chunked uploads of that chunk size; otherwise blobs above
    ``chunked_threshold`` (the host's profile's when None) go in chunks. [PROFILE-8]
    ``max_request_size`` caps every request body (a proxy's limit, known in advance) and
    ``mounts=False`` asks for no cross-repository mount; see :meth:`chunking_for`.
    [SEC-8] ``deadlines`` bound each request in all (a blob body 15 min plus a second per
    MiB, anything else 2 min by default).
    [CRED-6] ``debug``, when set, is given one line per HTTP request and answer (``--debug``):
    method, redacted URL, status and a few chosen headers, never a credential or a token.
    """

    tls: TLSOptions = attrs.field(factory=TLSOptions)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    chunk_size: int | None = None
    chunked_threshold: int | None = None
    explicit_hosts: frozenset[str] | None = None
    deadlines: Deadlines = attrs.field(factory=Deadlines)
    max_request_size: int | None = None
    mounts: bool = True
    debug: Callable[[str], None] | None = attrs.field(default=None, eq=False, repr=False)

    def chunking_for(self, profile: Profile) -> Chunking:
        """[PROFILE-8] The upload rule for a registry of ``profile``, these flags applied.

        Flags choose within what the registry can do: a chunk size (set, or the default) is
        capped by the profile's largest chunk and by ``max_request_size``; where the registry
        takes no chunked upload, every blob goes in one PUT whatever the flags say.
        """
        threshold = self.chunked_threshold if self.chunked_threshold is not None else profile.chunked_threshold
        return Chunking(
            chunk_size=self.chunk_size,
            threshold=threshold,
            max_chunk=profile.max_chunk,
            max_request=self.max_request_size,
            supported=profile.chunked,
            trusts_range=profile.trusts_range,
            registry=profile.name,
        )

    def mounts_for(self, profile: Profile) -> bool:
        """[PROFILE-8] Whether to ask a registry of ``profile`` for cross-repository mounts."""
        return self.mounts and profile.mounts

    def credentials_for(self, host: str) -> Credentials | None:
        """[CRED-4] The credentials ``host`` gets: explicit ones only where they belong."""
        if self.explicit_hosts is None or host in self.explicit_hosts:
            return resolve_credentials(host, username=self.username, password=self.password)
        env = {k: v for k, v in os.environ.items() if k not in ("OCIMERGE_USERNAME", "OCIMERGE_PASSWORD")}
        return resolve_credentials(host, env=env)
