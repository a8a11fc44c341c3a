"""How a run reaches and authenticates to registries: TLS, retries, credentials, chunking ([CRED-4]).

One :class:`RegistryOptions` value is shared by every registry client of a run.
"""

from __future__ import annotations

import os

import attrs

from ocimerge.registry.credentials import Credentials, resolve_credentials
from ocimerge.registry.transport import Deadlines, RetryPolicy, TLSOptions

__all__ = ["RegistryOptions"]


@attrs.frozen
class RegistryOptions:
    """How to reach and authenticate to registries (shared by every host in one run).

    [CRED-4] ``username``/``password`` (and ``OCIMERGE_USERNAME``/``OCIMERGE_PASSWORD``) are
    one registry's credentials: with ``explicit_hosts`` set they go to those hosts only, and
    every other registry of the run gets its own from docker's config (or none). A run that
    reads from one registry and pushes to another never hands one's password to the other.
    ``chunk_size`` forces chunked uploads of that chunk size; otherwise blobs above
    ``chunked_threshold`` go in chunks. [SEC-8] ``deadlines`` bound each request in all (a
    blob body 15 min plus a second per MiB, anything else 2 min by default).
    """

    tls: TLSOptions = attrs.field(factory=TLSOptions)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    chunk_size: int | None = None
    chunked_threshold: int = 1024 * 1024 * 1024
    explicit_hosts: frozenset[str] | None = None
    deadlines: Deadlines = attrs.field(factory=Deadlines)

    def credentials_for(self, host: str) -> Credentials | None:
        """[CRED-4] The credentials ``host`` gets: explicit ones only where they belong."""
        if self.explicit_hosts is None or host in self.explicit_hosts:
            return resolve_credentials(host, username=self.username, password=self.password)
        env = {k: v for k, v in os.environ.items() if k not in ("OCIMERGE_USERNAME", "OCIMERGE_PASSWORD")}
        return resolve_credentials(host, env=env)
