"""The sign-in form."""

from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed


class SignInForm(AuthenticationForm):
    """Django's sign-in form, where a username longer than any account's can be is a failed
    sign-in like any other: the same form error, counted towards the lockout and written to the
    audit log with the name cut to the longest a username can be. (Django's form does not check
    the length; the name went on to django-axes, whose column is 255 characters: a 500 on
    PostgreSQL.)"""

    def clean(self):
        username = self.cleaned_data.get("username")
        longest = self.fields["username"].max_length
        if username is not None and self.cleaned_data.get("password") and len(username) > longest:
            # What authenticate() sends when no backend knows the name; no password is passed.
            credentials = {"username": username[:longest]}
            user_login_failed.send(sender=__name__, credentials=credentials, request=self.request)
            raise self.get_invalid_login_error()
        return super().clean()
