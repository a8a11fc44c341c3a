"""Registry authentication as an ``httpx.Auth`` flow: Basic, and Bearer tokens ([TOKEN-1] .. [TOKEN-6]).

[TOKEN-1] Each request needs scopes derived from its URL (``pull`` to read, ``pull,push`` to
write, ``pull`` on a mount's ``from`` repository), unioned with the session's wanted scopes for
the same repository; a challenge asking for more widens them.
[TOKEN-2] Tokens are cached per (realm, service, scopes) and reused while they cover what a
request needs; one is renewed when less than a tenth of its lifetime (at least 10 s) is left,
so a long upload never sends an expired token. ``expires_in`` under 60 s counts as 60.
[TOKEN-3] Token requests: an identity token is an OAuth2 ``refresh_token`` grant (POST);
a username and password go as Basic credentials on a GET (falling back to the OAuth2
``password`` grant when the GET form is not served); without credentials the GET is anonymous.
[TOKEN-4] Credentials go only to the registry and to the token realm its challenge announced,
never to a plain-HTTP realm on another machine; redirects to other hosts drop them (httpx), and
a request to another host (an upload ``Location`` pointing at storage) is sent without them.
[TOKEN-5] Token responses are capped at 1 MiB; ``token`` or ``access_token`` is the token.
[TOKEN-6] A 401 after a fresh token is final: no loops.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Generator, Iterable
from urllib.parse import parse_qs

import attrs
import httpx

from ocimerge.errors import AuthError, TransportError
from ocimerge.registry.challenge import Challenge, Scope, merge_scopes, parse_challenges
from ocimerge.registry.credentials import Credentials
from ocimerge.registry.responses import read_capped
from ocimerge.registry.transport import is_loopback

__all__ = ["RegistryAuth", "Token", "scopes_for_request"]

MAX_TOKEN_RESPONSE = 1024 * 1024
MIN_LIFETIME = 60.0
CLIENT_ID = "ocimerge"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RESOURCES = ("/blobs/", "/manifests/", "/tags/", "/referrers/")


@attrs.frozen(repr=False)
class Token:
    """A bearer token, the scopes it was asked for, and when it stops being usable."""

    value: str
    scopes: tuple[Scope, ...]
    issued: float
    lifetime: float

    def usable(self, now: float) -> bool:
        margin = max(10.0, self.lifetime / 10)
        return now < self.issued + self.lifetime - margin

    def covers(self, needed: Iterable[Scope]) -> bool:
        return all(any(mine.covers(want) for mine in self.scopes) for want in needed)

    def __repr__(self) -> str:
        return f"Token(scopes={[str(s) for s in self.scopes]}, value=<redacted>)"


def scopes_for_request(request: httpx.Request) -> tuple[Scope, ...]:
    """[TOKEN-1] The least scopes a registry API request needs, read from its URL."""
    path = request.url.path
    if not path.startswith("/v2/"):
        return ()
    rest = path[len("/v2/") :]
    cut = min((rest.find(r) for r in _RESOURCES if r in rest), default=-1)
    if cut <= 0:
        return ()
    name = rest[:cut]
    actions = ("pull", "push") if request.method in _WRITES else ("pull",)
    scopes = [Scope.repository(name, *actions)]
    source = parse_qs(request.url.query.decode()).get("from")
    if source:
        scopes.append(Scope.repository(source[0], "pull"))
    return tuple(scopes)


def _replayable(request: httpx.Request) -> bool:
    return isinstance(request.stream, httpx.ByteStream)


class RegistryAuth(httpx.Auth):
    """Authenticates every request to one registry; safe to share between threads."""

    def __init__(
        self,
        registry: str,
        credentials: Credentials | None,
        token_client: Callable[[str], httpx.Client],
        *,
        allow_plain_realm: bool = False,
        clock: Callable[[], float] = time.monotonic,
        api_host: str | None = None,
    ) -> None:
        self.registry = registry
        self._origin = (api_host or registry).lower()
        self.credentials = credentials
        self._token_client = token_client
        self._allow_plain_realm = allow_plain_realm
        self._clock = clock
        self._lock = threading.RLock()
        self._bearer: Challenge | None = None
        self._basic = False
        self._tokens: list[Token] = []
        self._wanted: list[Scope] = []
        self._refresh_token = credentials.identity_token if credentials else None
        #: every scope set a token was requested for, in order (for tests and --json)
        self.token_requests: list[tuple[str, ...]] = []

    # -- configuration --------------------------------------------------------------------

    def want(self, *scopes: Scope) -> None:
        """Ask for these scopes whenever a request touches their repository (a push session)."""
        with self._lock:
            self._wanted = list(merge_scopes([*self._wanted, *scopes]))

    # -- the flow -------------------------------------------------------------------------

    def _needed(self, request: httpx.Request) -> tuple[Scope, ...]:
        own = scopes_for_request(request)
        names = {s.name for s in own}
        return merge_scopes([*own, *(w for w in self._wanted if w.name in names)])

    def _same_origin(self, request: httpx.Request) -> bool:
        netloc = request.url.netloc.decode().lower()
        default = {"https": 443, "http": 80}.get(request.url.scheme)
        return netloc == self._origin or (request.url.port in (None, default) and request.url.host == self._origin)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._same_origin(request):
            # [TOKEN-4] an upload Location or a redirect on another host is a new endpoint:
            # it gets no credentials of ours
            yield request
            return
        needed = self._needed(request)
        header = self._authorization(needed, force=False)
        if header:
            request.headers["Authorization"] = header
        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        with self._lock:
            if bearer is not None:
                self._bearer = bearer
                if not needed and not bearer.scopes:
                    return  # GET /v2/: the challenge is learnt; a token waits for a real request
                needed = merge_scopes([*needed, *bearer.scopes])
            elif basic is not None:
                if not (self.credentials and self.credentials.password):
                    return
                self._basic = True
            else:
                return
        if "authorization" in request.headers and self._basic and bearer is None:
            return  # [TOKEN-6] our Basic credentials were refused
        header = self._authorization(needed, force=True)
        if not header or not _replayable(request):
            return  # the caller re-sends a streamed body itself, now with a cached token
        request.headers["Authorization"] = header
        yield request

    def _authorization(self, needed: tuple[Scope, ...], *, force: bool) -> str | None:
        creds = self.credentials
        if creds is not None and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        with self._lock:
            if self._basic and creds is not None and creds.username and creds.password:
                raw = f"{creds.username}:{creds.password}".encode()
                return "Basic " + base64.b64encode(raw).decode()
            if self._bearer is None:
                return None
            now = self._clock()
            if not force:
                for token in self._tokens:
                    if token.usable(now) and token.covers(needed):
                        return f"Bearer {token.value}"
            token = self._fetch(self._bearer, needed)
            self._tokens = [t for t in self._tokens if t.usable(now)] + [token]
            return f"Bearer {token.value}"

    # -- token endpoint -------------------------------------------------------------------

    def _fetch(self, challenge: Challenge, scopes: tuple[Scope, ...]) -> Token:
        realm = challenge.get("realm")
        if not realm:
            raise AuthError(f"{self.registry}: Bearer challenge without a realm")
        url = httpx.URL(realm)
        creds = self.credentials
        sends_secret = creds is not None and creds.has_secret
        if url.scheme != "https" and sends_secret and not (self._allow_plain_realm or is_loopback(url.netloc.decode())):
            raise AuthError(
                f"{self.registry}: the token service {url.host} is plain HTTP; refusing to send credentials "
                "(use --plain-http or --insecure if this registry is meant to be reached that way)"
            )
        service = challenge.get("service")
        self.token_requests.append(tuple(str(s) for s in scopes))
        client = self._token_client(url.netloc.decode())
        if self._refresh_token:
            response = self._post(
                client, url, service, scopes, {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
            )
        elif creds is not None and creds.username and creds.password:
            response = self._get(client, url, service, scopes, (creds.username, creds.password))
            if response.status_code in (404, 405):
                response = self._post(
                    client,
                    url,
                    service,
                    scopes,
                    {"grant_type": "password", "username": creds.username, "password": creds.password},
                )
        else:
            response = self._get(client, url, service, scopes, None)
        return self._token(response, scopes, url)

    def _get(
        self,
        client: httpx.Client,
        url: httpx.URL,
        service: str | None,
        scopes: tuple[Scope, ...],
        basic: tuple[str, str] | None,
    ) -> httpx.Response:
        params: list[tuple[str, str | int | float | bool | None]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", str(s)) for s in scopes)
        if basic:
            params.append(("account", basic[0]))
        return self._send(client, client.build_request("GET", url, params=params), basic)

    def _post(
        self, client: httpx.Client, url: httpx.URL, service: str | None, scopes: tuple[Scope, ...], form: dict[str, str]
    ) -> httpx.Response:
        data = {**form, "client_id": CLIENT_ID, "access_type": "offline"}
        if service:
            data["service"] = service
        if scopes:
            data["scope"] = " ".join(str(s) for s in scopes)
        return self._send(client, client.build_request("POST", url, data=data), None)

    def _send(self, client: httpx.Client, request: httpx.Request, basic: tuple[str, str] | None) -> httpx.Response:
        try:
            # a POST carries its secret (password or refresh token) in the body, which httpx would
            # re-send on a 307 to any host: token POSTs follow no redirects
            return client.send(
                request,
                auth=httpx.BasicAuth(*basic) if basic else None,
                stream=True,
                follow_redirects=request.method == "GET",
            )
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{self.registry}: cannot reach the token service {request.url.host}: {exc.__class__.__name__}"
            ) from None

    def _token(self, response: httpx.Response, scopes: tuple[Scope, ...], url: httpx.URL) -> Token:
        body = read_capped(response, MAX_TOKEN_RESPONSE)
        if body is None:
            raise AuthError(f"{self.registry}: token response from {url.host} is over 1 MiB")
        source = self.credentials.source if self.credentials else "anonymous access"
        if response.status_code in (401, 403):
            raise AuthError(
                f"{self.registry}: the token service {url.host} refused the credentials from {source} "
                f"({response.status_code}); check the username and password"
            )
        if not response.is_success:
            raise AuthError(f"{self.registry}: the token service {url.host} answered {response.status_code}")
        try:
            value = json.loads(body)
            token = value.get("access_token") or value.get("token")
        except (ValueError, AttributeError):
            raise AuthError(
                f"{self.registry}: the token service {url.host} answered something that is not JSON"
            ) from None
        if not isinstance(token, str) or not token:
            raise AuthError(f"{self.registry}: the token service {url.host} answered without a token")
        lifetime = value.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else MIN_LIFETIME
        refresh = value.get("refresh_token")
        if isinstance(refresh, str) and refresh and self._refresh_token:
            self._refresh_token = refresh  # the server rotated it
        return Token(token, scopes, self._clock(), max(lifetime, MIN_LIFETIME))
