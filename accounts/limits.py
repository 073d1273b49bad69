"""How often someone may try to log in or sign up (the counting itself is config/ratelimits.py).

Log-in counts failures: per account (strict, so guessing one password is slow) and per client
address (generous, since a classroom behind one router shares an address, but bounded, so one
machine cannot guess across every account). Once either is used up, every log-in attempt for it
is refused until the window ends, the right password included: otherwise the answer would tell
a guesser when they had it. Sign-up counts every attempt per address, which also bounds how many
user names anyone can probe with Django's "already exists" message.
"""

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from config import ratelimits
from config.ratelimits import Limited


def _account(username: str | None) -> str:
    return (username or "").strip().casefold()[:150]


def login_refusal(request: HttpRequest, username: str | None) -> Limited | None:
    per_account = ratelimits.used_up(
        request, "login-account", _account(username), settings.RATELIMIT_LOGIN_PER_ACCOUNT,
        "Too many failed log-ins for this account.",
    )  # fmt: skip
    per_address = per_account or ratelimits.used_up(
        request, "login-address", ratelimits.client_address(request), settings.RATELIMIT_LOGIN_PER_ADDRESS,
        "Too many failed log-ins from your network.",
    )  # fmt: skip
    return per_address


@receiver(user_login_failed)
def count_failed_login(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    """Every failed log-in, whichever form or page sent it (Django's authenticate() sends the signal)."""
    if request is None:  # a log-in outside a request (a script, a test helper) has no address to count
        return
    ratelimits.count(request, "login-account", _account(credentials.get("username")), settings.RATELIMIT_LOGIN_PER_ACCOUNT)
    ratelimits.count(request, "login-address", ratelimits.client_address(request), settings.RATELIMIT_LOGIN_PER_ADDRESS)


def signup_refusal(request: HttpRequest) -> Limited | None:
    return ratelimits.take(
        request, "signup-address", ratelimits.client_address(request), settings.RATELIMIT_SIGNUP_PER_ADDRESS,
        "Too many sign-ups from your network.",
    )  # fmt: skip


def sentence(limited: Limited) -> str:
    """What a form says: the refusal and how long to wait."""
    return f"{limited.message} Try again in {limited.wait}."


def reset_refusal(request: HttpRequest, email: str) -> Limited | None:
    """Every password-reset request counts: per e-mail address typed, and per client address."""
    return ratelimits.take(
        request, "reset-account", _account(email), settings.RATELIMIT_RESET_PER_ACCOUNT,
        "Too many password-reset requests for this address.",
    ) or ratelimits.take(
        request, "reset-address", ratelimits.client_address(request), settings.RATELIMIT_RESET_PER_ADDRESS,
        "Too many password-reset requests from your network.",
    )  # fmt: skip
