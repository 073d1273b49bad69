from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts import limits
from config import ratelimits


class LimitedModelBackend(ModelBackend):
    """Django's user-and-password backend, refusing an account or address over its failed log-in limit.

    The limit is checked before the password, so a refused attempt costs no password hash and
    says nothing about the password. PermissionDenied makes django.contrib.auth.authenticate()
    stop; the log-in form then shows the refusal (accounts.forms.LoginForm) and the page goes
    out as 429. Failures are counted by accounts.limits.count_failed_login.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is not None:
            limited = limits.login_refusal(request, username)
            if limited is not None:
                ratelimits.refuse(request, limited)
                raise PermissionDenied(limited.message)
        return super().authenticate(request, username=username, password=password, **kwargs)
