"""A pytest fixture for library users: ``pytest_plugins = ["ocimerge.testing.pytest_plugin"]`` ([TESTREG-12]).

``oci_registry`` is a fresh, anonymous :class:`~ocimerge.testing.Registry` in memory for each
test, stopped afterwards. Named so that it does not clash with a suite's own ``registry``
fixture (ours is Distribution). Build others with ``Registry(...)`` in a fixture of your own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ocimerge.testing import Registry

__all__ = ["oci_registry"]


@pytest.fixture
def oci_registry() -> Iterator[Registry]:
    """A running in-memory registry on 127.0.0.1, anonymous, with the default behaviour."""
    with Registry() as registry:
        yield registry
