"""Scenarios through the instructor's panel and the player's tick, without processes.

These tests call `scenario_player.advance_due` where the relay would (once a second), with a
clock moved forward instead of waiting; test_workshops_scenario_relay.py has the real relay
playing one with no request made. What a step does is checked where a learner or the
instructor would see it: the runs' faults and traffic, the learner's classroom bar, the panel.
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from labs.models import NotificationIntent
from labs.pipeline import faults
from tests.workshop_roles import *  # noqa: F403 - the fixtures by role
from workshops import broadcasts, scenario_files, scenario_player
from workshops.models import Announcement, Broadcast, ScenarioPlay, Workshop
from workshops.scenario_files import scenarios

pytestmark = pytest.mark.django_db


def htmx(client, url: str, data: dict | None = None) -> str:
    return client.post(url, data or {}, HTTP_HX_REQUEST="true").content.decode()


def panel(client, workshop) -> str:
    return client.get(reverse("workshops:scenarios", args=[workshop.pk]), HTTP_HX_REQUEST="true").content.decode()


def play(client, workshop, slug: str) -> str:
    return htmx(client, reverse("workshops:play_scenario", args=[workshop.pk]), {"scenario": slug})


def button(client, name: str, workshop, data: dict | None = None) -> str:
    return htmx(client, reverse(f"workshops:{name}", args=[workshop.pk, ScenarioPlay.objects.get().pk]), data)


def bar(client) -> str:
    return client.get(reverse("workshops:classroom", args=[client.seat.pk])).content.decode()


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def current(workshop) -> ScenarioPlay:
    return ScenarioPlay.objects.get(workshop=workshop)


def intents(client, template: str) -> int:
    return NotificationIntent.objects.filter(run_id=client.seat.run_id, template__name=template).count()


def test_a_scenario_plays_step_by_step_on_the_tick_and_learners_see_each_step(workshop, instructor, learner, classmate):
    assert "Playing “Black Friday: a campaign meets an email outage”" in play(instructor, workshop, "black-friday")
    assert (current(workshop).step, current(workshop).state) == (0, "playing")  # the relay begins step 1, not the request

    assert scenario_player.advance_due() == 2  # the announcement, then the 20 s wait begins
    assert "Black Friday, 09:00: marketing is about to send the big campaign" in bar(learner)
    shown = panel(instructor, workshop)
    assert 'aria-current="step" data-testid="scenario-current">\n      Wait 20 s' in shown
    assert 'data-testid="scenario-time-left"' in shown and "Pause" in shown and "Skip this step" in shown
    assert faults.all_faults(learner.seat.run_id) == {}

    assert scenario_player.advance_due(later(10)) == 0  # the wait is not over
    assert scenario_player.advance_due(later(21)) == 4  # the fault, the campaign, an announcement, the 60 s wait
    for client in (learner, classmate):
        assert faults.all_faults(client.seat.run_id) == {"email-primary": {"down": True}}
        assert intents(client, "weekly_digest") == 200
        assert "Injected by your instructor: email-primary down" in bar(client) and "Send yourself a password reset" in bar(client)
    injected = Broadcast.objects.get()
    assert injected.ends_at - injected.started_at == timedelta(seconds=180)
    assert "Step 6: waiting 1 min" in panel(instructor, workshop)

    assert scenario_player.advance_due(later(82)) == 1  # the Next step: the timeline waits for the instructor
    assert current(workshop).state == "waiting"
    assert scenario_player.advance_due(later(3600)) == 0
    assert ">Next</button>" in panel(instructor, workshop)

    assert "Moving on from step 7." in button(instructor, "move_on_scenario", workshop, {"step": "7"})
    assert scenario_player.advance_due() == 3  # the outage ends early, an announcement, the 45 s wait
    assert faults.all_faults(learner.seat.run_id) == {} and Broadcast.objects.get().ending == Broadcast.Ending.ENDED
    assert "email-primary is back" in bar(learner)


def test_the_last_step_finishes_the_play_and_the_panel_offers_the_scenarios_again(workshop, instructor, learner):
    play(instructor, workshop, "black-friday")
    scenario_player.advance_due()
    ScenarioPlay.objects.update(step=11, state=ScenarioPlay.State.WAITING)  # the debrief's Next
    button(instructor, "move_on_scenario", workshop, {"step": "11"})
    assert scenario_player.advance_due() == 1  # the banner comes down, and that was the last step
    assert current(workshop).state == "finished" and Announcement.objects.filter(taken_down_at__isnull=True).count() == 0
    shown = panel(instructor, workshop)
    assert "Last played: Black Friday: a campaign meets an email outage — finished (Finished: every step played)" in shown
    assert shown.count('data-testid="scenario-choice"') == 2  # the two that suit the dead-letters lab


def test_pause_stops_a_waits_clock_and_resume_keeps_the_time_it_had_left(workshop, instructor, learner):
    play(instructor, workshop, "poison-after-a-bad-deploy")
    assert scenario_player.advance_due() == 3  # an announcement, 10 order updates, the 20 s wait
    assert "Paused: the timeline waits for you" in button(instructor, "pause_scenario", workshop)
    assert scenario_player.advance_due(later(100)) == 0
    assert "left (paused)" in panel(instructor, workshop) and ">Resume</button>" in panel(instructor, workshop)
    was_started = current(workshop).step_started_at
    ScenarioPlay.objects.update(paused_at=current(workshop).paused_at - timedelta(seconds=60))  # as if paused a minute ago

    assert "Playing again." in button(instructor, "resume_scenario", workshop)
    assert current(workshop).step_started_at - was_started >= timedelta(seconds=60)
    assert scenario_player.advance_due(later(25)) == 0  # 20 s from its start, but a minute of it was paused
    assert scenario_player.advance_due(later(85)) == 4
    assert intents(learner, "order_shipped") == 15  # 10 healthy, 5 poison


def test_skip_pressed_twice_or_from_a_stale_page_moves_the_timeline_on_once(workshop, instructor, learner):
    play(instructor, workshop, "poison-after-a-bad-deploy")
    scenario_player.advance_due()
    assert "Moving on from step 3." in button(instructor, "move_on_scenario", workshop, {"step": "3"})
    assert "Moving on from step 3." in button(instructor, "move_on_scenario", workshop, {"step": "3"})  # the double click
    assert scenario_player.advance_due() == 4  # the announcement, the poison, the campaign, the 45 s wait
    assert current(workshop).step == 7

    stale = button(instructor, "move_on_scenario", workshop, {"step": "3"})
    assert "Step 3 is no longer the current step: the timeline had moved on." in stale
    assert scenario_player.advance_due() == 0 and current(workshop).step == 7
    assert intents(learner, "order_shipped") == 15 and intents(learner, "weekly_digest") == 100


def test_two_relays_ticking_at_once_begin_each_step_once(workshop, instructor, learner):
    scenario_player.start(workshop, instructor.user, "poison-after-a-bad-deploy")
    one, other = ScenarioPlay.objects.get(), ScenarioPlay.objects.get()
    assert scenario_player.advance(one) == 3
    assert scenario_player.advance(other) == 0  # it read step 0; the claim on (step 0, playing) finds step 3
    assert Announcement.objects.count() == 1 and intents(learner, "order_shipped") == 10


def test_stop_ends_the_timeline_and_only_the_faults_the_scenario_injected(workshop, instructor, learner):
    play(instructor, workshop, "black-friday")
    scenario_player.advance_due()
    scenario_player.advance_due(later(21))
    broadcasts.start(workshop, instructor.user, "sms-primary", {"down": True}, 600)  # the instructor's own, by hand

    assert "Scenario stopped, and the faults it injected ended." in button(instructor, "stop_scenario", workshop)
    assert faults.all_faults(learner.seat.run_id) == {"sms-primary": {"down": True}}
    assert current(workshop).state == "stopped" and current(workshop).note == "Stopped by your instructor"
    announced = Announcement.objects.count()
    assert scenario_player.advance_due(later(3600)) == 0 and Announcement.objects.count() == announced
    assert "That scenario had ended already." in button(instructor, "stop_scenario", workshop)
    assert "Only a playing scenario can be paused." in button(instructor, "pause_scenario", workshop)


def test_the_emergency_stop_stops_a_playing_scenario(workshop, instructor, learner, classmate):
    play(instructor, workshop, "black-friday")
    scenario_player.advance_due()
    scenario_player.advance_due(later(21))
    htmx(instructor, reverse("workshops:stop", args=[workshop.pk]))

    assert current(workshop).state == "stopped" and current(workshop).note == "Emergency stop"
    assert scenario_player.advance_due(later(3600)) == 0
    for client in (learner, classmate):
        assert faults.all_faults(client.seat.run_id) == {}
    assert "— stopped (Emergency stop)" in panel(instructor, workshop)


def test_a_fault_step_that_finds_its_play_stopped_after_injecting_withdraws_the_fault(workshop, instructor, learner):
    """The race the claim cannot close: the relay claimed the fault step, then a stop came before it injected."""
    scenario_player.start(workshop, instructor.user, "black-friday")
    claimed = ScenarioPlay.objects.get()
    ScenarioPlay.objects.update(state=ScenarioPlay.State.STOPPED)  # the emergency stop, between the claim and the injection
    outage = scenarios()["black-friday"].steps[2]

    said = scenario_player._perform(claimed, outage)
    assert said == "withdrawn at once: the scenario was stopped while it was injected"
    assert faults.all_faults(learner.seat.run_id) == {}
    assert Broadcast.objects.get().ending == Broadcast.Ending.STOPPED


def test_a_wrong_choice_or_a_second_play_is_refused_and_writes_nothing(workshop, instructor, learner):
    refused = "Scenario: Select a valid choice."
    assert refused in play(instructor, workshop, "no-such-scenario")
    assert refused in play(instructor, workshop, "flapping-sms-provider")  # it does not suit the dead-letters lab
    assert 'data-scenario="flapping-sms-provider"' not in panel(instructor, workshop)
    assert not ScenarioPlay.objects.exists()

    play(instructor, workshop, "black-friday")
    assert "A scenario is already playing in this workshop: stop it before you play another." in play(instructor, workshop, "poison-after-a-bad-deploy")
    assert ScenarioPlay.objects.get().scenario == "black-friday"
    assert "Step: Enter a whole number." in button(instructor, "move_on_scenario", workshop, {"step": "two"})
    assert "Step: This field is required." in button(instructor, "move_on_scenario", workshop)
    assert current(workshop).released_step is None


def test_a_workshop_nobody_has_joined_plays_nothing(instructor):
    empty = Workshop.objects.create(owner=instructor.user, title="Empty room", lab="dead-letters-poison")
    assert "No learner of this workshop has a run yet" in play(instructor, empty, "black-friday")
    assert not ScenarioPlay.objects.exists()


def test_without_javascript_the_panel_is_a_page_and_each_button_comes_back_to_it(workshop, instructor, learner):
    page = instructor.get(reverse("workshops:scenarios", args=[workshop.pk]))
    assert page.status_code == 200 and "<html" in page.content.decode() and "Ask in the debrief" in page.content.decode()
    response = instructor.post(reverse("workshops:play_scenario", args=[workshop.pk]), {"scenario": "black-friday"})
    assert response.status_code == 302 and response.url == reverse("workshops:scenarios", args=[workshop.pk])
    assert "Playing “Black Friday" in instructor.get(response.url).content.decode()
    grid = instructor.get(reverse("workshops:grid", args=[workshop.pk])).content.decode()
    assert f'hx-get="{reverse("workshops:scenarios", args=[workshop.pk])}" hx-trigger="load"' in grid


def test_a_broken_scenario_file_shows_on_the_panel_and_the_grid_keeps_working(workshop, instructor, tmp_path, monkeypatch):
    (tmp_path / "drill.yaml").write_text("slug: drill\ntitle: Drill\nsummary: x\nbrief: x\nsteps:\n  - wait: forever\n")
    monkeypatch.setattr(scenario_files, "SCENARIOS_DIR", tmp_path)
    scenarios.cache_clear()
    try:
        shown = panel(instructor, workshop)
        assert "A scenario file is broken, so none can be played:" in shown and "drill.yaml:6: step 1&#x27;s wait" in shown
        assert "drill.yaml:6:" in play(instructor, workshop, "drill")
        assert instructor.get(reverse("workshops:grid", args=[workshop.pk])).status_code == 200
    finally:
        scenarios.cache_clear()
    assert not ScenarioPlay.objects.exists()


def test_clear_faults_ends_every_broadcast_in_force_and_send_reaches_users_one_to_count(workshop, instructor, learner, tmp_path, monkeypatch):
    (tmp_path / "drill.yaml").write_text(
        "slug: drill\ntitle: Drill\nsummary: x\nbrief: x\nsteps:\n"
        "  - fault: {target: sms-primary, error_rate: 0.5}\n    for: 600\n"
        "  - send: {template: security_alert, channels: [sms], count: 3}\n"
        "  - next: Ask\n"
        "  - clear: faults\n"
    )
    monkeypatch.setattr(scenario_files, "SCENARIOS_DIR", tmp_path)
    scenarios.cache_clear()
    try:
        play(instructor, workshop, "drill")
        broadcasts.start(workshop, instructor.user, "email-primary", {"down": True}, 600)  # by hand, also in force
        assert scenario_player.advance_due() == 3
        assert faults.all_faults(learner.seat.run_id) == {"sms-primary": {"error_rate": 0.5}, "email-primary": {"down": True}}
        alerts = NotificationIntent.objects.filter(run_id=learner.seat.run_id, template__name="security_alert")
        assert sorted(alerts.values_list("recipient__number", flat=True)) == [1, 2, 3]
        assert all(d.channel == "sms" for intent in alerts for d in intent.deliveries.all())
        button(instructor, "move_on_scenario", workshop, {"step": "3"})
        assert scenario_player.advance_due() == 1
        assert faults.all_faults(learner.seat.run_id) == {}
        assert sorted(Broadcast.objects.values_list("target", "ending")) == [("email-primary", "ended"), ("sms-primary", "ended")]
        assert current(workshop).state == "finished"  # in the same tick: the clear was the last step
    finally:
        scenarios.cache_clear()
