"""HTMX polls (portal/polls.py): a browser that holds what the tiles and the overview show gets a
304 without anything read or drawn; anyone else gets the body drawn once per version; a sweep,
a collector or a deployment step makes a new version at once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from environments.models import Environment

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}
READINGS = ("environments_probesample", "environments_statsample", "environments_healthevent")
POLLS = [reverse("environment", args=["prod"]), reverse("home")]


def reads_readings(queries) -> list[str]:
    return [q["sql"] for q in queries if any(table in q["sql"] for table in READINGS)]


@pytest.mark.parametrize("path", POLLS)
def test_an_unchanged_poll_is_a_304_that_reads_and_draws_nothing(client_as, seed_topology, path):
    client = client_as("viewer")
    first = client.get(path, **HX)
    assert first.status_code == 200 and first.content
    etag = first.headers["ETag"]
    assert {"private", "no-cache"} <= set(
        first.headers["Cache-Control"].replace(" ", "").split(",")
    )
    assert "HX-Request" in first.headers["Vary"]
    with CaptureQueriesContext(connection) as queries:
        again = client.get(path, HTTP_IF_NONE_MATCH=etag, **HX)
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag
    assert reads_readings(queries) == []
    assert len(queries) <= 7  # session, user, two for permissions, the version's (at most 3)


@pytest.mark.parametrize("path", POLLS)
def test_another_viewer_gets_the_body_drawn_for_the_first(client_as, seed_topology, path):
    first = client_as("viewer", "first").get(path, **HX)
    with CaptureQueriesContext(connection) as queries:
        second = client_as("viewer", "second").get(path, **HX)
    assert second.status_code == 200 and second.content == first.content
    assert reads_readings(queries) == []


@pytest.mark.parametrize("path", POLLS)
def test_new_readings_make_a_new_version_at_once(client_as, seed_topology, path):
    client = client_as("viewer")
    etag = client.get(path, **HX).headers["ETag"]
    Environment.readings_stored(Environment.objects.get(name="prod").pk)
    after = client.get(path, HTTP_IF_NONE_MATCH=etag, **HX)
    assert after.status_code == 200 and after.headers["ETag"] != etag


@pytest.mark.parametrize("path", POLLS)
def test_a_deployment_step_shows_on_the_next_poll(client_as, make_deployment, path):
    deployment = make_deployment("prod", "frontend", state="promoting")
    client = client_as("viewer")
    first = client.get(path, **HX)
    assert "Promoting image" in first.content.decode()
    deployment.transition("rolling_out", reason="rolling update")
    after = client.get(path, HTTP_IF_NONE_MATCH=first.headers["ETag"], **HX)
    assert after.status_code == 200
    assert "Rolling out" in after.content.decode()


@pytest.mark.parametrize("path", POLLS)
def test_the_permission_is_checked_before_any_304(
    client, client_as, make_user, seed_topology, path
):
    etag = client_as("viewer").get(path, **HX).headers["ETag"]
    client.force_login(make_user(None, "nobody"))
    assert client.get(path, HTTP_IF_NONE_MATCH=etag, **HX).status_code == 403


@pytest.mark.parametrize("path", POLLS)
def test_whole_pages_carry_no_etag(client_as, seed_topology, path):
    """A page has the person's name, inbox count and CSRF token in it: never shared."""
    page = client_as("viewer").get(path)
    assert page.status_code == 200 and "ETag" not in page.headers


def test_while_one_request_draws_a_new_version_the_others_get_the_last_one(
    client_as, seed_topology
):
    """A crowd polling in step never draws at once: one draws, the rest keep the last drawing,
    labelled with its own ETag so their next poll fetches the new one."""
    from django.core.cache import cache

    from environments.dashboard import poll_version
    from portal.polls import etag_for

    client = client_as("viewer")
    path = reverse("environment", args=["prod"])
    old = client.get(path, **HX)
    prod = Environment.objects.get(name="prod")
    Environment.readings_stored(prod.pk)

    new_etag = etag_for(f"tiles:{prod.pk}", poll_version(Environment.objects.get(pk=prod.pk)))
    cache.add(f"poll:tiles:{prod.pk}:{new_etag}:drawing", 1)  # another request draws it
    with CaptureQueriesContext(connection) as queries:
        meanwhile = client.get(path, HTTP_IF_NONE_MATCH=old.headers["ETag"], **HX)
    assert meanwhile.status_code == 304 and meanwhile.headers["ETag"] == old.headers["ETag"]
    assert reads_readings(queries) == []
    cache.delete(f"poll:tiles:{prod.pk}:{new_etag}:drawing")
    after = client.get(path, HTTP_IF_NONE_MATCH=old.headers["ETag"], **HX)
    assert after.status_code == 200 and after.headers["ETag"] == new_etag


def test_a_component_pages_readings_are_drawn_once_for_every_viewer(client_as, seed_topology):
    """Its history, with a deployer's rollback buttons and their CSRF tokens, is each person's
    own; its readings (instances, health, 24 h, figures) are drawn once per version."""
    path = reverse("component", args=["prod", "backend"])
    first = client_as("viewer", "first").get(path).content.decode()
    with CaptureQueriesContext(connection) as queries:
        second = client_as("deployer", "second").get(path).content.decode()
    assert reads_readings(queries) == []
    assert "Latency, last 24 h" in first and "Latency, last 24 h" in second
    assert 'name="csrfmiddlewaretoken"' not in first.split('id="history"')[1].split("</section>")[1]


def test_lists_and_insights_are_shared_and_show_what_changed_at_once(client_as, make_deployment):
    viewer = client_as("viewer")
    first = make_deployment("prod", "frontend", state="succeeded")
    for path in (reverse("releases"), reverse("deployments"), reverse("insights")):
        viewer.get(path)
        with CaptureQueriesContext(connection) as queries:
            assert viewer.get(path).status_code == 200
        assert not [q for q in queries if "deployments_release" in q["sql"] and "JOIN" in q["sql"]]
    again = make_deployment("prod", "backend", state="queued")
    assert again.release.version in viewer.get(reverse("releases")).content.decode()
    assert f"#{again.pk}" in viewer.get(reverse("deployments")).content.decode()
    first.transition("rolling_back", reason="bad")
    first.transition("rolled_back", reason="bad")
    assert "Rolled back" in viewer.get(reverse("deployments")).content.decode()


WATCHED = [
    reverse("environment", args=["prod"]),
    reverse("home"),
    reverse("component", args=["prod", "backend"]),
]


@pytest.mark.parametrize("path", WATCHED)
def test_what_someone_is_looking_at_is_drawn_ahead_when_a_sweep_stores_readings(
    client_as, seed_topology, django_capture_on_commit_callbacks, path
):
    """The worker that stores the sweep draws the new version, so none of the people polling
    pays for it: their next request reads no readings."""
    client = client_as("viewer")
    client.get(path)
    with django_capture_on_commit_callbacks(execute=True):
        Environment.readings_stored(Environment.objects.get(name="prod").pk)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(path)
    assert page.status_code == 200
    assert reads_readings(queries) == []


def test_nothing_is_drawn_ahead_that_nobody_looked_at(
    seed_topology, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    prod = Environment.objects.get(name="prod")
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        Environment.readings_stored(prod.pk)
    assert reads_readings(queries) == []
    # The stamp, the environment and its components' ids: nothing per component, no versions.
    assert len(queries) == 3
    assert cache.get(f"poll:tiles:{prod.pk}:latest") is None


def test_drawing_ahead_stops_once_nobody_has_asked_for_a_while(
    client_as, seed_topology, django_capture_on_commit_callbacks
):
    """Drawing ahead is not asking: a fragment drawn ahead but no longer looked at is not drawn
    again after its mark lapses (deleted here, as KEEP_SECONDS would)."""
    from django.core.cache import cache

    prod = Environment.objects.get(name="prod")
    client_as("viewer").get(reverse("environment", args=["prod"]))
    with django_capture_on_commit_callbacks(execute=True):
        Environment.readings_stored(prod.pk)  # drawn ahead: someone just looked
    cache.delete(f"poll:tiles:{prod.pk}:asked")
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        Environment.readings_stored(prod.pk)
    assert reads_readings(queries) == []


def test_a_drawing_that_fails_ahead_is_logged_and_the_next_request_draws(
    client_as, seed_topology, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    from environments import fragments

    client = client_as("viewer")
    path = reverse("environment", args=["prod"])
    old = client.get(path, **HX).headers["ETag"]

    def broken(environment):
        raise RuntimeError("template gone")

    monkeypatch.setattr(fragments, "tiles", broken)  # Gantry's own function, not a library's
    with django_capture_on_commit_callbacks(execute=True):
        Environment.readings_stored(Environment.objects.get(name="prod").pk)
    assert "template gone" in caplog.text and "new readings of environment" in caplog.text
    monkeypatch.undo()
    after = client.get(path, HTTP_IF_NONE_MATCH=old, **HX)
    assert after.status_code == 200 and after.headers["ETag"] != old
