"""The notification pipeline's state, one lab run at a time.

Every row belongs to exactly one LabRun (directly or through its parent), and
every query in the pipeline filters by run: that is what keeps one learner's
experiment out of another's.
"""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PUSH = "push", "Push"
    INAPP = "inapp", "In-app"


class Priority(models.TextChoices):
    TRANSACTIONAL = "transactional", "Transactional"
    MARKETING = "marketing", "Marketing"


class TemplateCategory(models.TextChoices):
    SECURITY = "security", "Security"
    TRANSACTIONAL = "transactional", "Transactional"
    MARKETING = "marketing", "Marketing"


class SagaMode(models.TextChoices):
    """How an order saga is coordinated (lab 7): by an orchestrator, or by services reacting to events."""

    ORCHESTRATION = "orchestration", "Orchestrated"
    CHOREOGRAPHY = "choreography", "Choreographed"


API_KEY_SHOWN = 8  # characters of a key kept in plain text, so a learner can tell which key a run has


def new_api_key() -> str:
    return "flk_" + secrets.token_urlsafe(24)


def hash_api_key(key: str) -> str:
    """What the database keeps of an API key: its SHA-256, so a leaked table or backup opens no run.

    A key is 192 random bits, so a fast unsalted hash is enough: there is no dictionary to try.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class LabRun(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lab_runs")
    # The key itself is shown once, when it is made (issue_api_key); only its hash and first characters are stored.
    api_key_hash = models.CharField(max_length=64, unique=True)
    api_key_start = models.CharField(max_length=API_KEY_SHOWN)
    created_at = models.DateTimeField(default=timezone.now)
    last_activity_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Retry policy of this run (the lab pages let a learner change it).
    retry_base_ms = models.PositiveIntegerField(default=1000)
    retry_cap_ms = models.PositiveIntegerField(default=30_000)
    max_attempts = models.PositiveSmallIntegerField(default=5)
    # Defences the learner switched off, e.g. {"jitter": false}; a missing name means on.
    defences = models.JSONField(default=dict, blank=True)
    # The faults in force, {target: settings} (labs.pipeline.faults): in the database, so a Redis restart changes none.
    faults = models.JSONField(default=dict, blank=True)
    # How the run's next orders are coordinated (lab 7).
    saga_mode = models.CharField(max_length=16, choices=SagaMode.choices, default=SagaMode.ORCHESTRATION)
    # Lab 9's synchronous path: {"chain": true} turns it on, the rest is the call policy (labs.pipeline.sync_chain).
    call_policy = models.JSONField(default=dict, blank=True)
    # How workers find a provider's instances, {"mode": "dns" | "registry", "ttl_s": 30}; empty: discovery
    # off, each provider called directly (labs.pipeline.discovery).
    discovery = models.JSONField(default=dict, blank=True)

    # The plaintext of a key made in this process (by issue_api_key), for the one page or command
    # that shows it; None on a run read from the database.
    api_key: str | None = None

    def __str__(self) -> str:
        return f"run {self.pk} of {self.owner}"

    def issue_api_key(self) -> str:
        """A new key for this run (the old one stops working once saved); returns the plaintext."""
        self.api_key = new_api_key()
        self.api_key_hash = hash_api_key(self.api_key)
        self.api_key_start = self.api_key[:API_KEY_SHOWN]
        return self.api_key

    def save(self, *args, **kwargs):
        if not self.api_key_hash:
            self.issue_api_key()
        super().save(*args, **kwargs)

    @classmethod
    def for_api_key(cls, key: str) -> "LabRun | None":
        """The run this key opens, or None: found by the key's hash through its unique index."""
        digest = hash_api_key(key)
        run = cls.objects.filter(api_key_hash=digest).first()
        # The index lookup already matched; comparing again in constant time keeps the last step
        # free of timing differences whatever the database does.
        if run is None or not hmac.compare_digest(run.api_key_hash, digest):
            return None
        return run


class Recipient(models.Model):
    """One of a run's synthetic users: the API calls them users, numbered 1..N within the run."""

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="recipients")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=80)
    email = models.CharField(max_length=120)
    phone = models.CharField(max_length=24)
    device_token = models.CharField(max_length=64)
    locale = models.CharField(max_length=8)
    timezone = models.CharField(max_length=48)
    email_opt_in = models.BooleanField(default=True)
    sms_opt_in = models.BooleanField(default=True)
    push_opt_in = models.BooleanField(default=True)
    inapp_opt_in = models.BooleanField(default=True)
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="recipient_number_per_run")]

    def opted_in(self, channel: str) -> bool:
        return getattr(self, f"{channel}_opt_in")

    def address(self, channel: str) -> str:
        return {"email": self.email, "sms": self.phone, "push": self.device_token, "inapp": f"user-{self.number}"}[
            channel
        ]


class Template(models.Model):
    """A versioned message template; creating one with an existing name adds a version."""

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    category = models.CharField(max_length=16, choices=TemplateCategory.choices)
    channels = models.JSONField()  # default channels, e.g. ["email", "push"]
    bodies = models.JSONField()  # {"en": {"subject": "...", "body": "..."}, "fr": {...}}
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "name", "version"], name="template_version_per_run")]


class NotificationIntent(models.Model):
    """What a client asked for: one message to one user, on one or more channels."""

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="intents", db_index=False, db_constraint=False)  # see Delivery.run
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE)
    # A template in use is not deleted on its own; with its run (a reset, an account removed) it goes with its intents.
    template = models.ForeignKey(Template, on_delete=models.RESTRICT)
    priority = models.CharField(max_length=16, choices=Priority.choices)
    data = models.JSONField(default=dict)
    idempotency_key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)  # sha256 of the request body, to tell a replay from a conflict
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "idempotency_key"], name="one_intent_per_idempotency_key")
        ]
        # The panels' latest notifications and per-second chart read only the newest of a run's intents.
        indexes = [models.Index(fields=["run", "created_at"], name="intent_run_created")]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Waiting in the outbox"
    QUEUED = "queued", "On the broker"  # no longer written: queue depth comes from outbox rows
    SENDING = "sending", "With a worker"
    RETRY_SCHEDULED = "retry_scheduled", "Retry scheduled"
    DEFERRED = "deferred", "Deferred (quiet hours or an open breaker)"
    WAITING_TURN = "waiting_turn", "Waiting for an earlier in-app message"
    DELIVERED = "delivered", "Delivered"
    SUPPRESSED = "suppressed", "Suppressed (opted out)"
    BOUNCED = "bounced", "Bounced (the provider refused the address)"
    DEAD_LETTERED = "dead_lettered", "Dead-lettered"
    DISCARDED = "discarded", "Discarded from the dead-letter queue"


TERMINAL = (
    DeliveryStatus.DELIVERED,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.DEAD_LETTERED,
    DeliveryStatus.DISCARDED,
)
# Every other state: the delivery is still moving (a partial index holds just these rows, for /metrics).
UNFINISHED = tuple(status for status in DeliveryStatus if status not in TERMINAL)
# A delivery in one of these states has a message on its way (or due) and may be claimed by it.
WAITING = (
    DeliveryStatus.PENDING,
    DeliveryStatus.QUEUED,
    DeliveryStatus.RETRY_SCHEDULED,
    DeliveryStatus.DEFERRED,
)


class Delivery(models.Model):
    """One intent on one channel: the unit the pipeline moves, retries and dead-letters."""

    # No index of their own: the indexes below begin with each of them (run, intent, recipient), and on
    # PostgreSQL every index costs an entry on each of a delivery's three rewrites (bench/pipeline.py).
    # No constraint on the run either, here and on the other rows a campaign writes per message (intents,
    # outbox rows, attempts). PostgreSQL checks a foreign key row by row, at commit, each check a query
    # that locks the referenced row: on bench/pipeline.py these checks were a fifth of its backends' CPU,
    # and 3 of a campaign intent's 8 were on the one run row (migration 0015; the delivery's recipient, a
    # copy of its intent's, lost its constraint for the same reason). Nothing is lost by it:
    # Django's collector does every CASCADE itself (runs are deleted through the ORM, labs.runs, never
    # by raw SQL), and these rows still hang off the run through constrained keys (intent → recipient
    # → run, delivery → intent, outbox row and attempt → delivery), so none can outlive their run.
    # The providers' ledger keeps its constraint: the run is the only key it has.
    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="deliveries", db_index=False, db_constraint=False)
    intent = models.ForeignKey(NotificationIntent, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    # Its intent's recipient, kept here for the in-app order's index: constrained through the intent, and
    # deleted with it (a recipient's intents cascade to their deliveries), so deleting a recipient looks
    # for no delivery by this column, which only in-app deliveries have in an index.
    recipient = models.ForeignKey(Recipient, on_delete=models.DO_NOTHING, db_index=False, db_constraint=False)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    queue = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    # Goes up by one on every transition (labs/pipeline/deliveries.py); a message carries the
    # generation it was written for and does nothing once the delivery has moved on.
    generation = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)  # provider calls, over the delivery's life: never decreases
    replayed_at_attempt = models.PositiveSmallIntegerField(default=0)  # `attempts` when last replayed: the budget starts here
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # The worker that holds it (or last held it): Celery's node name, `celery@host`. When the relay
    # takes over a delivery whose lease ran out, the `crashed` attempt names this worker.
    claimed_by = models.CharField(max_length=120, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    sequence = models.PositiveIntegerField(null=True, blank=True)  # in-app order per user
    replays = models.PositiveSmallIntegerField(default=0)
    duplicates_suppressed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["intent", "channel"], name="one_delivery_per_channel")]
        indexes = [
            models.Index(fields=["run", "status"]),
            # In-app order per user; only in-app deliveries have a sequence, so a campaign's add no entry
            # (each query says `sequence` is set, or compares it, so the planner takes the index).
            models.Index(fields=["recipient", "channel", "sequence"], condition=Q(sequence__isnull=False), name="delivery_inapp_order"),
            # Only the deliveries still moving: /metrics counts them by status without reading the finished history.
            models.Index(fields=["status"], condition=Q(status__in=UNFINISHED), name="delivery_unfinished"),
            # The panels' "delivered per second" reads the last minute's finished deliveries, not the run's history.
            # Only finished rows: a delivery's earlier versions (accepted, claimed) would each add an entry no
            # query reads (`finished_at >= since` implies the condition, so the planner takes it).
            models.Index(fields=["run", "finished_at"], condition=Q(finished_at__isnull=False), name="delivery_run_finished"),
        ]

    @property
    def idempotency_key(self) -> str:
        """What the worker hands the provider: stable across retries, redeliveries and replays."""
        return f"run{self.run_id}-intent{self.intent_id}-{self.channel}"


class OutboxRow(models.Model):
    """A message to publish, written in the same transaction as the state change that needs it."""

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="outbox", db_index=False, db_constraint=False)  # see Delivery.run
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="outbox_rows")
    queue = models.CharField(max_length=16)
    generation = models.PositiveIntegerField()  # the delivery's generation this message may claim
    available_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "labs_outbox"
        indexes = [
            models.Index(fields=["available_at"], condition=Q(published_at__isnull=True), name="outbox_unpublished"),
            models.Index(fields=["run", "published_at"]),
        ]


class AttemptOutcome(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed (temporary)"
    REJECTED = "rejected", "Rejected (permanent)"
    TIMEOUT = "timeout", "Timed out"
    BREAKER_OPEN = "breaker_open", "Not sent: breaker open"
    CRASHED = "crashed", "Worker lost mid-attempt"


class DiscoveryMode(models.TextChoices):
    """How a worker finds the provider instance it calls (labs.pipeline.discovery)."""

    DNS = "dns", "DNS resolver (cached answer)"
    REGISTRY = "registry", "Health-checked registry"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    # The delivery's run, kept on the attempt so the panels read a run's last minute of attempts
    # through one index instead of joining every delivery the run ever had.
    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="attempts", db_index=False, db_constraint=False)  # see Delivery.run
    number = models.PositiveSmallIntegerField()
    provider = models.CharField(max_length=32, blank=True)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    error = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField(default=0)
    # The retry this attempt scheduled: the drawn delay and the ceiling it was drawn under.
    backoff_ms = models.PositiveIntegerField(null=True, blank=True)
    backoff_cap_ms = models.PositiveIntegerField(null=True, blank=True)
    # The quiet hours in force when the worker decided to send ("22:00-07:00", "" for none), and
    # the user's local time as the worker's clock saw it: the auditor judges the send against these.
    quiet_hours = models.CharField(max_length=16, blank=True)
    local_time = models.TimeField(null=True, blank=True)
    # With the run's service discovery on (labs.pipeline.discovery): the instance called, how the worker
    # found it, whether it was dead, restarting or not ready when called, and whether the registry had
    # already taken it out of rotation (only a cached answer sends a call there).
    instance = models.CharField(max_length=40, blank=True)
    resolved_by = models.CharField(max_length=8, choices=DiscoveryMode.choices, blank=True)
    instance_unhealthy = models.BooleanField(default=False)
    stale_answer = models.BooleanField(default=False)
    # The worker that made the attempt (Celery's node name, `celery@host`); for a `crashed` attempt,
    # the worker that was lost. With workers on several machines, this says which one did what.
    worker = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["delivery_id", "number", "id"]
        indexes = [models.Index(fields=["run", "finished_at"], name="attempt_run_finished")]

    def save(self, *args, **kwargs):
        if self.run_id is None and self.delivery_id is not None:
            self.run_id = self.delivery.run_id
        super().save(*args, **kwargs)


class DeadLetter(models.Model):
    """A delivery that gave up. Replaying it puts the delivery back in the outbox with a fresh budget."""

    class Resolution(models.TextChoices):
        OPEN = "open", "Waiting for triage"
        REPLAYED = "replayed", "Replayed"
        DISCARDED = "discarded", "Discarded"

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="dead_letters")
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="dead_letters")
    error_group = models.CharField(max_length=64)  # e.g. "template_data_missing", "provider_unavailable"
    error = models.CharField(max_length=300)
    attempts = models.PositiveSmallIntegerField()
    was_replayed = models.BooleanField(default=False)  # the delivery had been replayed before this dead-lettering
    resolution = models.CharField(max_length=16, choices=Resolution.choices, default=Resolution.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["run", "resolution", "error_group"]),
            # Only the open ones: /metrics counts them by group without reading the resolved history.
            models.Index(fields=["error_group"], condition=Q(resolution="open"), name="deadletter_open"),
            models.Index(fields=["run", "created_at"], name="deadletter_run_created"),
        ]


class ProviderSend(models.Model):
    """The simulated providers' own ledger: what really went out, whatever the pipeline believes.

    A provider honours idempotency keys the way real ones do: a second call with a key
    it has seen returns the first result instead of sending again (hence the unique key).
    """

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="provider_sends", db_index=False)  # see Delivery.run
    provider = models.CharField(max_length=32)
    idempotency_key = models.CharField(max_length=120)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    intent_id = models.BigIntegerField()  # metadata the caller attached, as providers allow
    recipient_number = models.PositiveIntegerField()
    sequence = models.PositiveIntegerField(null=True, blank=True)
    template = models.CharField(max_length=64)
    # Metadata the caller attached: the quiet hours in force when it sent ("22:00-07:00" or "")
    # and the user's time zone, so the auditor judges each send by the rules of its moment.
    quiet_hours = models.CharField(max_length=16, blank=True)
    time_zone = models.CharField(max_length=48, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "idempotency_key"], name="provider_honours_idempotency_key")
        ]
        indexes = [
            models.Index(fields=["run", "intent_id", "channel"]),
            # A provider finds the highest in-app sequence it gave a user so far (providers._count). Only
            # in-app sends carry a sequence, so a campaign's sends add no entry here; the query asks for
            # `sequence IS NOT NULL` in so many words, so the planner takes it with any parameters.
            models.Index(fields=["run", "recipient_number", "channel", "sequence"], condition=Q(sequence__isnull=False),
                         name="send_user_sequence"),
        ]


class RunCount(models.Model):
    """One running count of a run's history (labs.pipeline.tally): written in the transaction
    that writes what it counts, so the panels read a few rows instead of the run's history."""

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="counts")
    name = models.CharField(max_length=48)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="one_count_per_name")]


class RelayLease(models.Model):
    """On SQLite only one relay may publish at a time: it holds this single row's lease.

    (PostgreSQL needs no lease: relays claim disjoint batches with FOR UPDATE SKIP LOCKED.)
    """

    holder = models.CharField(max_length=80, blank=True)
    expires_at = models.DateTimeField(default=timezone.now)


# --- The lab pages: which lab a run belongs to, and the learner's experiments ---------------


class RunLab(models.Model):
    """The lab a run was started for. A learner has one run per lab."""

    run = models.OneToOneField(LabRun, on_delete=models.CASCADE, related_name="lab")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lab_pages")
    lab = models.CharField(max_length=64)  # a slug from labs.catalogue
    # When the run was started or last reset: experiments before it belong to an earlier go.
    started_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "lab"], name="one_run_per_lab_and_learner")]


class Experiment(models.Model):
    """One lab step as the learner ran it: a prediction, the faults injected, what happened.

    Kept in the learner's history after the run is reset or deleted; `before` and `after`
    are the run's facts (labs.checks) when the first fault went in and when the learner
    recorded the outcome. `checks_passed` holds each of the step's checks from the moment it
    first passed: a later step's fault may undo the state a check reads, but not what the
    learner achieved (labs.steps.hold_passed). A new prediction starts a new card, and so
    the step's checks start again.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lab_experiments")
    run = models.ForeignKey(LabRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="experiments")
    lab = models.CharField(max_length=64)
    step = models.PositiveSmallIntegerField()
    prediction = models.TextField()
    actions = models.JSONField(default=list, blank=True)  # [{"label": ..., "at": ISO time, "result": ...}]
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    acted_at = models.DateTimeField(null=True, blank=True)
    recorded_at = models.DateTimeField(null=True, blank=True)
    checks_passed = models.JSONField(default=dict, blank=True)  # {check id: ISO time it first passed}

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "lab", "step"])]


# --- The order saga (lab 7; lesson: sagas) ---------------------------------------------------
# Three simulated services share the run's database, each writing only its own tables, as if
# each had a database of its own: Inventory (Stock, StockReservation), Payments
# (PaymentAuthorisation) and Orders (Order, and the notifications it asks the pipeline for).
# The saga's messages leave through SagaMessage, an outbox of the same shape as OutboxRow.


class OrderStatus(models.TextChoices):
    """The Orders service's own view of an order."""

    PENDING = "pending", "Pending"
    CONFIRMED = "confirmed", "Confirmed"
    CANCELLED = "cancelled", "Cancelled"


class SagaStepName(models.TextChoices):
    RESERVE_INVENTORY = "reserve_inventory", "Reserve inventory"
    AUTHORISE_PAYMENT = "authorise_payment", "Authorise payment"
    CONFIRM_ORDER = "confirm_order", "Confirm the order"
    NOTIFY_CUSTOMER = "notify_customer", "Notify the customer"
    VOID_AUTHORISATION = "void_authorisation", "Void the authorisation"
    RELEASE_INVENTORY = "release_inventory", "Release inventory"
    CANCEL_ORDER = "cancel_order", "Cancel the order and notify"


class SagaState(models.TextChoices):
    """Where the orchestrator is: the step it waits for, or how the saga ended (choreography has none)."""

    RESERVE_INVENTORY = "reserve_inventory", "Reserving inventory"
    AUTHORISE_PAYMENT = "authorise_payment", "Authorising payment"
    CONFIRM_ORDER = "confirm_order", "Confirming the order"
    NOTIFY_CUSTOMER = "notify_customer", "Notifying the customer"
    VOID_AUTHORISATION = "void_authorisation", "Compensating: voiding the authorisation"
    RELEASE_INVENTORY = "release_inventory", "Compensating: releasing inventory"
    CANCEL_ORDER = "cancel_order", "Compensating: cancelling the order"
    CONFIRMED = "confirmed", "Confirmed"
    CANCELLED = "cancelled", "Cancelled, fully compensated"
    STUCK = "stuck", "Stuck: a compensation gave up"
    CHOREOGRAPHED = "choreographed", "No orchestrator (choreography)"


class StockLevel(models.Model):
    """Inventory's stock of one product in a run: `available` goes down on a reservation and back up on a release."""

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="stock")
    sku = models.CharField(max_length=32)
    initial = models.PositiveIntegerField()
    available = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "sku"], name="one_stock_level_per_sku")]


class Order(models.Model):
    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="orders")
    number = models.PositiveIntegerField()  # 1, 2, ... within the run
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE)
    sku = models.CharField(max_length=32)
    quantity = models.PositiveSmallIntegerField(default=1)
    amount_cents = models.PositiveIntegerField()
    mode = models.CharField(max_length=16, choices=SagaMode.choices)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    # The orchestrator's state (labs/pipeline/saga.py): written only by it, with a conditional update.
    saga_state = models.CharField(max_length=24, choices=SagaState.choices)
    orchestrator_crashes = models.PositiveSmallIntegerField(default=0)  # injected crashes after one of its transitions
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="order_number_per_run")]

    @property
    def reference(self) -> str:
        return f"A-{self.number:04d}"


class SagaStepStatus(models.TextChoices):
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retry scheduled"
    SUCCEEDED = "succeeded", "Done"
    FAILED = "failed", "Failed"
    GAVE_UP = "gave_up", "Gave up"


class SagaStep(models.Model):
    """One step of one order's saga, forward or compensation: the page draws the state machine from these."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="steps")
    step = models.CharField(max_length=24, choices=SagaStepName.choices)
    compensation = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=SagaStepStatus.choices, default=SagaStepStatus.RUNNING)
    attempts = models.PositiveSmallIntegerField(default=0)  # tries that reached the service (copies acted on included)
    retries = models.PositiveSmallIntegerField(default=0)  # tries scheduled again after a temporary failure
    executions = models.PositiveSmallIntegerField(default=0)  # times the step's work was done: 2 means done twice
    duplicates_ignored = models.PositiveSmallIntegerField(default=0)  # copies of its message dropped by the consumer
    last_error = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order_id", "started_at", "id"]
        constraints = [models.UniqueConstraint(fields=["order", "step"], name="one_saga_step_per_order")]


class SagaMessageKind(models.TextChoices):
    COMMAND = "command", "Command to a service"  # orchestration: run `step`
    REPLY = "reply", "Reply to the orchestrator"  # orchestration: `step` ended with `outcome`
    EVENT = "event", "Event"  # choreography: `event` happened; the subscriber runs `step`


class SagaMessage(models.Model):
    """The saga's outbox: written in the transaction of the step that needs it, published by the relay.

    Consumers mark `handled_at` when they take one; with idempotent steps on, a copy that finds it set is dropped.
    """

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="saga_messages")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=8, choices=SagaMessageKind.choices)
    step = models.CharField(max_length=24, choices=SagaStepName.choices)
    outcome = models.CharField(max_length=16, blank=True)  # a reply's: "succeeded", "failed", "gave_up"
    event = models.CharField(max_length=32, blank=True)  # an event's name, e.g. "inventory_reserved"
    attempt = models.PositiveSmallIntegerField(default=1)
    available_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    handled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["available_at"], condition=Q(published_at__isnull=True), name="saga_outbox_unpublished"),
            models.Index(fields=["run", "published_at"]),
        ]


class StockReservation(models.Model):
    """Inventory's hold on stock for an order; `key` is what makes a repeated reservation a no-op."""

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="reservations")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="reservations")
    key = models.CharField(max_length=80)
    sku = models.CharField(max_length=32)
    quantity = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="one_reservation_per_key")]


class PaymentAuthorisation(models.Model):
    """Payments' hold on the customer's card for an order; `key` makes a repeated authorisation a no-op."""

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="authorisations")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="authorisations")
    key = models.CharField(max_length=80)
    amount_cents = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    voided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="one_authorisation_per_key")]
# --- Lab 9: the API's synchronous path ---------------------------------------------------------


class SyncOutcome(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    FALLBACK = "fallback", "Accepted on cached preferences"
    FAILED = "failed", "503: a service call failed"
    REJECTED = "rejected", "4xx: the request was invalid"
    TOO_LATE = "too_late", "Answered after the client had given up"
    SKIPPED = "skipped", "Not started: the client had given up"


# What the client saw as a failure: a 5xx, or no answer before its own timeout.
SYNC_ERRORS = (SyncOutcome.FAILED, SyncOutcome.TOO_LATE, SyncOutcome.SKIPPED)


class SyncRequest(models.Model):
    """One request on the API's synchronous path (lab 9), as its client saw it: when it arrived,
    how long until the answer, and what the answer was. The lab's p95 and error rate are read here."""

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="sync_requests")
    load = models.PositiveIntegerField(default=0)  # the run's load that sent it (labs.pipeline.sync_load); 0: a single request
    arrived_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField()  # arrival to answer, time spent waiting for a free API worker included
    outcome = models.CharField(max_length=16, choices=SyncOutcome.choices)
    busy_workers = models.PositiveSmallIntegerField(default=0)  # API workers busy when it started, itself included
    service_calls = models.PositiveSmallIntegerField(default=0)  # calls it made to the two services, retries included
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [models.Index(fields=["run", "load"])]
