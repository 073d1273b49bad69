"""The lab pages through Django's test client: who may see what, the controls, the stream, the experiment cards.

No worker runs here: these tests look at what the views write and show. The pipeline's
behaviour under the page is in test_labs_browser.py (real Chromium, real worker).
"""

import re
from pathlib import Path

import pytest
import yaml
from django.test import Client
from django.urls import reverse

from labs import checks, live
from labs.catalogue import CATALOGUE, LABS
from labs.lab_files import LabFileError, load_labs, pipeline_problems, read_lab
from labs.models import (
    AttemptOutcome,
    DeadLetter,
    Delivery,
    DeliveryStatus,
    Experiment,
    LabRun,
    NotificationIntent,
    Recipient,
    RunLab,
)
from labs.pipeline import audit, defences, events, faults, intake, traffic
from labs.pipeline.topology import SERVICES
from tests import pipeline_steps

BASE = Path(__file__).resolve().parent.parent
LAB = "dead-letters-poison"


@pytest.fixture
def learner(django_user_model):
    user = django_user_model.objects.create_user("ada")
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def other_learner(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("mallory"))
    return client


@pytest.fixture
def anonymous():
    return Client()


@pytest.fixture
def run(learner, db):
    learner.post(reverse("labs:start", args=[LAB]))
    lab_run = LabRun.objects.get(owner=learner.user)
    yield lab_run
    faults.clear_faults(lab_run.pk)
    events.get_redis().delete(events.stream_key(lab_run.pk))


def htmx(client: Client, url: str, data: dict | None = None):
    return client.post(url, data or {}, HTTP_HX_REQUEST="true")


# --- The catalogue and the lab files -----------------------------------------------------------


def test_the_catalogue_lists_the_six_labs_and_asks_a_visitor_to_sign_in(anonymous, db):
    page = anonymous.get(reverse("labs:index")).content.decode()

    for slug, title in LABS.items():
        assert f'id="{slug}"' in page and title in page  # lessons link to these anchors
    assert "to start a run of your own" in page


def test_a_visitor_reads_a_lab_but_is_asked_to_sign_in_to_start_a_run(anonymous, db):
    page = anonymous.get(reverse("labs:lab", args=[LAB])).content.decode()

    assert "Sign in to start a run" in page and "Take the email provider down" in page
    assert "Start a run" not in page
    assert anonymous.post(reverse("labs:start", args=[LAB])).status_code == 302  # to the login page
    assert not LabRun.objects.exists()


def test_the_labs_are_files_with_steps_predictions_checks_and_real_lessons():
    lessons = {re.sub(r"^\d+-", "", p.stem) for p in (BASE / "courseware/content/lessons").glob("*.md")}
    assert list(CATALOGUE) == ["outbox-and-relay", "retries-backoff-jitter", "dead-letters-poison",
                               "idempotent-consumers", "circuit-breaker-failover", "priority-lanes-ordering", "order-saga",
                               "service-discovery-health-checks", "synchronous-chains"]  # fmt: skip
    for lab in CATALOGUE.values():
        assert pipeline_problems(lab) == []
        assert set(lab.lessons) <= lessons, lab.slug
        assert lab.checks and all(step.prediction and step.actions for step in lab.steps)
        linked = re.findall(r"\(lesson:([a-z0-9-]+)(?:#([a-z0-9-]+))?\)", lab.background)
        for slug, anchor in linked:
            assert slug in lessons, (lab.slug, slug)
            if anchor:
                headings = [line[3:] for line in _lesson_text(slug).splitlines() if line.startswith("## ")]
                assert anchor in {_anchor(h) for h in headings}, (lab.slug, slug, anchor)


def _lesson_text(slug: str) -> str:
    return next((BASE / "courseware/content/lessons").glob(f"*-{slug}.md")).read_text()


def _anchor(heading: str) -> str:
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower())


def test_a_broken_lab_file_is_reported_with_its_file_and_place(tmp_path):
    source = yaml.safe_load((BASE / "labs/content/03-dead-letters-poison.yaml").read_text())
    source["steps"][1]["checks"] = ["no-such-check"]
    (tmp_path / "03-dead-letters-poison.yaml").write_text(yaml.safe_dump(source))
    with pytest.raises(LabFileError, match=r"03-dead-letters-poison.yaml: steps\[1\].checks: no check with id 'no-such-check'"):
        load_labs(tmp_path)

    (tmp_path / "03-dead-letters-poison.yaml").write_text("slug: x\ntitle: [unclosed\n")
    with pytest.raises(LabFileError, match=r"03-dead-letters-poison.yaml: line \d+: not valid YAML"):
        read_lab(tmp_path / "03-dead-letters-poison.yaml")


def test_a_check_naming_an_unknown_fact_or_fault_is_a_problem():
    lab = read_lab(BASE / "labs/content/03-dead-letters-poison.yaml")
    broken = yaml.safe_load((BASE / "labs/content/03-dead-letters-poison.yaml").read_text())
    broken["checks"][0]["require"] = ["dead_letterz >= 1"]
    broken["steps"][0]["actions"][0]["fault"] = {"target": "email-primary", "downn": True}
    path = Path(lab.slug + ".yaml")
    problems = pipeline_problems(_lab_from(broken, path))
    assert any("unknown fact 'dead_letterz'" in p for p in problems)
    assert any("email-primary.downn is not a fault" in p for p in problems)


def _lab_from(raw: dict, name: Path):
    import tempfile

    folder = Path(tempfile.mkdtemp())
    (folder / f"03-{name.stem}.yaml").write_text(yaml.safe_dump(raw))
    return read_lab(folder / f"03-{name.stem}.yaml")


# --- Starting a run, and who may see it ---------------------------------------------------------


def test_starting_a_lab_gives_the_learner_one_run_with_open_preferences_the_live_view_and_curl(learner, run):
    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()

    assert RunLab.objects.get(run=run).lab == LAB
    assert not Recipient.objects.filter(run=run, quiet_start__isnull=False).exists()
    assert not Recipient.objects.filter(run=run, email_opt_in=False).exists()
    key = re.search(r'id="api-key">([^<]+)</code>', page)[1]  # shown on the first page after the start
    assert LabRun.for_api_key(key) == run and f"KEY=&#x27;{key}&#x27;" in page
    assert "/api/notifications" in page and "Idempotency-Key: reset-42" in page
    assert 'id="live-panels"' in page and 'data-testid="stage-dead-letters"' in page
    assert reverse("labs:stream", args=[run.pk]) in page
    learner.post(reverse("labs:start", args=[LAB]))  # a second click
    assert LabRun.objects.filter(owner=learner.user).count() == 1


RUN_URLS = [
    ("get", "labs:panels", []), ("get", "labs:stream", []), ("get", "labs:fault", []),
    ("post", "labs:reset", []), ("post", "labs:end", []), ("post", "labs:rotate_key", []),
    ("post", "labs:send", []), ("post", "labs:burst", []), ("post", "labs:poison", []), ("post", "labs:fault", []),
    ("post", "labs:stop_faults", []), ("post", "labs:defences", []), ("post", "labs:policy", []),
    ("post", "labs:call_policy", []), ("post", "labs:load", []), ("post", "labs:discovery", []),
    ("post", "labs:replay", []), ("post", "labs:discard", []), ("get", "labs:notification", ["intent"]),
    ("get", "labs:delivery", ["delivery"]), ("post", "labs:prediction", [1]), ("post", "labs:act", [1, 1]),
    ("post", "labs:record", [1]),
]  # fmt: skip


def test_every_run_url_is_404_for_another_learner_and_for_a_visitor(learner, other_learner, anonymous, run):
    accepted = traffic.send_one(run, 3, "password_reset")
    delivery = Delivery.objects.get(intent=accepted.intent)
    learner.post(reverse("labs:prediction", args=[run.pk, 1]), {"prediction": "mine"})
    ids = {"intent": accepted.intent.pk, "delivery": delivery.pk}

    for method, name, extra in RUN_URLS:
        url = reverse(name, args=[run.pk, *[ids.get(e, e) for e in extra]])
        for intruder in (other_learner, anonymous):
            response = getattr(intruder, method)(url, {"target": "email-primary", "email-primary-down": "on"})
            assert response.status_code == 404, (name, response.status_code)
    assert faults.all_faults(run.pk) == {} and LabRun.objects.filter(pk=run.pk).exists()
    assert learner.get(reverse("labs:panels", args=[run.pk])).status_code == 200


def test_the_owners_stream_token_does_not_open_the_stream_for_someone_else(learner, other_learner, run):
    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()
    token = re.search(r'data-fallback-url="[^"]*\?token=([^"]+)"', page)[1]
    url = f"{reverse('labs:stream', args=[run.pk])}?token={token}"

    assert learner.get(url).status_code == 200
    assert other_learner.get(url).status_code == 404


# --- The live stream ------------------------------------------------------------------------------


def test_without_the_live_process_the_stream_answers_once_with_the_new_events_and_says_come_back(learner, run):
    faults.set_fault(run.pk, "email-primary", down=True)
    first = learner.get(reverse("labs:stream", args=[run.pk]), {"after": "0-0"},
                        HTTP_HOST="testserver:8001", HTTP_ORIGIN="http://testserver:8000")  # fmt: skip

    body = first.content.decode()
    assert first["Content-Type"].startswith("text/event-stream")
    assert "retry: 1000" in body and "event: events" in body and body.rstrip().endswith("event: end\ndata: {}")
    assert "Fault on email-primary: down" in body
    last = re.search(r"^id: (\S+)$", body, re.M)[1]
    assert first["Access-Control-Allow-Origin"] == "http://testserver:8000"  # the page, on the web port below

    again = learner.get(reverse("labs:stream", args=[run.pk]), {"after": last})  # same origin: no Origin header
    assert "event: events" not in again.content.decode()  # nothing new since that id
    assert "Access-Control-Allow-Origin" not in again


@pytest.mark.parametrize("origin", ["https://evil.example", "http://testserver:9999", "https://testserver:8000", "null"])
def test_the_stream_refuses_a_page_of_any_other_origin(learner, run, origin):
    refused = learner.get(reverse("labs:stream", args=[run.pk]), {"after": "0-0"}, HTTP_HOST="testserver:8001", HTTP_ORIGIN=origin)

    assert refused.status_code == 403 and "site's own pages" in refused.content.decode()
    assert "Access-Control-Allow-Origin" not in refused


def test_an_origin_the_operator_trusts_may_read_the_stream(learner, run, settings):
    settings.LAB_LIVE_URL = "https://live.faultline.example"
    settings.CSRF_TRUSTED_ORIGINS = ["https://faultline.example"]
    url = reverse("labs:stream", args=[run.pk])

    trusted = learner.get(url, {"after": "0-0"}, HTTP_ORIGIN="https://faultline.example")
    next_port = learner.get(url, {"after": "0-0"}, HTTP_HOST="testserver:8001", HTTP_ORIGIN="http://testserver:8000")

    assert trusted.status_code == 200 and trusted["Access-Control-Allow-Origin"] == "https://faultline.example"
    assert next_port.status_code == 403  # with LAB_LIVE_URL set, the port below is not the site


def test_a_stream_token_stops_opening_the_stream_once_its_session_logs_out(learner, run):
    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()
    token = re.search(r'data-fallback-url="[^"]*\?token=([^"]+)"', page)[1]
    url = f"{reverse('labs:stream', args=[run.pk])}?token={token}"
    session_key = learner.cookies["sessionid"].value
    assert learner.get(url).status_code == 200

    learner.logout()
    replayed = Client()
    replayed.cookies["sessionid"] = session_key  # the old cookie, kept by whoever copied it

    assert replayed.get(url).status_code == 404


def test_the_feed_words_each_event_and_links_it_to_the_message(db):
    label, text, tone = live.describe({"kind": "retry_scheduled", "delivery": 7, "delay_ms": 812, "ceiling_ms": 1000,
                                       "attempt": 1, "max_attempts": 5})  # fmt: skip
    assert (label, tone) == ("retry", "warn")
    assert text == "Delivery 7: retry in 812 ms (drawn under 1000 ms), attempt 2 of 5"
    assert live.describe({"kind": "something_new"})[1] == "something new"
    [row] = live.event_rows(4, [{"id": "1-0", "kind": "dead_lettered", "at": 0.0, "delivery": 9, "intent": 3,
                                 "group": "poison", "error": "x"}])  # fmt: skip
    assert row["link"] == reverse("labs:notification", args=[4, 3]) and row["clock"] == "00:00:00.000"


# --- Controls -----------------------------------------------------------------------------------


def test_the_fault_panel_offers_every_fault_of_the_engine_and_a_new_one_appears_by_itself(learner, run, monkeypatch):
    panel = learner.get(reverse("labs:fault", args=[run.pk])).content.decode()
    for target in faults.TARGETS:
        if target in SERVICES:
            assert f'data-target="{target}"' not in panel, f"{target} is lab 9's: this run's API calls no service"
            continue
        for name in faults.kinds_for(target):
            assert f'name="{target}-{name}"' in panel, (target, name)
    for name in defences.NAMES:
        assert f'name="{name}"' in panel

    monkeypatch.setitem(faults.PROVIDER_FAULTS, "packet_loss", faults.SHARE)
    assert 'name="sms-primary-packet_loss"' in learner.get(reverse("labs:fault", args=[run.pk])).content.decode()


def test_setting_clearing_and_stopping_faults_from_the_page(learner, run):
    url = reverse("labs:fault", args=[run.pk])
    response = htmx(learner, url, {"target": "sms-primary", "sms-primary-error_rate": "0.5", "sms-primary-latency_ms": "200"})
    assert faults.all_faults(run.pk) == {"sms-primary": {"error_rate": 0.5, "latency_ms": 200}}
    assert "sms-primary: 50% of calls fail (503), 200 ms a call" in response.content.decode()
    assert "lab:changed" in response["HX-Trigger"]

    bad = htmx(learner, url, {"target": "sms-primary", "sms-primary-error_rate": "1.5"}).content.decode()
    assert "Ensure this value is less than or equal to 1" in bad
    assert faults.all_faults(run.pk)["sms-primary"]["error_rate"] == 0.5  # unchanged

    htmx(learner, url, {"target": "pipeline", "pipeline-relay_paused": "on"})
    htmx(learner, url, {"target": "sms-primary", "clear": "1"})
    assert faults.all_faults(run.pk) == {"pipeline": {"relay_paused": True}}
    htmx(learner, reverse("labs:stop_faults", args=[run.pk]))
    assert faults.all_faults(run.pk) == {}
    kinds = [e["kind"] for e in events.recent(run.pk)]
    assert kinds.count("fault_changed") == 4  # every change shows in the feed; the refused one is not a change


def test_defences_and_the_retry_policy_are_switched_from_the_page(learner, run):
    on = {name: "on" for name in defences.NAMES if name != "jitter"}
    htmx(learner, reverse("labs:defences", args=[run.pk]), on)
    run.refresh_from_db()
    assert defences.all_defences(run)["jitter"] is False and defences.all_defences(run)["outbox"] is True

    bad = htmx(learner, reverse("labs:policy", args=[run.pk]), {"retry_base_ms": "5", "retry_cap_ms": "100", "max_attempts": "3"})
    assert "Between 10 ms and 60,000 ms." in bad.content.decode()
    htmx(learner, reverse("labs:policy", args=[run.pk]), {"retry_base_ms": "500", "retry_cap_ms": "8000", "max_attempts": "6"})
    run.refresh_from_db()
    assert (run.retry_base_ms, run.retry_cap_ms, run.max_attempts) == (500, 8000, 6)


def test_service_discovery_is_switched_from_the_page_and_a_bad_ttl_is_refused_with_a_message(learner, run):
    url = reverse("labs:discovery", args=[run.pk])
    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()
    assert url not in page  # lab 3 never switches discovery: its page has no such form

    bad = htmx(learner, url, {"discovery-mode": "dns", "discovery-ttl_s": "0"}).content.decode()
    assert "Ensure this value is greater than or equal to 1." in bad
    run.refresh_from_db()
    assert run.discovery == {}

    done = htmx(learner, url, {"discovery-mode": "dns", "discovery-ttl_s": "5"}).content.decode()
    assert "caches each answer for 5 s" in done
    run.refresh_from_db()
    assert run.discovery == {"mode": "dns", "ttl_s": 5}
    panels = learner.get(reverse("labs:panels", args=[run.pk])).content.decode()
    assert 'data-testid="discovery-panel"' in panels and 'data-testid="instance-email-primary-2"' in panels
    assert "discovery_changed" in [e["kind"] for e in events.recent(run.pk)]

    htmx(learner, url, {"discovery-mode": "off", "discovery-ttl_s": "5"})
    run.refresh_from_db()
    assert run.discovery == {}
    assert 'data-testid="discovery-panel"' not in learner.get(reverse("labs:panels", args=[run.pk])).content.decode()


def test_sending_one_notification_shows_the_field_errors_and_a_replayed_key(learner, run):
    url = reverse("labs:send", args=[run.pk])
    bad_json = htmx(learner, url, {"user_id": "3", "template": "password_reset", "data": "{nope"}).content.decode()
    assert "Write a JSON object" in bad_json
    missing = htmx(learner, url, {"user_id": "3", "template": "order_shipped", "data": '{"order_id": "A-1"}',
                                  "channels": ["sms"], "idempotency_key": "k1"})  # fmt: skip
    assert "Accepted notification" in missing.content.decode()
    again = htmx(learner, url, {"user_id": "3", "template": "order_shipped", "data": '{"order_id": "A-1"}',
                                "channels": ["sms"], "idempotency_key": "k1"}).content.decode()  # fmt: skip
    assert "was used before: the API returned notification" in again
    assert Delivery.objects.filter(run=run).count() == 1

    conflict = htmx(learner, url, {"user_id": "4", "template": "order_shipped", "idempotency_key": "k1"}).content.decode()
    assert "already used for intent" in conflict
    too_many = htmx(learner, reverse("labs:burst", args=[run.pk]), {"count": "5000", "template": "weekly_digest"})
    assert "less than or equal to 1000" in too_many.content.decode()


def test_the_stream_form_sends_a_small_batch_each_tick(learner, run):
    response = learner.post(reverse("labs:burst", args=[run.pk]), {"stream": "1", "stream-count": "4", "stream-template": "weekly_digest"})
    assert response.json() == {"sent": 4}
    assert Delivery.objects.filter(run=run).count() == 4


# --- The dead-letter workbench ---------------------------------------------------------------------


def _dead_letter(run, group: str, replayed: bool = False) -> DeadLetter:
    """A delivery as the worker leaves it after its last attempt (no worker runs here)."""
    return pipeline_steps.dead_letter(run, group, replayed)


def test_the_workbench_groups_by_error_replays_a_group_and_discards_one(learner, run):
    for _ in range(3):
        _dead_letter(run, "provider_unavailable")
    poison = _dead_letter(run, "template_data_missing", replayed=True)

    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()
    assert "Replay group provider_unavailable" in page and 'class="tag replayed"' in page

    response = htmx(learner, reverse("labs:replay", args=[run.pk]), {"group": "provider_unavailable"})
    assert "Replayed 3 dead letters of provider_unavailable." in response.content.decode()
    assert DeadLetter.objects.filter(run=run, resolution="replayed").count() == 3
    htmx(learner, reverse("labs:discard", args=[run.pk]), {"dead_letter": poison.pk})
    assert Delivery.objects.get(pk=poison.delivery_id).status == DeliveryStatus.DISCARDED
    assert checks.facts(run)["dead_letters"] == 0


# --- Experiment cards -----------------------------------------------------------------------------


def test_a_step_needs_a_prediction_then_runs_its_fault_and_records_what_happened(learner, run):
    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()
    assert "Save your prediction to unlock these buttons." in page

    refused = htmx(learner, reverse("labs:act", args=[run.pk, 1, 1])).content.decode()
    assert "Write your prediction before you run this step." in refused
    assert faults.all_faults(run.pk) == {}

    htmx(learner, reverse("labs:prediction", args=[run.pk, 1]), {"prediction": "All twenty in the dead letters."})
    done = htmx(learner, reverse("labs:act", args=[run.pk, 1, 1])).content.decode()
    assert "Fault on email-primary: down" in done
    assert faults.all_faults(run.pk) == {"email-primary": {"down": True}}
    htmx(learner, reverse("labs:act", args=[run.pk, 1, 2]))
    experiment = Experiment.objects.get(owner=learner.user)
    assert experiment.before["dead_letters"] == 0 and [a["label"] for a in experiment.actions] == [
        "Switch the circuit breaker off and put email-primary down", "Send 20 weekly digests"]  # fmt: skip

    htmx(learner, reverse("labs:record", args=[run.pk, 1]))
    experiment.refresh_from_db()
    assert experiment.after["accepted"] == 20 and experiment.recorded_at

    history = learner.get(reverse("labs:history")).content.decode()
    assert "All twenty in the dead letters." in history and "Switch the circuit breaker off and put email-primary down" in history
    assert "open dead letters" in history  # the facts the step observes, in words


def test_a_check_that_passed_stays_passed_when_the_run_moves_on_until_the_step_starts_again(learner, run):
    panels_url = reverse("labs:panels", args=[run.pk])
    check = 'data-testid="check-outage-dead-lettered" data-passed="{}"'
    htmx(learner, reverse("labs:prediction", args=[run.pk, 1]), {"prediction": "All twenty in the dead letters."})
    for _ in range(10):
        _dead_letter(run, "provider_unavailable")
    waiting = learner.get(panels_url).content.decode()
    assert check.format("true") in waiting  # it passes now, but the learner has not run step 1: nothing is held
    assert not Experiment.objects.get(owner=learner.user).checks_passed

    htmx(learner, reverse("labs:act", args=[run.pk, 1, 1]))
    assert check.format("true") in learner.get(panels_url).content.decode()
    # What the check reads is undone (here by hand; in lab 3 a later step's poison messages do it).
    DeadLetter.objects.filter(run=run).delete()
    audit.rebuild_counts(run.pk)  # and the running counts with them
    held = learner.get(panels_url).content.decode()
    assert check.format("true") in held
    assert 'data-testid="step-check-outage-dead-lettered" data-passed="true"' in held
    assert "it stays passed though the run has moved on" in held

    htmx(learner, reverse("labs:prediction", args=[run.pk, 1]), {"prediction": "A second go."})
    again = learner.get(panels_url).content.decode()
    assert check.format("false") in again  # a new prediction starts the step, and its checks, again
    assert "dead letters ever written, open or not: at least 10 (now 0)" in again
    assert "dead_letters_total" not in again and "&gt;=" not in again


def test_a_pass_nobody_looked_at_is_held_when_a_later_step_acts(learner, run):
    htmx(learner, reverse("labs:prediction", args=[run.pk, 1]), {"prediction": "All twenty in the dead letters."})
    htmx(learner, reverse("labs:act", args=[run.pk, 1, 1]))
    for _ in range(10):
        _dead_letter(run, "provider_unavailable")  # step 1's check passes; no page has looked since
    htmx(learner, reverse("labs:prediction", args=[run.pk, 3]), {"prediction": "One attempt each."})
    htmx(learner, reverse("labs:act", args=[run.pk, 3, 1]))
    DeadLetter.objects.filter(run=run).delete()

    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()

    assert 'data-testid="step-check-outage-dead-lettered" data-passed="true"' in page
    assert set(Experiment.objects.get(step=1).checks_passed) == {"outage-dead-lettered"}


def test_the_event_feed_counts_in_words_and_says_when_no_provider_was_called():
    poison = live.describe({"kind": "attempt_failed", "attempt": 1, "delivery": 7, "provider": "",
                            "error": "template data has no value for {order_id}"})  # fmt: skip
    sent = live.describe({"kind": "attempt_failed", "attempt": 2, "delivery": 7, "provider": "sms-primary", "error": "503"})
    one = live.describe({"kind": "batch_delivered", "count": 1, "channel": "email", "provider": "email-primary", "latency_ms": 80})
    many = live.describe({"kind": "published_batch", "count": 3, "queue": "email"})
    opted_out = live.describe({"kind": "suppressed", "delivery": 4, "reason": "opt_out"})

    assert poison[1] == "Attempt 1 of delivery 7 failed before any provider was called: template data has no value for {order_id}"
    assert sent[1] == "Attempt 2 of delivery 7 failed at sms-primary: 503"
    assert one[1] == "1 email delivery sent by email-primary in one bulk call (80 ms)"
    assert many[1] == "Relay published 3 deliveries to the email queue as one batch message"
    assert opted_out[1] == "Delivery 4 suppressed: the user opted out of this channel"


def test_one_dead_letter_is_one_and_a_provider_call_is_not_a_send(learner, run):
    letter = pipeline_steps.dead_letter(run, "template_data_missing", attempts=(
        {"provider": "email-primary", "outcome": AttemptOutcome.FAILED, "error": "503"},
        {"outcome": AttemptOutcome.REJECTED, "error": "template data has no value for {order_id}"},
    ))  # fmt: skip

    replayed = htmx(learner, reverse("labs:replay", args=[run.pk]), {"dead_letter": letter.pk}).content.decode()
    found = checks.facts(run)
    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()

    assert "Replayed 1 dead letter." in replayed
    # The poison attempt called no provider; the failed call did, and sent nothing.
    assert found["provider_calls"] == 1 and found["provider_sends"] == 0 and found["failed_attempts"] == 1
    assert 'data-testid="metric-provider-calls">1<' in page and 'data-testid="metric-provider-sends">0<' in page
    assert "in the last minute" in page and "in all" not in page


def test_the_admin_lists_deliveries(django_user_model, db):
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", "root@example.org", "pw"))

    page = admin.get(reverse("admin:index")).content.decode()

    assert "Deliveries" in page and "Deliverys" not in page


def test_an_admin_deletes_a_learners_account_with_its_runs_and_their_traffic(learner, run, django_user_model):
    intake.accept(run, [intake.IntentRequest("first", 1, "weekly_digest")])  # an intent, its deliveries and outbox rows
    assert NotificationIntent.objects.filter(run=run).exists()
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", "root@example.org", "pw"))
    url = reverse("admin:auth_user_delete", args=[learner.user.pk])

    asked = admin.get(url).content.decode()
    done = admin.post(url, {"post": "yes"})

    assert "Cannot delete" not in asked and "protected" not in asked
    assert done.status_code == 302
    assert not django_user_model.objects.filter(pk=learner.user.pk).exists()
    assert not LabRun.objects.filter(pk=run.pk).exists() and not NotificationIntent.objects.filter(run_id=run.pk).exists()


def test_resetting_the_run_starts_fresh_cards_and_keeps_the_history(learner, run):
    htmx(learner, reverse("labs:prediction", args=[run.pk, 3]), {"prediction": "One attempt each."})
    htmx(learner, reverse("labs:act", args=[run.pk, 3, 1]))
    faults.set_fault(run.pk, "sms-primary", down=True)
    defences.set_defences(run, jitter=False)

    learner.post(reverse("labs:reset", args=[run.pk]))

    assert faults.all_faults(run.pk) == {} and not Delivery.objects.filter(run=run).exists()
    run.refresh_from_db()
    assert all(defences.all_defences(run).values())
    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()
    assert "One attempt each." not in page
    assert Experiment.objects.filter(owner=learner.user).count() == 1
    assert "One attempt each." in learner.get(reverse("labs:history")).content.decode()

    learner.post(reverse("labs:end", args=[run.pk]))
    assert not LabRun.objects.filter(pk=run.pk).exists()
    assert Experiment.objects.get(owner=learner.user).run is None  # the history outlives the run


def test_the_lineage_of_a_notification_shows_its_timeline(learner, run):
    dead = _dead_letter(run, "provider_unavailable")
    url = reverse("labs:notification", args=[run.pk, dead.delivery.intent_id])

    full = learner.get(url).content.decode()
    fragment = learner.get(url, HTTP_HX_REQUEST="true").content.decode()

    assert "<html" in full and "<html" not in fragment
    assert "Accepted by the API for Email" in fragment and "Outbox row written (generation 0)" in fragment
    assert "Dead-lettered after 4 attempts: provider_unavailable" in fragment
    redirect = learner.get(reverse("labs:delivery", args=[run.pk, dead.delivery_id]))
    assert redirect.status_code == 302 and redirect["Location"] == url


def test_the_panels_refresh_the_workbench_the_step_outcomes_and_the_fault_summary_out_of_band(learner, run):
    faults.set_fault(run.pk, "email-primary", down=True)
    body = learner.get(reverse("labs:panels", args=[run.pk])).content.decode()

    assert 'id="dead-letter-workbench"' in body and body.count('hx-swap-oob="true"') >= 5
    assert 'id="step-2-outcome"' in body and "⚡ email-primary: down" in body
    assert 'data-testid="check-drained" data-passed="false"' in body


def test_the_herd_is_the_share_of_one_round_of_retries_due_together():
    from labs.checks import ScheduledRetry, herd_pct, retry_rounds

    # Forty digests failed together at t=100; without jitter all are due at 101 s, with jitter spread over 1 s.
    herd = [ScheduledRetry(1, 100 + n * 0.003, 101 + n * 0.003, 1000) for n in range(40)]
    spread = [ScheduledRetry(1, 120 + n * 0.003, 120 + n * 0.003 + (n * 7 % 40) / 40, 1000) for n in range(40)]

    assert [len(r) for r in retry_rounds(herd + spread)] == [40, 40]  # bursts twenty seconds apart are two rounds
    assert herd_pct(herd) == 100 and herd_pct(spread) <= 30
    assert herd_pct(herd + spread) == 100  # the herd is not diluted by a later, jittered burst
    assert herd_pct(herd[:5]) == 0  # too few retries to call it a herd


def test_with_redis_down_a_lab_page_says_so_and_the_lessons_keep_working(learner, run, settings):
    from tests.harness import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    page = learner.get(reverse("labs:lab", args=[LAB]))
    panels = learner.get(reverse("labs:panels", args=[run.pk]), HTTP_HX_REQUEST="true")
    lesson = learner.get(reverse("courseware:index"))

    assert page.status_code == 503 and "Redis is unreachable" in page.content.decode()
    assert page["Retry-After"] == "5" and "<html" in page.content.decode()
    assert panels.status_code == 503 and "Redis is unreachable" in panels.content.decode() and "<html" not in panels.content.decode()
    assert lesson.status_code == 200
    assert LabRun.objects.filter(pk=run.pk).exists()
