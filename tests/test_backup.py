"""Backups and restore, by the README's procedure: a database holding a lab run with delivered
notifications is dumped, restored onto a fresh database, and the copy has the run, is fully
migrated (`migrate --check`) and takes new rows.

On PostgreSQL (CI's second suite): pg_dump's custom format and pg_restore. On SQLite (a newcomer's
machine): the sqlite3 shell's `.backup`, which copies a live database safely while processes write.
"""

import os
import shutil
import subprocess
import sys
import uuid

import pytest
from django.db import connection

from labs.models import Delivery, DeliveryStatus, LabRun, Recipient
from labs.pipeline import audit
from labs.runs import create_run
from tests.conftest import database_url_for_processes
from tests.harness import BASE_DIR, wait_for
from tests.test_metrics import send


@pytest.fixture
def delivered_run(django_user_model, celery_worker, relay) -> LabRun:
    owner = django_user_model.objects.create_user(f"learner-{uuid.uuid4().hex[:6]}", password="not-used-1234")
    run = create_run(owner)
    Recipient.objects.filter(run=run).update(quiet_start=None, quiet_end=None, email_opt_in=True)  # nothing held back
    send(run, "password_reset", 3)
    wait_for(lambda: audit.audit(run)["in_flight"] == 0, 60, "every delivery to finish")
    assert Delivery.objects.filter(run=run, status=DeliveryStatus.DELIVERED).count() == 3
    return run


def snapshot(run_id: int, cursor, placeholder: str = "%s") -> dict:
    """What the restore must keep: the run's key, its deliveries' states and its attempts."""
    cursor.execute(f"SELECT api_key_hash FROM labs_labrun WHERE id = {placeholder}", [run_id])
    key = cursor.fetchone()[0]
    cursor.execute(f"SELECT id, status, generation, attempts FROM labs_delivery WHERE run_id = {placeholder} ORDER BY id", [run_id])
    deliveries = cursor.fetchall()
    cursor.execute("SELECT a.delivery_id, a.number, a.outcome, a.provider FROM labs_deliveryattempt a "
                   f"JOIN labs_delivery d ON d.id = a.delivery_id WHERE d.run_id = {placeholder} ORDER BY a.id", [run_id])  # fmt: skip
    return {"key": key, "deliveries": [tuple(row) for row in deliveries], "attempts": [tuple(row) for row in cursor.fetchall()]}


def manage(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "config.settings"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def check_the_copy(copy_url: str, run: LabRun, copy_cursor, placeholder: str = "%s") -> None:
    with connection.cursor() as cursor:
        original = snapshot(run.pk, cursor)
    assert original["attempts"] and len(original["deliveries"]) == 3
    assert snapshot(run.pk, copy_cursor, placeholder) == original

    migrated = manage(copy_url, "migrate", "--check")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    # New rows in the copy take ids after the restored ones (the sequences came along).
    made = manage(copy_url, "create_lab_run", "--username", "after-restore")
    assert made.returncode == 0 and '"user_created": true' in made.stdout, made.stderr


@pytest.mark.skipif(not shutil.which("pg_dump"), reason="pg_dump is not installed")
def test_a_postgresql_dump_restores_onto_a_fresh_database(delivered_run, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("runs on PostgreSQL (DATABASE_URL=postgres://…); SQLite has its own test below")
    import psycopg

    source = database_url_for_processes()
    server = source.rsplit("/", 1)[0]
    fresh = f"faultline_restore_{uuid.uuid4().hex[:8]}"
    dump = tmp_path / "faultline.dump"

    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", source], check=True, timeout=120)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{fresh}"')
    try:
        subprocess.run(["pg_restore", "--no-owner", f"--dbname={server}/{fresh}", str(dump)], check=True, timeout=120)
        with psycopg.connect(f"{server}/{fresh}") as copy:
            check_the_copy(f"{server}/{fresh}", delivered_run, copy.cursor())
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')


@pytest.mark.skipif(not shutil.which("sqlite3"), reason="the sqlite3 shell is not installed")
def test_a_sqlite_backup_taken_while_the_pipeline_runs_is_a_working_copy(delivered_run, tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("runs on SQLite; PostgreSQL has its own test above")
    import sqlite3

    copy_path = tmp_path / "faultline-backup.sqlite3"
    # The worker and the relay are still running and connected: `.backup` copies a consistent state anyway.
    subprocess.run(["sqlite3", connection.settings_dict["NAME"], f".backup '{copy_path}'"], check=True, timeout=120)
    with sqlite3.connect(copy_path) as copy:
        check_the_copy(f"sqlite:///{copy_path}", delivered_run, copy.cursor(), "?")
