"""Registry credentials: explicit, from the environment, docker's ``config.json``, containers' ``auth.json``.

[CRED-1] Lookup order for a registry host: ``--username``/``--password-stdin``, then
``OCIMERGE_USERNAME``/``OCIMERGE_PASSWORD``, then docker's config (``$DOCKER_CONFIG/config.json``,
else ``~/.docker/config.json``): ``credHelpers[host]``, then ``credsStore``, then ``auths``
(exact key, then any key whose host part matches). Docker Hub's key is
``https://index.docker.io/v1/``. Then containers' ``auth.json`` files in containers-auth.json(5)'s
order: ``$REGISTRY_AUTH_FILE`` alone when set, else ``$XDG_RUNTIME_DIR/containers/auth.json`` then
``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`` (``credHelpers[host]``, then ``auths``;
Docker Hub's key there is ``docker.io``).
[CRED-2] ``auths[].auth`` is base64 of ``user:password``, split at the first ``:``;
``identitytoken`` is an OAuth2 refresh token; ``registrytoken`` a ready bearer token.
[CRED-3] Helpers speak docker's protocol: ``docker-credential-NAME get`` with the server key on
stdin, JSON ``{"Username","Secret"}`` on stdout; ``Username == "<token>"`` means ``Secret`` is
an identity token; "credentials not found" means anonymous.
[CRED-4] (explicit credentials go only to the registries they were given for) is applied by
the caller, ``RegistryOptions.credentials_for``; this module only finds credentials for a host.
Secrets never appear in ``repr``, logs or messages: :class:`Credentials` redacts them.
"""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
from collections.abc import Mapping
from typing import Any

import attrs

from ocimerge.errors import AuthError, DocumentError
from ocimerge.model.codec import MAX_DOCUMENT_SIZE, decode_json
from ocimerge.model.reference import DOCKER_HUB

__all__ = [
    "DOCKER_HUB_KEY",
    "Credentials",
    "auth_file_paths",
    "config_key",
    "docker_config_path",
    "load_config",
    "none_found",
    "resolve_credentials",
    "searched",
]

#: [CRED-1] docker login's historical key for Docker Hub (the v1 index URL), kept by docker/cli.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
# [CRED-3] docker-credential-helpers' errCredentialsNotFound text: "no credentials", not a failure.
_NOT_FOUND = "credentials not found in native keychain"
# [CRED-3] seconds: a keychain may prompt to be unlocked, but a stuck helper must not hang CI.
_HELPER_TIMEOUT = 30


@attrs.frozen(repr=False)
class Credentials:
    """What to authenticate with, and where it came from (``source``, safe to print).

    At most one kind of secret is normally set: ``password`` (with ``username``) for basic
    auth or a token request, ``identity_token`` an OAuth2 refresh token ([TOKEN-3]),
    ``registry_token`` a bearer token used as is ([CRED-2]).

    >>> Credentials("config.json", "alice", "s3cr3t")
    Credentials(source='config.json', username='alice', secret=<redacted>)
    """

    source: str
    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    registry_token: str | None = None

    @property
    def has_secret(self) -> bool:
        """Whether there is anything to authenticate with (a username alone is not)."""
        return bool(self.password or self.identity_token or self.registry_token)

    def __repr__(self) -> str:
        """Source and username only: credentials end up in tracebacks and debug logs."""
        return f"Credentials(source={self.source!r}, username={self.username!r}, secret=<redacted>)"

    __str__ = __repr__


def config_key(registry: str) -> str:
    """[CRED-1] The ``config.json`` key of a registry host (Docker Hub has its own).

    ``registry`` is a normalised host (``Reference.registry``); every Docker Hub alias maps to
    :data:`DOCKER_HUB_KEY`, any other host is its own key. Never raises.
    """
    if registry in (DOCKER_HUB, "index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB_KEY
    return registry


def _host_part(key: str) -> str:
    """The ``host[:port]`` of an ``auths`` key written as a URL (``https://h:5000/v2/``)."""
    for prefix in ("https://", "http://"):
        key = key.removeprefix(prefix)
    return key.split("/", 1)[0]


def _decode_auth(value: str, where: str) -> tuple[str, str]:
    """[CRED-2] ``auth`` is base64 of ``user:password``, split at the first colon, NULs stripped."""
    # NULs are trimmed from the password as docker/cli's decodeAuth trims them.
    try:
        text = base64.b64decode(value, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        # chained for OCIMERGE_DEBUG: the decoder's message names a position, never the bytes
        raise AuthError(f"{where}: 'auth' is not base64 of user:password") from exc
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise AuthError(f"{where}: 'auth' does not hold user:password")
    return user, password.rstrip("\0")


def _from_auths_entry(entry: Mapping[str, Any], where: str) -> Credentials | None:
    """[CRED-2] The credentials an ``auths`` entry holds; None for an empty entry."""
    # ``auth`` wins over separate username/password fields, as in docker/cli.
    identity = entry.get("identitytoken") or None
    registry_token = entry.get("registrytoken") or None
    username = entry.get("username") or None
    password = entry.get("password") or None
    if entry.get("auth"):
        username, password = _decode_auth(str(entry["auth"]), where)
    if not (password or identity or registry_token):
        return None  # an empty entry: the secret lives in a credential store, or nowhere
    return Credentials(where, username, password, identity, registry_token)


def run_helper(helper: str, server: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """[CRED-3] Ask ``docker-credential-<helper>`` for ``server``; None when it has nothing.

    ``server`` is the config key ([CRED-1]) written to the helper's stdin; ``env`` is the
    environment to run it in (None: ours). Raises :class:`AuthError` when the program is not
    on PATH, does not answer in time, fails for another reason than "not found", or answers
    something that is not its JSON; messages never carry more than the first output line.
    """
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run(
            [program, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
            env=None if env is None else dict(env),
        )
    except FileNotFoundError as exc:
        raise AuthError(f"credential helper {program} is configured but not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        # its message names the command and the timeout; the server name was its only input
        raise AuthError(f"credential helper {program} did not answer within {_HELPER_TIMEOUT} s") from exc
    out = result.stdout.decode("utf-8", "replace").strip()
    if result.returncode != 0:
        if _NOT_FOUND in out:
            return None
        # the helper's message may not echo secrets, but keep only its first line anyway
        first = (out or result.stderr.decode("utf-8", "replace").strip()).splitlines()[:1]
        raise AuthError(f"credential helper {program} failed for {server}: {' '.join(first) or 'no message'}")
    try:
        # [SEC-7] the one strict decoder: nesting, encodings and size are bounded
        value = decode_json(out.encode(), where=f"credential helper {program}")
        username, secret = value.get("Username") or None, value.get("Secret") or None
    except (DocumentError, AttributeError) as exc:
        # a JSON error's message gives a position only (the text, which may hold the secret,
        # is kept on the exception but never printed)
        raise AuthError(f"credential helper {program} answered something that is not its JSON") from exc
    if not secret:
        return None
    source = f"credential helper {program}"
    if username == "<token>":
        return Credentials(source, identity_token=secret)
    return Credentials(source, username=username, password=secret)


def docker_config_path(env: Mapping[str, str]) -> str:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (docker's own order)."""
    directory = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def auth_file_paths(env: Mapping[str, str]) -> tuple[str, ...]:
    """[CRED-1] Containers' ``auth.json`` files, in containers-auth.json(5)'s order.

    ``$REGISTRY_AUTH_FILE`` is an override and then the only one (as podman's ``--authfile``);
    else the primary ``$XDG_RUNTIME_DIR/containers/auth.json`` (when that variable is set),
    then ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json``. Docker's config, the last
    file of that page's list, is read before them ([CRED-1]), so it is not repeated here.
    """
    if env.get("REGISTRY_AUTH_FILE"):
        return (env["REGISTRY_AUTH_FILE"],)
    paths = []
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    paths.append(os.path.join(config_home, "containers", "auth.json"))
    return tuple(paths)


def load_config(path: str, kind: str = "docker config") -> dict[str, Any]:
    """The parsed config; empty when there is none (anonymous access is not an error)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DOCUMENT_SIZE + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AuthError(f"{path}: cannot read {kind} ({exc.__class__.__name__})") from exc
    try:
        # [SEC-7] deep nesting or a bad encoding is a one-line error, never a crash
        value = decode_json(raw, where=path)
    except DocumentError as exc:
        raise AuthError(f"cannot read {kind}: {exc}") from exc
    return value if isinstance(value, dict) else {}


def _auth_file_keys(registry: str) -> tuple[str, ...]:
    """[CRED-1] The ``auth.json`` keys of a host: podman writes ``docker.io`` for Docker Hub."""
    if config_key(registry) == DOCKER_HUB_KEY:
        return (DOCKER_HUB, "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY)
    return (registry,)


def from_auth_file(registry: str, path: str, env: Mapping[str, str]) -> Credentials | None:
    """[CRED-1] Credentials for ``registry`` from one containers ``auth.json``, or None.

    ``credHelpers[key]`` (final, as in docker's config), then ``auths``: the host's key, then
    a URL-shaped key (``https://host/v1/``, written by older tools) whose host is the host.
    Namespace keys (``quay.io/team``) are for one repository tree and are not used for the
    whole host. Raises :class:`AuthError` as :func:`from_docker_config`.
    """
    config = load_config(path, "containers auth file")
    keys = _auth_file_keys(registry)
    helpers = config.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key in keys:
            if isinstance(helpers.get(key), str):
                return run_helper(helpers[key], key, env)
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        return None
    found = next((k for k in keys if k in auths), None)
    if found is None:
        hosts = {"index.docker.io" if k.startswith("https://") else k for k in keys}
        found = next((k for k in auths if "://" in k and _host_part(k) in hosts), None)
    entry = auths.get(found) if found is not None else None
    if not isinstance(entry, dict):
        return None
    return _from_auths_entry(entry, f"{path} auths[{found!r}]")


def from_docker_config(registry: str, env: Mapping[str, str]) -> Credentials | None:
    """[CRED-1] Credentials for ``registry`` from docker's config.json, or None.

    ``env`` supplies ``DOCKER_CONFIG`` and the helpers' environment. A missing config file is
    anonymous access. Raises :class:`AuthError` for an unreadable config, a malformed
    ``auth`` or a failing credential helper.
    """
    path = docker_config_path(env)
    config = load_config(path)
    key = config_key(registry)
    helpers = config.get("credHelpers") or {}
    if isinstance(helpers, dict) and isinstance(helpers.get(key), str):
        # A per-host helper's answer is final, even "none": docker does not fall through either.
        return run_helper(helpers[key], key, env)
    if isinstance(config.get("credsStore"), str) and config["credsStore"]:
        found = run_helper(config["credsStore"], key, env)
        if found is not None:
            return found
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        return None
    entry = auths.get(key)
    # Older docker logins and other tools store URL-shaped keys (https://host:5000/v2/); match
    # on the host part as docker/cli does, except for Hub, whose key is fixed.
    if entry is None and key != DOCKER_HUB_KEY:
        entry = next((v for k, v in auths.items() if _host_part(k) == registry), None)
    if not isinstance(entry, dict):
        return None
    return _from_auths_entry(entry, f"{path} auths[{key!r}]")


def resolve_credentials(
    registry: str,
    *,
    username: str | None = None,
    password: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials | None:
    """[CRED-1] The credentials to use for ``registry``, or None for anonymous access.

    Explicit ``username`` / ``password`` first, then ``OCIMERGE_USERNAME`` /
    ``OCIMERGE_PASSWORD`` in ``env`` (default ``os.environ``), then docker's config, then
    containers' ``auth.json`` files (:func:`auth_file_paths`). Raises
    :class:`AuthError` when only half of a pair is given (a silent anonymous fallback would
    hide the mistake), or as :func:`from_docker_config`.
    """
    env = os.environ if env is None else env
    if username is not None or password is not None:
        if not username or password is None:
            raise AuthError("--username and --password-stdin go together")
        return Credentials("--username/--password-stdin", username, password)
    if env.get("OCIMERGE_USERNAME") or env.get("OCIMERGE_PASSWORD"):
        user, secret = env.get("OCIMERGE_USERNAME"), env.get("OCIMERGE_PASSWORD")
        if not user or not secret:
            raise AuthError("OCIMERGE_USERNAME and OCIMERGE_PASSWORD go together")
        return Credentials("OCIMERGE_USERNAME/OCIMERGE_PASSWORD", user, secret)
    found = from_docker_config(registry, env)
    for path in auth_file_paths(env) if found is None else ():
        found = from_auth_file(registry, path, env)
        if found is not None:
            break
    return found


def searched(registry: str, env: Mapping[str, str] | None = None) -> str:
    """[MSG-1] Where :func:`resolve_credentials` looks for ``registry``'s credentials, in words.

    For the message of a 401 answered to a client that found none: the flags, the
    environment variables, the docker config file with the keys read in it (saying
    when the file does not exist, or which ``credsStore`` had nothing), and containers'
    ``auth.json`` files that exist (or ``$REGISTRY_AUTH_FILE``, named even when missing). Reads the config
    again, runs no helper, never raises and never names a secret.
    """
    env = os.environ if env is None else env
    path = docker_config_path(env)
    key = config_key(registry)
    try:
        config = load_config(path)
        exists = os.path.exists(path)
    except AuthError:
        config, exists = {}, True
    if not exists:
        where = f"{path} (no such file)"
    else:
        store = config.get("credsStore")
        store_text = f"credsStore {store!r} (nothing for {key!r})" if isinstance(store, str) and store else "credsStore"
        where = f"{path} (credHelpers[{key!r}], {store_text}, auths[{key!r}])"
    # containers' files are named when they exist, or when REGISTRY_AUTH_FILE asks for one:
    # most docker users have none, and listing absent defaults would only bury the advice
    files = [p for p in auth_file_paths(env) if os.path.exists(p)]
    if env.get("REGISTRY_AUTH_FILE") and not files:
        files = [f"{env['REGISTRY_AUTH_FILE']} (REGISTRY_AUTH_FILE; no such file)"]
    return ", ".join(["--username/--password-stdin, OCIMERGE_USERNAME/OCIMERGE_PASSWORD", where, *files])


def none_found(registry: str, env: Mapping[str, str] | None = None) -> str:
    """[MSG-1] The tail of a refusal to anonymous access: none found, where we looked, the fix.

    ``no credentials were found; looked at …; pass --username with --password-stdin, or run
    docker login REGISTRY``, for whoever builds the message (a registry's 401, a token
    service's refusal, a token granted less than asked). Never raises.
    """
    return (
        f"no credentials were found; looked at {searched(registry, env)}; "
        f"pass --username with --password-stdin, or run docker login {registry}"
    )
