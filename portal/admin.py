from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from .models import ApiToken, Person, Profile


class ProfileInline(admin.StackedInline):
    """Who the user is on GitHub decides which builds they may approve, so only a superuser sets
    it here (GantryUserAdmin.save_formset refuses anyone else, and audits each change)."""

    model = Profile
    can_delete = False
    fields = ["github_login", "github_login_source"]

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return ["github_login_source"]
        return ["github_login", "github_login_source"]


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

    def save_formset(self, request, form, formset, change):
        """A GitHub login is saved through Profile.set_github_login: normalised, marked as set
        in the admin, audited; from anyone but a superuser, refused."""
        if formset.model is not Profile:
            return super().save_formset(request, form, formset, change)
        edited = formset.save(commit=False)  # only github_login is editable: the edited ones
        if edited and not request.user.is_superuser:
            raise PermissionDenied("Only a superuser may set a GitHub login.")
        for profile in edited:
            profile.set_github_login(
                profile.github_login, Profile.Source.ADMIN, actor=request.user, request=request
            )


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    """The topology's `people:` section as loaded, to review; change it in the file."""

    list_display = ["identity", "github_login"]
    search_fields = ["identity", "github_login"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
