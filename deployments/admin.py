from django.contrib import admin

from .models import Approval, Deployment, DeploymentEvent, Release


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "repository",
        "branch",
        "short_sha",
        "author",
        "source",
        "created_at",
    ]
    list_filter = ["component__environment", "branch", "source"]
    search_fields = ["sha", "repository", "version", "title", "author"]
    readonly_fields = [f.name for f in Release._meta.fields]

    def has_add_permission(self, request):
        return False


class DeploymentEventInline(admin.TabularInline):
    model = DeploymentEvent
    readonly_fields = ["at", "kind", "message", "data"]
    extra = 0
    can_delete = False


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    """Read-only: deployments change state only through the engine and the pages."""

    list_display = ["__str__", "component", "state", "strategy", "created_at", "finished_at"]
    list_filter = ["state", "component__environment"]
    readonly_fields = [f.name for f in Deployment._meta.fields]
    inlines = [DeploymentEventInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    list_display = ["deployment", "user", "decision", "created_at"]
    readonly_fields = [f.name for f in Approval._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
