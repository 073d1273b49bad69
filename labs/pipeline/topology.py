"""Which simulated providers a run has: a primary and a secondary per channel."""

PROVIDERS: dict[str, tuple[str, str]] = {
    "email": ("email-primary", "email-secondary"),
    "sms": ("sms-primary", "sms-secondary"),
    "push": ("push-primary", "push-secondary"),
    "inapp": ("inapp-primary", "inapp-secondary"),
}
ALL_PROVIDERS = [name for pair in PROVIDERS.values() for name in pair]
