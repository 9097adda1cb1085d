import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from portal.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(tmp_path):
    """Point the Celery app at another broker for one test, then restore it."""
    saved = celery_app.conf.broker_url, dict(celery_app.conf.broker_transport_options)

    def use(url, **options):
        celery_app.conf.broker_url = url
        celery_app.conf.broker_transport_options = options

    yield use
    celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved


@pytest.mark.django_db
def test_healthz_is_public_and_reports_database_and_broker(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["database"]["vendor"]
    assert body["checks"]["broker"]["ok"]
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_healthz_is_503_when_the_broker_is_down(client, broker):
    broker("redis://127.0.0.1:1/0")
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"]
    assert not body["checks"]["broker"]["ok"]
    assert (
        "Connection refused" in body["checks"]["broker"]["error"]
        or body["checks"]["broker"]["error"]
    )


@pytest.mark.django_db
def test_healthz_with_a_real_redis_broker(client, broker, redis_url):
    broker(redis_url)
    body = client.get(reverse("healthz")).json()
    assert body["checks"]["broker"] == {**body["checks"]["broker"], "ok": True}


def test_healthz_is_503_when_the_database_is_down(tmp_path):
    """A process whose DATABASE_URL points at a closed port: the view answers, not crashes."""
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client(HTTP_HOST='localhost').get('/healthz');"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/gantry",
        "GANTRY_VAR_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 503
    assert not result["body"]["checks"]["database"]["ok"]
    assert "OperationalError" in result["body"]["checks"]["database"]["error"]
    assert result["body"]["checks"]["broker"]["ok"]
