"""The example workflows in examples/github/ against what Gantry routes, without the database.

The shipped topology is read with the loader's own parser and checker and turned into unsaved
Repository and Component rows (the field defaults `load_topology` would give them), and each
example is checked the way Gantry will see its runs: the workflow name the repository accepts,
the events and branches that reach an environment, the image `image_for()` will look for, no
protection-rule job inside the build (the same-workflow deadlock), and a deploy-prod workflow
gated on the Gantry environment and deploying nothing itself. Every check is also fed a
deliberately wrong workflow and must refuse it.

What the checker reads of a workflow: `on`, `name`, `permissions`, `env` (workflow, job, step)
and the steps' `uses`/`with`/`run`. Images count as pushed only through
docker/build-push-action with `push: true`; expressions only as `${{ github.X }}` and
`${{ env.X }}`, anything else (vars, secrets, functions) cannot be known here and is refused.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from environments.models import Component, Environment, Repository
from environments.topology import COMPONENT_FIELDS, check, parse

try:
    from github.intake import image_for
except ImportError:  # before the intake moved to the github app
    from deployments.intake import image_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "github"
TOPOLOGY_FILE = ROOT / "topology" / "nemo.yaml"
DEPLOY_PROD = EXAMPLES / "deploy-prod.yml"

SHA = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"  # the run's commit, as GitHub sends it
RUN_NUMBER = 4242
DEFAULT_EVENTS = ["push"]


# --- The topology as routing sees it ------------------------------------------------------------


@dataclass
class Target:
    """One environment: the branch that deploys to it and its deployable components."""

    name: str
    branch: str
    requires_approval: bool
    components: dict[str, Component]


@dataclass
class Topology:
    repositories: dict[str, Repository]
    events: dict[str, list[str]]
    environments: dict[str, Target]  # in page order, as Routes reads them

    def branches_for(self, repository: Repository) -> dict[str, Target]:
        """Branch -> the environment its runs deploy to, for environments that have one of the
        repository's components (the first environment per branch, as Routes picks)."""
        found = {}
        for target in self.environments.values():
            if not target.branch or target.branch in found:
                continue
            if any(name in target.components for name in repository.components):
                found[target.branch] = target
        return found


def _default(model, name):
    return model._meta.get_field(name).get_default()


COMPONENT_KEYS = {field: keys for keys, field in COMPONENT_FIELDS.items()}


def _component_value(spec, field: str, model_default):
    container = spec
    keys = COMPONENT_KEYS[field]
    for key in keys[:-1]:
        container = container.get(key, {})
    return container.get(keys[-1], model_default)


def load_topology(path: Path = TOPOLOGY_FILE) -> Topology:
    document = parse(path.read_text(), str(path))
    problems = check(document, str(path))
    assert not problems, problems
    github = document["github"]
    branch_of = {env: branch for branch, env in github["branches"].items()}
    environments = {}
    for env_name, spec in document["environments"].items():
        components = {}
        for comp_name, comp_spec in spec["components"].items():
            fields = {
                field: _component_value(comp_spec, field, _default(Component, field))
                for field in ("deploy_kind", "image", "tag_template")
            }
            if fields["deploy_kind"] != "none":
                components[comp_name] = Component(name=comp_name, **fields)
        environments[env_name] = Target(
            name=env_name,
            branch=branch_of.get(env_name, ""),
            requires_approval=spec.get(
                "requires_approval", _default(Environment, "requires_approval")
            ),
            components=components,
        )
    repositories, events = {}, {}
    for full_name, spec in github["repositories"].items():
        repositories[full_name] = Repository(
            full_name=full_name,
            components=list(spec["components"]),
            workflows=list(spec.get("workflows", [])),
            registry=spec.get("registry", github["registry"]),
        )
        events[full_name] = list(spec.get("events", DEFAULT_EVENTS))
    return Topology(repositories, events, environments)


# --- Reading a workflow -------------------------------------------------------------------------


def load_workflow(text: str) -> dict:
    workflow = yaml.safe_load(text)
    assert isinstance(workflow, dict), "a workflow is a mapping"
    if True in workflow:  # YAML 1.1 reads the key `on` as true
        workflow["on"] = workflow.pop(True)
    return workflow


def triggers(workflow: dict) -> dict:
    """`on` as {event: its configuration or None}."""
    on = workflow.get("on")
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on or {})


GLOB = re.compile(r"[*?\[\]!+]")


def push_branches(config) -> tuple[set[str], list[str]]:
    """The branches a push trigger builds, or why they cannot be told."""
    if not isinstance(config, dict) or "branches" not in config:
        return set(), ["on.push has no `branches:` filter: every branch (and tag) would build"]
    problems = []
    if "branches-ignore" in config:
        problems.append("on.push.branches-ignore: list the branches to build instead")
    branches = config["branches"]
    branches = [branches] if isinstance(branches, str) else list(branches or [])
    for branch in branches:
        if GLOB.search(str(branch)):
            problems.append(f"on.push.branches: {branch!r} is a pattern; name each branch")
    return {str(b) for b in branches}, problems


class Unresolved(ValueError):
    pass


CONFIGURE_DOCKER = re.compile(r"gcloud auth configure-docker\s+([^\s-]\S*)")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
NAME = re.compile(r"(github|env)\.[A-Za-z_][A-Za-z0-9_]*")


def expand(value, context: dict) -> str:
    def one(match):
        expression = match.group(1)
        if not NAME.fullmatch(expression) or expression not in context:
            raise Unresolved(expression)
        return str(context[expression])

    return EXPRESSION.sub(one, str(value))


def run_context(branch: str) -> dict:
    return {
        "github.sha": SHA,
        "github.ref_name": branch,
        "github.ref": f"refs/heads/{branch}",
        "github.run_number": RUN_NUMBER,
        "github.event_name": "push",
    }


def with_env(context: dict, env: dict | None) -> dict:
    """The context with `env` added, each value expanded in what came before."""
    context = dict(context)
    for key, value in (env or {}).items():
        context[f"env.{key}"] = expand(value, context)
    return context


def steps(workflow: dict):
    """(job id, job, step) for every step of every job."""
    for job_id, job in (workflow.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            yield job_id, job, step


def uses(step: dict, action: str) -> bool:
    return str(step.get("uses", "")).split("@")[0] == action


def environment_name(job: dict) -> str | None:
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    return None if environment is None else str(environment)


# --- The checks ---------------------------------------------------------------------------------


def pushed_images(workflow: dict, branch: str) -> tuple[set[str], list[str]]:
    """The images a push run on `branch` pushes, and what would keep it from pushing them:
    a registry not logged in to first, a login before Google's auth, no `id-token: write`."""
    images, problems = set(), []
    workflow_context = with_env(run_context(branch), workflow.get("env"))
    for job_id, job in (workflow.get("jobs") or {}).items():
        context = with_env(workflow_context, job.get("env"))
        authed, hosts = False, set()
        for number, step in enumerate(job.get("steps") or [], 1):
            where = f"jobs.{job_id}.steps[{number}]"
            step_context = with_env(context, step.get("env"))
            given = step.get("with") or {}
            try:
                if uses(step, "google-github-actions/auth"):
                    authed = True
                    permissions = job.get("permissions", workflow.get("permissions"))
                    if not (
                        permissions == "write-all"
                        or (
                            isinstance(permissions, dict) and permissions.get("id-token") == "write"
                        )
                    ):
                        problems.append(
                            f"jobs.{job_id}: Workload Identity Federation needs the permission "
                            "`id-token: write`"
                        )
                elif uses(step, "docker/login-action"):
                    if not authed:
                        problems.append(f"{where}: logs in before google-github-actions/auth")
                    hosts.add(expand(given.get("registry", "docker.io"), step_context))
                elif match := CONFIGURE_DOCKER.search(str(step.get("run", ""))):
                    hosts.update(expand(match.group(1), step_context).split(","))
                elif uses(step, "docker/build-push-action"):
                    if str(expand(given.get("push", "false"), step_context)).lower() != "true":
                        continue
                    tags = expand(given.get("tags", ""), step_context)
                    for tag in re.split(r"[\n,]", tags):
                        if not (tag := tag.strip()):
                            continue
                        if tag.split("/")[0] not in hosts:
                            problems.append(
                                f"{where}: pushes {tag} but is not logged in to its host"
                            )
                        images.add(tag)
            except Unresolved as exc:
                problems.append(f"{where}: cannot evaluate ${{{{ {exc} }}}} here")
    return images, problems


def pin_problems(workflow: dict) -> list[str]:
    problems = []
    for job_id, _, step in steps(workflow):
        action = str(step.get("uses", ""))
        if not action or action.startswith(("./", "docker://")):
            continue
        _, _, ref = action.partition("@")
        if not ref or ref in {"main", "master", "latest", "HEAD"}:
            problems.append(f"jobs.{job_id}: {action} is not pinned to a release or commit")
    return problems


def build_problems(workflow: dict, full_name: str, topology: Topology) -> list[str]:
    """Why Gantry would not make the releases a build of `full_name` is meant to make."""
    repository = topology.repositories.get(full_name)
    if repository is None:
        return [f"{full_name} is not a repository of the topology"]
    problems = []
    name = workflow.get("name")
    if not isinstance(name, str) or not name:
        problems.append("no `name:`: GitHub names the run after the file's path, not a workflow")
    elif not repository.accepts_workflow(name):
        problems.append(
            f"name {name!r} is not a workflow {full_name} routes: {', '.join(repository.workflows)}"
        )
    on = triggers(workflow)
    allowed = topology.events[full_name]
    for event in on:
        if event not in allowed:
            problems.append(
                f"on.{event}: Gantry routes only {', '.join(allowed)} runs of {full_name}"
            )
    wanted = topology.branches_for(repository)
    if "push" not in on:
        problems.append("not triggered by push: no run would reach an environment")
    else:
        branches, branch_problems = push_branches(on["push"])
        problems += branch_problems
        for branch in sorted(set(wanted) - branches):
            problems.append(f"does not build {branch}, which deploys to {wanted[branch].name}")
        for branch in sorted(branches - set(wanted)):
            problems.append(f"builds {branch}, which deploys nowhere")
    for job_id, job in (workflow.get("jobs") or {}).items():
        if "environment" in job:
            problems.append(
                f"jobs.{job_id} has `environment: {environment_name(job)}`: a deadlock, the run "
                "cannot complete before that environment's rule is answered, and Gantry acts "
                "on completed runs only (put it in a separate workflow, like deploy-prod.yml)"
            )
    for branch, target in wanted.items():
        images, image_problems = pushed_images(workflow, branch)
        problems += [f"on {branch}: {p}" for p in image_problems]
        run = SimpleNamespace(
            sha=SHA, branch=branch, run_number=RUN_NUMBER, version=f"v{RUN_NUMBER}"
        )
        for name in repository.components:
            if name not in target.components:
                continue
            expected = image_for(repository, target.components[name], run)
            if expected not in images:
                problems.append(
                    f"on {branch}: Gantry looks for {expected} for {target.name}/{name}; "
                    f"the workflow pushes {', '.join(sorted(images)) or 'nothing'}"
                )
    return list(dict.fromkeys(problems)) + pin_problems(workflow)


SELF_DEPLOY = re.compile(
    r"\b(docker\s+push|gcloud\s+(compute|run\s+deploy|deploy|artifacts\s+docker)|kubectl)\b"
)


def deploy_problems(workflow: dict, topology: Topology, environment: str = "prod") -> list[str]:
    """Why a deploy workflow would not be a job that waits for `environment`'s approval in
    Gantry and then only follows it."""
    target = topology.environments[environment]
    problems = []
    if not workflow.get("name"):
        problems.append("no `name:`")
    on = triggers(workflow)
    for event in on:
        if event != "push":
            problems.append(f"on.{event}: only a push to {target.branch} has a release to wait for")
    if "push" not in on:
        problems.append(f"not triggered by a push to {target.branch}")
    else:
        branches, branch_problems = push_branches(on["push"])
        problems += branch_problems
        if branches != {target.branch}:
            problems.append(
                f"on.push.branches is {sorted(branches)}: only {target.branch} deploys to "
                f"{environment}"
            )
    jobs = workflow.get("jobs") or {}
    gated = {
        job_id
        for job_id, job in jobs.items()
        if (environment_name(job) or "").lower() == environment.lower()
    }
    if not gated:
        problems.append(
            f"no job has `environment: {environment}` (the GitHub environment named like the "
            "Gantry environment, whose protection rule is Gantry's App)"
        )

    def waits(job_id, seen=()):
        if job_id in gated:
            return True
        needs = jobs.get(job_id, {}).get("needs") or []
        needs = [needs] if isinstance(needs, str) else needs
        return any(waits(n, (*seen, job_id)) for n in needs if n not in seen)

    for job_id, job in jobs.items():
        other = environment_name(job)
        if other is not None and job_id not in gated:
            problems.append(f"jobs.{job_id}: environment {other!r} is not {environment}")
        elif gated and not waits(job_id):
            problems.append(f"jobs.{job_id} runs before Gantry approves (needs no gated job)")
    for job_id, _, step in steps(workflow):
        action = str(step.get("uses", "")).split("@")[0]
        if action == "docker/build-push-action" or action.startswith(
            "google-github-actions/deploy"
        ):
            problems.append(f"jobs.{job_id}: {action} deploys by itself; Gantry deploys")
        if SELF_DEPLOY.search(str(step.get("run", ""))):
            problems.append(f"jobs.{job_id}: a `run:` step deploys by itself; Gantry deploys")
    return problems + pin_problems(workflow)


def routed_as_build(workflow: dict, repository: Repository) -> list[str]:
    """A deploy workflow whose completed runs Gantry would also take for builds."""
    name = workflow.get("name") or ""
    if repository.accepts_workflow(name):
        listed = ", ".join(repository.workflows) or "any workflow (no `workflows:` list)"
        return [f"{repository.full_name} routes {name!r} as a build: it accepts {listed}"]
    return []


# --- The shipped examples -----------------------------------------------------------------------


TOPOLOGY = load_topology()
REPOSITORIES = sorted(TOPOLOGY.repositories)


def example(full_name: str) -> Path:
    return EXAMPLES / full_name.split("/")[1] / "build.yml"


def test_every_repository_of_the_topology_has_a_build_example():
    shipped = {path.parent.name for path in EXAMPLES.glob("*/build.yml")}
    assert shipped == {name.split("/")[1] for name in REPOSITORIES}


@pytest.mark.parametrize("full_name", REPOSITORIES)
def test_build_example_is_routed_to_every_environment_it_builds_for(full_name):
    workflow = load_workflow(example(full_name).read_text())
    assert build_problems(workflow, full_name, TOPOLOGY) == []
    assert set(TOPOLOGY.branches_for(TOPOLOGY.repositories[full_name])) == {"develop", "main"}


def test_deploy_prod_example_waits_for_gantry_and_deploys_nothing():
    workflow = load_workflow(DEPLOY_PROD.read_text())
    assert deploy_problems(workflow, TOPOLOGY, "prod") == []
    assert TOPOLOGY.environments["prod"].requires_approval


@pytest.mark.parametrize(
    "full_name",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(
                reason=f"topology lists no `workflows:` for {name}: every successful push run "
                "there, deploy-prod's included, is taken for a build (add `workflows: [build]`)",
                strict=True,
            ),
        )
        if not TOPOLOGY.repositories[name].workflows
        else name
        for name in REPOSITORIES
    ],
)
def test_deploy_prod_runs_are_not_taken_for_builds(full_name):
    workflow = load_workflow(DEPLOY_PROD.read_text())
    assert routed_as_build(workflow, TOPOLOGY.repositories[full_name]) == []


# --- Wrong workflows are refused ----------------------------------------------------------------


def changed(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    return text.replace(old, new, 1)


API = "nemo-team/nemo-api"
SHA_TAG = "${{ env.REGISTRY }}/${{ env.IMAGE }}:${{ github.sha }}"
PUSH_ON = "on:\n  push:\n    branches: [develop, main]\n"


@pytest.mark.parametrize(
    ("old", "new", "refusal"),
    [
        ("name: build\n", "name: Build\n", "is not a workflow nemo-team/nemo-api routes: build"),
        ("name: build\n", "", "no `name:`"),
        ("[develop, main]", "[develop]", "does not build main, which deploys to prod"),
        ("[develop, main]", "[develop, main, release]", "builds release, which deploys nowhere"),
        ("[develop, main]", "[develop, main, 'release/**']", "is a pattern"),
        (PUSH_ON, "on: push\n", "every branch"),
        (PUSH_ON, PUSH_ON + "  pull_request:\n", "on.pull_request: Gantry routes only push runs"),
        (PUSH_ON, "on:\n  workflow_dispatch:\n", "not triggered by push"),
        (SHA_TAG, "${{ env.REGISTRY }}/${{ env.IMAGE }}:latest", "Gantry looks for"),
        (SHA_TAG, "${{ env.REGISTRY }}/${{ env.IMAGE }}:${{ github.ref_name }}", "looks for"),
        (SHA_TAG, "${{ env.REGISTRY }}/${{ env.IMAGE }}:${{ vars.TAG }}", "cannot evaluate"),
        ("IMAGE: backend ", "IMAGE: api ", "Gantry looks for"),
        ("nemo-dev/registry ", "nemo-prod/registry ", "Gantry looks for"),
        ("push: true", "push: false", "the workflow pushes nothing"),
        ("registry: asia-northeast3-docker.pkg.dev", "registry: gcr.io", "not logged in"),
        ("  id-token: write\n", "", "`id-token: write`"),
        ("auth@v2", "auth@main", "is not pinned"),
        ("    runs-on: ubuntu-latest\n", "    runs-on: ubuntu-latest\n    environment: prod\n",
         "a deadlock"),
    ],
)  # fmt: skip
def test_a_wrong_build_workflow_is_refused(old, new, refusal):
    workflow = load_workflow(changed(example(API), old, new))
    problems = build_problems(workflow, API, TOPOLOGY)
    assert any(refusal in p for p in problems), problems


def test_a_build_example_checked_for_another_repository_is_refused():
    workflow = load_workflow(example("nemo-team/nemo-web").read_text())
    problems = build_problems(workflow, API, TOPOLOGY)
    assert any("backend" in p and "Gantry looks for" in p for p in problems), problems


def test_the_repository_events_list_is_honoured():
    workflow = load_workflow(changed(example(API), PUSH_ON, PUSH_ON + "  workflow_dispatch:\n"))
    assert "on.workflow_dispatch: Gantry routes only push runs of nemo-team/nemo-api" in (
        build_problems(workflow, API, TOPOLOGY)
    )
    allowing = copy.deepcopy(TOPOLOGY)
    allowing.events[API] = ["push", "workflow_dispatch"]
    assert build_problems(workflow, API, allowing) == []


def test_the_image_follows_the_components_tag_template():
    """A topology whose backend tags are `{branch}-{sha}`: the shipped example no longer
    matches, and a workflow pushing that tag does."""
    templated = copy.deepcopy(TOPOLOGY)
    for target in templated.environments.values():
        target.components["backend"].tag_template = "{branch}-{sha}"
    shipped = load_workflow(example(API).read_text())
    assert any(f"backend:main-{SHA}" in p for p in build_problems(shipped, API, templated))
    fitted = load_workflow(
        changed(
            example(API),
            SHA_TAG,
            "${{ env.REGISTRY }}/${{ env.IMAGE }}:${{ github.ref_name }}-${{ github.sha }}",
        )
    )
    assert build_problems(fitted, API, templated) == []


STEP = "    steps:\n"
ENV = "    environment: prod\n"


@pytest.mark.parametrize(
    ("old", "new", "refusal"),
    [
        ("[main]", "[main, develop]", "only main deploys to prod"),
        ("on:\n  push:\n    branches: [main]\n", "on: push\n", "every branch"),
        ("on:\n  push:", "on:\n  workflow_dispatch:\n  push:", "on.workflow_dispatch"),
        (ENV, "    environment: production\n", "no job has `environment: prod`"),
        (ENV, "    environment: {name: dev}\n", "'dev' is not prod"),
        ("jobs:\n", "jobs:\n  early:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n",
         "jobs.early runs before Gantry approves"),
        (STEP, STEP + "      - run: docker push asia-northeast3-docker.pkg.dev/x/y:z\n",
         "deploys by itself"),
        (STEP, STEP + "      - uses: docker/build-push-action@v6\n", "deploys by itself"),
        (STEP, STEP + "      - run: gcloud compute instance-groups managed rolling-action\n",
         "deploys by itself"),
        ("name: deploy-prod\n", "", "no `name:`"),
    ],
)  # fmt: skip
def test_a_wrong_deploy_workflow_is_refused(old, new, refusal):
    workflow = load_workflow(changed(DEPLOY_PROD, old, new))
    problems = deploy_problems(workflow, TOPOLOGY, "prod")
    assert any(refusal in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (ENV, "    environment: {name: PROD, url: 'https://gantry.example.com'}\n"),
        ("jobs:\n", "jobs:\n  after:\n    needs: approved\n    runs-on: x\n    steps: []\n"),
    ],
)
def test_a_deploy_workflow_may_name_the_environment_in_any_case_and_chain_jobs(old, new):
    assert deploy_problems(load_workflow(changed(DEPLOY_PROD, old, new)), TOPOLOGY) == []


def test_a_deploy_workflow_named_like_a_build_is_taken_for_one():
    deploy = load_workflow(DEPLOY_PROD.read_text())
    lists_build = Repository(full_name=API, components=["backend"], workflows=["build"])
    assert routed_as_build(deploy, lists_build) == []
    named_build = load_workflow(changed(DEPLOY_PROD, "name: deploy-prod", "name: build"))
    assert routed_as_build(named_build, lists_build) != []
    lists_none = Repository(full_name=API, components=["backend"], workflows=[])
    assert routed_as_build(deploy, lists_none) != []
