import threading

import pytest
from django.db import close_old_connections, connection

from audit.models import AuditEvent
from deployments.models import Deployment, InvalidTransition

S = Deployment.State


@pytest.mark.django_db
def test_a_valid_transition_is_stamped_logged_and_audited(make_deployment):
    deployment = make_deployment()
    deployment.transition(S.PROMOTING, reason="started")
    deployment.transition(S.ROLLING_OUT)
    deployment.transition(S.VERIFYING)
    deployment.transition(S.SUCCEEDED, reason="healthy 3 times in a row")
    deployment.refresh_from_db()
    assert deployment.state == S.SUCCEEDED
    assert deployment.started_at and deployment.finished_at >= deployment.started_at
    timeline = list(deployment.events.values_list("message", flat=True))
    assert timeline == [
        "queued → promoting: started",
        "promoting → rolling_out",
        "rolling_out → verifying",
        "verifying → succeeded: healthy 3 times in a row",
    ]
    audit = AuditEvent.objects.filter(object_type="deployments.deployment")
    assert list(audit.order_by("id").values_list("action", flat=True)) == [
        "deployment.promoting",
        "deployment.rolling_out",
        "deployment.verifying",
        "deployment.succeeded",
    ]


@pytest.mark.django_db
def test_an_invalid_transition_is_refused_and_writes_nothing(make_deployment):
    deployment = make_deployment()
    with pytest.raises(InvalidTransition, match="cannot go from queued to succeeded"):
        deployment.transition(S.SUCCEEDED)
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED
    assert deployment.events.count() == 0
    assert not AuditEvent.objects.filter(object_type="deployments.deployment").exists()


@pytest.mark.parametrize("final", sorted(Deployment.FINAL - {S.SUCCEEDED}))
def test_final_states_have_no_way_out(final):
    assert Deployment.TRANSITIONS[final] == set()


def test_every_state_is_waiting_active_or_final():
    every = Deployment.WAITING | Deployment.ACTIVE | Deployment.FINAL
    assert every == set(S)
    assert not (Deployment.ACTIVE & Deployment.FINAL)


@pytest.mark.django_db
def test_one_deployment_per_component_and_fifo(make_deployment):
    first = make_deployment()
    second = make_deployment()
    other_component = make_deployment(component="frontend")
    assert second.try_start() is False
    assert second.reason == "waiting for an older queued deployment"
    assert first.try_start() is True
    assert first.state == S.PROMOTING
    assert second.try_start() is False
    assert second.reason.startswith("waiting for deployment #")
    assert other_component.try_start() is True
    assert first.try_start() is True  # already started: idempotent, no second transition
    assert first.events.filter(kind="state", message__contains="→ promoting").count() == 1
    first.transition(S.FAILED, reason="boom")
    assert Deployment.next_queued(second.component_id) == second
    assert second.try_start() is True


@pytest.mark.django_db(transaction=True)
def test_concurrent_starters_take_the_component_once(make_deployment):
    if connection.vendor == "sqlite":
        pytest.skip("row locks need PostgreSQL or MySQL; SQLite serialises whole transactions")
    deployments = [make_deployment() for _ in range(2)]
    Deployment.objects.update(queued_at=deployments[0].queued_at)  # neither is ahead in line
    barrier = threading.Barrier(len(deployments))
    results = {}

    def start(deployment):
        try:
            barrier.wait()
            results[deployment.pk] = deployment.try_start()
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=start, args=(d,)) for d in deployments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == [False, True]
    assert Deployment.objects.filter(state=S.PROMOTING).count() == 1
    assert Deployment.objects.filter(state=S.QUEUED).count() == 1
