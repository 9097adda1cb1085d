"""Channels cannot be aimed at Gantry's own network: checked when saved and again for each POST.

Host names resolve through the stub resolver (conftest `dns`); public-looking answers are never
connected to (the socket guard fails the test if anything tries). Only the loopback receivers
started here are ever reached.
"""

import datetime
import ssl
import threading

import pytest
from django.core.exceptions import ValidationError

from deployments.models import Deployment
from environments.models import Environment
from notifications.models import Channel, Notification
from notifications.tasks import deliver

from .conftest import PUBLIC, SECRET_PATH, Receiver

S = Deployment.State
pytestmark = pytest.mark.django_db


def channel_at(url, name="hook"):
    return Channel(
        environment=Environment.objects.get(name="prod"), name=name, kind="webhook", url=url
    )


def fail_a_deployment(make_deployment):
    make_deployment("prod", "backend", state=S.PROMOTING).transition(S.FAILED, reason="x")
    return Notification.objects.get()


def run(notification):
    deliver.apply((notification.pk,))
    notification.refresh_from_db()
    return notification


@pytest.mark.parametrize(
    ("url", "answer", "complaint"),
    [
        ("https://127.0.0.1/hook", None, "127.0.0.1 is a loopback address"),
        ("https://[::1]/hook", None, "::1 is a loopback address"),
        ("https://[::ffff:127.0.0.1]/hook", None, "127.0.0.1 is a loopback address"),
        ("https://relay.corp.example/hook", ["10.1.2.3"], "10.1.2.3, a private address"),
        ("https://[fd00::1]/hook", None, "fd00::1 is a private address"),
        ("https://0.0.0.0/hook", None, "0.0.0.0 is an unspecified address"),
        # IPv4 carried in IPv6 by NAT64 and 6to4 is judged as the IPv4 it reaches. Addresses
        # off this machine come from the stub resolver: no test names one as a place to go.
        # Link-local (where a cloud's metadata server answers) is refused whichever family.
        ("https://nat64.corp.example/x", ["64:ff9b::7f00:1"], "127.0.0.1, a loopback"),
        ("https://[2002:a00:1::]/x", None, "10.0.0.1, a private address"),
        (
            "https://meta.corp.example/computeMetadata/v1/",
            ["fe80::1"],
            "meta.corp.example resolves to fe80::1, a link-local address",
        ),
        (
            "https://hooks.corp.example/x",
            [PUBLIC, "10.0.0.8"],
            "hooks.corp.example resolves to 10.0.0.8, a private address",
        ),
        ("https://localhost/x", None, "a loopback address"),
        ("http://hooks.example.com/x", None, "plain http:// is allowed only"),
        ("https://nowhere.example.com/x", None, "nowhere.example.com cannot be resolved"),
    ],
)
def test_channels_reach_only_public_hosts_over_https(
    seed_topology, settings, dns, url, answer, complaint
):
    settings.GANTRY_NOTIFY_ALLOWED_NETWORKS = []
    if answer:
        dns.answers[urlhost(url)] = answer
    with pytest.raises(ValidationError) as refused:
        channel_at(url).full_clean()
    [message] = refused.value.message_dict["url"]
    assert complaint in message
    assert Channel.objects.count() == 0


def urlhost(url):
    return url.split("/")[2]


def test_https_to_a_public_host_is_accepted_without_connecting(seed_topology, settings, dns):
    settings.GANTRY_NOTIFY_ALLOWED_NETWORKS = []
    channel_at("https://hooks.example.com/x").full_clean()
    assert dns.count("hooks.example.com") == 1  # resolved to check it, never connected to


def test_allowed_networks_admit_an_internal_relay_even_over_http(seed_topology, settings, dns):
    settings.GANTRY_NOTIFY_ALLOWED_NETWORKS = ["10.8.0.0/24", "127.0.0.0/8"]
    dns.answers["relay.corp.example"] = ["10.8.0.5"]
    channel_at("http://relay.corp.example/hook").full_clean()
    channel_at("https://127.0.0.2/hook").full_clean()  # a literal in an allowed network
    dns.answers["relay.corp.example"] = ["10.8.0.5", "10.9.0.5"]
    with pytest.raises(ValidationError, match=r"resolves to 10\.9\.0\.5, a private address"):
        channel_at("http://relay.corp.example/hook").full_clean()
    with pytest.raises(ValidationError, match=r"plain http:// is allowed only"):
        channel_at("http://hooks.example.com/hook").full_clean()


@pytest.fixture
def relay(seed_topology, settings, receiver, dns):
    """A channel to relay.corp.example, which resolved to the (allowed) loopback receiver when
    it was saved."""
    dns.answers["relay.corp.example"] = ["127.0.0.1"]
    port = receiver.server_address[1]
    channel = channel_at(f"http://relay.corp.example:{port}{SECRET_PATH}")
    channel.full_clean()
    channel.save()
    return channel


def test_an_address_no_longer_allowed_at_send_time_is_refused_before_connecting(
    relay, receiver, settings, make_deployment, dns
):
    settings.GANTRY_NOTIFY_ALLOWED_NETWORKS = []  # the relay's network is no longer allowed
    notification = run(fail_a_deployment(make_deployment))
    assert (notification.state, notification.attempts) == (Notification.State.FAILED, 1)
    assert notification.last_error.startswith(
        "refused: relay.corp.example resolves to 127.0.0.1, a loopback address"
    )
    assert receiver.requests == []
    relay.refresh_from_db()
    assert relay.consecutive_failures == 1


def test_a_name_that_now_resolves_privately_is_refused_before_connecting(
    seed_topology, settings, make_deployment, dns
):
    settings.GANTRY_NOTIFY_ALLOWED_NETWORKS = []
    channel = channel_at("https://hooks.example.com/x")
    channel.full_clean()  # public when saved
    channel.save()
    dns.answers["hooks.example.com"] = ["10.20.30.40"]  # then rebound
    notification = run(fail_a_deployment(make_deployment))
    assert notification.state == Notification.State.FAILED
    assert "resolves to 10.20.30.40, a private address" in notification.last_error
    assert dns.refused == []  # nothing tried to connect, to either address


def test_the_name_is_resolved_once_and_the_post_goes_to_the_checked_address(
    relay, receiver, make_deployment, dns
):
    answers = iter([["127.0.0.1"]])
    dns.answers["relay.corp.example"] = lambda: next(answers, ["127.0.0.2"])  # a rebinding
    notification = run(fail_a_deployment(make_deployment))
    assert notification.state == Notification.State.SENT
    assert dns.count("relay.corp.example") == 2  # once when saved, once to send
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"relay.corp.example:{receiver.server_address[1]}"
    assert request["path"] == SECRET_PATH


def test_a_redirect_is_never_followed(relay, receiver, make_deployment):
    receiver.answer((302, "", 0, {"Location": f"{receiver.base}/elsewhere"}))
    notification = run(fail_a_deployment(make_deployment))
    assert (notification.state, notification.last_error) == (
        Notification.State.FAILED,
        "HTTP 302 Found",
    )
    assert len(receiver.requests) == 1


def test_an_answer_is_kept_as_its_status_and_standard_reason_only(
    relay, receiver, make_deployment, settings
):
    settings.GANTRY_NOTIFY_MAX_ATTEMPTS = 2
    body = "Traceback: db password=hunter2 at 10.0.0.3"
    receiver.answer((403, body, 0, {":reason": "Go away hunter2"}))
    first = run(fail_a_deployment(make_deployment))
    assert first.last_error == "HTTP 403 Forbidden"
    receiver.always(500, body)
    make_deployment("prod", "backend", state=S.PROMOTING).transition(S.FAILED, reason="y")
    second = run(Notification.objects.get(state=Notification.State.PENDING))
    assert second.last_error == "gave up after 2 attempts: HTTP 500 Internal Server Error"
    from audit.models import AuditEvent

    stored = str(list(Notification.objects.values())) + str(list(AuditEvent.objects.values()))
    assert "hunter2" not in stored


# --- https: the checked address, with the name for SNI and the certificate ------------------


def self_signed(tmp_path, name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch):
    """tls_receiver(cert_name) -> a loopback HTTPS receiver whose certificate names cert_name,
    trusted by Gantry's client (SSL_CERT_FILE); `.sni` lists the server names clients sent."""
    servers = []

    def start(cert_name):
        cert_file, key_file = self_signed(tmp_path, cert_name)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        server = Receiver()
        server.sni = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.sni_callback = lambda sock, name, ctx: server.sni.append(name)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_https_goes_to_the_checked_address_with_the_name_for_sni_and_certificate(
    seed_topology, tls_receiver, make_deployment, dns
):
    server = tls_receiver("relay.corp.example")
    port = server.server_address[1]
    dns.answers["relay.corp.example"] = ["127.0.0.1"]
    channel = channel_at(f"https://relay.corp.example:{port}{SECRET_PATH}")
    channel.full_clean()
    channel.save()
    notification = run(fail_a_deployment(make_deployment))
    assert notification.state == Notification.State.SENT, notification.last_error
    assert server.sni == ["relay.corp.example"]
    [request] = server.requests
    assert request["headers"]["Host"] == f"relay.corp.example:{port}"


def test_https_to_a_certificate_for_another_name_sends_nothing(
    seed_topology, tls_receiver, make_deployment, dns, settings
):
    settings.GANTRY_NOTIFY_MAX_ATTEMPTS = 1
    server = tls_receiver("someone-else.example")
    dns.answers["relay.corp.example"] = ["127.0.0.1"]
    channel = channel_at(f"https://relay.corp.example:{server.server_address[1]}/x")
    channel.full_clean()
    channel.save()
    notification = run(fail_a_deployment(make_deployment))
    assert notification.state == Notification.State.FAILED
    assert "certificate verify failed" in notification.last_error
    assert server.requests == []


def test_the_migration_cuts_stored_answers_to_their_status(make_channel, make_deployment):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("notifications.migrations.0002_last_error_status_only")
    channel = make_channel("webhook")
    for _ in range(5):
        make_deployment("prod", "backend", state=S.PROMOTING).transition(S.FAILED, reason="x")
    kept = {
        'HTTP 404: {"message": "Unknown Webhook", "token": "abc"}': "HTTP 404 Not Found",
        "gave up after 6 attempts: HTTP 500: db password=hunter2": (
            "gave up after 6 attempts: HTTP 500 Internal Server Error"
        ),
        "HTTP 599: odd\nsecond line": "HTTP 599",
        "gave up after 2 attempts: ConnectError: [Errno 111] Connection refused": (
            "gave up after 2 attempts: ConnectError: [Errno 111] Connection refused"
        ),
        "": "",
    }
    rows = list(Notification.objects.filter(channel=channel).order_by("pk"))
    for row, before in zip(rows, kept, strict=True):
        Notification.objects.filter(pk=row.pk).update(last_error=before)
    migration.cut_answers(apps, None)
    after = dict(Notification.objects.order_by("pk").values_list("pk", "last_error"))
    assert [after[row.pk] for row in rows] == list(kept.values())
    assert Notification.objects.count() == 5
