"""Release and deployment pages. Views read rows and call the services; the rules live
in approvals.py and actions.py."""

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from environments.models import Environment

from . import actions
from .approvals import ApprovalError, decide
from .models import Approval, Deployment, DeploymentEvent, Release

DEPLOYMENT_RELATED = ("release__component__environment",)


def _deployments():
    return Deployment.objects.select_related(*DEPLOYMENT_RELATED).prefetch_related(
        Prefetch("approvals", queryset=Approval.objects.select_related("user")),
        Prefetch("events", queryset=DeploymentEvent.objects.order_by("at", "id")),
    )


@permission_required("deployments.view_release", raise_exception=True)
def release_list(request):
    releases = Release.objects.select_related("component__environment").prefetch_related(
        Prefetch("deployments", queryset=Deployment.objects.order_by("-created_at", "-id"))
    )
    environment = request.GET.get("environment")
    if environment:
        releases = releases.filter(component__environment__name=environment)
    context = {
        "releases": releases[:100],
        "environments": Environment.objects.all(),
        "selected": environment,
    }
    return render(request, "deployments/release_list.html", context)


@permission_required("deployments.view_release", raise_exception=True)
def release_detail(request, pk):
    release = get_object_or_404(Release.objects.select_related("component__environment"), pk=pk)
    running = Deployment.objects.running_on(release.component)
    context = {
        "release": release,
        "deployments": _deployments().filter(release=release),
        "running": running.release if running else None,
    }
    return render(request, "deployments/release_detail.html", context)


@permission_required("deployments.view_deployment", raise_exception=True)
def deployment_detail(request, pk):
    deployment = get_object_or_404(_deployments(), pk=pk)
    template = "deployments/_deployment.html" if request.htmx else "deployments/deployment.html"
    return render(request, template, {"deployment": deployment})


def _after_action(request, deployment):
    """HTMX gets the refreshed deployment card; a plain form post goes back to the release."""
    if request.htmx:
        deployment = _deployments().get(pk=deployment.pk)
        return render(request, "deployments/_deployment.html", {"deployment": deployment})
    return redirect(deployment.release)


@require_POST
@permission_required("deployments.approve_deployment", raise_exception=True)
def deployment_decide(request, pk):
    deployment = get_object_or_404(Deployment, pk=pk)
    decision = request.POST.get("decision")
    if decision not in Approval.Decision.values:
        messages.error(request, "Choose approve or reject.")
        return _after_action(request, deployment)
    try:
        deployment = decide(
            pk, request.user, decision, request.POST.get("comment", "").strip(), request=request
        )
    except ApprovalError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{deployment}: {deployment.get_state_display().lower()}.")
    return _after_action(request, deployment)


@require_POST
@permission_required("deployments.cancel_deployment", raise_exception=True)
def deployment_cancel(request, pk):
    deployment = get_object_or_404(Deployment, pk=pk)
    try:
        deployment = actions.cancel(pk, request.user, request=request)
    except actions.ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Cancel requested for {deployment}.")
    return _after_action(request, deployment)


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


@require_POST
@permission_required("deployments.start_deployment", raise_exception=True)
def release_redeploy(request, pk):
    release = get_object_or_404(Release.objects.select_related("component__environment"), pk=pk)
    try:
        deployment = actions.redeploy(release, request.user, request=request)
    except PermissionDenied:
        raise
    messages.success(request, f"{deployment} created ({deployment.get_state_display().lower()}).")
    return redirect(release)
