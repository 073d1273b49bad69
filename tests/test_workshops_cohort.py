"""The cohort grid: what a tile says about a learner, the summary bar, sorting and filtering, and the
grid's cost, which must not grow with the number of learners (no query per tile)."""

import json
import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from config.redis_client import get_redis
from labs import steps
from labs.catalogue import CATALOGUE
from labs.models import Experiment, RunLab
from labs.pipeline import faults, traffic
from labs.pipeline.breaker import OPEN, BreakerState, ProviderBreaker
from tests import pipeline_steps
from tests.workshop_roles import *  # noqa: F403 - the fixtures by role
from tests.workshop_roles import LAB, seat_learner
from workshops import cohort

pytestmark = pytest.mark.django_db


def tiles_html(instructor, workshop, query: str = "") -> str:
    url = reverse("workshops:grid", args=[workshop.pk]) + query
    return instructor.get(url, HTTP_HX_REQUEST="true").content.decode()


def tile_of(html: str, name: str) -> str:
    return re.search(rf'<li class="tile[^"]*" data-testid="tile" data-learner="{name}">(.*?)</li>\s*(?=<li class="tile|</ol>)', html, re.S)[0]


def test_a_tile_shows_step_predictions_backlog_dead_letters_breakers_faults_and_checks(workshop, instructor, learner, classmate):
    run = learner.seat.run
    run_lab = RunLab.objects.get(run=run)
    lab = CATALOGUE[LAB]
    steps.save_prediction(run_lab, lab.step(1), "All 20 dead-lettered.")
    steps.save_prediction(run_lab, lab.step(2), "Replayed after the fix.")
    for user in (3, 4, 5):
        traffic.send_one(run, user, "password_reset")  # no relay runs: they wait in the outbox
    pipeline_steps.dead_letter(run, user=3)
    get_redis().set(ProviderBreaker(run.pk, "email-primary").state_key, json.dumps(BreakerState(OPEN, time.time()).__dict__))
    faults.set_fault(run.pk, "email-primary", down=True)

    html = tiles_html(instructor, workshop)
    tile = tile_of(html, "ada")

    assert f"Step 2: {lab.step(2).title}" in tile
    assert re.search(r'data-testid="tile-predictions">2<', tile)
    assert re.search(r'data-testid="tile-outbox">3<', tile) and re.search(r'data-testid="tile-dead-letters">1<', tile)
    assert "email-primary open" in tile and "⚡ email-primary" in tile
    assert re.search(rf'data-testid="tile-checks"[^>]*>0/{len(lab.checks)}<', tile)  # measured: none passed yet
    assert tile.count("✔") == 4 and "✘" not in tile  # the four invariants hold
    assert "Not started" in tile_of(html, "alan") and re.search(r'data-testid="tile-outbox">0<', tile_of(html, "alan"))
    summary = re.search(r'data-testid="summary">(.*?)</p>', html, re.S)[1]
    assert re.search(r"Not started: <strong>1</strong>.*Step 2: <strong>1</strong>", summary, re.S)


def test_a_learner_without_progress_for_a_while_is_stuck_and_filters_and_sorts_find_them(workshop, instructor, learner, classmate):
    past = timezone.now() - timedelta(minutes=workshop.stuck_after_minutes + 1)
    type(learner.seat).objects.filter(pk=learner.seat.pk).update(joined_at=past)
    RunLab.objects.filter(run=learner.seat.run).update(started_at=past)
    steps.save_prediction(RunLab.objects.get(run=classmate.seat.run), CATALOGUE[LAB].step(3), "fresh")

    html = tiles_html(instructor, workshop)
    assert 'data-testid="stuck"' in tile_of(html, "ada") and 'data-testid="stuck"' not in tile_of(html, "alan")
    assert re.search(r'data-testid="stuck-count">1<', html)

    only_stuck = tiles_html(instructor, workshop, "?show=stuck")
    assert 'data-learner="ada"' in only_stuck and 'data-learner="alan"' not in only_stuck
    at_step_3 = tiles_html(instructor, workshop, "?show=step-3")
    assert 'data-learner="alan"' in at_step_3 and 'data-learner="ada"' not in at_step_3
    by_step = tiles_html(instructor, workshop, "?sort=step")
    assert by_step.index('data-learner="alan"') < by_step.index('data-learner="ada"')  # furthest first
    stuck_first = tiles_html(instructor, workshop, "?sort=stuck&show=all")
    assert stuck_first.index('data-learner="ada"') < stuck_first.index('data-learner="alan"')
    assert f"?sort=stuck&amp;show=all" in stuck_first  # the poll keeps the order the instructor chose


def test_the_grid_costs_the_same_number_of_queries_for_two_learners_as_for_ten(workshop, instructor, django_user_model, monkeypatch):
    monkeypatch.setattr(cohort, "FACTS_PER_REFRESH", 0)  # the measured runs are a fixed number per refresh; see below

    def queries_for_grid() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert tiles_html(instructor, workshop).count('data-testid="tile"') == workshop.seats.count()
        return len(captured)

    for name in ("s1", "s2"):
        seated = seat_learner(django_user_model, workshop, name)
        steps.save_prediction(RunLab.objects.get(run=seated.seat.run), CATALOGUE[LAB].step(1), "p")
    two = queries_for_grid()
    type(workshop).objects.filter(pk=workshop.pk).update(capacity=20)
    for n in range(8):
        seated = seat_learner(django_user_model, workshop, f"t{n}")
        traffic.send_one(seated.seat.run, 1, "password_reset")
    assert queries_for_grid() == two


def test_checks_and_invariants_are_measured_a_few_runs_a_refresh_and_kept(workshop, instructor, learner, classmate, django_user_model, monkeypatch):
    seat_learner(django_user_model, workshop, "third")
    monkeypatch.setattr(cohort, "FACTS_PER_REFRESH", 2)
    monkeypatch.setattr(cohort, "FACTS_BUDGET_S", 60)  # the count is under test here, not the time budget of a loaded machine

    first = tiles_html(instructor, workshop)
    assert len(re.findall(r'data-testid="tile-checks"[^>]*>0/\d+<', first)) == 2
    assert len(re.findall(r'data-testid="tile-checks">…<', first)) == 1  # not measured yet: says so
    second = tiles_html(instructor, workshop)
    assert len(re.findall(r'data-testid="tile-checks"[^>]*>0/\d+<', second)) == 3
    assert Experiment.objects.count() == 0  # measuring writes nothing to the database
