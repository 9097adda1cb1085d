from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from .models import ApiToken, Profile


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False


admin.site.unregister(User)


@admin.register(User)
class GantryUserAdmin(UserAdmin):
    inlines = [ProfileInline]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Issuing a token shows it once; afterwards only its prefix is known."""

    list_display = ["name", "user", "key_prefix", "created_at", "last_used_at", "revoked"]
    list_filter = ["revoked"]
    fields = ["name", "user", "revoked"]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "user"] if obj else []

    def save_model(self, request, obj, form, change):
        raw = None if change else obj.issue()
        super().save_model(request, obj, form, change)
        if raw:
            self.message_user(
                request, f"Token for {obj.user}: {raw} — copy it now, it is not shown again."
            )
