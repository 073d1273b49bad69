"""A lab page's panel refresh costs a fixed number of queries, however long the run's history.

The page asks for its panels about once a second; with a hundred pages open their cost decides
whether the web process keeps up (bench/live_view.py and bench/workshop.py measure that). The
runs here get their history from the pipeline's own code, called in this process: the intake
accepts, the worker's plain function delivers (no Celery), the state machine dead-letters.
"""

import re
import time

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from config.redis_client import get_redis
from labs import pace
from labs.catalogue import CATALOGUE
from labs.models import AttemptOutcome, DeadLetter, DeliveryAttempt, OutboxRow
from labs.pipeline import audit, faults, relay, traffic, worker
from labs.runs import start_lab_run
from tests import pipeline_steps

LAB = "dead-letters-poison"


def _deliver_what_is_due(run) -> None:
    """The relay's and the worker's part, in this process: publish every due row, deliver each."""
    while rows := list(OutboxRow.objects.filter(run=run, published_at__isnull=True, available_at__lte=Now())
                       .values_list("pk", "delivery_id", "generation")[:500]):  # fmt: skip
        relay.mark_published([pk for pk, _, _ in rows])
        for _, delivery_id, generation in rows:
            worker.deliver(delivery_id, generation)


def _learner_with_history(django_user_model, name: str, scale: int) -> tuple[Client, object]:
    """A run with `scale` rounds of history: alerts, a campaign, failed attempts and dead letters."""
    user = django_user_model.objects.create_user(name)
    run = start_lab_run(user, CATALOGUE[LAB]).run
    for round_number in range(scale):
        for user_id in range(1, 6):
            traffic.send_one(run, user_id, "password_reset")
        traffic.send_burst(run, 50)  # a campaign as large as an alert has to overtake (checks.CAMPAIGN_WAITING)
        _deliver_what_is_due(run)
        pipeline_steps.dead_letter(run, attempts=({"provider": "email-primary", "outcome": AttemptOutcome.FAILED, "error": "503"},) * 2)
    client = Client()
    client.force_login(user)
    return client, run


def _queries_of_a_refresh(client: Client, run) -> list[str]:
    url = reverse("labs:panels", args=[run.pk])
    client.get(url)  # the session's first use
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return [query["sql"] for query in queries.captured_queries]


@pytest.mark.django_db
def test_a_panel_refresh_costs_the_same_queries_for_a_short_and_a_long_history(django_user_model):
    short_client, short = _learner_with_history(django_user_model, "ada", scale=1)
    long_client, long = _learner_with_history(django_user_model, "grace", scale=5)
    try:
        few, many = _queries_of_a_refresh(short_client, short), _queries_of_a_refresh(long_client, long)
    finally:
        faults.clear_faults(short.pk)
        faults.clear_faults(long.pk)

    assert long.intents.count() >= 5 * short.intents.count()
    assert len(many) == len(few) <= 25, "\n".join(many)


@pytest.mark.django_db
def test_the_panels_show_the_runs_figures_as_the_auditor_reads_them_from_the_rows(django_user_model):
    client, run = _learner_with_history(django_user_model, "ada", scale=2)
    page = client.get(reverse("labs:panels", args=[run.pk])).content.decode()
    counts, from_rows = pipeline_steps.counts_and_rows(run.pk)

    assert counts == from_rows
    delivered = from_rows["status:delivered"]
    assert delivered == 2 * (5 + 50) and f'data-testid="metric-delivered">{delivered}<' in page
    assert 'data-testid="metric-dead-letters">2<' in page


@pytest.mark.django_db
def test_with_many_pages_open_each_answer_asks_its_page_to_come_back_later(django_user_model, settings):
    """The web process's share for panels is divided among the pages open (labs/pace.py): alone, a page may ask
    every second; among a thousand, each answer tells it to wait longer, up to the cap."""
    client, run = _learner_with_history(django_user_model, "ada", scale=1)
    url = reverse("labs:panels", args=[run.pk])

    def next_ms() -> int:
        found = re.search(rb'data-next-ms="(\d+)"', client.get(url).content)
        assert found, "the answer says when to ask again"
        return int(found[1])

    alone = next_ms()
    get_redis().zadd(pace.open_pages_key(), {f"{n}:page": time.time() for n in range(1000)})
    crowded = next_ms()
    settings.LAB_PANELS_CPU_PERCENT = 100_000  # a server with cores to spare
    roomy = next_ms()

    assert alone == pace.MIN_GAP_MS
    assert pace.MIN_GAP_MS < crowded <= pace.MAX_GAP_MS
    assert roomy == pace.MIN_GAP_MS


@pytest.mark.django_db
def test_the_last_minutes_charts_count_what_the_run_did_in_it(django_user_model):
    """The sparklines (labs.panels.series, queries compiled once) count each second's rows of this run only."""
    client, run = _learner_with_history(django_user_model, "ada", scale=1)
    _learner_with_history(django_user_model, "grace", scale=1)  # another run's rows in the same minute
    answer = client.get(reverse("labs:panels", args=[run.pk])).content.decode()

    totals = dict(re.findall(r'<figcaption>([^<]+) <span class="muted">per second · <span data-testid="series-total">(\d+)</span>', answer))
    audit_figures = audit.audit(run)
    assert int(totals["notifications accepted"]) == audit_figures["accepted"] == 56  # 5 alerts, a campaign of 50, a poison message
    assert int(totals["deliveries delivered"]) == audit_figures["delivered"]
    assert int(totals["dead letters written"]) == DeadLetter.objects.filter(run=run).count() == 1
    assert int(totals["failed attempts"]) == DeliveryAttempt.objects.filter(run=run, outcome=AttemptOutcome.FAILED).count() >= 2
