"""The workshop debrief: the page, its CSV and JSON exports, and the cohort's series from a real pipeline.

The first tests look at what the views show and export after two learners ran some steps and
the instructor injected a fault, announced and stopped (no worker: nothing needs delivering).
The last runs a real Celery worker and relay, so the series count what the pipeline did.
Who may see a debrief is in test_workshops_isolation.py.
"""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labs import checks, steps
from labs.catalogue import CATALOGUE
from labs.models import DeadLetter, Delivery, DeliveryStatus, LabRun, ProviderSend, RunLab
from labs.pipeline import audit, defences, faults, traffic
from tests.harness import wait_for
from tests.workshop_roles import *  # noqa: F403 - the fixtures by role
from tests.workshop_roles import LAB, make_instructor, seat_learner
from workshops import broadcasts, debrief, joining
from workshops.models import Workshop

LESSON = CATALOGUE[LAB]


def run_step(client, number: int, prediction: str, record: bool = True) -> None:
    """What the learner's step card does: write the prediction, press the step's buttons, record what happened."""
    run_lab = RunLab.objects.get(run_id=client.seat.run_id)
    step = LESSON.step(number)
    experiment = steps.save_prediction(run_lab, step, prediction)
    for action in step.actions:
        steps.act(experiment, action, run_lab.run)
    if record:
        steps.record(experiment, checks.facts(run_lab.run))


@pytest.fixture
def session(workshop, instructor, learner, classmate, stranger):
    """Ada ran step 1 and recorded it, then predicted step 2; Alan only predicted step 1 (a formula, as some do)."""
    htmx = {"HTTP_HX_REQUEST": "true"}
    instructor.post(reverse("workshops:broadcast", args=[workshop.pk]),
                    {"target": "sms-primary", "provider-down": "on", "duration_s": "90", "to": "everyone"}, **htmx)  # fmt: skip
    instructor.post(reverse("workshops:announce", args=[workshop.pk]), {"text": "Step 2 after the break"}, **htmx)
    run_step(learner, 1, "All 20 digests end in the dead letters after 5 attempts: provider_unavailable.")
    steps.save_prediction(RunLab.objects.get(run_id=learner.seat.run_id), LESSON.step(2), "Replaying first fails them again.")
    steps.save_prediction(RunLab.objects.get(run_id=classmate.seat.run_id), LESSON.step(1), "=HYPERLINK(\"http://evil\")")
    instructor.post(reverse("workshops:stop", args=[workshop.pk]), **htmx)
    run_step(stranger, 1, "a learner of another workshop")
    return workshop


def test_the_debrief_page_lines_up_what_was_injected_above_each_learners_steps(session, instructor, learner):
    page = instructor.get(reverse("workshops:debrief", args=[session.pk])).content.decode()

    assert f"Debrief: {session.title}" in page
    timeline = page.split('data-testid="timeline"')[1].split("</ol>")[0]
    assert timeline.index("sms-primary down") < timeline.index("Step 2 after the break") < timeline.index("Emergency stop")
    assert "into 2 runs" in timeline and "emergency stop" in timeline.lower() and "by grace: 2 runs cleared" in timeline
    chart = page.split('data-testid="debrief-chart"')[1].split("</figure>")[0]
    assert chart.count('class="fault-window"') == 1 and chart.count('data-testid="moment"') == 2
    for name in ("delivered", "dead_letters", "duplicates", "breaches"):
        assert f'data-testid="series-{name}"' in chart
    assert "<script" not in chart  # drawn on the server

    ada = page.split('data-testid="learner-debrief" data-learner="ada"')[1].split("</section>")[0]
    assert "1 of 3 steps completed" in ada
    assert 'data-step="1" data-status="recorded"' in ada and 'data-step="2" data-status="predicted"' in ada
    assert 'data-step="3" data-status="not started"' in ada
    assert "All 20 digests end in the dead letters" in ada and "Replaying first fails them again." in ada
    assert "Switch the circuit breaker off and put email-primary down; Send 20 weekly digests" in ada
    assert "open dead letters: 0 →" in ada  # the facts the step observes, before and after
    alan = page.split('data-testid="learner-debrief" data-learner="alan"')[1].split("</section>")[0]
    assert "0 of 3 steps completed" in alan and 'data-step="1" data-status="predicted"' in alan
    assert "barbara" not in page and "a learner of another workshop" not in page
    assert reverse("workshops:debrief_csv", args=[session.pk]) in page and 'href="/static/css/debrief.css"' in page


def test_the_csv_has_one_row_per_learner_per_step_and_keeps_formulas_as_text(session, instructor):
    response = instructor.get(reverse("workshops:debrief_csv", args=[session.pk]))

    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="workshop-{session.pk}-debrief.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["learner"], r["step"]) for r in rows] == [(name, str(n)) for name in ("ada", "alan") for n in (1, 2, 3)]
    ada1 = rows[0]
    assert (ada1["status"], ada1["goes"], ada1["checks_total"]) == ("recorded", "1", "1")
    assert ada1["prediction"].startswith("All 20 digests") and "dead_letters: 0 → 0;" in ada1["what_happened"]
    assert ada1["seconds_on_step"].isdigit() and ada1["recorded_at"] >= ada1["started_at"]
    assert rows[3]["prediction"] == "'=HYPERLINK(\"http://evil\")"  # a spreadsheet shows it, does not run it
    assert rows[4]["status"] == "not started" and rows[4]["prediction"] == ""


def test_the_json_export_holds_the_timeline_the_series_and_every_learners_steps(session, instructor):
    response = instructor.get(reverse("workshops:debrief_json", args=[session.pk]))
    found = json.loads(response.content)

    assert response["Content-Disposition"] == f'attachment; filename="workshop-{session.pk}-debrief.json"'
    assert found["workshop"]["title"] == session.title and found["workshop"]["instructor"] == "grace"
    assert [entry["kind"] for entry in found["timeline"]] == ["fault", "announcement", "stop"]
    fault = found["timeline"][0]
    assert fault["title"] == "sms-primary down" and fault["until"] is not None and "emergency stop" in fault["detail"]
    cohort = found["cohort"]
    assert set(cohort["series"]) == {"delivered", "dead_letters", "duplicates", "breaches"}
    assert all(len(s["counts"]) == len(cohort["series"]["delivered"]["counts"]) for s in cohort["series"].values())
    learners = {learner["username"]: learner for learner in found["learners"]}
    assert set(learners) == {"ada", "alan"}
    assert learners["ada"]["steps_completed"] == 1 and [s["status"] for s in learners["ada"]["steps"]] == ["recorded", "predicted", "not started"]
    assert learners["ada"]["steps"][0]["what_happened"][0]["fact"] == "dead_letters"
    assert learners["alan"]["run"] == LabRun.objects.get(owner__username="alan").pk


def test_a_debrief_with_nobody_in_it_still_reads(workshop, instructor):
    page = instructor.get(reverse("workshops:debrief", args=[workshop.pk])).content.decode()
    assert "Nobody has joined yet." in page and "Nothing injected yet" in page
    assert instructor.get(reverse("workshops:debrief_csv", args=[workshop.pk])).content.decode().strip() == ",".join(debrief.CSV_COLUMNS)


def test_the_grid_links_its_debrief(workshop, instructor):
    grid = instructor.get(reverse("workshops:grid", args=[workshop.pk])).content.decode()
    assert f'href="{reverse("workshops:debrief", args=[workshop.pk])}" data-testid="debrief-link"' in grid


def test_the_span_grows_its_buckets_to_keep_the_chart_readable(workshop):
    start = workshop.created_at
    for seconds, bucket in ((30, 1), (200, 1), (300, 2), (3000, 15), (6 * 3600, 120)):
        span = debrief.span_of(start, [start + timedelta(seconds=seconds)], [], live=False, now=start + timedelta(days=1))
        assert span.bucket_s == bucket, seconds
        assert span.bins <= debrief.MAX_BINS


# --- The series from a real pipeline ----------------------------------------------------------------------


def test_the_series_count_what_every_run_did_and_a_fault_window_covers_its_effect(celery_worker, relay, django_user_model):
    teacher = make_instructor(django_user_model, "grace")
    workshop = Workshop.objects.create(owner=teacher, title="Game day", lab=LAB)
    ada, alan = (joining.join(workshop, django_user_model.objects.create_user(name)) for name in ("ada", "alan"))
    LabRun.objects.filter(pk__in=[ada.run_id, alan.run_id]).update(retry_base_ms=50, retry_cap_ms=200, max_attempts=3)
    # Alan's run sends again whenever an answer is lost, and every answer is: the idempotency defence is off.
    defences.set_defences(LabRun.objects.get(pk=alan.run_id), idempotency=False, circuit_breaker=False)
    broadcasts.start(workshop, teacher, "email-primary", {"lost_ack": 1.0}, 600, seats=[alan])

    traffic.send_poison(LabRun.objects.get(pk=ada.run_id), 2)  # dead-lettered at once: never deliverable
    for n in range(1, 11):
        traffic.send_one(LabRun.objects.get(pk=alan.run_id), n, "password_reset", channels=["email"])
        traffic.send_one(LabRun.objects.get(pk=ada.run_id), n, "password_reset", channels=["email"])
    runs = [LabRun.objects.get(pk=ada.run_id), LabRun.objects.get(pk=alan.run_id)]
    wait_for(lambda: all(audit.audit(run)["in_flight"] == 0 for run in runs), 60, "every delivery to finish")
    broadcasts.emergency_stop(workshop, teacher)

    built = debrief.build(workshop)
    series = {s.name: s for s in built.series}
    totals = {learner.name: learner.totals for learner in built.learners}
    # Ada's ten resets are delivered and her two poison messages dead-lettered; Alan's ten are each
    # sent three times (every attempt's answer lost) and then dead-lettered.
    assert (totals["ada"]["delivered"], totals["ada"]["duplicates"], totals["ada"]["breaches"]) == (10, 0, 0)
    assert totals["ada"]["dead_letters"] == DeadLetter.objects.filter(run=runs[0]).count() >= 2
    assert (totals["alan"]["delivered"], totals["alan"]["dead_letters"], totals["alan"]["duplicates"]) == (0, 10, 20)
    assert totals["alan"]["breaches"] == 20 == audit.audit(runs[1])["duplicate_sends"]
    assert series["delivered"].total == Delivery.objects.filter(run__in=runs, status=DeliveryStatus.DELIVERED).count() == 10
    assert series["dead_letters"].total == DeadLetter.objects.filter(run__in=runs).count()
    assert (series["duplicates"].total, series["breaches"].total) == (20, 20)

    # Every duplicate send happened inside the fault's window, which the chart shades.
    [window] = built.fault_windows
    duplicate_times = [at for _, at in audit.duplicate_sends([alan.run_id])]
    assert duplicate_times and all(window.at <= at <= window.until for at in duplicate_times)
    assert faults.all_faults(alan.run_id) == {}


def test_the_debrief_reads_in_the_same_number_of_queries_whatever_the_cohorts_size(session, django_user_model):
    with CaptureQueriesContext(connection) as two:
        debrief.build(session)
    for name in ("grace-hopper", "linus", "ken"):
        run_step(seat_learner(django_user_model, session, name), 1, "more learners, more cards")
    with CaptureQueriesContext(connection) as five:
        built = debrief.build(session)
    assert len(built.learners) == 5 and len(five.captured_queries) == len(two.captured_queries)


def test_the_auditors_breaches_across_runs_keep_each_runs_users_apart(learner, classmate):
    """Two runs' ledgers side by side: a breach in one is never judged against the other's sends."""
    ada, alan = learner.seat.run_id, classmate.seat.run_id
    start = timezone.now()

    def sent(run_id, seconds, intent, sequence, key, quiet="", template="in_app_message"):
        ProviderSend.objects.create(run_id=run_id, provider="inapp-primary", idempotency_key=key, channel="inapp", intent_id=intent,
                                    recipient_number=1, sequence=sequence, template=template, quiet_hours=quiet,
                                    time_zone="UTC", sent_at=start + timedelta(seconds=seconds))  # fmt: skip

    sent(ada, 1, 1, 2, "a1")
    sent(alan, 2, 7, 1, "b1")  # Alan's user 1 gets sequence 1 after Ada's got 2: in order, for him
    sent(ada, 3, 2, 1, "a2")  # Ada's user 1 gets 1 after 2: out of order
    sent(ada, 4, 2, 1, "a2-again")  # the same delivery sent twice
    around_the_clock = "00:00-23:59"
    sent(alan, 5, 8, 2, "b2", quiet=around_the_clock)
    sent(alan, 6, 9, 3, "b3", quiet=around_the_clock, template="security_alert")  # security mail ignores quiet hours

    at = {seconds: start + timedelta(seconds=seconds) for seconds in range(7)}
    assert audit.sends_out_of_order([ada, alan]) == [(ada, at[3]), (ada, at[4])]
    assert audit.duplicate_sends([ada, alan]) == [(ada, at[4])]
    assert audit.sends_in_quiet_hours([ada, alan]) == [(alan, at[5])]
    assert (audit.order_violations(LabRun.objects.get(pk=alan)), audit.quiet_hours_violations(LabRun.objects.get(pk=alan))) == (0, 1)
