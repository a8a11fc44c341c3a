"""Text that came from outside, made safe to print on a terminal ([SEC-5]).

Platform fields, reference names, ``RepoTags``, media types, file names and registry error
messages come from archives and servers we do not control. Written raw, an escape sequence
in one of them clears the screen, sets the window title, or forges an ``ocimerge: note:``
line. :func:`printable` is the one function every piece of printed text goes through.
Pure: no I/O.
"""

from __future__ import annotations

import re

__all__ = ["human", "printable"]

# [SEC-5] C0 (newline and tab included: one error must stay one line), DEL, C1, and the
# Unicode line and paragraph separators, which some terminals and log viewers break lines on,
# and unpaired surrogates, which cannot even be encoded for the terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    """``\\xNN`` for a code point below 256, ``\\uNNNN`` above, as Python's ``repr`` spells them."""
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """[SEC-5] ``str(text)`` with every control character escaped; other text unchanged.

    Escapes C0 controls (newline and tab too), DEL, C1 controls and U+2028/U+2029 as
    ``\\xNN`` / ``\\uNNNN``, so the result holds no character a terminal acts on and no line
    break. Printable text, non-ASCII letters included, is returned as it is. Never raises.

    >>> printable("linux/amd64")
    'linux/amd64'
    >>> printable("amd64\\x1b]0;pwned\\x07")
    'amd64\\\\x1b]0;pwned\\\\x07'
    >>> print(printable("x\\nocimerge: note: forged\\x9b2J é"))
    x\\x0aocimerge: note: forged\\x9b2J é
    """
    return _CONTROL.sub(_escape, str(text))


def human(size: int) -> str:
    """A byte count for people: bytes as a whole number, larger sizes in binary units to a tenth.

    >>> human(512), human(1536), human(5 * 1024**3)
    ('512 B', '1.5 KiB', '5.0 GiB')
    """
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        # GiB is the largest unit: a terabyte image reads as "1024.0 GiB", not a new unit
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
