"""HTTP transport to one registry: TLS, timeouts, user agent, and the retry policy as data.

[TLS-1] TLS verification is on by default. Extra trust comes from ``--ca-file`` and from
docker's ``/etc/docker/certs.d/<host>/`` (``*.crt`` CAs, ``client.cert``/``client.key`` for
mutual TLS). ``--insecure`` skips verification; ``--plain-http`` speaks HTTP. A loopback
registry (127.0.0.0/8, ::1, localhost) may be plain HTTP without asking, as docker allows:
HTTPS is tried first and HTTP used when the server does not speak TLS.
[RETRY-1] Requests are retried on 408, 429, 500, 502, 503 and 504 and on transport errors, with exponential
backoff, full jitter and a cap, honouring ``Retry-After``. Every request ocimerge sends is safe
to repeat (see ``Registry._send``) and its body is re-opened from the source for each attempt.
"""

from __future__ import annotations

import datetime
import glob
import ipaddress
import os
import random
import ssl
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import attrs
import httpx

from ocimerge._version import __version__

__all__ = ["USER_AGENT", "RetryPolicy", "TLSOptions", "build_client", "is_loopback"]

USER_AGENT = f"ocimerge/{__version__} (+https://github.com/ocimerge)"
DEFAULT_TIMEOUT = httpx.Timeout(connect=15.0, read=120.0, write=120.0, pool=60.0)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``name[:port]``) names this machine."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@attrs.frozen
class TLSOptions:
    """How to reach a registry: TLS trust, client certificates, or plain HTTP."""

    ca_file: str | None = None
    insecure: bool = False
    plain_http: bool = False
    certs_dir: str = "/etc/docker/certs.d"

    def ssl_context(self, host: str) -> ssl.SSLContext | bool:
        """[TLS-1] The verification to use for ``host``: a context, or False with --insecure."""
        if self.insecure:
            return False
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        directory = os.path.join(self.certs_dir, host)
        for ca in sorted(glob.glob(os.path.join(directory, "*.crt"))):
            context.load_verify_locations(cafile=ca)
        cert, key = os.path.join(directory, "client.cert"), os.path.join(directory, "client.key")
        if os.path.exists(cert) and os.path.exists(key):
            context.load_cert_chain(cert, key)
        return context


@attrs.frozen
class RetryPolicy:
    """[RETRY-1] When and how long to wait before trying a request again."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    random: Callable[[], float] = attrs.field(default=random.random, eq=False, repr=False)

    def should_retry_status(self, status: int) -> bool:
        return status in self.statuses

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if response is not None:
            after = _retry_after(response.headers.get("retry-after"))
            if after is not None:
                return min(after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return float(ceiling * self.random())  # full jitter


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.datetime.now(when.tzinfo)).total_seconds())
    except (TypeError, ValueError):
        return None


def build_client(
    host: str,
    tls: TLSOptions,
    *,
    auth: httpx.Auth | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """One ``httpx.Client`` for one registry host, with its TLS policy and our user agent.

    Redirects are followed; httpx drops ``Authorization`` when a redirect leaves the origin.
    ``transport`` replaces the network (unit tests of edge cases only).
    """
    return httpx.Client(
        verify=tls.ssl_context(host) if not tls.plain_http else False,
        timeout=DEFAULT_TIMEOUT,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,
        auth=auth,
        transport=transport,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
    )
