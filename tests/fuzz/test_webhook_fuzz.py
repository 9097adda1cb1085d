"""Fuzzing the GitHub webhook: whatever arrives, signed or not, it answers 200, 202, 400 or 401
with a JSON message, never a 5xx, and writes nothing but its own delivery record.

POSTs go through Django's test client to the real view and database. Every example runs in a
savepoint that is rolled back, so each one starts from the seeded topology. Example counts come
from the profiles in tests/fuzz/conftest.py; `GANTRY_FUZZ_EXAMPLES=N` raises them.
"""

import json
import uuid
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.apps import apps
from django.db import transaction
from hypothesis import assume, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from github.models import WebhookDelivery
from github.payloads import (
    PayloadError,
    ProtectionRuleRequest,
    WorkflowRun,
    sign,
    signature_ok,
)
from tests.github import payloads

pytestmark = pytest.mark.django_db

Outcome = WebhookDelivery.Outcome
SECRET = payloads.SECRET
DELIVERY = "github.WebhookDelivery"
WEBHOOK = settings(settings.get_profile("fuzz-webhook"))
FEW = settings(WEBHOOK, max_examples=max(WEBHOOK.max_examples // 5, 10))
PURE = settings(settings.get_profile("fuzz-pure"))

REPOSITORIES = ["nemo-team/nemo-api", "nemo-team/nemo-web", "nemo-team/nemo-ai"]
BRANCHES = ["main", "develop"]
EVENTS = ["workflow_run", "ping", "deployment_protection_rule", "push", "", "WORKFLOW_RUN"]


# --- Strategies ---------------------------------------------------------------------------------

huge_text = st.builds(
    lambda piece, times: piece * times, st.text(min_size=1, max_size=4), st.integers(50, 5_000)
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # json.dumps writes NaN and Infinity, and json.loads reads them back
    | st.text()
    | huge_text
    | st.sampled_from(REPOSITORIES + BRANCHES + ["completed", "success", "0" * 40, "a" * 40])
)


def _nested(inner):
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)


junk = st.recursive(scalars, _nested, max_leaves=12)


def header_text():
    """A header as a WSGI server hands it over: text sent as UTF-8, read back as latin-1."""
    printable = st.characters(exclude_categories=["Cc", "Cs"])
    long = st.builds(
        lambda piece, times: piece * times,
        st.text(printable, min_size=1, max_size=4),
        st.integers(20, 200),
    )
    return (st.text(printable, max_size=80) | long).map(lambda s: s.encode().decode("latin-1"))


guids = st.uuids().map(str) | header_text()  # header_text() is sometimes ""
events = st.sampled_from(EVENTS) | header_text()


@st.composite
def mutated(draw, documents):
    """A document with one to four things dropped, replaced or added anywhere inside it."""
    document = draw(documents)
    for _ in range(draw(st.integers(1, 4))):
        node = document
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if isinstance(node[key], dict | list) and node[key] and draw(st.booleans()):
                node = node[key]
                continue
            break
        action = draw(st.sampled_from(["drop", "replace", "add"])) if keys else "add"
        if action == "drop":
            del node[key]
        elif action == "replace":
            node[key] = draw(junk)
        elif isinstance(node, dict):
            node[draw(st.text(max_size=20))] = draw(junk)
        else:
            node.append(draw(junk))
    return document


valid_runs = st.builds(
    payloads.workflow_run,
    repository=st.sampled_from(REPOSITORIES),
    branch=st.sampled_from(BRANCHES),
    run_number=st.integers(1, 10**9),
)
varied_runs = st.builds(
    payloads.workflow_run,
    repository=st.sampled_from([*REPOSITORIES, "nemo-team/unknown"]) | st.text() | huge_text,
    branch=st.sampled_from([*BRANCHES, "feature/x"]) | st.text() | huge_text,
    conclusion=st.sampled_from(["success", "failure", "cancelled"]),
    action=st.sampled_from(["completed", "requested", "in_progress"]) | huge_text,
    workflow=st.sampled_from(["build", "lint"]),
    actor=st.just("dev-alice") | huge_text,
    run_number=st.integers(1, 10**9),
)
workflow_runs = valid_runs | varied_runs  # real-shaped, for repositories and branches known or not


def protection_request(
    environment="prod",
    repository="nemo-team/nemo-api",
    action="requested",
    sender="dev-alice",
    deployment_id=1,
):
    """A real-shaped deployment_protection_rule delivery."""
    api = "https://api.github.com/repos/nemo-team/nemo-api/actions/runs/1"
    return {
        "action": action,
        "environment": environment,
        "event": "push",
        "deployment_callback_url": f"{api}/deployment_protection_rule",
        "deployment": {"id": deployment_id, "sha": "a" * 40, "ref": "main"},
        "repository": {"full_name": repository},
        "sender": {"login": sender},
    }


def json_body(payload, ascii_only):
    return json.dumps(payload, ensure_ascii=ascii_only).encode()


def with_deep_field(payload, depth):
    """A good payload with one field nested `depth` lists deep."""
    return json_body(payload, True)[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"


signed_runs = st.builds(
    json_body, workflow_runs | mutated(workflow_runs), st.booleans()
) | st.builds(with_deep_field, valid_runs, st.integers(1, 3_000))
signed_protection_requests = st.builds(
    json_body,
    st.builds(
        protection_request,
        environment=st.sampled_from(["prod", "dev", "qa"]) | huge_text,
        repository=st.just("nemo-team/nemo-api") | huge_text,
        action=st.just("requested") | huge_text,
        sender=st.just("dev-alice") | huge_text,
        deployment_id=st.integers(1, 10**6) | st.integers(),
    )
    | mutated(st.builds(protection_request)),
    st.booleans(),
)
truncated = st.builds(
    lambda body, cut: body[: cut % (len(body) + 1)], signed_runs, st.integers(0, 10**6)
)
deeply_nested = st.builds(
    lambda opener, depth: opener * depth,
    st.sampled_from([b"[", b'{"a":', b"[{}, "]),
    st.integers(1, 100_000),
)
odd_bodies = (
    st.binary(max_size=300)
    | truncated
    | st.builds(json_body, junk, st.booleans())
    | deeply_nested
    | st.sampled_from([b"", b"null", b"NaN", b"[]", b"{}", b"\xff\xfe{}", b'"\\ud800"'])
)


# --- Delivering, and what may be written --------------------------------------------------------


def row_counts():
    return {
        model._meta.label: model._default_manager.count()
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    }


@contextmanager
def undone():
    """Run one example in a savepoint and roll it back: the next starts from the same rows."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def deliver(client, body, kind="workflow_run", guid="", signature=None, signed=True):
    headers = {"HTTP_X_GITHUB_EVENT": kind, "HTTP_X_GITHUB_DELIVERY": guid}
    if signed:
        headers["HTTP_X_HUB_SIGNATURE_256"] = sign(SECRET, body)
    elif signature is not None:
        headers["HTTP_X_HUB_SIGNATURE_256"] = signature
    return client.post("/webhooks/github/", data=body, content_type="application/json", **headers)


def new_rows(before):
    after = row_counts()
    return {label: after[label] - count for label, count in before.items() if after[label] != count}


def as_decimals(value):
    """PostgreSQL's jsonb keeps numbers as decimals: 1.939473906690551e16 comes back as
    19394739066905510, an int that is not quite the float. Compare numbers as written."""
    if isinstance(value, dict):
        return {key: as_decimals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_decimals(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(repr(value))
    return value


def check_answer(response, before, *, body, guid, signed):
    """The answer is one of four, in JSON, and what was written fits it."""
    assert response.status_code in {200, 202, 400, 401}, response.content[:500]
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    message = answer.get("detail") or answer.get("error") or answer.get("outcome")
    assert isinstance(message, str) and message.strip(), answer
    written = new_rows(before)
    delivery = WebhookDelivery.objects.order_by("-pk").first() if written else None
    if currently_in_test_context():
        event(f"{response.status_code} {delivery.outcome if delivery else answer.get('outcome')}")
    if response.status_code == 401:
        assert not signed
        assert written == {DELIVERY: 1}
        assert (delivery.outcome, delivery.guid, delivery.payload) == (Outcome.REJECTED, None, None)
        assert delivery.claimed_guid == guid[:64]
        return
    assert signed
    if not written and guid and answer.get("outcome") not in (None, "duplicate"):
        # The same delivery id again after it ended failed, invalid or ignored: decided anew on
        # its own row, as one more attempt.
        again = WebhookDelivery.objects.get(guid=guid[:64])
        assert again.attempts >= 2 and again.outcome == answer["outcome"]
        return
    if response.status_code == 400 and not written:
        assert guid == "" and answer["error"] == "missing X-GitHub-Delivery header"
    elif response.status_code == 400:
        assert written == {DELIVERY: 1}
        assert (delivery.outcome, delivery.payload) == (Outcome.INVALID, None)
        assert delivery.guid == guid[:64] and delivery.detail == answer["detail"]
    elif response.status_code == 200 and not written:
        assert answer["outcome"] == "duplicate"
    elif response.status_code == 200:
        assert written == {DELIVERY: 1}
        assert delivery.outcome in {Outcome.IGNORED, Outcome.PONG}
        # A completed run is kept for a person's Retry once the topology routes it.
        assert delivery.payload is None or as_decimals(delivery.payload) == as_decimals(
            json.loads(body)
        )
        assert delivery.detail == answer["detail"]
    elif delivery.outcome == Outcome.ACCEPTED:  # 202: a worker resolves the images later
        assert written == {DELIVERY: 1}
        assert as_decimals(delivery.payload) == as_decimals(json.loads(body))
    else:  # 202: a protection rule, recorded and audited, waiting for a deployment
        assert delivery.outcome == Outcome.RECORDED
        assert written == {
            DELIVERY: 1,
            "github.ProtectionRule": 1,
            "audit.AuditEvent": 1,
        }
        assert as_decimals(delivery.payload) == as_decimals(json.loads(body))


@pytest.fixture
def webhook(client, settings, seed_topology):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    return client


@pytest.fixture
def seeded_rows(webhook):
    """The row counts every example starts from (each one is rolled back)."""
    return row_counts()


# --- The webhook --------------------------------------------------------------------------------


@WEBHOOK
@given(body=signed_runs, guid=guids)
@example(body=json_body(payloads.workflow_run(run_number=7), True), guid="accepted-1")
# Parsed, then too deep to store: json.dumps overflowed the stack in the save (a 500).
@example(body=with_deep_field(payloads.workflow_run(run_number=8), 895), guid="deep-895")
# Longer than its column: a 500 on PostgreSQL ("value too long for type character varying").
@example(body=json_body(payloads.workflow_run(action="x" * 65), True), guid="long-action")
@example(body=json_body(payloads.workflow_run(repository="o/" + "x" * 139), True), guid="long")
# PostgreSQL's jsonb refuses \u0000 and NaN: a 500 when the payload was stored.
@example(body=json_body({**payloads.workflow_run(), "x": "\x00"}, True), guid="nul")
@example(body=json_body({**payloads.workflow_run(), "x": float("nan")}, True), guid="nan")
def test_signed_workflow_runs_are_answered_and_recorded_or_refused(
    webhook, seeded_rows, body, guid
):
    with undone():
        response = deliver(webhook, body, guid=guid)
        check_answer(response, seeded_rows, body=body, guid=guid, signed=True)


@WEBHOOK
@given(body=signed_protection_requests, guid=guids)
# Each one a 500 when the rule was stored: too long for its column (PostgreSQL), or an id beyond
# a BIGINT (every database).
@example(body=json_body(protection_request(repository="o/" + "x" * 139), True), guid="long")
@example(body=json_body(protection_request(sender="x" * 150), True), guid="long-sender")
@example(body=json_body(protection_request(deployment_id=2**70), True), guid="big-id")
def test_signed_protection_requests_are_answered_and_recorded_or_refused(
    webhook, seeded_rows, body, guid
):
    with undone():
        response = deliver(webhook, body, "deployment_protection_rule", guid=guid)
        check_answer(response, seeded_rows, body=body, guid=guid, signed=True)


@WEBHOOK
@given(body=odd_bodies, event_name=events, guid=guids)
# Too deep to parse: json.loads raised RecursionError (a 500).
@example(body=b"[" * 100_000, event_name="workflow_run", guid="deep")
def test_signed_bodies_that_are_not_payloads_are_refused_with_a_reason(
    webhook, seeded_rows, body, event_name, guid
):
    with undone():
        response = deliver(webhook, body, event_name, guid=guid)
        check_answer(response, seeded_rows, body=body, guid=guid, signed=True)


# Signatures that are not right for the body: each is a header value, or makes one from the body.
WRONG_FROM_BODY = [
    lambda body: sign(SECRET, body).upper().replace("SHA256=", "sha256="),
    lambda body: sign(SECRET, body)[:-1],
    lambda body: sign(SECRET, body).replace("=", "= "),
    lambda body: sign(SECRET, body).upper(),
    lambda body: sign(SECRET, body).removeprefix("sha256="),
    lambda body: sign(SECRET, body)[:47].replace("sha256=", "sha1="),
    lambda body: sign(SECRET, body) + "é",
    lambda body: sign(SECRET + " ", body),
    lambda body: sign(SECRET, body + b" "),
]
wrong_signatures = (
    st.none()
    | header_text()
    | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map("sha256=".__add__)
    | st.text().map("sha256=".__add__)
    | st.sampled_from(WRONG_FROM_BODY)
)


@WEBHOOK
@given(body=signed_runs | odd_bodies, signature=wrong_signatures, event_name=events, guid=guids)
# A non-ASCII signature made hmac.compare_digest raise TypeError: a 500 for anyone.
@example(body=b"{}", signature="sha256=é", event_name="workflow_run", guid="g")
def test_bad_signatures_are_401_and_keep_only_the_rejection(
    webhook, seeded_rows, body, signature, event_name, guid
):
    signature = signature(body) if callable(signature) else signature
    assume(signature != sign(SECRET, body))
    with undone():
        response = deliver(webhook, body, event_name, guid, signature=signature, signed=False)
        assert response.status_code == 401
        check_answer(response, seeded_rows, body=body, guid=guid, signed=False)


@FEW
@given(body=signed_runs, guid=st.uuids().map(str) | header_text().filter(bool))
def test_without_a_configured_secret_every_call_is_401(webhook, seeded_rows, settings, body, guid):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = ""
    with undone():
        response = deliver(webhook, body, guid=guid)
        assert response.status_code == 401
        assert response.json() == {"error": "no webhook secret configured"}
        check_answer(response, seeded_rows, body=body, guid=guid, signed=False)


@WEBHOOK
@given(body=signed_runs | odd_bodies, event_name=events, guid=st.uuids().map(str) | header_text())
def test_a_repeated_delivery_id_writes_nothing_new(webhook, body, event_name, guid):
    """The same delivery again adds no row: settled, it is a duplicate; ended failed, invalid
    or ignored, it is decided again on its own row (GitHub's Redeliver keeps the id)."""
    with undone():
        first = deliver(webhook, body, event_name, guid)
        settled = WebhookDelivery.objects.filter(guid=guid[:64] or None).first()
        before = row_counts()
        again = deliver(webhook, body, event_name, guid)
        assert new_rows(before) == {}
        if not guid:
            assert again.status_code == first.status_code == 400
        elif settled.outcome in WebhookDelivery.RETRYABLE:
            assert again.status_code == first.status_code
            assert WebhookDelivery.objects.get(guid=guid[:64]).attempts == 2
        else:
            assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")


# --- The pure functions in github/payloads.py ----------------------------------------------------


@PURE
@given(
    secret=st.text(),
    body=st.binary(),
    header=st.none() | st.text() | st.text().map("sha256=".__add__),
)
# compare_digest raised TypeError on non-ASCII text.
@example(secret="s", body=b"", header="sha256=é")
@example(secret="s", body=b"", header="sha256=\u0100" * 64)
def test_signature_ok_never_raises(secret, body, header):
    assert signature_ok(secret, body, header) in {True, False}


@PURE
@given(secret=st.text(min_size=1), body=st.binary(), other=st.text(min_size=1), noise=st.binary())
def test_a_signature_holds_for_its_secret_and_body_only(secret, body, other, noise):
    header = sign(secret, body)
    assert signature_ok(secret, body, header)
    assert signature_ok(other, body, header) == (other.encode() == secret.encode())
    assert signature_ok(secret, body + noise, header) == (noise == b"")
    assert not signature_ok("", body, sign("", body))


def from_payload_or_payload_error(parser, payload):
    try:
        parsed = parser.from_payload(payload)
    except PayloadError as exc:
        assert str(exc)
        return None
    return parsed


@PURE
@given(payload=junk | workflow_runs | mutated(workflow_runs))
def test_workflow_run_from_payload_raises_only_payload_error(payload):
    run = from_payload_or_payload_error(WorkflowRun, payload)
    if run is not None:
        assert all(isinstance(v, str) for v in (run.action, run.repository, run.branch, run.sha))
        assert isinstance(run.run_number, int) and len(run.sha) == 40
        assert isinstance(run.title, str) and "\n" not in run.title


@PURE
@given(payload=junk | st.builds(protection_request) | mutated(st.builds(protection_request)))
def test_protection_request_from_payload_raises_only_payload_error(payload):
    ask = from_payload_or_payload_error(ProtectionRuleRequest, payload)
    if ask is not None:
        assert ask.callback_url.startswith(("https://", "http://")) and len(ask.sha) == 40


def test_the_strategies_reach_every_answer(webhook):
    """Guard against fuzzing that never gets past the signature: one of each, by hand."""
    for body, event_name, status in [
        (json_body(payloads.workflow_run(), True), "workflow_run", 202),
        (json_body(payloads.workflow_run(conclusion="failure"), True), "workflow_run", 200),
        (json_body(protection_request(), True), "deployment_protection_rule", 202),
        (b"{", "workflow_run", 400),
    ]:
        guid = str(uuid.uuid4())
        with undone():
            before = row_counts()
            response = deliver(webhook, body, event_name, guid)
            assert response.status_code == status
            check_answer(response, before, body=body, guid=guid, signed=True)
