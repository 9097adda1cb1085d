"""Release and deployment pages. Views read rows and call the services; the rules live
in approvals.py and actions.py, the lists' filters in filters.py."""

import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_htmx.http import reswap, retarget, trigger_client_event

from environments.models import Component
from portal import lists
from portal.polls import drawn, polled

from . import actions, filters, fragments, matrix
from .approvals import ApprovalError, decide
from .models import Approval, Deployment, DeploymentEvent, Release

DEPLOYMENT_RELATED = ("release__component__environment",)


def _deployments():
    return Deployment.objects.select_related(*DEPLOYMENT_RELATED).prefetch_related(
        Prefetch("approvals", queryset=Approval.objects.select_related("user")),
        Prefetch("events", queryset=DeploymentEvent.objects.order_by("at", "id")),
    )


@permission_required("deployments.view_release", raise_exception=True)
def release_list(request: HttpRequest) -> HttpResponse:
    """Releases, newest first, by the filters of filters.filter_releases, 50 a page."""
    form = lists.bound(filters.ReleaseFilterForm, request.GET)
    chosen = lists.chosen(form)

    def draw() -> str:
        releases = Release.objects.select_related("component__environment").prefetch_related(
            Prefetch("deployments", queryset=Deployment.objects.order_by("-created_at", "-id"))
        )
        releases = filters.filter_releases(releases, form.cleaned_data)
        context = {"chosen": chosen, **lists.paged(releases, request.GET, chosen)}
        return render_to_string("deployments/_release_rows.html", context)

    body = _list_body("releases", request, form, chosen, draw)
    return render(request, "deployments/release_list.html", {"body": body})


def _list_body(name: str, request, form, chosen: dict, rows) -> str:
    """A list's filter form and rows for this query string, drawn once per version
    (filters.lists_version): the same for everyone, as a GET form carries no CSRF token."""
    query = request.GET.urlencode()
    key = hashlib.sha256(query.encode()).hexdigest()[:16]

    def draw() -> str:
        context = {"form": form, "chosen": chosen, "action": reverse(name)}
        return render_to_string("_filters.html", context) + rows()

    _, body = drawn(f"{name}:{key}", repr((query, filters.lists_version())), draw)
    return body


@permission_required("deployments.view_deployment", raise_exception=True)
def deployment_list(request: HttpRequest) -> HttpResponse:
    """Deployments, newest first, by the filters of filters.filter_deployments, 50 a page."""
    form = lists.bound(filters.ListFilterForm, request.GET)
    chosen = lists.chosen(form)

    def draw() -> str:
        deployments = Deployment.objects.select_related("release", "component__environment")
        deployments = filters.filter_deployments(deployments, form.cleaned_data)
        context = {"chosen": chosen, **lists.paged(deployments, request.GET, chosen)}
        return render_to_string("deployments/_deployment_rows.html", context)

    body = _list_body("deployments", request, form, chosen, draw)
    return render(request, "deployments/deployment_list.html", {"body": body})


@permission_required("deployments.view_release", raise_exception=True)
def release_detail(request, pk):
    release = get_object_or_404(Release.objects.select_related("component__environment"), pk=pk)
    cell = matrix.cell_for(release.component)
    context = {"release": release, "cell": cell, "running": cell.running and cell.running.release}
    if request.htmx and request.GET.get("part") == "replaces":
        return render(request, "deployments/_replaces.html", context)
    context["cards"] = [
        (deployment, actions.available(deployment, request.user))
        for deployment in _deployments().filter(release=release)
    ]
    return render(request, "deployments/release_detail.html", context)


@permission_required("deployments.view_deployment", raise_exception=True)
def deployment_detail(request, pk):
    """The deployment's page; for HTMX, its card's live part (`?part=live`, which tells the
    actions to redraw when what they offer changed) or its actions (`?part=actions`)."""
    deployment = get_object_or_404(_deployments(), pk=pk)
    context = {"deployment": deployment, "available": actions.available(deployment, request.user)}
    part = request.GET.get("part") if request.htmx else None
    if part == "live":
        response = render(request, "deployments/_deployment_live.html", context)
        if request.GET.get("offer") != context["available"].key:
            trigger_client_event(response, f"deployment-{pk}-changed")
        return response
    if part == "actions":
        return render(request, "deployments/_deployment_actions.html", context)
    template = "deployments/_deployment.html" if request.htmx else "deployments/deployment.html"
    return render(request, template, context)


def _after_action(request, deployment):
    """HTMX gets the whole card again, with the action's message in it; a plain form post goes
    back to the release, whose page shows the message once, or to `next` when it is one of
    Gantry's pages (the approvals inbox sends its own address)."""
    if request.htmx:
        deployment = _deployments().get(pk=deployment.pk)
        context = {
            "deployment": deployment,
            "available": actions.available(deployment, request.user),
            "show_messages": True,
        }
        response = render(request, "deployments/_deployment.html", context)
        return reswap(retarget(response, f"#deployment-{deployment.pk}"), "outerHTML")
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(back)
    return redirect(deployment.release)


def _confirm(
    request,
    *,
    title,
    consequences,
    action,
    submit,
    back,
    hidden=None,
    fields=(),
    style="secondary",
    deployment=None,
    changes=None,
):
    """Ask before an action that cannot be undone: a page, or with HTMX the card's actions."""
    confirm = {
        "title": title,
        "consequences": consequences,
        "action": action,
        "submit": submit,
        "back": back,
        "hidden": hidden or {},
        "fields": fields,
        "style": style,
        "changes": changes,
        "htmx": bool(request.htmx and deployment),
        "target": f"deployment-{deployment.pk}-actions" if deployment else "confirm",
    }
    if deployment:
        confirm["back_part"] = f"{reverse('deployment', args=[deployment.pk])}?part=actions"
    if confirm["htmx"]:
        return render(request, "deployments/_confirm.html", {"confirm": confirm})
    return render(request, "deployments/confirm.html", {"confirm": confirm})


@require_POST
@permission_required("deployments.approve_deployment", raise_exception=True)
def deployment_decide(request, pk):
    deployment = get_object_or_404(Deployment.objects.select_related(*DEPLOYMENT_RELATED), pk=pk)
    decision = request.POST.get("decision")
    comment = request.POST.get("comment", "").strip()
    if decision not in Approval.Decision.values:
        messages.error(request, "Choose approve or reject.")
        return _after_action(request, deployment)
    if decision == Approval.Decision.REJECT and request.POST.get("confirm") != "1":
        release = deployment.release
        return _confirm(
            request,
            title=f"Reject deployment #{deployment.pk}?",
            consequences=[
                f"{release} does not reach {deployment.component}: the deployment ends here, "
                "for everyone waiting on it.",
                "To deploy this release later, someone deploys it again and it waits for "
                "approval again.",
            ],
            action=reverse("deployment-decide", args=[pk]),
            hidden={"decision": "reject"},
            fields=[
                {"name": "comment", "label": "Why (shown on the deployment)", "value": comment}
            ],
            submit=f"Reject deployment #{deployment.pk}",
            style="reject",
            back=release.get_absolute_url(),
            deployment=deployment,
        )
    try:
        deployment = decide(pk, request.user, decision, comment, request=request)
    except ApprovalError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{deployment}: {deployment.get_state_display().lower()}.")
    return _after_action(request, deployment)


def _steer(request, pk, act, done: str, ask=None, may=None):
    """A person's request to a deployment (actions.cancel, pause, …): with `ask`, confirmed
    first on a page that says what it does; `act(pk, user, reason, request)` then applies it.
    `may(deployment, user)`, for a permission that depends on the deployment, is checked
    before anything is shown."""
    deployment = get_object_or_404(Deployment.objects.select_related(*DEPLOYMENT_RELATED), pk=pk)
    if may and not may(deployment, request.user):
        raise PermissionDenied
    reason = request.POST.get("reason", "").strip()
    if ask and request.POST.get("confirm") != "1":
        return _confirm(
            request,
            back=deployment.release.get_absolute_url(),
            deployment=deployment,
            **ask(deployment, reason),
        )
    try:
        deployment = act(pk, request.user, reason, request=request)
    except actions.ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done.format(deployment=deployment))
    return _after_action(request, deployment)


def _reason_field(label: str, reason: str, hint: str = "") -> dict:
    return {"name": "reason", "label": label, "value": reason, "hint": hint}


@require_POST
@permission_required("deployments.cancel_deployment", raise_exception=True)
def deployment_cancel(request, pk):
    def ask(deployment, reason):
        waiting = deployment.state in Deployment.WAITING
        return {
            "title": f"Cancel deployment #{deployment.pk}?",
            "consequences": [
                "It ends at once; nothing has changed on GCP yet."
                if waiting
                else "It stops at its next safe point and rolls back to what ran before."
            ],
            "action": reverse("deployment-cancel", args=[deployment.pk]),
            "submit": f"Cancel deployment #{deployment.pk}",
        }

    return _steer(
        request,
        pk,
        actions.cancel,
        "Cancel requested for {deployment}.",
        ask,
    )


@require_POST
@permission_required("deployments.cancel_deployment", raise_exception=True)
def deployment_pause(request, pk):
    """Pausing changes nothing on GCP and is undone by resuming, so it asks nothing first."""
    return _steer(request, pk, actions.pause, "{deployment} is paused.")


@require_POST
@permission_required("deployments.cancel_deployment", raise_exception=True)
def deployment_resume(request, pk):
    return _steer(
        request,
        pk,
        actions.resume,
        "{deployment} carries on; its checks start over.",
    )


@require_POST
def deployment_promote(request, pk):
    """Who may promote depends on the environment (actions.may_promote), so the action checks."""

    def ask(deployment, reason):
        version = deployment.release.version or deployment.release.short_sha
        return {
            "title": f"Promote the canary of {version} now?",
            "consequences": [
                f"Every instance of {deployment.component} moves to {version} at once; the "
                "rest of the canary's observation is skipped.",
                "The whole group is then verified, and rolled back if that fails.",
            ],
            "action": reverse("deployment-promote", args=[deployment.pk]),
            "fields": [_reason_field("Why promote before it is judged (audited)", reason)],
            "submit": "Promote now",
            "style": "approve",
        }

    return _steer(
        request,
        pk,
        actions.promote_now,
        "{deployment} is being promoted.",
        ask,
        actions.may_promote,
    )


@require_POST
@permission_required("deployments.cancel_deployment", raise_exception=True)
def deployment_abort(request, pk):
    def ask(deployment, reason):
        return {
            "title": f"Abort the canary of deployment #{deployment.pk}?",
            "consequences": [
                f"The canary instances of {deployment.component} go back to the version that "
                "ran before; the deployment ends rolled back."
            ],
            "action": reverse("deployment-abort", args=[deployment.pk]),
            "fields": [_reason_field("Why (shown on the deployment)", reason)],
            "submit": "Abort the canary",
            "style": "reject",
        }

    return _steer(request, pk, actions.abort, "{deployment}: the canary is being taken away.", ask)


@require_POST
@permission_required("deployments.cancel_deployment", raise_exception=True)
def deployment_swap_back(request, pk):
    def ask(deployment, reason):
        layout = deployment.previous
        old, new = layout.get("live", "the old colour"), layout.get("idle", "the new colour")
        return {
            "title": f"Swap {deployment.component} back to {old}?",
            "consequences": [
                f"Traffic goes back to {old} ({layout.get('live_mig', '')}), which is still "
                f"warm, in one change of the backend service; {new} is then scaled to zero.",
                "The deployment ends rolled back.",
            ],
            "action": reverse("deployment-swap-back", args=[deployment.pk]),
            "fields": [_reason_field("Why (shown on the deployment)", reason)],
            "submit": f"Swap back to {old}",
            "style": "reject",
        }

    return _steer(request, pk, actions.swap_back, "{deployment}: swapping traffic back.", ask)


@require_POST
@permission_required("deployments.override_freeze", raise_exception=True)
def deployment_override_freeze(request, pk):
    deployment = get_object_or_404(Deployment, pk=pk)
    try:
        deployment = actions.override_freeze(
            pk, request.user, request.POST.get("reason", ""), request=request
        )
    except actions.ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{deployment} may start during the freeze.")
    return _after_action(request, deployment)


def _posted_release(request) -> Release | None:
    """The release a form names in `release`, or None for a missing or malformed id."""
    value = request.POST.get("release", "").strip()
    if not value.isdecimal() or len(value) > 18:
        return None
    return Release.objects.select_related("component__environment").filter(pk=value).first()


def _approval_again(request, environment, consequences, reason, *, waits, skip) -> list[dict]:
    """For a deployment made again (redeploy, rollback) where the environment needs approval:
    say so among the consequences and, for an approver, offer the audited reason to skip it
    (actions.redeploy's rule). Returns the confirmation's extra fields."""
    if not environment.requires_approval:
        return []
    count = environment.approvals_required
    consequences.append(f"{environment} needs {count} approval{'s' if count != 1 else ''}: {waits}")
    if not request.user.has_perm("deployments.approve_deployment"):
        return []
    return [
        {
            "name": "skip_approval_reason",
            "label": skip,
            "hint": "Leave empty to wait for approval. A reason given is audited.",
            "value": reason,
        }
    ]


@require_POST
@permission_required("deployments.start_deployment", raise_exception=True)
def component_rollback(request, name, component):
    """Roll a component back to an earlier good release (actions.rollback), after showing what
    that changes: the two releases' commits and digests, the GitHub compare of the commits it
    takes out, the instance templates when known. A release it refuses never gets that far."""
    component = get_object_or_404(
        Component.objects.select_related("environment"), environment__name=name, name=component
    )
    back = component.get_absolute_url()
    release = _posted_release(request)
    if release is None:
        messages.error(request, f"Choose a release of {component} to roll back to.")
        return redirect(back)
    if refusal := actions.rollback_refusal(component, release):
        messages.error(request, refusal)
        return redirect(back)
    reason = request.POST.get("skip_approval_reason", "").strip()
    if request.POST.get("confirm") == "1":
        try:
            deployment = actions.rollback(
                component, release, request.user, skip_approval_reason=reason, request=request
            )
        except actions.ActionError as exc:
            messages.error(request, str(exc))
        else:
            state = deployment.get_state_display().lower()
            messages.success(request, f"{deployment} created ({state}): rolling back to {release}.")
            return redirect(f"{back}#history")
    running = Deployment.objects.running_on(component)
    target = (
        release.deployments.filter(component=component, state=Deployment.S.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .first()
    )
    environment = component.environment
    version = release.version or release.short_sha
    consequences = [
        f"Deploys {version} to {component} again, replacing "
        f"{running.release.version or running.release.short_sha}, which runs now."
    ]
    fields = _approval_again(
        request,
        environment,
        consequences,
        reason,
        waits="the rollback waits for them, even though this release ran there before.",
        skip="Roll back without a new approval, because…",
    )
    return _confirm(
        request,
        title=f"Roll {component} back to {version}?",
        consequences=consequences,
        changes={
            "running": running,
            "target": target,
            "compare_url": running.release.compare_url(release),  # what it takes out
        },
        action=reverse("component-rollback", args=[environment.name, component.name]),
        hidden={"release": release.pk},
        fields=fields,
        submit=f"Roll back to {version}",
        style="approve",
        back=back,
    )


@require_POST
@permission_required("deployments.start_deployment", raise_exception=True)
def release_redeploy(request, pk):
    """Deploy a release again, after saying what that does; where the environment needs
    approval it waits for it, unless an approver says why it need not (actions.redeploy)."""
    release = get_object_or_404(Release.objects.select_related("component__environment"), pk=pk)
    reason = request.POST.get("skip_approval_reason", "").strip()
    if request.POST.get("confirm") == "1":
        try:
            deployment = actions.redeploy(
                release, request.user, skip_approval_reason=reason, request=request
            )
        except actions.ActionError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, f"{deployment} created ({deployment.get_state_display().lower()})."
            )
            return redirect(release)
    environment = release.component.environment
    running = Deployment.objects.running_on(release.component)
    consequences = [
        f"Deploys {release} to {release.component} again"
        + (f", replacing {running.release}, which runs now." if running else ".")
    ]
    fields = _approval_again(
        request,
        environment,
        consequences,
        reason,
        waits="the new deployment waits for them, even if this release ran there before.",
        skip="Deploy without a new approval, because…",
    )
    return _confirm(
        request,
        title=f"Deploy {release} again?",
        consequences=consequences,
        action=reverse("release-redeploy", args=[pk]),
        fields=fields,
        submit=f"Deploy {release.version or release.short_sha}",
        style="approve",
        back=release.get_absolute_url(),
    )


@permission_required("environments.view_environment", raise_exception=True)
def home(request):
    """What runs where (environments by components), then each environment at a glance."""
    if request.htmx:
        return polled(request, *fragments.overview())
    _, overview = drawn(*fragments.overview())
    return render(request, "environments/home.html", {"overview": overview})
