"""HTMX polls answered without drawing the same thing twice.

A live part polls every few seconds, and between two sweeps or two deployment steps nothing it
shows has changed. `polled` names what it shows by a version (the view says what goes into
it: readings stamps, the unfinished deployments' states), and then:

- a browser that already holds that version asks with `If-None-Match` and gets a 304, after
  the permission check but before anything is read or drawn (the browser's own HTTP cache does
  this for HTMX's requests, given `Cache-Control: no-cache` and an `ETag`);
- anyone else gets the body drawn once for that version and shared through the cache.

The version also covers Gantry's own templates, so a new release of Gantry never answers 304
with a page drawn by the old one. A fragment drawn this way must be the same for everyone who
may see it (no user, no CSRF token in it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache as once
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils.cache import get_conditional_response, patch_cache_control, patch_vary_headers
from django.utils.http import quote_etag
from django.utils.safestring import mark_safe

# A drawn fragment outlives its version only by this long (seconds): versions change on every
# sweep, so old ones are never asked for again.
KEEP_SECONDS = 300


@once
def templates_version() -> str:
    """A digest of every template Gantry ships, read once per process."""
    digest = hashlib.sha256()
    for folder in settings.TEMPLATES[0]["DIRS"]:
        for path in sorted(Path(folder).rglob("*.html")):
            digest.update(path.as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def etag_for(name: str, version: str) -> str:
    text = f"{name}\0{templates_version()}\0{version}"
    return quote_etag(hashlib.sha256(text.encode()).hexdigest()[:24])


def drawn(name: str, version: str, draw: Callable[[], str]) -> tuple[str, str]:
    """(etag, body) of `version` of fragment `name`, drawn by `draw()` (without a request, so
    nothing of the person asking can get in) at most once per version across every process
    sharing the cache. Pages embed it too, so a page and its polls draw it once.

    While one request draws a new version, the others get the last one drawn, with its own
    ETag (their next poll brings the new one), so a crowd polling in step never draws at once."""
    _asked(name)
    etag, key, latest = _keys(name, version)
    body = cache.get(key)
    if body is not None:
        return etag, mark_safe(body)  # drawn by Django's autoescaping templates, never input
    last = cache.get(latest)
    if last is not None and not cache.add(f"{key}:drawing", 1, timeout=KEEP_SECONDS):
        return last[0], mark_safe(last[1])
    return etag, mark_safe(_keep(etag, key, latest, draw()))


def draw_ahead(name: str, version: str, draw: Callable[[], str]) -> bool:
    """Draw `version` of `name` now, outside any request, unless it is drawn or being drawn.
    The worker that stores a sweep calls it for what `watched` names, so the people polling get
    the new version without one of them paying for its drawing. Whether it drew."""
    etag, key, latest = _keys(name, version)
    if cache.has_key(key) or not cache.add(f"{key}:drawing", 1, timeout=KEEP_SECONDS):
        return False
    _keep(etag, key, latest, draw())
    return True


def watched(names: list[str]) -> set[str]:
    """Those of the fragments `names` someone asked for in the last KEEP_SECONDS (a page, a
    poll, a 304), in one cache round trip: what is worth drawing ahead. Drawing ahead does not
    count as asking, so a fragment nobody looks at any more stops being drawn."""
    found = cache.get_many([f"poll:{name}:asked" for name in names])
    return {name for name in names if f"poll:{name}:asked" in found}


def _asked(name: str) -> None:
    """Mark `name` as looked at; the mark lapses KEEP_SECONDS after it was set, and the next
    request after that sets it again (one SET NX, no read)."""
    cache.add(f"poll:{name}:asked", 1, timeout=KEEP_SECONDS)


def _keys(name: str, version: str) -> tuple[str, str, str]:
    etag = etag_for(name, version)
    return etag, f"poll:{name}:{etag}", f"poll:{name}:latest"


def _keep(etag: str, key: str, latest: str, body: str) -> str:
    cache.set_many({key: body, latest: (etag, body)}, timeout=KEEP_SECONDS)
    cache.delete(f"{key}:drawing")
    return body


def polled(request: HttpRequest, name: str, version: str, draw: Callable[[], str]) -> HttpResponse:
    """The poll's answer: 304 when the browser holds `version` of `name`, else its body."""
    etag = etag_for(name, version)
    response = get_conditional_response(request, etag=etag)
    if response is not None:
        _asked(name)
    else:
        etag, body = drawn(name, version, draw)  # the last version's while another draws
        response = get_conditional_response(request, etag=etag) or HttpResponse(body)
    response["ETag"] = etag
    patch_cache_control(response, private=True, no_cache=True)
    patch_vary_headers(response, ("HX-Request",))
    return response
