"""The short chaos run: `make chaos` in small. A thousand intents over the same fault phases
(provider errors, lost acknowledgements, worker crashes with duplicate deliveries and a relay
crash, primaries down), while worker children, the whole worker, the relay and Redis are
killed. Nothing may be lost, sent twice or left unfinished, by the audit or by the harness's
own count of the keys it sent.

Besides the invariants, only what cannot depend on luck or on the machine's load is asserted:
the outages take a good part of a 30-second window (longer on a busy machine), so how often a
lost acknowledgement, a 10% crash or the failover fires varies from run to run (the report shows it)."""

import uuid

from tests.chaos import PHASES, calm_run, run_chaos


def test_nothing_is_lost_or_sent_twice_while_faults_and_kills_hit_every_part(
    transactional_db, django_user_model, process_env, process_logs
):
    run = calm_run(django_user_model.objects.create_user(f"chaos-{uuid.uuid4().hex[:6]}", password="not-used-1234"))

    result = run_chaos(run, process_env, process_logs, intents=1000, chaos_seconds=30, settle_timeout=75)

    print(result.report())  # shown with -s, and with the output of a failure
    assert result.problems() == [], result.report()
    assert (result.audit["lost"], result.audit["duplicate_sends"], result.audit["in_flight"]) == (0, 0, 0)
    assert result.audit["intents"] == result.count["keys_sent"] == 1000
    assert [r.phase.name for r in result.phases if r.campaign_intents + r.singles] == [p.name for p in PHASES], result.report()
    # The faults reach the worker: the campaigns of the provider-error phase go out before the first
    # outage, and a 30% error rate fails some of their hundreds of calls.
    assert result.count["attempts_by_outcome"].get("failed", 0) > 0, result.report()
    assert result.stats["children_killed"] >= 3, result.stats  # every 2 s from the start; more when the worker is up
    assert (result.stats["worker_killed"], result.stats["relay_killed"], result.stats["redis_restarted"]) == (1, 1, 1)
