import json

import pytest
from django.conf import settings
from hypothesis.configuration import set_hypothesis_home_dir

from portal.models import ApiToken

# Hypothesis (under schemathesis) keeps a cache of constants; under var/, not the checkout root.
set_hypothesis_home_dir(settings.VAR_DIR / "hypothesis")


@pytest.fixture
def token_for(make_user):
    """token_for("approver", "bob") -> the raw bearer token of a new user in that role."""

    def issue(role, username=None):
        token = ApiToken(name=f"{role}-token", user=make_user(role, username or f"{role}-bot"))
        raw = token.issue()
        token.save()
        return raw

    return issue


@pytest.fixture
def api(client):
    """api("GET", "/api/releases/", token, json=...) -> the response, via Django's test client."""

    def call(method, path, token=None, json_body=None, raw=None, **query):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        if method == "GET":
            return client.get(path, query, **headers)
        body = raw if raw is not None else ("" if json_body is None else json.dumps(json_body))
        return client.generic(method, path, body, content_type="application/json", **headers)

    return call
