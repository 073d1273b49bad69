from django.apps import AppConfig


class CoursewareConfig(AppConfig):
    name = "courseware"
    verbose_name = "Lessons"
    # Read by the load_content and check_content commands (see their docstrings).
    content_loader = "courseware.loading.load_content"
    content_checker = "courseware.loading.check_content"

    def ready(self) -> None:
        from courseware import content_cache
        from courseware.models import GlossaryTerm, InlineCheck, Lesson, Module

        content_cache.watch(Module, Lesson, GlossaryTerm, InlineCheck)
