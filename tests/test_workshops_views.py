"""Workshops through Django's test client: creating one, joining by code or link, bad codes, closed and
full workshops, broadcast faults, the emergency stop, announcements and raised hands.

No worker or relay runs here: these tests look at what the views write and show. The relay
ending a broadcast by itself is in test_workshops_broadcasts.py; the whole classroom in real
Chromium in test_workshops_browser.py.
"""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from labs import runs, steps
from labs.catalogue import CATALOGUE
from labs.models import Experiment, LabRun, RunLab
from labs.pipeline import events, faults
from tests.workshop_roles import *  # noqa: F403 - the fixtures by role
from tests.workshop_roles import LAB, PASSWORD, seat_learner, signed_in
from workshops import broadcasts, codes, joining
from workshops.models import Announcement, Broadcast, EmergencyStop, Seat, Workshop

pytestmark = pytest.mark.django_db


def htmx(client, url: str, data: dict | None = None):
    return client.post(url, data or {}, HTTP_HX_REQUEST="true")


def join_url(workshop: Workshop, code: str | None = None) -> str:
    return reverse("workshops:join_code", args=[code or workshop.join_code])


def bar(client) -> str:
    """The learner's classroom bar, as their lab page shows it."""
    return client.get(reverse("workshops:classroom", args=[client.seat.pk])).content.decode()


# --- Creating a workshop --------------------------------------------------------------------------


def test_only_the_instructor_group_creates_workshops(instructor, django_user_model):
    learner = signed_in(django_user_model.objects.create_user("ada"))
    form = {"title": "Game day", "lab": LAB, "capacity": "30", "stuck_after_minutes": "5",
            "starts_at": "2030-05-04T09:00", "ends_at": "2030-05-04T11:00"}  # fmt: skip

    assert learner.get(reverse("workshops:create")).status_code == 403
    assert learner.post(reverse("workshops:create"), form).status_code == 403
    assert not Workshop.objects.exists()

    response = instructor.post(reverse("workshops:create"), form)
    workshop = Workshop.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("workshops:grid", args=[workshop.pk])
    assert (workshop.owner, workshop.lab, workshop.capacity, workshop.joining_open) == (instructor.user, LAB, 30, True)
    assert workshop.starts_at.hour == 9 and codes.is_well_formed(workshop.join_code)
    grid = instructor.get(response["Location"]).content.decode()
    assert workshop.shown_code in grid and f"http://testserver{join_url(workshop)}" in grid
    assert "<svg" in grid and "QR code of the join link" in grid  # drawn on the server, nothing fetched


def test_a_workshop_form_names_what_is_wrong(instructor):
    page = instructor.post(reverse("workshops:create"), {"title": "", "lab": "no-such-lab", "capacity": "0",
                                                         "stuck_after_minutes": "5", "starts_at": "2030-05-04T11:00",
                                                         "ends_at": "2030-05-04T09:00"}).content.decode()  # fmt: skip
    assert "This field is required." in page
    assert "Select a valid choice. no-such-lab is not one of the available choices." in page
    assert "Ensure this value is greater than or equal to 1." in page
    assert "The workshop must end after it starts." in page
    assert not Workshop.objects.exists()


def test_a_join_code_has_no_look_alike_characters_and_is_typed_loosely():
    made = "".join(codes.new_code() for _ in range(300))
    assert not set(made) & set("0O1IL") and set(made) <= set(codes.ALPHABET)
    assert codes.normalise(" k7m-p2q ") == "K7MP2Q" and codes.shown("K7MP2Q") == "K7M-P2Q"
    assert not codes.is_well_formed("K7MP20")  # a zero is never part of a code


# --- Joining ----------------------------------------------------------------------------------------


def test_a_typed_code_leads_to_the_workshops_join_page(workshop, django_user_model):
    client = signed_in(django_user_model.objects.create_user("ada"))
    typed = codes.shown(workshop.join_code).lower()

    response = client.post(reverse("workshops:join"), {"code": typed})
    assert response.status_code == 302 and response["Location"] == join_url(workshop)
    page = client.get(response["Location"]).content.decode()
    assert workshop.title in page and CATALOGUE[LAB].title in page and "grace" in page
    assert f"Join as ada" in page


def test_a_signed_in_learner_joins_and_lands_in_a_run_of_their_own_for_the_lab(workshop, django_user_model):
    client = signed_in(django_user_model.objects.create_user("ada"))

    response = client.post(join_url(workshop), {"action": "join"})

    assert response.status_code == 302 and response["Location"] == reverse("labs:lab", args=[LAB])
    seat = Seat.objects.get(workshop=workshop, learner=client.user)
    assert RunLab.objects.get(owner=client.user, lab=LAB).run == seat.run
    page = client.get(response["Location"]).content.decode()
    assert 'data-testid="classroom-bar"' in page and workshop.title in page and "I need help" in page
    assert reverse("workshops:classroom", args=[seat.pk]) in page
    client.post(join_url(workshop), {"action": "join"})  # again: the same seat and run
    assert Seat.objects.filter(learner=client.user).count() == 1 and LabRun.objects.filter(owner=client.user).count() == 1


def test_a_visitor_creates_an_account_on_the_join_page_and_lands_in_the_lab(workshop, anonymous, django_user_model):
    page = anonymous.get(join_url(workshop)).content.decode()
    assert "I have an account" in page and "I am new here" in page

    response = anonymous.post(join_url(workshop), {"action": "signup", "new-username": "linus",
                                                   "new-password1": PASSWORD, "new-password2": PASSWORD})  # fmt: skip

    assert response.status_code == 302 and response["Location"] == reverse("labs:lab", args=[LAB])
    user = django_user_model.objects.get(username="linus")
    assert Seat.objects.get(workshop=workshop).learner == user
    assert 'data-testid="signed-in-as">linus' in anonymous.get(response["Location"]).content.decode()


def test_a_visitor_signs_in_on_the_join_page_and_a_wrong_password_writes_nothing(workshop, anonymous, django_user_model):
    django_user_model.objects.create_user("ada", password=PASSWORD)

    wrong = anonymous.post(join_url(workshop), {"action": "login", "username": "ada", "password": "nope"})
    assert wrong.status_code == 200 and "Please enter a correct username and password" in wrong.content.decode()
    assert not Seat.objects.exists() and "_auth_user_id" not in anonymous.session

    response = anonymous.post(join_url(workshop), {"action": "login", "username": "ada", "password": PASSWORD})
    assert response["Location"] == reverse("labs:lab", args=[LAB])
    assert Seat.objects.get().learner.username == "ada" and Seat.objects.get().run is not None


def test_an_unknown_code_says_so_and_writes_nothing(workshop, anonymous, django_user_model):
    typed = anonymous.post(reverse("workshops:join"), {"code": "abc-def"})
    assert typed.status_code == 404 and "No workshop has the code abc-def" in typed.content.decode()
    assert "This field is required." in anonymous.post(reverse("workshops:join"), {"code": ""}).content.decode()

    link = anonymous.get(join_url(workshop, "ZZZZZZ"))
    assert link.status_code == 404 and "No workshop has the code ZZZZZZ" in link.content.decode()
    signup = anonymous.post(join_url(workshop, "ZZZZZZ"), {"action": "signup", "new-username": "eve",
                                                           "new-password1": PASSWORD, "new-password2": PASSWORD})  # fmt: skip
    assert signup.status_code == 404
    assert not django_user_model.objects.filter(username="eve").exists() and not Seat.objects.exists()
    assert not LabRun.objects.exists()


def test_a_closed_workshop_turns_new_learners_away_and_writes_nothing(workshop, instructor, learner, anonymous, django_user_model):
    htmx(instructor, reverse("workshops:joining", args=[workshop.pk]), {"open": "0"})
    newcomer = signed_in(django_user_model.objects.create_user("alan"))

    refused = newcomer.post(join_url(workshop), {"action": "join"})
    assert refused.status_code == 409 and "is closed. Ask your instructor to reopen it." in refused.content.decode()
    signup = anonymous.post(join_url(workshop), {"action": "signup", "new-username": "eve",
                                                 "new-password1": PASSWORD, "new-password2": PASSWORD})  # fmt: skip
    assert "is closed" in signup.content.decode() and not django_user_model.objects.filter(username="eve").exists()
    assert not Seat.objects.filter(learner=newcomer.user).exists() and not LabRun.objects.filter(owner=newcomer.user).exists()
    assert learner.post(join_url(workshop), {"action": "join"}).status_code == 302  # a seated learner still gets in

    htmx(instructor, reverse("workshops:joining", args=[workshop.pk]), {"open": "1"})
    assert newcomer.post(join_url(workshop), {"action": "join"}).status_code == 302
    assert Seat.objects.filter(learner=newcomer.user).exists()


def test_a_full_workshop_turns_the_next_learner_away(workshop, learner, django_user_model):
    Workshop.objects.filter(pk=workshop.pk).update(capacity=1)
    late = signed_in(django_user_model.objects.create_user("alan"))

    page = late.get(join_url(workshop)).content.decode()
    assert "is full: all 1 seats are taken" in page and "Join as" not in page
    refused = late.post(join_url(workshop), {"action": "join"})
    assert refused.status_code == 409 and "is full" in refused.content.decode()
    with pytest.raises(joining.JoinRefused, match="is full"):
        joining.join(workshop, late.user)
    assert Seat.objects.filter(workshop=workshop).count() == 1 and not LabRun.objects.filter(owner=late.user).exists()


def test_a_new_code_retires_the_old_one_and_keeps_everyone_seated(workshop, instructor, learner):
    old = workshop.join_code
    response = htmx(instructor, reverse("workshops:rotate_code", args=[workshop.pk]))
    workshop.refresh_from_db()

    assert workshop.join_code != old and codes.is_well_formed(workshop.join_code)
    assert f"no longer works" in response.content.decode() and workshop.shown_code in response.content.decode()
    assert learner.get(join_url(workshop, old)).status_code == 404
    assert Seat.objects.filter(workshop=workshop, learner=learner.user).exists()


def test_joining_with_a_run_of_the_lab_starts_it_again_and_hides_what_came_before(workshop, instructor, django_user_model):
    client = signed_in(django_user_model.objects.create_user("ada"))
    client.post(reverse("labs:start", args=[LAB]))
    run_lab = RunLab.objects.get(owner=client.user)
    steps.save_prediction(run_lab, CATALOGUE[LAB].step(1), "before the workshop")
    faults.set_fault(run_lab.run_id, "sms-primary", down=True)
    assert "starts it again from its seed" in client.get(join_url(workshop)).content.decode()

    client.post(join_url(workshop), {"action": "join"})

    seat = Seat.objects.get(learner=client.user)
    assert seat.run_id == run_lab.run_id and faults.all_faults(seat.run_id) == {}
    assert Experiment.objects.filter(owner=client.user).count() == 1  # the learner's history is kept ...
    tile = instructor.get(reverse("workshops:grid", args=[workshop.pk])).content.decode()
    assert re.search(r'data-testid="tile-predictions">0<', tile)  # ... and the instructor does not see it


def test_joining_another_workshop_of_the_same_lab_takes_the_run_there(workshop, other_workshop, learner, other_instructor):
    run_id = learner.seat.run_id
    learner.post(join_url(other_workshop), {"action": "join"})

    assert Seat.objects.get(workshop=other_workshop, learner=learner.user).run_id == run_id
    assert Seat.objects.get(workshop=workshop, learner=learner.user).run_id is None
    assert "No run: the learner deleted it" in signed_in(workshop.owner).get(reverse("workshops:grid", args=[workshop.pk])).content.decode()


def test_the_instructor_does_not_take_a_seat_in_their_own_workshop(workshop, instructor):
    response = instructor.post(join_url(workshop), {"action": "join"})
    assert "You teach this workshop" in response.content.decode() and not Seat.objects.exists()


def test_a_learner_who_deleted_their_run_gets_a_new_one_by_joining_again(workshop, learner):
    runs.delete_run(learner.seat.run)
    learner.post(join_url(workshop), {"action": "join"})
    assert Seat.objects.get(pk=learner.seat.pk).run is not None


# --- Broadcast faults --------------------------------------------------------------------------------


def broadcast(client, workshop, **fields):
    data = {"target": "email-primary", "provider-down": "on", "duration_s": "90", "to": "everyone", **fields}
    return htmx(client, reverse("workshops:broadcast", args=[workshop.pk]), data)


def test_a_broadcast_puts_the_fault_into_every_run_and_each_learner_page_says_so(workshop, instructor, learner, classmate):
    response = broadcast(instructor, workshop)

    assert "Injected email-primary down into 2 runs for 1 min 30 s." in response.content.decode()
    assert "cohort:changed" in response["HX-Trigger"]
    for client in (learner, classmate):
        assert faults.all_faults(client.seat.run_id) == {"email-primary": {"down": True}}
        shown = bar(client)
        assert re.search(r"Injected by your instructor: email-primary down — <span data-countdown-to=\"\d+\">1:(30|29)</span> left", shown)
        assert any(e["kind"] == "classroom" and "email-primary down" in e["text"] for e in events.recent(client.seat.run_id))
    made = Broadcast.objects.get()
    assert (made.started_by, made.target, made.fault, made.runs.count()) == (instructor.user, "email-primary", {"down": True}, 2)
    assert 85 <= (made.ends_at - made.started_at).total_seconds() <= 90


def test_a_broadcast_to_ticked_tiles_reaches_only_them(workshop, instructor, learner, classmate):
    broadcast(instructor, workshop, **{"target": "pipeline", "provider-down": "", "pipeline-relay_paused": "on",
                                       "to": "selected", "seat": [learner.seat.pk]})  # fmt: skip

    assert faults.all_faults(learner.seat.run_id) == {"pipeline": {"relay_paused": True}}
    assert faults.all_faults(classmate.seat.run_id) == {}
    assert learner.seat.run_id in faults.paused_runs()
    assert "Injected by your instructor: pipeline relay paused" in bar(learner)
    assert "Injected by your instructor" not in bar(classmate)


def test_a_broadcast_is_checked_like_the_lab_fault_form_and_a_refused_one_changes_nothing(workshop, other_workshop, instructor, learner, stranger):
    out_of_range = broadcast(instructor, workshop, **{"provider-down": "", "provider-error_rate": "1.5"}).content.decode()
    assert "error rate (0–1): Ensure this value is less than or equal to 1." in out_of_range
    nothing = broadcast(instructor, workshop, **{"provider-down": ""}).content.decode()
    assert "Choose what goes wrong with email-primary" in nothing
    assert "Ensure this value is greater than or equal to 5." in broadcast(instructor, workshop, duration_s="0").content.decode()
    assert "Select a valid choice" in broadcast(instructor, workshop, to="selected", seat=[stranger.seat.pk]).content.decode()
    assert "Tick the tiles" in broadcast(instructor, workshop, to="selected").content.decode()
    assert "Select a valid choice" in broadcast(instructor, workshop, target="mail-primary").content.decode()

    assert not Broadcast.objects.exists()
    assert faults.all_faults(learner.seat.run_id) == {} and faults.all_faults(stranger.seat.run_id) == {}


def test_a_broadcast_ends_by_itself_and_leaves_what_the_learner_changed_since(workshop, instructor, learner, classmate):
    broadcast(instructor, workshop, duration_s="60")
    faults.set_fault(classmate.seat.run_id, "email-primary", error_rate=0.3)  # the learner changed it since
    faults.set_fault(classmate.seat.run_id, "sms-primary", down=True)  # and set a fault of their own

    assert broadcasts.end_due(timezone.now() + timedelta(seconds=59)) == 0
    assert broadcasts.end_due(timezone.now() + timedelta(seconds=61)) == 1
    assert broadcasts.end_due(timezone.now() + timedelta(seconds=61)) == 0  # claimed once

    assert faults.all_faults(learner.seat.run_id) == {}
    assert faults.all_faults(classmate.seat.run_id) == {"email-primary": {"error_rate": 0.3}, "sms-primary": {"down": True}}
    assert Broadcast.objects.get().ending == Broadcast.Ending.EXPIRED
    assert "Injected by your instructor" not in bar(learner)


def test_an_ending_broadcast_leaves_a_newer_one_on_the_same_target(workshop, instructor, learner):
    broadcast(instructor, workshop, duration_s="30")
    broadcast(instructor, workshop, duration_s="300")

    assert broadcasts.end_due(timezone.now() + timedelta(seconds=31)) == 1
    assert faults.all_faults(learner.seat.run_id) == {"email-primary": {"down": True}}
    assert bar(learner).count("Injected by your instructor: email-primary down") == 1


def test_the_instructor_ends_a_broadcast_early(workshop, instructor, learner):
    broadcast(instructor, workshop)
    made = Broadcast.objects.get()
    response = htmx(instructor, reverse("workshops:end_broadcast", args=[workshop.pk, made.pk]))

    assert "Ended email-primary down." in response.content.decode()
    assert faults.all_faults(learner.seat.run_id) == {}
    assert Broadcast.objects.get().ending == Broadcast.Ending.ENDED


# --- Emergency stop, announcements, hands -------------------------------------------------------------


def test_the_emergency_stop_clears_every_fault_of_every_run_and_everyone_sees_who_and_when(workshop, instructor, learner, classmate):
    broadcast(instructor, workshop)
    faults.set_fault(classmate.seat.run_id, "pipeline", relay_paused=True)  # a learner's own fault goes too

    response = htmx(instructor, reverse("workshops:stop", args=[workshop.pk]))

    assert "Emergency stop: every fault cleared in 2 runs" in response.content.decode()
    for client in (learner, classmate):
        assert faults.all_faults(client.seat.run_id) == {}
        shown = bar(client)
        assert "Your instructor stopped every fault at" in shown and "Injected by your instructor" not in shown
    assert classmate.seat.run_id not in faults.paused_runs()
    stop = EmergencyStop.objects.get()
    assert stop.stopped_by == instructor.user and stop.runs_cleared == 2 and stop.took_ms < 1000
    assert Broadcast.objects.get().ending == Broadcast.Ending.STOPPED
    assert "Stopped by grace at" in instructor.get(reverse("workshops:grid", args=[workshop.pk])).content.decode()


def test_an_announcement_shows_on_every_learner_page_until_taken_down(workshop, instructor, learner, classmate):
    url = reverse("workshops:announce", args=[workshop.pk])
    assert "This field is required." in htmx(instructor, url, {"text": ""}).content.decode()
    htmx(instructor, url, {"text": "Break until 14:30 — then step 3."})

    for client in (learner, classmate):
        assert "📣 Break until 14:30 — then step 3." in bar(client)
        assert "Break until 14:30" in client.get(reverse("labs:lab", args=[LAB])).content.decode()
    htmx(instructor, url, {"take_down": "1"})
    assert "Break until" not in bar(learner)
    assert Announcement.objects.get().taken_down_at is not None


def test_a_raised_hand_shows_on_the_grid_until_the_instructor_lowers_it(workshop, instructor, learner, classmate):
    raised = htmx(learner, reverse("workshops:hand", args=[learner.seat.pk]), {"raise": "1"}).content.decode()
    assert "Your hand is up" in raised

    grid = instructor.get(reverse("workshops:grid", args=[workshop.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert grid.count('data-testid="hand"') == 1 and re.search(r'data-testid="hands-count">1<', grid)
    assert 'data-learner="ada"' in grid.split('data-testid="hand"')[0].rsplit("<li", 1)[1]

    htmx(instructor, reverse("workshops:lower_hand", args=[workshop.pk, learner.seat.pk]))
    assert Seat.objects.get(pk=learner.seat.pk).hand_raised_at is None
    assert "I need help" in bar(learner)


def test_a_learner_sees_while_their_instructor_has_the_grid_open(workshop, instructor, learner):
    assert 'data-testid="watched"' not in bar(learner)
    instructor.get(reverse("workshops:grid", args=[workshop.pk]), HTTP_HX_REQUEST="true")  # the grid's poll
    assert 'data-testid="watched"' in bar(learner) and "(open now)" in bar(learner)


@pytest.mark.parametrize("live_url, lane", [(None, "/workshops/"), ("/", "/live/workshops/")])
def test_the_grid_posts_its_stop_and_broadcasts_and_polls_through_the_live_process_only_when_it_shares_the_origin(
        instructor, workshop, django_user_model, settings, live_url, lane):
    """Behind a proxy (LAB_LIVE_URL "/") the stop and the broadcasts take the live process's lane; in
    `make run`'s layout the live process is another origin, so the page server takes them. Either way works."""
    settings.LAB_LIVE_URL = live_url
    learner = seat_learner(django_user_model, workshop, "ada")
    page = instructor.get(reverse("workshops:grid", args=[workshop.pk])).content.decode()
    stop_url = f"{lane}{workshop.pk}/stop"
    assert f'hx-post="{stop_url}"' in page and f'hx-post="{lane}{workshop.pk}/broadcasts"' in page
    assert f'hx-get="{lane}{workshop.pk}/cohort?sort=name&amp;show=all"' in page  # the grid's poll of its tiles
    tiles = instructor.get(f"{lane}{workshop.pk}/cohort", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-learner="ada"' in tiles and f'hx-get="{lane}{workshop.pk}/cohort' in tiles
    faults.set_fault(learner.seat.run_id, "email-primary", down=True)

    answer = htmx(instructor, stop_url)

    assert answer.status_code == 200 and "every fault cleared in 1 run in" in answer.content.decode()
    assert faults.all_faults(learner.seat.run_id) == {}
    assert htmx(signed_in(django_user_model.objects.create_user("mallory", password=PASSWORD)), stop_url).status_code == 404
    # The learner's classroom bar asks for itself through the same lane, from the lab page and from itself.
    bar_url = f"{lane}seats/{learner.seat.pk}/" + ("bar" if live_url else "")
    lab_page = learner.get(reverse("labs:lab", args=[workshop.lab])).content.decode()
    redrawn = learner.get(bar_url, HTTP_HX_REQUEST="true").content.decode()
    assert f'hx-get="{bar_url}"' in lab_page and f'hx-get="{bar_url}"' in redrawn and "stopped every fault" in redrawn
