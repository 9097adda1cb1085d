from django.urls import path

from . import views

urlpatterns = [
    path("environments/<slug:name>/", views.environment_detail, name="environment"),
    path(
        "environments/<slug:name>/components/<slug:component>/",
        views.component_detail,
        name="component",
    ),
]
