from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.forms.utils import ErrorDict

from accounts import limits
from config import ratelimits


class RefusalMessage:
    """A log-in form that says "too many attempts, wait N seconds" when LoginLimitBackend refused it."""

    def get_invalid_login_error(self):
        limited = getattr(self.request, "rate_limited", None)
        if limited is not None:
            return ValidationError(limits.sentence(limited), code="rate_limited")
        return super().get_invalid_login_error()


class LoginForm(RefusalMessage, AuthenticationForm):
    pass


class AdminLoginForm(RefusalMessage, AdminAuthenticationForm):
    pass


class SignUpForm(UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional. Only used to reset your password.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def __init__(self, *args, request, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request  # whose sign-ups are counted (accounts/limits.py)

    def full_clean(self):
        # Counted before anything is checked, so a refused attempt tells nothing about the user name.
        limited = limits.signup_refusal(self.request) if self.is_bound else None
        if limited is None:
            return super().full_clean()
        ratelimits.refuse(self.request, limited)
        self._errors, self.cleaned_data = ErrorDict(), {}
        self.add_error(None, ValidationError(limits.sentence(limited), code="rate_limited"))
