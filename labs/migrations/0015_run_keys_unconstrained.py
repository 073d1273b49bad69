"""No foreign-key constraint from the rows a campaign writes per message to their run (intents,
deliveries, outbox rows, attempts); the columns and their indexes stay.

perf on PostgreSQL's backends during bench/pipeline.py: the deferred foreign-key checks, run row by
row at commit, were a fifth of their CPU and half of the web's (a batch of 1,000 intents made 8,000
checks, 3,000 of them on the one run row). A delivery's recipient, a copy of its intent's, loses its
constraint too. Django's collector does the CASCADE itself, so deleting a run still deletes these
rows; see the comment on Delivery.run.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('labs', '0014_fewer_indexes'),
    ]

    operations = [
        migrations.AlterField(
            model_name='delivery',
            name='run',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='labs.labrun'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='recipient',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, to='labs.recipient'),
        ),
        migrations.AlterField(
            model_name='deliveryattempt',
            name='run',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='labs.labrun'),
        ),
        migrations.AlterField(
            model_name='notificationintent',
            name='run',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='intents', to='labs.labrun'),
        ),
        migrations.AlterField(
            model_name='outboxrow',
            name='run',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='outbox', to='labs.labrun'),
        ),
    ]
