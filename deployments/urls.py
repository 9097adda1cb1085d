from django.urls import path

from . import inbox, views

urlpatterns = [
    path("", views.home, name="home"),
    path("releases/", views.release_list, name="releases"),
    path("releases/<int:pk>/", views.release_detail, name="release"),
    path("releases/<int:pk>/redeploy/", views.release_redeploy, name="release-redeploy"),
    path(
        "environments/<slug:name>/components/<slug:component>/rollback/",
        views.component_rollback,
        name="component-rollback",
    ),
    path("approvals/", inbox.approvals, name="approvals"),
    path("deployments/", views.deployment_list, name="deployments"),
    path("deployments/<int:pk>/", views.deployment_detail, name="deployment"),
    path("deployments/<int:pk>/decide/", views.deployment_decide, name="deployment-decide"),
    path("deployments/<int:pk>/cancel/", views.deployment_cancel, name="deployment-cancel"),
    path(
        "deployments/<int:pk>/override-freeze/",
        views.deployment_override_freeze,
        name="deployment-override-freeze",
    ),
]
