"""Auth glue: what Gantry knows about a user beyond Django's User."""

import hashlib
import re
import secrets
import unicodedata

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.signals import post_save
from django.utils import timezone

from audit.models import AuditEvent

LOGIN = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,98}[a-z0-9])?(?:\[bot\])?")


def clean_login(value: str) -> str:
    """A GitHub login as Gantry keeps it: NFKC, without format characters (zero-width space,
    BOM, direction marks), trimmed, in the case GitHub gave it (logins are shown as typed)."""
    text = unicodedata.normalize("NFKC", value or "")
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()


def normalize_login(value: str) -> str:
    """A GitHub login as Gantry compares it: clean_login, case-folded. GitHub logins are
    case-insensitive, and text that looks the same must compare the same, or a stray character
    lets an author approve."""
    return unicodedata.normalize("NFKC", clean_login(value).casefold())


def login_problem(value) -> str | None:
    """Why `value` cannot be a GitHub login (None when it can), said about its normalised form."""
    if not isinstance(value, str):
        return f"must be a GitHub login (a string), not {value!r}"
    login = normalize_login(value)
    if not LOGIN.fullmatch(login):
        return (
            f"{value!r} is not a GitHub login (letters, digits, - or _, at most 100, not "
            "starting or ending with -)"
        )
    return None


class Profile(models.Model):
    """What Gantry knows of a user beyond Django's User: who they are on GitHub, and who said so.
    Only an admin sets it (the topology's `people:` section, or a superuser in the admin), never
    the user, so nobody can declare themselves someone else to approve their own build."""

    class Source(models.TextChoices):
        NONE = "", "not set"
        TOPOLOGY = "topology", "the topology's people: section"
        ADMIN = "admin", "a superuser, in the admin"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    github_login = models.CharField(
        max_length=100,
        blank=True,
        help_text="GitHub login, to stop people approving their own builds. Set by the "
        "topology's people: section or a superuser; a topology load puts back its own value.",
    )
    github_login_source = models.CharField(
        "GitHub login set by", max_length=8, choices=Source.choices, blank=True, editable=False
    )

    def __str__(self):
        return f"{self.user} ({self.github_login or 'no GitHub login'})"

    def clean(self):
        if self.github_login and (problem := login_problem(self.github_login)):
            raise ValidationError({"github_login": problem})

    def set_github_login(self, login: str, source: str, *, actor=None, request=None) -> bool:
        """Set the login (normalised) and where it came from; saved and audited as
        `profile.github_login`. Clearing it clears its source. False when nothing changed."""
        login = normalize_login(login)
        source = source if login else self.Source.NONE
        stored = Profile.objects.filter(pk=self.pk).first() if self.pk else None
        before = normalize_login(stored.github_login) if stored else ""
        if (login, source) == (before, stored.github_login_source if stored else ""):
            return False
        self.github_login, self.github_login_source = login, source
        self.save()
        AuditEvent.record(
            "profile.github_login",
            actor=actor,
            obj=self,
            message=f"{self.user}: GitHub login {before!r} -> {login!r}",
            data={"user": self.user.get_username(), "from": before, "to": login, "source": source},
            request=request,
        )
        return True


def github_login(user) -> str:
    """The user's GitHub login as an admin set it, normalised; "" when none is known. The
    username never stands in for it: under IAP it is an e-mail address, and anyone may pick a
    local one."""
    profile = Profile.objects.filter(user=user).first()
    return normalize_login(profile.github_login) if profile else ""


class Person(models.Model):
    """One entry of the topology's `people:` section: an account (by e-mail or username) and its
    GitHub login. `load_topology` keeps these rows; they reach an account's Profile at the load,
    or when the account is made later (IAP makes one at the first sign-in)."""

    identity = models.CharField(
        max_length=150, unique=True, help_text="e-mail address or username, lower case"
    )
    github_login = models.CharField(max_length=100)

    class Meta:
        ordering = ["identity"]
        verbose_name_plural = "people"

    def __str__(self):
        return f"{self.identity} (GitHub {self.github_login})"

    def clean(self):
        if problem := login_problem(self.github_login):
            raise ValidationError({"github_login": problem})

    @staticmethod
    def identity_of(user) -> str:
        return user.get_username().lower()


def _link_new_account(sender, instance, created, raw=False, **kwargs):
    """A new account named in `people:` gets its GitHub login at once."""
    if not created or raw:
        return
    person = Person.objects.filter(identity=Person.identity_of(instance)).first()
    if person is not None:
        Profile(user=instance).set_github_login(person.github_login, Profile.Source.TOPOLOGY)


post_save.connect(_link_new_account, sender=settings.AUTH_USER_MODEL, dispatch_uid="gantry-people")


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
