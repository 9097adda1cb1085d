from django import forms
from django.contrib import admin

from audit.models import AuditEvent

from .models import Channel, Event, webhook_url


class SecretURLField(forms.URLField):
    def has_changed(self, initial, data):
        return bool(data) and super().has_changed(initial, data)


class ChannelForm(forms.ModelForm):
    """The URL is write-only: the form never renders the stored one, and a blank field on
    change keeps it."""

    url = SecretURLField(
        label="URL",
        max_length=500,
        required=False,
        assume_scheme="https",
        validators=[webhook_url],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The incoming webhook URL. Stored as a secret and shown masked; leave blank "
        "to keep the current one.",
    )
    events = forms.MultipleChoiceField(
        choices=Event.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=Event.values,
    )

    class Meta:
        model = Channel
        fields = ["environment", "name", "kind", "url", "events", "enabled"]

    def clean_url(self):
        url = self.cleaned_data.get("url")
        if url:
            return url
        if self.instance.pk:
            return self.instance.url
        raise forms.ValidationError("Enter the webhook URL.")


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["__str__", "kind", "masked_url", "enabled", "health"]
    list_filter = ["environment", "kind", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["masked_url", "consecutive_failures", "last_success_at", "last_failure_at"]

    def get_fields(self, request, obj=None):
        fields = ["environment", "name", "kind", "url", "events", "enabled"]
        if obj is not None:
            fields += ["masked_url", "consecutive_failures", "last_success_at", "last_failure_at"]
        if not self.has_change_permission(request, obj):
            fields.remove("url")  # a read-only view would print the stored URL
        return fields

    @admin.display(description="URL")
    def masked_url(self, obj):
        return obj.masked_url

    @admin.display(description="health")
    def health(self, obj):
        if obj.failing:
            return f"failing ({obj.consecutive_failures} in a row)"
        return "ok"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        AuditEvent.record(
            "channel.change" if change else "channel.create",
            obj=obj,
            request=request,
            message=", ".join(form.changed_data),
            data={
                "kind": obj.kind,
                "url": obj.masked_url,
                "events": obj.events,
                "enabled": obj.enabled,
            },
        )

    def delete_model(self, request, obj):
        AuditEvent.record("channel.delete", obj=obj, request=request)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            AuditEvent.record("channel.delete", obj=obj, request=request)
        super().delete_queryset(request, queryset)
