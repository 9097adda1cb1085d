"""Names inside Compute Engine resource URLs, as the API writes them. No client libraries here,
so the dashboards and the strategies can read names without importing google.cloud."""


def short(url: str) -> str:
    """The last path segment: '…/instanceTemplates/t-v2' → 't-v2'."""
    return url.rsplit("/", 1)[-1] if url else ""


def zone_of(instance_url: str) -> str:
    """The zone in an instance URL: '…/zones/asia-northeast3-a/instances/vm' → its zone."""
    return instance_url.split("/zones/")[1].split("/")[0] if "/zones/" in instance_url else ""


def metadata_value(instance, key: str) -> str:
    """One key of an instance's metadata, '' when absent."""
    return next((item.value for item in instance.metadata.items if item.key == key), "")
