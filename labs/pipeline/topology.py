"""Which simulated providers a run has (a primary and a secondary per channel), and lab 9's two services."""

PROVIDERS: dict[str, tuple[str, str]] = {
    "email": ("email-primary", "email-secondary"),
    "sms": ("sms-primary", "sms-secondary"),
    "push": ("push-primary", "push-secondary"),
    "inapp": ("inapp-primary", "inapp-secondary"),
}
ALL_PROVIDERS = [name for pair in PROVIDERS.values() for name in pair]
# The services the API's synchronous path calls in lab 9 (labs/services.py, labs/pipeline/sync_chain.py).
PREFERENCES_SERVICE, TEMPLATE_SERVICE = SERVICES = ("preferences-service", "template-service")
