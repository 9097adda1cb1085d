"""The monitored nemo stack, per environment, served at /stack/{environment}/{component}/{path}.

Health follows the simulated instances: a MIG-backed component is up while most of its serving
instances (the MIG's, or for blue-green the groups its backend service points at) are RUNNING
and HEALTHY, and down as soon as one RUNNING instance is on a template that never turns
healthy, so a probe sees a bad rollout. The dev VM's components follow the VM and the image
its metadata names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import links
from .compute import metadata_items
from .http import ApiError, Request, Response, Router

MODEL = "nemo-llm-8b-instruct-q4"
UPTIME = 86_400.0  # the counters start as if the server had run for a day
LATENCY_BUCKETS = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
LATENCY_SHARES = [0.04, 0.16, 0.38, 0.72, 0.93, 0.985, 0.998]  # cumulative, per bucket


@dataclass
class Health:
    up: bool
    detail: str
    images: list[str]


def component_spec(world, environment: str, component: str) -> dict:
    env = world.environments.get(environment)
    if env is None or component not in env["components"]:
        raise ApiError(404, f"No component {environment}/{component} in the sandbox's topology")
    return env["components"][component]


def serving_migs(world, environment: str, spec: dict) -> list:
    env = world.environments[environment]
    state = world.projects[env["project"]]
    if spec["kind"] == "rolling_mig":
        path = f"regions/{env['region']}/instanceGroupManagers/{spec['mig']}"
        return [state.migs[path]] if path in state.migs else []
    service = state.backend_services.get(f"global/backendServices/{spec['backend_service']}", {})
    groups = {links.key(env["project"], b["group"])[1] for b in service.get("backends", [])}
    return [m for m in state.migs.values() if m.group_path in groups]


def health(world, environment: str, component: str) -> Health:
    spec = component_spec(world, environment, component)
    t, env = world.t, world.environments[environment]
    if world.faults.down(environment, component):
        return Health(False, "down (injected fault)", [])
    if spec["kind"] == "none":
        return Health(True, "up", [])
    state = world.projects[env["project"]]
    if spec["kind"] == "single_vm":
        vm = state.vms.get(f"zones/{spec['zone']}/instances/{spec['instance']}")
        if vm is None:
            return Health(False, "the VM does not exist", [])
        image = metadata_items(vm.body).get(f"{component}-image", "")
        if not vm.available(t) or t < vm.services.get(component, float("-inf")):
            return Health(False, f"{vm.name} is restarting", [image])
        if world.faults.unhealthy("", [image]):
            return Health(False, f"{image} fails its health check", [image])
        return Health(True, "up", [image])
    running = [
        i for m in serving_migs(world, environment, spec) for i in m.instances if i.running(t)
    ]
    images = sorted(
        {
            image
            for i in running
            for key, image in metadata_items(
                state.templates.get(i.template, {}).get("properties", {})
            ).items()
            if key.endswith("-image")
        }
    )
    if not running:
        return Health(False, "no serving instances", images)
    failing = [i for i in running if i.never_healthy()]
    if failing:
        templates = sorted({links.name(i.template) for i in failing})
        return Health(
            False,
            f"{len(failing)} instance(s) on {', '.join(templates)} failing health checks",
            images,
        )
    healthy = sum(1 for i in running if i.available(t))
    if healthy == 0 or healthy * 2 < len(running):
        return Health(False, f"{healthy} of {len(running)} instances healthy", images)
    return Health(True, f"{healthy} of {len(running)} instances healthy", images)


def metrics(world, environment: str, component: str) -> str:
    """Prometheus text whose counters grow with simulated time, at a rate per environment."""
    elapsed = UPTIME + max(0.0, world.t - world.started_at)
    rate = 3.2 if environment == "prod" else 0.4
    requests = int(elapsed * rate)
    errors = requests // 250
    chat = 'nemo_ai_requests_total{endpoint="/v1/chat/completions",status='

    embeddings = int(elapsed * rate * 0.6)
    hits = int(requests * 0.62)
    lines = [
        "# HELP nemo_ai_requests_total Inference requests handled, by endpoint and status.",
        "# TYPE nemo_ai_requests_total counter",
        f'{chat}"200"}} {requests - errors}',
        f'{chat}"500"}} {errors}',
        f'nemo_ai_requests_total{{endpoint="/v1/embeddings",status="200"}} {embeddings}',
        "# HELP nemo_ai_cache_hits_total Prompt cache hits.",
        "# TYPE nemo_ai_cache_hits_total counter",
        f"nemo_ai_cache_hits_total {hits}",
        "# HELP nemo_ai_cache_misses_total Prompt cache misses.",
        "# TYPE nemo_ai_cache_misses_total counter",
        f"nemo_ai_cache_misses_total {requests - hits}",
        "# HELP nemo_ai_inference_latency_seconds Time to generate a completion.",
        "# TYPE nemo_ai_inference_latency_seconds histogram",
    ]
    for bound, share in zip(LATENCY_BUCKETS, LATENCY_SHARES, strict=True):
        lines.append(
            f'nemo_ai_inference_latency_seconds_bucket{{le="{bound}"}} {int(requests * share)}'
        )
    lines += [
        f'nemo_ai_inference_latency_seconds_bucket{{le="+Inf"}} {requests}',
        f"nemo_ai_inference_latency_seconds_sum {requests * 0.83:.3f}",
        f"nemo_ai_inference_latency_seconds_count {requests}",
        "# HELP nemo_ai_generated_tokens_total Tokens generated by the model.",
        "# TYPE nemo_ai_generated_tokens_total counter",
        f"nemo_ai_generated_tokens_total {requests * 187}",
        "# HELP nemo_ai_model_loaded Whether the model is loaded in memory.",
        "# TYPE nemo_ai_model_loaded gauge",
        f'nemo_ai_model_loaded{{model="{MODEL}"}} 1',
    ]
    return "\n".join(lines) + "\n"


def spring_health(state: Health) -> dict:
    status = "UP" if state.up else "DOWN"
    return {
        "status": status,
        "components": {
            "db": {
                "status": "UP",
                "details": {"database": "MySQL", "validationQuery": "isValid()"},
            },
            "diskSpace": {
                "status": "UP",
                "details": {
                    "total": 21_003_583_488,
                    "free": 14_226_587_648,
                    "threshold": 10_485_760,
                    "path": "/app/.",
                    "exists": True,
                },
            },
            "livenessState": {"status": status},
            "ping": {"status": "UP"},
            "readinessState": {"status": status},
            "redis": {"status": "UP", "details": {"version": "7.2.4"}},
        },
        "groups": ["liveness", "readiness"],
    }


def serve(world, environment: str, component: str, path: str) -> Response:
    state = health(world, environment, component)
    code = 200 if state.up else 503
    kind = component.split("-")[0]
    spec = component_spec(world, environment, component)
    if path == "/" and spec["kind"] != "none":  # any web component Gantry deploys
        page = (
            "<!DOCTYPE html><html><head><title>nemo</title>"
            f'<meta name="nemo-image" content="{" ".join(state.images)}"></head>'
            f"<body><h1>nemo</h1><p>{state.detail}</p></body></html>"
        )
        return Response.text(page if state.up else "Service Unavailable", code, "text/html")
    if component == "backend" and path.startswith("/actuator/health"):
        body = spring_health(state)
        for group in ("liveness", "readiness"):
            if path == f"/actuator/health/{group}":
                body = {"status": body["status"]}
        return Response(
            code,
            json.dumps(body).encode(),
            {"Content-Type": "application/vnd.spring-boot.actuator.v3+json"},
        )
    if component == "backend" and path == "/actuator/info":
        return Response.json({"build": {"images": state.images}, "app": {"name": "nemo-api"}})
    if kind == "ai" and path == "/health":
        body = {
            "status": "ok" if state.up else "unavailable",
            "model": MODEL,
            "model_loaded": state.up,
            "images": state.images,
            "detail": state.detail,
        }
        return Response.json(body, code)
    if kind == "ai" and path == "/metrics":
        if not state.up:
            return Response.text("Service Unavailable\n", 503)
        return Response.text(
            metrics(world, environment, component), 200, "text/plain; version=0.0.4"
        )
    if component == "chromadb" and path in ("/api/v2/heartbeat", "/api/v1/heartbeat"):
        if not state.up:
            return Response.json({"error": "Service Unavailable"}, 503)
        return Response.json({"nanosecond heartbeat": int((world.wall_epoch + world.t) * 1e9)})
    spec = component_spec(world, environment, component)
    raise ApiError(
        404,
        f"{environment}/{component} has no HTTP endpoint {path} in the sandbox"
        + (
            " (it speaks TCP)" if spec["kind"] == "none" and component in ("mysql", "redis") else ""
        ),
    )


def routes(router: Router, world) -> None:
    def handle(request: Request) -> Response:
        params = request.params
        return serve(world, params["env"], params["component"], "/" + params.get("rest", ""))

    router.add("GET", "/stack/{env}/{component}", handle)
    router.add("GET", "/stack/{env}/{component}/", handle)
    router.add("GET", "/stack/{env}/{component}/{rest:path}", handle)

    @router.route("GET", "/stack/")
    def index(request: Request) -> Response:
        body = {
            env: {c: health(world, env, c).__dict__ for c in spec["components"]}
            for env, spec in world.environments.items()
        }
        return Response.json(body)
