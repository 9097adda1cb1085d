"""A burst of GitHub deliveries and what must be stored after it, for
tests/deployments/test_webhook_burst.py and bench/webhook_burst.py.

The plan mixes distinct, correctly signed `workflow_run` completions for the topology's
repositories and branches with re-sent copies of them (GitHub redelivers with the same
X-GitHub-Delivery id), forged calls (a wrong signature; half of them replay a real delivery's id
and body) and signed bodies that are not JSON, shuffled by a seeded random.
"""

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass

from github.payloads import sign

from .payloads import workflow_run

CI_REGISTRY = "asia-northeast3-docker.pkg.dev/nemo-dev/registry"
# Repository → the component (and image) its builds release; each branch maps to one environment.
ROUTES = {
    "nemo-team/nemo-web": "frontend",
    "nemo-team/nemo-api": "backend",
    "nemo-team/nemo-ai": "ai-server",
}
BRANCHES = ("main", "develop")
VALID, DUPLICATE, FORGED, MALFORMED = "valid", "duplicate", "bad_signature", "malformed"
ANSWER = {VALID: 202, DUPLICATE: 200, FORGED: 401, MALFORMED: 400}


@dataclass
class Delivery:
    kind: str
    guid: str
    body: bytes
    signature: str
    repository: str = ""
    sha: str = ""

    @property
    def image(self) -> str:
        """The image CI pushed before calling the webhook (valid deliveries only)."""
        return f"{CI_REGISTRY}/{ROUTES[self.repository]}:{self.sha}"

    def headers(self) -> dict:
        return {
            "Content-Type": "application/json",
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": self.guid,
            "X-Hub-Signature-256": self.signature,
        }


def plan(total, secret, seed, duplicates=0.10, forged=0.05, malformed=0.05) -> list[Delivery]:
    rng = random.Random(seed)

    def guid():
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def build(kind, key):
        repository = list(ROUTES)[rng.randrange(len(ROUTES))]
        sha = f"{rng.getrandbits(160):040x}"
        payload = workflow_run(
            repository=repository,
            branch=BRANCHES[rng.randrange(len(BRANCHES))],
            sha=sha,
            run_number=1000 + rng.randrange(10**6),
            actor=f"dev-{rng.choice(['alice', 'bob', 'carol'])}",
        )
        body = json.dumps(payload).encode()
        return Delivery(kind, guid(), body, sign(key, body), repository, sha)

    n_duplicates, n_forged = round(total * duplicates), round(total * forged)
    n_malformed = round(total * malformed)
    n_valid = total - n_duplicates - n_forged - n_malformed
    valid = [build(VALID, secret) for _ in range(n_valid)]
    copies = [
        Delivery(DUPLICATE, d.guid, d.body, d.signature, d.repository, d.sha)
        for d in rng.sample(valid, n_duplicates)
    ]
    fakes = []
    for n in range(n_forged):
        if n % 2:
            fakes.append(build(FORGED, "not-the-webhook-secret"))
        else:  # a replay of a real delivery, re-signed with a wrong key
            real = rng.choice(valid)
            fakes.append(
                Delivery(FORGED, real.guid, real.body, sign("not-the-webhook-secret", real.body))
            )
    broken = []
    for n in range(n_malformed):
        body = b'{"action": "completed", "workflow_run": {"id": ' + str(n).encode()
        broken.append(Delivery(MALFORMED, guid(), body, sign(secret, body)))
    deliveries = valid + copies + fakes + broken
    rng.shuffle(deliveries)
    return deliveries


def count(deliveries) -> Counter:
    return Counter(d.kind for d in deliveries)


def check_answers(deliveries, answers) -> list[str]:
    """`answers[i]` = (status, outcome) for deliveries[i]. Each id of a real delivery is answered
    202 exactly once (a copy may arrive first: then the original is the duplicate)."""
    problems = []
    statuses = Counter(status for status, _ in answers)
    expected = Counter({ANSWER[kind]: n for kind, n in count(deliveries).items()})
    if statuses != expected:
        problems.append(f"answers {dict(statuses)}, expected {dict(expected)}")
    accepted = Counter(
        d.guid for d, (status, _) in zip(deliveries, answers, strict=True) if status == 202
    )
    if twice := [guid for guid, n in accepted.items() if n > 1]:
        problems.append(f"{len(twice)} delivery ids accepted more than once, e.g. {twice[0]}")
    duplicates = sum(outcome == "duplicate" for _, outcome in answers)
    if duplicates != count(deliveries)[DUPLICATE]:
        problems.append(f"{duplicates} answered duplicate, expected {count(deliveries)[DUPLICATE]}")
    return problems


def check_database(deliveries, resolved: bool) -> list[str]:
    """What the database must hold: one row per real delivery, a bare rejection per forged call,
    an invalid row without payload per malformed body; once resolved, one release (and one
    deployment) per real delivery, none twice, none from a forged or malformed call."""
    from django.db.models import Count

    from deployments.models import Deployment, Release
    from github.models import WebhookDelivery

    Outcome = WebhookDelivery.Outcome
    problems = []
    n = count(deliveries)
    real = {d.guid: d for d in deliveries if d.kind == VALID}
    outcome = Outcome.RELEASED if resolved else Outcome.ACCEPTED
    rows = Counter(WebhookDelivery.objects.values_list("outcome", flat=True))
    expected = Counter(
        {outcome: n[VALID], Outcome.REJECTED: n[FORGED], Outcome.INVALID: n[MALFORMED]}
    )
    if rows != expected:
        problems.append(f"delivery rows by outcome {dict(rows)}, expected {dict(expected)}")
    stored = set(WebhookDelivery.objects.filter(outcome=outcome).values_list("guid", flat=True))
    if stored != set(real):
        problems.append(
            f"{len(set(real) - stored)} real deliveries missing, "
            f"{len(stored - set(real))} unexpected"
        )
    rejected = WebhookDelivery.objects.filter(outcome=Outcome.REJECTED)
    if rejected.exclude(guid=None).exists() or rejected.exclude(payload=None).exists():
        problems.append("a rejected delivery kept its id or its payload")
    if set(rejected.values_list("claimed_guid", flat=True)) != {
        d.guid for d in deliveries if d.kind == FORGED
    }:
        problems.append("rejected rows do not name the forged calls' ids")
    invalid = WebhookDelivery.objects.filter(outcome=Outcome.INVALID)
    if invalid.exclude(payload=None).exists():
        problems.append("a malformed delivery kept a payload")
    if set(invalid.values_list("guid", flat=True)) != {
        d.guid for d in deliveries if d.kind == MALFORMED
    }:
        problems.append("invalid rows are not the malformed deliveries")
    releases = Release.objects.count()
    if not resolved:
        if releases:
            problems.append(f"{releases} releases before any worker resolved a delivery")
        return problems
    if releases != n[VALID]:
        problems.append(f"{releases} releases, expected {n[VALID]}")
    twice = Release.objects.values("repository", "sha").annotate(n=Count("id")).filter(n__gt=1)
    if twice.exists():
        problems.append(f"{twice.count()} builds released more than once")
    built = {(d.repository, d.sha) for d in real.values()}
    if set(Release.objects.values_list("repository", "sha")) != built:
        problems.append("releases are not exactly the real deliveries' builds")
    links = WebhookDelivery.releases.through.objects
    if links.count() != n[VALID] or links.values("release_id").distinct().count() != n[VALID]:
        problems.append("not exactly one release per real delivery")
    if Deployment.objects.count() != n[VALID]:
        problems.append(f"{Deployment.objects.count()} deployments, expected {n[VALID]}")
    return problems
