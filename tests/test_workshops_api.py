"""The workshop API and `create_workshop`: a script runs a workshop with the workshop's key.

Bad input gets a 4xx naming the field and writes nothing; one workshop's key reaches nothing of
another's. The end-to-end test runs a real Celery worker and relay: a fault injected through
the API stops one learner's messages and not the other's, and the emergency stop lets them go.
"""

import hashlib
import json
import re
import subprocess
import sys
from urllib.parse import urlparse

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from labs.models import Delivery, DeliveryStatus, LabRun, OutboxRow
from labs.pipeline import faults, traffic
from tests.harness import BASE_DIR, wait_for
from tests.workshop_roles import *  # noqa: F403 - the fixtures by role
from tests.workshop_roles import LAB, make_instructor
from workshops import api_keys, joining, notices
from workshops.models import Announcement, Broadcast, EmergencyStop, Workshop, WorkshopKey

CURRENT = "/api/workshops/current"


def api_for(key: str) -> Client:
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def put(client, path: str, body) -> object:
    return client.put(path, json.dumps(body), content_type="application/json")


def post(client, path: str, body=None) -> object:
    return client.post(path, json.dumps(body or {}), content_type="application/json")


def learners_by_name(client) -> dict:
    return {learner["username"]: learner for learner in client.get(CURRENT).json()["learners"]}


# --- End to end, with a real worker and relay ------------------------------------------------------------


def test_a_script_injects_a_fault_into_one_run_stops_it_and_reads_the_debrief(celery_worker, relay, django_user_model):
    teacher = make_instructor(django_user_model, "grace")
    workshop = Workshop.objects.create(owner=teacher, title="Game day", lab=LAB)
    ada, alan = (joining.join(workshop, django_user_model.objects.create_user(name)) for name in ("ada", "alan"))
    api = api_for(api_keys.new_key(workshop, teacher))

    shown = api.get(CURRENT).json()
    assert (shown["workshop"], shown["join_code"], shown["lab"]) == (workshop.pk, workshop.shown_code, LAB)
    learners = {learner["username"]: learner for learner in shown["learners"]}
    assert {name: learner["run"] for name, learner in learners.items()} == {"ada": ada.run_id, "alan": alan.run_id}
    assert learners["ada"]["step"] == 0 and learners["ada"]["audit"]["accepted"] == 0

    injected = put(api, f"{CURRENT}/faults", {"target": "pipeline", "fault": {"relay_paused": True}, "duration_s": 300, "runs": [ada.run_id]})
    assert injected.status_code == 201, injected.content
    assert injected.json()["runs"] == [ada.run_id] and injected.json()["described"] == "pipeline relay paused"
    assert faults.all_faults(ada.run_id) == {"pipeline": {"relay_paused": True}} and faults.all_faults(alan.run_id) == {}
    assert Broadcast.objects.get().started_by == teacher

    for seat in (ada, alan):
        traffic.send_one(LabRun.objects.get(pk=seat.run_id), 1, "password_reset", channels=["email"])
    delivered = Delivery.objects.filter(status=DeliveryStatus.DELIVERED)
    wait_for(lambda: delivered.filter(run_id=alan.run_id).exists(), 30, "Alan's message to be delivered")
    assert not delivered.filter(run_id=ada.run_id).exists()
    assert OutboxRow.objects.filter(run_id=ada.run_id, published_at__isnull=True).exists()  # the relay skips her run
    assert learners_by_name(api)["ada"]["faults"] == {"pipeline": {"relay_paused": True}}

    stopped = post(api, f"{CURRENT}/stop")
    assert stopped.status_code == 200 and stopped.json()["runs_cleared"] == 2
    wait_for(lambda: delivered.filter(run_id=ada.run_id).exists(), 30, "Ada's message to go once the stop lifts the pause")
    assert faults.all_faults(ada.run_id) == {} and EmergencyStop.objects.get().stopped_by == teacher
    assert Broadcast.objects.get().ending == Broadcast.Ending.STOPPED

    announced = post(api, f"{CURRENT}/announcements", {"text": "  Debrief in five minutes  "})
    assert announced.status_code == 201 and notices.current_announcement(workshop).text == "Debrief in five minutes"
    assert api.delete(f"{CURRENT}/faults").status_code == 200 and EmergencyStop.objects.count() == 2

    found = api.get(f"{CURRENT}/debrief").json()
    assert [entry["kind"] for entry in found["timeline"]] == ["fault", "stop", "announcement", "stop"]
    assert found["cohort"]["series"]["delivered"]["total"] == 2
    assert {learner["username"]: learner["totals"]["delivered"] for learner in found["learners"]} == {"ada": 1, "alan": 1}
    assert learners_by_name(api)["ada"]["audit"]["delivered"] == 1


# --- Bad input, keys and isolation (no worker: nothing needs delivering) -------------------------------------


@pytest.fixture
def api(workshop, instructor) -> Client:
    return api_for(api_keys.new_key(workshop, instructor.user))


def nothing_written(*clients) -> bool:
    return not Broadcast.objects.exists() and not Announcement.objects.exists() and not EmergencyStop.objects.exists() \
        and all(faults.all_faults(client.seat.run_id) == {} for client in clients)


GOOD = {"target": "email-primary", "fault": {"down": True}, "duration_s": 120}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "target": "mail-primary"}, "target"),
        ({**GOOD, "fault": {"error_rate": 1.5}}, "fault"),
        ({**GOOD, "fault": {"relay_paused": True}}, "fault"),  # a pipeline fault on a provider
        ({**GOOD, "fault": {}}, "fault"),
        ({**GOOD, "fault": {"down": False}}, "fault"),  # says nothing goes wrong
        ({**GOOD, "duration_s": 0}, "duration_s"),
        ({**GOOD, "duration_s": 4 * 3600 + 1}, "duration_s"),
        ({**GOOD, "duration_s": "60"}, "duration_s"),
        ({"target": "email-primary", "fault": {"down": True}}, "duration_s"),
        ({**GOOD, "runs": []}, "runs"),
        ({**GOOD, "runs": ["one"]}, "runs[0]"),
        ({**GOOD, "colour": "red"}, "colour"),
    ],
)
def test_a_bad_broadcast_is_refused_naming_the_field_and_nothing_is_written(api, learner, classmate, body, field):
    response = put(api, f"{CURRENT}/faults", body)

    assert response.status_code == 422, response.content
    assert field in response.json()["errors"], response.json()
    assert nothing_written(learner, classmate)


def test_a_run_that_is_not_the_workshops_is_refused_by_its_place_in_the_list(api, learner, classmate, stranger):
    response = put(api, f"{CURRENT}/faults", {**GOOD, "runs": [learner.seat.run_id, stranger.seat.run_id, 999999]})

    assert response.status_code == 422
    assert response.json()["errors"] == {"runs[1]": f"run {stranger.seat.run_id} is not the run of a learner in this workshop"}
    assert nothing_written(learner, classmate, stranger)


def test_a_broadcast_with_nobody_to_reach_says_so(workshop, api):
    response = put(api, f"{CURRENT}/faults", GOOD)
    assert response.status_code == 409 and "No learner of this workshop has a run yet" in response.json()["error"]
    assert not Broadcast.objects.exists()


@pytest.mark.parametrize(("body", "field"), [({"text": ""}, "text"), ({"text": "   "}, "text"), ({"text": "x" * 501}, "text"),
                                             ({}, "text"), ({"text": "hi", "pinned": True}, "pinned")])  # fmt: skip
def test_a_bad_announcement_is_refused_naming_the_field(api, learner, body, field):
    response = post(api, f"{CURRENT}/announcements", body)
    assert response.status_code == 422 and field in response.json()["errors"]
    assert nothing_written(learner)


def test_a_workshop_key_opens_its_workshop_only(workshop, other_workshop, instructor, other_instructor, learner, stranger):
    ours = api_for(api_keys.new_key(workshop, instructor.user))
    theirs = api_for(api_keys.new_key(other_workshop, other_instructor.user))

    assert set(learners_by_name(ours)) == {"ada"} and set(learners_by_name(theirs)) == {"barbara"}
    refused = put(ours, f"{CURRENT}/faults", {**GOOD, "runs": [stranger.seat.run_id]})
    assert refused.status_code == 422 and faults.all_faults(stranger.seat.run_id) == {}
    assert post(ours, f"{CURRENT}/stop").json()["runs_cleared"] == 1  # its own learner's run, not Barbara's
    assert EmergencyStop.objects.get().workshop == workshop
    debrief = ours.get(f"{CURRENT}/debrief").json()
    assert [learner["username"] for learner in debrief["learners"]] == ["ada"] and "barbara" not in json.dumps(debrief)


def test_a_missing_wrong_or_replaced_key_is_refused_and_a_run_key_opens_no_workshop(workshop, instructor, learner):
    first = api_keys.new_key(workshop, instructor.user)
    stored = WorkshopKey.objects.get(workshop=workshop)
    assert first.startswith("flw_") and stored.key_hash == hashlib.sha256(first.encode()).hexdigest()  # only its hash is kept
    assert first not in json.dumps(list(WorkshopKey.objects.values()), default=str)

    second = api_keys.new_key(workshop, instructor.user)
    run_key = LabRun.objects.get(pk=learner.seat.run_id).api_key
    for client in (Client(), api_for(first), api_for(run_key), api_for("flw_nope")):
        response = client.get(CURRENT)
        assert response.status_code == 401 and "missing or unknown API key" in response.json()["error"]
        assert put(client, f"{CURRENT}/faults", GOOD).status_code == 401
    assert api_for(second).get(CURRENT).status_code == 200
    assert api_for(second).get("/api/runs/current").status_code == 401  # a workshop key opens no lab run
    assert nothing_written(learner)


def test_the_workshop_api_is_in_the_openapi_schema(api):
    paths = api.get("/api/openapi.json").json()["paths"]
    assert set(paths[CURRENT]) == {"get"}
    assert set(paths[f"{CURRENT}/faults"]) == {"put", "delete"}
    assert {f"{CURRENT}/stop", f"{CURRENT}/announcements", f"{CURRENT}/debrief"} <= set(paths)
    assert "/api/runs/current" in paths  # the lab API is still there beside it


def test_the_grid_makes_a_new_key_and_shows_it_once(workshop, instructor, learner):
    grid = instructor.get(f"/workshops/{workshop.pk}/").content.decode()
    assert "No key yet." in grid

    shown = instructor.post(f"/workshops/{workshop.pk}/api-key", HTTP_HX_REQUEST="true").content.decode()
    key = shown.split('data-testid="workshop-api-key">')[1].split("<")[0]
    assert api_for(key).get(CURRENT).status_code == 200
    again = instructor.get(f"/workshops/{workshop.pk}/").content.decode()
    assert key not in again and "A key made" in again and "by grace" in again


# --- create_workshop ----------------------------------------------------------------------------------


def test_create_workshop_prints_one_line_of_json_whose_key_drives_the_api(transactional_db, process_env, django_user_model):
    result = subprocess.run(
        [sys.executable, "manage.py", "create_workshop", "--instructor", "bot-teacher", "--lab", LAB,
         "--base-url", "https://faultline.example.org/"],
        cwd=BASE_DIR, env=process_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])

    workshop = Workshop.objects.get(pk=printed["workshop"])
    assert (workshop.owner.username, workshop.lab, printed["instructor_created"]) == ("bot-teacher", LAB, True)
    assert workshop.owner.groups.filter(name="instructor").exists() and not workshop.owner.has_usable_password()
    assert printed["join_code"] == workshop.shown_code
    assert printed["join_url"] == f"https://faultline.example.org/workshops/join/{workshop.join_code}/"
    assert workshop.title in Client().get(urlparse(printed["join_url"]).path).content.decode()

    learner = django_user_model.objects.create_user("ada")
    joining.join(workshop, learner)
    api = api_for(printed["api_key"])
    assert [row["username"] for row in api.get(CURRENT).json()["learners"]] == ["ada"]
    assert put(api, f"{CURRENT}/faults", GOOD).status_code == 201
    assert faults.all_faults(learner.workshop_seats.get().run_id) == {"email-primary": {"down": True}}
    faults.clear_faults(learner.workshop_seats.get().run_id)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--instructor", "no spaces allowed", "--lab", LAB], "--instructor 'no spaces allowed' is not a valid user name"),
        (["--instructor", "grace", "--lab", "no-such-lab"], "--lab 'no-such-lab' is not a lab"),
        (["--instructor", "grace", "--lab", LAB, "--capacity", "0"], "--capacity must be between 1 and 500"),
        (["--instructor", "grace", "--lab", LAB, "--base-url", "faultline.example.org"], "--base-url 'faultline.example.org' is not an http(s) URL"),
    ],
)
def test_create_workshop_names_a_bad_option_and_writes_nothing(db, django_user_model, args, complaint):
    with pytest.raises(CommandError, match=re.escape(complaint)):
        call_command("create_workshop", *args)
    assert not Workshop.objects.exists() and not django_user_model.objects.exists()
