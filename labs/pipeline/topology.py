"""Which simulated providers a run has (a primary and a secondary per channel, each run as a few
instances when the run's service discovery is on: labs.pipeline.discovery), and lab 9's two services."""

PROVIDERS: dict[str, tuple[str, str]] = {
    "email": ("email-primary", "email-secondary"),
    "sms": ("sms-primary", "sms-secondary"),
    "push": ("push-primary", "push-secondary"),
    "inapp": ("inapp-primary", "inapp-secondary"),
}
ALL_PROVIDERS = [name for pair in PROVIDERS.values() for name in pair]
# The services the API's synchronous path calls in lab 9 (labs/services.py, labs/pipeline/sync_chain.py).
PREFERENCES_SERVICE, TEMPLATE_SERVICE = SERVICES = ("preferences-service", "template-service")

INSTANCES_PER_PROVIDER = 3


def instances(provider: str) -> list[str]:
    """The instances of a provider, by name: "email-primary-1", "email-primary-2", ..."""
    return [f"{provider}-{n}" for n in range(1, INSTANCES_PER_PROVIDER + 1)]


ALL_INSTANCES = [instance for provider in ALL_PROVIDERS for instance in instances(provider)]
INSTANCE_OF = {instance: provider for provider in ALL_PROVIDERS for instance in instances(provider)}
