"""A registry client's tests, with ocimerge.testing's registry as the server."""

import io

from ocimerge import Blob, Descriptor, Digest
from ocimerge import Registry as Client
from ocimerge.testing import Registry

pytest_plugins = ["ocimerge.testing.pytest_plugin"]  # gives the oci_registry fixture


def hello_blob() -> Blob:
    data = b"hello, registry"
    descriptor = Descriptor("application/octet-stream", Digest.of(data), len(data))
    return Blob(descriptor, lambda: io.BytesIO(data), "hello")


def test_a_blob_goes_up_in_one_post_and_one_put(oci_registry: Registry) -> None:
    blob = hello_blob()
    with Client(oci_registry.host) as client:
        client.upload("team/app", blob)
        assert client.blob_exists("team/app", blob.digest) == blob.descriptor.size
    assert [(method, status) for method, _path, status in oci_registry.requests()] == [
        ("GET", 200),  # /v2/: the API version check
        ("POST", 202),  # an upload session
        ("PUT", 201),  # the bytes, and the digest they must hash to
        ("HEAD", 200),
    ]


def test_a_503_is_retried(oci_registry: Registry) -> None:
    oci_registry.faults.fail("PUT", "/blobs/uploads/", 503)
    with Client(oci_registry.host) as client:
        client.upload("team/app", hello_blob())
    puts = [status for method, _path, status in oci_registry.requests() if method == "PUT"]
    assert puts == [503, 201]
