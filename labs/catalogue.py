"""The labs that lessons and questions may link to.

Until the lab files exist (labs/content/, with the browser labs issue) this table is
the list of lab slugs that content checks accept.
"""

LABS: dict[str, str] = {
    "outbox-and-relay": "Outbox and relay",
    "retries-backoff-jitter": "Retries, backoff and jitter",
    "dead-letters-poison": "Dead letters and poison messages",
    "idempotent-consumers": "Idempotent consumers",
    "circuit-breaker-failover": "Circuit breaker and failover",
    "priority-lanes-ordering": "Priority lanes and ordering",
}
