"""The sandbox's own control API under /_sandbox: faults, reset, clock, state, test images."""

from __future__ import annotations

from .http import ApiError, Request, Response, Router
from .registry import ImageRef
from .rollout import summary


def state_summary(world) -> dict:
    t = world.t
    projects = {}
    for name, project in world.projects.items():
        projects[name] = {
            "migs": {
                mig.name: {
                    "targetSize": mig.config.get("targetSize", 0),
                    "versions": [
                        v["instanceTemplate"].rsplit("/", 1)[-1] for v in mig.config["versions"]
                    ],
                    "zones": summary(mig, t),
                }
                for mig in project.migs.values()
            },
            "backendServices": {
                body["name"]: [b["group"].rsplit("/", 1)[-1] for b in body.get("backends", [])]
                for body in project.backend_services.values()
            },
            "vms": {
                vm.name: {"status": vm.status(t), "ready": vm.available(t)}
                for vm in project.vms.values()
            },
            "pendingOperations": sum(1 for op in project.operations.values() if not op.applied),
        }
    return {
        "time": t,
        "speed": world.clock.speed,
        "projects": projects,
        "faults": world.faults.items,
    }


def routes(router: Router, world, on_change=None) -> None:
    @router.route("GET", "/_sandbox/")
    @router.route("GET", "/_sandbox/state")
    def state(request: Request) -> Response:
        return Response.json(state_summary(world))

    @router.route("POST", "/_sandbox/reset")
    def reset(request: Request) -> Response:
        world.reset()
        return Response.json({"reset": True, "time": world.t})

    @router.route("GET", "/_sandbox/faults")
    def list_faults(request: Request) -> Response:
        return Response.json({"faults": world.faults.items})

    @router.route("POST", "/_sandbox/faults")
    def add_fault(request: Request) -> Response:
        fault = world.faults.add(request.json())
        if fault["kind"] == "unhealthy":
            world.apply_unhealthy_fault()
        return Response.json(fault, 201)

    @router.route("DELETE", "/_sandbox/faults")
    def clear_faults(request: Request) -> Response:
        world.faults.clear()
        world.heal()
        return Response.json({"faults": []})

    @router.route("DELETE", "/_sandbox/faults/{id}")
    def remove_fault(request: Request) -> Response:
        if not world.faults.remove(request.params["id"]):
            raise ApiError(404, f"No fault {request.params['id']}")
        return Response.json({"removed": request.params["id"]})

    @router.route("POST", "/_sandbox/clock")
    def clock(request: Request) -> Response:
        body = request.json()
        if "speed" in body:
            world.clock.set_speed(float(body["speed"]))
        if "advance" in body:
            world.clock.advance(float(body["advance"]))
        world.sync()
        return Response.json({"time": world.t, "speed": world.clock.speed})

    @router.route("POST", "/_sandbox/images")
    def push_image(request: Request) -> Response:
        """A new image as CI would push it: {"image": "host/repo/name:tag"} → its digest."""
        image = request.json().get("image", "")
        if not image or not ImageRef(image).tag or ImageRef(image).digest:
            raise ApiError(400, "Give 'image' as host/path/name:tag")
        return Response.json({"image": image, "digest": world.registry.push_new(image)}, 201)
