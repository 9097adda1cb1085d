"""`manage.py demo_build BRANCH [COMPONENT]`: what CI would do for one build, against the demo.

It pushes an image to the registry through the Registry v2 API (the sandbox here, or a real CNCF
distribution registry when Debian's `docker-registry` is installed), then posts a signed
`workflow_run` to Gantry's webhook (a live server). The test then does what the worker does
(`resolve_delivery`) and finds the release with the digest the registry holds. Bad input and any
address that is not this machine are refused before anything is sent.
"""

import io
import socket

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from deployments.models import Deployment, Release
from environments.models import Repository
from github.intake import resolve_delivery
from github.models import WebhookDelivery
from tests.contract import real_registry as real

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "demo-build-test-secret"
Outcome = WebhookDelivery.Outcome


@pytest.fixture
def demo(seed_topology, sandbox, sandbox_settings, settings, live_server):
    """Gantry on a live server taking webhooks signed with SECRET, its registry the sandbox."""
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    sandbox.webhook = f"{live_server.url}/webhooks/github/"
    return sandbox


def run(demo, *args, **options) -> str:
    out = io.StringIO()
    options = {"url": demo.webhook, "registry": demo.url, "wait": 0} | options
    call_command("demo_build", *args, stdout=out, **options)
    return out.getvalue()


def pushed_image(delivery: WebhookDelivery, component: str) -> str:
    """The image the build's commit names, as intake computes it (tag template {sha})."""
    repository = Repository.objects.get(full_name=delivery.payload["repository"]["full_name"])
    return f"{repository.registry}/{component}:{delivery.payload['workflow_run']['head_sha']}"


def test_a_develop_build_of_backend_is_pushed_signed_and_becomes_a_dev_release(demo):
    out = run(demo, "develop", "backend")

    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == Outcome.ACCEPTED, delivery.detail
    assert delivery.payload["repository"]["full_name"] == "nemo-team/nemo-api"
    run_ = delivery.payload["workflow_run"]
    assert (run_["head_branch"], run_["conclusion"], run_["actor"]["login"]) == (
        "develop",
        "success",
        "dev-alice",
    )
    found = demo.world.registry.resolve(pushed_image(delivery, "backend"))
    assert found is not None, "the image is not in the sandbox registry"
    digest = found[0]
    assert digest in out and delivery.guid in out
    assert f"{demo.webhook.removesuffix('/webhooks/github/')}/deliveries/" in out

    release = resolve_delivery(delivery.pk).releases.get()  # what the worker's task runs
    assert (str(release.component), release.digest, release.author) == (
        "dev/backend",
        digest,
        "dev-alice",
    )
    assert release.deployments.get().state == Deployment.State.QUEUED


def test_a_second_build_is_a_fresh_commit(demo):
    run(demo, "develop", "backend")
    run(demo, "develop", "backend")
    shas = {d.payload["workflow_run"]["head_sha"] for d in WebhookDelivery.objects.all()}
    assert len(shas) == 2
    assert all(len(sha) == 40 for sha in shas)


def test_gantrys_address_alone_is_taken_as_its_webhook(demo):
    out = run(demo, "develop", "backend", url=demo.webhook.removesuffix("webhooks/github/"))
    assert WebhookDelivery.objects.get().outcome == Outcome.ACCEPTED
    assert f"{demo.webhook.removesuffix('/webhooks/github/')}/deliveries/" in out


def test_without_a_component_every_repository_deploying_there_builds(demo):
    """develop → dev: one push and one webhook per repository (nemo-ai, nemo-api, nemo-web)."""
    run(demo, "develop")
    deliveries = WebhookDelivery.objects.order_by("pk")
    repositories = [d.payload["repository"]["full_name"] for d in deliveries]
    assert repositories == ["nemo-team/nemo-ai", "nemo-team/nemo-api", "nemo-team/nemo-web"]
    assert {d.outcome for d in deliveries} == {Outcome.ACCEPTED}
    for delivery, component in zip(deliveries, ["ai-server", "backend", "frontend"], strict=True):
        assert demo.world.registry.resolve(pushed_image(delivery, component)) is not None
        assert resolve_delivery(delivery.pk).outcome == Outcome.RELEASED
    assert sorted(str(r.component) for r in Release.objects.all()) == [
        "dev/ai-server",
        "dev/backend",
        "dev/frontend",
    ]


def test_a_main_build_through_registry_token_auth_waits_for_approval(demo):
    """With the sandbox registry asking for Bearer tokens (as Artifact Registry does), the push
    follows the 401 challenge to the token realm, as docker does; main → prod waits."""
    assert httpx.post(f"{demo.url}/_sandbox/registry", json={"auth": True}).status_code == 200
    run(demo, "main", "frontend", actor="dev-bob")

    delivery = WebhookDelivery.objects.get()
    assert delivery.payload["workflow_run"]["actor"]["login"] == "dev-bob"
    assert demo.world.registry.token_requests >= 1
    found = demo.world.registry.resolve(pushed_image(delivery, "frontend"))
    assert found is not None

    demo.world.registry.auth = False  # Gantry's own registry reads are not this test's subject
    release = resolve_delivery(delivery.pk).releases.get()
    assert (str(release.component), release.digest) == ("prod/frontend", found[0])
    assert release.deployments.get().state == Deployment.State.PENDING_APPROVAL


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["feature/login"], ["develop", "main"]),
        (["develop", "nope"], ["ai-server", "backend", "frontend"]),
        (["main", "mysql"], ["ai-server", "backend", "frontend"]),  # monitored, never built
    ],
)
def test_an_unknown_branch_or_component_names_the_choices_and_sends_nothing(demo, args, names):
    before = sorted(demo.world.registry.repositories)
    with pytest.raises(CommandError) as refused:
        run(demo, *args)
    for name in names:
        assert name in str(refused.value)
    assert not WebhookDelivery.objects.exists()
    assert sorted(demo.world.registry.repositories) == before


@pytest.fixture
def no_connections(monkeypatch):
    """Every name lookup and connection attempt, recorded and refused."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the test allows no connection here")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.mark.parametrize(
    "option",
    [
        {"url": "http://gantry.example.com/webhooks/github/"},
        {"url": "https://127.0.0.2:8000/webhooks/github/"},  # loopback, but not a literal it allows
        {"url": "http://127.0.0.1.nip.io:8000/webhooks/github/"},
        {"url": "http://localhost@gantry.example.com/webhooks/github/"},
        {"url": "ftp://127.0.0.1/webhooks/github/"},
        {"registry": "https://asia-northeast3-docker.pkg.dev"},
        {"registry": "http://[2001:db8::1]:5000"},
    ],
)
def test_an_address_off_this_machine_is_refused_before_any_connection(
    seed_topology, settings, option, no_connections
):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    options = {"url": "http://127.0.0.1:8000/webhooks/github/", "registry": "http://[::1]:8900"}
    with pytest.raises(CommandError, match=r"only talks to this machine") as refused:
        call_command("demo_build", "develop", "backend", stdout=io.StringIO(), **options | option)
    assert "127.0.0.1, ::1 or localhost" in str(refused.value)
    assert no_connections == []
    assert not WebhookDelivery.objects.exists()


def test_a_secret_gantry_does_not_share_is_a_clear_error(demo, settings):
    """Gantry without a secret refuses every delivery; the command falls back to the demo's
    secret, is answered 401 and says where the secret comes from."""
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match=r"401") as refused:
        run(demo, "develop", "backend")
    assert "GANTRY_GITHUB_WEBHOOK_SECRET" in str(refused.value)
    assert "demo-webhook-secret" in str(refused.value)


def test_gantry_not_running_is_a_clear_error(demo):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(CommandError, match=r"make demo"):
        run(demo, "develop", "backend", url=f"http://127.0.0.1:{port}/webhooks/github/")
    assert not WebhookDelivery.objects.exists()


def test_the_push_is_one_a_real_registry_takes(seed_topology, settings, live_server, tmp_path):
    """Against CNCF distribution (Debian's docker-registry): blobs first, then the manifest,
    which a real registry refuses without them. Gantry then reads the same digest there."""
    if not real.available():
        pytest.skip(f"{real.BINARY} not installed (`make test` installs Debian's docker-registry)")
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    with real.running(tmp_path) as url:
        settings.GANTRY_REGISTRY_URL = url
        out = io.StringIO()
        call_command(
            "demo_build",
            "develop",
            "backend",
            url=f"{live_server.url}/webhooks/github/",
            registry=url,
            wait=0,
            stdout=out,
        )
        delivery = WebhookDelivery.objects.get()
        sha = delivery.payload["workflow_run"]["head_sha"]
        head = httpx.head(
            f"{url}/v2/nemo-dev/registry/backend/manifests/{sha}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        assert head.status_code == 200
        digest = head.headers["Docker-Content-Digest"]
        assert digest in out.getvalue()
        release = resolve_delivery(delivery.pk).releases.get()
    assert release.digest == digest


def test_it_waits_for_the_worker_and_links_the_releases(demo, monkeypatch):
    """With --wait, the command reads the deliveries back until the worker has resolved them;
    here each pause of its polling is when "the worker" (resolve_delivery) runs."""
    from demo.management.commands import demo_build

    def worker_runs(seconds):
        for delivery in WebhookDelivery.objects.filter(outcome=Outcome.ACCEPTED):
            resolve_delivery(delivery.pk)

    monkeypatch.setattr(demo_build, "pause", worker_runs)
    out = run(demo, "main", "backend", wait=30)
    release = Release.objects.get()
    assert f"release prod/backend {release.version} {release.digest}" in out
    assert f"/releases/{release.pk}/" in out
    assert "pending_approval" in out
    assert "sign in as approver" in out
