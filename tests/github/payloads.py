"""Real-shaped GitHub webhook payloads and signing, for tests and benchmarks."""

import itertools
import json
import uuid
from urllib.parse import urlencode

from github.payloads import sign

SECRET = "webhook-secret-for-tests"
_run_numbers = itertools.count(100)


def workflow_run(
    repository="nemo-team/nemo-api",
    branch="main",
    sha=None,
    conclusion="success",
    action="completed",
    workflow="build",
    actor="dev-alice",
    run_number=None,
    event="push",
    head_repository=None,
):
    run_number = run_number or next(_run_numbers)
    sha = sha or f"{run_number:040x}"
    return {
        "action": action,
        "workflow_run": {
            "id": 9_000_000 + run_number,
            "name": workflow,
            "head_branch": branch,
            "head_sha": sha,
            "event": event,
            "head_repository": {"full_name": head_repository or repository},
            "run_number": run_number,
            "run_attempt": 1,
            "status": "completed" if action == "completed" else "in_progress",
            "conclusion": conclusion if action == "completed" else None,
            "html_url": f"https://github.com/{repository}/actions/runs/{9_000_000 + run_number}",
            "actor": {"login": actor},
            "triggering_actor": {"login": actor},
            "head_commit": {"id": sha, "message": f"Change {run_number}\n\nDetails."},
            "display_title": f"Change {run_number}",
        },
        "workflow": {"name": workflow},
        "repository": {"full_name": repository},
        "sender": {"login": actor},
    }


def form_body(payload) -> bytes:
    """The body GitHub sends with content type application/x-www-form-urlencoded."""
    return urlencode({"payload": json.dumps(payload)}).encode()


def post(
    client,
    payload,
    event="workflow_run",
    secret=SECRET,
    guid=None,
    body=None,
    signature=None,
    form=False,
):
    """POST to the webhook as GitHub would (JSON, or form-encoded with `form`)."""
    if body is None:
        body = form_body(payload) if form else json.dumps(payload).encode()
    headers = {
        "HTTP_X_GITHUB_EVENT": event,
        "HTTP_X_GITHUB_DELIVERY": guid or str(uuid.uuid4()),
    }
    if signature is not None:
        headers["HTTP_X_HUB_SIGNATURE_256"] = signature
    elif secret:
        headers["HTTP_X_HUB_SIGNATURE_256"] = sign(secret, body)
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    return client.post("/webhooks/github/", data=body, content_type=content_type, **headers)
