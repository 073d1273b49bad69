from django.apps import AppConfig


class CoursewareConfig(AppConfig):
    name = "courseware"
    verbose_name = "Lessons"
    # Read by the load_content and check_content commands (see their docstrings).
    content_loader = "courseware.loading.load_content"
    content_checker = "courseware.loading.check_content"
