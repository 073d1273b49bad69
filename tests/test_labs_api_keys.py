"""A lab run's API key: kept only as a hash, shown once when it is made, looked up by its hash."""

import re

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from labs.models import LabRun, hash_api_key
from labs.runs import create_run

LAB = "outbox-and-relay"


def api_status(key: str) -> int:
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/runs/current").status_code


def shown_key(page: str) -> str | None:
    found = re.search(r'id="api-key">([^<]+)</code>', page)
    return found[1] if found else None


@pytest.fixture
def learner(django_user_model):
    client = Client()
    client.user = django_user_model.objects.create_user("ada")
    client.force_login(client.user)
    return client


def test_the_database_keeps_the_keys_hash_and_first_characters_never_the_key(db, django_user_model):
    run = create_run(django_user_model.objects.create_user("ada"))
    key = run.api_key

    stored = LabRun.objects.filter(pk=run.pk).values().get()
    assert key not in [str(value) for value in stored.values()]
    assert stored["api_key_hash"] == hash_api_key(key) and stored["api_key_start"] == key[:8]
    assert LabRun.objects.get(pk=run.pk).api_key is None  # a run read back knows no plaintext
    assert api_status(key) == 200
    assert api_status(stored["api_key_hash"]) == 401  # the hash itself opens nothing
    assert api_status(key[:-1]) == 401


def test_the_lab_page_shows_the_key_once_then_only_its_first_characters(learner, db):
    learner.post(reverse("labs:start", args=[LAB]))
    first = learner.get(reverse("labs:lab", args=[LAB])).content.decode()
    again = learner.get(reverse("labs:lab", args=[LAB])).content.decode()

    key = shown_key(first)
    assert key and api_status(key) == 200
    assert "shown only this once" in first
    assert shown_key(again) is None and key not in again
    assert f"starts <code>{key[:8]}</code>" in again and "Make a new key" in again
    # The curl example still runs once KEY is set by hand.
    assert 'Authorization: Bearer $KEY' in again and "/api/notifications" in again


def test_a_new_key_is_shown_once_and_the_old_one_stops_working(learner, db):
    learner.post(reverse("labs:start", args=[LAB]))
    old = shown_key(learner.get(reverse("labs:lab", args=[LAB])).content.decode())
    run = LabRun.objects.get(owner=learner.user)

    page = learner.post(reverse("labs:rotate_key", args=[run.pk]), follow=True).content.decode()

    new = shown_key(page)
    assert new and new != old and "shown only on this page" in page
    assert api_status(old) == 401 and api_status(new) == 200
    assert shown_key(learner.get(reverse("labs:lab", args=[LAB])).content.decode()) is None


def test_the_migration_hashes_every_existing_key_so_it_keeps_working(transactional_db, django_user_model):
    executor = MigrationExecutor(connection)
    executor.migrate([("labs", "0004_delivery_generation")])
    old_state = executor.loader.project_state([("labs", "0004_delivery_generation")])
    OldRun = old_state.apps.get_model("labs", "LabRun")
    owner = django_user_model.objects.create_user("before-hashing")
    OldRun.objects.create(owner_id=owner.pk, api_key="flk_issued-before-hashing-0123456789abcd")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    run = LabRun.objects.get(owner=owner)
    assert run.api_key_start == "flk_issu"
    assert LabRun.for_api_key("flk_issued-before-hashing-0123456789abcd") == run
