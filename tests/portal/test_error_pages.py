"""With DEBUG off, errors are answered with Gantry's own pages (templates/404.html, 403.html,
500.html), never Django's debug pages or its bare defaults, and say nothing of the error."""

import pytest
from django.contrib.auth.decorators import login_not_required
from django.test import Client
from django.urls import include, path

pytestmark = pytest.mark.urls(__name__)


@login_not_required
def boom(request):
    raise RuntimeError("kaboom: a detail only the log may see")


urlpatterns = [path("boom/", boom), path("", include("portal.urls"))]
handler500 = "portal.views.server_error"  # as portal/urls.py says

GANTRY = "· Gantry</title>"
DJANGO_PAGES = (
    "The requested resource was not found on this server",  # Django's bare 404
    "Using the URLconf defined in",  # its debug 404
    "Traceback",  # its debug 500
    "<h1>Server Error (500)</h1>",  # its bare 500
    "403 Forbidden",  # its bare 403
)


@pytest.fixture
def production(settings):
    settings.DEBUG = False


def assert_gantry_page(response, status, heading):
    page = response.content.decode()
    assert response.status_code == status
    assert GANTRY in page and heading in page
    for marker in DJANGO_PAGES:
        assert marker not in page


@pytest.mark.django_db
def test_an_unknown_url_is_gantrys_404_signed_in_or_not(client, client_as, production):
    assert_gantry_page(client.get("/no/such/page/"), 404, "Page not found")
    signed_in = client_as("viewer")
    response = signed_in.get("/no/such/page/")
    assert_gantry_page(response, 404, "Page not found")
    assert "Environments</a>" in response.content.decode()  # the usual top bar, signed in


@pytest.mark.django_db
def test_an_object_that_is_not_there_is_gantrys_404(client_as, production):
    response = client_as("viewer").get("/environments/staging/")
    assert_gantry_page(response, 404, "Page not found")


@pytest.mark.django_db
def test_a_page_the_role_may_not_see_is_gantrys_403(client_as, production):
    response = client_as(None, "nobody").get("/releases/")
    assert_gantry_page(response, 403, "Not allowed")


@pytest.mark.django_db
def test_an_error_is_gantrys_500_and_never_shows_the_exception(production):
    response = Client(raise_request_exception=False).get("/boom/")
    assert_gantry_page(response, 500, "Something went wrong")
    assert "kaboom" not in response.content.decode()
