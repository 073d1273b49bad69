"""Hostile and careless input (issue 13): every cause of an HTTP 500 found from outside now gets a
4xx naming the field, writes nothing, and no template can make a worker build gigabytes or die.

Each test sends what the attacker or the careless client sent and checks what they would see
(the status and the message) and what they would leave behind (nothing). The same module runs
on PostgreSQL, which refuses NUL characters that SQLite stores.
"""

import json
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from courseware.loading import load_content
from courseware.models import CheckAnswer, InlineCheck
from labs.models import DeadLetter, Delivery, DeliveryStatus, LabRun, NotificationIntent, OutboxRow, Recipient, Template
from labs.pipeline import events, faults, templating, traffic, worker
from labs.runs import create_run
from labs.seeding import TEMPLATES
from tests import pipeline_steps
from tests.harness import wait_for

GOOD = {"user_id": 1, "template": "password_reset", "data": {"code": "1234"}}
LAB = "dead-letters-poison"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def run(db, django_user_model):
    lab_run = create_run(django_user_model.objects.create_user("ada", password="not-used-1234"))
    yield lab_run
    faults.clear_faults(lab_run.pk)


@pytest.fixture
def api(run):
    return Client(HTTP_AUTHORIZATION=f"Bearer {run.api_key}")


@pytest.fixture
def learner(db, django_user_model):
    """A signed-in learner with a run started from a lab page."""
    client = Client()
    client.force_login(django_user_model.objects.create_user("grace"))
    client.post(reverse("labs:start", args=[LAB]))
    client.run = LabRun.objects.get(owner__username="grace")
    yield client
    faults.clear_faults(client.run.pk)


def send(api, body, key="key-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post("/api/notifications", json.dumps(body), content_type="application/json", **headers)


def post_json(api, path, raw: str):
    """Send `raw` as the body: Python's json module writes NaN and Infinity as a careless client does."""
    return api.post(path, raw, content_type="application/json")


def nothing_written() -> bool:
    return not (NotificationIntent.objects.exists() or Delivery.objects.exists() or OutboxRow.objects.exists())


def refused(response, field: str, status: int = 422) -> dict:
    """The response is a JSON 4xx whose errors name `field`; returns the body."""
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert field in body["errors"], body
    assert field in body["error"]
    return body


# --- Templates: `{name}` only, checked when created and when rendered ---------------------------------


def test_a_new_template_needs_its_channels(api, run):
    response = post_json(api, "/api/templates", json.dumps({"name": "fresh", "category": "marketing", "bodies": {"en": {"body": "Hi {name}"}}}))

    refused(response, "channels")
    assert not Template.objects.filter(run=run, name="fresh").exists()


@pytest.mark.parametrize(
    ("bodies", "field", "words"),
    [
        ({"en": {"body": "Hi {name[x]}"}}, "bodies.en.body", "item access"),
        ({"en": {"body": "Hi {name.__class__}"}}, "bodies.en.body", "attribute access"),
        ({"en": {"body": "Hi {name!r}"}}, "bodies.en.body", "conversions"),
        ({"en": {"body": "Hi {name:>100000000}"}}, "bodies.en.body", "format specs"),
        ({"en": {"body": "Hi {0}"}}, "bodies.en.body", "not a placeholder"),
        ({"en": {"body": "Hi {}"}}, "bodies.en.body", "empty placeholder"),
        ({"en": {"body": "Hi {name"}}, "bodies.en.body", "never closed"),
        ({"en": {"body": "Hi name}"}}, "bodies.en.body", "closes nothing"),
        ({"en": {"body": "Hi"}, "fr": {"subject": "{code:.999999}", "body": "Salut"}}, "bodies.fr.subject", "format specs"),
    ],
)
def test_a_template_outside_the_language_is_refused_naming_the_locale_and_field(api, run, bodies, field, words):
    response = post_json(api, "/api/templates", json.dumps({"name": "fresh", "category": "marketing", "channels": ["email"], "bodies": bodies}))

    assert words in refused(response, field)["error"]
    assert not Template.objects.filter(run=run, name="fresh").exists()


def test_a_template_in_the_language_is_created_and_renders_its_literal_braces(api, run):
    body = {"name": "fresh", "category": "marketing", "channels": ["email"], "bodies": {"en": {"subject": "{{draft}}", "body": "Hi {name}, {code}"}}}

    response = post_json(api, "/api/templates", json.dumps(body))

    assert response.status_code == 201, response.content
    template = Template.objects.get(run=run, name="fresh")
    assert templating.render(template.bodies["en"]["subject"], {}) == "{draft}"
    assert templating.render(template.bodies["en"]["body"], {"name": "Ada", "code": 7}) == "Hi Ada, 7"


def test_every_seeded_template_is_in_the_language():
    for name, _, _, bodies in TEMPLATES:
        for locale, body in bodies.items():
            templating.check(body["subject"])
            assert templating.placeholders(body["body"]), (name, locale)


@pytest.mark.parametrize("text", ["{name[x]}", "{name.__class__}", "{name:>100000000}", "{name!s}", "{", "}"])
def test_a_stored_template_outside_the_language_is_a_poison_message_at_render_time(run, text):
    """A row written before templates were checked reaches the worker: it must fail at once, as poison."""
    template = Template.objects.create(run=run, name="legacy", version=1, category="marketing", channels=["email"],
                                       bodies={"en": {"subject": "", "body": text}})  # fmt: skip
    intent = traffic.send_one(run, 1, "password_reset").intent
    NotificationIntent.objects.filter(pk=intent.pk).update(template=template)
    delivery = Delivery.objects.select_related("recipient", "intent__template").get(intent=intent)

    with pytest.raises(worker.PoisonMessage):
        worker.render(delivery)


def test_rendering_is_bounded_whatever_the_stored_data():
    with pytest.raises(templating.TemplateError, match="longer than"):
        templating.render("{a}{a}{a}", {"a": "x" * 40_000})


def test_a_stored_template_with_a_huge_width_is_dead_lettered_as_poison_by_a_real_worker(celery_worker, relay, django_user_model):
    run = create_run(django_user_model.objects.create_user(f"w-{uuid.uuid4().hex[:6]}"), retry_base_ms=100, max_attempts=3)
    Recipient.objects.filter(run=run).update(quiet_start=None, quiet_end=None, email_opt_in=True)
    # As a row written before templates were checked: 10**9 characters if str.format rendered it.
    Template.objects.create(run=run, name="legacy", version=1, category="transactional", channels=["email"],
                            bodies={"en": {"subject": "", "body": "{code:>1000000000}"}})  # fmt: skip
    api = Client(HTTP_AUTHORIZATION=f"Bearer {run.api_key}")

    response = send(api, {"user_id": 1, "template": "legacy", "data": {"code": "1"}})

    assert response.status_code == 202, response.content
    letter = wait_for(lambda: DeadLetter.objects.filter(run=run).first(), 30, "the poison message's dead letter")
    assert letter.error_group == worker.PoisonMessage.group and "format specs" in letter.error
    assert letter.attempts == 1
    delivery = Delivery.objects.get(run=run)
    assert delivery.status == DeliveryStatus.DEAD_LETTERED
    assert not any(e["kind"] == "republished" for e in events.recent(run.pk))
    assert delivery.attempt_rows.count() == 1



# --- Event ids: the API's feed and the lab stream -----------------------------------------------------


@pytest.mark.parametrize("after", ["", "$", "+", "abc", "1-1-1", "1", "99999999999999999999-0", "0-18446744073709551616",
                                   "18446744073709551615-18446744073709551615", "٣-0", "1-²"])  # fmt: skip
def test_the_event_feed_refuses_an_after_that_is_not_an_event_id(api, run, after):
    refused(api.get("/api/runs/current/events", {"after": after}), "after")


def test_the_event_feed_resumes_after_a_real_event_id(api, run):
    faults.set_fault(run.pk, "sms-primary", down=True)
    faults.set_fault(run.pk, "sms-primary")
    first, second = api.get("/api/runs/current/events").json()["events"][-2:]

    response = api.get("/api/runs/current/events", {"after": first["id"]})

    assert response.status_code == 200
    assert [e["id"] for e in response.json()["events"]] == [second["id"]]
    assert api.get("/api/runs/current/events", {"after": "18446744073709551615-18446744073709551614"}).json() == {"events": []}


@pytest.mark.parametrize("header", [{"after": "99999999999999999999-0"}, {"after": "abc"}, {"HTTP_LAST_EVENT_ID": "1-1-1"}])
def test_the_lab_stream_refuses_an_after_that_is_not_an_event_id(learner, header):
    query = {k: v for k, v in header.items() if not k.startswith("HTTP_")}
    headers = {k: v for k, v in header.items() if k.startswith("HTTP_")}

    response = learner.get(reverse("labs:stream", args=[learner.run.pk]), query, **headers)

    assert response.status_code == 400
    assert ("after" if query else "Last-Event-ID") in response.content.decode()
    assert "event id" in response.content.decode()


# --- Faults: every number bounded, in the API and on the page -----------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('{"sms-primary": {"latency_ms": Infinity}}', "finite number"),
        ('{"sms-primary": {"latency_ms": NaN}}', "finite number"),
        ('{"sms-primary": {"latency_ms": 1e400}}', "finite number"),
        ('{"sms-primary": {"latency_ms": 100000000000000000000000000000}}', "from 0 to 60,000"),
        ('{"sms-primary": {"latency_ms": -1}}', "from 0 to 60,000"),
        ('{"sms-primary": {"latency_jitter_ms": 60001}}', "from 0 to 60,000"),
        ('{"sms-primary": {"fail_first": 1000000000}}', "from 0 to 10,000"),
        ('{"sms-primary": {"error_rate": 1.5}}', "between 0 and 1"),
        ('{"sms-primary": {"lost_ack": -0.1}}', "between 0 and 1"),
        ('{"pipeline": {"clock_skew_minutes": 1000000000000}}', "from -1,440 to 1,440"),
        ('{"pipeline": {"clock_skew_minutes": -1441}}', "from -1,440 to 1,440"),
        ('{"pipeline": {"clock_skew_minutes": 2.5}}', "whole number"),
    ],
)
def test_a_fault_setting_out_of_its_range_is_refused_and_changes_nothing(api, run, raw, words):
    faults.set_fault(run.pk, "email-primary", down=True)

    response = api.put("/api/runs/current/faults", '{"faults": %s}' % raw, content_type="application/json")

    assert response.status_code == 422, response.content
    assert words in response.json()["error"]
    field = next(iter(response.json()["errors"]))
    assert field.startswith("faults.") and field.split(".")[1] in ("sms-primary", "pipeline")
    assert faults.all_faults(run.pk) == {"email-primary": {"down": True}}


def test_every_whole_number_fault_has_a_range():
    every_kind = {**faults.PROVIDER_FAULTS, **faults.PIPELINE_FAULTS, **faults.SERVICE_FAULTS, **faults.INSTANCE_FAULTS}
    whole = {name for name, kind in every_kind.items() if kind is int}

    assert whole == set(faults.WHOLE_NUMBER_RANGES)


def test_the_faults_api_lists_the_range_of_every_whole_number_fault(api):
    ranges = api.get("/api/runs/current/faults").json()["available"]["ranges"]

    assert ranges["latency_ms"] == {"min": 0, "max": 60_000}
    assert ranges["clock_skew_minutes"] == {"min": -1440, "max": 1440}


@pytest.mark.parametrize(("field", "value"), [("latency_ms", "1000000000000"), ("latency_ms", "-5"), ("fail_first", "10001"),
                                              ("error_rate", "inf"), ("error_rate", "nan")])  # fmt: skip
def test_the_fault_form_bounds_every_number(learner, field, value):
    url = reverse("labs:fault", args=[learner.run.pk])

    response = learner.post(url, {"target": "sms-primary", f"sms-primary-{field}": value}, **HTMX)

    assert response.status_code == 200 and f'id="id_sms-primary-{field}_errors"' in response.content.decode()
    assert faults.all_faults(learner.run.pk) == {}


def test_the_fault_form_bounds_the_clock_skew(learner):
    url = reverse("labs:fault", args=[learner.run.pk])

    response = learner.post(url, {"target": "pipeline", "pipeline-clock_skew_minutes": str(10**12)}, **HTMX)

    assert "less than or equal to 1440" in response.content.decode()
    assert faults.all_faults(learner.run.pk) == {}


# --- The API's input: ids, NaN, quiet hours, NUL characters, booleans; JSON whatever goes wrong -------


@pytest.mark.parametrize("user_id", [2**31, 2**63 - 1, 2**63, 2**64, 10**30])
def test_a_user_id_too_large_for_any_user_is_refused(api, user_id):
    refused(send(api, {**GOOD, "user_id": user_id}), "user_id")
    batch = {"notifications": [{**GOOD, "idempotency_key": "k0"}, {**GOOD, "idempotency_key": "k1", "user_id": user_id}]}
    refused(post_json(api, "/api/notifications/batch", json.dumps(batch)), "notifications[1].user_id")
    assert nothing_written()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_template_data_are_refused(api, constant):
    raw = '{"user_id": 1, "template": "password_reset", "data": {"code": %s}}' % constant

    response = api.post("/api/notifications", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    batch = '{"notifications": [{"idempotency_key": "k", "user_id": 1, "template": "password_reset", "data": {"code": %s}}]}' % constant

    assert "finite number" in refused(response, "data.code")["errors"]["data.code"]
    refused(post_json(api, "/api/notifications/batch", batch), "notifications[0].data.code")
    assert nothing_written()


@pytest.mark.parametrize("quiet", [{"start": "22:00:00+01:00", "end": "07:00:00+01:00"}, {"start": "22:00", "end": "07:00Z"}])
def test_quiet_hours_with_an_offset_are_refused_because_the_users_timezone_decides(api, run, quiet):
    before = Recipient.objects.values("quiet_start", "quiet_end").get(run=run, number=2)

    response = api.put("/api/users/2/notification-preferences", {"quiet_hours": quiet}, content_type="application/json")

    body = refused(response, "quiet_hours.start" if "+" in quiet["start"] else "quiet_hours.end")
    assert "without an offset" in body["error"]
    assert Recipient.objects.values("quiet_start", "quiet_end").get(run=run, number=2) == before


@pytest.mark.parametrize("path", ["/api/notifications/99999999999999999999", "/api/users/99999999999999999999/notification-preferences",
                                  "/api/dead-letters/99999999999999999999/replay", "/api/dead-letters/99999999999999999999/discard"])  # fmt: skip
def test_a_huge_id_in_an_api_path_is_not_found_or_refused(api, path):
    response = api.post(path) if path.endswith(("replay", "discard")) else api.get(path)

    assert response.status_code in (404, 422), response.content[:300]
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("path", "body", "headers", "field"),
    [
        ("/api/notifications", {**GOOD, "data": {"code": "12\x0034"}}, {"HTTP_IDEMPOTENCY_KEY": "k"}, "data.code"),
        ("/api/notifications", {**GOOD, "data": {"co\x00de": "1"}}, {"HTTP_IDEMPOTENCY_KEY": "k"}, "data.co\x00de"),
        ("/api/notifications", {**GOOD, "template": "pass\x00word"}, {"HTTP_IDEMPOTENCY_KEY": "k"}, "template"),
        ("/api/notifications", GOOD, {"HTTP_IDEMPOTENCY_KEY": "k\x00"}, "Idempotency-Key"),
        ("/api/notifications/batch", {"notifications": [{**GOOD, "idempotency_key": "k\x00"}]}, {}, "notifications[0].idempotency_key"),
        ("/api/templates", {"name": "fresh", "category": "marketing", "channels": ["email"], "bodies": {"en": {"body": "Hi\x00"}}}, {}, "bodies.en.body"),
        ("/api/dead-letters/replay", {"group": "provider\x00"}, {}, "group"),
    ],
)
def test_nul_characters_are_refused_before_the_database_sees_them(api, run, path, body, headers, field):
    response = api.post(path, json.dumps(body), content_type="application/json", **headers)

    refused(response, field)
    assert nothing_written()
    assert not Template.objects.filter(run=run, name="fresh").exists()


@pytest.mark.parametrize("change", [{"locale": "e\x00"}, {"timezone": "Europe/Paris\x00"}, {"locale": "x" * 9}, {"timezone": "a/" * 40}])
def test_preferences_refuse_nul_characters_and_oversized_names(api, run, change):
    before = Recipient.objects.values("locale", "timezone").get(run=run, number=2)

    response = api.put("/api/users/2/notification-preferences", json.dumps(change), content_type="application/json")

    refused(response, next(iter(change)))
    assert Recipient.objects.values("locale", "timezone").get(run=run, number=2) == before


@pytest.mark.parametrize("locale", ["x" * 9, "en\x00", "EN", "../en"])
def test_a_template_locale_that_is_not_a_language_tag_is_refused(api, run, locale):
    body = {"name": "fresh", "category": "marketing", "channels": ["email"], "bodies": {"en": {"body": "Hi"}, locale: {"body": "Hi"}}}

    response = post_json(api, "/api/templates", json.dumps(body))

    assert "pattern" in refused(response, f"bodies.{locale}")["error"]
    assert not Template.objects.filter(run=run, name="fresh").exists()


def test_priority_lane_must_be_true_or_false_not_a_number(api, run):
    response = api.put("/api/runs/current/defences", {"priority_lane": 0}, content_type="application/json")

    refused(response, "priority_lane")
    assert api.get("/api/runs/current/defences").json()["priority_lane"] is True


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_error_in_the_api_is_a_json_500_whatever_debug_is(api, settings, monkeypatch, debug):
    settings.DEBUG = debug

    def broken(run):
        raise RuntimeError("the audit query blew up")

    monkeypatch.setattr("labs.api.audit.audit", broken)

    response = api.get("/api/runs/current/audit")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert "RuntimeError" in response.json()["error"] and "blew up" not in response.json()["error"]


# --- The lab page's forms and the lesson checks -------------------------------------------------------


@pytest.mark.parametrize("data", ['{"code": NaN}', '{"code": Infinity}', "[" * 100_000 + "]" * 100_000,
                                  '{"code": {"nested": 1}}', '{"a": "' + "x" * 5000 + '"}', '{"code": "\\u0000"}'])  # fmt: skip
def test_the_send_form_refuses_data_it_cannot_store_or_render(learner, data):
    url = reverse("labs:send", args=[learner.run.pk])

    response = learner.post(url, {"user_id": "3", "template": "password_reset", "data": data}, **HTMX)

    assert response.status_code == 200  # htmx swaps the form with its error in place
    assert 'id="id_data_errors"' in response.content.decode()
    assert not NotificationIntent.objects.exists()


@pytest.mark.parametrize("user_id", [str(10**30), "51", "0", "²", "-1"])
def test_the_send_form_refuses_a_user_outside_the_run(learner, user_id):
    url = reverse("labs:send", args=[learner.run.pk])

    response = learner.post(url, {"user_id": user_id, "template": "password_reset"}, **HTMX)

    assert response.status_code == 200
    assert 'id="id_user_id_errors"' in response.content.decode()
    assert not NotificationIntent.objects.exists()


def _dead_letter(run) -> DeadLetter:
    return pipeline_steps.dead_letter(run)


@pytest.mark.parametrize("action", ["labs:replay", "labs:discard"])
@pytest.mark.parametrize("value", ["²", "٣", str(10**30), "1" * 5000, "-1", " 1"])
def test_the_workbench_refuses_a_dead_letter_id_that_is_not_one(learner, action, value):
    letter = _dead_letter(learner.run)

    response = learner.post(reverse(action, args=[learner.run.pk]), {"dead_letter": [str(letter.pk), value]}, **HTMX)

    assert response.status_code == 200
    assert "dead_letter" in response.content.decode() and "is not the id of a dead letter" in response.content.decode()
    letter.refresh_from_db()
    assert letter.resolution == DeadLetter.Resolution.OPEN  # the good id in the same request is not touched either


def test_without_javascript_a_bad_dead_letter_id_comes_back_as_an_error_message(learner):
    letter = _dead_letter(learner.run)

    response = learner.post(reverse("labs:discard", args=[learner.run.pk]), {"dead_letter": "²"}, follow=True)

    assert "is not the id of a dead letter" in response.content.decode()
    letter.refresh_from_db()
    assert letter.resolution == DeadLetter.Resolution.OPEN


def test_the_workbench_refuses_a_group_with_a_nul_character(learner):
    letter = _dead_letter(learner.run)

    response = learner.post(reverse("labs:replay", args=[learner.run.pk]), {"group": "provider_unavailable\x00"}, **HTMX)

    assert "group" in response.content.decode() and "Null characters are not allowed" in response.content.decode()
    letter.refresh_from_db()
    assert letter.resolution == DeadLetter.Resolution.OPEN


@pytest.fixture
def course(db):
    load_content()
    return InlineCheck.objects.order_by("pk").first()


@pytest.mark.parametrize("option", ["²", "٣", str(10**30), "9" * 5000, "-1", "", "99"])
def test_a_lesson_check_refuses_an_option_that_is_not_one_even_anonymously(client, course, django_user_model, option):
    answer_url = reverse("courseware:answer_check", args=[course.check_id])

    anonymous = client.post(answer_url, {"option": option})
    client.force_login(django_user_model.objects.create_user("linus"))
    signed_in = client.post(answer_url, {"option": option}, **HTMX)

    assert anonymous.status_code == 400 and "Choose one of the answers first." in anonymous.content.decode()
    assert signed_in.status_code == 200 and "Choose one of the answers first." in signed_in.content.decode()
    assert not CheckAnswer.objects.exists()
