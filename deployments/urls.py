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
    path("deployments/<int:pk>/pause/", views.deployment_pause, name="deployment-pause"),
    path("deployments/<int:pk>/resume/", views.deployment_resume, name="deployment-resume"),
    path("deployments/<int:pk>/promote/", views.deployment_promote, name="deployment-promote"),
    path("deployments/<int:pk>/abort/", views.deployment_abort, name="deployment-abort"),
    path(
        "deployments/<int:pk>/swap-back/",
        views.deployment_swap_back,
        name="deployment-swap-back",
    ),
    path(
        "deployments/<int:pk>/override-freeze/",
        views.deployment_override_freeze,
        name="deployment-override-freeze",
    ),
]
