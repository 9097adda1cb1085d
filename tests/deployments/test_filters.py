"""Filters and paging of the Releases, Deployments and Audit lists (issue 14, item 12)."""

from datetime import datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from deployments.models import Deployment, Release

S = Deployment.State
pytestmark = pytest.mark.django_db


def at(day: str) -> datetime:
    """Noon of a day, in the site's time zone."""
    return timezone.make_aware(datetime.fromisoformat(f"{day}T12:00:00"))


def rows(response) -> list:
    return list(response.context["page"].object_list)


@pytest.fixture
def releases(make_deployment):
    """Five releases: backend and frontend in prod, frontend in dev, over three days."""
    made = {
        "old-backend": make_deployment("prod", "backend", state=S.SUCCEEDED),
        "new-backend": make_deployment("prod", "backend", state=S.PENDING_APPROVAL),
        "frontend": make_deployment("prod", "frontend", state=S.FAILED),
        "dev-frontend": make_deployment("dev", "frontend", state=S.SUCCEEDED),
        "by-carol": make_deployment("prod", "ai-server", state=S.QUEUED),
    }
    days = ["2026-03-01", "2026-03-02", "2026-03-02", "2026-03-03", "2026-03-03"]
    for deployment, day in zip(made.values(), days, strict=True):
        Release.objects.filter(pk=deployment.release_id).update(created_at=at(day))
        Deployment.objects.filter(pk=deployment.pk).update(created_at=at(day))
    Release.objects.filter(pk=made["by-carol"].release_id).update(
        author="Carol-Dev", triggering_actor="dev-alice"
    )
    Release.objects.filter(pk=made["frontend"].release_id).update(triggering_actor="Carol-Dev")
    # The old backend release was deployed again later, and that failed: its latest state.
    again = Deployment.objects.create(
        release=made["old-backend"].release,
        component=made["old-backend"].component,
        state=S.FAILED,
        strategy="rolling",
        created_at=at("2026-03-04"),
    )
    made["again"] = again
    return made


def release_ids(response) -> set[int]:
    return {release.pk for release in rows(response)}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"old-backend", "new-backend", "frontend", "dev-frontend", "by-carol"}),
        ({"environment": "dev"}, {"dev-frontend"}),  # the old link still works
        ({"component": "frontend"}, {"frontend", "dev-frontend"}),
        ({"environment": "prod", "component": "frontend"}, {"frontend"}),
        ({"author": "carol"}, {"by-carol", "frontend"}),  # actor or who started the run
        ({"state": "failed"}, {"old-backend", "frontend"}),  # of the latest deployment
        ({"state": "succeeded"}, {"dev-frontend"}),
        ({"created_from": "2026-03-02"}, {"new-backend", "frontend", "dev-frontend", "by-carol"}),
        ({"created_to": "2026-03-02"}, {"old-backend", "new-backend", "frontend"}),
        ({"created_from": "2026-03-02", "created_to": "2026-03-02"}, {"new-backend", "frontend"}),
    ],
)
def test_release_filters(client_as, releases, query, expected):
    response = client_as("viewer").get(reverse("releases"), query)
    assert response.status_code == 200
    assert release_ids(response) == {releases[name].release_id for name in expected}
    assert response.content.decode().count('<td><a href="/releases/') == len(expected)


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"created_from": "yesterday"}, "created_from", "Enter a valid date."),
        ({"created_to": "2026-02-30"}, "created_to", "Enter a valid date."),
        ({"state": "exploded"}, "state", "Select a valid choice."),
        (
            {"created_from": "2026-03-02", "created_to": "2026-03-01"},  # "from" stays
            "created_to",
            "“To” must not be before “From”.",
        ),
    ],
)
def test_a_bad_filter_is_reported_and_left_out(client_as, releases, query, field, message):
    response = client_as("viewer").get(reverse("releases"), {**query, "component": "frontend"})
    assert response.status_code == 200
    assert message in response.context["form"].errors[field][0]
    page = response.content.decode()
    assert 'role="alert"' in page and "This filter is left out." in page
    # The filters that are good still apply.
    assert release_ids(response) == {
        releases["frontend"].release_id,
        releases["dev-frontend"].release_id,
    }


def test_releases_are_paged_by_50_and_the_pager_keeps_the_filters(client_as, make_deployment):
    for _ in range(52):
        make_deployment("prod", "frontend", state=S.SUCCEEDED)
    make_deployment("prod", "backend", state=S.SUCCEEDED)
    client = client_as("viewer")
    first = client.get(reverse("releases"), {"component": "frontend"})
    assert len(rows(first)) == 50
    page = first.content.decode()
    assert 'href="?page=2&amp;component=frontend"' in page and "page 1 of 2" in page
    second = client.get(reverse("releases"), {"component": "frontend", "page": "2"})
    assert len(rows(second)) == 2
    assert 'href="?page=1&amp;component=frontend"' in second.content.decode()
    assert len(rows(client.get(reverse("releases"), {"page": "nonsense"}))) == 50


def test_the_release_list_costs_the_same_for_few_and_many(
    client_as, make_deployment, django_assert_num_queries
):
    client = client_as("viewer")
    url = reverse("releases")
    query = {"state": "succeeded", "author": "alice", "created_from": "2020-01-01"}
    for _ in range(3):
        make_deployment(state=S.SUCCEEDED)
    client.get(url, query)
    cache.clear()  # measure the rows drawn, not served from the last drawing (portal/polls)
    with CaptureQueriesContext(connection) as few:
        assert len(rows(client.get(url, query))) == 3
    for _ in range(30):
        make_deployment(state=S.SUCCEEDED)
    with django_assert_num_queries(len(few)):
        assert len(rows(client.get(url, query))) == 33


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"old-backend", "new-backend", "frontend", "dev-frontend", "by-carol", "again"}),
        ({"environment": "dev"}, {"dev-frontend"}),
        ({"component": "backend"}, {"old-backend", "new-backend", "again"}),
        ({"state": "failed"}, {"frontend", "again"}),  # the deployment's own state
        ({"author": "CAROL"}, {"by-carol", "frontend"}),
        ({"created_from": "2026-03-03"}, {"dev-frontend", "by-carol", "again"}),
        ({"created_from": "2026-03-01", "created_to": "2026-03-01"}, {"old-backend"}),
    ],
)
def test_deployment_filters(client_as, releases, query, expected):
    response = client_as("viewer").get(reverse("deployments"), query)
    assert response.status_code == 200
    assert {d.pk for d in rows(response)} == {releases[name].pk for name in expected}
    assert response.content.decode().count('<td><a href="/deployments/') == len(expected)


def test_deployments_are_newest_first_and_paged(client_as, make_deployment):
    made = [make_deployment("dev", "frontend", state=S.SUCCEEDED) for _ in range(51)]
    client = client_as("viewer")
    first = client.get(reverse("deployments"), {"environment": "dev"})
    assert rows(first)[0] == made[-1] and len(rows(first)) == 50
    assert 'href="?page=2&amp;environment=dev"' in first.content.decode()
    second = client.get(reverse("deployments"), {"environment": "dev", "page": "2"})
    assert rows(second) == [made[0]]


def test_a_bad_date_on_the_deployments_list_is_a_message_not_a_500(client_as, releases):
    response = client_as("viewer").get(reverse("deployments"), {"created_to": "31/12/2026"})
    assert response.status_code == 200
    assert "To: Enter a valid date. This filter is left out." in response.content.decode()
    assert len(rows(response)) == 6


def test_the_deployment_list_costs_the_same_for_few_and_many(
    client_as, make_deployment, django_assert_num_queries
):
    client = client_as("viewer")
    url = reverse("deployments")
    query = {"environment": "prod", "author": "alice"}
    for _ in range(3):
        make_deployment(state=S.SUCCEEDED)
    client.get(url, query)
    cache.clear()  # measure the rows drawn, not served from the last drawing (portal/polls)
    with CaptureQueriesContext(connection) as few:
        assert len(rows(client.get(url, query))) == 3
    for _ in range(30):
        make_deployment(state=S.FAILED)
    with django_assert_num_queries(len(few)):
        assert len(rows(client.get(url, query))) == 33


def test_the_lists_need_a_role(client_as):
    for name in ("releases", "deployments", "audit"):
        assert client_as(None, f"nobody-{name}").get(reverse(name)).status_code == 403


# The audit log


@pytest.fixture
def events(make_deployment):
    deployment = make_deployment(state=S.PENDING_APPROVAL)
    made = [
        AuditEvent.record("deployment.approve", actor="bob", obj=deployment),
        AuditEvent.record("deployment.approval_refused", actor="dev-alice", obj=deployment),
        AuditEvent.record("deployment.queued", actor="Bob", obj=deployment),
        AuditEvent.record("topology.load", message="loaded"),
        AuditEvent.record("auth.login", actor="bobby"),
    ]
    days = ["2026-03-01", "2026-03-02", "2026-03-02", "2026-03-03", "2026-03-04"]
    # Audit rows are never updated through the ORM; a test may set the time in SQL.
    with connection.cursor() as cursor:
        for event, day in zip(made, days, strict=True):
            cursor.execute(
                f"UPDATE {AuditEvent._meta.db_table} SET created_at = %s WHERE id = %s",
                [connection.ops.adapt_datetimefield_value(at(day)), event.pk],
            )
    return {"deployment": deployment, "events": made}


def audit_rows(client, query) -> list[str]:
    """The actions the audit page lists for `query`, newest first."""
    response = client.get(reverse("audit"), query)
    assert response.status_code == 200
    return [event.action for event in rows(response)]


APPROVE, REFUSED, QUEUED = "deployment.approve", "deployment.approval_refused", "deployment.queued"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"actor": "bob"}, [QUEUED, APPROVE]),  # the whole name, in any case: not bobby
        ({"actor": "bobby"}, ["auth.login"]),
        ({"action": "approv"}, [REFUSED, APPROVE]),  # any part of the action
        ({"action": QUEUED}, [QUEUED]),  # what the row's own link asks for
        ({"object_type": "deployments.deployment"}, [QUEUED, REFUSED, APPROVE]),
        (
            {"created_from": "2026-03-02", "created_to": "2026-03-03"},
            ["topology.load", QUEUED, REFUSED],
        ),
        ({"actor": "bob", "created_to": "2026-03-01"}, [APPROVE]),
    ],
)
def test_audit_filters(client_as, events, query, expected):
    assert audit_rows(client_as("viewer", "vic"), query) == expected


def test_audit_object_filter_by_type_and_id(client_as, events):
    pk = str(events["deployment"].pk)
    client = client_as("viewer", "vic")
    query = {"object_type": "deployments.deployment", "object_id": pk}
    assert len(audit_rows(client, query)) == 3
    assert audit_rows(client, {**query, "object_id": "999999"}) == []


def test_a_bad_audit_date_is_a_message_and_the_rest_applies(client_as, events):
    response = client_as("viewer", "vic").get(
        reverse("audit"), {"actor": "dev-alice", "created_from": "2026-13-01"}
    )
    assert response.status_code == 200
    assert "From: Enter a valid date. This filter is left out." in response.content.decode()
    assert [event.action for event in rows(response)] == ["deployment.approval_refused"]


def test_the_audit_log_is_paged_by_50_keeping_the_filters(client_as, make_deployment):
    for n in range(55):
        AuditEvent.record("topology.load", actor="loader", message=f"load {n}")
    AuditEvent.record("topology.load", actor="someone-else")
    client = client_as("viewer", "vic")
    first = client.get(reverse("audit"), {"actor": "loader", "action": "topology"})
    assert len(rows(first)) == 50
    assert 'href="?page=2&amp;actor=loader&amp;action=topology"' in first.content.decode()
    second = client.get(reverse("audit"), {"actor": "loader", "action": "topology", "page": 2})
    assert len(rows(second)) == 5


def test_the_audit_log_costs_the_same_for_few_and_many(client_as, django_assert_num_queries):
    client = client_as("viewer", "vic")
    url = reverse("audit")
    query = {"action": "topology", "created_from": "2020-01-01"}
    for _ in range(3):
        AuditEvent.record("topology.load")
    client.get(url, query)
    cache.clear()  # measure the rows drawn, not served from the last drawing (portal/polls)
    with CaptureQueriesContext(connection) as few:
        assert len(rows(client.get(url, query))) == 3
    for _ in range(40):
        AuditEvent.record("topology.load")
    with django_assert_num_queries(len(few)):
        assert len(rows(client.get(url, query))) == 43


def test_dates_are_whole_days_in_the_sites_time_zone(client_as, make_deployment, settings):
    late = make_deployment(state=S.SUCCEEDED)
    Release.objects.filter(pk=late.release_id).update(
        created_at=at("2026-03-02") + timedelta(hours=11, minutes=59)  # 23:59 on the 2nd
    )
    client = client_as("viewer")
    on_the_2nd = {"created_from": "2026-03-02", "created_to": "2026-03-02"}
    assert len(rows(client.get(reverse("releases"), on_the_2nd))) == 1
    on_the_3rd = {"created_from": "2026-03-03"}
    assert rows(client.get(reverse("releases"), on_the_3rd)) == []


@pytest.mark.parametrize("name", ["releases", "deployments"])
def test_the_shared_filter_form_offers_clear_and_shows_a_new_component_at_once(
    client_as, releases, name
):
    """The form is drawn once per version with the rows (a GET form has no CSRF token), so the
    version names what it offers too."""
    from environments.models import Component

    client = client_as("viewer")
    url = reverse(name)
    assert f'<a href="{url}">clear</a>' in client.get(f"{url}?component=backend").content.decode()
    page = client.get(url).content.decode()
    assert "clear</a>" not in page and '<option value="vectors">' not in page
    Component.objects.filter(environment__name="dev", name="chromadb").update(name="vectors")
    assert '<option value="vectors">' in client.get(url).content.decode()
