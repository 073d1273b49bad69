"""Two indexes that only their queries' rows need to be in (PostgreSQL writes an entry in every index
for each new version of a row that changes an indexed column, bench/pipeline.py):

- delivery_run_finished holds finished deliveries only: a delivery's versions before its finish
  (accepted, claimed) added two entries no query reads.
- send_user_sequence holds in-app sends only (the ones with a sequence): a campaign's sends added one.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('labs', '0015_run_keys_unconstrained'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='delivery',
            name='delivery_run_finished',
        ),
        migrations.RemoveIndex(
            model_name='providersend',
            name='send_user_sequence',
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(condition=models.Q(('finished_at__isnull', False)), fields=['run', 'finished_at'], name='delivery_run_finished'),
        ),
        migrations.AddIndex(
            model_name='providersend',
            index=models.Index(condition=models.Q(('sequence__isnull', False)), fields=['run', 'recipient_number', 'channel', 'sequence'], name='send_user_sequence'),
        ),
    ]
