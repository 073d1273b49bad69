from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "labs"
    verbose_name = "Labs"

    def ready(self) -> None:
        # Load the Celery app whenever Django starts, so @shared_task binds to it (the pipeline's tasks live here).
        import config.celery  # noqa: F401
