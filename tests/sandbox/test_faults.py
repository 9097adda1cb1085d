"""Injected faults surface as the client libraries' own exceptions and states."""

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from .clients import BACKEND_MIG, PROD, REGION

MIG_PATH = f"/compute/v1/projects/{PROD}/regions/{REGION}/instanceGroupManagers/{BACKEND_MIG}"


def test_429_surfaces_as_too_many_requests(gcp, sandbox):
    sandbox.inject_fault("http_error", path=MIG_PATH, status=429, count=1)
    with pytest.raises(exceptions.TooManyRequests, match="Rate Limit Exceeded"):
        gcp.mig()
    assert gcp.mig().name == BACKEND_MIG  # only the next call was throttled


def test_503_surfaces_as_service_unavailable(gcp, sandbox):
    sandbox.inject_fault("http_error", path=MIG_PATH, method="PATCH", status=503, count=1)
    with pytest.raises(exceptions.ServiceUnavailable):
        gcp.patch(BACKEND_MIG, target_size=5)
    assert gcp.mig().target_size == 4


def test_the_library_retries_503_on_reads_by_itself(gcp, sandbox):
    """Compute's GET methods retry UNAVAILABLE by default; with retry=None the error shows."""
    sandbox.inject_fault("http_error", path=MIG_PATH, method="GET", status=503, count=3)
    with pytest.raises(exceptions.ServiceUnavailable):
        gcp.migs.get(project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, retry=None)
    assert gcp.mig().name == BACKEND_MIG  # two more 503s, retried away by the default policy
    assert sandbox.world.faults.items == []


def test_glob_paths_and_the_control_api(sandbox, http):
    fault = http.post(
        f"{sandbox.url}/_sandbox/faults",
        json={"kind": "http_error", "path": "/v2/*/manifests/*", "status": 503, "count": 2},
    )
    assert fault.status_code == 201
    url = f"{sandbox.url}/v2/nemo-prod/registry/backend/manifests/prod-v1"
    assert http.get(url).status_code == 503
    assert http.get(f"{sandbox.url}/_sandbox/faults").json()["faults"][0]["count"] == 1
    assert http.delete(f"{sandbox.url}/_sandbox/faults").json() == {"faults": []}
    assert http.get(url).status_code == 200
    bad = http.post(f"{sandbox.url}/_sandbox/faults", json={"kind": "meteor"})
    assert bad.status_code == 400 and "Unknown fault kind" in bad.json()["error"]["message"]


def test_an_operation_that_ends_in_error_changes_nothing(gcp, sandbox):
    sandbox.inject_fault(
        "operation_error",
        target=f"*/instanceGroupManagers/{BACKEND_MIG}",
        operationType="resize",
        code="ZONE_RESOURCE_POOL_EXHAUSTED",
        message="The zone does not have enough resources.",
    )
    op = gcp.migs.resize_unary(
        project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=6
    )
    done = gcp.wait(op)
    assert done.status == compute_v1.Operation.Status.DONE
    assert [(e.code, e.message) for e in done.error.errors] == [
        ("ZONE_RESOURCE_POOL_EXHAUSTED", "The zone does not have enough resources.")
    ]
    assert done.http_error_status_code == 500
    assert gcp.mig().target_size == 4
    # The fault was for one operation: the next resize works.
    assert not gcp.wait(
        gcp.migs.resize_unary(
            project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=6
        )
    ).error.errors
    assert gcp.mig().target_size == 6


def test_an_operation_that_never_finishes(gcp, sandbox):
    sandbox.inject_fault("operation_stuck", target="*/instanceTemplates/*")
    template = gcp.templates.get(
        project=PROD, region=REGION, instance_template="nemo-backend-mig-tmpl-v1"
    )
    template.name = "nemo-backend-mig-tmpl-stuck"
    op = gcp.templates.insert_unary(
        project=PROD, region=REGION, instance_template_resource=template
    )
    sandbox.advance(3600)
    waited = gcp.region_operations.wait(project=PROD, region=REGION, operation=op.name)
    assert waited.status == compute_v1.Operation.Status.RUNNING
    with pytest.raises(exceptions.NotFound):
        gcp.templates.get(project=PROD, region=REGION, instance_template=template.name)


def test_reset_restores_the_seeded_state(gcp, sandbox, http):
    gcp.wait(
        gcp.migs.resize_unary(
            project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=1
        )
    )
    sandbox.inject_fault("down", environment="prod", component="frontend")
    assert http.post(f"{sandbox.url}/_sandbox/reset").json()["reset"] is True
    assert gcp.mig().target_size == 4
    assert len(gcp.managed()) == 4
    assert sandbox.world.faults.items == []
    assert http.get(f"{sandbox.url}/stack/prod/frontend/").status_code == 200


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "userRateLimitExceeded"])
def test_a_403_rate_limit_is_googles_shape_and_worth_retrying(gcp, sandbox, reason):
    """Compute throttles with 403 and a usageLimits reason; the client raises Forbidden."""
    from deployments.gcp import is_retryable, refusal

    sandbox.inject_fault("http_error", path=MIG_PATH, status=403, reason=reason, count=1)
    with pytest.raises(exceptions.Forbidden) as raised:
        gcp.mig()
    assert raised.value.errors[0]["reason"] == reason
    assert raised.value.errors[0]["domain"] == "usageLimits"
    assert is_retryable(raised.value)
    assert "Rate Limit Exceeded" in refusal(raised.value)


@pytest.mark.parametrize("reason", ["quotaExceeded", "forbidden"])
def test_a_403_for_quota_or_permission_is_permanent_and_says_why(gcp, sandbox, reason):
    from deployments.gcp import is_retryable, refusal

    sandbox.inject_fault("http_error", path=MIG_PATH, status=403, reason=reason, count=1)
    with pytest.raises(exceptions.Forbidden) as raised:
        gcp.mig()
    assert not is_retryable(raised.value)
    assert refusal(raised.value).startswith(f"GCP refused (403 {reason}): ")
