"""Tag lists and the catalog, paginated with ``n``/``last`` and ``Link`` ([TESTREG-11]).

>>> page(["a", "b", "c"], n="2", last=None)
(['a', 'b'], 'b')
>>> page(["a", "b", "c"], n="2", last="b")
(['c'], None)
"""

from __future__ import annotations

from urllib.parse import urlencode

from ocimerge.testing.exchange import Answer, Refusal, Request
from ocimerge.testing.site import Site

__all__ = ["catalog", "page", "tags"]


def page(names: list[str], *, n: str | None, last: str | None) -> tuple[list[str], str | None]:
    """The names after ``last`` (all when None), at most ``n`` of them (all when None), and
    the last one given when more follow (None when this is the last page).

    A ``n`` that is not a non-negative integer is a 400 ``PAGINATION_NUMBER_INVALID``.
    """
    after = [name for name in sorted(names) if last is None or name > last]
    if n is None:
        return after, None
    if not n.isdigit():
        raise Refusal(400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested", {"n": n})
    count = int(n)
    shown = after[:count]
    return shown, (shown[-1] if shown and len(after) > count else None)


def _link(path: str, n: str | None, following: str | None) -> list[tuple[str, str]]:
    if following is None or n is None:
        return []
    return [("Link", f'<{path}?{urlencode({"last": following, "n": n})}>; rel="next"')]


def tags(site: Site, request: Request, name: str, _reference: str) -> Answer:
    """``GET /v2/<name>/tags/list[?n=&last=]``: ``{"name", "tags"}``.

    404 ``NAME_UNKNOWN`` for a repository never pushed to.
    """
    if not site.storage.has_repository(name):
        raise Refusal(404, "NAME_UNKNOWN", "repository name not known to registry", {"name": name})
    n = request.param("n")
    shown, following = page(site.storage.tags(name), n=n, last=request.param("last"))
    return Answer.of_json(200, {"name": name, "tags": shown}, _link(f"/v2/{name}/tags/list", n, following))


def catalog(site: Site, request: Request, _name: str, _reference: str) -> Answer:
    """``GET /v2/_catalog[?n=&last=]``: ``{"repositories"}``."""
    n = request.param("n")
    shown, following = page(site.storage.repositories(), n=n, last=request.param("last"))
    return Answer.of_json(200, {"repositories": shown}, _link("/v2/_catalog", n, following))
