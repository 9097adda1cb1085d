from django.contrib import admin

from .models import GitHubDeployment, GitHubStatus, ProtectionRule


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the workers keep: shown for people chasing a problem, changed by nobody here."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class GitHubStatusInline(admin.TabularInline):
    model = GitHubStatus
    fields = ["gantry_state", "state", "description", "created_at", "posted_at", "github_id"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(GitHubDeployment)
class GitHubDeploymentAdmin(ReadOnlyAdmin):
    list_display = ["deployment", "repository", "environment", "github_id", "last_error"]
    inlines = [GitHubStatusInline]


@admin.register(ProtectionRule)
class ProtectionRuleAdmin(ReadOnlyAdmin):
    list_display = ["repository", "sha", "environment", "verdict", "answered_at", "last_error"]
    list_filter = ["environment", "verdict"]
