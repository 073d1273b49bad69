"""Fewer index entries per delivery on PostgreSQL (bench/pipeline.py, profiled with perf: index
insertions were two fifths of the server's CPU for the campaign workers).

- The foreign keys' own indexes go where another index already begins with the same column
  (the constraints stay). PostgreSQL writes an entry in every index of a row for each new version
  that changes an indexed column, and a delivery is written four times.
- labs_delivery leaves room on each page (fillfactor 70), so a delivery's later versions land beside
  it and the dispatch, which changes no indexed column, is a heap-only update: no index entries.
"""

import django.db.models.deletion
from django.db import migrations, models


def leave_room(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE labs_delivery SET (fillfactor = 70)")


def pack(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE labs_delivery RESET (fillfactor)")


class Migration(migrations.Migration):

    dependencies = [
        ('labs', '0013_attempt_worker'),
    ]

    operations = [
        migrations.AlterField(
            model_name='delivery',
            name='intent',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='labs.notificationintent'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='recipient',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, to='labs.recipient'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='run',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='labs.labrun'),
        ),
        migrations.AlterField(
            model_name='deliveryattempt',
            name='run',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='labs.labrun'),
        ),
        migrations.AlterField(
            model_name='notificationintent',
            name='run',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='intents', to='labs.labrun'),
        ),
        migrations.AlterField(
            model_name='outboxrow',
            name='run',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='outbox', to='labs.labrun'),
        ),
        migrations.AlterField(
            model_name='providersend',
            name='run',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='provider_sends', to='labs.labrun'),
        ),
        migrations.RunPython(leave_room, pack),
    ]
