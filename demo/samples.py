"""Write three small single-platform sample images as separate OCI archives.

They stand in for what ``docker buildx build -o type=oci,dest=app-ARCH.tar`` writes on an
amd64, an arm64 and an armv7 build machine. Bytes are deterministic, so the merged index has
the same digest on every run.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from imagebuilder import Image, oci_layout, tar_bytes

PLATFORMS = [("amd64", None, "amd64"), ("arm64", "v8", "arm64"), ("arm", "v7", "armv7")]


def main(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    for arch, variant, label in PLATFORMS:
        app = tar_bytes(
            {
                "app/hello.sh": f"#!/bin/sh\necho hello from {arch}{variant or ''}\n".encode(),
                "app/VERSION": b"1.0.0\n",
            }
        )
        base = tar_bytes({"etc/os-release": f"NAME=demo\nARCH={label}\n".encode()})
        image = Image(architecture=arch, variant=variant, layers=[base, app])
        path = os.path.join(directory, f"app-{label}.tar")
        oci_layout([image], names={0: "1.0.0"}).write_tar(path)
        print(f"wrote {path} ({image.platform}, manifest {image.digest[:19]}…)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo/in")
