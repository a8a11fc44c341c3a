"""``python -m ocimerge.testing [--port PORT] [--storage DIR]``: a registry until interrupted ([TESTREG-12]).

Prints its address (``127.0.0.1:PORT``) on stdout once it answers, and serves until SIGINT
or SIGTERM, then exits 0. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ocimerge.testing import Registry


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; 0 then."""
    parser = argparse.ArgumentParser(prog="python -m ocimerge.testing", description="An OCI registry for tests.")
    parser.add_argument("--port", type=int, default=0, help="the port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--storage", type=Path, help="keep blobs, manifests and tags in this directory")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def stopping(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, stopping)
    signal.signal(signal.SIGTERM, stopping)
    with Registry(storage=args.storage, port=args.port) as registry:
        print(registry.host, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
