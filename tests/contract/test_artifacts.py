"""The contract validators can fail: a wrong type, a missing field, a path GitHub lacks."""

import pytest

from tests.contract import github_artifacts as gh


@pytest.fixture(autouse=True)
def artifacts():
    gh.require()


def test_a_valid_deployment_request_passes_and_a_wrong_type_names_the_field():
    gh.validate_request("POST", "/repos/o/r/deployments", {"ref": "main", "environment": "prod"})
    with pytest.raises(AssertionError, match=r"\$\.ref: 5 is not of type"):
        gh.validate_request("POST", "/repos/o/r/deployments", {"ref": 5})
    with pytest.raises(AssertionError, match=r"required_contexts"):
        gh.validate_request(
            "POST", "/repos/o/r/deployments", {"ref": "main", "required_contexts": "ci"}
        )
    with pytest.raises(AssertionError, match=r"\$\.state"):
        gh.validate_request("POST", "/repos/o/r/deployments/5/statuses", {"state": "done"})


def test_a_path_or_method_github_does_not_have_is_an_unknown_operation():
    with pytest.raises(AssertionError, match="unknown operation POST /repos/o/r/nope"):
        gh.validate_request("POST", "/repos/o/r/nope", {})
    with pytest.raises(AssertionError, match="unknown operation PATCH"):
        gh.validate_request("PATCH", "/repos/o/r/deployments", {})
    with pytest.raises(AssertionError, match="unknown operation"):
        gh.validate_response("GET", "/_sandbox/github", 200, {})


def test_the_most_literal_template_wins():
    assert gh.operation("GET", "/repos/o/r/actions/runs")[0] == "/repos/{owner}/{repo}/actions/runs"
    assert gh.operation("GET", "/app/hook/deliveries/5")[0] == "/app/hook/deliveries/{delivery_id}"
    assert gh.operation("GET", "/repos/o/r/deployments?per_page=5")[1]["operationId"] == (
        "repos/list-deployments"
    )


def test_responses_are_checked_against_their_status():
    with pytest.raises(AssertionError, match=r"\$\[0\]: \"node_id\" is a required property"):
        gh.validate_response("GET", "/repos/o/r/deployments", 200, [{"id": 1}])
    with pytest.raises(AssertionError, match="not documented"):
        gh.validate_response("GET", "/repos/o/r/deployments", 299, [])
    with pytest.raises(AssertionError, match="documented without a body"):
        gh.validate_response(
            "POST", "/repos/o/r/actions/runs/1/deployment_protection_rule", 204, {"x": 1}
        )
    # an undocumented error status still needs GitHub's error shape
    gh.validate_response("GET", "/repos/o/r/deployments", 401, {"message": "Bad credentials"})
    with pytest.raises(AssertionError, match=r"\$\.message"):
        gh.validate_response("GET", "/repos/o/r/deployments", 401, {"message": 401})


def test_nullable_fields_admit_null_and_only_where_the_spec_says():
    status = {
        "url": "https://api.github.com/repos/o/r/deployments/1/statuses/2",
        "id": 2,
        "node_id": "DES_2",
        "state": "success",
        "creator": None,  # nullable-simple-user
        "description": "",
        "environment": "prod",
        "target_url": "",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "deployment_url": "https://api.github.com/repos/o/r/deployments/1",
        "repository_url": "https://api.github.com/repos/o/r",
    }
    gh.validate_response("GET", "/repos/o/r/deployments/1/statuses", 200, [status])
    with pytest.raises(AssertionError, match=r"\$\[0\]\.state: null"):
        gh.validate_response(
            "GET", "/repos/o/r/deployments/1/statuses", 200, [status | {"state": None}]
        )


def test_webhooks_and_their_examples():
    pings = gh.webhook_examples("ping")
    assert pings and all("zen" in p for p in pings)
    for ping in pings:
        gh.validate_webhook("ping", ping)
    pings[0]["zen"] = "changed"
    assert gh.webhook_examples("ping")[0]["zen"] != "changed"  # copies, not the cache
    run = next(e for e in gh.webhook_examples("workflow_run") if e["action"] == "requested")
    gh.validate_webhook("workflow-run-requested", run)
    run["workflow_run"]["run_number"] = "seven"
    with pytest.raises(AssertionError, match=r"\$\.workflow_run\.run_number"):
        gh.validate_webhook("workflow-run-requested", run)
    with pytest.raises(AssertionError, match="unknown webhook"):
        gh.validate_webhook("workflow-run-exploded", {})
    with pytest.raises(AssertionError, match="no 'nope' examples"):
        gh.webhook_examples("nope")
