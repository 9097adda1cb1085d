"""Where a notification may be sent, and sending it there.

A channel URL is typed by an admin, but the POST comes from a worker inside Gantry's network,
which can reach the metadata server, the database and the sandbox. So a channel may reach only
public addresses over https://; GANTRY_NOTIFY_ALLOWED_NETWORKS names the networks (an internal
relay) it may reach besides, with plain http:// too. The rule is checked when a channel is saved
and again before each POST, which then goes to the very address that was checked: no second DNS
lookup that a rebinding name could answer differently. The name still travels as the Host
header, the TLS server name and the name the certificate must carry.
"""

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from django.conf import settings

from portal.addresses import Address, in_networks, parse_address


class Refused(ValueError):
    """A URL the rules do not let a channel reach; the message says why, for the admin."""


class Unresolved(OSError):
    """The name did not resolve (now): worth another try later, not a verdict on the URL."""


@dataclass(frozen=True)
class Destination:
    """A checked channel URL: the address to connect to, and the name to present there."""

    url: httpx.URL
    address: Address

    @property
    def target(self) -> httpx.URL:
        return self.url.copy_with(host=str(self.address))

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii").rpartition("@")[2]

    @property
    def server_name(self) -> str | None:
        """The TLS server name: the host name, never an address (RFC 6066)."""
        return None if parse_address(self.url.host) else self.url.raw_host.decode("ascii")


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _reaches(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries through NAT64 or 6to4, else the address itself."""
    if address.version == 6:
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def _kind(address: Address) -> str:
    for kind in ("loopback", "link-local", "multicast", "unspecified", "private", "reserved"):
        if getattr(address, f"is_{kind.replace('-', '_')}"):
            return kind
    return "non-public"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to, in the resolver's order (a literal is itself)."""
    literal = parse_address(host)
    if literal is not None:
        return [literal]
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"{host} cannot be resolved ({exc})") from None
    addresses = []
    for *_, sockaddr in answers:
        address = parse_address(str(sockaddr[0]).split("%")[0])
        if address is not None and address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Unresolved(f"{host} cannot be resolved (no addresses)")
    return addresses


def check(url: str) -> Destination:
    """The URL's destination, if a channel may reach it: https:// to addresses that are all
    public or in GANTRY_NOTIFY_ALLOWED_NETWORKS, or http:// to addresses all in those networks.
    Raises Refused saying why, or Unresolved."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise Refused(f"not a URL Gantry can send to ({exc})") from None
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise Refused("only https:// URLs can be channels")
    allowed = settings.GANTRY_NOTIFY_ALLOWED_NETWORKS
    name = parsed.raw_host.decode("ascii")
    addresses = resolve(name, parsed.port or (443 if parsed.scheme == "https" else 80))
    for address in addresses:
        if in_networks(address, allowed):
            continue
        reached = _reaches(address)
        if reached.is_global and not reached.is_multicast:
            if parsed.scheme == "http":
                raise Refused(
                    "plain http:// is allowed only to GANTRY_NOTIFY_ALLOWED_NETWORKS (an internal "
                    "relay); use https://"
                )
            continue
        kind = _kind(reached)
        what = [] if parse_address(name) else [f"{name} resolves to {address}"]
        if reached != address:
            what.append(f"{address} reaches {reached}" if not what else f"which reaches {reached}")
        where = ", ".join(what) + "," if what else f"{address} is"
        raise Refused(
            f"{where} {_article(kind)} {kind} address; channels reach public addresses only, "
            "unless GANTRY_NOTIFY_ALLOWED_NETWORKS includes it"
        )
    return Destination(url=parsed, address=addresses[0])


@contextmanager
def post(destination: Destination, *, json, headers: dict, timeout: float) -> Iterator:
    """POST to the checked address; yields the response with its body unread, since Gantry
    keeps only the status. A fresh client each time: a pooled connection is keyed by address
    alone and could carry one name's request over a connection verified for another. Redirects
    are never followed, and proxy variables in the environment are not used (the explicit
    transport turns them off), so the checked address is the one connected to."""
    extensions = {}
    if destination.url.scheme == "https" and destination.server_name:
        extensions["sni_hostname"] = destination.server_name
    with (
        httpx.Client(
            transport=httpx.HTTPTransport(),
            follow_redirects=False,
            headers={"User-Agent": "Gantry notifications"},
            timeout=timeout,
        ) as client,
        client.stream(
            "POST",
            destination.target,
            json=json,
            headers={**headers, "Host": destination.host_header},
            extensions=extensions,
        ) as response,
    ):
        yield response


def status_line(response: httpx.Response) -> str:
    """'HTTP 500 Internal Server Error': the code and its standard phrase, never the receiver's
    own words (its phrase or body could carry anything from wherever the URL points)."""
    code = response.status_code
    return f"HTTP {code} {httpx.codes.get_reason_phrase(code)}".rstrip()
