"""A Cloud Build v1 subset whose builds really copy images on the sandbox registry.

A build is queued, then runs its steps one after another on the simulated clock. Steps the
sandbox understands are image copies and retags (gcrane/crane cp, crane tag, docker
pull/tag/push, gcloud artifacts docker tags add, gcloud container images add-tag); any other
step fails the build with a log line that says so.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import asdict, dataclass, field

from .http import ApiError, Request, Response, Router
from .registry import ImageRef

BUILD_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
METADATA_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
TERMINAL = {"SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"}
UNDERSTOOD = (
    "gcrane/crane cp SRC DST, crane tag SRC TAG, docker pull/tag/push, "
    "gcloud artifacts docker tags add SRC DST, gcloud container images add-tag SRC DST"
)


class StepFailed(Exception):
    pass


@dataclass
class Build:
    id: str
    project: str
    location: str
    request: dict
    create_at: float
    start_at: float
    step_time: float
    status: str = "QUEUED"
    steps_done: int = 0
    finish_at: float | None = None
    log: list[str] = field(default_factory=list)
    failure: dict | None = None
    images: list[dict] = field(default_factory=list)  # results.images
    local: dict[str, str] = field(default_factory=dict)  # docker's local tags → source image

    @property
    def steps(self) -> list[dict]:
        return self.request.get("steps", [])

    def step_end(self, index: int) -> float:
        return self.start_at + (index + 1) * self.step_time

    def next_event(self) -> float | None:
        """When this build next changes, while it has not finished."""
        if self.status == "QUEUED":
            return self.start_at
        if self.status == "WORKING":
            return self.step_end(self.steps_done)
        return None

    @property
    def operation_name(self) -> str:
        encoded = base64.b64encode(self.id.encode()).decode()
        return f"operations/build/{self.project}/{encoded}"


def substitute(text: str, build: Build) -> str:
    values = {"PROJECT_ID": build.project, "BUILD_ID": build.id, "LOCATION": build.location}
    values |= build.request.get("substitutions", {})

    def replace(found: re.Match) -> str:
        name = found.group(1) or found.group(2)
        return values.get(name, found.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, text)


def tool_of(step: dict) -> str:
    if step.get("entrypoint"):
        return step["entrypoint"].rsplit("/", 1)[-1]
    return step.get("name", "").split("@")[0].rsplit("/", 1)[-1].split(":")[0]


class Builds:
    """All builds, across projects; `advance` runs them up to a simulated time."""

    def __init__(self, world, builds: dict | None = None):
        self.world = world
        self.builds: dict[str, Build] = builds or {}

    def create(self, project: str, location: str, request: dict, t: float) -> Build:
        steps = request.get("steps") or []
        if not steps:
            raise ApiError(400, "Request contains an invalid argument: build has no steps")
        for i, step in enumerate(steps):
            if not step.get("name"):
                raise ApiError(
                    400, f"Request contains an invalid argument: steps[{i}].name is empty"
                )
        build = Build(
            id=str(uuid.uuid4()),
            project=project,
            location=location,
            request=request,
            create_at=t,
            start_at=t + self.world.build_queue_time,
            step_time=self.world.build_step_time,
        )
        build.log.append(f'starting build "{build.id}"')
        self.builds[build.id] = build
        return build

    def get(self, project: str, build_id: str) -> Build:
        build = self.builds.get(build_id)
        if build is None or build.project != project:
            raise ApiError(404, f'Build "{build_id}" not found', "notFound")
        return build

    def next_event(self) -> float | None:
        times = [t for b in self.builds.values() if (t := b.next_event()) is not None]
        return min(times, default=None)

    def advance(self, t: float) -> None:
        for build in self.builds.values():
            if build.status == "QUEUED" and t >= build.start_at:
                build.status = "WORKING"
                build.log += ["", "BUILD"]
            while build.status == "WORKING" and t >= build.step_end(build.steps_done):
                self._run_step(build, build.steps_done)

    def _run_step(self, build: Build, index: int) -> None:
        step = build.steps[index]
        prefix = f"Step #{index}" + (f' - "{step["id"]}"' if step.get("id") else "")
        build.log.append(f"Starting {prefix}")
        try:
            for line in self._execute(build, step):
                build.log.append(f"{prefix}: {line}")
        except StepFailed as exc:
            build.log.append(f"Finished {prefix}")
            detail = f'build step {index} "{step["name"]}" failed: {exc}'
            build.log.append(f"ERROR: {detail}")
            build.failure = {"type": "USER_BUILD_STEP", "detail": detail}
            build.status = "FAILURE"
            build.finish_at = build.step_end(index)
            return
        build.log.append(f"Finished {prefix}")
        build.steps_done += 1
        if build.steps_done == len(build.steps):
            self._finish(build, build.step_end(index))

    def _finish(self, build: Build, at: float) -> None:
        registry = self.world.registry
        build.log += ["PUSH"]
        for image in build.request.get("images", []):
            name = substitute(image, build)
            found = registry.resolve(name)
            if found is None:
                detail = (
                    f"failed to find one or more images after execution of build steps: ['{name}']"
                )
                build.log.append(f"ERROR: {detail}")
                build.failure = {"type": "PUSH_IMAGE_NOT_FOUND", "detail": detail}
                build.status, build.finish_at = "FAILURE", at
                return
            build.images.append({"name": name.split("@")[0], "digest": found[0]})
            build.log.append(f"{name}: digest: {found[0]}")
        build.log.append("DONE")
        build.status, build.finish_at = "SUCCESS", at

    def _execute(self, build: Build, step: dict) -> list[str]:
        registry = self.world.registry
        tool = tool_of(step)
        words = [substitute(str(a), build) for a in step.get("args", [])]
        args = [a for a in words if not a.startswith("-")]

        def copy(src: str, dst: str) -> str:
            source = build.local.get(src, src)
            try:
                digest = registry.copy(source, dst)
            except LookupError as exc:
                raise StepFailed(str(exc)) from None
            return f"{src} → {dst}: digest: {digest}"

        if tool in ("gcrane", "crane") and len(args) >= 3 and args[0] in ("cp", "copy"):
            return [f"Copying from {args[1]} to {args[2]}", copy(args[1], args[2])]
        if tool in ("gcrane", "crane") and len(args) >= 3 and args[0] == "tag":
            ref = ImageRef(args[1])
            destination = f"{ref.host + '/' if ref.host else ''}{ref.repository}:{args[2]}"
            return [copy(args[1], destination)]
        if tool == "docker" and args[:1] == ["pull"] and len(args) >= 2:
            found = registry.resolve(build.local.get(args[1], args[1]))
            if found is None:
                raise StepFailed(f"Error response from daemon: manifest for {args[1]} not found")
            return [f"Digest: {found[0]}", f"Status: Downloaded newer image for {args[1]}"]
        if tool == "docker" and args[:1] == ["tag"] and len(args) >= 3:
            source = build.local.get(args[1], args[1])
            if registry.resolve(source) is None:
                raise StepFailed(f"Error response from daemon: No such image: {args[1]}")
            build.local[args[2]] = source
            return []
        if tool == "docker" and args[:1] == ["push"] and len(args) >= 2:
            if args[1] not in build.local and registry.resolve(args[1]) is None:
                raise StepFailed(f"An image does not exist locally with the tag: {args[1]}")
            return [f"The push refers to repository [{args[1]}]", copy(args[1], args[1])]
        if (
            tool == "gcloud"
            and args[:4] == ["artifacts", "docker", "tags", "add"]
            and len(args) >= 6
        ):
            return [copy(args[4], args[5])]
        if tool == "gcloud" and args[:3] == ["container", "images", "add-tag"] and len(args) >= 5:
            return [copy(args[3], dst) for dst in args[4:]]
        raise StepFailed(
            f"the sandbox does not understand this step (name={step.get('name')!r}, "
            f"entrypoint={step.get('entrypoint', '')!r}, args={words!r}); "
            f"it runs only: {UNDERSTOOD}"
        )

    def to_dict(self) -> dict:
        return {k: asdict(b) for k, b in self.builds.items()}

    @classmethod
    def from_dict(cls, world, data: dict) -> Builds:
        return cls(world, {k: Build(**v) for k, v in data.items()})


def render(world, build: Build, base_url: str) -> dict:
    t = world.t
    stamp = world.rfc3339
    body = {
        "name": f"projects/{build.project}/locations/{build.location}/builds/{build.id}",
        "id": build.id,
        "projectId": build.project,
        "status": build.status,
        "createTime": stamp(build.create_at),
        "timeout": build.request.get("timeout", "600s"),
        "queueTtl": "3600s",
        "logsBucket": f"gs://{build.project}_cloudbuild/logs",
        "logUrl": f"{base_url}/_sandbox/builds/{build.id}/log",
        "options": build.request.get("options", {"logging": "LEGACY"}),
        "steps": [],
    }
    for key in ("images", "substitutions", "tags", "serviceAccount"):
        if build.request.get(key):
            body[key] = build.request[key]
    if build.status != "QUEUED":
        body["startTime"] = stamp(build.start_at)
    for i, step in enumerate(build.steps):
        shown = {
            k: step[k] for k in ("name", "args", "env", "id", "entrypoint", "waitFor") if k in step
        }
        started, ended = build.step_end(i) - build.step_time, build.step_end(i)
        shown["status"] = step_status(build, i)
        if shown["status"] in ("SUCCESS", "FAILURE"):
            shown["timing"] = {"startTime": stamp(started), "endTime": stamp(ended)}
        elif shown["status"] == "WORKING":
            shown["timing"] = {"startTime": stamp(started)}
        body["steps"].append(shown)
    if build.finish_at is not None and build.finish_at <= t:
        body["finishTime"] = stamp(build.finish_at)
    if build.failure:
        body["failureInfo"] = build.failure
        body["statusDetail"] = build.failure["detail"]
    if build.status == "SUCCESS":
        body["results"] = {
            "images": build.images,
            "buildStepImages": ["" for _ in build.steps],
        }
    return body


def step_status(build: Build, index: int) -> str:
    if index < build.steps_done:
        return "SUCCESS"
    if index > build.steps_done or build.status == "QUEUED":
        return "QUEUED"
    if build.status == "FAILURE" and build.failure and build.failure["type"] == "USER_BUILD_STEP":
        return "FAILURE"
    return build.status if build.status in ("WORKING", "CANCELLED") else "QUEUED"


def operation(world, build: Build, base_url: str) -> dict:
    rendered = render(world, build, base_url)
    body = {
        "name": build.operation_name,
        "metadata": {"@type": METADATA_TYPE, "build": rendered},
        "done": build.status in TERMINAL,
    }
    if build.status == "SUCCESS":
        body["response"] = {"@type": BUILD_TYPE, **rendered}
    elif build.status in TERMINAL:
        body["error"] = {"code": 2, "message": "Build failed; check build logs for details"}
    return body


def routes(router: Router, world) -> None:
    def create(request: Request) -> Response:
        project = request.params["project"]
        parent = request.query.get(
            "parent", ""
        )  # sent as a query parameter on /projects/{p}/builds
        location = request.params.get("location") or parent.partition("/locations/")[2] or "global"
        build = world.builds.create(project, location, request.json(), world.t)
        world.settle()
        return Response.json(operation(world, build, request.base_url))

    def get(request: Request) -> Response:
        build = world.builds.get(request.params["project"], request.params["build"])
        return Response.json(render(world, build, request.base_url))

    def cancel(request: Request) -> Response:
        build = world.builds.get(request.params["project"], request.params["build"])
        if build.status not in TERMINAL:
            build.status, build.finish_at = "CANCELLED", world.t
            build.log.append("CANCELLED")
        return Response.json(render(world, build, request.base_url))

    def list_builds(request: Request) -> Response:
        project = request.params["project"]
        builds = [b for b in world.builds.builds.values() if b.project == project]
        builds.sort(key=lambda b: b.create_at, reverse=True)
        return Response.json({"builds": [render(world, b, request.base_url) for b in builds]})

    def get_operation(request: Request) -> Response:
        name = request.params["name"]
        for build in world.builds.builds.values():
            if build.operation_name in (f"operations/{name}", name) or (
                build.operation_name.rsplit("/", 1)[-1] == name
            ):
                return Response.json(operation(world, build, request.base_url))
        raise ApiError(404, f"Operation operations/{name} not found", "notFound")

    for prefix in ("/v1/projects/{project}", "/v1/projects/{project}/locations/{location}"):
        router.add("POST", f"{prefix}/builds", create)
        router.add("GET", f"{prefix}/builds", list_builds)
        router.add("GET", f"{prefix}/builds/{{build}}", get)
        router.add("POST", f"{prefix}/builds/{{build}}:cancel", cancel)
    router.add("GET", "/v1/operations/{name:path}", get_operation)
    router.add(
        "GET", "/v1/projects/{project}/locations/{location}/operations/{name}", get_operation
    )

    @router.route("GET", "/_sandbox/builds/{build}/log")
    def log(request: Request) -> Response:
        build = world.builds.builds.get(request.params["build"])
        if build is None:
            raise ApiError(404, f"Build {request.params['build']} not found")
        return Response.text("\n".join(build.log) + "\n")
