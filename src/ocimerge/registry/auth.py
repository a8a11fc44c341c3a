"""Registry authentication as an httpx auth flow: Basic, and Bearer tokens ([TOKEN-1] .. [TOKEN-9]).

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
never to a plain-HTTP realm on another machine (unless ``--plain-http`` said the registry
speaks HTTP; ``--insecure`` only skips TLS verification, [SEC-8]); a request to another host (an upload
``Location`` pointing at storage, a redirect target) is sent without them. Token requests
follow no redirects (a POST carries a password or refresh token in its body): a 3xx answer is
an :class:`AuthError`.
[TOKEN-5] Token responses are capped at 1 MiB and decoded strictly (deep nesting, invalid
UTF-8 and tokens that are not visible ASCII are one-line :class:`AuthError` values);
``token`` or ``access_token`` is the token.
[SEC-1] A challenge is learnt only from a 401 whose origin is the registry's own API host.
[SEC-8] Every secret the flow holds or obtains (password, identity and registry tokens, the
Basic value, each bearer token) is in its :attr:`RegistryAuth.redactor`, which cuts them out
of server text before it enters a message.
[TOKEN-6] A 401 after a fresh token is final: no loops.
[TOKEN-7] A 401 on a request that carried a cached token evicts that token, so the request is
sent once more with a fresh one (also when the client, not the flow, re-sends a streamed body).
[TOKEN-8] The token service's 408, 429 and 5xx answers are retried under the registry's
:class:`~ocimerge.registry.transport.RetryPolicy`; its transport errors fail the request,
which the client's request loop retries under the same policy.
[TOKEN-9] A token service that answered 200 but granted fewer actions than were asked for (the
``access`` claim of a JWT's payload, read unverified) is named when the registry then refuses:
a :class:`DeniedError` ("alice may pull team/app but not push"), not "check the credentials".
[MSG-1] When the flow holds no credentials, such a refusal, and a token service's 401 or 403,
is an :class:`UnauthorizedError` saying that no credentials were found and where we looked.

The flow does I/O (its token requests), so it is written as httpx documents for such flows:
:meth:`RegistryAuth.sync_auth_flow` yields the token request through the same client and is
sent its answer. The lock guards only the cache; no request is ever in flight under it. One
token fetch per scope set is in flight at a time: other threads needing it wait for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from typing import Any
from urllib.parse import parse_qs

import attrs
import httpx

from ocimerge.errors import AuthError, DeniedError, UnauthorizedError
from ocimerge.registry.challenge import Challenge, Scope, merge_scopes, parse_challenges
from ocimerge.registry.credentials import Credentials, none_found
from ocimerge.registry.responses import MAX_ERROR_BODY, REDACTOR_KEY, Redactor, decode_server_json, read_capped
from ocimerge.registry.transport import DEFAULT_DEADLINE, RetryPolicy, is_loopback, is_origin, new_request

__all__ = ["RegistryAuth", "Token", "scopes_for_request"]

MAX_TOKEN_RESPONSE = 1024 * 1024
MIN_LIFETIME = 60.0
CLIENT_ID = "ocimerge"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RESOURCES = ("/blobs/", "/manifests/", "/tags/", "/referrers/")
#: A bearer token is visible ASCII (RFC 6750 ``b64token`` and the opaque tokens real servers
#: issue); anything else could not go in a header and is refused.
_TOKEN = re.compile(r"[\x21-\x7e]+")

#: What the flow's helpers are: generators that yield requests, are sent their answers,
#: and return a value.
Flow = Generator[httpx.Request, httpx.Response, Any]


@attrs.frozen(repr=False)
class Token:
    """A bearer token, the scopes it was asked for, and when it stops being usable."""

    value: str
    scopes: tuple[Scope, ...]
    issued: float
    lifetime: float
    #: [TOKEN-9] what the token service says it granted (a JWT's ``access`` claim); None when unknown
    granted: tuple[Scope, ...] | None = None

    def usable(self, now: float) -> bool:
        """[TOKEN-2] Whether it has more than a tenth of its lifetime (at least 10 s) left."""
        margin = max(10.0, self.lifetime / 10)
        return now < self.issued + self.lifetime - margin

    def covers(self, needed: Iterable[Scope]) -> bool:
        """Whether it was asked for every scope in ``needed``."""
        return _covers(self.scopes, needed)

    def withheld(self, needed: Iterable[Scope]) -> list[tuple[Scope, tuple[str, ...]]]:
        """[TOKEN-9] Per needed scope, the actions asked for but not granted (only when known)."""
        if self.granted is None:
            return []
        out = []
        for want in needed:
            asked = {a for s in self.scopes if s.type == want.type and s.name == want.name for a in s.actions}
            given = {a for s in self.granted if s.type == want.type and s.name == want.name for a in s.actions}
            missing = tuple(a for a in want.actions if a in asked and a not in given and "*" not in given)
            if missing:
                out.append((want, missing))
        return out

    def __repr__(self) -> str:
        return f"Token(scopes={[str(s) for s in self.scopes]}, value=<redacted>)"


def granted_scopes(token: str) -> tuple[Scope, ...] | None:
    """[TOKEN-9] The scopes a JWT's unverified ``access`` claim lists; None when it is no JWT.

    Distribution's token format; only used to explain a refusal, never to decide access.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    access = payload.get("access") if isinstance(payload, dict) else None
    if not isinstance(access, list):
        return None
    scopes = []
    for entry in access:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("actions"), list):
            actions = [a for a in entry["actions"] if isinstance(a, str)]
            scopes.append(Scope(str(entry.get("type") or "repository"), entry["name"], tuple(sorted(actions))))
    return tuple(scopes)


def _covers(mine: tuple[Scope, ...], needed: Iterable[Scope]) -> bool:
    return all(any(m.covers(want) for m in mine) for want in needed)


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


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class RegistryAuth(httpx.Auth):
    """Authenticates every request to one registry; safe to share between threads.

    Use it as a client's ``auth``: httpx drives :meth:`sync_auth_flow`. ``token_requests``
    lists the scope sets tokens were asked for, in order (for tests and ``--json``).
    ``allow_plain_realm`` (``--plain-http``) lets a plain-HTTP realm on another host have
    credentials; ``token_deadline`` bounds each token request in all [SEC-8]; ``redactor``
    holds every secret of this flow, for the messages of whoever shows server text.
    """

    def __init__(  # noqa: PLR0913 - keyword-only settings with defaults (plain realm, clock, origin, deadline, retry)
        self,
        registry: str,
        credentials: Credentials | None,
        *,
        allow_plain_realm: bool = False,
        clock: Callable[[], float] = time.monotonic,
        api_host: str | None = None,
        token_deadline: float = DEFAULT_DEADLINE,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self._origin = (api_host or registry).lower()
        self.credentials = credentials
        self._allow_plain_realm = allow_plain_realm
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below; never held across a yield
        self._bearer: Challenge | None = None
        self._basic = False
        self._tokens: list[Token] = []
        #: [TOKEN-9] tokens evicted on a 401, newest last: another request refused with the same
        #: token (a parallel upload) must still learn what it was granted, not just that it failed
        self._evicted: list[Token] = []
        self._pending: list[tuple[tuple[Scope, ...], threading.Event]] = []
        self._wanted: list[Scope] = []
        self._refresh_token = credentials.identity_token if credentials else None
        self._token_deadline = token_deadline
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self.token_requests: list[tuple[str, ...]] = []
        self.redactor = (
            Redactor.basic(
                credentials.username, credentials.password, credentials.identity_token, credentials.registry_token
            )
            if credentials
            else Redactor()
        )

    def want(self, *scopes: Scope) -> None:
        """Ask for these scopes whenever a request touches their repository (a push session)."""
        with self._lock:
            self._wanted = list(merge_scopes([*self._wanted, *scopes]))

    # -- the flow -------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Not used: the flow does I/O, so httpx must drive :meth:`sync_auth_flow` itself."""
        raise NotImplementedError("RegistryAuth is driven through sync_auth_flow")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Not supported: ocimerge's clients are synchronous."""
        raise NotImplementedError("RegistryAuth has no async flow")
        yield request  # pragma: no cover  (makes this an async generator, as httpx expects)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Yield ``request`` with credentials, fetching a token first when one is needed.

        [TOKEN-4] A request to another origin is yielded untouched. On a 401 the challenge is
        learnt and the request is sent once more with a fresh token or Basic credentials
        [TOKEN-6]; a streamed body cannot be replayed, so its caller re-sends it instead.
        """
        if not self._same_origin(request):
            yield request  # [TOKEN-4] an upload Location or a redirect elsewhere gets nothing of ours
            return
        needed = self._needed(request)
        header = yield from self._authorization(needed, force=False)
        if header:
            request.headers["Authorization"] = header
        response = yield request
        if response.status_code != 401:
            return
        read_capped(response, MAX_ERROR_BODY)  # httpx reads it again before the next request
        self._refused(request, needed)  # [TOKEN-9] raises when the token service withheld an action
        widened = self._learn(response, request, needed)
        if widened is None:
            return
        if not _replayable(request):
            # [TOKEN-7] the client re-sends a streamed body itself, and its flow fetches the
            # fresh token (the refused one is evicted). Fetching it here would make the token
            # answer, not this 401, the one httpx hands back.
            return
        header = yield from self._authorization(widened, force=True)
        if not header:
            return
        request.headers["Authorization"] = header
        response = yield request
        if response.status_code == 401:  # [TOKEN-6] final; [TOKEN-9] said as a refusal when it is one
            read_capped(response, MAX_ERROR_BODY)
            self._refused(request, widened)

    def _refused(self, request: httpx.Request, needed: tuple[Scope, ...]) -> None:
        """A 401 answered ``request``: evict the token it carried [TOKEN-7], or raise [TOKEN-9].

        The token is dropped from the cache so that whoever sends again gets a fresh one. If
        the token service granted it fewer actions than ``needed`` asks for, asking again
        cannot help: that is a :class:`DeniedError` naming the user, the repository and the
        actions granted; to a flow without credentials, an :class:`UnauthorizedError` that also
        says none were found and where we looked [MSG-1].
        """
        sent = request.headers.get("authorization", "")
        with self._lock:
            token = next((t for t in self._tokens if f"Bearer {t.value}" == sent), None)
            if token is not None:
                self._tokens = [t for t in self._tokens if t is not token]
                self._evicted = [*self._evicted[-15:], token]
            else:  # evicted already, by a request refused at the same time
                token = next((t for t in self._evicted if f"Bearer {t.value}" == sent), None)
        if token is None:
            return
        withheld = token.withheld(needed)
        if not withheld:
            return
        if self._anonymous:  # [MSG-1] the fix is credentials, not another account's rights
            raise UnauthorizedError(f"{self._denial(withheld, token)}, and {none_found(self.registry)}", status=401)
        raise DeniedError(f"{self._denial(withheld, token)}; ask for the right, or use another account", status=401)

    @property
    def _anonymous(self) -> bool:
        """Whether requests go without credentials (none were found, [MSG-1])."""
        return self.credentials is None or not self.credentials.has_secret

    def _denial(self, withheld: list[tuple[Scope, tuple[str, ...]]], token: Token) -> str:
        """[TOKEN-9] ``alice may pull team/app but not push: the token service granted pull only``."""
        creds = self.credentials
        who = creds.username if creds is not None and creds.username else "anonymous access"
        scope, missing = withheld[0]
        given = sorted({a for s in token.granted or () if s.name == scope.name for a in s.actions})
        if given:
            head = f"{who} may {','.join(given)} {scope.name} but not {','.join(missing)}"
            tail = f"the token service granted {','.join(given)} only"
        else:
            head = f"{who} may not {','.join(missing)} {scope.name}"
            tail = "the token service granted nothing"
        return f"{self.registry}: access denied: {head}: {tail}"

    def _needed(self, request: httpx.Request) -> tuple[Scope, ...]:
        own = scopes_for_request(request)
        names = {s.name for s in own}
        with self._lock:
            wanted = list(self._wanted)
        return merge_scopes([*own, *(w for w in wanted if w.name in names)])

    def _same_origin(self, request: httpx.Request) -> bool:
        return is_origin(request.url, self._origin)

    def _learn(
        self, response: httpx.Response, request: httpx.Request, needed: tuple[Scope, ...]
    ) -> tuple[Scope, ...] | None:
        """Learn a 401's challenge; the scopes to authenticate again for, or None to stop.

        [SEC-1] Only an answer from our own origin teaches anything: the flow sees answers
        to requests it sent there, and this check keeps it so whatever drives the flow.
        """
        if not is_origin(response.url, self._origin):
            return None
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        with self._lock:
            if bearer is not None:
                self._bearer = bearer
                if not needed and not bearer.scopes:
                    return None  # GET /v2/: the challenge is learnt; a token waits for a real request
                return merge_scopes([*needed, *bearer.scopes])
            if basic is None or not (self.credentials and self.credentials.password):
                return None
            self._basic = True
        if "authorization" in request.headers:
            return None  # [TOKEN-6] our Basic credentials were refused
        return needed

    def _authorization(self, needed: tuple[Scope, ...], *, force: bool) -> Flow:
        """The ``Authorization`` value for ``needed`` (fetching a token if it must), or None."""
        creds = self.credentials
        if creds is not None and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        with self._lock:
            if self._basic and creds is not None and creds.username and creds.password:
                return _basic(creds.username, creds.password)
            bearer = self._bearer
        if bearer is None:
            return None
        token = yield from self._token_for(bearer, needed, force=force)
        return f"Bearer {token.value}"

    def _token_for(self, challenge: Challenge, needed: tuple[Scope, ...], *, force: bool) -> Flow:
        """[TOKEN-2] A usable cached token covering ``needed``, else a fresh one.

        ``force`` skips the cache (its token was just refused). A fetch already in flight for
        scopes covering ``needed`` is waited for rather than repeated: it is fresh.
        """
        while True:
            with self._lock:
                now = self._clock()
                cached = None if force else next((t for t in self._tokens if t.usable(now) and t.covers(needed)), None)
                if cached is not None:
                    return cached
                waiting = next((e for scopes, e in self._pending if _covers(scopes, needed)), None)
                if waiting is None:
                    entry = (needed, threading.Event())
                    self._pending.append(entry)
            if waiting is None:
                break
            waiting.wait()  # another thread's fetch; then look again (it may have failed)
            force = False
        try:
            token = yield from self._fetch(challenge, needed)
            with self._lock:
                self._tokens = [t for t in self._tokens if t.usable(now)] + [token]
            return token
        finally:
            with self._lock:
                self._pending.remove(entry)
            entry[1].set()

    # -- token endpoint -------------------------------------------------------------------

    def _fetch(self, challenge: Challenge, scopes: tuple[Scope, ...]) -> Flow:
        """[TOKEN-3] Ask the realm for a token for ``scopes``, in the form the credentials allow."""
        url = self._realm(challenge)
        service = challenge.get("service")
        creds = self.credentials
        with self._lock:
            self.token_requests.append(tuple(str(s) for s in scopes))
            refresh = self._refresh_token
        if refresh:
            form = {"grant_type": "refresh_token", "refresh_token": refresh}
            response, body = yield from self._ask(_post(url, service, scopes, form, self._token_deadline))
        elif creds is not None and creds.username and creds.password:
            basic = (creds.username, creds.password)
            response, body = yield from self._ask(_get(url, service, scopes, basic, self._token_deadline))
            if response.status_code in (404, 405):  # the GET form is not served: OAuth2 password grant
                form = {"grant_type": "password", "username": creds.username, "password": creds.password}
                response, body = yield from self._ask(_post(url, service, scopes, form, self._token_deadline))
        else:
            response, body = yield from self._ask(_get(url, service, scopes, None, self._token_deadline))
        return self._token(response, body, scopes)

    def _realm(self, challenge: Challenge) -> httpx.URL:
        """[TOKEN-4] The token realm, refused when it is plain HTTP elsewhere and we hold secrets."""
        realm = challenge.get("realm")
        if not realm:
            raise AuthError(f"{self.registry}: Bearer challenge without a realm")
        url = httpx.URL(realm)
        sends_secret = self.credentials is not None and self.credentials.has_secret
        if url.scheme != "https" and sends_secret and not (self._allow_plain_realm or is_loopback(url.netloc.decode())):
            raise AuthError(
                f"{self.registry}: the token service {url.host} is plain HTTP; refusing to send credentials "
                "(use --plain-http if this registry and its token service are meant to be reached over HTTP; "
                "--insecure only skips TLS verification)"
            )
        return url

    def _ask(self, request: httpx.Request) -> Flow:
        """Yield one token request; its answer and its body, read capped [TOKEN-5].

        [TOKEN-8] A 408, 429 or 5xx is asked again after the retry policy's delay, attempts
        permitting; the last answer is returned whatever it is.
        """
        request.extensions[REDACTOR_KEY] = self.redactor  # [SEC-8] for messages quoting the server
        attempt = 0
        while True:
            attempt += 1
            response = yield request
            body = read_capped(response, MAX_TOKEN_RESPONSE, registry=self.registry)  # read and closed
            status = response.status_code
            if not self._retry.should_retry_status(status) or attempt >= self._retry.attempts:
                break
            self._sleep(self._retry.delay(attempt, response))
        if 300 <= status < 400:  # [TOKEN-4] never followed: the body may carry a secret
            raise AuthError(
                f"{self.registry}: the token service {request.url.host} answered a redirect ({status}); "
                "token requests follow no redirects",
                status=status,
            )
        if body is None:
            raise AuthError(f"{self.registry}: token response from {request.url.host} is over 1 MiB")
        return response, body

    def _token(self, response: httpx.Response, body: bytes, scopes: tuple[Scope, ...]) -> Token:
        """The token in a token service answer; its failures as auth errors."""
        host = response.request.url.host
        status = response.status_code
        if status in (401, 403):
            cls = UnauthorizedError if status == 401 else AuthError
            if self._anonymous:  # [MSG-1] there were no credentials to check
                raise cls(
                    f"{self.registry}: the token service {host} refused anonymous access ({status}) "
                    f"and {none_found(self.registry)}",
                    status=status,
                )
            source = self.credentials.source if self.credentials else "anonymous access"
            raise cls(
                f"{self.registry}: the token service {host} refused the credentials from {source} "
                f"({status}); check the username and password",
                status=status,
            )
        if not response.is_success:
            raise AuthError(f"{self.registry}: the token service {host} answered {status}", status=status)
        try:  # [TOKEN-5][SEC-8] strict: deep nesting or bad UTF-8 is this one-line error, never a crash
            value = decode_server_json(body, where="token response")
            token = value.get("access_token") or value.get("token")
        except (ValueError, AttributeError) as exc:
            raise AuthError(
                f"{self.registry}: the token service {host} answered something that is not a JSON object"
            ) from exc
        if not isinstance(token, str) or not token:
            raise AuthError(f"{self.registry}: the token service {host} answered without a token")
        if not _TOKEN.fullmatch(token):
            raise AuthError(f"{self.registry}: the token service {host} answered a token that is not visible ASCII")
        self.redactor.add(token)  # [SEC-8] a registry error body may echo it back
        lifetime = value.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else MIN_LIFETIME
        refresh = value.get("refresh_token")
        with self._lock:
            if isinstance(refresh, str) and refresh and self._refresh_token:
                self._refresh_token = refresh  # the server rotated it
                self.redactor.add(refresh)  # [SEC-8] a secret we now hold
        return Token(token, scopes, self._clock(), max(lifetime, MIN_LIFETIME), granted_scopes(token))


def _get(
    url: httpx.URL, service: str | None, scopes: tuple[Scope, ...], basic: tuple[str, str] | None, deadline: float
) -> httpx.Request:
    """[TOKEN-3] The GET form: ``service``, one ``scope`` per scope, ``account`` with Basic."""
    params: list[tuple[str, str]] = []
    if service:
        params.append(("service", service))
    params.extend(("scope", str(s)) for s in scopes)
    headers = {}
    if basic:
        params.append(("account", basic[0]))
        headers["Authorization"] = _basic(*basic)
    return new_request("GET", url, params=tuple(params), headers=headers, deadline=deadline)


def _post(
    url: httpx.URL, service: str | None, scopes: tuple[Scope, ...], form: dict[str, str], deadline: float
) -> httpx.Request:
    """[TOKEN-3] The OAuth2 POST form: the grant, our client id, one space-separated scope."""
    data = {**form, "client_id": CLIENT_ID, "access_type": "offline"}
    if service:
        data["service"] = service
    if scopes:
        data["scope"] = " ".join(str(s) for s in scopes)
    return new_request("POST", url, data=data, deadline=deadline)
