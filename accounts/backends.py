from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied, ValidationError

from accounts import limits
from config import prepared, ratelimits


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

    def get_user(self, user_id):
        """The signed-in user of a request, as ModelBackend finds it, with a query compiled once (config/prepared.py)
        rather than built on every page (every signed-in page pays it)."""
        model = get_user_model()
        try:
            pk = model._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        found = _USER_BY_PK.instances(model, pk=pk)
        return found[0] if found and self.user_can_authenticate(found[0]) else None


_USER_BY_PK = prepared.Prepared(
    lambda pk: get_user_model()._default_manager.filter(pk=pk).values_list(*prepared.attnames(get_user_model())), pk=-1
)
