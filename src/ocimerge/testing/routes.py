"""Which route a request takes, what rights it needs, and its answer ([TESTREG-1]).

A request's path picks a route (``/v2/``, blobs, uploads, manifests, tags, the catalog, the
referrers API, the token endpoint); its method picks the handler and the actions it needs,
as Distribution asks them: ``pull`` to read, ``pull,push`` to write, ``delete`` to delete, and
``pull`` on the ``from`` repository of a mount. The :class:`~ocimerge.testing.auth.Gate` is
asked before the handler runs. A path no route takes answers Go's plain ``404 page not
found``, as Distribution does (and so the referrers API when it is off).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs

from ocimerge.testing import blobs, listing, manifests
from ocimerge.testing.auth import Access, TokenAuth
from ocimerge.testing.exchange import Answer, Refusal, Request
from ocimerge.testing.site import NAME, Site

__all__ = ["NOT_FOUND", "Routes"]

Handler = Callable[[Site, Request, str, str], Answer]

#: Go's answer to a path no route takes (Distribution's router for a missing API)
NOT_FOUND = Answer(404, [("Content-Type", "text/plain; charset=utf-8")], b"404 page not found\n")

_PATHS = [
    ("base", re.compile(r"/v2/?")),
    ("catalog", re.compile(r"/v2/_catalog")),
    ("uploads", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<reference>[^/]*)")),
    ("blobs", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<reference>[^/]+)")),
    ("manifests", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)")),
    ("tags", re.compile(r"/v2/(?P<name>.+)/tags/list")),
    ("referrers", re.compile(r"/v2/(?P<name>.+)/referrers/(?P<reference>[^/]+)")),
    ("token", re.compile(r"/token")),
]


def _base(_site: Site, _request: Request, _name: str, _reference: str) -> Answer:
    return Answer.of_json(200, {})


def _upload_route(site: Site, request: Request, name: str, reference: str) -> Answer:
    """``/blobs/uploads/``: POST starts one; a session's own URL takes PATCH, PUT, GET, DELETE."""
    if not reference:
        if request.method != "POST":
            raise Refusal(405, "UNSUPPORTED", "the operation is unsupported")
        return blobs.upload_start(site, request, name, reference)
    by_method: dict[str, Handler] = {
        "PATCH": blobs.upload_patch,
        "PUT": blobs.upload_put,
        "GET": blobs.upload_status,
        "DELETE": blobs.upload_delete,
    }
    handler = by_method.get(request.method)
    if handler is None:
        raise Refusal(405, "UNSUPPORTED", "the operation is unsupported")
    return handler(site, request, name, reference)


_HANDLERS: dict[tuple[str, str], Handler] = {
    ("base", "GET"): _base,
    ("catalog", "GET"): listing.catalog,
    ("blobs", "GET"): blobs.get_blob,
    ("blobs", "HEAD"): blobs.get_blob,
    ("blobs", "DELETE"): blobs.delete_blob,
    ("manifests", "GET"): manifests.get_manifest,
    ("manifests", "HEAD"): manifests.get_manifest,
    ("manifests", "PUT"): manifests.put_manifest,
    ("manifests", "DELETE"): manifests.delete_manifest,
    ("tags", "GET"): listing.tags,
    ("referrers", "GET"): manifests.referrers,
    **{("uploads", method): _upload_route for method in ("POST", "PATCH", "PUT", "GET", "DELETE")},
}

_ACTIONS = {"GET": ("pull",), "HEAD": ("pull",), "POST": ("pull", "push"), "PUT": ("pull", "push")}
_ACTIONS |= {"PATCH": ("pull", "push"), "DELETE": ("delete",)}


def needs(kind: str, request: Request, name: str) -> list[Access]:
    """The rights a request needs, in Distribution's terms (a mount also needs ``pull`` on ``from``)."""
    if kind == "base":
        return []
    if kind == "catalog":
        return [Access("registry", "catalog", "*")]
    out = [Access("repository", name, action) for action in _ACTIONS.get(request.method, ("pull",))]
    source = request.param("from")
    if kind == "uploads" and request.param("mount") and source and source != name:
        out.append(Access("repository", source, "pull"))
    return out


class Routes:
    """The registry's request handling, apart from HTTP: ``answer(request)`` never raises a Refusal."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def answer(self, request: Request) -> Answer:
        """The answer to ``request``; refusals become error answers in the spec's shape [TESTREG-9]."""
        try:
            return self._route(request)
        except Refusal as refusal:
            return refusal.answer(json_errors=self.site.behaviour.json_errors)

    def _route(self, request: Request) -> Answer:
        found = next(((k, m) for k, p in _PATHS if (m := p.fullmatch(request.path)) is not None), None)
        if found is None:
            return NOT_FOUND
        kind, match = found
        if kind == "token":
            return self._token(request)
        if kind == "referrers" and not self.site.behaviour.referrers:
            return NOT_FOUND  # [TESTREG-7] as Distribution 2.8, which has no referrers API
        handler = _HANDLERS.get((kind, request.method))
        if handler is None:
            raise Refusal(405, "UNSUPPORTED", "the operation is unsupported")
        name, reference = match.groupdict().get("name") or "", match.groupdict().get("reference") or ""
        if kind not in ("base", "catalog") and not NAME.fullmatch(name):
            raise Refusal(400, "NAME_INVALID", "invalid repository name", {"name": name})
        self.site.gate.check(request, needs(kind, request, name))
        if request.method == "DELETE" and kind in ("blobs", "manifests") and not self.site.behaviour.deletion:
            raise Refusal(405, "UNSUPPORTED", "The operation is unsupported.")  # storage.delete disabled
        return handler(self.site, request, name, reference)

    def _token(self, request: Request) -> Answer:
        """[TESTREG-6] The token endpoint, when the registry has :class:`TokenAuth`."""
        if not isinstance(self.site.gate.auth, TokenAuth):
            return NOT_FOUND
        if request.method == "GET":
            return self.site.gate.token_get(request)
        if request.method != "POST":
            return Answer.of_json(405, {"error": "method not allowed"})
        raw = request.body.read_all(64 * 1024) or b""
        try:
            form = {k: v[0] for k, v in parse_qs(raw.decode(), strict_parsing=False).items()}
        except UnicodeDecodeError:
            return Answer.of_json(400, {"error": "invalid_request"})
        return self.site.gate.token_post(form)
