"""What runs where: environments by components, for the home page.

Each cell says what Gantry deployed there last (release, commit, digest, since when, by whom),
whether the component is healthy, what waits for approval and what is rolling out, and what GCP
runs, read from the latest instance-group reading the workers stored (the MIG's instance
templates, the dev VM's image metadata). When the two disagree the cell flags drift: someone
changed the group outside Gantry, or Gantry has no deployment of what runs there at all.

Built from stored rows in a fixed number of queries, whatever the number of components or
deployments; the page never calls GCP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, F, Max, Prefetch, Window
from django.db.models.functions import RowNumber

from environments.mig import DEPLOYABLE
from environments.models import Component, Environment, StatSample, Status

from .models import Approval, Deployment


@dataclass
class Cell:
    component: Component
    running: Deployment | None = None  # the latest that succeeded: what Gantry says runs
    waiting: list[Deployment] = field(default_factory=list)  # for approval
    queued: list[Deployment] = field(default_factory=list)
    active: Deployment | None = None  # promoting, rolling out, verifying, rolling back
    reading: StatSample | None = None  # the latest instance-group reading

    @property
    def deployable(self) -> bool:
        return self.component.deploy_kind in DEPLOYABLE

    @property
    def status(self) -> str:
        health = getattr(self.component, "health", None)
        return health.status if health else Status.UNKNOWN

    @property
    def approvers(self) -> list[str]:
        """Who approved the running deployment, or else the build's GitHub actor."""
        if not self.running:
            return []
        names = [
            a.user.get_username()
            for a in self.running.approvals.all()
            if a.decision == Approval.Decision.APPROVE
        ]
        return names or [a for a in (self.running.release.author,) if a]

    @property
    def gcp_runs(self) -> list[str]:
        """What GCP ran at the last reading: instance templates (the serving group's, for
        blue-green), or the VM's image; empty when unread or unreadable."""
        if not self.reading or not self.reading.ok:
            return []
        data = self.reading.data
        if vm := data.get("vm"):
            return [vm["image"]] if vm.get("image") else []
        groups = data.get("groups") or []
        if "live" in data:
            groups = [g for g in groups if g["name"] == data["live"]]
        return sorted({t for g in groups for t in (g.get("templates") or {})})

    @property
    def expected(self) -> str:
        """What GCP should run if nobody touched it: the running deployment's template, or its
        image for the VM."""
        if not self.running:
            return ""
        if self.component.deploy_kind == Component.DeployKind.SINGLE_VM:
            return self.running.target_image
        return self.running.template

    @property
    def drift(self) -> str:
        """Why GCP's reading disagrees with Gantry's record, or "" when it does not (or cannot
        be told: no reading yet, a rollout under way, or the reading older than the deploy)."""
        runs = self.gcp_runs
        if not self.deployable or not runs or self.active:
            return ""
        if not self.running:
            return f"GCP runs {', '.join(runs)}, which Gantry did not deploy"
        finished = self.running.finished_at
        if finished and self.reading.at < finished:
            return ""
        if runs != [self.expected]:
            deployed = self.expected or "nothing it can name"
            return f"GCP runs {', '.join(runs)}; Gantry deployed {deployed}"
        return ""


@dataclass
class Row:
    name: str
    title: str
    cells: list[Cell | None]


@dataclass
class Matrix:
    environments: list[Environment]
    rows: list[Row]

    @property
    def drifted(self) -> int:
        return sum(1 for row in self.rows for cell in row.cells if cell and cell.drift)


def _newest(*partition: str, order: tuple[str, ...]) -> Window:
    return Window(
        RowNumber(),
        partition_by=[F(name) for name in partition],
        order_by=[F(name).desc(nulls_last=True) for name in order],
    )


def poll_version() -> str:
    """What the overview shows (the matrix and each environment's summary), named: every
    environment's readings stamp, the unfinished deployments, and the latest finish (a success
    or a rollback changes what runs). Three small queries; portal.polls answers by it."""
    environments = Environment.objects.order_by("pk").values_list(
        "pk", "readings_at", "requires_approval", "approvals_required"
    )
    unfinished = (
        Deployment.objects.unfinished()
        .order_by("pk")
        .values_list("pk", "state", "reason", "state_changed_at", "release_id")
    )
    finished = Deployment.objects.aggregate(last=Max("finished_at"), count=Count("id"))
    return repr((list(environments), list(unfinished), finished))


def build() -> Matrix:
    """The matrix, in five queries: components, their running deployments (and those
    deployments' approvals with their users), unfinished deployments, latest readings."""
    components = list(
        Component.objects.select_related("environment", "health").order_by(
            "environment__position", "environment__name", "position", "name"
        )
    )
    cells = _cells(components)
    environments: list[Environment] = []
    for component in components:
        if component.environment not in environments:
            environments.append(component.environment)
    columns = {e.pk: i for i, e in enumerate(environments)}
    rows: dict[str, Row] = {}
    for component in components:
        row = rows.setdefault(
            component.name, Row(component.name, component.title, [None] * len(environments))
        )
        row.cells[columns[component.environment_id]] = cells[component.pk]
    order = {c.name: (c.position, c.name) for c in reversed(components)}
    return Matrix(environments, sorted(rows.values(), key=lambda r: order[r.name]))


def cell_for(component: Component) -> Cell:
    """One component's cell (its release page says what the release replaces)."""
    return _cells([component])[component.pk]


def _cells(components: list[Component]) -> dict[int, Cell]:
    cells = {c.pk: Cell(c) for c in components}
    running = (
        Deployment.objects.filter(state=Deployment.S.SUCCEEDED, component_id__in=list(cells))
        .annotate(newest=_newest("component_id", order=("finished_at", "id")))
        .filter(newest=1)
        .select_related("release")
        .prefetch_related(Prefetch("approvals", queryset=Approval.objects.select_related("user")))
    )
    for deployment in running:
        cells[deployment.component_id].running = deployment
    for deployment in (
        Deployment.objects.unfinished()
        .filter(component_id__in=list(cells))
        .select_related("release")
        .order_by("created_at", "id")
    ):
        cell = cells[deployment.component_id]
        if deployment.state == Deployment.S.PENDING_APPROVAL:
            cell.waiting.append(deployment)
        elif deployment.state == Deployment.S.QUEUED:
            cell.queued.append(deployment)
        else:
            cell.active = deployment
    readings = (
        StatSample.objects.filter(kind=StatSample.Kind.MIG, component_id__in=list(cells))
        .annotate(newest=_newest("component_id", order=("at", "id")))
        .filter(newest=1)
    )
    for reading in readings:
        cells[reading.component_id].reading = reading
    return cells
