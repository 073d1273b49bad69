import hashlib

from django.db import migrations, models


def hash_existing_keys(apps, schema_editor):
    """Keep every issued key working: store its SHA-256 and first characters, then drop the plaintext."""
    LabRun = apps.get_model("labs", "LabRun")
    for run in LabRun.objects.only("pk", "api_key").iterator():
        LabRun.objects.filter(pk=run.pk).update(
            api_key_hash=hashlib.sha256(run.api_key.encode("utf-8", "surrogatepass")).hexdigest(),
            api_key_start=run.api_key[:8],
        )


class Migration(migrations.Migration):

    dependencies = [
        ("labs", "0004_delivery_generation"),
    ]

    operations = [
        migrations.AddField(
            model_name="labrun",
            name="api_key_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="labrun",
            name="api_key_start",
            field=models.CharField(default="", max_length=8),
            preserve_default=False,
        ),
        # Not reversible: the plaintext is what this migration exists to forget.
        migrations.RunPython(hash_existing_keys, migrations.RunPython.noop, elidable=False),
        migrations.RemoveField(model_name="labrun", name="api_key"),
        migrations.AlterField(
            model_name="labrun",
            name="api_key_hash",
            field=models.CharField(max_length=64, unique=True),
        ),
    ]
