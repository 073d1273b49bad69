"""Bad input through the lab API gets a clear 4xx naming the field, and writes nothing."""

import json
import subprocess
import sys

import pytest
from django.test import Client

from labs.models import DeadLetter, Delivery, DeliveryAttempt, LabRun, NotificationIntent, OutboxRow, Recipient, Template
from labs.runs import create_run, delete_idle_runs, delete_run, reset_run
from tests.harness import BASE_DIR


@pytest.fixture
def run(db, django_user_model):
    return create_run(django_user_model.objects.create_user("ada", password="not-used-1234"))


@pytest.fixture
def api(run):
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {run.api_key}"
    return client


def post(api, path, body, key="key-1", raw=False):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    data = body if raw else json.dumps(body)
    return api.post(path, data, content_type="application/json", **headers)


def nothing_written():
    return not NotificationIntent.objects.exists() and not Delivery.objects.exists() and not OutboxRow.objects.exists()


GOOD = {"user_id": 1, "template": "password_reset", "data": {"code": "1234"}}


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"template": "password_reset"}, "user_id", 422),
        ({"user_id": 1}, "template", 422),
        ({**GOOD, "user_id": "one"}, "user_id", 422),
        ({**GOOD, "user_id": True}, "user_id", 422),
        ({**GOOD, "channels": ["fax"]}, "channels[0]", 422),
        ({**GOOD, "channels": []}, "channels", 422),
        ({**GOOD, "priority": "urgent"}, "priority", 422),
        ({**GOOD, "data": {"nested": {"no": 1}}}, "data.nested", 422),
        ({**GOOD, "data": {"blob": "x" * 5000}}, "data", 422),
        ({**GOOD, "colour": "red"}, "colour", 422),
        ({**GOOD, "user_id": 999}, "user_id", 422),
        ({**GOOD, "template": "no_such_template"}, "template", 422),
    ],
)
def test_a_bad_notification_is_refused_naming_the_field_and_nothing_is_written(api, body, field, status):
    response = post(api, "/api/notifications", body)

    assert response.status_code == status
    assert field in response.json()["errors"], response.json()
    assert field in response.json()["error"]
    assert nothing_written()


def test_a_missing_idempotency_key_is_refused(api):
    response = post(api, "/api/notifications", GOOD, key=None)

    assert response.status_code == 422
    assert response.json()["errors"] == {"Idempotency-Key": "Field required"}
    assert nothing_written()


def test_malformed_json_is_a_400(api):
    response = post(api, "/api/notifications", '{"user_id": 1,', raw=True)

    assert response.status_code == 400
    assert "JSON" in response.json()["error"] or "parse" in response.json()["error"]
    assert nothing_written()


def test_an_oversized_body_is_a_413(api):
    huge = {"notifications": [{**GOOD, "idempotency_key": f"k{i}", "data": {"pad": "x" * 3000}} for i in range(1000)]}

    response = post(api, "/api/notifications/batch", huge, key=None)

    assert response.status_code == 413
    assert "too large" in response.json()["error"]
    assert nothing_written()


def test_one_bad_item_rejects_the_whole_batch_naming_its_index(api):
    items = [{**GOOD, "idempotency_key": f"k{i}"} for i in range(5)]
    items[3]["user_id"] = 4242

    response = post(api, "/api/notifications/batch", {"notifications": items}, key=None)

    assert response.status_code == 422
    assert list(response.json()["errors"]) == ["notifications[3].user_id"]
    assert nothing_written()


def test_a_batch_over_a_thousand_is_refused(api):
    items = [{**GOOD, "idempotency_key": f"k{i}"} for i in range(1001)]

    response = post(api, "/api/notifications/batch", {"notifications": items}, key=None)

    assert response.status_code == 422
    assert "notifications" in response.json()["errors"]
    assert nothing_written()


def test_a_batch_writes_every_intent_with_its_outbox_row_in_one_go(api, run):
    items = [{**GOOD, "idempotency_key": f"k{i}", "user_id": i % 50 + 1} for i in range(200)]

    response = post(api, "/api/notifications/batch", {"notifications": items}, key=None)

    assert response.status_code == 202 and response.json()["accepted"] == 200
    assert NotificationIntent.objects.filter(run=run).count() == 200
    assert OutboxRow.objects.filter(run=run, published_at=None).count() == Delivery.objects.filter(run=run).count()


def test_without_a_valid_api_key_nothing_is_reachable(db, run):
    anonymous = Client()
    wrong = Client(HTTP_AUTHORIZATION="Bearer flk_not-a-key")

    assert anonymous.get("/api/runs/current").status_code == 401
    response = wrong.post("/api/notifications", GOOD, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 401 and "API key" in response.json()["error"]
    assert nothing_written()


def test_another_runs_ids_are_not_found(api, run, django_user_model):
    other = create_run(django_user_model.objects.create_user("grace", password="not-used-1234"))
    theirs = Client(HTTP_AUTHORIZATION=f"Bearer {other.api_key}")
    their_intent = post(theirs, "/api/notifications", GOOD).json()["id"]
    their_delivery = Delivery.objects.get(intent_id=their_intent)
    their_letter = DeadLetter.objects.create(run=other, delivery=their_delivery, error_group="provider_unavailable",
                                             error="503", attempts=5)  # fmt: skip

    assert api.get(f"/api/notifications/{their_intent}").status_code == 404
    for action in ("replay", "discard"):
        assert api.post(f"/api/dead-letters/{their_letter.pk}/{action}").status_code == 404
    assert api.get("/api/dead-letters").json()["dead_letters"] == []
    their_letter.refresh_from_db()
    assert their_letter.resolution == DeadLetter.Resolution.OPEN  # untouched by the other learner
    assert api.get("/api/users/51/notification-preferences").status_code == 404
    assert NotificationIntent.objects.filter(run=run).count() == 0


def test_preferences_can_be_read_and_changed_and_bad_values_are_refused(api, run):
    before = api.get("/api/users/2/notification-preferences").json()
    assert set(before["channels"]) == {"email", "sms", "push", "inapp"}

    changed = api.put(
        "/api/users/2/notification-preferences",
        {"channels": {"sms": False}, "quiet_hours": {"start": "21:30", "end": "06:45"}, "timezone": "Asia/Tokyo"},
        content_type="application/json",
    )
    bad_zone = api.put("/api/users/2/notification-preferences", {"timezone": "Mars/Olympus"}, content_type="application/json")

    assert changed.status_code == 200
    assert changed.json()["channels"]["sms"] is False
    assert changed.json()["quiet_hours"] == {"start": "21:30:00", "end": "06:45:00"}
    assert bad_zone.status_code == 422 and "timezone" in bad_zone.json()["errors"]
    assert Recipient.objects.get(run=run, number=2).timezone == "Asia/Tokyo"


def test_posting_a_template_adds_a_version_and_keeps_the_old_one(api, run):
    response = post(api, "/api/templates", {"name": "password_reset", "bodies": {"en": {"subject": "Code", "body": "Use {code}"}}}, key=None)
    broken = post(api, "/api/templates", {"name": "oops", "category": "marketing", "bodies": {"en": {"body": "Hi {name"}}}, key=None)
    no_english = post(api, "/api/templates", {"name": "oops", "category": "marketing", "bodies": {"fr": {"body": "Salut"}}}, key=None)

    assert response.status_code == 201 and response.json()["version"] == 2
    assert list(Template.objects.filter(run=run, name="password_reset").values_list("version", flat=True).order_by("version")) == [1, 2]
    assert broken.status_code == 422 and "bodies.en.body" in broken.json()["errors"]
    assert no_english.status_code == 422 and "bodies.en" in no_english.json()["errors"]


def test_the_current_run_lists_its_users_and_templates(api, run):
    body = api.get("/api/runs/current").json()

    assert body["run"] == run.pk
    assert len(body["users"]) >= 50
    names = {t["name"] for t in body["templates"]}
    assert names == {"security_alert", "password_reset", "order_shipped", "order_confirmed", "order_cancelled", "weekly_digest", "inapp_message"}
    assert all(len(t["locales"]) >= 2 for t in body["templates"])
    assert next(t for t in body["templates"] if t["name"] == "order_shipped")["placeholders"] == ["name", "order_id"]


def test_the_openapi_schema_documents_the_api(db):
    schema = Client().get("/api/openapi.json").json()

    assert schema["info"]["title"] == "Faultline lab API"
    for path in ("/api/notifications", "/api/notifications/batch", "/api/notifications/{intent_id}",
                 "/api/users/{user_id}/notification-preferences", "/api/templates", "/api/runs/current",
                 "/api/runs/current/audit"):  # fmt: skip
        assert path in schema["paths"], path


def test_a_reset_brings_the_run_back_to_its_seed_with_the_same_key(api, run):
    post(api, "/api/notifications", GOOD)
    key = run.api_key

    reset_run(run)

    assert NotificationIntent.objects.filter(run=run).count() == 0
    assert Recipient.objects.filter(run=run).count() == 50
    assert Client(HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/runs/current").status_code == 200


def test_idle_runs_are_deleted_and_active_ones_kept(run, django_user_model, settings):
    from datetime import timedelta

    from django.utils import timezone

    active = create_run(django_user_model.objects.create_user("busy", password="not-used-1234"))
    LabRun.objects.filter(pk=run.pk).update(last_activity_at=timezone.now() - timedelta(minutes=settings.LAB_RUN_IDLE_MINUTES + 1))

    assert delete_idle_runs() == 1
    assert list(LabRun.objects.values_list("pk", flat=True)) == [active.pk]


@pytest.mark.parametrize("how", ["reset", "delete"])
def test_a_run_going_away_takes_every_message_row_with_it(api, run, how):
    # These rows have no database constraint on their run (labs/models.py, Delivery.run): only the
    # ORM's cascade removes them, so nothing else would notice one left behind.
    post(api, "/api/notifications", GOOD)
    delivery = Delivery.objects.get(run=run)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, outcome="failed", started_at=delivery.created_at,
                                   finished_at=delivery.created_at)  # fmt: skip
    {"reset": reset_run, "delete": delete_run}[how](run)

    for model in (NotificationIntent, Delivery, OutboxRow, DeliveryAttempt):
        assert not model.objects.filter(run_id=run.pk).exists(), model.__name__


def test_create_lab_run_prints_one_line_of_json_for_scripts(transactional_db, django_user_model, process_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "create_lab_run", "--username", "instructor-bot"],
        cwd=BASE_DIR, env=process_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    bad = subprocess.run(
        [sys.executable, "manage.py", "create_lab_run", "--username", "no spaces allowed"],
        cwd=BASE_DIR, env=process_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert LabRun.for_api_key(printed["api_key"]).pk == printed["run"]
    assert django_user_model.objects.filter(username="instructor-bot").exists()
    assert bad.returncode != 0 and "is not a valid user name" in bad.stderr


def test_with_redis_down_the_fault_endpoints_answer_json_503(api, run, settings):
    from tests.harness import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    # Reading the faults needs only the database; changing them also resets Redis's call counters and tells the page.
    assert api.get("/api/runs/current/faults").status_code == 200
    for response in (
        api.put("/api/runs/current/faults", {"faults": {"sms-primary": {"down": True}}}, content_type="application/json"),
        api.delete("/api/runs/current/faults"),
    ):
        assert response.status_code == 503, response.content[:300]
        assert "Redis is unreachable" in response.json()["error"]
