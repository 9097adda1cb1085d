"""The client's address, as the sign-in lockout and the audit log should see it."""

import ipaddress

from django.conf import settings


def client_address(request) -> str | None:
    """The address the client connected from.

    Behind GCP's load balancer REMOTE_ADDR is the load balancer, and X-Forwarded-For reads
    "<anything the client sent>, <client>, <load balancer>". Only the entries our own proxies
    appended can be trusted, so the client is counted from the right, never taken from the left.
    """
    hops = settings.GANTRY_TRUSTED_PROXY_HOPS
    remote = request.META.get("REMOTE_ADDR") or None
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) <= hops:
        return remote
    client = forwarded[-(hops + 1)]
    try:
        return str(ipaddress.ip_address(client))
    except ValueError:
        return remote
