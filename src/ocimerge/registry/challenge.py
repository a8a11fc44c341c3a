"""``WWW-Authenticate`` challenges and token scopes, parsed without I/O ([AUTH-1] .. [AUTH-3]).

[AUTH-1] A response may carry several ``WWW-Authenticate`` headers, and one header may hold
several challenges (RFC 7235). Schemes and parameter names are case-insensitive; values are
tokens or quoted strings in which ``\\`` escapes the next character.
[AUTH-2] A scope is ``type:name:action[,action]``; the name may hold ``host:port``, so it is
split at the first and the last ``:``.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["Challenge", "Scope", "merge_scopes", "parse_challenges"]

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/:=")


@attrs.frozen
class Challenge:
    """One authentication challenge: a lower-cased scheme and its parameters.

    >>> [c] = parse_challenges(['Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"'])
    >>> c.scheme, c.get("realm"), c.get("SERVICE")
    ('bearer', 'https://auth.example/token', 'reg')
    """

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.params:
            if key == name:
                return value
        return None

    @property
    def scopes(self) -> tuple[Scope, ...]:
        """The scopes the challenge asks for (space-separated in ``scope``)."""
        text = self.get("scope") or ""
        return tuple(Scope.parse(s) for s in text.split() if s.count(":") >= 2)


class _Reader:
    """A cursor over one ``WWW-Authenticate`` header (RFC 7235 tokens and quoted strings)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        """Step over spaces and tabs (commas are separators, read by the caller)."""
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        """The next character, or ``""`` at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str:
        """A scheme or parameter name; it stops at ``=`` so ``realm=x`` splits."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS and self.text[self.pos] != "=":
            self.pos += 1
        return self.text[start : self.pos]

    def value(self) -> str:
        """A parameter value: a bare token, or a quoted string where ``\\`` escapes the next character."""
        if self.peek() != '"':
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in ", \t":
                self.pos += 1
            return self.text[start : self.pos]
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                break
            else:
                out.append(char)
        return "".join(out)


def _parse_header(header: str) -> list[Challenge]:
    """Every challenge in one header: RFC 7235 allows several, comma-separated."""
    reader = _Reader(header)
    challenges: list[Challenge] = []
    scheme: str | None = None
    params: list[tuple[str, str]] = []
    while True:
        reader.skip_space()
        while reader.peek() == ",":
            reader.pos += 1
            reader.skip_space()
        if not reader.peek():
            break
        start = reader.pos
        name = reader.token()
        if not name:  # unparsable character: skip it rather than loop
            reader.pos = start + 1
            continue
        reader.skip_space()
        if reader.peek() == "=":
            reader.pos += 1
            reader.skip_space()
            params.append((name.lower(), reader.value()))
            continue
        # a bare token starts a new challenge
        if scheme is not None:
            challenges.append(Challenge(scheme, tuple(params)))
        scheme, params = name.lower(), []
    if scheme is not None:
        challenges.append(Challenge(scheme, tuple(params)))
    return challenges


def parse_challenges(headers: Iterable[str]) -> tuple[Challenge, ...]:
    """[AUTH-1] Every challenge in every ``WWW-Authenticate`` header value, in order."""
    out: list[Challenge] = []
    for header in headers:
        out.extend(_parse_header(header))
    return tuple(out)


@attrs.frozen(order=True)
class Scope:
    """[AUTH-2] A resource scope such as ``repository:team/app:pull,push``.

    >>> Scope.parse("repository:localhost:5000/a:pull,push").name
    'localhost:5000/a'
    >>> str(Scope.repository("a/b", "push", "pull"))
    'repository:a/b:pull,push'
    """

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope:
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        return cls(kind, name, tuple(sorted({a for a in actions.split(",") if a})))

    @classmethod
    def repository(cls, name: str, *actions: str) -> Scope:
        return cls("repository", name, tuple(sorted(set(actions))))

    def covers(self, other: Scope) -> bool:
        """Whether this scope grants everything ``other`` asks for."""
        return (
            self.type == other.type
            and self.name == other.name
            and ("*" in self.actions or set(other.actions) <= set(self.actions))
        )

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def merge_scopes(scopes: Iterable[Scope]) -> tuple[Scope, ...]:
    """[AUTH-3] One scope per resource, with the union of the actions asked for; sorted."""
    merged: dict[tuple[str, str], set[str]] = {}
    for scope in scopes:
        merged.setdefault((scope.type, scope.name), set()).update(scope.actions)
    return tuple(sorted(Scope(t, n, tuple(sorted(a))) for (t, n), a in merged.items()))
