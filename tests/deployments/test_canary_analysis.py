"""Canaries judged by their metrics, end to end: the sandbox's Cloud Monitoring series (read
with Google's client) for the canary's instances against the baseline's, over the same window,
on simulated time."""

import pytest

from deployments.models import Deployment

from .engine_helpers import drive, new_release

S = Deployment.State
pytestmark = pytest.mark.django_db


def image_of(deployment) -> str:
    return deployment.release.digest.removeprefix("sha256:")[:16]


def with_fault(engine, component: str, kind: str, **spec):
    """A new prod release of `component` whose image the sandbox `kind` fault picks."""
    deployment = new_release(engine, "prod", component)
    engine.inject_fault(kind, image=image_of(deployment), **spec)
    return deployment


def with_options(deployment, **options):
    """The deployment's component with these topology options too."""
    component = deployment.component
    component.options = {**component.options, **options}
    component.save(update_fields=["options"])
    return deployment


def judgements(deployment) -> list[dict]:
    return deployment.analysis.get("judgements", [])


def verdicts(judgement) -> dict[str, str]:
    return {v["metric"]: v["result"] for v in judgement["verdicts"]}


def test_a_canary_equal_to_its_baseline_is_promoted(engine):
    deployment = drive(new_release(engine, "prod", "backend"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    made = judgements(deployment)
    assert [j["index"] for j in made] == [1, 2] and made[-1]["outcome"] == "pass"
    last = made[-1]
    assert verdicts(last) == dict.fromkeys(["latency", "errors", "cpu", "memory"], "pass")
    # One canary instance against three: a sample a minute each, 600 s observed.
    latency = next(v for v in last["verdicts"] if v["metric"] == "latency")
    assert latency["samples"][0] >= 9 and latency["samples"][1] >= 3 * latency["samples"][0]
    timeline = " | ".join(deployment.events.values_list("message", flat=True))
    assert "canary analysis 1/2: score 100" in timeline
    assert "canary analysis passed (score 100); promoting it to every instance" in timeline


def test_a_canary_thirty_percent_slower_but_healthy_is_rolled_back_for_its_latency(engine):
    deployment = drive(with_fault(engine, "backend", "slow", factor=1.3))
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    assert "canary analysis failed at judgement 1 of 2" in deployment.reason
    assert "latency: high (+" in deployment.reason
    assert verdicts(judgements(deployment)[0])["latency"] == "high"
    templates = {
        i.template.rsplit("/", 1)[-1] for i in engine.mig("nemo-prod", "nemo-backend-mig").live()
    }
    assert deployment.template not in templates


def test_a_canary_that_throws_errors_is_rolled_back_for_them(engine):
    deployment = drive(with_fault(engine, "backend", "errors", rate=0.05))
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    assert "errors: high (+" in deployment.reason


def test_a_canary_without_metrics_fails_for_want_of_data_not_passes(engine):
    deployment = drive(with_fault(engine, "backend", "no_metrics"))
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    # Not at the first judgement (data may still come), at the end of the window.
    assert "canary analysis failed: " in deployment.reason
    assert "latency: no data (0 canary, " in deployment.reason
    assert "errors: no data (0 canary, " in deployment.reason
    assert [j["outcome"] for j in judgements(deployment)] == ["fail", "fail"]


def test_cloud_monitoring_unavailable_for_a_while_is_waited_out(engine):
    engine.inject_fault(
        "http_error",
        path="/google.monitoring.v3.MetricService/ListTimeSeries",
        method="POST",
        status=503,
        count=2,
    )
    deployment = drive(new_release(engine, "prod", "backend"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    retries = deployment.events.filter(kind="retry").values_list("message", flat=True)
    assert len(retries) == 2 and all("503" in line for line in retries)


def test_analysis_switched_off_in_the_topology_promotes_on_the_probes_alone(engine):
    deployment = drive(with_options(new_release(engine, "prod", "backend"), analysis=False))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert deployment.analysis == {}


def test_the_deployment_page_shows_each_judgement_with_its_charts(engine, client_as):
    from django.urls import reverse

    deployment = drive(with_fault(engine, "backend", "slow", factor=1.3))
    page = client_as("viewer").get(reverse("deployment", args=[deployment.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Canary analysis" in html and "pass at 95, marginal at 75" in html
    assert "Judgement 1 at" in html and "final score" in html
    assert html.count('class="chart compare"') == 4  # one per metric
    assert '<span class="badge status-down">high</span>' in html
    assert "<title>canary median:" in html and "<title>baseline median:" in html


def test_the_api_gives_the_judgements(engine, api, token_for):
    deployment = drive(new_release(engine, "prod", "backend"))
    answer = api("GET", f"/api/deployments/{deployment.pk}/", token_for("viewer")).json()
    analysis = answer["analysis"]
    assert (analysis["outcome"], analysis["score"], analysis["pass"]) == ("pass", 100.0, 95.0)
    first = analysis["judgements"][0]["verdicts"][0]
    assert first["metric"] == "latency" and first["result"] == "pass"
    assert len(first["canary"]) == first["samples"][0]


def test_verification_fails_when_the_load_balancer_passes_its_5xx_ceiling(engine):
    # Verification held open for over a minute, so whole minutes of the LB's figures exist.
    deployment = with_fault(engine, "frontend", "errors", rate=0.2)
    deployment = drive(with_options(deployment, verify_passes=30, verify_5xx_ceiling=5))
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    assert "the load balancer answered" in deployment.reason
    assert "of nemo-frontend-bes's requests with a 5xx" in deployment.reason
    assert "above the 5 % ceiling" in deployment.reason


def test_a_healthy_release_stays_under_the_ceiling(engine):
    deployment = new_release(engine, "prod", "frontend")
    assert drive(with_options(deployment, verify_passes=30, verify_5xx_ceiling=5)).state == (
        S.SUCCEEDED
    )
