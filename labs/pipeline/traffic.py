"""Traffic a learner (or an instructor) can throw at a run: one message, a campaign burst, a poison message."""

import random
import uuid

from labs.models import LabRun, Template
from labs.pipeline import intake

SAMPLE_DATA = {
    "security_alert": {"device": "Firefox on a new laptop"},
    "password_reset": {"code": "314159"},
    "order_shipped": {"order_id": "A-1042"},
    "weekly_digest": {"count": 5},
    "inapp_message": {"text": "Your report is ready"},
}


def _users(run: LabRun) -> list[int]:
    return list(run.recipients.values_list("number", flat=True))


def send_one(run: LabRun, user_id: int, template: str, data: dict | None = None, channels=None) -> intake.Accepted:
    request = intake.IntentRequest(f"ui-{uuid.uuid4().hex}", user_id, template, None, channels,
                                   SAMPLE_DATA.get(template, {}) if data is None else data)  # fmt: skip
    return intake.accept(run, [request])[0]


def send_burst(run: LabRun, count: int = 500, template: str = "weekly_digest") -> int:
    """A marketing campaign: `count` messages to random users, accepted in one transaction."""
    if not 1 <= count <= 1000:
        raise ValueError("a burst is between 1 and 1,000 messages")
    users = _users(run)
    burst = uuid.uuid4().hex[:8]
    requests = [
        intake.IntentRequest(f"burst-{burst}-{n}", random.choice(users), template, data=SAMPLE_DATA.get(template, {}))
        for n in range(count)
    ]
    return len(intake.accept(run, requests))


def send_poison(run: LabRun, count: int = 1) -> int:
    """Messages that can never succeed: an order update without its order id."""
    if not Template.objects.filter(run=run, name="order_shipped").exists():
        raise ValueError("this run has no order_shipped template to poison")
    users = _users(run)
    requests = [
        intake.IntentRequest(f"poison-{uuid.uuid4().hex}", random.choice(users), "order_shipped", channels=["email"], data={})
        for _ in range(count)
    ]
    return len(intake.accept(run, requests))
