"""The component page's deployment history: what runs now, who started and approved each
deployment, paging, a fixed number of queries; and the rollback it offers, asked first."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from deployments.models import Approval, Deployment, DeploymentEvent

pytestmark = pytest.mark.django_db
S = Deployment.State
PAGE = "/environments/prod/components/backend/"
ROLLBACK = "/environments/prod/components/backend/rollback/"


@pytest.fixture
def done(make_deployment):
    """done(state=…, minutes_ago=…) -> a finished prod backend deployment that took 4 min 5 s."""

    def make(state=S.SUCCEEDED, minutes_ago=60, **fields):
        finished = timezone.now() - timedelta(minutes=minutes_ago)
        return make_deployment(
            "prod",
            "backend",
            state=state,
            started_at=finished - timedelta(minutes=4, seconds=5),
            finished_at=finished,
            **fields,
        )

    return make


def rows(page: str) -> int:
    return page.count('<tr id="history-')


def test_the_page_shows_what_runs_now_and_each_deployment(client_as, done, make_user):
    old = done(minutes_ago=120, requested_by="dana")
    Deployment.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=3))
    old.release.run_url = "https://github.com/nemo/backend/actions/runs/77"
    old.release.save()
    Approval.objects.create(deployment=old, user=make_user("approver", "bob"), decision="approve")
    Approval.objects.create(deployment=old, user=make_user("approver", "eve"), decision="reject")
    running = done(minutes_ago=30, requested_by="github:dev-alice")
    failed = done(state=S.FAILED, minutes_ago=10)

    page = client_as("viewer").get(PAGE).content.decode()

    runs_now = page.split('<p class="running">')[1].split("</p>")[0]
    assert running.release.version in runs_now and running.release.short_sha in runs_now
    assert rows(page) == 3
    assert page.index(f'id="history-{failed.pk}"') < page.index(f'id="history-{old.pk}"')
    old_row = page.split(f'<tr id="history-{old.pk}">')[1].split("</tr>")[0]
    assert f'<a href="{old.release.run_url}">{old.release.version}</a>' in old_row
    assert f'href="https://github.com/nemo/backend/commit/{old.release.sha}"' in old_row
    assert "<td>dana</td>" in old_row and "<td>bob</td>" in old_row  # eve rejected: not listed
    assert "4 min 5 s" in old_row and 'class="state state-succeeded"' in old_row
    assert "(runs now)" in page.split(f'<tr id="history-{running.pk}">')[1].split("</tr>")[0]
    assert "Roll back to this" not in page  # a viewer is offered no rollback


def test_a_deployer_is_offered_a_rollback_only_to_earlier_good_releases(client_as, done):
    old = done(minutes_ago=120)
    running = done(minutes_ago=30)
    failed = done(state=S.FAILED, minutes_ago=10)
    done(state=S.ROLLED_BACK, minutes_ago=5)

    page = client_as("deployer").get(PAGE).content.decode()

    assert page.count("Roll back to this") == 1
    row = page.split(f'<tr id="history-{old.pk}">')[1].split("</tr>")[0]
    assert f'action="{ROLLBACK}"' in row and f'name="release" value="{old.release_id}"' in row
    for other in (running, failed):
        assert "Roll back" not in page.split(f'<tr id="history-{other.pk}">')[1].split("</tr>")[0]


def test_a_component_nothing_was_deployed_to_says_so(client_as, seed_topology):
    page = client_as("viewer").get(PAGE).content.decode()
    assert "Nothing Gantry deployed runs here yet." in page and "No deployments yet." in page


def test_the_history_is_paged_newest_first(client_as, make_deployment):
    made = [make_deployment("prod", "backend", state=S.SUPERSEDED) for _ in range(23)]
    client = client_as("viewer")
    first = client.get(PAGE).content.decode()
    second = client.get(PAGE, {"page": 2}).content.decode()
    assert rows(first) == 20 and rows(second) == 3
    assert f'id="history-{made[-1].pk}"' in first and f'id="history-{made[0].pk}"' in second
    assert "page 1 of 2" in first and 'href="?page=2#history">older</a>' in first
    assert 'href="?page=1#history">newer</a>' in second
    assert rows(client.get(PAGE, {"page": "nonsense"}).content.decode()) == 20


def test_the_page_reads_in_the_same_number_of_queries_however_many_deployments(
    client_as, done, make_user, django_assert_num_queries
):
    approver = make_user("approver", "bob")

    def add(n):
        for i in range(n):
            deployment = done(minutes_ago=1000 - i)
            Approval.objects.create(deployment=deployment, user=approver, decision="approve")

    from django.core.cache import cache

    client = client_as("deployer")
    add(3)
    with CaptureQueriesContext(connection) as small:
        assert client.get(PAGE).status_code == 200
    add(40)
    cache.clear()  # the readings part drawn again, as the first time (portal/polls.py)
    with django_assert_num_queries(len(small.captured_queries)):
        page = client.get(PAGE).content.decode()
    assert rows(page) == 20 and page.count("<td>bob</td>") == 20


def counts():
    return (Deployment.objects.count(), DeploymentEvent.objects.count(), AuditEvent.objects.count())


def test_rolling_back_asks_first_showing_what_changes(client_as, done):
    old = done(minutes_ago=120, template="gantry-backend-00000001-d1")
    running = done(minutes_ago=30, template="gantry-backend-00000002-d2")
    client = client_as("deployer")
    before = counts()

    asked = client.post(ROLLBACK, {"release": old.release_id})

    page = asked.content.decode()
    assert asked.status_code == 200 and f"Roll prod/backend back to {old.release.version}?" in page
    compare = f"https://github.com/nemo/backend/compare/{old.release.sha}...{running.release.sha}"
    assert f'href="{compare}"' in page
    assert old.release.image_by_digest in page and running.release.image_by_digest in page
    assert old.release.short_sha in page and running.release.short_sha in page
    assert "gantry-backend-00000001-d1" in page and "gantry-backend-00000002-d2" in page
    assert "needs 1 approval: the rollback waits for them" in page
    assert "skip_approval_reason" not in page  # a deployer may not skip it
    assert f'name="release" value="{old.release_id}"' in page
    assert counts() == before

    response = client.post(ROLLBACK, {"release": old.release_id, "confirm": "1"}, follow=True)

    again = old.release.deployments.exclude(pk=old.pk).get()
    assert again.state == S.PENDING_APPROVAL and again.requested_by == "deployer"
    assert response.redirect_chain[-1][0] == f"{PAGE}#history"
    assert f'<tr id="history-{again.pk}">' in response.content.decode()
    assert AuditEvent.objects.filter(action="deployment.rollback_requested").count() == 1


def test_an_approver_who_deploys_may_roll_back_without_a_new_approval(client_as, done):
    old = done(minutes_ago=120)
    done(minutes_ago=30)
    client = client_as("admin", "carol")
    assert (
        "skip_approval_reason"
        in client.post(ROLLBACK, {"release": old.release_id}).content.decode()
    )
    client.post(
        ROLLBACK, {"release": old.release_id, "confirm": "1", "skip_approval_reason": "incident 9"}
    )
    assert old.release.deployments.exclude(pk=old.pk).get().state == S.QUEUED
    assert AuditEvent.objects.get(action="deployment.approval_skipped").message == "incident 9"


CHOOSE = "Choose a release of prod/backend to roll back to."


@pytest.mark.parametrize(
    ("release", "message"),
    [
        ("", CHOOSE),
        ("abc", CHOOSE),
        ("99999999", CHOOSE),
        ("1" * 30, CHOOSE),
        ("running", "is what runs on prod/backend now"),
        ("failed", "never succeeded on prod/backend"),
        ("frontend", "is a release of prod/frontend, not of prod/backend"),
    ],
)
def test_a_release_it_refuses_says_why_and_writes_nothing(
    client_as, done, make_deployment, release, message
):
    done(minutes_ago=120)
    running = done(minutes_ago=30)
    failed = done(state=S.FAILED, minutes_ago=10)
    frontend = make_deployment("prod", "frontend", state=S.SUCCEEDED)
    value = {
        "running": running.release_id,
        "failed": failed.release_id,
        "frontend": frontend.release_id,
    }.get(release, release)
    client = client_as("deployer")
    before = counts()

    for confirm in ("", "1"):  # neither the question nor the answer gets past it
        response = client.post(ROLLBACK, {"release": value, "confirm": confirm}, follow=True)
        assert response.redirect_chain == [(PAGE, 302)]
        assert message in response.content.decode()
    assert counts() == before


@pytest.mark.parametrize("role", ["viewer", "approver"])
def test_who_may_not_roll_back_gets_403(client_as, done, role):
    old = done(minutes_ago=120)
    done(minutes_ago=30)
    client = client_as(role)
    before = counts()
    response = client.post(ROLLBACK, {"release": old.release_id, "confirm": "1"})
    assert response.status_code == 403 and counts() == before


def test_the_builds_author_is_asked_again_with_why_and_nothing_is_written(client_as, done):
    old = done(minutes_ago=120)  # built by dev-alice
    done(minutes_ago=30)
    client = client_as("admin", "dev-alice")
    before = counts()
    answer = client.post(
        ROLLBACK, {"release": old.release_id, "confirm": "1", "skip_approval_reason": "mine"}
    )
    page = answer.content.decode()
    assert answer.status_code == 200 and page.count("It must go through approval.") == 1
    assert 'value="mine"' in page  # what they typed is kept
    assert counts() == before
