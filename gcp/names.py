"""Names inside Compute Engine resource URLs, as the API writes them."""


def short(url: str) -> str:
    """The last path segment: '…/instanceTemplates/t-v2' → 't-v2'."""
    return url.rsplit("/", 1)[-1] if url else ""


def zone_of(instance_url: str) -> str:
    """The zone in an instance URL: '…/zones/asia-northeast3-a/instances/vm' → its zone."""
    return instance_url.split("/zones/")[1].split("/")[0] if "/zones/" in instance_url else ""


def region_of(url: str) -> str | None:
    """The region of a regional resource URL (a template, say), or None for a global one."""
    parts = url.split("/")
    return parts[parts.index("regions") + 1] if "regions" in parts else None
