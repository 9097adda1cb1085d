"""Auth glue: what Gantry knows about a user beyond Django's User."""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    github_login = models.CharField(
        max_length=100,
        blank=True,
        help_text="GitHub login, to stop people approving their own builds",
    )

    def __str__(self):
        return f"{self.user} ({self.github_login or 'no GitHub login'})"


def github_login(user) -> str:
    """The user's GitHub login: their profile's, else their username."""
    profile = Profile.objects.filter(user=user).first()
    return (
        profile.github_login if profile and profile.github_login else user.get_username()
    ).lower()


class ApiToken(models.Model):
    """A bearer token for a service account (e.g. a GitHub Actions job). Only its hash is kept;
    the token itself is shown once, when it is issued."""

    PREFIX = "gty_"

    name = models.CharField(max_length=100)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        help_text="the account whose roles the token acts with",
    )
    key_prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.key_prefix}…)"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    def issue(self) -> str:
        """Give this (unsaved) token a fresh secret; returns the secret to show once."""
        raw = self.PREFIX + secrets.token_urlsafe(32)
        self.key_prefix, self.key_hash = raw[:12], self.hash(raw)
        return raw

    @classmethod
    def authenticate(cls, header: str):
        """The token for an 'Authorization: Bearer …' header, or None."""
        scheme, _, raw = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not raw.startswith(cls.PREFIX):
            return None
        token = (
            cls.objects.select_related("user")
            .filter(key_hash=cls.hash(raw.strip()), revoked=False)
            .first()
        )
        if token is None or not token.user.is_active:
            return None
        cls.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token
