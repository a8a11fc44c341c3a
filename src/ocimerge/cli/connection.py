"""The registry connection flags every registry command shares, and what they mean ([CRED-6]).

One definition for ``cli/parser.py``'s commands, ``cli/tagging.py``'s and ``cli/login.py``'s
(which has its own ``--username`` and password prompt, so takes only the TLS flags and
``--debug``). This module imports nothing from ``cli.parser`` or ``cli.commands``: every CLI
module may import it without a cycle.
"""

from __future__ import annotations

import argparse
import sys

import attrs

from ocimerge.errors import UsageError
from ocimerge.registry.options import RegistryOptions
from ocimerge.registry.transport import TLSOptions

__all__ = [
    "add_connection_flags",
    "add_debug_flag",
    "add_tls_flags",
    "debug_options",
    "password_from_stdin",
    "registry_options",
    "tls_options",
    "write_debug",
]


def write_debug(line: str) -> None:
    """[CRED-6] One ``--debug`` line on stderr (the line is already redacted and escaped)."""
    sys.stderr.write(f"ocimerge: debug: {line}\n")
    sys.stderr.flush()


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """[CRED-6] ``--debug``: log each HTTP request and answer to stderr, secrets redacted."""
    parser.add_argument(
        "--debug",
        action="store_true",
        help="log each HTTP request and answer to stderr (method, URL, status, some headers; no secrets)",
    )


def debug_options(args: argparse.Namespace, options: RegistryOptions) -> RegistryOptions:
    """[CRED-6] ``options`` with :func:`write_debug` as their debug log when ``--debug`` was given."""
    if getattr(args, "debug", False):
        return attrs.evolve(options, debug=write_debug)
    return options


def add_tls_flags(group: argparse._ArgumentGroup) -> None:
    """``--ca-file``, ``--insecure``, ``--plain-http``."""
    group.add_argument("--ca-file", metavar="FILE", help="trust this CA bundle for registry TLS")
    # --insecure keeps TLS but trusts any certificate; --plain-http drops TLS (docker's split)
    group.add_argument("--insecure", action="store_true", help="do not verify registry TLS certificates")
    group.add_argument("--plain-http", action="store_true", help="talk plain HTTP to the registry")


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """How to reach and authenticate to registries: every command may read or write one."""
    group = parser.add_argument_group("registry connection")
    group.add_argument("--username", metavar="USER", help="registry user (with --password-stdin)")
    # no --password: a secret in argv shows in `ps` and in shell history
    group.add_argument("--password-stdin", action="store_true", help="read the password or token from stdin")
    add_tls_flags(group)
    add_debug_flag(parser)  # [CRED-6] every command that reaches a registry can show it


def password_from_stdin(args: argparse.Namespace) -> str | None:
    """The password from stdin when ``--password-stdin`` asks for it; never from an argument."""
    if args.password_stdin:
        if not args.username:
            raise UsageError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: nothing on stdin")
        return password
    if args.username:
        # a password flag would leak into shell history and `ps`: stdin is the only way in
        raise UsageError("--username needs --password-stdin (passwords never go on the command line)")
    return None


def tls_options(args: argparse.Namespace) -> TLSOptions:
    """The TLS flags; they apply to every registry of the run."""
    return TLSOptions(ca_file=args.ca_file, insecure=args.insecure, plain_http=args.plain_http)


def registry_options(args: argparse.Namespace) -> RegistryOptions:
    """:func:`add_connection_flags`' flags as registry options (credentials scoped by the library)."""
    options = RegistryOptions(tls=tls_options(args), username=args.username, password=password_from_stdin(args))
    return debug_options(args, options)
