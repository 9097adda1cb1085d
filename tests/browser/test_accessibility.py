"""Every page a person uses, in Chromium, against WCAG 2.1 AA (issue 14, item 5).

For each page: axe-core (bundled by axe-playwright-python, no CDN) finds no violation of the
WCAG 2.0/2.1 A and AA rules in the light and in the dark colour scheme; at 390 px the page does
not scroll sideways (wide tables scroll inside their own box); the icon it links is served. The
desktop, phone and dark screenshots land in var/screenshots/ (GANTRY_SCREENSHOT_DIR) as
a11y-<page>-<desktop|phone|dark>.png for a reviewer to look at.

The data is seeded so that every page shows its badges: components up, down, degraded and
unknown; deployments waiting for approval, queued, rolling out, succeeded, failed, rolled back,
cancelled, superseded and rejected; deliveries of several outcomes; channels ok, failing and
disabled; notifications sent, failed and pending; audit rows.

Django's admin is its own markup and stylesheet. The admin index and the API-token pages (the
form, and Gantry's page that shows a new token once) are checked like Gantry's own, with no rule
excluded; see ADMIN_OPTIONS for the one difference in how axe reads them.
"""

from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.utils import timezone

from audit.models import AuditEvent
from deployments.models import Approval, Deployment, DeploymentEvent, Release
from environments import cloud, mig, monitoring, stats
from environments.models import ComponentHealth, Environment, FreezeWindow, HealthEvent
from github.models import CatchUp, WebhookDelivery
from notifications.models import Channel, Notification

pytestmark = pytest.mark.django_db(transaction=True)

S = Deployment.State
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
# Django's admin (Django's markup and stylesheets, not Gantry's) passes the same rules, with one
# narrow difference in how axe reads it: the admin's forms.css @imports widgets.css, and axe
# copies an imported sheet into an inline <style> to read it (its "preload" of the CSSOM and of
# media). Gantry's CSP refuses that <style>, and the `page` fixture fails a test on any refusal.
# So on admin pages axe runs without the preload. Only two rules use it: css-orientation-lock,
# which is experimental (axe leaves it out of these tags unless asked), and no-autoplay-audio
# (the admin has no <audio> or <video>). No rule is excluded; Gantry's pages run with the preload.
ADMIN_OPTIONS = {**AXE_OPTIONS, "preload": False}
axe = Axe()


@pytest.fixture
def seeded(seed_topology, sandbox_settings, patient_probes, settings, make_deployment, make_user):
    """Rows for every badge Gantry draws; returns {name: path} of the pages that need an id."""
    settings.GANTRY_STATUS_CONFIRMATIONS = 1
    sandbox_settings.inject_fault("down", environment="prod", component="backend")
    for _ in range(2):  # a second reading gives the rates and ratios their first interval
        for environment in Environment.objects.all():
            monitoring.sweep(environment.pk)
            stats.collect(environment.pk)
            mig.collect(environment.pk)
    # An hour of Cloud Monitoring, its clock put on the wall clock's so the charts end now.
    sandbox_settings.advance(3600)
    sandbox_settings.set_wall_epoch()
    for environment in Environment.objects.all():
        cloud.collect(environment.pk)
    now = timezone.now()
    degraded = ComponentHealth.objects.get(
        component__environment__name="prod", component__name="chromadb"
    )
    degraded.status, degraded.since = "degraded", now
    degraded.save()
    HealthEvent.objects.create(
        component=degraded.component,
        at=now,
        previous="up",
        status="degraded",
        detail="slow: 1400 ms",
    )
    ComponentHealth.objects.filter(
        component__environment__name="dev", component__name="chromadb"
    ).update(status="unknown")
    FreezeWindow.objects.create(
        environment=Environment.objects.get(name="dev"),
        name="release-train",
        reason="release train cut",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=1),
    )

    approver = make_user("approver", "bob")
    pending = make_deployment("prod", "backend", state=S.PENDING_APPROVAL, approvals_required=2)
    Approval.objects.create(deployment=pending, user=approver, decision="approve", comment="ok")
    rolling = make_deployment(
        "prod",
        "frontend",
        state=S.ROLLING_OUT,
        reason="rolling update, 2 of 4 instances on the new template",
        target_image="asia-docker.pkg.dev/nemo/frontend@sha256:" + "ab" * 32,
        build_id="b-123",
        build_log_url="https://console.cloud.google.com/cloud-build/builds/b-123",
        template="nemo-frontend-tpl-0002",
        previous={"template": "nemo-frontend-tpl-0001"},
        progress={
            "zones": {"asia-northeast3-a": [1, 1], "asia-northeast3-b": [1, 1]},
            "versions": ["nemo-frontend-tpl-0001", "nemo-frontend-tpl-0002"],
            "waiting": "2 instances to become healthy",
        },
        verification={"checks": ["probe"], "passes": 1, "needed": 2, "last": "probe ok"},
    )
    rolled_back = make_deployment(
        "prod", "ai-server", state=S.ROLLED_BACK, reason="verification failed: HTTP 503"
    )
    release = rolled_back.release
    for kind, message in (
        ("state", "queued → promoting"),
        ("step", "image promoted"),
        ("retry", "429 from Compute, retrying in 4 s"),
        ("error", "verification failed: HTTP 503"),
        ("state", "rolling_back → rolled_back"),
    ):
        DeploymentEvent.objects.create(deployment=rolled_back, kind=kind, message=message)
    again = Deployment.objects.create(
        release=release,
        component=release.component,
        state=S.FAILED,
        strategy=release.component.strategy,
        reason="quota exceeded",
        requested_by="dana",
    )
    DeploymentEvent.objects.create(deployment=again, kind="error", message="Quota 'CPUS' exceeded")
    for state in (S.SUCCEEDED, S.CANCELLED, S.SUPERSEDED, S.REJECTED):
        make_deployment("prod", "frontend", state=state)
    make_deployment("dev", "frontend", state=S.QUEUED)
    # One the admin who signs in built: the approvals inbox lists it apart, with why.
    own = make_deployment("prod", "ai-server", state=S.PENDING_APPROVAL, approvals_required=1)
    Release.objects.filter(pk=own.release_id).update(author="root")
    # Two good releases of dev's backend: its page offers a rollback to the older one.
    make_deployment("dev", "backend", state=S.SUCCEEDED, finished_at=now - timedelta(hours=2))
    make_deployment("dev", "backend", state=S.SUCCEEDED, finished_at=now - timedelta(hours=1))

    for guid, outcome, detail in (
        ("failed-build", "failed", "image was not in the registry after 10 min"),
        ("released-build", "released", ""),
        ("ignored-build", "ignored", "branch feature/x deploys nowhere"),
        ("invalid-build", "invalid", "no workflow_run in the payload"),
        ("accepted-build", "accepted", "resolving images"),
    ):
        delivery = WebhookDelivery.objects.create(
            guid=guid,
            event="workflow_run",
            action="completed",
            repository="nemo-team/nemo",
            outcome=outcome,
            detail=detail,
            attempts=2 if outcome == "failed" else 1,
            last_attempt_at=now,
        )
        if outcome == "released":
            delivery.releases.add(release)
    WebhookDelivery.objects.create(claimed_guid="forged", event="workflow_run", outcome="rejected")
    CatchUp.objects.create(source="repo:nemo-team/nemo", last_run_at=now, last_ok_at=now, found=1)

    prod = Environment.objects.get(name="prod")
    ok = Channel.objects.create(
        environment=prod, name="ops", kind="slack", url="https://hooks.slack.com/services/T/B/x"
    )
    Channel.objects.create(
        environment=prod,
        name="pager",
        kind="webhook",
        url="https://pager.example.com/hook/secret",
        consecutive_failures=9,
        last_failure_at=now,
    )
    Channel.objects.create(
        environment=prod,
        name="old",
        kind="discord",
        url="https://discord.com/api/webhooks/1/x",
        enabled=False,
    )
    for n, state in enumerate(("sent", "failed", "pending")):
        Notification.objects.create(
            channel=ok,
            event="deployment_rolled_back",
            source=f"seed:{n}",
            subject=f"{release} rolled back",
            link=rolled_back.get_absolute_url(),
            status="rolled_back",
            message="rolled back",
            payload={},
            state=state,
            attempts=n + 1,
            last_error="HTTP 500" if state == "failed" else "",
            sent_at=now if state == "sent" else None,
        )
    AuditEvent.record("deployment.approve", actor=approver, obj=pending, message="ok")
    AuditEvent.record("topology.load", message="topology/nemo.yaml loaded")
    # A paused canary and a blue-green deployment in its warm window: their controls.
    paused = make_deployment(
        "prod",
        "backend",
        state=S.VERIFYING,
        progress={"phase": "canary", "waiting": "paused by dana: resume, promote or abort it"},
        paused_by="dana",
        paused_at=now,
    )
    warm = make_deployment(
        "prod",
        "ai-server",
        state=S.VERIFYING,
        previous={"live": "blue", "idle": "green", "live_mig": "nemo-ai-blue-mig"},
        operations=[{"id": "op-1", "what": "swap", "at": now.isoformat()}],
        progress={"warm": True},
    )
    judged = make_deployment(
        "prod",
        "backend",
        state=S.ROLLED_BACK,
        reason="canary analysis failed at judgement 1 of 2: latency: high (+30 %)",
        analysis=judged_canary(now),
    )
    return {
        "deployment-canary-judged": judged.get_absolute_url(),
        "deployment-paused-canary": paused.get_absolute_url(),
        "deployment-warm-blue-green": warm.get_absolute_url(),
        "release": release.get_absolute_url(),
        "deployment-pending": pending.get_absolute_url(),
        "deployment-rolling-out": rolling.get_absolute_url(),
        "deployment-rolled-back": rolled_back.get_absolute_url(),
        "rollback-confirm": "/environments/dev/components/backend/",
    }


def judged_canary(now) -> dict:
    """What the engine stores for a canary 30 % slower than its baseline, judged once."""
    from deployments.analysis import judgement_record
    from deployments.judge import judge
    from environments.canary import AnalysisConfig

    config = AnalysisConfig()
    ramp = [100 + i for i in range(5)]
    data = {
        "latency": ([v * 1.3 for v in ramp], ramp * 3),
        "errors": ([0.1] * 5, [0.1, 0.11, 0.09] * 5),
        "cpu": ([40 + i for i in range(5)], [38 + i for i in range(15)]),
        "memory": ([], []),
    }
    record = judgement_record(judge(config, data), data, 1, now)
    return {
        "started": now.isoformat(),
        "window": config.window,
        "interval": config.interval,
        "marginal": config.marginal,
        "pass": config.pass_score,
        "judgements": [record],
        "outcome": record["outcome"],
        "score": record["score"],
    }


PAGES = {
    "login": "/login/",
    "home": "/",
    "environment-prod": "/environments/prod/",
    "environment-dev": "/environments/dev/",
    "component-prod-frontend": "/environments/prod/components/frontend/",
    "component-prod-backend": "/environments/prod/components/backend/",
    "component-prod-redis": "/environments/prod/components/redis/",
    "component-dev-ai-server": "/environments/dev/components/ai-server/",
    "component-dev-backend": "/environments/dev/components/backend/",
    "releases": "/releases/",
    "releases-bad-filter": "/releases/?component=frontend&created_from=not-a-date",
    "deployments": "/deployments/",
    "approvals": "/approvals/",
    "release": None,
    "deployment-pending": None,
    "deployment-rolling-out": None,
    "deployment-rolled-back": None,
    "deployment-paused-canary": None,
    "deployment-canary-judged": None,
    "deployment-warm-blue-green": None,
    "rollback-confirm": None,  # the component page's "Roll back to this", then its question
    "deliveries": "/deliveries/",
    "notifications": "/notifications/",
    "notifications-failed": "/notifications/?state=failed",
    "audit": "/audit/",
    "insights": "/insights/",
    "insights-week": "/insights/?days=7",
    "admin-index": "/admin/",
    "admin-api-token-add": "/admin/portal/apitoken/add/",
    "admin-api-token-issued": "/admin/portal/apitoken/add/",
}


def settle(page):
    """Wait for the transitions a change of colour scheme or width starts (the admin fades its
    link colours), so that axe measures the colours that stay, not ones halfway there."""
    page.evaluate(
        "() => { void document.body.offsetWidth;"
        " return Promise.all(document.getAnimations().map(a => a.finished)); }"
    )


def axe_violations(page, name) -> str:
    """axe's report of the page's WCAG 2.0/2.1 A and AA violations; empty when there is none."""
    results = axe.run(page, options=ADMIN_OPTIONS if name.startswith("admin-") else AXE_OPTIONS)
    return results.generate_report() if results.violations_count else ""


@pytest.mark.parametrize("name", list(PAGES))
def test_page_is_accessible_light_dark_and_at_phone_width(
    name, page, sign_in, live_server, seeded, shots, django_user_model
):
    path = PAGES[name] or seeded[name]
    missing = []  # anything the page asks for and does not get: the icon, a stylesheet
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    if name != "login":
        sign_in("admin", "root")
        if name.startswith("admin-"):
            # The API-token pages are a superuser's (only a superuser issues tokens).
            django_user_model.objects.filter(username="root").update(is_superuser=True)
    page.goto(f"{live_server.url}{path}")
    if name == "admin-api-token-issued":
        page.fill("#id_name", "ci-github")
        page.select_option("#id_user", label="bob")
        page.click("input[name=_save]")
        page.locator("input[aria-label='API token']").wait_for()
    if name == "rollback-confirm":
        page.locator("button.rollback").click()
        page.locator("#confirm a.compare").wait_for()
    page.wait_for_load_state("load")

    problems = []
    if report := axe_violations(page, name):
        problems.append(f"light: {report}")
    page.screenshot(path=str(shots / f"a11y-{name}-desktop.png"), full_page=True)

    page.emulate_media(color_scheme="dark")
    settle(page)
    if report := axe_violations(page, name):
        problems.append(f"dark: {report}")
    page.screenshot(path=str(shots / f"a11y-{name}-dark.png"), full_page=True)

    page.emulate_media(color_scheme="light")
    page.set_viewport_size(PHONE)
    settle(page)
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if width[0] > width[1]:
        problems.append(f"phone: the page is {width[0]} px wide in a {width[1]} px window")
    if report := axe_violations(page, name):
        problems.append(f"phone: {report}")
    page.screenshot(path=str(shots / f"a11y-{name}-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)

    icon = page.evaluate(
        "(document.querySelector('link[rel~=icon]') || {href: new URL('/favicon.ico',"
        " location).href}).href"
    )
    answer = page.request.get(icon)
    if answer.status != 200:
        problems.append(f"icon {icon}: HTTP {answer.status}")
    if missing:
        problems.append(f"404 for {missing}")

    assert not problems, f"{name} ({path}):\n" + "\n".join(problems)
