"""``ocimerge login`` / ``logout`` and the ``--debug`` flag ([CRED-5], [CRED-6]).

The integrator registers :func:`add_parsers` in ``cli/parser.py`` and :data:`COMMANDS` in
``cli/commands.py``; :func:`add_debug_flag` and :func:`debug_options` give every registry
command ``--debug``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Any

from ocimerge.cli.connection import add_debug_flag, add_tls_flags, debug_options, write_debug
from ocimerge.cli.exits import EXIT_OK
from ocimerge.errors import UsageError
from ocimerge.registry.login import login, logout, registry_host
from ocimerge.registry.options import RegistryOptions
from ocimerge.registry.transport import TLSOptions
from ocimerge.text import printable

__all__ = ["COMMANDS", "add_debug_flag", "add_parsers", "debug_options", "write_debug"]

_FORMAT = argparse.RawDescriptionHelpFormatter


def _connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry connection")
    add_tls_flags(group)  # its own --username and password prompt: not add_connection_flags
    add_debug_flag(parser)


def add_parsers(subparsers: Any) -> None:
    """Add ``login`` and ``logout`` to the command line's subparsers."""
    parser = subparsers.add_parser(
        "login",
        help="check credentials on a registry and store them in docker's config",
        formatter_class=_FORMAT,
        description="Check USER's password (or token) on REGISTRY, then store it as docker login does:\n"
        "in the credential helper docker's config.json names (credHelpers, credsStore), else in\n"
        "its auths (mode 0600). Nothing is stored when the registry refuses the credentials.\n"
        "The password is read from stdin with --password-stdin, else prompted for.",
        epilog="examples:\n  ocimerge login ghcr.io --username me --password-stdin < token.txt\n"
        "  ocimerge login localhost:5000 --username me\n",
    )
    parser.add_argument("registry", metavar="REGISTRY")
    parser.add_argument("--username", "-u", metavar="USER", help="the user (prompted for when absent)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password or token from stdin")
    _connection(parser)
    parser = subparsers.add_parser(
        "logout",
        help="remove a registry's credentials from docker's config (or its credential helper)",
        description="Erase the credentials ocimerge login (or docker login) stored for REGISTRY.",
    )
    parser.add_argument("registry", metavar="REGISTRY")


def _username(args: argparse.Namespace) -> str:
    if args.username:
        return str(args.username)
    if args.password_stdin or not sys.stdin.isatty():
        raise UsageError("login: --username is needed when the password comes from stdin")
    return input("Username: ").strip()


def _password(args: argparse.Namespace) -> str:
    """From stdin with ``--password-stdin``, else a prompt that does not echo; never an argument."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("login: stdin is not a terminal; pass --password-stdin to read the password from it")
    if not password:
        raise UsageError("login: the password is empty")
    return password


def run_login(args: argparse.Namespace) -> int:
    """``login``: check, then store; the message names where, never the secret."""
    host = registry_host(args.registry)
    username = _username(args)
    password = _password(args)
    tls = TLSOptions(ca_file=args.ca_file, insecure=args.insecure, plain_http=args.plain_http)
    options = debug_options(args, RegistryOptions(tls=tls))
    stored = login(host, username, password, options=options)
    print(f"Login succeeded: {printable(username)} on {stored.host}, stored in {printable(stored.where)}")
    return EXIT_OK


def run_logout(args: argparse.Namespace) -> int:
    """``logout``: erase; saying so when there was nothing to erase (exit 0, as docker)."""
    stored = logout(args.registry)
    if stored.changed:
        print(f"Removed the credentials for {stored.host} from {printable(stored.where)}")
    else:
        print(f"Not logged in to {stored.host} ({printable(stored.where)} holds nothing for it)")
    return EXIT_OK


#: The subcommands this module adds, for ``cli/commands.py``'s table.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"login": run_login, "logout": run_logout}
