"""Rendered page fragments kept in the shared cache: the lists and the admin home that
many admins poll every few seconds are rendered once for all of them (docs/benchmarks.md).
A fragment is one or more parts of a page (the filters, the table), rendered together.

A fragment is kept under a key naming what it shows: its name, the enterprise, the
viewer's role and time zone, and the path with its query. It must depend on nothing else
(no CSRF token, no messages, nothing else of the viewer). An entry is used while

- every generation it was rendered under is current (kernel/generations.py): every
  recorded change in the enterprise, an HSS sync's outcome and the operator's changes
  make it stale at once, so whoever changed something sees it on the next request;
- it is younger than ``PAGE_FRAGMENT_SECONDS``: what moves without a recorded change (a
  registration lapsing, the calls of the last 24 hours) shows within that time.

Once an entry is older, one request renders it again while the others still get it, so
that a lapse does not make every waiting admin render the same page at once. Without
the cache (the embedded default, or Redis not answering) every request renders.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from . import generations

log = logging.getLogger(__name__)


Parts = dict[str, str]


def cached(
    request, name: str, render: Callable[[], Parts], *, shows_devices: bool = False
) -> dict[str, SafeString]:
    """The fragment ``name`` for this request, its parts by name (HTML rendered by the
    template engine): from the cache, or ``render()``. ``shows_devices``: it shows the
    enterprise's registrations too, which lapse apart (``generations.devices``)."""
    fresh_for = settings.PAGE_FRAGMENT_SECONDS
    enterprise = request.enterprise
    if fresh_for <= 0 or not generations.enabled():
        return _safe(render())
    shows = (
        name,
        enterprise.pk,
        enterprise.created_at.timestamp(),  # a reused id never reads another's fragments
        request.user.role,
        timezone.get_current_timezone_name(),
        request.get_full_path(),
    )
    key = "fragment:" + hashlib.sha256(repr(shows).encode()).hexdigest()
    scopes: list[generations.Scope] = [enterprise.pk]
    if shows_devices:
        scopes.append(generations.devices(enterprise.pk))
    reader = generations.Reader()
    reader.fetch([key], scopes)  # the entry and the generations: one round trip
    if reader.offline:
        return _safe(render())
    current = {s: reader.generations[s] for s in (generations.OPERATOR, *scopes)}
    entry = reader.entries.get(key)
    if entry is not None:
        read_under, rendered_at, parts = entry
        if read_under == current and (
            time.time() - rendered_at < fresh_for or not _claim(key, fresh_for)
        ):
            return _safe(parts)
    started = time.time()
    parts = {part: str(html) for part, html in render().items()}
    try:
        caches[generations.CACHE].set(key, (current, started, parts), timeout=2 * fresh_for)
    except Exception as exc:  # noqa: BLE001 - not kept; the next request renders again
        log.warning("a page fragment could not be kept (%s)", exc)
    return _safe(parts)


def render(request, templates: dict[str, str], context: dict[str, Any]) -> Parts:
    """Each part's template rendered with ``context`` and the request, but without the
    context processors: what they add is the viewer's (their name, unread count, CSRF
    token) and must not be kept for others."""
    context = {**context, "request": request}
    return {part: render_to_string(template, context) for part, template in templates.items()}


def _safe(parts: Parts) -> dict[str, SafeString]:
    return {part: mark_safe(html) for part, html in parts.items()}  # noqa: S308 - rendered HTML


def _claim(key: str, seconds: int) -> bool:
    """Whether this request renders the aged entry again (no other one is at it)."""
    try:
        return bool(caches[generations.CACHE].add(f"{key}:renewing", 1, timeout=seconds))
    except Exception:  # noqa: BLE001 - the cache went away: render, as without it
        return True
