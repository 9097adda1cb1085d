"""The client's address, as the sign-in lockout (django-axes) and the audit log should see it."""

import functools
import ipaddress
from collections.abc import Iterable

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> Address | None:
    """An address, IPv4-mapped IPv6 as plain IPv4 (so one network list covers both); None for
    anything else."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


@functools.lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


def in_networks(address: Address, cidrs: Iterable[str]) -> bool:
    return any(address in network for network in _networks(tuple(cidrs)))


def client_address(request) -> str | None:
    """The address of whoever sent the request, as far as Gantry's own proxies vouch for it.

    X-Forwarded-For is read only when the connection comes from GANTRY_TRUSTED_PROXIES (empty:
    never). Each proxy appends the address it was reached from, so the header is walked from
    the right, past every trusted proxy, to the first address that is not one: the client.
    Entries further left are the client's own words and never read; a malformed entry stops
    the walk at the proxy that passed it on. None when the peer is not an address at all.
    """
    trusted = settings.GANTRY_TRUSTED_PROXIES
    current = parse_address(request.META.get("REMOTE_ADDR") or "")
    if current is None:
        return None
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    while hops and in_networks(current, trusted):
        previous = parse_address(hops.pop())
        if previous is None:
            break
        current = previous
    return str(current)
