from django.apps import AppConfig


class PracticeConfig(AppConfig):
    name = "practice"
    verbose_name = "Practice"
    # Called by `manage.py load_content` and `manage.py check_content` (courseware's commands).
    content_loader = "practice.loader.load_questions"
    content_checker = "practice.loader.check_questions"

    def ready(self) -> None:
        from courseware import content_cache
        from practice import progress  # noqa: F401  (connects the sign-in signal that keeps a visitor's practice)
        from practice.models import Question

        content_cache.watch(Question)
