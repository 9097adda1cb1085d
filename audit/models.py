"""The append-only audit log: who did what, when, and from where."""

from django.db import models
from django.utils import timezone

from portal.addresses import client_address


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete an audit row."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events are never updated")

    def delete(self):
        raise AppendOnlyError("audit events are never deleted")


class AuditEvent(models.Model):
    """One recorded action. The actor is kept by name so rows never change when users do."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150, help_text="username, or 'system' for workers")
    action = models.CharField(max_length=64, db_index=True, help_text="e.g. topology.load")
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("audit events are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events are never deleted")

    @classmethod
    def record(cls, action, *, actor=None, obj=None, message="", data=None, request=None):
        """Write one event. `actor` is a user, a name, or None for the system."""
        if request is not None and actor is None and request.user.is_authenticated:
            actor = request.user
        name = getattr(actor, "get_username", lambda: actor)() or "system"
        return cls.objects.create(
            actor=name,
            action=action,
            object_type=obj._meta.label_lower if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            object_repr=str(obj)[:200] if obj is not None else "",
            message=message,
            data=data or {},
            remote_addr=client_address(request) if request is not None else None,
        )
