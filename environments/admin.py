from django import forms
from django.contrib import admin

from .models import Component, Environment, FreezeWindow, Network, Repository


class NetworkForm(forms.ModelForm):
    class Meta:
        model = Network
        fields = ["environment", "name", "display_name", "vpc", "cidr", "peers"]

    def clean(self):
        cleaned = super().clean()
        environment = cleaned.get("environment")
        strays = [
            p for p in cleaned.get("peers", []) if environment and p.environment != environment
        ]
        if strays:
            self.add_error("peers", "peers must be networks of the same environment")
        return cleaned


class NetworkInline(admin.TabularInline):
    model = Network
    fields = ["name", "display_name", "vpc", "cidr"]
    extra = 0


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "display_name",
        "gcp_project",
        "region",
        "requires_approval",
        "approvals_required",
    ]
    inlines = [NetworkInline]


@admin.register(Network)
class NetworkAdmin(admin.ModelAdmin):
    form = NetworkForm
    list_display = ["__str__", "display_name", "vpc", "cidr"]
    list_filter = ["environment"]
    filter_horizontal = ["peers"]


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    list_display = ["__str__", "tier", "network", "port", "probe_kind", "deploy_kind", "strategy"]
    list_filter = ["environment", "tier", "deploy_kind"]
    search_fields = ["name", "display_name", "mig", "instance"]
    fieldsets = [
        (
            None,
            {"fields": ["environment", "network", "name", "display_name", "tier", "host", "port"]},
        ),
        (
            "Probe",
            {"fields": ["probe_kind", "probe_path", "probe_expect_status", "probe_expect_json"]},
        ),
        (
            "Deploy",
            {
                "fields": [
                    "deploy_kind",
                    "strategy",
                    "image",
                    "tag_template",
                    "machine_type",
                    "size",
                    "mig",
                    "blue_mig",
                    "green_mig",
                    "backend_service",
                    "instance",
                    "instance_zone",
                ]
            },
        ),
        ("Options", {"fields": ["options"]}),
    ]


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = ["full_name", "components", "workflows", "registry"]
    search_fields = ["full_name"]


@admin.register(FreezeWindow)
class FreezeWindowAdmin(admin.ModelAdmin):
    list_display = ["environment", "name", "schedule", "reason", "enabled", "from_topology"]
    list_filter = ["environment", "enabled"]
    readonly_fields = ["from_topology"]
    fieldsets = [
        (None, {"fields": ["environment", "name", "reason", "enabled", "from_topology"]}),
        ("Weekly", {"fields": ["weekly_from", "weekly_to", "timezone"]}),
        ("Once", {"fields": ["starts_at", "ends_at"]}),
    ]
