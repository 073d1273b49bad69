"""The lab's system under test: a notification pipeline built from the patterns the lessons teach.

API (intake) → outbox row in the same transaction → relay → Redis → Celery worker →
simulated provider, with retries scheduled in the database, a dead-letter queue,
a circuit breaker per provider and an auditor that checks the invariants.
"""
