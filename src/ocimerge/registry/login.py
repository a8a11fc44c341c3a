"""``login`` and ``logout``: check credentials against a registry, then keep or drop them as docker does.

[CRED-5] :func:`login` first proves the credentials work (``GET /v2/`` answered with Basic auth,
or a scope-less token fetched from the realm the challenge names, as ``docker login`` does),
and only then stores them: through the credential helper docker's config names for the
host (``credHelpers[key]``, else ``credsStore``: ``docker-credential-NAME store`` with
``{"ServerURL","Username","Secret"}`` on stdin, leaving ``auths[key]`` an empty entry as
docker does), else as ``auths[key].auth`` (base64 of ``user:password``) in ``config.json``.
The file is rewritten atomically with mode 0600, every other key kept as it was.
:func:`logout` erases what login stored (helper ``erase``, and the ``auths`` entry).
No message names the password.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

import attrs

from ocimerge.errors import AuthError, UsageError
from ocimerge.model.reference import DOCKER_HUB
from ocimerge.registry.api import Registry
from ocimerge.registry.credentials import (
    DOCKER_HUB_KEY,
    Credentials,
    config_key,
    docker_config_path,
    load_config,
)
from ocimerge.registry.options import RegistryOptions
from ocimerge.registry.transport import log_exchanges

__all__ = ["Stored", "login", "logout", "registry_host"]

# [CRED-3] docker-credential-helpers' errCredentialsNotFound text, as for ``get``.
_NOT_FOUND = "credentials not found in native keychain"
_HELPER_TIMEOUT = 30


@attrs.frozen
class Stored:
    """Where credentials were stored or erased: ``where`` is safe to print (a path or a helper)."""

    host: str
    key: str
    where: str
    changed: bool = True


def registry_host(text: str) -> str:
    """The registry host ``login REGISTRY`` means: a URL's scheme and path dropped, Hub's aliases one.

    >>> registry_host("https://index.docker.io/v1/"), registry_host("localhost:5000"), registry_host("https://r.example/v2/")
    ('docker.io', 'localhost:5000', 'r.example')
    """
    host = text.strip()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/", 1)[0].lower()
    if not host or "@" in host:
        raise UsageError(f"{text!r} is not a registry host")
    return DOCKER_HUB if config_key(host) == DOCKER_HUB_KEY else host


def verify(host: str, credentials: Credentials, options: RegistryOptions | None = None) -> None:
    """[CRED-5] Prove ``credentials`` work on ``host``; raises :class:`AuthError` when refused.

    ``GET /v2/`` learns the challenge; a second ``GET /v2/`` goes with Basic credentials or a
    token fetched for no scope, which the token service grants only to valid credentials.
    A registry whose ``/v2/`` asks for nothing cannot tell: the credentials pass unverified.
    """
    with Registry(host, options, credentials=credentials) as registry:
        if options is not None and options.debug is not None:
            log_exchanges(registry.client, options.debug, registry.auth.redactor)  # [CRED-6] once
        registry.ping()
        registry.request("GET", "/v2/", kind="GET ping", what="credentials check", retry=True)


def _helper(helper: str, action: str, payload: bytes, env: Mapping[str, str]) -> bool:
    """[CRED-3] ``docker-credential-<helper> <action>`` with ``payload`` on stdin; False on "not found"."""
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run(
            [program, action],
            input=payload,
            capture_output=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
            env=dict(env),
        )
    except FileNotFoundError as exc:
        raise AuthError(f"credential helper {program} is configured but not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise AuthError(f"credential helper {program} did not answer within {_HELPER_TIMEOUT} s") from exc
    if result.returncode == 0:
        return True
    out = (result.stdout or result.stderr).decode("utf-8", "replace").strip()
    if _NOT_FOUND in out:
        return False
    # the first line only: a helper's message is not ours to vouch for
    first = " ".join(out.splitlines()[:1]) or "no message"
    raise AuthError(f"credential helper {program} could not {action} credentials: {first}")


def _store_of(config: Mapping[str, Any], key: str) -> str | None:
    """The helper docker uses for ``key``: ``credHelpers[key]``, else ``credsStore``, else None."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict) and isinstance(helpers.get(key), str) and helpers[key]:
        return str(helpers[key])
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None


def _write_config(path: str, config: Mapping[str, Any]) -> None:
    """[CRED-5] ``config`` written to ``path`` atomically, mode 0600 (a symlink's target is replaced)."""
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".config.json.", dir=directory)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def login(  # noqa: PLR0913 - keyword-only seams
    registry: str,
    username: str,
    password: str,
    *,
    options: RegistryOptions | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Stored:
    """[CRED-5] Check ``username``/``password`` on ``registry`` (unless ``check`` is False), then store them.

    Raises :class:`UsageError` for an empty username or password, the refusal as
    :class:`AuthError` (nothing is written then), and :class:`AuthError` for a config file
    or helper that cannot be read or written.
    """
    env = _env(env)
    host = registry_host(registry)
    if not username or not password:
        raise UsageError("login needs a username and a password")
    if check:
        verify(host, Credentials("login", username, password), options)
    path = docker_config_path(env)
    config = load_config(path)
    key = config_key(host)
    auths = config.get("auths")
    auths = dict(auths) if isinstance(auths, dict) else {}
    helper = _store_of(config, key)
    if helper is not None:
        payload = json.dumps({"ServerURL": key, "Username": username, "Secret": password}).encode()
        _helper(helper, "store", payload, env)
        auths[key] = {}  # docker keeps an empty entry: the host is listed, the secret is not here
        where = f"credential helper docker-credential-{helper}"
    else:
        auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        where = path
    try:
        _write_config(path, {**config, "auths": auths})
    except OSError as exc:
        raise AuthError(f"{path}: cannot write docker config ({exc.__class__.__name__})") from exc
    return Stored(host, key, where)


def logout(registry: str, *, env: Mapping[str, str] | None = None) -> Stored:
    """[CRED-5] Erase what :func:`login` stored for ``registry``: the helper's entry and ``auths[key]``.

    ``changed`` is False when there was nothing to erase (not an error, as for docker).
    """
    env = _env(env)
    host = registry_host(registry)
    path = docker_config_path(env)
    config = load_config(path)
    key = config_key(host)
    changed = False
    where = path
    helper = _store_of(config, key)
    if helper is not None:
        changed = _helper(helper, "erase", key.encode(), env)
        where = f"credential helper docker-credential-{helper}"
    auths = config.get("auths")
    if isinstance(auths, dict) and key in auths:
        remaining = {k: v for k, v in auths.items() if k != key}
        try:
            _write_config(path, {**config, "auths": remaining})
        except OSError as exc:
            raise AuthError(f"{path}: cannot write docker config ({exc.__class__.__name__})") from exc
        changed = True
    return Stored(host, key, where, changed)
