"""Who may do what: Basic auth, and Bearer tokens from the registry's own token endpoint ([TESTREG-5], [TESTREG-6]).

:class:`BasicAuth` checks a username and password on every request. :class:`TokenAuth`
answers 401 with a ``Bearer`` challenge naming the registry's ``/token`` endpoint; the
:class:`Gate` issues opaque random tokens there (GET with Basic credentials or anonymous,
OAuth2 POST with ``grant_type=password`` or ``refresh_token``) and remembers each one with the
scopes it granted: what was asked, as far as the ACL allows. A token is shaped as a JWT
whose ``access`` claim lists those scopes, as Distribution's tokens are.

>>> acl = TokenAuth({"alice": "secret"}, {"alice": [("team/*", "pull,push")], "": [("public/*", "pull")]})
>>> acl.allowed("alice", "team/app", ("pull", "push", "delete"))
('pull', 'push')
>>> acl.allowed("", "public/base", ("pull", "push")), acl.allowed("alice", "public/base", ("pull",))
(('pull',), ('pull',))
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from ocimerge.testing.exchange import Answer, Refusal, Request

__all__ = ["SERVICE", "Access", "BasicAuth", "Gate", "TokenAuth"]

SERVICE = "ocimerge-testing"
ANONYMOUS = ""


@attrs.frozen
class Access:
    """One right a request needs: ``repository:team/app:push``, ``registry:catalog:*``."""

    type: str
    name: str
    action: str


def _users(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(value.items()))


def _actions(value: str | Iterable[str]) -> frozenset[str]:
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(a.strip() for a in items if a.strip())


def _acl(
    value: Mapping[str, Sequence[tuple[str, str | Iterable[str]]]],
) -> tuple[tuple[str, tuple[tuple[str, frozenset[str]], ...]], ...]:
    return tuple((user, tuple((glob, _actions(actions)) for glob, actions in rules)) for user, rules in value.items())


def _password_ok(users: tuple[tuple[str, str], ...], user: str, password: str) -> bool:
    known = dict(users).get(user)
    return known is not None and secrets.compare_digest(known, password)


@attrs.frozen
class BasicAuth:
    """[TESTREG-5] Every request carries ``Authorization: Basic`` with one of ``users`` (name to password)."""

    users: tuple[tuple[str, str], ...] = attrs.field(converter=_users)

    def check(self, user: str, password: str) -> bool:
        return _password_ok(self.users, user, password)


@attrs.frozen
class TokenAuth:
    """[TESTREG-6] Bearer tokens from the registry's ``/token``, granting what ``acl`` allows.

    ``acl`` maps a user (``""`` is anonymous) to ``(repository glob, actions)`` rules; actions
    are ``"pull,push"`` or a sequence, ``"*"`` meaning every action. A named user also gets
    what anonymous users get. Tokens live ``expires_in`` seconds.
    """

    users: tuple[tuple[str, str], ...] = attrs.field(converter=_users)
    acl: tuple[tuple[str, tuple[tuple[str, frozenset[str]], ...]], ...] = attrs.field(converter=_acl)
    expires_in: int = 300

    def check(self, user: str, password: str) -> bool:
        return _password_ok(self.users, user, password)

    def allowed(self, user: str, repository: str, asked: Sequence[str]) -> tuple[str, ...]:
        """The actions of ``asked`` that ``user`` has on ``repository``, in the order asked."""
        granted: set[str] = set()
        for who, rules in self.acl:
            if who in (user, ANONYMOUS):
                for glob, actions in rules:
                    if fnmatch.fnmatchcase(repository, glob):
                        granted |= actions
        return tuple(a for a in asked if a in granted or "*" in granted)


@attrs.define
class _Token:
    user: str
    granted: frozenset[Access]
    expires: float


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _scope_accesses(scope: str) -> list[Access]:
    """``repository:team/app:pull,push`` as accesses; anything malformed is none."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return []
    return [Access(kind, name, action) for action in actions.split(",") if action]


def _challenge_scope(needs: Sequence[Access]) -> str:
    by_resource: dict[tuple[str, str], list[str]] = {}
    for need in needs:
        by_resource.setdefault((need.type, need.name), []).append(need.action)
    return " ".join(f"{kind}:{name}:{','.join(actions)}" for (kind, name), actions in by_resource.items())


class Gate:
    """[TESTREG-5][TESTREG-6] Lets a request through, or refuses it as Distribution does; serves ``/token``.

    ``realm`` gives the token endpoint's absolute URL (it knows the port once bound);
    ``clock`` is seconds since the epoch.
    """

    def __init__(
        self,
        auth: BasicAuth | TokenAuth | None,
        realm: Callable[[], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.auth = auth
        self._realm = realm
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, str] = {}
        self._key = secrets.token_bytes(32)

    def expire_tokens(self) -> None:
        """[TESTREG-8] Every token issued so far is expired from now on (refresh tokens stay good)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires = 0.0

    # -- the registry's side ------------------------------------------------------------------

    def check(self, request: Request, needs: Sequence[Access]) -> None:
        """Pass, or raise the :class:`Refusal` (401) the request gets for ``needs``."""
        if self.auth is None:
            return
        if isinstance(self.auth, BasicAuth):
            user = self._basic_user(request)
            if user is None or user == ANONYMOUS:
                raise Refusal(
                    401,
                    "UNAUTHORIZED",
                    "authentication required",
                    headers=[("WWW-Authenticate", f'Basic realm="{SERVICE}"')],
                )
            return
        self._check_bearer(request, needs)

    def _check_bearer(self, request: Request, needs: Sequence[Access]) -> None:
        header = request.header("authorization") or ""
        if not header.startswith("Bearer "):
            raise self._challenge(needs, None)
        with self._lock:
            token = self._tokens.get(header[len("Bearer ") :].strip())
        if token is None or token.expires <= self._clock():
            raise self._challenge(needs, "invalid_token")
        missing = [need for need in needs if need not in token.granted]
        if missing:
            raise self._challenge(needs, "insufficient_scope", missing)

    def _challenge(self, needs: Sequence[Access], error: str | None, missing: Sequence[Access] = ()) -> Refusal:
        parts = [f'realm="{self._realm()}"', f'service="{SERVICE}"']
        if needs:
            parts.append(f'scope="{_challenge_scope(needs)}"')
        if error:
            parts.append(f'error="{error}"')
        detail = [{"Type": a.type, "Name": a.name, "Action": a.action} for a in missing or needs] or None
        message = "authentication required" if error != "invalid_token" else "the token is expired or unknown"
        return Refusal(
            401, "UNAUTHORIZED", message, detail, headers=[("WWW-Authenticate", "Bearer " + ",".join(parts))]
        )

    def _basic_user(self, request: Request) -> str | None:
        """The user whose Basic credentials the request carries; "" without any; None when wrong."""
        header = request.header("authorization") or ""
        if not header.startswith("Basic "):
            return ANONYMOUS
        try:
            user, _, password = base64.b64decode(header[len("Basic ") :], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        assert self.auth is not None
        return user if self.auth.check(user, password) else None

    # -- the token endpoint ---------------------------------------------------------------------

    def token_get(self, request: Request) -> Answer:
        """``GET /token?service=&scope=…``: a token for the Basic user (or anonymous)."""
        user = self._basic_user(request)
        if user is None:
            return Answer.of_json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
        scopes = list(request.query.get("scope", ()))
        offline = request.param("offline_token") == "true"
        return Answer.of_json(200, self._issue(user, scopes, offline=offline, both=True))

    def token_post(self, form: Mapping[str, str]) -> Answer:
        """OAuth2 ``POST /token``: ``grant_type=password`` or ``refresh_token``."""
        grant = form.get("grant_type")
        if grant == "password":
            user: str | None = form.get("username", "")
            assert self.auth is not None
            if not user or not self.auth.check(user, form.get("password", "")):
                return Answer.of_json(401, {"error": "invalid_grant"})
        elif grant == "refresh_token":
            with self._lock:
                user = self._refresh.get(form.get("refresh_token", ""))
            if user is None:
                return Answer.of_json(401, {"error": "invalid_grant"})
        else:
            return Answer.of_json(400, {"error": "unsupported_grant_type"})
        scopes = form.get("scope", "").split()
        offline = form.get("access_type") == "offline" or grant == "refresh_token"
        return Answer.of_json(200, self._issue(user, scopes, offline=offline, both=False))

    def _issue(self, user: str, scopes: list[str], *, offline: bool, both: bool) -> dict[str, Any]:
        assert isinstance(self.auth, TokenAuth)
        granted: set[Access] = set()
        for scope in scopes:
            granted |= self._grant(user, _scope_accesses(scope))
        now = self._clock()
        token = self._jwt(user, granted, now)
        with self._lock:
            self._tokens[token] = _Token(user, frozenset(granted), now + self.auth.expires_in)
        body: dict[str, Any] = {"access_token": token, "expires_in": self.auth.expires_in}
        body["issued_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        if both:
            body["token"] = token
        if offline and user:
            refresh = secrets.token_urlsafe(24)
            with self._lock:
                self._refresh[refresh] = user
            body["refresh_token"] = refresh
        return body

    def _jwt(self, user: str, granted: set[Access], now: float) -> str:
        """A token shaped as Distribution's: a JWT (HS256 with a key of this registry's) whose
        ``access`` claim lists what was granted, so a client may read it [TOKEN-9]; we still
        accept only tokens we issued and remember, never one for its signature alone."""
        assert isinstance(self.auth, TokenAuth)
        by_resource: dict[tuple[str, str], list[str]] = {}
        for access in sorted(granted, key=lambda a: (a.type, a.name, a.action)):
            by_resource.setdefault((access.type, access.name), []).append(access.action)
        claims = {
            "iss": SERVICE,
            "sub": user,
            "aud": SERVICE,
            "exp": int(now) + self.auth.expires_in,
            "nbf": int(now),
            "iat": int(now),
            "jti": secrets.token_hex(16),
            "access": [{"type": t, "name": n, "actions": a} for (t, n), a in by_resource.items()],
        }
        header = _b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64url(json.dumps(claims).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(signature)}"

    def _grant(self, user: str, asked: list[Access]) -> set[Access]:
        """What of ``asked`` the ACL gives ``user``; the catalog goes to any named user."""
        assert isinstance(self.auth, TokenAuth)
        out: set[Access] = set()
        for access in asked:
            if access.type == "repository":
                if self.auth.allowed(user, access.name, (access.action,)):
                    out.add(access)
            elif access.type == "registry" and access.name == "catalog" and user:
                out.add(access)
        return out
