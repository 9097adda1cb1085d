"""The fault campaign (bench/fault_campaign.py) at a size for the suite: a dozen seeded
deployments, every fault kind among them, each ending as its fault says it must.

The bench runs 100; this keeps the same plans, injection and checks honest on every database.
The checks are tested too: each must report a deployment that ends wrong.
"""

from collections import Counter

import pytest

import bench.campaign as campaign_module
from audit.models import AuditEvent
from bench.campaign import (
    APP_FAULTS,
    FAULTS,
    TIMINGS,
    Plan,
    audit_problems,
    capacity_problems,
    check,
    create_deployment,
    make_plans,
    run_campaign,
)
from deployments.models import Deployment
from environments.models import Component
from gcp.adapter import GcpAdapter

from .engine_helpers import drive

S = Deployment.State
SEED = 6  # its dozen holds every strategy, and canaries meet all three app faults
pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(engine, sim_time, settings, monkeypatch):
    """The engine on simulated time (the `engine` fixture's timings), with the bench's retry
    budget. run_campaign paces its lanes with `time.monotonic()` and `time.sleep()`: here they
    are the sandbox's frozen clock, so each pause passes in no real time and the deadline it
    holds every deployment to is simulated seconds."""
    settings.GANTRY_MAX_RETRIES = TIMINGS["GANTRY_MAX_RETRIES"]
    monkeypatch.setattr(campaign_module, "time", sim_time)
    return engine


def frontend_plan(fault="none"):
    return Plan(0, "prod/frontend", "prod", "frontend", "rolling", fault)


def test_a_dozen_seeded_deployments_with_faults_each_end_as_their_fault_says(campaign):
    plans = make_plans(SEED, 12)
    assert {plan.fault for plan in plans} == set(FAULTS)
    assert {plan.strategy for plan in plans} == {"rolling", "canary", "blue_green", "recreate"}
    assert {plan.fault for plan in plans if plan.analysed} >= set(APP_FAULTS)

    result = run_campaign(campaign, plans, SEED)

    assert result.violations == []
    assert [run.plan.index for run in result.runs] == list(range(12))
    assert result.outcomes() == Counter(plan.expected for plan in plans)
    assert {S.SUCCEEDED, S.ROLLED_BACK, S.FAILED} <= set(result.outcomes())
    assert Deployment.objects.exclude(state__in=Deployment.FINAL).count() == 0
    assert campaign.state()["faults"] == []  # each deployment's faults went with it


def test_the_same_seed_plans_the_same_campaign(campaign):
    assert make_plans(SEED, 30) == make_plans(SEED, 30)
    assert make_plans(SEED, 30)[:12] == make_plans(SEED, 12)  # so --only K replays plan K
    assert make_plans(SEED, 30) != make_plans(SEED + 1, 30)


def test_a_deployment_that_ends_otherwise_than_its_plan_says_is_reported(campaign):
    plan = frontend_plan("never_healthy")
    deployment = drive(create_deployment(campaign, plan, SEED))  # the fault was never injected
    assert deployment.state == S.SUCCEEDED
    assert check(campaign, plan, deployment) == [
        f"#0 prod/frontend never_healthy: ended succeeded ({deployment.reason}), "
        "expected rolled_back"
    ]


def test_an_audit_trail_that_disagrees_with_the_row_is_reported(campaign):
    deployment = drive(create_deployment(campaign, frontend_plan(), SEED))
    assert audit_problems(deployment) == []
    first = AuditEvent.objects.filter(object_id=str(deployment.pk)).order_by("pk").first()
    assert audit_problems(deployment, start=S.PROMOTING)[0] == (
        f"audit row {first.pk} goes from queued, but the path was at promoting"
    )
    Deployment.objects.filter(pk=deployment.pk).update(state=S.ROLLED_BACK)
    deployment.refresh_from_db()
    assert audit_problems(deployment) == [
        "the audit path ends at succeeded, the row says rolled_back"
    ]


def test_gcp_that_disagrees_with_the_end_state_is_reported(campaign):
    plan = frontend_plan()
    deployment = drive(create_deployment(campaign, plan, SEED))
    assert check(campaign, plan, deployment) == []
    gcp = GcpAdapter.from_settings()  # someone puts the old template back behind Gantry's back
    old = deployment.previous["template"]
    versions = {"versions": [{"name": "by-hand", "instance_template": old}]}
    patch = gcp.patch_mig("nemo-prod", "asia-northeast3", "nemo-frontend-mig", versions)
    campaign.advance(600)  # the frozen clock: the patch and the replacements happen meanwhile
    assert gcp.get_operation(patch).done
    old_name = old.rsplit("/", 1)[-1]
    assert check(campaign, plan, deployment) == [
        f"#0 prod/frontend none: nemo-frontend-mig runs {[old_name] * 4}, "
        f"not 4 x {deployment.template}"
    ]


def test_capacity_below_the_floor_is_reported(campaign):
    frontend = Component.objects.get(environment__name="prod", name="frontend")
    since = campaign.world.clock.now()
    assert capacity_problems(campaign, frontend, since) == []
    gcp = GcpAdapter.from_settings()
    resize = gcp.resize_mig("nemo-prod", "asia-northeast3", "nemo-frontend-mig", 2)
    campaign.advance(10)  # the resize finishes and the two deleted instances stop serving
    assert gcp.get_operation(resize).done
    problems = capacity_problems(campaign, frontend, since)
    assert len(problems) == 1
    assert problems[0].startswith("only 2 instances available at t=")
    assert problems[0].endswith("below the floor of 4")
