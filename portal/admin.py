from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from .models import ApiToken, Profile


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False


admin.site.unregister(User)


@admin.register(User)
class GantryUserAdmin(UserAdmin):
    """Only a superuser hands out privileges. The admin role may add and change users, but for
    anyone else the privilege fields are read-only (so left out of the form: a POST that sets
    them is ignored), and a superuser's account, password included, cannot be changed."""

    inlines = [ProfileInline]
    PRIVILEGES = ["is_superuser", "is_staff", "groups", "user_permissions"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else [*fields, *self.PRIVILEGES]

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        """Refused here too, whatever the form: no non-superuser saves a privilege change."""
        if not request.user.is_superuser:
            stored = User.objects.filter(pk=obj.pk).first() if change else User()
            if (obj.is_superuser, obj.is_staff) != (stored.is_superuser, stored.is_staff):
                raise PermissionDenied("Only a superuser may change is_superuser or is_staff.")
            if {"groups", "user_permissions"} & set(form.changed_data):
                raise PermissionDenied("Only a superuser may change groups or permissions.")
        super().save_model(request, obj, form, change)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Issuing a token shows it once, in the page that answers the form (never in a message:
    Django keeps those in a cookie, or in the session); afterwards only its prefix is known."""

    list_display = ["name", "user", "key_prefix", "created_at", "last_used_at", "revoked"]
    list_filter = ["revoked"]
    fields = ["name", "user", "revoked"]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "user"] if obj else []

    def save_model(self, request, obj, form, change):
        if not change:
            obj.raw_token = obj.issue()  # on this instance only, for response_add
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(obj, "raw_token", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"API token {obj.name} issued",
            "token": obj,
            "raw_token": raw,
        }
        response = TemplateResponse(request, "admin/portal/apitoken/issued.html", context)
        add_never_cache_headers(response)  # no cache, proxy or back button keeps the page
        return response
