from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "labs"
    verbose_name = "Labs"
    # For `manage.py check_content`: the lab files, what they name, and the figures they state.
    content_checker = "labs.lab_files.check_labs"
