"""Injected faults surface as the client libraries' own exceptions and states."""

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from .clients import BACKEND_MIG, PROD, REGION, insertable

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
    template = compute_v1.InstanceTemplate(
        name="nemo-backend-mig-tmpl-stuck", properties=insertable(template.properties)
    )
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
    from gcp.errors import is_retryable, refusal

    sandbox.inject_fault("http_error", path=MIG_PATH, status=403, reason=reason, count=1)
    with pytest.raises(exceptions.Forbidden) as raised:
        gcp.mig()
    assert raised.value.errors[0]["reason"] == reason
    assert raised.value.errors[0]["domain"] == "usageLimits"
    assert is_retryable(raised.value)
    assert "Rate Limit Exceeded" in refusal(raised.value)


@pytest.mark.parametrize("reason", ["quotaExceeded", "forbidden"])
def test_a_403_for_quota_or_permission_is_permanent_and_says_why(gcp, sandbox, reason):
    from gcp.errors import is_retryable, refusal

    sandbox.inject_fault("http_error", path=MIG_PATH, status=403, reason=reason, count=1)
    with pytest.raises(exceptions.Forbidden) as raised:
        gcp.mig()
    assert not is_retryable(raised.value)
    assert refusal(raised.value).startswith(f"GCP refused (403 {reason}): ")


# --- lb_unhealthy ---------------------------------------------------------------------------


def lb_states(gcp, group: str) -> dict[str, str]:
    answer = gcp.backend_services.get_health(
        project=PROD,
        backend_service="nemo-backend-bes",
        resource_group_reference_resource=compute_v1.ResourceGroupReference(group=group),
    )
    return {s.instance: s.health_state for s in answer.health_status}


@pytest.mark.parametrize(
    "selector",
    [
        {"template": "nemo-backend-mig-tmpl-v1"},
        {"image": "registry/backend@sha256:"},
        {"mig": BACKEND_MIG},
    ],
)
def test_lb_unhealthy_fails_the_load_balancer_check_but_not_autohealing(gcp, sandbox, selector):
    group = gcp.mig().instance_group
    assert set(lb_states(gcp, group).values()) == {"HEALTHY"}
    fault = sandbox.inject_fault("lb_unhealthy", **selector)
    assert set(lb_states(gcp, group).values()) == {"UNHEALTHY"}
    managed = gcp.managed()
    assert {h.detailed_health_state for m in managed for h in m.instance_health} == {"HEALTHY"}
    assert {(m.instance_status, m.current_action) for m in managed} == {("RUNNING", "NONE")}
    assert gcp.mig().status.is_stable
    sandbox.world.faults.remove(fault["id"])
    assert set(lb_states(gcp, group).values()) == {"HEALTHY"}


def test_lb_unhealthy_picks_only_its_group(gcp, sandbox):
    sandbox.inject_fault("lb_unhealthy", mig="nemo-frontend-mig")
    assert set(lb_states(gcp, gcp.mig().instance_group).values()) == {"HEALTHY"}


# --- instance_error -------------------------------------------------------------------------


def failed_creations(managed):
    return [m for m in managed if m.last_attempt.errors.errors]


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        (
            {"code": "ZONE_RESOURCE_POOL_EXHAUSTED"},
            "ZONE_RESOURCE_POOL_EXHAUSTED",
            "The zone 'projects/nemo-prod/zones/asia-northeast3-{}' does not have enough "
            "resources available to fulfill the request.  Try a different zone, or try again "
            "later.",
        ),
        ({}, "QUOTA_EXCEEDED", "Quota 'CPUS' exceeded.  Limit: 24.0 in region asia-northeast3."),
        (
            {"code": "QUOTA_EXCEEDED", "message": "Quota 'SSD_TOTAL_GB' exceeded."},
            "QUOTA_EXCEEDED",
            "Quota 'SSD_TOTAL_GB' exceeded.",
        ),
    ],
)
def test_instance_error_leaves_new_instances_creating_with_gcps_reason(
    gcp, sandbox, spec, code, message
):
    sandbox.inject_fault("instance_error", template="nemo-backend-mig-tmpl-v1", **spec)
    op = gcp.migs.resize_unary(
        project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=6
    )
    done = gcp.wait(op)
    assert done.status == compute_v1.Operation.Status.DONE and not done.error.errors
    sandbox.advance(300)  # many boot times and retries: none of it comes up
    mig = gcp.mig()
    assert mig.target_size == 6 and not mig.status.is_stable
    assert mig.current_actions.creating == 2
    managed = gcp.managed()
    failed = failed_creations(managed)
    assert len(failed) == 2 and len(managed) == 6
    for m in failed:
        assert (m.current_action, m.instance_status, m.id) == ("CREATING", "", 0)
        assert not m.instance_health
        zone = m.instance.split("/zones/")[1].split("/")[0]
        assert [(e.code, e.message) for e in m.last_attempt.errors.errors] == [
            (code, message.format(zone[-1]))
        ]
        with pytest.raises(exceptions.NotFound):  # no VM exists
            gcp.instances.get(project=PROD, zone=zone, instance=m.name)
    assert len(lb_states(gcp, mig.instance_group)) == 4  # not members of the group either


def test_removing_an_instance_error_lets_the_next_attempt_succeed(gcp, sandbox, http):
    fault = sandbox.inject_fault("instance_error", mig=BACKEND_MIG, code="QUOTA_EXCEEDED")
    gcp.wait(
        gcp.migs.resize_unary(
            project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=5
        )
    )
    sandbox.advance(60)
    (stuck,) = failed_creations(gcp.managed())
    assert http.delete(f"{sandbox.url}/_sandbox/faults/{fault['id']}").status_code == 200
    mig = gcp.until_stable()
    assert mig.status.is_stable and len(gcp.managed()) == 5
    (again,) = [m for m in gcp.managed() if m.name == stuck.name]  # the same slot, now a VM
    assert (again.instance_status, again.current_action) == ("RUNNING", "NONE")
    assert not again.last_attempt.errors.errors
    assert set(lb_states(gcp, mig.instance_group).values()) == {"HEALTHY"}


# --- http_error every -----------------------------------------------------------------------


def test_http_error_every_nth_request_fails_until_removed(sandbox, http, gcp):
    fault = sandbox.inject_fault(
        "http_error", path=MIG_PATH, every=4, status=403, reason="rateLimitExceeded"
    )
    statuses = [http.get(f"{sandbox.url}{MIG_PATH}").status_code for _ in range(12)]
    assert statuses == [200, 200, 200, 403] * 3
    assert [f["id"] for f in sandbox.world.faults.items] == [fault["id"]]  # not used up
    for _ in range(3):
        http.get(f"{sandbox.url}{MIG_PATH}")
    error = http.get(f"{sandbox.url}{MIG_PATH}").json()["error"]
    assert error == {
        "code": 403,
        "message": "Rate Limit Exceeded",
        "errors": [
            {
                "message": "Rate Limit Exceeded",
                "domain": "usageLimits",
                "reason": "rateLimitExceeded",
            }
        ],
        "status": "PERMISSION_DENIED",
    }
    for _ in range(3):
        assert gcp.mig().name == BACKEND_MIG
    with pytest.raises(exceptions.Forbidden) as raised:
        gcp.mig()
    assert raised.value.errors[0]["reason"] == "rateLimitExceeded"
    sandbox.world.faults.remove(fault["id"])
    assert {http.get(f"{sandbox.url}{MIG_PATH}").status_code for _ in range(8)} == {200}


def test_http_error_every_counts_only_matching_requests(sandbox, http):
    sandbox.inject_fault("http_error", path=MIG_PATH, method="PATCH", every=2, status=503)
    for _ in range(5):
        assert http.get(f"{sandbox.url}{MIG_PATH}").status_code == 200  # a GET is no match
    assert http.patch(f"{sandbox.url}{MIG_PATH}", json={}).status_code == 200
    assert http.patch(f"{sandbox.url}{MIG_PATH}", json={}).status_code == 503


# --- operation types in fault specs ---------------------------------------------------------


@pytest.mark.parametrize("operation_type", ["patch", "compute.regionInstanceGroupManagers.patch"])
def test_operation_faults_match_the_full_type_or_its_verb(gcp, sandbox, operation_type):
    sandbox.inject_fault("operation_error", operationType=operation_type, code="INTERNAL_ERROR")
    resized = gcp.wait(
        gcp.migs.resize_unary(
            project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=5
        )
    )
    assert not resized.error.errors  # a resize is not a patch
    patched = gcp.patch(BACKEND_MIG, target_size=3)
    assert patched.operation_type == "compute.regionInstanceGroupManagers.patch"
    assert [e.code for e in patched.error.errors] == ["INTERNAL_ERROR"]
    assert gcp.mig().target_size == 5


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "lb_unhealthy"},
        {"kind": "instance_error", "code": "QUOTA_EXCEEDED"},
        {"kind": "http_error", "path": "/x", "every": 0},
        {"kind": "http_error", "path": "/x", "every": "4"},
    ],
)
def test_fault_specs_that_say_too_little_are_refused(sandbox, http, spec):
    response = http.post(f"{sandbox.url}/_sandbox/faults", json=spec)
    assert response.status_code == 400
    assert http.get(f"{sandbox.url}/_sandbox/faults").json() == {"faults": []}
