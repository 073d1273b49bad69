"""Who sees what: every workshop URL, and every URL of a learner's run, tried by six people.

The learner (seated in the workshop), another learner of the same workshop, a learner of
another workshop, the workshop's instructor, another instructor, and a visitor. Each gets
what the rules in workshops/views.py say, and a refusal is a 404 (403 for the instructor-only
create page) that names nothing: not the workshop, not its code, not a learner. Nothing a
refused request asked for happens.
"""

import pytest
from django.urls import reverse

from labs.models import Delivery, RunLab
from labs.pipeline import faults, traffic
from tests.test_labs_views import RUN_URLS
from tests.workshop_roles import *  # noqa: F403 - the fixtures by role
from workshops import broadcasts, scenario_player
from workshops.models import Announcement, Broadcast, EmergencyStop, RosterEntry, ScenarioPlay, Seat, Workshop, WorkshopKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(learner, classmate, stranger, instructor, other_instructor, anonymous) -> dict:
    return {"learner": learner, "classmate": classmate, "stranger": stranger, "instructor": instructor,
            "other instructor": other_instructor, "visitor": anonymous}  # fmt: skip


def secrets_of(workshop, *learners) -> list[str]:
    return [workshop.title, workshop.join_code, workshop.shown_code, *[client.user.username for client in learners]]


def snapshot(workshop, other_workshop, *learners) -> dict:
    """What a refused request could have changed."""
    fresh = Workshop.objects.get(pk=workshop.pk)
    return {
        "code": fresh.join_code,
        "open": fresh.joining_open,
        "seats": sorted(Seat.objects.values_list("pk", "workshop_id", "run_id", "hand_raised_at")),
        "broadcasts": sorted(Broadcast.objects.values_list("pk", "ended_at")),
        "stops": EmergencyStop.objects.count(),
        "announcements": Announcement.objects.count(),
        "ended": fresh.ended_at,
        "co-instructors": list(fresh.co_instructors.all()),
        "roster": RosterEntry.objects.count(),
        "runs reset": sorted(RunLab.objects.values_list("run_id", "started_at")),
        "api keys": WorkshopKey.objects.count(),
        "faults": {client.seat.run_id: faults.all_faults(client.seat.run_id) for client in learners},
        "scenarios": sorted(ScenarioPlay.objects.values_list("pk", "step", "state", "released_step", "paused_at")),
    }


def test_every_workshop_url_answers_only_its_instructor_or_its_learner(people, workshop, other_workshop, instructor, learner, classmate, stranger):
    learner.post(reverse("workshops:hand", args=[learner.seat.pk]), {"raise": "1"})
    in_force = broadcasts.start(workshop, instructor.user, "sms-primary", {"down": True}, 600)
    playing = scenario_player.start(workshop, instructor.user, "black-friday")
    scenario_player.advance_due()  # on its 20 s wait: a leaked Skip, pause or stop would show in the snapshot
    before = snapshot(workshop, other_workshop, learner, classmate, stranger)
    w = workshop.pk
    instructors_urls = [
        ("get", reverse("workshops:grid", args=[w]), {}),
        ("get", reverse("workshops:cohort", args=[w]), {}),
        ("get", reverse("live:workshop_cohort", args=[w]), {}),
        ("post", reverse("live:workshop_stop", args=[w]), {}),
        ("post", reverse("live:workshop_broadcast", args=[w]), {"target": "email-primary", "provider-down": "on", "duration_s": "60", "to": "everyone"}),
        ("post", reverse("workshops:joining", args=[w]), {"open": "0"}),
        ("post", reverse("workshops:rotate_code", args=[w]), {}),
        ("post", reverse("workshops:broadcast", args=[w]), {"target": "email-primary", "provider-down": "on", "duration_s": "60", "to": "everyone"}),
        ("post", reverse("workshops:end_broadcast", args=[w, in_force.pk]), {}),
        ("post", reverse("workshops:stop", args=[w]), {}),
        ("post", reverse("workshops:announce", args=[w]), {"text": "hello"}),
        ("post", reverse("workshops:lower_hand", args=[w, learner.seat.pk]), {}),
        ("get", reverse("workshops:drop_in", args=[w, learner.seat.pk]), {}),
        ("post", reverse("workshops:reset_seat", args=[w, learner.seat.pk]), {}),
        ("post", reverse("workshops:roster", args=[w]), {"text": "Ada Lovelace, ada@example.org"}),
        ("post", reverse("workshops:co_instructors", args=[w]), {"username": "hopper"}),
        ("post", reverse("workshops:end", args=[w]), {"confirm": workshop.shown_code}),
        ("get", reverse("workshops:scenarios", args=[w]), {}),
        ("post", reverse("workshops:play_scenario", args=[w]), {"scenario": "poison-after-a-bad-deploy"}),
        ("post", reverse("workshops:pause_scenario", args=[w, playing.pk]), {}),
        ("post", reverse("workshops:resume_scenario", args=[w, playing.pk]), {}),
        ("post", reverse("workshops:move_on_scenario", args=[w, playing.pk]), {"step": "2"}),
        ("post", reverse("workshops:stop_scenario", args=[w, playing.pk]), {}),
        ("get", reverse("workshops:debrief", args=[w]), {}),
        ("get", reverse("workshops:debrief_csv", args=[w]), {}),
        ("get", reverse("workshops:debrief_json", args=[w]), {}),
        ("post", reverse("workshops:api_key", args=[w]), {}),
    ]
    learners_urls = [
        ("get", reverse("workshops:classroom", args=[learner.seat.pk]), {}),
        ("get", reverse("live:workshop_classroom", args=[learner.seat.pk]), {}),
        ("post", reverse("workshops:hand", args=[learner.seat.pk]), {"raise": "0"}),
    ]
    secrets = secrets_of(workshop, learner, classmate)

    for urls, allowed in ((instructors_urls, "instructor"), (learners_urls, "learner")):
        for method, url, data in urls:
            for who, client in people.items():
                if who == allowed:
                    continue
                for extra in ({}, {"HTTP_HX_REQUEST": "true"}):
                    response = getattr(client, method)(url, data, **extra)
                    assert response.status_code == 404, (url, who, response.status_code)
                    assert not [s for s in secrets if s in response.content.decode()], (url, who)
    # Another instructor's own workshop with this workshop's play: still nobody's but this instructor's.
    for name in ("pause_scenario", "resume_scenario", "move_on_scenario", "stop_scenario"):
        response = people["other instructor"].post(reverse(f"workshops:{name}", args=[other_workshop.pk, playing.pk]), {"step": "2"})
        assert response.status_code == 404, name
    assert snapshot(workshop, other_workshop, learner, classmate, stranger) == before

    grid = instructor.get(reverse("workshops:grid", args=[w])).content.decode()
    assert 'data-learner="ada"' in grid and 'data-learner="alan"' in grid and "barbara" not in grid
    other_grid = people["other instructor"].get(reverse("workshops:grid", args=[other_workshop.pk])).content.decode()
    assert 'data-learner="barbara"' in other_grid and not [s for s in secrets if s in other_grid]
    exported = instructor.get(reverse("workshops:debrief_csv", args=[w])).content.decode()
    assert "\nada," in exported and "\nalan," in exported and "barbara" not in exported
    bar = learner.get(reverse("workshops:classroom", args=[learner.seat.pk])).content.decode()
    assert workshop.title in bar and "alan" not in bar and "Injected by your instructor: sms-primary down" in bar


# What an instructor who drops in may read of a seated learner's run: the page's live parts, nothing that changes it.
READ_BY_THE_INSTRUCTOR = {"labs:panels", "labs:stream", "labs:notification", "labs:delivery"}


def test_a_learners_run_answers_only_that_learner_and_reads_for_their_instructor(people, learner):
    run = learner.seat.run
    accepted = traffic.send_one(run, 3, "password_reset")
    learner.post(reverse("labs:prediction", args=[run.pk, 1]), {"prediction": "mine"})
    ids = {"intent": accepted.intent.pk, "delivery": Delivery.objects.get(intent=accepted.intent).pk}

    for method, name, extra in RUN_URLS:
        url = reverse(name, args=[run.pk, *[ids.get(e, e) for e in extra]])
        for who, client in people.items():
            if who == "learner":
                continue
            response = getattr(client, method)(url, {"target": "email-primary", "email-primary-down": "on"})
            expected = 404
            if who == "instructor" and name in READ_BY_THE_INSTRUCTOR:
                expected = 302 if name == "labs:delivery" else 200  # a delivery's link leads to its notification
            assert response.status_code == expected, (name, who, response.status_code)
            if expected == 200 and name == "labs:panels":
                assert "Replay group" not in response.content.decode()  # read-only: no buttons
    assert faults.all_faults(run.pk) == {} and Seat.objects.get(pk=learner.seat.pk).run_id == run.pk
    assert learner.get(reverse("labs:panels", args=[run.pk])).status_code == 200


def test_lists_and_the_create_page_show_each_person_only_their_own(people, workshop, other_workshop):
    create = reverse("workshops:create")
    for who, client in people.items():
        expected = {"instructor": 200, "other instructor": 200, "visitor": 302}.get(who, 403)
        assert client.get(create).status_code == expected, who
    assert people["visitor"].get(reverse("workshops:index")).status_code == 302  # to the login page

    listed = {who: people[who].get(reverse("workshops:index")).content.decode() for who in people if who != "visitor"}
    assert workshop.title in listed["instructor"] and other_workshop.title not in listed["instructor"]
    assert other_workshop.title in listed["other instructor"] and workshop.title not in listed["other instructor"]
    assert workshop.title in listed["learner"] and workshop.title in listed["classmate"] and other_workshop.title not in listed["learner"]
    assert other_workshop.title in listed["stranger"] and workshop.title not in listed["stranger"]
    for page in listed.values():
        assert workshop.shown_code not in page or page is listed["instructor"]


def test_the_join_page_shows_a_workshop_only_to_whoever_has_its_code(people, workshop):
    page = people["visitor"].get(reverse("workshops:join_code", args=[workshop.join_code])).content.decode()
    assert workshop.title in page and "ada" not in page and "alan" not in page  # who joined stays private
