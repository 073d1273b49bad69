"""The short chaos run: worker children SIGKILLed over and over, the whole worker, the relay
and Redis each killed once, while a thousand intents go through. Nothing may be lost or sent twice."""

import uuid

from tests.chaos import calm_run, run_chaos


def test_nothing_is_lost_or_sent_twice_while_processes_and_redis_are_killed(
    transactional_db, django_user_model, process_env, process_logs
):
    run = calm_run(django_user_model.objects.create_user(f"chaos-{uuid.uuid4().hex[:6]}", password="not-used-1234"))

    result = run_chaos(run, process_env, process_logs, intents=1000, chaos_seconds=18, settle_timeout=120)

    assert (result["lost"], result["duplicate_sends"], result["in_flight"]) == (0, 0, 0), result
    assert result["children_killed"] >= 3, result
    assert (result["worker_killed"], result["relay_killed"], result["redis_restarted"]) == (1, 1, 1)
    assert result["intents"] == 1000
    assert result["delivered"] + result["suppressed"] + result["dead_lettered"] == result["accepted"]
