"""Service discovery (labs/pipeline/discovery.py): the registry's rules as pure functions, then the
real thing, a relay that keeps the registry and a Celery worker that looks instances up, against
Redis and the test database. The attempts record which instance each call reached; these tests read them."""

import pytest

from labs import checks, lineage, steps
from labs.lab_files import Action
from labs.models import DeliveryAttempt, DeliveryStatus
from labs.pipeline import audit, discovery, faults
from labs.pipeline.discovery import CRITICAL, DEAD, PASSING, RESTARTING, RUNNING, SLOW, checked, condition
from tests.harness import wait_for
from tests.test_labs_pipeline import run  # noqa: F401 (a calm run, with the module's worker and relay from conftest)

# --- The rules ------------------------------------------------------------------------------------


def test_a_running_instance_registers_itself_in_rotation_and_a_dead_one_does_not():
    entry, change = checked(None, RUNNING, 100.0)
    assert entry["status"] == PASSING and change == ""
    assert checked(None, DEAD, 100.0) == (None, "")


def test_a_dead_instance_is_dropped_after_the_failed_checks_and_one_passing_check_brings_it_back():
    entry, _ = checked(None, RUNNING, 100.0)
    changes = []
    for second in range(1, discovery.FAILURES_TO_DROP + 1):
        entry, change = checked(entry, DEAD, 100.0 + second)
        changes.append(change)
    assert changes[-1] == "dropped" and set(changes[:-1]) <= {""}
    assert entry["status"] == CRITICAL and entry["beat"] == 100.0  # no heartbeat from a dead process
    assert discovery.in_rotation({"email-primary-1": entry}, "email-primary", 103.0) == []

    entry, change = checked(entry, RUNNING, 104.0)
    assert change == "readmitted" and entry["status"] == PASSING and entry["drops"] == 1


def test_a_slow_instance_fails_readiness_but_keeps_its_heartbeat_and_stays_registered():
    entry, _ = checked(None, RUNNING, 100.0)
    for second in range(1, 4):
        entry, _ = checked(entry, SLOW, 100.0 + second)
    assert entry["status"] == CRITICAL and entry["beat"] == 103.0
    assert discovery.alive_now(entry, 103.5) and discovery.registered(entry, 103.0 + discovery.HEARTBEAT_LEASE_S - 1)

    dead, _ = checked(None, RUNNING, 100.0)
    for second in range(1, 4):
        dead, _ = checked(dead, DEAD, 100.0 + second)
    assert not discovery.alive_now(dead, 103.5) and discovery.registered(dead, 103.5)  # silent, not yet past its lease


def test_a_silent_instance_is_gone_once_its_lease_runs_out():
    entry, _ = checked(None, RUNNING, 100.0)
    assert discovery.registered(entry, 100.0 + discovery.HEARTBEAT_LEASE_S - 0.5)
    assert not discovery.registered(entry, 100.0 + discovery.HEARTBEAT_LEASE_S)
    assert discovery.in_rotation({"sms-primary-2": entry}, "sms-primary", 100.0 + discovery.HEARTBEAT_LEASE_S) == []


def test_what_an_instance_does_follows_its_fault():
    assert condition({}, 5.0) == RUNNING
    assert condition({"killed": True, "slow_ms": 2000}, 5.0) == DEAD
    assert condition({"slow_ms": discovery.CHECK_TIMEOUT_MS}, 5.0) == RUNNING  # slow, but within the check's patience
    assert condition({"slow_ms": discovery.CHECK_TIMEOUT_MS + 1}, 5.0) == SLOW
    assert [condition({"flap_s": 3}, t) for t in (0.0, 2.9, 3.0, 5.9, 6.0)] == [RESTARTING, RESTARTING, RUNNING, RUNNING, RESTARTING]


def test_the_error_window_is_the_span_of_the_latest_run_of_bad_calls():
    assert discovery.error_window_s([]) == 0.0
    assert discovery.error_window_s([10.0]) == 0.0
    gap = discovery.EPISODE_GAP_S
    assert discovery.error_window_s([1.0, 2.0, 3.5, 3.5 + gap + 1, 3.5 + gap + 3]) == 2.0  # the second run only
    assert discovery.error_window_s([5.0, 1.0, 3.0]) == 4.0


def test_a_lab_file_cannot_name_an_unknown_mode_an_instance_fault_on_a_provider_or_a_bad_spread():
    with pytest.raises(ValueError, match="discovery.mode must be one of off, dns, registry"):
        discovery.validate("consul", 30)
    with pytest.raises(ValueError, match="discovery.ttl_s"):
        discovery.validate("dns", 0)
    with pytest.raises(ValueError, match="email-primary.killed is not a fault"):
        faults.validate("email-primary", {"killed": True})
    assert faults.validate("email-primary-2", {"killed": True}) == {"killed": True}
    with pytest.raises(ValueError, match="'email-primary-9' is not a fault target"):
        faults.validate("email-primary-9", {"killed": True})
    with pytest.raises(ValueError, match="over_s"):
        steps.spread_seconds({"over_s": -1})


# --- The real thing ------------------------------------------------------------------------------


def send_stream(run, count: int, over_s: float) -> None:
    steps.perform(run, Action("stream", (("send", {"template": "password_reset", "count": count, "over_s": over_s}),)))


def settled(run, timeout: float = 60) -> dict:
    return wait_for(lambda: (a := audit.audit(run))["in_flight"] == 0 and a, timeout, "every delivery to finish")


def calls_to(run, instance: str):
    return DeliveryAttempt.objects.filter(delivery__run=run, instance=instance).order_by("started_at", "id")


def test_with_discovery_off_the_workers_call_each_provider_directly_as_before(run):
    faults.set_fault(run.pk, "email-primary-1", killed=True)  # an instance fault means nothing without discovery
    send_stream(run, 6, 0)

    result = settled(run)
    assert result["delivered"] == 6 and result["duplicate_sends"] == 0
    assert set(DeliveryAttempt.objects.filter(delivery__run=run).values_list("instance", "resolved_by")) == {("", "")}
    assert checks.facts(run)["instance_calls"] == 0


def test_a_cached_dns_answer_keeps_sending_calls_to_a_dead_instance_after_the_registry_dropped_it(run):
    discovery.set_discovery(run, "dns", ttl_s=6)
    send_stream(run, 60, 15)  # four a second
    wait_for(lambda: calls_to(run, "email-primary-2").exists(), 30, "a first call to email-primary-2")
    faults.set_fault(run.pk, "email-primary-2", killed=True)

    result = settled(run)
    assert result["lost"] == 0 and result["duplicate_sends"] == 0
    bad = calls_to(run, "email-primary-2").filter(instance_unhealthy=True)
    stale = bad.filter(stale_answer=True)
    assert stale.exists(), "calls went on to the dead instance after the registry had taken it out"
    assert not bad.exclude(resolved_by="dns").exists()
    assert all(a.outcome == "failed" and "refused the connection" in a.error for a in bad)
    # Once the cached answer expired the resolver asked again, and later calls went elsewhere only.
    last_bad = bad.order_by("-started_at").first()
    later = DeliveryAttempt.objects.filter(delivery__run=run, started_at__gt=last_bad.started_at)
    assert later.exists() and not later.filter(instance="email-primary-2").exists()
    found = checks.facts(run)
    assert found["stale_calls"] == stale.count() and found["dns_bad_calls"] == bad.count()
    [traced] = lineage.lineage(run, stale.first().delivery.intent)
    assert any("at email-primary-2 (found through the DNS resolver, a stale answer): failed" in m.text for m in traced.moments)
    assert found["instances_out"] == 1 and found["registry_drops"] == 1


def test_the_registry_sends_no_call_to_an_instance_once_its_checks_have_failed(run):
    discovery.set_discovery(run, "registry")
    send_stream(run, 60, 15)
    wait_for(lambda: calls_to(run, "email-primary-3").exists(), 30, "a first call to email-primary-3")
    faults.set_fault(run.pk, "email-primary-3", killed=True)
    wait_for(lambda: discovery.read_registry(run.pk)["email-primary-3"]["status"] == CRITICAL, 30, "the registry to drop email-primary-3")

    result = settled(run)
    assert result["lost"] == 0 and result["duplicate_sends"] == 0 and result["delivered"] == 60
    dropped_at = discovery.read_registry(run.pk)["email-primary-3"]["since"]
    bad = calls_to(run, "email-primary-3").filter(instance_unhealthy=True)
    assert all(a.started_at.timestamp() <= dropped_at for a in bad), "no lookup after the drop returned it"
    assert not DeliveryAttempt.objects.filter(delivery__run=run, stale_answer=True).exists()
    assert checks.facts(run)["stale_calls"] == 0
    assert DeliveryAttempt.objects.filter(delivery__run=run).exclude(instance="email-primary-3").count() > bad.count()


def test_a_slow_instance_stays_registered_out_of_rotation_and_the_calls_go_to_the_others(run):
    discovery.set_discovery(run, "registry")
    faults.set_fault(run.pk, "email-primary-1", slow_ms=800)
    wait_for(lambda: discovery.read_registry(run.pk)["email-primary-1"]["status"] == CRITICAL, 30, "the registry to drop the slow instance")
    send_stream(run, 12, 3)

    result = settled(run)
    assert result["delivered"] == 12 and result["duplicate_sends"] == 0
    found = checks.facts(run)
    assert found["instances_alive_not_ready"] == 1 and found["instances_out"] == 1
    assert not calls_to(run, "email-primary-1").exists()
    assert {a.outcome for a in DeliveryAttempt.objects.filter(delivery__run=run)} == {"succeeded"}
    assert run.deliveries.filter(status=DeliveryStatus.DELIVERED).count() == 12
