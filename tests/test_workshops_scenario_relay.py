"""A scenario plays on the server: the relay process begins its steps, with no request made after Play.

A real relay process (tests/conftest.py) on the test database and Redis; no web request is made
after the instructor's Play, and the relay is stopped and started again in the middle: the play
is rows, so a new relay carries on where the old one was.
"""

from django.urls import reverse

from labs.models import NotificationIntent
from tests.harness import wait_for
from tests.workshop_roles import LAB, make_instructor, signed_in
from workshops import joining, scenario_player
from workshops.models import Announcement, ScenarioPlay, Workshop


def sent(run_id: int, template: str) -> int:
    return NotificationIntent.objects.filter(run_id=run_id, template__name=template).count()


def test_the_relay_plays_a_scenario_with_no_request_made_and_a_new_relay_carries_on(start_relay, transactional_db, django_user_model):
    teacher = make_instructor(django_user_model, "grace")
    workshop = Workshop.objects.create(owner=teacher, title="Game day", lab=LAB)
    runs = [joining.join(workshop, django_user_model.objects.create_user(name)).run_id for name in ("ada", "alan")]
    signed_in(teacher).post(reverse("workshops:play_scenario", args=[workshop.pk]), {"scenario": "poison-after-a-bad-deploy"})
    play = ScenarioPlay.objects.get()
    assert play.step == 0  # the request wrote the row and nothing else

    relay = start_relay()
    wait_for(lambda: ScenarioPlay.objects.get().step == 3, 15, "the relay to begin the announcement, the order updates and the wait")
    assert Announcement.objects.get().text == "14:00: a quiet afternoon. The orders team is about to deploy."
    assert [sent(run_id, "order_shipped") for run_id in runs] == [10, 10]

    relay.stop()
    assert scenario_player.move_on(play, 3)  # the instructor's Skip, while no relay runs: only the row changes
    assert ScenarioPlay.objects.get().step == 3 and [sent(run_id, "order_shipped") for run_id in runs] == [10, 10]

    start_relay()
    wait_for(lambda: ScenarioPlay.objects.get().step == 7, 15, "the new relay to carry on from the row")
    assert [sent(run_id, "order_shipped") for run_id in runs] == [15, 15]  # the poison, once
    assert [sent(run_id, "weekly_digest") for run_id in runs] == [100, 100]
    assert Announcement.objects.first().text == "14:02: the orders team deployed. Keep an eye on your dead letters."
    assert ScenarioPlay.objects.get().state == ScenarioPlay.State.PLAYING
