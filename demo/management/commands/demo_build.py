"""`python manage.py demo_build BRANCH [COMPONENT]`: do what CI does for one build, for the demo.

For each repository it builds (the one that builds COMPONENT; without it, every repository with
a component in the environment BRANCH deploys to), it makes a fresh commit SHA and:

1. pushes an image for each of the repository's components there, as `docker push` does through
   the Registry v2 API: the config and layer blobs (HEAD, then a monolithic POST + PUT ?digest=),
   then the Docker v2 schema 2 manifest, PUT at the tag intake looks for (`github.intake.image_for`:
   the repository's registry, the component's image, its tag template). A 401 challenge is
   followed to the Bearer token realm with Basic `oauth2accesstoken:<any>` (the sandbox's stand-in
   for Artifact Registry's); a registry without blob uploads (the sandbox keeps manifests only)
   gets the manifest alone;
2. posts a completed, successful `workflow_run` (event push, by `--actor`, default `dev-alice`
   from the topology's people) to Gantry's webhook, signed with GANTRY_GITHUB_WEBHOOK_SECRET, or
   the demo's `demo-webhook-secret` when that is not set (the Makefile's default);
3. waits up to `--wait` seconds for the worker to resolve the delivery and prints the releases
   and where to watch them.

A demo command: it talks only to 127.0.0.1, ::1 or localhost (checked on the literal host of
every URL, before any connection), never through a proxy and never following a redirect.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from environments.models import Component, Environment, Repository
from gcp.registry import parse_challenges
from gcp.types import ImageName
from github.intake import image_for
from github.models import WebhookDelivery
from github.payloads import WorkflowRun, sign

LOOPBACK = ("127.0.0.1", "::1", "localhost")
DEMO_SECRET = "demo-webhook-secret"  # the Makefile's default for GANTRY_GITHUB_WEBHOOK_SECRET
TOKEN_USER = "oauth2accesstoken"  # Artifact Registry's user for an access token
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
TIMEOUT = 10.0
pause = time.sleep  # between looks at the deliveries (tests stand a worker in here)


def loopback(option: str, url: str) -> str:
    """`url` itself, if it is http(s) to this machine; else CommandError.
    The host is read as written and never looked up."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise CommandError(f"{option} {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or host not in LOOPBACK:
        why = f"scheme {parts.scheme!r}" if parts.scheme not in ("http", "https") else "host"
        raise CommandError(
            f"demo_build only talks to this machine: {option} {url!r} ({why} "
            f"{host or 'missing'!r}) is not http(s) to 127.0.0.1, ::1 or localhost. It is a "
            "demo command: point it at the demo's Gantry and sandbox (`make demo`). Nothing "
            "was sent."
        )
    return url


@dataclass
class Build:
    repository: Repository
    components: list[Component]


def plan(branch: str, component: str | None) -> tuple[Environment, list[Build]]:
    """The environment BRANCH deploys to and the builds to make, or CommandError naming the
    choices."""
    branches = sorted(set(Environment.objects.exclude(branch="").values_list("branch", flat=True)))
    if not branches:
        raise CommandError(
            "no branch deploys anywhere: load the topology first "
            "(`python manage.py load_topology`; `make demo` does)"
        )
    environment = Environment.objects.filter(branch=branch).first()
    if environment is None:
        raise CommandError(
            f"branch {branch!r} deploys to no environment: choose one of {', '.join(branches)}"
        )
    deployable = list(environment.components.exclude(deploy_kind="none"))
    builds = []
    for repository in Repository.objects.all():
        built = [c for c in deployable if c.name in repository.components]
        if built:
            builds.append(Build(repository, built))
    names = sorted(c.name for build in builds for c in build.components)
    if not builds:
        raise CommandError(f"no repository in the topology builds a component of {environment}")
    if component is not None:
        builds = [b for b in builds if component in {c.name for c in b.components}]
        if not builds:
            raise CommandError(
                f"component {component!r} is not built for {environment.name} (branch "
                f"{branch}): choose one of {', '.join(names)}"
            )
    return environment, builds


def workflow_run(build: Build, branch: str, sha: str, actor: str) -> dict:
    """A completed, successful `workflow_run` delivery as GitHub sends it (the fields Gantry
    reads, in GitHub's shape; see tests/github/payloads.py)."""
    repository = build.repository.full_name
    run_number = int(time.time())
    run_id = 9_000_000_000 + secrets.randbelow(10**9)
    workflow = (build.repository.workflows or ["build"])[0]
    events = build.repository.events or ["push"]
    event = "push" if "push" in events else events[0]
    title = f"Demo build of {', '.join(c.name for c in build.components)} (manage.py demo_build)"
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id,
            "name": workflow,
            "head_branch": branch,
            "head_sha": sha,
            "event": event,
            "head_repository": {"full_name": repository},
            "run_number": run_number,
            "run_attempt": 1,
            "status": "completed",
            "conclusion": "success",
            "html_url": f"https://github.com/{repository}/actions/runs/{run_id}",
            "actor": {"login": actor},
            "triggering_actor": {"login": actor},
            "head_commit": {
                "id": sha,
                "message": title,
                "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            "display_title": title,
        },
        "workflow": {"name": workflow},
        "repository": {"full_name": repository},
        "sender": {"login": actor},
    }


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_parts(label: str) -> tuple[bytes, bytes]:
    """(config blob, gzipped layer blob) of a one-file linux/amd64 image labelled `label`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        text = f"{label}\n".encode()
        info = tarfile.TarInfo("gantry-demo-build.txt")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": datetime.now(UTC).isoformat(),
        "config": {"Cmd": ["/bin/true"], "Labels": {"gantry.demo.build": label}},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(raw.getvalue())]},
    }
    return json.dumps(config).encode(), layer


class RegistryRefused(Exception):
    pass


class Pusher:
    """Pushes images to the Registry v2 API at `base` as `docker push` would."""

    def __init__(self, http: httpx.Client, base: str):
        self.http, self.base = http, base
        self.tokens: dict[str, str] = {}  # repository → Bearer token for pull,push
        self.blob_uploads = True

    def _send(self, name: str, method: str, url: str, **kwargs) -> httpx.Response:
        """One call; a 401 Bearer challenge is answered once with a token from its realm."""
        url = loopback("the registry's address", url)
        headers = dict(kwargs.pop("headers", {}))
        if name in self.tokens:
            headers["Authorization"] = f"Bearer {self.tokens[name]}"
        response = self.http.request(method, url, headers=headers, **kwargs)
        if response.status_code == 401 and name not in self.tokens:
            self.tokens[name] = self._token(response, name)
            headers["Authorization"] = f"Bearer {self.tokens[name]}"
            response = self.http.request(method, url, headers=headers, **kwargs)
        return response

    def _token(self, refusal: httpx.Response, name: str) -> str:
        challenge = next(
            (
                params
                for value in refusal.headers.get_list("www-authenticate")
                for scheme, params in parse_challenges(value)
                if scheme == "bearer"
            ),
            None,
        )
        if not challenge or not challenge.get("realm"):
            raise RegistryRefused(f"401 without a Bearer challenge: {refusal.text[:300]}")
        realm = loopback("the registry's token realm", challenge["realm"])
        params = {"scope": f"repository:{name}:pull,push"}
        if challenge.get("service"):
            params["service"] = challenge["service"]
        answer = self.http.get(realm, params=params, auth=(TOKEN_USER, "gantry-demo"))
        if answer.status_code != 200:
            raise RegistryRefused(f"token realm {realm} answered {answer.status_code}")
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryRefused(f"token realm {realm} gave no token")
        return token

    def blob(self, name: str, data: bytes) -> bool:
        """Upload one blob unless the registry has it; False when it takes no blob uploads."""
        digest = digest_of(data)
        if self._send(name, "HEAD", f"{self.base}/v2/{name}/blobs/{digest}").status_code == 200:
            return True
        started = self._send(name, "POST", f"{self.base}/v2/{name}/blobs/uploads/")
        if started.status_code in (404, 405):
            return False
        if started.status_code != 202 or "location" not in started.headers:
            raise RegistryRefused(f"blob upload answered {started.status_code}: {started.text}")
        location = httpx.URL(f"{self.base}/").join(started.headers["location"])
        done = self._send(
            name,
            "PUT",
            str(location.copy_merge_params({"digest": digest})),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status_code != 201:
            raise RegistryRefused(f"blob PUT answered {done.status_code}: {done.text[:300]}")
        return True

    def push(self, image: str, label: str) -> tuple[str, bool]:
        """(digest, whether the blobs went up) of a fresh image pushed at `image`."""
        ref = ImageName.parse(image)
        config, layer = image_parts(label)
        blobs = self.blob_uploads and all(self.blob(ref.repository, b) for b in (config, layer))
        self.blob_uploads = blobs
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": DOCKER_CONFIG,
                    "size": len(config),
                    "digest": digest_of(config),
                },
                "layers": [
                    {"mediaType": DOCKER_LAYER, "size": len(layer), "digest": digest_of(layer)}
                ],
            },
            indent=3,
        ).encode()
        put = self._send(
            ref.repository,
            "PUT",
            f"{self.base}/v2/{ref.repository}/manifests/{ref.tag}",
            content=manifest,
            headers={"Content-Type": DOCKER_MANIFEST},
        )
        if put.status_code != 201:
            raise RegistryRefused(f"manifest PUT answered {put.status_code}: {put.text[:300]}")
        digest = digest_of(manifest)
        reported = put.headers.get("docker-content-digest", digest)
        if reported != digest:
            raise RegistryRefused(f"the registry reports {reported} for a manifest of {digest}")
        return digest, blobs


class Command(BaseCommand):
    help = (
        "Demo: push an image to the sandbox registry as CI would and send Gantry a signed "
        "workflow_run for a fresh commit of BRANCH (develop → dev at once, main → prod after "
        "approval). Talks only to 127.0.0.1, ::1 or localhost."
    )

    def add_arguments(self, parser):
        parser.add_argument("branch", help="the branch the build ran on, e.g. develop or main")
        parser.add_argument(
            "component",
            nargs="?",
            help="build the repository that builds this component (default: every repository "
            "with a component in the branch's environment)",
        )
        web_port = os.environ.get("GANTRY_WEB_PORT") or "8000"
        parser.add_argument(
            "--url",
            default=f"http://127.0.0.1:{web_port}/webhooks/github/",
            help="Gantry's webhook, or Gantry's address, which gets /webhooks/github/ "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--registry",
            help="the Registry v2 base URL (default: GANTRY_REGISTRY_URL, else "
            "http://127.0.0.1:$SANDBOX_PORT, 8900)",
        )
        parser.add_argument(
            "--actor", default="dev-alice", help="the GitHub login the run is by (%(default)s)"
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=20.0,
            help="seconds to wait for the worker to make the releases (0: do not wait)",
        )

    def handle(self, *args, branch, component, url, registry, actor, wait, **options):
        sandbox_port = os.environ.get("SANDBOX_PORT") or "8900"
        registry = registry or settings.GANTRY_REGISTRY_URL or f"http://127.0.0.1:{sandbox_port}"
        webhook = loopback("--url", url)
        if urlsplit(webhook).path in ("", "/"):
            webhook = webhook.rstrip("/") + "/webhooks/github/"
        registry = loopback("--registry", registry).rstrip("/")
        gantry = webhook.rstrip("/").removesuffix("/webhooks/github")
        environment, builds = plan(branch, component)
        secret = settings.GANTRY_GITHUB_WEBHOOK_SECRET or DEMO_SECRET
        self.stdout.write(
            f"{branch} → {environment.name}: {len(builds)} build(s); registry {registry}, "
            f"Gantry {gantry}"
        )
        guids = []
        with httpx.Client(timeout=TIMEOUT, trust_env=False, follow_redirects=False) as http:
            pusher = Pusher(http, registry)
            for build in builds:
                sha = secrets.token_hex(20)
                payload = workflow_run(build, branch, sha, actor)
                run = WorkflowRun.from_payload(payload)
                self.stdout.write(f"{build.repository} {run.version}, commit {sha}")
                for target in build.components:
                    image = image_for(build.repository, target, run)
                    try:
                        digest, blobs = pusher.push(image, f"{build.repository} {branch} {sha}")
                    except httpx.TransportError as exc:
                        raise CommandError(
                            f"the registry at {registry} did not answer ({exc}): is the sandbox "
                            "running? `make demo` starts it"
                        ) from None
                    except RegistryRefused as exc:
                        raise CommandError(f"the registry refused {image}: {exc}") from None
                    note = "" if blobs else " (manifest only: this registry takes no blobs)"
                    self.stdout.write(f"  pushed {image}\n         {digest}{note}")
                guids.append(self._deliver(http, webhook, secret, payload, actor))
        self._report(gantry, environment, guids, wait)

    def _deliver(self, http, webhook: str, secret: str, payload: dict, actor: str) -> str:
        body = json.dumps(payload).encode()
        guid = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/gantry-demo-build",
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": guid,
            "X-Hub-Signature-256": sign(secret, body),
        }
        try:
            answer = http.post(webhook, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise CommandError(
                f"Gantry's webhook at {webhook} did not answer ({exc}): is Gantry running? "
                "`make demo` starts it (--url for another address)"
            ) from None
        if answer.status_code == 401:
            raise CommandError(
                f"Gantry refused the signature (401: {answer.text[:200]}). The command signs with "
                "GANTRY_GITHUB_WEBHOOK_SECRET, or the demo's default demo-webhook-secret when it "
                "is not set; Gantry must run with the same one (`make demo` sets it from the "
                "same variable)."
            )
        try:
            answer_body = answer.json()
        except ValueError:
            answer_body = {}
        outcome, detail = answer_body.get("outcome", ""), answer_body.get("detail", "")
        said = f"{outcome or answer.text[:200]}{': ' + detail if detail else ''}"
        self.stdout.write(
            f"  webhook workflow_run by {actor}: {answer.status_code} {said}\n  delivery {guid}"
        )
        if answer.status_code != 202 or outcome != WebhookDelivery.Outcome.ACCEPTED:
            raise CommandError(
                f"Gantry did not accept the build ({answer.status_code} {outcome}): "
                f"{detail or answer.text[:300]}"
            )
        return guid

    def _report(self, gantry: str, environment: Environment, guids: list[str], wait: float):
        """What became of the deliveries, read from this checkout's database (where the demo's
        Gantry writes), once the worker has resolved them or `wait` seconds have passed."""
        deadline = time.monotonic() + wait
        deliveries = []
        try:
            while True:
                found = {d.guid: d for d in WebhookDelivery.objects.filter(guid__in=guids)}
                deliveries = [found[guid] for guid in guids if guid in found]
                pending = [d for d in deliveries if d.outcome == WebhookDelivery.Outcome.ACCEPTED]
                if (deliveries and not pending) or time.monotonic() >= deadline:
                    break
                pause(0.5)
            for delivery in deliveries:
                if delivery.outcome == WebhookDelivery.Outcome.ACCEPTED:
                    self.stdout.write(f"delivery {delivery.guid}: accepted, the worker is on it")
                    continue
                self.stdout.write(
                    f"delivery {delivery.guid}: {delivery.outcome}: {delivery.detail}"
                )
                for release in delivery.releases.select_related("component__environment"):
                    states = ", ".join(
                        f"deployment #{d.pk} {d.state}" for d in release.deployments.all()
                    )
                    self.stdout.write(
                        f"  release {release.component} {release.version} {release.digest}: "
                        f"{states}\n  {gantry}/releases/{release.pk}/"
                    )
        except DatabaseError:
            pass  # another Gantry's database: the links below still say where to look
        self.stdout.write(f"Deliveries: {gantry}/deliveries/")
        self.stdout.write(f"Watch {environment.name}: {gantry}/environments/{environment.name}/")
        if environment.requires_approval:
            count = environment.approvals_required
            who = "approver" if count < 2 else "approver, then approver2,"
            self.stdout.write(
                f"{environment.name} waits for {count} approval(s): sign in as {who} (password "
                "gantry-demo) and press Approve on the release page (Releases). During a deploy "
                "freeze it then waits, queued, for the freeze to end."
            )
