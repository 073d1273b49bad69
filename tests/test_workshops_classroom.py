"""The instructor's other duties through Django's test client: dropping in on a learner's run (read-only, and
the learner is told), resetting it, co-instructors, the roster, and ending a workshop (its runs freeze, then
go, and the learners' experiment cards stay).

No worker or relay runs here: these tests look at what the views write and show; the relay's cleanup
is called as its tick calls it.
"""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labs import runs
from labs.catalogue import CATALOGUE
from labs.models import Experiment, LabRun, RunLab
from labs.pipeline import events, faults, traffic
from tests.workshop_roles import *  # noqa: F403 - the fixtures by role
from tests.workshop_roles import LAB, make_instructor, signed_in
from workshops import lifecycle, roster
from workshops.models import RosterEntry, Seat, Workshop

pytestmark = pytest.mark.django_db


def htmx(client, url: str, data: dict | None = None, **extra):
    return client.post(url, data or {}, HTTP_HX_REQUEST="true", **extra)


def bar(client) -> str:
    return client.get(reverse("workshops:classroom", args=[client.seat.pk])).content.decode()


def event_texts(run_id: int) -> list[str]:
    return [event.get("text", "") for event in events.recent(run_id)]


# --- Dropping in ----------------------------------------------------------------------------------


def test_the_instructor_sees_a_learners_page_without_its_buttons_and_the_learner_sees_them_looking(workshop, instructor, learner):
    run = learner.seat.run
    learner.post(reverse("labs:prediction", args=[run.pk, 1]), {"prediction": "the outbox keeps every message"})
    traffic.send_one(run, 3, "password_reset")
    assert "looking at your run" not in bar(learner)

    grid = instructor.get(reverse("workshops:grid", args=[workshop.pk])).content.decode()
    drop_in = reverse("workshops:drop_in", args=[workshop.pk, learner.seat.pk])
    assert drop_in in grid
    page = instructor.get(drop_in).content.decode()

    assert "You are looking at ada's run" in page and "the outbox keeps every message" in page  # what the learner wrote
    assert f'data-panels-url="{reverse("labs:panels", args=[run.pk])}"' in page  # it stays live
    for control in ("Save my prediction", "Send the campaign", "Make a new key", run.api_key, "Delete the run", "I need help"):
        assert control not in page, control
    assert "looking at your run right now" in bar(learner)
    assert "Your instructor is looking at your run" in event_texts(run.pk)


def test_the_instructor_resets_a_learners_run_and_the_learner_is_told(workshop, instructor, learner):
    run = learner.seat.run
    traffic.send_one(run, 3, "password_reset")
    faults.set_fault(run.pk, "email-primary", down=True)

    response = instructor.post(reverse("workshops:reset_seat", args=[workshop.pk, learner.seat.pk]))

    assert response.status_code == 302
    assert not run.intents.exists() and faults.all_faults(run.pk) == {}
    assert Seat.objects.get(pk=learner.seat.pk).run_id == run.pk
    assert any("Your instructor reset your run" in text for text in event_texts(run.pk))


def test_an_instructor_never_reads_a_learners_runs_outside_the_workshop(workshop, instructor, learner):
    other_lab = next(slug for slug in CATALOGUE if slug != LAB)
    personal = runs.start_lab_run(learner.user, CATALOGUE[other_lab]).run
    assert learner.get(reverse("labs:panels", args=[personal.pk])).status_code == 200
    assert instructor.get(reverse("labs:panels", args=[personal.pk])).status_code == 404
    assert instructor.get(reverse("labs:stream", args=[personal.pk])).status_code == 404


# --- Co-instructors -------------------------------------------------------------------------------


def test_a_co_instructor_drives_the_grid_but_only_the_owner_adds_instructors_or_ends_it(workshop, instructor, learner, django_user_model):
    assistant = signed_in(make_instructor(django_user_model, "katherine"))
    grid = reverse("workshops:grid", args=[workshop.pk])
    assert assistant.get(grid).status_code == 404

    response = htmx(instructor, reverse("workshops:co_instructors", args=[workshop.pk]), {"username": "Katherine"})
    assert "katherine now teaches this workshop with you" in response.content.decode()
    assert list(workshop.co_instructors.all()) == [assistant.user]

    assert assistant.get(grid).status_code == 200
    assert workshop.title in assistant.get(reverse("workshops:index")).content.decode()
    assert assistant.get(reverse("workshops:drop_in", args=[workshop.pk, learner.seat.pk])).status_code == 200
    assert htmx(assistant, reverse("workshops:stop", args=[workshop.pk])).status_code == 200
    assert htmx(assistant, reverse("workshops:co_instructors", args=[workshop.pk]), {"username": "hopper"}).status_code == 404
    assert htmx(assistant, reverse("workshops:end", args=[workshop.pk]), {"confirm": workshop.shown_code}).status_code == 404
    assert Workshop.objects.get(pk=workshop.pk).ended_at is None

    htmx(instructor, reverse("workshops:co_instructors", args=[workshop.pk]), {"remove": str(assistant.user.pk)})
    assert assistant.get(grid).status_code == 404


def test_a_co_instructor_must_have_an_account_and_must_not_be_a_learner_of_it(workshop, instructor, learner):
    url = reverse("workshops:co_instructors", args=[workshop.pk])
    unknown = htmx(instructor, url, {"username": "nobody-here"}).content.decode()
    seated = htmx(instructor, url, {"username": "ada"}).content.decode()
    assert "No account has the username “nobody-here”" in unknown
    assert "ada is a learner in this workshop" in seated
    assert not workshop.co_instructors.exists()


# --- The roster -----------------------------------------------------------------------------------


def test_a_roster_puts_real_names_on_tiles_and_lists_who_has_not_joined(workshop, instructor, learner, classmate):
    learner.user.email = "Ada@Example.org"
    learner.user.save()
    upload = SimpleUploadedFile("cohort.csv", "name,email\nAda Lovelace,ada@example.org\nAlan Turing,alan\nEdsger Dijkstra,edsger@example.org\n".encode())

    response = instructor.post(reverse("workshops:roster", args=[workshop.pk]), {"file": upload}, HTTP_HX_REQUEST="true")

    assert "Roster saved: 3 people." in response.content.decode()
    grid = instructor.get(reverse("workshops:grid", args=[workshop.pk])).content.decode()
    assert "Ada Lovelace <span" in grid and "Alan Turing <span" in grid
    assert "Not joined yet: <span data-testid=\"not-joined\">Edsger Dijkstra</span>" in grid


@pytest.mark.parametrize("text, problem", [
    ("Ada Lovelace\n", "Line 1: write a name and an e-mail or username"),
    ("Ada,ada@example.org\nAlan,not-an@address@x\n", "Line 2: “not-an@address@x” is not an e-mail address."),
    ("Ada,ada@example.org\nAda again,ADA@example.org\n", "Line 2: ADA@example.org is on the roster twice."),
    ("\n".join(f"P{n},p{n}" for n in range(501)), "A roster holds at most 500 people; this one has 501."),
])  # fmt: skip
def test_a_bad_roster_line_is_named_and_the_saved_roster_stays(workshop, instructor, text, problem):
    roster.replace(workshop, roster.parse("Grace Hopper,grace@example.org"))
    response = htmx(instructor, reverse("workshops:roster", args=[workshop.pk]), {"text": text})
    assert problem in response.content.decode()
    assert list(RosterEntry.objects.values_list("name", flat=True)) == ["Grace Hopper"]


def test_a_roster_file_that_is_not_utf8_is_refused_with_a_hint(workshop, instructor):
    upload = SimpleUploadedFile("cohort.csv", "Zoë,zoe@example.org".encode("utf-16"))
    response = instructor.post(reverse("workshops:roster", args=[workshop.pk]), {"file": upload}, HTTP_HX_REQUEST="true")
    assert "save the spreadsheet as “CSV UTF-8”" in response.content.decode() and not RosterEntry.objects.exists()


# --- Ending a workshop ----------------------------------------------------------------------------


def test_ending_needs_the_code_typed_and_then_freezes_every_run(workshop, instructor, learner, classmate):
    run = learner.seat.run
    faults.set_fault(run.pk, "email-primary", down=True)
    end = reverse("workshops:end", args=[workshop.pk])

    refused = htmx(instructor, end, {"confirm": "nope"}).content.decode()
    assert f"type its code {workshop.shown_code}" in refused and Workshop.objects.get(pk=workshop.pk).ended_at is None

    done = htmx(instructor, end, {"confirm": workshop.shown_code}).content.decode()
    ended = Workshop.objects.get(pk=workshop.pk)
    assert "Workshop ended" in done and ended.ended_at is not None and not ended.joining_open
    assert faults.all_faults(run.pk) == {}  # the emergency stop came with it
    assert any("this run is read-only now" in text for text in event_texts(run.pk))

    # The learner's page is read-only and says why; changing the run is refused with the reason, by page and by API.
    page = learner.get(reverse("labs:lab", args=[LAB])).content.decode()
    assert "This workshop ended" in page and "Send the campaign" not in page and "Save my prediction" not in page
    refused = learner.post(reverse("labs:send", args=[run.pk]), {"user_id": "3", "template": "password_reset"})
    assert refused.status_code == 403 and "its workshop has ended" in refused.content.decode()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {run.api_key}")
    answer = api.post("/api/notifications", {"user_id": 3, "template": "password_reset", "data": {"code": "1"}},
                      content_type="application/json", HTTP_IDEMPOTENCY_KEY="after-the-end")  # fmt: skip
    assert answer.status_code == 409 and "its workshop has ended" in answer.json()["error"]
    assert api.get("/api/runs/current").status_code == 200
    assert not run.intents.exists()

    # No fault or scenario goes into an ended workshop's runs.
    refused = htmx(instructor, reverse("workshops:broadcast", args=[workshop.pk]),
                   {"target": "email-primary", "provider-down": "on", "duration_s": "60", "to": "everyone"}).content.decode()  # fmt: skip
    assert "This workshop has ended" in refused and faults.all_faults(run.pk) == {}

    # The instructor still reads everything, and nobody new joins.
    assert instructor.get(reverse("workshops:drop_in", args=[workshop.pk, learner.seat.pk])).status_code == 200
    assert "has ended" in Client().get(reverse("workshops:join_code", args=[workshop.join_code])).content.decode()


def test_an_ended_workshops_runs_are_deleted_after_the_keep_days_and_the_cards_stay(workshop, instructor, learner, settings):
    run = learner.seat.run
    learner.post(reverse("labs:prediction", args=[run.pk, 1]), {"prediction": "kept for me"})
    lifecycle.end(workshop, instructor.user)

    assert lifecycle.delete_expired_runs() == 0
    later = timezone.now() + timedelta(days=settings.WORKSHOP_KEEP_DAYS, minutes=1)
    assert lifecycle.delete_expired_runs(now=later) == 1

    assert not LabRun.objects.filter(pk=run.pk).exists() and not RunLab.objects.filter(owner=learner.user).exists()
    assert Seat.objects.get(pk=learner.seat.pk).run_id is None
    assert Experiment.objects.filter(owner=learner.user, prediction="kept for me").exists()
    assert "kept for me" in learner.get(reverse("labs:history")).content.decode()


def test_a_seated_run_is_not_deleted_as_idle_while_its_workshop_runs(workshop, learner, settings):
    run = learner.seat.run
    LabRun.objects.filter(pk=run.pk).update(last_activity_at=timezone.now() - timedelta(minutes=settings.LAB_RUN_IDLE_MINUTES + 1))
    assert runs.delete_idle_runs() == 0 and LabRun.objects.filter(pk=run.pk).exists()


def test_a_learner_deletes_a_frozen_run_to_start_one_of_their_own(workshop, instructor, learner):
    run = learner.seat.run
    lifecycle.end(workshop, instructor.user)
    assert learner.post(reverse("labs:end", args=[run.pk])).status_code == 302
    assert not LabRun.objects.filter(pk=run.pk).exists()
    assert learner.post(reverse("labs:start", args=[LAB])).status_code == 302
    assert RunLab.objects.filter(owner=learner.user, lab=LAB).exists()
