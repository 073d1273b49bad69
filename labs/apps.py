from django.apps import AppConfig
from django.db.models import Field

from labs.rows import AnyOf


class LabsConfig(AppConfig):
    name = "labs"
    verbose_name = "Labs"
    # For `manage.py check_content`: the lab files, what they name, and the figures they state.
    content_checker = "labs.lab_files.check_labs"

    def ready(self) -> None:
        # Load the Celery app whenever Django starts, so @shared_task binds to it (the pipeline's tasks live here).
        import config.celery  # noqa: F401

        Field.register_lookup(AnyOf)  # `pk__any=ids`: the pipeline's batches as one array on PostgreSQL
