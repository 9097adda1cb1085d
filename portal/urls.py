from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views
from .api import api
from .forms import SignInForm

handler500 = "portal.views.server_error"

urlpatterns = [
    path("api/", api.urls),
    path("", include("environments.urls")),
    path("", include("deployments.urls")),
    path("", include("github.urls")),
    path("", include("audit.urls")),
    path("", include("notifications.urls")),
    path("", include("insights.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            authentication_form=SignInForm, redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
