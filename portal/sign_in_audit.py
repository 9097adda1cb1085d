"""Sign-ins, failed sign-ins and lockouts go to the audit log; passwords never do."""

from audit.models import AuditEvent


def signed_in(sender, request, user, **kwargs):
    AuditEvent.record("auth.login", actor=user, request=request)


def sign_in_failed(sender, credentials, request=None, **kwargs):
    """Django passes the credentials with the password already masked; keep only the name."""
    AuditEvent.record(
        "auth.login_failed",
        actor=str(credentials.get("username", ""))[:150] or "anonymous",
        request=request,
    )


def locked_out(sender, request, username, ip_address, **kwargs):
    AuditEvent.record(
        "auth.lockout",
        actor=(username or "anonymous")[:150],
        message=f"too many failed sign-ins from {ip_address}",
        request=request,
    )
