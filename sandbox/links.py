"""Compute resource links: the API names resources by URL and accepts full or partial URLs."""

from __future__ import annotations

import re

COMPUTE = "https://www.googleapis.com/compute/v1/"


def url(project: str, path: str) -> str:
    """url("nemo-prod", "regions/r/instanceTemplates/t") -> the selfLink GCP would return."""
    return f"{COMPUTE}projects/{project}/{path}"


def key(project: str, reference: str) -> tuple[str, str]:
    """A full URL, `projects/p/...` or project-relative reference → (project, relative path)."""
    ref = re.sub(r"^https?://[^/]+/compute/(v1|beta|alpha)/", "", reference.strip())
    if found := re.match(r"^projects/([^/]+)/(.+)$", ref):
        return found.group(1), found.group(2)
    return project, ref.lstrip("/")


def name(reference: str) -> str:
    return reference.rstrip("/").rsplit("/", 1)[-1]


def scope_link(project: str, scope: str) -> str:
    """The `region` or `zone` field value for a resource in `regions/r` or `zones/z`."""
    return url(project, scope)
