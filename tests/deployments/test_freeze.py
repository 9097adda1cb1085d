"""Deploy freeze windows: approvals go on, starts wait for the window to end, an admin may
override one deployment with a reason."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from deployments.approvals import decide
from deployments.engine import FREEZE_RECHECK, advance
from deployments.models import Deployment, DeploymentEvent
from environments.models import Environment, FreezeWindow, freeze_in_force

from .engine_helpers import drive, new_release

S = Deployment.State
SEOUL = ZoneInfo("Asia/Seoul")


def seoul(day, hour, minute=0):
    """A moment in the week of Monday 2026-11-23, Seoul time, as UTC."""
    return datetime(2026, 11, 23 + day, hour, minute, tzinfo=SEOUL).astimezone(UTC)


@pytest.fixture
def prod(seed_topology):
    return Environment.objects.get(name="prod")


@pytest.fixture
def weekend(prod):
    """The shipped weekend freeze of prod, switched back on."""
    window = prod.freeze_windows.get(name="weekend")
    window.enabled = True
    window.save()
    return window


def freeze_now(environment, minutes=60, name="release-train"):
    now = timezone.now()
    return FreezeWindow.objects.create(
        environment=environment,
        name=name,
        reason="quarter-end close",
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(minutes=minutes),
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("at", "until"),
    [
        (seoul(4, 17, 59), None),  # Friday, a minute before
        (seoul(4, 18, 0), seoul(7, 9, 0)),  # Friday 18:00 → Monday 09:00
        (seoul(6, 12, 0), seoul(7, 9, 0)),  # Sunday noon
        (seoul(7, 8, 59), seoul(7, 9, 0)),  # Monday, a minute before the end
        (seoul(7, 9, 0), None),  # Monday 09:00: open again
        (seoul(2, 12, 0), None),  # Wednesday
    ],
)
def test_the_weekend_freeze_runs_friday_evening_to_monday_morning_in_seoul(weekend, at, until):
    assert weekend.ends_after(at) == until
    assert (freeze_in_force(weekend.environment, at) or (None, None))[1] == until


@pytest.mark.django_db
def test_back_to_back_windows_hold_until_the_last_one_ends(weekend, prod):
    FreezeWindow.objects.create(
        environment=prod,
        name="monday-migration",
        reason="schema migration",
        timezone="Asia/Seoul",
        weekly_from="mon 08:30",
        weekly_to="mon 12:00",
    )
    window, until = freeze_in_force(prod, seoul(5, 10))
    assert window.name == "weekend" and until == seoul(7, 12)
    weekend.enabled = False
    weekend.save()
    assert freeze_in_force(prod, seoul(5, 10)) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weekly_from": "fri 18:00"}, "weekday and time"),
        ({"weekly_from": "fri 18:00", "weekly_to": "someday"}, "weekday and time"),
        ({"weekly_from": "fri 25:00", "weekly_to": "mon 09:00"}, "not a time of day"),
        ({"weekly_from": "fri 18:00", "weekly_to": "fri 18:00"}, "must end"),
        (
            {"weekly_from": "fri 18:00", "weekly_to": "mon 09:00", "timezone": "Mars/Olympus"},
            "time zone",
        ),
        (
            {"weekly_from": "fri 18:00", "weekly_to": "mon 09:00", "timezone": "America"},
            "time zone",
        ),
        ({}, "either weekly"),
        ({"starts_at": seoul(1, 9), "ends_at": seoul(1, 8)}, "later end"),
    ],
)
def test_a_bad_window_is_refused_with_the_reason(prod, fields, message):
    window = FreezeWindow(environment=prod, name="bad", reason="r", **fields)
    with pytest.raises(ValidationError, match=message):
        window.full_clean()


@pytest.mark.django_db
def test_a_frozen_deployment_waits_queued_and_notes_why_once(engine, prod):
    freeze_now(prod)
    deployment = new_release(engine, "prod", "frontend")
    outcome = advance(deployment.pk)
    assert 0 < outcome.delay <= FREEZE_RECHECK
    advance(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED and deployment.started_at is None
    assert deployment.reason.startswith("deploy freeze release-train (quarter-end close) until")
    notes = DeploymentEvent.objects.filter(deployment=deployment, message__startswith="deploy f")
    assert notes.count() == 1
    assert deployment.next_check_at is not None  # the reconciler leaves it to its own recheck


@pytest.mark.django_db
def test_dev_is_not_held_by_a_prod_freeze(engine, prod):
    freeze_now(prod)
    deployment = drive(new_release(engine, "dev", "backend"))
    assert deployment.state == S.SUCCEEDED


@pytest.mark.django_db
def test_approval_goes_on_during_a_freeze_and_the_start_waits_for_its_end(engine, prod, make_user):
    window = freeze_now(prod)
    deployment = new_release(engine, "prod", "frontend")
    deployment.state, deployment.approvals_required, deployment.queued_at = (
        S.PENDING_APPROVAL,
        1,
        None,
    )
    deployment.save()
    approved = decide(deployment.pk, make_user("approver", "carol"), "approve")
    assert approved.state == S.QUEUED
    advance(deployment.pk)
    assert Deployment.objects.get(pk=deployment.pk).state == S.QUEUED
    window.ends_at = timezone.now() - timedelta(seconds=1)  # the window is over
    window.save()
    assert drive(deployment).state == S.SUCCEEDED


@pytest.mark.django_db
def test_an_admin_overrides_the_freeze_with_a_reason(engine, prod, client_as):
    freeze_now(prod)
    deployment = new_release(engine, "prod", "frontend")
    advance(deployment.pk)
    url = reverse("deployment-override-freeze", args=[deployment.pk])

    assert client_as("deployer", "dan").post(url, {"reason": "hotfix"}).status_code == 403
    admin = client_as("admin", "root")
    admin.post(url, {"reason": "   "})
    deployment.refresh_from_db()
    assert deployment.freeze_override_by == ""
    assert not AuditEvent.objects.filter(action="deployment.freeze_override").exists()

    page = admin.get(reverse("deployment", args=[deployment.pk])).content.decode()
    assert "Deploy freeze:" in page and "Override freeze" in page
    admin.post(url, {"reason": "hotfix for the login outage"})
    deployment.refresh_from_db()
    assert deployment.freeze_override_by == "root"
    audit = AuditEvent.objects.get(action="deployment.freeze_override")
    assert audit.actor == "root" and audit.message == "hotfix for the login outage"
    assert drive(deployment).state == S.SUCCEEDED
    page = admin.get(reverse("deployment", args=[deployment.pk])).content.decode()
    assert "Freeze overridden by root" in page and "Override freeze" not in page


@pytest.mark.django_db
def test_a_finished_deployment_cannot_be_overridden(make_deployment, client_as):
    deployment = make_deployment("prod", "frontend", state=S.SUCCEEDED)
    url = reverse("deployment-override-freeze", args=[deployment.pk])
    client_as("admin", "root").post(url, {"reason": "why not"})
    deployment.refresh_from_db()
    assert deployment.freeze_override_by == ""
    assert not AuditEvent.objects.filter(action="deployment.freeze_override").exists()
