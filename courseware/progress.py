"""What a signed-in learner has read and where they stopped."""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch
from django.utils import timezone

from courseware.models import Lesson, LessonProgress, Module


@dataclass
class ModuleProgress:
    module: Module
    lessons: list[Lesson]
    read: set[int]  # ids of the lessons read

    @property
    def read_count(self) -> int:
        return sum(lesson.pk in self.read for lesson in self.lessons)

    @property
    def total(self) -> int:
        return len(self.lessons)

    @property
    def percent(self) -> int:
        return round(100 * self.read_count / self.total) if self.total else 0


def read_lesson_ids(user: AbstractBaseUser | AnonymousUser) -> set[int]:
    if not user.is_authenticated:
        return set()
    return set(LessonProgress.objects.filter(user=user, read_at__isnull=False).values_list("lesson_id", flat=True))


def course_map(user: AbstractBaseUser | AnonymousUser) -> list[ModuleProgress]:
    read = read_lesson_ids(user)
    modules = Module.objects.prefetch_related(Prefetch("lessons", queryset=Lesson.objects.outline()))
    return [ModuleProgress(module, list(module.lessons.all()), read) for module in modules]


def module_progress(user: AbstractBaseUser | AnonymousUser, module: Module) -> ModuleProgress:
    return ModuleProgress(module, list(module.lessons.outline()), read_lesson_ids(user))


def record_visit(user: AbstractBaseUser, lesson: Lesson) -> LessonProgress:
    progress, _ = LessonProgress.objects.update_or_create(user=user, lesson=lesson, defaults={"last_visited_at": timezone.now()})
    return progress


def mark_read(user: AbstractBaseUser, lesson: Lesson, read: bool) -> LessonProgress:
    """Mark the lesson read (or not); it is also the lesson the learner was last reading."""
    progress, _ = LessonProgress.objects.get_or_create(user=user, lesson=lesson)
    progress.last_visited_at = timezone.now()
    if read and progress.read_at is None:
        progress.read_at = progress.last_visited_at
    elif not read:
        progress.read_at = None
    progress.save(update_fields=["read_at", "last_visited_at"])
    return progress


def where_to_continue(user: AbstractBaseUser | AnonymousUser) -> Lesson | None:
    """The lesson the learner was reading: the one visited last, read or not.

    Not the next one in course order: a learner who marks a lesson read may still be in the middle
    of it (its checks, its labs), and one who goes back to an earlier lesson wants that one again.
    The lesson page links onward from there.
    """
    if not user.is_authenticated:
        return None
    last = LessonProgress.objects.filter(user=user, last_visited_at__isnull=False).order_by("-last_visited_at").first()
    if last is None:
        return None
    return Lesson.objects.outline().select_related("module").get(pk=last.lesson_id)
