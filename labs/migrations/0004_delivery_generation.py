from django.db import migrations, models


def generation_from_attempts(apps, schema_editor):
    """Messages written before generations carried the attempt count they expected: start each
    delivery's generation at that count, so those messages still claim what they were for."""
    apps.get_model("labs", "Delivery").objects.update(generation=models.F("attempts"))


class Migration(migrations.Migration):

    dependencies = [
        ('labs', '0003_lab_pages'),
    ]

    operations = [
        migrations.AddField(
            model_name='delivery',
            name='generation',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='delivery',
            name='replayed_at_attempt',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='deliveryattempt',
            name='local_time',
            field=models.TimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='deliveryattempt',
            name='quiet_hours',
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.RenameField(model_name='outboxrow', old_name='expected_attempts', new_name='generation'),
        migrations.AlterField(model_name='outboxrow', name='generation', field=models.PositiveIntegerField()),
        migrations.RunPython(generation_from_attempts, migrations.RunPython.noop),
        migrations.AddField(
            model_name='providersend',
            name='quiet_hours',
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AddField(
            model_name='providersend',
            name='time_zone',
            field=models.CharField(blank=True, max_length=48),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='status',
            field=models.CharField(choices=[('pending', 'Waiting in the outbox'), ('queued', 'On the broker'), ('sending', 'With a worker'), ('retry_scheduled', 'Retry scheduled'), ('deferred', 'Deferred (quiet hours or an open breaker)'), ('waiting_turn', 'Waiting for an earlier in-app message'), ('delivered', 'Delivered'), ('suppressed', 'Suppressed (opted out)'), ('bounced', 'Bounced (the provider refused the address)'), ('dead_lettered', 'Dead-lettered'), ('discarded', 'Discarded from the dead-letter queue')], default='pending', max_length=16),
        ),
    ]
