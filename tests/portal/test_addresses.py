"""Whose address a request is: the sign-in lockout and the audit log must not take a forged one.

Addresses here are strings in headers only (RFC 5737 documentation ranges for clients, GCP's
load-balancer ranges for the proxies); nothing connects anywhere.
"""

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from portal.addresses import client_address

GCP = ["35.191.0.0/16", "130.211.0.0/22"]


def request_from(rf, remote, forwarded=None):
    request = rf.get("/", REMOTE_ADDR=remote)
    if forwarded is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    return request


@pytest.mark.parametrize("trusted", [[], GCP], ids=["no-proxies", "gcp"])
def test_a_peer_outside_the_trusted_proxies_cannot_forward_an_address(settings, rf, trusted):
    settings.GANTRY_TRUSTED_PROXIES = trusted
    forged = request_from(rf, "198.51.100.20", "192.0.2.1, 203.0.113.7, 35.191.0.1")
    assert client_address(forged) == "198.51.100.20"


def test_without_trusted_proxies_even_the_load_balancer_forwards_nothing(settings, rf):
    settings.GANTRY_TRUSTED_PROXIES = []
    assert client_address(request_from(rf, "35.191.4.4", "203.0.113.7")) == "35.191.4.4"


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "client"),
    [
        # GCP's load balancer: "<anything the client sent>, <client>, <load balancer>".
        (
            [*GCP, "34.120.0.1/32"],
            "35.191.8.9",
            "192.0.2.66, 203.0.113.7, 34.120.0.1",
            "203.0.113.7",
        ),
        # An internal proxy behind the load balancer: both are skipped.
        ([*GCP, "10.0.0.0/8"], "10.0.0.5", "192.0.2.66, 203.0.113.7, 130.211.1.2", "203.0.113.7"),
        # The client's own entries to the left of the first untrusted one are never read.
        (GCP, "35.191.8.9", "35.191.0.1, 203.0.113.7", "203.0.113.7"),
        # IPv6, and a proxy that reaches Gantry over an IPv4-mapped address.
        (["2001:db8:1::/48"], "2001:db8:1::5", "2001:db8:ffff::9", "2001:db8:ffff::9"),
        (GCP, "::ffff:35.191.0.2", "203.0.113.9", "203.0.113.9"),
    ],
    ids=["gcp", "internal-hop", "left-ignored", "ipv6", "ipv4-mapped-peer"],
)
def test_the_client_is_the_first_untrusted_address_from_the_right(
    settings, rf, trusted, remote, forwarded, client
):
    settings.GANTRY_TRUSTED_PROXIES = trusted
    assert client_address(request_from(rf, remote, forwarded)) == client


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        (None, "35.191.0.2"),  # a health check: the proxy is the client
        ("", "35.191.0.2"),
        ("35.191.0.1", "35.191.0.1"),  # only proxies: the furthest one
        ("203.0.113.7, not-an-address, 35.191.0.1", "35.191.0.1"),  # never past a bad entry
        ("203.0.113.7:4711", "35.191.0.2"),
    ],
)
def test_a_missing_or_malformed_header_stops_at_the_nearest_proxy(settings, rf, forwarded, client):
    settings.GANTRY_TRUSTED_PROXIES = GCP
    assert client_address(request_from(rf, "35.191.0.2", forwarded)) == client


def test_a_peer_that_is_not_an_address_gives_none(settings, rf):
    settings.GANTRY_TRUSTED_PROXIES = GCP
    assert client_address(request_from(rf, "", "203.0.113.7")) is None


@pytest.mark.django_db
def test_a_forged_x_forwarded_for_does_not_escape_the_sign_in_lockout(settings, make_user):
    """The lockout (django-axes) and the audit log count the same address, client_address."""
    from axes.models import AccessAttempt

    settings.GANTRY_TRUSTED_PROXIES = GCP
    make_user("viewer", "alice", password="correct horse battery")
    direct = Client(REMOTE_ADDR="198.51.100.20")
    for n in range(django_settings.AXES_FAILURE_LIMIT):
        direct.post(
            reverse("login"),
            {"username": "alice", "password": "guess-123"},
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n + 1}, 35.191.0.1",  # posing as the LB
        )
    locked = direct.post(
        reverse("login"),
        {"username": "alice", "password": "correct horse battery"},
        HTTP_X_FORWARDED_FOR="203.0.113.99, 35.191.0.1",
    )
    assert locked.status_code == 429
    [attempt] = AccessAttempt.objects.all()
    assert attempt.ip_address == "198.51.100.20"
    failed = AuditEvent.objects.filter(action="auth.login_failed")
    assert set(failed.values_list("remote_addr", flat=True)) == {"198.51.100.20"}

    # Through the load balancer, the client it names is counted, and another one still signs in.
    via_lb = Client(REMOTE_ADDR="35.191.3.3")
    ok = via_lb.post(
        reverse("login"),
        {"username": "alice", "password": "correct horse battery"},
        HTTP_X_FORWARDED_FOR="192.0.2.50, 203.0.113.8",
    )
    assert ok.status_code == 302
    assert AuditEvent.objects.get(action="auth.login").remote_addr == "203.0.113.8"


def _settings_process(**environment) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_TRUSTED_PROXY")}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from portal import settings; print(settings.GANTRY_TRUSTED_PROXIES)",
        ],
        env={**env, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_trusted_proxies_are_read_from_the_environment():
    done = _settings_process(GANTRY_TRUSTED_PROXIES=" 35.191.0.0/16, 130.211.0.0/22 ,")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['35.191.0.0/16', '130.211.0.0/22']"
    assert _settings_process().stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("environment", "complaint"),
    [
        ({"GANTRY_TRUSTED_PROXIES": "35.191.0.0/16,load-balancer"}, "'load-balancer'"),
        ({"GANTRY_TRUSTED_PROXIES": "35.191.0.1/16"}, "'35.191.0.1/16'"),
        ({"GANTRY_TRUSTED_PROXY_HOPS": "1"}, "GANTRY_TRUSTED_PROXY_HOPS is replaced by"),
    ],
)
def test_bad_proxy_settings_refuse_to_start_with_the_reason(environment, complaint):
    done = _settings_process(**environment)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and complaint in done.stderr
