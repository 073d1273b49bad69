"""Running counts of each run's history (labs.pipeline.tally) and the indexes the panels read through.

Attempts get their run, so the panels read a run's last minute of attempts through an index. Both
are filled from the rows here: run it while no process writes (the README's upgrade stops them).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def attempts_know_their_run(apps, schema_editor):
    attempts, deliveries = apps.get_model("labs", "DeliveryAttempt"), apps.get_model("labs", "Delivery")
    attempts.objects.update(run_id=Subquery(deliveries.objects.filter(pk=OuterRef("delivery_id")).values("run_id")[:1]))


def count_every_run(apps, schema_editor):
    """The counts as the auditor computes them from the rows (the current code: it runs once, at this step)."""
    from labs.pipeline import audit

    for run_id in apps.get_model("labs", "LabRun").objects.values_list("pk", flat=True):
        audit.rebuild_counts(run_id)


class Migration(migrations.Migration):

    dependencies = [
        ('labs', '0011_discovery'),
    ]

    operations = [
        migrations.CreateModel(
            name='RunCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=48)),
                ('value', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name='deliveryattempt',
            name='run',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='labs.labrun'),
        ),
        migrations.RunPython(attempts_know_their_run, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='deliveryattempt',
            name='run',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='labs.labrun'),
        ),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(fields=['run', 'created_at'], name='deadletter_run_created'),
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(fields=['run', 'finished_at'], name='delivery_run_finished'),
        ),
        migrations.AddIndex(
            model_name='deliveryattempt',
            index=models.Index(fields=['run', 'finished_at'], name='attempt_run_finished'),
        ),
        migrations.AddIndex(
            model_name='notificationintent',
            index=models.Index(fields=['run', 'created_at'], name='intent_run_created'),
        ),
        migrations.AddIndex(
            model_name='providersend',
            index=models.Index(fields=['run', 'recipient_number', 'channel', 'sequence'], name='send_user_sequence'),
        ),
        migrations.AddField(
            model_name='runcount',
            name='run',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='counts', to='labs.labrun'),
        ),
        migrations.AddConstraint(
            model_name='runcount',
            constraint=models.UniqueConstraint(fields=('run', 'name'), name='one_count_per_name'),
        ),
        migrations.RunPython(count_every_run, migrations.RunPython.noop),
    ]
