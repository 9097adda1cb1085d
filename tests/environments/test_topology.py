import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from environments.models import Component, Environment, Network, Repository
from environments.topology import TopologyError, sync_topology

pytestmark = pytest.mark.django_db

SEED = Path(settings.GANTRY_TOPOLOGY_FILE).read_text()


AI_NETWORK = "network: ai\n        host: ai.nemo"


def line(needle: str) -> str:
    """'line N' of the first line of the seed file that contains needle."""
    return f"line {SEED[: SEED.index(needle)].count(chr(10)) + 1}"


def counts():
    return Environment.objects.count(), Network.objects.count(), Component.objects.count()


def run(*args):
    out = io.StringIO()
    call_command("load_topology", *args, stdout=out)
    return out.getvalue()


def write(tmp_path, text):
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    return str(path)


def test_seed_topology_is_the_nemo_stack():
    run()
    prod, dev = Environment.objects.get(name="prod"), Environment.objects.get(name="dev")
    assert prod.zones == ["asia-northeast3-a", "asia-northeast3-c"]
    assert prod.requires_approval and prod.approvals_required == 1
    assert not dev.requires_approval
    service, ai = prod.networks.get(name="service"), prod.networks.get(name="ai")
    assert list(service.peers.all()) == [ai]
    ports = {c.name: (c.network.name, c.port) for c in prod.components.all()}
    assert ports == {
        "frontend": ("service", 3000),
        "backend": ("service", 8080),
        "mysql": ("service", 3306),
        "redis": ("service", 6379),
        "ai-server": ("ai", 8000),
        "chromadb": ("ai", 8001),
    }
    assert dev.networks.count() == 1
    assert {c.network.name for c in dev.components.all()} == {"host"}
    assert dev.components.count() == 6
    backend = prod.components.get(name="backend")
    assert backend.probe_expect_json == {"status": "UP"}
    assert (backend.deploy_kind, backend.strategy, backend.size) == ("rolling_mig", "canary", 4)
    ai_server = prod.components.get(name="ai-server")
    assert (ai_server.blue_mig, ai_server.green_mig) == ("nemo-ai-blue-mig", "nemo-ai-green-mig")
    assert (
        ai_server.image_repository == "asia-northeast3-docker.pkg.dev/nemo-prod/registry/ai-server"
    )
    assert not prod.components.get(name="mysql").is_deployable
    assert (prod.branch, dev.branch) == ("main", "develop")
    repos = {r.full_name: (r.components, r.workflows, r.events) for r in Repository.objects.all()}
    assert repos == {
        "nemo-team/nemo-web": (["frontend"], ["build"], ["push"]),
        "nemo-team/nemo-api": (["backend"], ["build"], ["push"]),
        "nemo-team/nemo-ai": (["ai-server"], ["build"], ["push"]),
    }
    assert Repository.objects.get(full_name="nemo-team/nemo-ai").registry.endswith(
        "nemo-dev/registry"
    )


def test_second_load_changes_nothing_and_audits_once():
    first = run()
    assert "+ component prod/frontend" in first
    assert counts() == (2, 3, 12)
    second = run()
    assert "no changes" in second
    assert counts() == (2, 3, 12)
    events = AuditEvent.objects.filter(action="topology.load")
    assert events.count() == 1
    assert "+ environment prod" in events.get().data["changes"]


def test_an_edit_updates_in_place_and_reports_the_diff(tmp_path):
    run()
    frontend = Component.objects.get(environment__name="prod", name="frontend")
    edited = SEED.replace("        port: 3000\n", "        port: 3001\n", 1)
    assert edited != SEED
    output = run(write(tmp_path, edited))
    assert "~ component prod/frontend: port 3000 -> 3001" in output
    updated = Component.objects.get(environment__name="prod", name="frontend")
    assert (updated.pk, updated.port) == (frontend.pk, 3001)
    assert counts() == (2, 3, 12)


def test_dry_run_shows_the_diff_and_writes_nothing():
    output = run("--dry-run")
    assert "+ environment prod" in output and "dry run, nothing written" in output
    assert counts() == (0, 0, 0)
    assert AuditEvent.objects.count() == 0


BROKEN = [
    # (what to replace, with what, expected words in the error)
    (
        "    port: 3000\n",
        "    prot: 3000\n",
        [
            f"{line('    port: 3000')}: environments.prod.components.frontend.prot: unknown key",
            "missing required key 'port'",
        ],
    ),
    (
        "        port: 8080\n",
        "        port: eighty\n",
        [f"{line('port: 8080')}: environments.prod.components.backend.port: must be an integer"],
    ),
    (
        "        network: ai\n        host: ai.nemo",
        "        network: vpc3\n        host: ai.nemo",
        [f"{line(AI_NETWORK)}: environments.prod.components.ai-server.network"],
    ),
    (
        "        peers: [ai]\n",
        "        peers: [nowhere]\n",
        [f"{line('peers: [ai]')}: environments.prod.networks.service.peers: 'nowhere' is not"],
    ),
    (
        "          mig: nemo-frontend-mig\n",
        "",
        [
            f"{line('display_name: Next.js frontend')}: "
            "environments.prod.components.frontend: mig: required"
        ],
    ),
    (
        "        tier: frontend\n",
        "        tier: frontend\n        tier: backend\n",
        ["duplicate key 'tier'"],
    ),
    (
        "    zones: [asia-northeast3-a, asia-northeast3-c]\n",
        "    zones: [asia-northeast3-a\n",
        ["not valid YAML"],
    ),
    ("  dev:\n", "  Dev Env:\n", ["environment name must be"]),
    ("version: 1\n", "version: 2\n", ["unsupported version 2"]),
    ("    main: prod\n", "    main: staging\n", ["'staging' is not an environment"]),
    ("    main: prod\n", "    main: dev\n", ["dev already deploys branch 'develop'"]),
    ("    main: prod\n", "    ~: prod\n", ["a branch name must be a non-empty string"]),
    (
        "      workflows: [build]\n",
        "      workflows: [build]\n      events: [pull_request]\n",
        ["pull_request: only push"],
    ),
    (
        "      components: [backend]\n",
        "      components: [mysql]\n",
        ["'mysql' is not a component that Gantry deploys"],
    ),
    ("    nemo-team/nemo-ai:\n", "    nemo-ai:\n", ["repository must be owner/name"]),
    (
        "        from: fri 18:00\n",
        "        from: friday evening\n",
        ["environments.prod.freeze.weekend", "'friday evening' is neither a weekday and time"],
    ),
    (
        "        timezone: Asia/Seoul\n",
        "        timezone: Asia/Atlantis\n",
        ["timezone 'Asia/Atlantis' is not a known time zone"],
    ),
    ("        reason: no prod deploys", "        why: no prod deploys", ["freeze.weekend.why"]),
]


@pytest.mark.parametrize(("old", "new", "expected"), BROKEN)
def test_a_broken_file_is_refused_with_the_key_and_line_and_writes_nothing(
    tmp_path, old, new, expected
):
    run()  # a loaded topology must survive a bad file untouched
    before = counts(), list(Component.objects.values_list("port", flat=True).order_by("pk"))
    assert old in SEED
    path = write(tmp_path, SEED.replace(old, new, 1))
    with pytest.raises(CommandError) as exc:
        run(path)
    message = str(exc.value)
    assert "refused, nothing written" in message
    for words in expected:
        assert words in message
    after = counts(), list(Component.objects.values_list("port", flat=True).order_by("pk"))
    assert after == before
    assert AuditEvent.objects.count() == 1


def test_a_late_error_rolls_back_earlier_valid_rows(tmp_path):
    # prod is valid and loads first; dev's last component is invalid: nothing may remain.
    text = SEED.replace("        deploy: {kind: none}\n", "        deploy: {kind: single_vm}\n")
    with pytest.raises(TopologyError) as exc:
        sync_topology(write(tmp_path, text))
    assert any("instance: required when deployed as single_vm" in p for p in exc.value.problems)
    assert counts() == (0, 0, 0)
    assert AuditEvent.objects.count() == 0


def test_rows_missing_from_the_file_are_kept_unless_pruned(tmp_path):
    run()
    start = SEED.index("      chromadb:\n        display_name: ChromaDB\n")
    end = SEED.index("  dev:\n")
    without_chroma = SEED[:start] + SEED[end:]
    output = run(write(tmp_path, without_chroma))
    assert "? component prod/chromadb (not in the file; kept" in output
    assert Component.objects.filter(environment__name="prod", name="chromadb").exists()
    output = run(write(tmp_path, without_chroma), "--prune")
    assert "- component prod/chromadb" in output
    assert not Component.objects.filter(environment__name="prod", name="chromadb").exists()
    assert counts() == (2, 3, 11)


def test_an_unreadable_path_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run(str(tmp_path / "missing.yaml"))


def test_freeze_windows_come_from_the_file_and_admin_ones_are_left_be(tmp_path):
    from environments.models import FreezeWindow

    run()
    weekend = FreezeWindow.objects.get(environment__name="prod", name="weekend")
    assert (weekend.weekly_from, weekend.weekly_to, weekend.timezone) == (
        "fri 18:00",
        "mon 09:00",
        "Asia/Seoul",
    )
    assert weekend.from_topology and weekend.enabled
    FreezeWindow.objects.create(
        environment=weekend.environment,
        name="year-end",
        reason="year-end close",
        starts_at="2026-12-24T09:00:00Z",
        ends_at="2026-12-26T00:00:00Z",
    )
    once = SEED.replace(
        "        from: fri 18:00\n        to: mon 09:00\n",
        "        from: 2026-12-31T18:00\n        to: 2027-01-02T09:00\n",
        1,
    )
    output = run(write(tmp_path, once))
    assert "~ freeze window prod/weekend" in output and "year-end" not in output
    weekend.refresh_from_db()
    assert (
        weekend.weekly_from == "" and weekend.starts_at.isoformat() == "2026-12-31T09:00:00+00:00"
    )
    without = SEED[: SEED.index("    freeze:\n")] + SEED[SEED.index("    networks:\n") :]
    output = run(write(tmp_path, without), "--prune")
    assert "- freeze window prod/weekend" in output
    assert list(FreezeWindow.objects.values_list("name", flat=True)) == ["year-end"]
