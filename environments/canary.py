"""How a component's canaries are judged, as its topology says (`options.analysis`).

    options:
      analysis:
        window: 600          # simulated/real seconds the canary is observed after it is healthy
        interval: 300        # a judgement every so often; the last one at the window's end
        marginal: 75         # below: the canary fails at any judgement
        pass: 95             # the last judgement must reach it
        metrics:             # replaces the defaults below; each a name Gantry can read
          - {name: latency, critical: true, tolerance: 0.15}
          - {name: errors, critical: true}
          - {name: cpu, weight: 0.5}

A metric's `direction` says which change is bad ("increase", "decrease" or "either"); its
`tolerance` is the band of relative change (Hodges-Lehmann shift over the baseline's median)
that passes even when the difference is significant, as Kayenta's effect-size bounds do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

# What Gantry reads per instance from Cloud Monitoring (deployments/analysis.py), with units.
METRICS = {
    "latency": "ms (p95)",
    "errors": "% of requests",
    "cpu": "% CPU",
    "memory": "% memory used",
}
DIRECTIONS = ("increase", "decrease", "either")


@dataclass(frozen=True)
class CanaryMetric:
    name: str
    direction: str = "increase"
    critical: bool = False
    weight: float = 1.0
    tolerance: float = 0.1

    @property
    def unit(self) -> str:
        return METRICS[self.name]


DEFAULT_METRICS = (
    CanaryMetric("latency", critical=True, tolerance=0.15),
    CanaryMetric("errors", critical=True, tolerance=0.5),
    # Instances of one version differ in CPU and memory by more than in latency.
    CanaryMetric("cpu", tolerance=0.5),
    CanaryMetric("memory", tolerance=0.5),
)


@dataclass(frozen=True)
class AnalysisConfig:
    enabled: bool = True
    window: float = 600.0
    interval: float = 300.0
    marginal: float = 75.0
    pass_score: float = 95.0
    confidence: float = 0.95
    min_samples: int = 3
    metrics: tuple[CanaryMetric, ...] = field(default=DEFAULT_METRICS)

    @property
    def judgements(self) -> int:
        """How many judgements the window holds (the last at its end)."""
        return max(1, -(-int(self.window) // int(self.interval)))

    def due(self, index: int) -> float:
        """Seconds after the observation starts at which judgement `index` (1-based) is due."""
        return min(index * self.interval, self.window)


KEYS = ("enabled", "window", "interval", "marginal", "pass", "confidence", "min_samples", "metrics")
METRIC_KEYS = tuple(f.name for f in fields(CanaryMetric))


def _number(value, what: str, kind: type, low: float, high: float | None = None):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ValueError(f"{what} must be {bound}, not {value!r}")
    return kind(value)


def _metric(spec, index: int) -> CanaryMetric:
    where = f"metrics[{index}]"
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a mapping with a name, not {spec!r}")
    unknown = sorted(set(spec) - set(METRIC_KEYS))
    if unknown:
        expected = ", ".join(METRIC_KEYS)
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (expected: {expected})")
    name = spec.get("name")
    if name not in METRICS:
        raise ValueError(f"{where}.name must be one of {', '.join(METRICS)}, not {name!r}")
    metric = CanaryMetric(name)
    if "direction" in spec:
        if spec["direction"] not in DIRECTIONS:
            raise ValueError(
                f"{where}.direction must be one of {', '.join(DIRECTIONS)}, "
                f"not {spec['direction']!r}"
            )
        metric = replace(metric, direction=spec["direction"])
    if "critical" in spec:
        if not isinstance(spec["critical"], bool):
            raise ValueError(f"{where}.critical must be true or false")
        metric = replace(metric, critical=spec["critical"])
    if "weight" in spec:
        metric = replace(metric, weight=_number(spec["weight"], f"{where}.weight", float, 0))
    if "tolerance" in spec:
        tolerance = _number(spec["tolerance"], f"{where}.tolerance", float, 0)
        metric = replace(metric, tolerance=tolerance)
    return metric


def analysis_config(options: dict) -> AnalysisConfig:
    """The component's canary analysis, defaults filled in; ValueError saying what is wrong."""
    given = options.get("analysis", {}) if isinstance(options, dict) else {}
    if given is None or given is True:
        given = {}
    if given is False:
        return AnalysisConfig(enabled=False)
    if not isinstance(given, dict):
        raise ValueError(f"must be a mapping (or false), not {given!r}")
    unknown = sorted(set(given) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (expected: {', '.join(KEYS)})")
    config = AnalysisConfig()
    if "enabled" in given:
        if not isinstance(given["enabled"], bool):
            raise ValueError("enabled must be true or false")
        config = replace(config, enabled=given["enabled"])
    if "window" in given:
        config = replace(config, window=_number(given["window"], "window", float, 60))
    interval = given.get("interval", min(config.interval, config.window))
    config = replace(config, interval=_number(interval, "interval", float, 60, config.window))
    for key, attr in (("marginal", "marginal"), ("pass", "pass_score")):
        if key in given:
            config = replace(config, **{attr: _number(given[key], key, float, 0, 100)})
    if config.marginal > config.pass_score:
        raise ValueError(f"marginal ({config.marginal:g}) must not be above pass")
    if "confidence" in given:
        config = replace(
            config, confidence=_number(given["confidence"], "confidence", float, 0.5, 0.999)
        )
    if "min_samples" in given:
        config = replace(
            config, min_samples=_number(given["min_samples"], "min_samples", int, 2, 1000)
        )
    if "metrics" in given:
        specs = given["metrics"]
        if not isinstance(specs, list) or not specs:
            raise ValueError("metrics must be a non-empty list")
        metrics = tuple(_metric(spec, i) for i, spec in enumerate(specs))
        names = [m.name for m in metrics]
        if len(set(names)) < len(names):
            raise ValueError("metrics name one metric twice")
        if not any(m.weight for m in metrics):
            raise ValueError("metrics need a weight above 0 somewhere")
        config = replace(config, metrics=metrics)
    return config
