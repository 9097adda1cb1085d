"""The canary judge on numbers alone: Mann-Whitney verdicts, the tolerance band, directions,
weights, critical metrics and the thresholds."""

import random

import pytest

from deployments.judge import HIGH, LOW, NODATA, PASS, classify, judge
from environments.canary import AnalysisConfig, CanaryMetric, analysis_config

LATENCY = CanaryMetric("latency", critical=True, tolerance=0.15)


def noisy(centre: float, n: int, seed: int, spread: float = 0.05) -> list[float]:
    rng = random.Random(seed)
    return [centre * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def test_thirty_percent_slower_is_high_with_its_effect():
    verdict = classify(LATENCY, noisy(130, 5, 1), noisy(100, 15, 2))
    assert verdict.result == HIGH and not verdict.passed
    assert 0.25 < verdict.effect < 0.35 and verdict.p_value < 0.01
    assert (
        verdict.line() == f"latency: high (+{verdict.effect * 100:.0f} %, p={verdict.p_value:.2g})"
    )


def test_equal_samples_pass():
    verdict = classify(LATENCY, noisy(100, 5, 3), noisy(100, 15, 4))
    assert verdict.result == PASS and verdict.passed


def test_a_significant_change_inside_the_tolerance_band_passes():
    canary, baseline = noisy(108, 10, 5, 0.01), noisy(100, 30, 6, 0.01)
    assert classify(CanaryMetric("latency", tolerance=0.0), canary, baseline).result == HIGH
    assert classify(CanaryMetric("latency", tolerance=0.1), canary, baseline).result == PASS


def test_direction_decides_whether_low_or_high_fails():
    canary, baseline = noisy(60, 5, 7), noisy(100, 15, 8)
    assert classify(CanaryMetric("cpu"), canary, baseline).result == LOW
    assert classify(CanaryMetric("cpu"), canary, baseline).passed  # lower CPU is fine
    assert not classify(CanaryMetric("cpu", direction="decrease"), canary, baseline).passed
    assert not classify(CanaryMetric("cpu", direction="either"), canary, baseline).passed


def test_too_few_samples_is_no_data_and_never_a_pass():
    verdict = classify(LATENCY, [100.0, 101.0], noisy(100, 15, 9), min_samples=3)
    assert verdict.result == NODATA and not verdict.passed
    assert verdict.line() == "latency: no data (2 canary, 15 baseline samples)"


def test_identical_constant_samples_pass_without_a_test():
    assert classify(LATENCY, [5.0] * 5, [5.0] * 15).result == PASS


def test_score_is_the_weighted_share_and_thresholds_decide():
    config = AnalysisConfig(
        metrics=(
            CanaryMetric("latency", weight=3),
            CanaryMetric("cpu", weight=1, direction="either", tolerance=0.0),
        )
    )
    same = (noisy(100, 5, 10), noisy(100, 15, 11))
    lower = (noisy(50, 5, 12), noisy(100, 15, 13))
    judgement = judge(config, {"latency": same, "cpu": lower})
    assert judgement.score == 75.0 and judgement.outcome == "marginal"
    assert "cpu: low" in judgement.summary() and "latency" not in judgement.summary()
    assert judge(config, {"latency": same, "cpu": same}).outcome == "pass"
    higher = (noisy(150, 5, 18), noisy(100, 15, 19))
    assert judge(config, {"latency": higher, "cpu": same}).outcome == "fail"


def test_a_failing_critical_metric_fails_whatever_the_score():
    config = AnalysisConfig(
        metrics=(LATENCY, *(CanaryMetric(n, weight=10) for n in ("errors", "cpu", "memory"))),
        marginal=0,
        pass_score=50,
    )
    same = (noisy(1, 5, 14), noisy(1, 15, 15))
    data = {"latency": (noisy(130, 5, 16), noisy(100, 15, 17)), "errors": same}
    data |= {"cpu": same, "memory": same}
    judgement = judge(config, data)
    assert judgement.score > 90 and judgement.outcome == "fail"
    assert [v.metric.name for v in judgement.critical_failures] == ["latency"]
    assert "critical metric failing" in judgement.summary()


def test_no_data_for_any_metric_fails():
    judgement = judge(AnalysisConfig(), {})
    assert judgement.score == 0 and judgement.outcome == "fail"
    assert "latency: no data (0 canary, 0 baseline samples)" in judgement.summary()


def test_the_defaults_and_the_judgement_schedule():
    config = analysis_config({})
    assert [m.name for m in config.metrics] == ["latency", "errors", "cpu", "memory"]
    assert (config.marginal, config.pass_score, config.window) == (75, 95, 600)
    assert config.judgements == 2 and [config.due(1), config.due(2)] == [300, 600]
    odd = analysis_config({"analysis": {"window": 700, "interval": 300}})
    assert odd.judgements == 3 and odd.due(3) == 700
    assert analysis_config({"analysis": False}).enabled is False


@pytest.mark.parametrize(
    "analysis, problem",
    [
        ("yes", "must be a mapping (or false)"),
        ({"windw": 600}, "unknown key 'windw'"),
        ({"window": 30}, "window must be at least 60"),
        ({"window": 600, "interval": 900}, "interval must be between 60 and 600"),
        ({"pass": 101}, "pass must be between 0 and 100"),
        ({"marginal": 96}, "marginal (96) must not be above pass"),
        ({"metrics": []}, "metrics must be a non-empty list"),
        ({"metrics": [{"name": "p99"}]}, "metrics[0].name must be one of latency, errors"),
        ({"metrics": [{"name": "cpu", "direction": "up"}]}, "metrics[0].direction must be"),
        ({"metrics": [{"name": "cpu", "critical": "yes"}]}, "metrics[0].critical must be true"),
        ({"metrics": [{"name": "cpu"}, {"name": "cpu"}]}, "name one metric twice"),
        ({"metrics": [{"name": "cpu", "weight": 0}]}, "a weight above 0"),
        ({"min_samples": True}, "min_samples must be a number"),
    ],
)
def test_bad_analysis_options_say_what_is_wrong(analysis, problem):
    with pytest.raises(ValueError) as caught:
        analysis_config({"analysis": analysis})
    assert problem in str(caught.value)
