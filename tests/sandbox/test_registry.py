"""The Docker Registry v2 subset: seeded images, manifests by tag and digest, push, Accept as
distribution reads it, and Artifact Registry's Bearer token challenge, with Gantry's client."""

import base64
import hashlib
import json

import httpx
import pytest

from gcp import registry as gcp_registry
from gcp.errors import ImageNotFound, RegistryError
from gcp.registry import MANIFEST_TYPES, Registry
from sandbox.registry import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

ENVIRONMENTS = {"prod": "nemo-prod", "dev": "nemo-dev"}
DEPLOYED = ["frontend", "backend", "ai-server"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("image", DEPLOYED)
def test_each_deployed_component_is_seeded_with_two_tags(sandbox, http, env, image):
    repository = f"{ENVIRONMENTS[env]}/registry/{image}"
    tags = http.get(f"{sandbox.url}/v2/{repository}/tags/list").json()
    assert tags == {"name": repository, "tags": [f"{env}-latest", f"{env}-v1"]}
    manifest = http.get(f"{sandbox.url}/v2/{repository}/manifests/{env}-v1")
    assert (
        manifest.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    )
    digest = "sha256:" + hashlib.sha256(manifest.content).hexdigest()
    assert manifest.headers["Docker-Content-Digest"] == digest
    by_digest = http.get(f"{sandbox.url}/v2/{repository}/manifests/{digest}")
    assert by_digest.content == manifest.content


def test_the_running_template_names_the_seeded_digest(sandbox, http):
    head = http.head(f"{sandbox.url}/v2/nemo-prod/registry/backend/manifests/prod-latest")
    assert head.content == b"" and int(head.headers["Content-Length"]) > 0
    template = http.get(
        f"{sandbox.url}/compute/v1/projects/nemo-prod/regions/asia-northeast3/"
        "instanceTemplates/nemo-backend-mig-tmpl-v1"
    ).json()
    image = template["properties"]["metadata"]["items"][0]["value"]
    assert image == (
        "asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend@"
        + head.headers["Docker-Content-Digest"]
    )


def test_put_then_get_by_tag(sandbox, http):
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {},
            "layers": [],
        }
    ).encode()
    put = http.put(
        f"{sandbox.url}/v2/nemo-dev/registry/backend/manifests/abc123",
        content=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert put.status_code == 201
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert put.headers["Docker-Content-Digest"] == digest
    assert put.headers["Location"] == f"/v2/nemo-dev/registry/backend/manifests/{digest}"
    got = http.get(
        f"{sandbox.url}/v2/nemo-dev/registry/backend/manifests/abc123",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert got.content == manifest and got.headers["Docker-Content-Digest"] == digest
    wrong = http.put(
        f"{sandbox.url}/v2/nemo-dev/registry/backend/manifests/sha256:{'0' * 64}",
        content=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_unknown_manifests_and_repositories(sandbox, http):
    missing = http.get(f"{sandbox.url}/v2/nemo-prod/registry/backend/manifests/nope")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert (
        http.get(f"{sandbox.url}/v2/nobody/tags/list").json()["errors"][0]["code"] == "NAME_UNKNOWN"
    )
    assert (
        http.get(f"{sandbox.url}/v2/").headers["Docker-Distribution-API-Version"] == "registry/2.0"
    )


def test_control_api_pushes_a_fresh_image_like_ci(sandbox, http):
    image = "asia-northeast3-docker.pkg.dev/nemo-dev/registry/backend:" + "a" * 40
    pushed = http.post(f"{sandbox.url}/_sandbox/images", json={"image": image}).json()
    head = http.head(f"{sandbox.url}/v2/nemo-dev/registry/backend/manifests/{'a' * 40}")
    assert head.headers["Docker-Content-Digest"] == pushed["digest"]


# --- Accept ---------------------------------------------------------------------------------

SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
REPO = "nemo-dev/registry/multi"


def _stored(sandbox) -> dict[str, tuple[str, bytes]]:
    """One manifest of each type in REPO, tagged by its kind: kind → (digest, bytes)."""
    registry, stored = sandbox.world.registry, {}

    def put(kind: str, body: dict, media_type: str) -> str:
        data = json.dumps({"schemaVersion": 2, "mediaType": media_type} | body).encode()
        stored[kind] = (registry.put(REPO, kind, data, media_type), data)
        return stored[kind][0]

    def descriptor(digest: str, media_type: str, arch: str) -> dict:
        platform = {"architecture": arch, "os": "linux"}
        return {"mediaType": media_type, "digest": digest, "platform": platform}

    amd64 = put("docker", {"config": {}, "layers": []}, DOCKER_MANIFEST)
    arm64 = put("docker-arm64", {"config": {"arm": 1}, "layers": []}, DOCKER_MANIFEST)
    oci = put("oci", {"config": {}, "layers": []}, OCI_MANIFEST)
    put("oci-index", {"manifests": [descriptor(oci, OCI_MANIFEST, "amd64")]}, OCI_INDEX)
    children = [
        descriptor(arm64, DOCKER_MANIFEST, "arm64"),
        descriptor(amd64, DOCKER_MANIFEST, "amd64"),
    ]
    put("list", {"manifests": children}, DOCKER_LIST)
    put("arm-list", {"manifests": children[:1]}, DOCKER_LIST)
    return stored


# (stored kind, by "tag" or "digest", Accept) → (status, error code, or the kind served)
NEGOTIATION = [
    ("docker", "tag", DOCKER_MANIFEST, 200, "docker"),
    ("docker", "tag", None, 200, "docker"),  # v3 serves schema 2 whatever Accept says
    ("docker", "tag", SCHEMA1, 200, "docker"),
    ("docker", "digest", OCI_MANIFEST, 200, "docker"),
    ("oci", "tag", OCI_MANIFEST, 200, "oci"),
    ("oci", "tag", f"{DOCKER_MANIFEST}, {OCI_MANIFEST}; q=0.5", 200, "oci"),
    ("oci", "tag", f"{DOCKER_MANIFEST}, */*", 404, "MANIFEST_UNKNOWN"),
    ("oci", "digest", None, 404, "MANIFEST_UNKNOWN"),
    ("oci-index", "tag", OCI_INDEX, 200, "oci-index"),
    ("oci-index", "digest", f"{OCI_MANIFEST}, {DOCKER_LIST}", 404, "MANIFEST_UNKNOWN"),
    ("list", "tag", DOCKER_LIST, 200, "list"),
    ("list", "tag", DOCKER_MANIFEST, 200, "docker"),  # its linux/amd64 manifest instead
    ("list", "tag", OCI_INDEX, 400, "MANIFEST_INVALID"),
    ("list", "digest", SCHEMA1, 200, "list"),  # by digest it cannot be swapped
    ("arm-list", "tag", DOCKER_MANIFEST, 404, "MANIFEST_UNKNOWN"),
]


@pytest.mark.parametrize(("kind", "by", "accept", "status", "expected"), NEGOTIATION)
def test_manifests_are_served_by_accept_as_distribution_serves_them(
    sandbox, http, kind, by, accept, status, expected
):
    stored = _stored(sandbox)
    reference = kind if by == "tag" else stored[kind][0]
    url = f"{sandbox.url}/v2/{REPO}/manifests/{reference}"
    headers = {"Accept": accept or ""}  # none: as good as no Accept at all
    got, head = http.get(url, headers=headers), http.head(url, headers=headers)
    assert (got.status_code, head.status_code) == (status, status)
    assert head.content == b"" and head.headers["Content-Length"] == str(len(got.content))
    if status != 200:
        assert got.json()["errors"][0]["code"] == expected
        return
    digest, body = stored[expected]
    media_type = {"docker": DOCKER_MANIFEST, "oci": OCI_MANIFEST, "oci-index": OCI_INDEX}
    assert got.content == body
    for response in (got, head):
        assert response.headers["Content-Type"] == media_type.get(expected, DOCKER_LIST)
        assert response.headers["Docker-Content-Digest"] == digest


def test_gantry_reads_each_kind_of_manifest_by_tag_and_digest(sandbox):
    stored = _stored(sandbox)
    registry = Registry(sandbox.url)
    for kind, (digest, _) in stored.items():
        assert registry.get_digest(f"asia-northeast3-docker.pkg.dev/{REPO}:{kind}") == digest
        assert registry.get_digest(f"asia-northeast3-docker.pkg.dev/{REPO}@{digest}") == digest


# --- the Bearer challenge -------------------------------------------------------------------

BACKEND = "asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend"


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _counting(registry: Registry) -> list[str]:
    """Every request `registry` sends, as "METHOD path"."""
    seen: list[str] = []
    hook = [lambda request: seen.append(f"{request.method} {request.url.path}")]
    registry.http = httpx.Client(timeout=5, event_hooks={"request": hook})
    return seen


@pytest.fixture
def auth_sandbox(sandbox, http):
    assert http.post(f"{sandbox.url}/_sandbox/registry", json={"auth": True}).json() == {
        "auth": True
    }
    return sandbox


def test_the_auth_toggle_challenges_like_artifact_registry(auth_sandbox, http):
    url = auth_sandbox.url
    host = url.removeprefix("http://")
    manifest = f"{url}/v2/nemo-prod/registry/backend/manifests/prod-v1"
    for response in (http.get(manifest), http.head(manifest)):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer realm="{url}/v2/token",service="{host}",'
            'scope="repository:nemo-prod/registry/backend:pull"'
        )
    assert http.get(manifest).json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert http.get(f"{url}/v2/").status_code == 401
    query = {"service": host, "scope": "repository:nemo-prod/registry/backend:pull"}
    asked = http.get(f"{url}/v2/token", params=query)
    assert asked.status_code == 401 and asked.headers["WWW-Authenticate"].startswith("Basic ")
    for user, password in [("oauth2accesstoken", ""), ("someone", "ya29.x")]:
        assert (
            http.get(f"{url}/v2/token", params=query, headers=_basic(user, password)).status_code
            == 401
        )
    issued = http.get(
        f"{url}/v2/token", params=query, headers=_basic("oauth2accesstoken", "ya29.x")
    )
    body = issued.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert http.get(manifest, headers=bearer).status_code == 200
    assert http.get(f"{url}/v2/", headers=bearer).status_code == 200
    other = http.get(f"{url}/v2/nemo-dev/registry/backend/tags/list", headers=bearer)
    assert (
        other.status_code == 401
        and 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
    )
    assert http.get(f"{url}/_sandbox/registry").json() == {"auth": True}


def test_get_digest_follows_the_challenge_and_caches_the_token(auth_sandbox, monkeypatch):
    registry = Registry(auth_sandbox.url, access_token=lambda: "ya29.test")
    seen = _counting(registry)
    digest = auth_sandbox.world.registry.get("nemo-prod/registry/backend", "prod-v1")[0]
    assert registry.get_digest(f"{BACKEND}:prod-v1") == digest
    manifest = "/v2/nemo-prod/registry/backend/manifests/prod-v1"
    # 401, the realm asks for credentials, a token, then the manifest with it
    assert seen == [f"HEAD {manifest}", "GET /v2/token", "GET /v2/token", f"HEAD {manifest}"]
    seen.clear()
    assert registry.get_digest(f"{BACKEND}:prod-latest") != ""
    assert registry.get_digest(f"{BACKEND}@{digest}") == digest
    assert [call.split()[0] for call in seen] == ["HEAD", "HEAD"]  # the cached token, at once
    assert auth_sandbox.world.registry.token_requests == 1
    registry.get_digest("asia-northeast3-docker.pkg.dev/nemo-dev/registry/backend:dev-v1")
    assert auth_sandbox.world.registry.token_requests == 2  # another scope, another token
    # expired (as the client reckons): a new one; revoked by the registry: a new one too
    later = gcp_registry.monotonic() + 300
    monkeypatch.setattr(gcp_registry, "monotonic", lambda: later)
    registry.get_digest(f"{BACKEND}:prod-v1")
    assert auth_sandbox.world.registry.token_requests == 3
    auth_sandbox.world.registry.tokens.clear()
    assert registry.get_digest(f"{BACKEND}:prod-v1") == digest
    assert auth_sandbox.world.registry.token_requests == 4
    with pytest.raises(ImageNotFound):
        registry.get_digest(f"{BACKEND}:nope")


def test_a_refused_token_is_a_registry_error_with_its_status(auth_sandbox):
    registry = Registry(auth_sandbox.url, access_token=lambda: "")
    with pytest.raises(RegistryError, match=r"token endpoint .* answered 401") as raised:
        registry.get_digest(f"{BACKEND}:prod-v1")
    assert raised.value.status_code == 401 and not isinstance(raised.value, ImageNotFound)
    assert auth_sandbox.world.registry.token_requests == 0


def _fake_registry(realm: str, seen: list[httpx.Request]) -> httpx.Client:
    """A registry (no network) that challenges with `realm`, whose realm issues "t0k"."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v2/token":
            return httpx.Response(200, json={"token": "t0k", "expires_in": 300})
        if request.headers.get("authorization") == "Bearer t0k":
            return httpx.Response(200, headers={"Docker-Content-Digest": "sha256:" + "1" * 64})
        challenge = f'Bearer realm="{realm}",service="registry",scope="repository:p/r/app:pull"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    return httpx.Client(transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    ("url", "realm"),
    [
        ("", "https://127.0.0.1/computeMetadata/v1/token"),  # not the image's host
        ("", "http://europe-docker.pkg.dev/v2/token"),  # the image's host, but not over https
        ("", "https://europe-docker.pkg.dev:8443/v2/token"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5001/v2/token"),
        ("http://127.0.0.1:5000", "http://localhost:5000/v2/token"),
        ("http://127.0.0.1:5000", "/v2/token"),
    ],
)
def test_a_realm_on_another_host_is_refused_before_any_request(url, realm):
    seen: list[httpx.Request] = []
    registry = Registry(url, access_token=lambda: pytest.fail("no credentials for a refused realm"))
    registry.http = _fake_registry(realm, seen)
    with pytest.raises(RegistryError, match="refusing the token realm") as raised:
        registry.get_digest("europe-docker.pkg.dev/p/r/app:v1")
    assert raised.value.status_code == 401
    assert [request.url.path for request in seen] == ["/v2/p/r/app/manifests/v1"]


def test_google_gets_the_adc_token_as_basic_credentials_at_once():
    seen: list[httpx.Request] = []
    registry = Registry(access_token=lambda: "ya29.adc")
    registry.http = _fake_registry("https://europe-docker.pkg.dev/v2/token", seen)
    assert registry.get_digest("europe-docker.pkg.dev/p/r/app:v1") == "sha256:" + "1" * 64
    head, token, retry = seen
    assert str(head.url) == "https://europe-docker.pkg.dev/v2/p/r/app/manifests/v1"
    assert "authorization" not in head.headers
    assert token.url.params.multi_items() == [
        ("service", "registry"),
        ("scope", "repository:p/r/app:pull"),
    ]
    assert (
        token.headers["authorization"] == _basic("oauth2accesstoken", "ya29.adc")["Authorization"]
    )
    assert retry.headers["authorization"] == "Bearer t0k"
    assert retry.headers["accept"] == ", ".join(MANIFEST_TYPES)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://r/t",service="r",scope="repository:a/b:pull"',
            [("bearer", {"realm": "https://r/t", "service": "r", "scope": "repository:a/b:pull"})],
        ),
        (
            'Basic realm="a \\"quoted\\", realm", BEARER Realm = "x" , error=invalid_token',
            [
                ("basic", {"realm": 'a "quoted", realm'}),
                ("bearer", {"realm": "x", "error": "invalid_token"}),
            ],
        ),
        ('Negotiate abc==, Bearer realm="r"', [("negotiate", {}), ("bearer", {"realm": "r"})]),
        ('Bearer realm="r" service="s"', [("bearer", {})]),  # no comma: malformed, read no further
    ],
)
def test_challenges_are_parsed_as_auth_params(header, expected):
    assert gcp_registry.parse_challenges(header) == expected
