"""The in-app order's index on deliveries holds in-app deliveries only (those with a sequence): a
campaign delivery added an entry on each of its three versions that change an indexed column
(bench/pipeline.py). A delivery's recipient is deleted with its intent, so deleting a recipient
no longer looks for deliveries by that column (it would read the whole table).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('labs', '0016_partial_finished_and_sequence'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='delivery',
            name='labs_delive_recipie_c4140b_idx',
        ),
        migrations.AlterField(
            model_name='delivery',
            name='recipient',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, to='labs.recipient'),
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(condition=models.Q(('sequence__isnull', False)), fields=['recipient', 'channel', 'sequence'], name='delivery_inapp_order'),
        ),
    ]
