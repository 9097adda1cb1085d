"""Rolling, canary and blue-green updates driven through google-cloud-compute."""

from collections import Counter

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from .clients import (
    BACKEND_MIG,
    PROD,
    REGION,
    ZONES,
    Clients,
    insertable,
    serving,
    template_name,
    zone_name,
)

V1 = "nemo-backend-mig-tmpl-v1"


def rolling_policy(surge, unavailable) -> compute_v1.InstanceGroupManagerUpdatePolicy:
    return compute_v1.InstanceGroupManagerUpdatePolicy(
        type_="PROACTIVE",
        minimal_action="REPLACE",
        replacement_method="SUBSTITUTE",
        max_surge=compute_v1.FixedOrPercent(**surge),
        max_unavailable=compute_v1.FixedOrPercent(**unavailable),
    )


def per_zone(history_row) -> dict[str, Counter]:
    return {
        zone: Counter({tmpl: n["available"] for tmpl, n in templates.items()})
        for zone, templates in history_row.items()
    }


def test_rolling_update_keeps_four_serving_and_ends_on_the_new_template(sandbox_factory):
    sandbox = sandbox_factory(speed=200)  # slow enough for several polls mid-rollout
    gcp = Clients(sandbox.url)
    v2 = gcp.new_template("nemo-backend-mig-tmpl-v2")
    polls = []
    gcp.patch(
        BACKEND_MIG,
        versions=[compute_v1.InstanceGroupManagerVersion(instance_template=v2, name="v2")],
        update_policy=rolling_policy({"fixed": 2}, {"fixed": 0}),
    )
    assert not gcp.mig().status.is_stable
    mig = gcp.until_stable(each=lambda managed: polls.append(managed))

    assert mig.status.version_target.is_reached
    assert mig.update_policy.max_surge.calculated == 2
    assert len(polls) > 1
    assert all(len(serving(managed)) >= 4 for managed in polls)
    final = gcp.managed()
    assert Counter((zone_name(m), template_name(m)) for m in final) == {
        (ZONES[0], "nemo-backend-mig-tmpl-v2"): 2,
        (ZONES[1], "nemo-backend-mig-tmpl-v2"): 2,
    }
    assert all(m.version.name == "v2" for m in final)

    # The full timeline: never fewer than 4 available, never more than 4 + maxSurge instances,
    # and at most one surge instance per zone (maxSurge 2 split over 2 zones).
    history = [row for _, row in sandbox.history(PROD, BACKEND_MIG)]
    assert len(history) >= 5
    for row in history:
        assert sum(n["available"] for t in row.values() for n in t.values()) >= 4
        assert sum(n["total"] for t in row.values() for n in t.values()) <= 6
        for templates in row.values():
            assert sum(n["total"] for n in templates.values()) <= 3
    assert any(
        n.get("nemo-backend-mig-tmpl-v2", 0) == 1
        for n in map(per_zone, history)
        for n in n.values()
    )


def test_max_unavailable_without_surge_never_adds_instances(gcp, sandbox):
    v2 = gcp.new_template("nemo-backend-mig-tmpl-v2")
    gcp.patch(
        BACKEND_MIG,
        versions=[compute_v1.InstanceGroupManagerVersion(instance_template=v2)],
        update_policy=rolling_policy({"fixed": 0}, {"fixed": 2}),
    )
    gcp.until_stable()
    history = [row for _, row in sandbox.history(PROD, BACKEND_MIG)]
    assert max(sum(n["total"] for t in row.values() for n in t.values()) for row in history) == 4
    assert (
        min(sum(n["available"] for t in row.values() for n in t.values()) for row in history) == 2
    )
    assert {template_name(m) for m in gcp.managed()} == {"nemo-backend-mig-tmpl-v2"}


def test_percent_surge_and_unavailable_on_a_ten_instance_group(gcp, sandbox):
    op = gcp.migs.resize_unary(
        project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=10
    )
    gcp.wait(op)
    gcp.until_stable()
    v2 = gcp.new_template("nemo-backend-mig-tmpl-v2")
    gcp.patch(
        BACKEND_MIG,
        versions=[compute_v1.InstanceGroupManagerVersion(instance_template=v2)],
        update_policy=rolling_policy({"percent": 20}, {"percent": 20}),
    )
    mig = gcp.until_stable()
    assert (
        mig.update_policy.max_surge.calculated,
        mig.update_policy.max_unavailable.calculated,
    ) == (2, 2)
    start = next(
        i
        for i, (_, row) in enumerate(sandbox.history(PROD, BACKEND_MIG))
        if any("nemo-backend-mig-tmpl-v2" in t for t in row.values())
    )
    rows = [row for _, row in sandbox.history(PROD, BACKEND_MIG)[start:]]
    assert max(sum(n["total"] for t in r.values() for n in t.values()) for r in rows) <= 12
    assert min(sum(n["available"] for t in r.values() for n in t.values()) for r in rows) >= 8
    assert Counter(zone_name(m) for m in gcp.managed()) == {ZONES[0]: 5, ZONES[1]: 5}


def test_percent_limits_need_ten_instances(gcp):
    with pytest.raises(exceptions.BadRequest, match="10 or more instances"):
        gcp.patch(BACKEND_MIG, update_policy=rolling_policy({"percent": 50}, {"fixed": 0}))


def test_canary_version_with_fixed_target_size(gcp, sandbox, http):
    v1 = gcp.template_url(V1)
    v2 = gcp.new_template("nemo-backend-mig-tmpl-v2")
    gcp.patch(
        BACKEND_MIG,
        versions=[
            compute_v1.InstanceGroupManagerVersion(instance_template=v1, name="stable"),
            compute_v1.InstanceGroupManagerVersion(
                instance_template=v2, name="canary", target_size=compute_v1.FixedOrPercent(fixed=1)
            ),
        ],
        update_policy=rolling_policy({"fixed": 2}, {"fixed": 0}),
    )
    mig = gcp.until_stable()
    assert mig.status.version_target.is_reached
    assert [(v.name, v.target_size.calculated) for v in mig.versions] == [
        ("stable", 0),
        ("canary", 1),
    ]
    managed = gcp.managed()
    assert Counter(m.version.name for m in managed) == {"stable": 3, "canary": 1}
    assert Counter(template_name(m) for m in serving(managed)) == {
        V1: 3,
        "nemo-backend-mig-tmpl-v2": 1,
    }
    assert (
        "instanceTemplate"
        not in http.get(
            f"{gcp.url}/compute/v1/projects/{PROD}/regions/{REGION}/instanceGroupManagers/{BACKEND_MIG}"
        ).json()
    )

    # Promote: one version, everything moves to the canary's template.
    gcp.patch(BACKEND_MIG, versions=[compute_v1.InstanceGroupManagerVersion(instance_template=v2)])
    gcp.until_stable()
    assert {template_name(m) for m in gcp.managed()} == {"nemo-backend-mig-tmpl-v2"}


def test_unhealthy_template_stalls_the_rollout_and_rollback_recovers(gcp, sandbox, http):
    stack = f"{sandbox.url}/stack/prod/backend/actuator/health"
    assert http.get(stack).json()["status"] == "UP"
    sandbox.inject_fault("unhealthy", template="nemo-backend-mig-tmpl-bad")
    bad = gcp.new_template("nemo-backend-mig-tmpl-bad")
    gcp.patch(
        BACKEND_MIG,
        versions=[compute_v1.InstanceGroupManagerVersion(instance_template=bad)],
        update_policy=rolling_policy({"fixed": 2}, {"fixed": 0}),
    )
    sandbox.advance(120)  # six boot times: a healthy rollout would be long done
    mig = gcp.mig()
    assert not mig.status.is_stable and not mig.status.version_target.is_reached
    assert mig.current_actions.verifying == 2
    managed = gcp.managed()
    stuck = [m for m in managed if template_name(m) == "nemo-backend-mig-tmpl-bad"]
    assert len(stuck) == 2
    assert {(m.instance_status, m.current_action) for m in stuck} == {("RUNNING", "VERIFYING")}
    assert {h.detailed_health_state for m in stuck for h in m.instance_health} == {"UNHEALTHY"}
    assert Counter(template_name(m) for m in serving(managed)) == {V1: 4}
    response = http.get(stack)
    assert response.status_code == 503 and response.json()["status"] == "DOWN"

    gcp.patch(
        BACKEND_MIG,
        versions=[compute_v1.InstanceGroupManagerVersion(instance_template=gcp.template_url(V1))],
    )
    mig = gcp.until_stable()
    assert {template_name(m) for m in gcp.managed()} == {V1}
    assert http.get(stack).json()["status"] == "UP"


def test_blue_green_swap_moves_backend_service_backends(gcp, sandbox, http):
    ai = "nemo-ai-bes"
    blue, green = "nemo-ai-blue-mig", "nemo-ai-green-mig"
    image = "asia-northeast3-docker.pkg.dev/nemo-prod/registry/ai-server@sha256:" + "2" * 64
    v2 = gcp.new_template(
        "nemo-ai-green-mig-tmpl-v2", source="nemo-ai-green-mig-tmpl-v1", image=image
    )
    gcp.patch(green, versions=[compute_v1.InstanceGroupManagerVersion(instance_template=v2)])
    gcp.wait(
        gcp.migs.resize_unary(project=PROD, region=REGION, instance_group_manager=green, size=2)
    )
    gcp.until_stable(green)
    assert Counter(zone_name(m) for m in serving(gcp.managed(green))) == {ZONES[0]: 1, ZONES[1]: 1}
    health = http.get(f"{sandbox.url}/stack/prod/ai-server/health").json()
    assert image not in health["images"]  # still blue behind the load balancer

    service = gcp.backend_services.get(project=PROD, backend_service=ai)
    assert [b.group.rsplit("/", 1)[-1] for b in service.backends] == [blue]
    green_group = service.backends[0].group.replace(blue, green)
    op = gcp.backend_services.patch_unary(
        project=PROD,
        backend_service=ai,
        backend_service_resource=compute_v1.BackendService(
            fingerprint=service.fingerprint,
            backends=[compute_v1.Backend(group=green_group, balancing_mode="UTILIZATION")],
        ),
    )
    assert gcp.wait(op).operation_type == "patch"
    swapped = gcp.backend_services.get(project=PROD, backend_service=ai)
    assert [b.group for b in swapped.backends] == [green_group]
    assert swapped.fingerprint != service.fingerprint
    health = http.get(f"{sandbox.url}/stack/prod/ai-server/health")
    assert health.status_code == 200 and health.json()["images"] == [image]

    gcp.wait(
        gcp.migs.resize_unary(project=PROD, region=REGION, instance_group_manager=blue, size=0)
    )
    gcp.until_stable(blue)
    assert gcp.managed(blue) == []
    assert http.get(f"{sandbox.url}/stack/prod/ai-server/health").status_code == 200


def test_backend_service_patch_rejects_a_stale_fingerprint_and_unknown_groups(gcp):
    service = gcp.backend_services.get(project=PROD, backend_service="nemo-ai-bes")
    with pytest.raises(exceptions.PreconditionFailed):
        gcp.backend_services.patch_unary(
            project=PROD,
            backend_service="nemo-ai-bes",
            backend_service_resource=compute_v1.BackendService(fingerprint="c3RhbGU=", backends=[]),
        )
    with pytest.raises(exceptions.BadRequest, match=r"backends\[0\]\.group"):
        gcp.backend_services.patch_unary(
            project=PROD,
            backend_service="nemo-ai-bes",
            backend_service_resource=compute_v1.BackendService(
                fingerprint=service.fingerprint,
                backends=[compute_v1.Backend(group="regions/asia-northeast3/instanceGroups/nope")],
            ),
        )


def lb_view(gcp, group: str) -> dict[str, str]:
    """instance URL → healthState, as backendServices.getHealth reports the group."""
    answer = gcp.backend_services.get_health(
        project=PROD,
        backend_service="nemo-backend-bes",
        resource_group_reference_resource=compute_v1.ResourceGroupReference(group=group),
    )
    return {s.instance: s.health_state for s in answer.health_status}


def test_the_load_balancer_sees_a_rolling_update_instance_by_instance(sandbox_factory):
    sandbox = sandbox_factory(speed=0)  # frozen: each look at the MIG and the LB is one moment
    gcp = Clients(sandbox.url)
    group = gcp.mig().instance_group
    source = gcp.templates.get(project=PROD, region=REGION, instance_template=V1)
    properties = insertable(source.properties)
    properties.metadata.items[0].value = "registry/backend@sha256:" + "2" * 64
    gcp.templates.insert_unary(
        project=PROD,
        region=REGION,
        instance_template_resource=compute_v1.InstanceTemplate(
            name="nemo-backend-mig-tmpl-v2", properties=properties
        ),
    )
    sandbox.advance(1)
    gcp.migs.patch_unary(
        project=PROD,
        region=REGION,
        instance_group_manager=BACKEND_MIG,
        instance_group_manager_resource=compute_v1.InstanceGroupManager(
            versions=[
                compute_v1.InstanceGroupManagerVersion(
                    instance_template=gcp.template_url("nemo-backend-mig-tmpl-v2")
                )
            ],
            update_policy=rolling_policy({"fixed": 2}, {"fixed": 0}),
        ),
    )
    views = []
    for _ in range(200):
        sandbox.advance(1)
        views.append(({m.instance: m for m in gcp.managed()}, lb_view(gcp, group)))
        if gcp.mig().status.is_stable:
            break
    assert gcp.mig().status.is_stable and len(views) > 20
    for managed, lb in views:
        healthy = [url for url, state in lb.items() if state == "HEALTHY"]
        assert len(healthy) >= 4  # maxUnavailable 0: the LB always has four to send to
        for url in healthy:  # HEALTHY in the LB only what the MIG has RUNNING and verified
            assert (managed[url].instance_status, managed[url].current_action) == (
                "RUNNING",
                "NONE",
            )
        for url, m in managed.items():
            if m.current_action in ("CREATING", "VERIFYING", "DELETING"):
                assert lb[url] == "UNHEALTHY"
    final = {m.instance: template_name(m) for m in gcp.managed()}
    assert set(final.values()) == {"nemo-backend-mig-tmpl-v2"}
    for url in final:  # each new VM was UNHEALTHY in the LB before it turned HEALTHY
        states = [lb[url] for _, lb in views if url in lb]
        assert states[0] == "UNHEALTHY" and states[-1] == "HEALTHY"
    assert lb_view(gcp, group) == dict.fromkeys(final, "HEALTHY")


def test_an_instance_error_stalls_the_rollout_and_rollback_clears_it(gcp, sandbox):
    sandbox.inject_fault(
        "instance_error", template="nemo-backend-mig-tmpl-v2", code="ZONE_RESOURCE_POOL_EXHAUSTED"
    )
    v2 = gcp.new_template("nemo-backend-mig-tmpl-v2")
    op = gcp.patch(
        BACKEND_MIG,
        versions=[compute_v1.InstanceGroupManagerVersion(instance_template=v2)],
        update_policy=rolling_policy({"fixed": 2}, {"fixed": 0}),
    )
    assert not op.error.errors
    sandbox.advance(300)
    mig = gcp.mig()
    assert not mig.status.is_stable and not mig.status.version_target.is_reached
    managed = gcp.managed()
    stuck = [m for m in managed if template_name(m) == "nemo-backend-mig-tmpl-v2"]
    assert len(stuck) == 2  # maxSurge 2: one per zone, and no more while they fail
    assert all(m.current_action == "CREATING" and m.last_attempt.errors.errors for m in stuck)
    assert Counter(template_name(m) for m in serving(managed)) == {V1: 4}

    gcp.patch(
        BACKEND_MIG,
        versions=[compute_v1.InstanceGroupManagerVersion(instance_template=gcp.template_url(V1))],
    )
    gcp.until_stable()
    assert {template_name(m) for m in gcp.managed()} == {V1}
    assert not any(m.last_attempt.errors.errors for m in gcp.managed())
