"""Structured logs: request ids, deployment ids, Celery task ids, JSON lines, no secrets."""

import io
import json
import logging
import logging.config
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from celery import Celery
from django.urls import reverse

from deployments.tasks import advance_deployment
from portal import broker, logs
from tests.deployments.engine_helpers import new_release

ROOT = Path(__file__).resolve().parents[2]
HEX_ID = re.compile(r"[0-9a-f]{32}")


def handler_from_settings(settings, stream, formatter):
    """A handler on `stream` with the console handler's filters and the named formatter, all
    built from settings.LOGGING the way dictConfig builds them."""
    config = settings.LOGGING
    build = logging.config.DictConfigurator(config)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(build.configure_formatter(dict(config["formatters"][formatter])))
    for name in config["handlers"]["console"]["filters"]:
        handler.addFilter(build.configure_filter(dict(config["filters"][name])))
    return handler


@pytest.fixture
def log_output(settings):
    """log_output("json") -> read(): what the configured handler wrote during the test."""
    root = logging.getLogger()
    added = []

    def attach(formatter="json", level=None):
        stream = io.StringIO()
        handler = handler_from_settings(settings, stream, formatter)
        root.addHandler(handler)
        added.append((handler, root.level))
        if level is not None:
            root.setLevel(level)
        if formatter == "json":
            return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
        return stream.getvalue

    yield attach
    for handler, level in reversed(added):
        root.removeHandler(handler)
        root.setLevel(level)


# --- request ids ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_request_log_line_is_json_with_the_response_request_id(client_as, log_output):
    read = log_output("json")
    response = client_as("viewer").get("/no-such-page/")

    assert response.status_code == 404
    request_id = response["X-Request-ID"]
    assert HEX_ID.fullmatch(request_id)
    [line] = [line for line in read() if line["logger"] == "django.request"]
    assert line["request_id"] == request_id
    assert line["severity"] == "WARNING"
    assert line["message"] == "Not Found: /no-such-page/"
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert "deployment_id" not in line and "task_id" not in line
    assert logs.request_id.get() is None  # reset once the response left


@pytest.mark.django_db
def test_an_incoming_request_id_is_kept(client_as, log_output):
    read = log_output("json")
    response = client_as("viewer").get("/nope/", HTTP_X_REQUEST_ID="lb-7f3a.42:x")

    assert response["X-Request-ID"] == "lb-7f3a.42:x"
    assert [line["request_id"] for line in read() if line["logger"] == "django.request"] == [
        "lb-7f3a.42:x"
    ]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"HTTP_X_CLOUD_TRACE_CONTEXT": "105445AA7843BC8BF206B12000100000/1;o=1"}, "105445aa"),
        ({"HTTP_X_CLOUD_TRACE_CONTEXT": "105445aa7843bc8bf206b12000100000"}, "105445aa"),
        (
            {
                "HTTP_X_REQUEST_ID": "from-caller",
                "HTTP_X_CLOUD_TRACE_CONTEXT": "105445aa7843bc8bf206b12000100000/1",
            },
            "from-caller",
        ),
        ({"HTTP_X_REQUEST_ID": "has spaces in it"}, None),
        ({"HTTP_X_REQUEST_ID": "x" * 129}, None),
        ({"HTTP_X_REQUEST_ID": "<script>"}, None),
        ({"HTTP_X_REQUEST_ID": ""}, None),
        ({"HTTP_X_CLOUD_TRACE_CONTEXT": "not-a-trace/1;o=1"}, None),
        ({"HTTP_X_CLOUD_TRACE_CONTEXT": "105445aa7843bc8bf206b12000100000ff/1"}, None),
    ],
)
@pytest.mark.django_db
def test_which_incoming_ids_are_taken(client, headers, expected):
    given = client.get(reverse("healthz"), **headers)["X-Request-ID"]
    if expected is None:
        assert HEX_ID.fullmatch(given)
        assert given not in headers.values()
    elif expected == "105445aa":
        assert given == "105445aa7843bc8bf206b12000100000"
    else:
        assert given == expected


@pytest.mark.django_db
def test_every_response_gets_its_own_id_even_a_redirect(client):
    first = client.get(reverse("healthz"))["X-Request-ID"]
    second = client.get(reverse("healthz"))["X-Request-ID"]
    redirect = client.get(reverse("home"))  # LoginRequiredMiddleware sends it to sign in

    assert redirect.status_code == 302
    assert len({first, second, redirect["X-Request-ID"]}) == 3


# --- deployments and Celery tasks ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_deployment_steps_log_lines_carry_its_id_and_the_task_id(
    sandbox_settings, seed_topology, log_output
):
    deployment = new_release(sandbox_settings, "prod", "backend")
    read = log_output("json", level=logging.DEBUG)

    first = advance_deployment.apply(args=[deployment.pk])
    second = advance_deployment.apply(args=[deployment.pk])

    lines = read()
    deployment.refresh_from_db()
    assert deployment.build_id  # the promote step called Cloud Build (the sandbox's)
    calls = [line for line in lines if line["logger"] == "urllib3.connectionpool"]
    build_calls = [line for line in calls if "/builds" in line["message"]]
    assert build_calls and len(calls) >= 2
    assert {line["deployment_id"] for line in calls} == {deployment.pk}
    assert {line["task_id"] for line in calls} == {first.id, second.id}
    # Celery's own line about the task is written after the step: the task id, no deployment.
    [done] = [
        line
        for line in lines
        if line["logger"] == "celery.app.trace" and line.get("task_id") == first.id
    ]
    assert "deployment_id" not in done
    assert logs.deployment_id.get() is None


def test_the_deployment_context_nests_and_resets(log_output):
    read = log_output("json")
    log = logging.getLogger("gantry.test")
    with logs.deployment_context(7):
        log.warning("outer")
        with logs.deployment_context(8):
            log.warning("inner")
        log.warning("outer again")
    log.warning("outside")

    assert [(line["message"], line.get("deployment_id")) for line in read()] == [
        ("outer", 7),
        ("inner", 8),
        ("outer again", 7),
        ("outside", None),
    ]


def test_a_real_worker_writes_json_lines_with_the_task_id(tmp_path):
    """`celery worker` keeps Gantry's logging (CELERY_WORKER_HIJACK_ROOT_LOGGER = False)."""
    env = {
        **os.environ,
        "GANTRY_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "GANTRY_LOG_FORMAT": "json",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "portal",
        "worker",
        "--pool=solo",
        "-l",
        "info",
    ]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    errors = tmp_path / "worker.err"
    broker.prepare(*broker.embedded(tmp_path))
    with open(errors, "w") as stderr:
        worker = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    client = Celery("gantry-test", set_as_current=False)
    client.conf.broker_url, client.conf.broker_transport_options = broker.embedded(tmp_path)
    try:
        deadline = time.monotonic() + 60
        sent = client.send_task("portal.tasks.heartbeat")
        while True:
            lines = [json.loads(x) for x in errors.read_text().splitlines() if x.startswith("{")]
            done = [x for x in lines if x["logger"] == "celery.app.trace"]
            if done:
                break
            assert time.monotonic() < deadline and worker.poll() is None, errors.read_text()
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(20)
        client.close()

    assert done[0]["task_id"] == sent.id
    assert "succeeded" in done[0]["message"] and done[0]["severity"] == "INFO"
    assert any(x["logger"] == "celery.apps.worker" and "ready" in x["message"] for x in lines)


# --- the format setting ---------------------------------------------------------------------------


def log_in_subprocess(tmp_path, **env):
    script = (
        "import django, logging; django.setup();"
        "logging.getLogger('gantry.check').warning('hello %s', 'world')"
    )
    environment = {**os.environ, "GANTRY_VAR_DIR": str(tmp_path), "DATABASE_URL": "", **env}
    for name in [k for k, v in env.items() if v is None]:
        environment.pop(name)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("env", "is_json"),
    [
        ({"DEBUG": "0", "SECRET_KEY": "k" * 50, "GANTRY_LOG_FORMAT": None}, True),
        ({"DEBUG": "1", "GANTRY_LOG_FORMAT": None}, False),
        ({"DEBUG": "1", "GANTRY_LOG_FORMAT": "json"}, True),
        ({"DEBUG": "0", "SECRET_KEY": "k" * 50, "GANTRY_LOG_FORMAT": "text"}, False),
    ],
)
def test_log_format_follows_the_setting_and_debug(tmp_path, env, is_json):
    result = log_in_subprocess(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    [line] = [x for x in result.stderr.splitlines() if "hello world" in x]
    if is_json:
        assert json.loads(line) | {"time": None} == {
            "time": None,
            "severity": "WARNING",
            "logger": "gantry.check",
            "message": "hello world",
        }
    else:
        assert line.endswith(" WARNING gantry.check hello world")


def test_an_unknown_log_format_is_refused(tmp_path):
    result = log_in_subprocess(tmp_path, GANTRY_LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "GANTRY_LOG_FORMAT='xml': use json or text" in result.stderr


# --- secrets --------------------------------------------------------------------------------------

WEBHOOK_SECRET = "whsec-9c1b77e2f04a"
API_TOKEN = "gty_Q2xpZW50U2VjcmV0VmFsdWVfMTIzNDU2Nzg5MA"
METRICS_TOKEN = "metrics-token-5d2e8a"


@pytest.fixture
def secrets(settings):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.GANTRY_METRICS_TOKEN = METRICS_TOKEN


def log_secrets():
    log = logging.getLogger("gantry.test")
    log.warning("signing with %s failed", WEBHOOK_SECRET)
    log.warning("token %s used from 10.0.0.7", API_TOKEN)
    log.warning("headers: %s", {"Authorization": f"Bearer {METRICS_TOKEN}", "Accept": "*/*"})
    log.warning("raw header Authorization: Basic dXNlcjpwYXNzd29yZA== sent")
    log.warning("curl -H 'authorization: token ghp_abcdefghijklmnop' https://api.github.com")
    log.warning("called %s", "https://example.test/hook", extra={"key": API_TOKEN})
    try:
        raise ValueError(f"bad signature for secret {WEBHOOK_SECRET}")
    except ValueError:
        log.exception("webhook refused")


def test_json_lines_never_carry_secrets(secrets, log_output):
    read = log_output("json")
    log_secrets()
    lines = read()
    text = json.dumps(lines)

    for secret in (WEBHOOK_SECRET, API_TOKEN, METRICS_TOKEN, "dXNlcjpwYXNzd29yZA", "ghp_abcdef"):
        assert secret not in text
    assert [line["message"] for line in lines] == [
        "signing with [redacted] failed",
        "token gty_[redacted] used from 10.0.0.7",
        "headers: {'Authorization': 'Bearer [redacted]', 'Accept': '*/*'}",
        "raw header Authorization: Basic [redacted] sent",
        "curl -H 'authorization: token [redacted]' https://api.github.com",
        "called https://example.test/hook",
        "webhook refused",
    ]
    assert lines[5]["key"] == "gty_[redacted]"
    assert "ValueError: bad signature for secret [redacted]" in lines[6]["exc_info"]


def test_text_lines_never_carry_secrets(secrets, log_output):
    read = log_output("text")
    log_secrets()
    text = read()

    for secret in (WEBHOOK_SECRET, API_TOKEN, METRICS_TOKEN, "dXNlcjpwYXNzd29yZA", "ghp_abcdef"):
        assert secret not in text
    assert "signing with [redacted] failed" in text
    assert "ValueError: bad signature for secret [redacted]" in text


def test_the_filter_cleans_records_for_any_handler(secrets):
    record = logging.LogRecord(
        "gantry.test", logging.INFO, __file__, 1, "secret=%s ok", (WEBHOOK_SECRET,), None
    )
    assert logs.RedactSecrets().filter(record) is True
    assert record.getMessage() == "secret=[redacted] ok"


def test_a_changed_secret_is_redacted_from_then_on(settings, log_output):
    read = log_output("json")
    log = logging.getLogger("gantry.test")
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = "first-secret-value"
    log.warning("first-secret-value")
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = "second-secret-value"
    log.warning("first-secret-value second-secret-value")

    assert [line["message"] for line in read()] == [
        "[redacted]",
        "first-secret-value [redacted]",
    ]


def test_short_setting_values_and_ordinary_text_are_left_alone(settings, log_output):
    read = log_output("json")
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = "abc"
    message = "abc def; the bearer of bad news; authorization ok; password reset"
    logging.getLogger("gantry.test").warning(message)
    assert read()[0]["message"] == message


def test_passwords_inside_broker_urls_are_redacted(settings, log_output):
    read = log_output("json")
    settings.REDIS_URL = "redis://:Sup3r-redis-pass@10.1.2.3:6379/0"
    logging.getLogger("gantry.test").warning("cannot reach %s", settings.REDIS_URL)
    assert read()[0]["message"] == "cannot reach redis://:[redacted]@10.1.2.3:6379/0"
