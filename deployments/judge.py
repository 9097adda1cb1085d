"""The canary judge: each metric's canary samples against the baseline's, then one score.

As Kayenta's judge does it:
- A metric with fewer than `min_samples` on either side is NODATA.
- Otherwise the Mann-Whitney U test (two-sided) asks whether the two differ; if not at the
  configured confidence, the metric passes.
- If they do, the effect is the Hodges-Lehmann shift (the median of every canary-minus-baseline
  difference) over the baseline's median. Within the metric's tolerance band it passes;
  beyond it is HIGH or LOW, and fails when that is its bad direction.
- The score is the weighted share of passing metrics (0-100). A failing critical metric, or
  one with no data, fails the canary whatever the score; otherwise the score is compared
  with the `marginal` and `pass` thresholds.

Pure: no I/O, no Django; the numbers in, verdicts out.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import mannwhitneyu

from environments.canary import AnalysisConfig, CanaryMetric

PASS, HIGH, LOW, NODATA = "pass", "high", "low", "nodata"
OUTCOME_PASS, OUTCOME_MARGINAL, OUTCOME_FAIL = "pass", "marginal", "fail"


@dataclass(frozen=True)
class Verdict:
    metric: CanaryMetric
    result: str  # PASS, HIGH, LOW or NODATA
    canary_median: float | None = None
    baseline_median: float | None = None
    effect: float | None = None  # relative shift: +0.31 is 31 % above the baseline
    p_value: float | None = None
    samples: tuple[int, int] = (0, 0)  # canary, baseline

    @property
    def passed(self) -> bool:
        """HIGH fails an "increase" metric, LOW a "decrease" one; "either" fails on both."""
        if self.result == PASS:
            return True
        if self.result == NODATA:
            return False
        bad = {"increase": {HIGH}, "decrease": {LOW}, "either": {HIGH, LOW}}
        return self.result not in bad[self.metric.direction]

    def line(self) -> str:
        """'latency: high (+31 %, p=0.0004)' for the timeline and the cause."""
        if self.result == NODATA:
            canary, baseline = self.samples
            return f"{self.metric.name}: no data ({canary} canary, {baseline} baseline samples)"
        shift = "" if self.effect is None else f"{self.effect * 100:+.0f} %, "
        return f"{self.metric.name}: {self.result} ({shift}p={self.p_value:.2g})"

    def as_dict(self) -> dict:
        return {
            "metric": self.metric.name,
            "unit": self.metric.unit,
            "result": self.result,
            "passed": self.passed,
            "critical": self.metric.critical,
            "weight": self.metric.weight,
            "direction": self.metric.direction,
            "tolerance": self.metric.tolerance,
            "canary_median": self.canary_median,
            "baseline_median": self.baseline_median,
            "effect": self.effect,
            "p_value": self.p_value,
            "samples": list(self.samples),
        }


@dataclass(frozen=True)
class Judgement:
    verdicts: tuple[Verdict, ...]
    score: float
    outcome: str  # OUTCOME_PASS, OUTCOME_MARGINAL or OUTCOME_FAIL
    config: AnalysisConfig

    @property
    def critical_failures(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.metric.critical and not v.passed)

    @property
    def failing(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if not v.passed)

    def summary(self) -> str:
        """'score 50 < 95 (marginal 75): latency: high (+31 %, p=0.0004); …'"""
        config = self.config
        if self.outcome == OUTCOME_PASS:
            head = f"score {self.score:.0f} ≥ {config.pass_score:g}"
        else:
            head = f"score {self.score:.0f} < {config.pass_score:g} (marginal {config.marginal:g})"
        shown = self.failing or self.verdicts
        if self.critical_failures:
            head += ", critical metric failing"
        return f"{head}: " + "; ".join(v.line() for v in shown)


def hodges_lehmann(canary: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of all pairwise differences: the shift the U test's confidence interval
    is centred on."""
    return statistics.median(c - b for c in canary for b in baseline)


def classify(
    metric: CanaryMetric,
    canary: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 0.95,
    min_samples: int = 3,
) -> Verdict:
    sizes = (len(canary), len(baseline))
    if min(sizes) < min_samples:
        return Verdict(metric, NODATA, samples=sizes)
    canary_median, baseline_median = statistics.median(canary), statistics.median(baseline)
    if len(set(canary) | set(baseline)) == 1:  # all equal: nothing to test
        return Verdict(metric, PASS, canary_median, baseline_median, 0.0, 1.0, sizes)
    p_value = float(mannwhitneyu(canary, baseline, alternative="two-sided").pvalue)
    shift = hodges_lehmann(canary, baseline)
    scale = abs(baseline_median) or max(abs(canary_median), 1e-12)
    effect = shift / scale
    if p_value >= 1 - confidence or abs(effect) <= metric.tolerance:
        result = PASS
    else:
        result = HIGH if effect > 0 else LOW
    return Verdict(metric, result, canary_median, baseline_median, effect, p_value, sizes)


def judge(
    config: AnalysisConfig,
    data: Mapping[str, tuple[Sequence[float], Sequence[float]]],
) -> Judgement:
    """`data` maps each configured metric's name to (canary samples, baseline samples); a
    metric missing from it has no data."""
    verdicts = tuple(
        classify(metric, *data.get(metric.name, ((), ())), config.confidence, config.min_samples)
        for metric in config.metrics
    )
    total = sum(v.metric.weight for v in verdicts)
    passed = sum(v.metric.weight for v in verdicts if v.passed)
    score = 100.0 * passed / total if total else 0.0
    if any(v.metric.critical and not v.passed for v in verdicts) or score < config.marginal:
        outcome = OUTCOME_FAIL
    elif score < config.pass_score:
        outcome = OUTCOME_MARGINAL
    else:
        outcome = OUTCOME_PASS
    return Judgement(verdicts, round(score, 1), outcome, config)
