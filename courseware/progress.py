"""What a signed-in learner has read and where they stopped."""

from dataclasses import dataclass
from functools import cache, cached_property

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Prefetch
from django.urls import reverse
from django.utils import timezone

from config.prepared import Prepared, driver_sql, fetch_all
from courseware import content_cache
from courseware.models import Lesson, LessonProgress, Module


@dataclass
class ModuleProgress:
    module: Module
    lessons: list[Lesson]
    read: set[int]  # ids of the lessons read

    @cached_property
    def read_count(self) -> int:
        return sum(lesson.id in self.read for lesson in self.lessons)

    @property
    def total(self) -> int:
        return len(self.lessons)

    @property
    def percent(self) -> int:
        return round(100 * self.read_count / self.total) if self.total else 0


def outline() -> list[tuple[Module, list[Lesson]]]:
    """Every module with its lessons (outline fields only, each with its `url`), built once per content version.

    The instances are shared by every request of the process: read them, never change them."""
    return content_cache.cached("course-outline", _build_outline)


def _build_outline() -> list[tuple[Module, list[Lesson]]]:
    modules = Module.objects.prefetch_related(Prefetch("lessons", queryset=Lesson.objects.outline()))
    found = []
    for module in modules:
        lessons = list(module.lessons.all())
        for lesson in lessons:
            lesson.module = module  # so lesson.module.title costs no query
            lesson.url = reverse("courseware:lesson", args=[lesson.slug])  # a course map links every lesson
        found.append((module, lessons))
    return found


def lessons_in_order() -> list[Lesson]:
    return [lesson for _, lessons in outline() for lesson in lessons]


# A learner's own rows, asked for on every lesson page: compiled once (config/prepared.py).
_READ = Prepared(lambda user_id: LessonProgress.objects.filter(user_id=user_id, read_at__isnull=False)
                 .values_list("lesson_id", flat=True), user_id=-1)  # fmt: skip
_LAST_VISITED = Prepared(lambda user_id: LessonProgress.objects.filter(user_id=user_id, last_visited_at__isnull=False)
                         .order_by("-last_visited_at").values_list("lesson_id", flat=True)[:1], user_id=-1)  # fmt: skip


def read_lesson_ids(user: AbstractBaseUser | AnonymousUser) -> set[int]:
    if not user.is_authenticated:
        return set()
    return set(_READ(user_id=user.pk))


def course_map(user: AbstractBaseUser | AnonymousUser) -> list[ModuleProgress]:
    read = read_lesson_ids(user)
    return [ModuleProgress(module, lessons, read) for module, lessons in outline()]


def module_progress(user: AbstractBaseUser | AnonymousUser, module: Module) -> ModuleProgress:
    lessons = next((lessons for kept, lessons in outline() if kept.id == module.id), [])
    return ModuleProgress(module, lessons, read_lesson_ids(user))


def record_visit(user: AbstractBaseUser, lesson: Lesson) -> bool:
    """Note the visit (for "continue where you left off") and answer whether the learner marked the lesson read.

    The visit's moment serves only to order a learner's lessons, so a lesson that already is their latest visit
    is not written again: one read says so (a reload, an answered check, the next page of a long lesson). Otherwise
    one UPDATE … RETURNING, or an INSERT the first time. A write was most of a signed-in lesson page's cost over a
    visitor's on SQLite (issue 15: pages bench, cProfile)."""
    sql, raw = _latest_visit_sql()
    found = fetch_all(DEFAULT_DB_ALIAS, sql, raw, [user.pk, lesson.pk])
    if found and found[0][1]:
        return found[0][0] is not None
    now = timezone.now()
    sql, raw = _visit_sql()
    rows = fetch_all(DEFAULT_DB_ALIAS, sql, raw, [connection.ops.adapt_datetimefield_value(now), user.pk, lesson.pk])
    row = rows[0] if rows else None
    if row is not None:
        return row[0] is not None
    progress, created = LessonProgress.objects.get_or_create(user=user, lesson=lesson, defaults={"last_visited_at": now})
    if not created:  # written between the UPDATE and here
        LessonProgress.objects.filter(pk=progress.pk).update(last_visited_at=now)
    return progress.read_at is not None


@cache
def _latest_visit_sql() -> tuple[str, str]:
    """This lesson's read mark, and whether it is the learner's latest visit (the one `_LAST_VISITED` finds)."""
    field = LessonProgress._meta.get_field
    quote = connection.ops.quote_name
    table, user, lesson = quote(LessonProgress._meta.db_table), quote(field("user").column), quote(field("lesson").column)
    visited = quote(field("last_visited_at").column)
    sql = (f"SELECT {quote(field('read_at').column)}, {lesson} = (SELECT latest.{lesson} FROM {table} latest "
           f"WHERE latest.{user} = this.{user} AND latest.{visited} IS NOT NULL ORDER BY latest.{visited} DESC LIMIT 1) "
           f"FROM {table} this WHERE this.{user} = %s AND this.{lesson} = %s")  # fmt: skip
    return sql, driver_sql(DEFAULT_DB_ALIAS, sql)


@cache
def _visit_sql() -> tuple[str, str]:
    """The visit's UPDATE … RETURNING, written once, in Django's placeholders and the driver's (config/prepared.py)."""
    field = LessonProgress._meta.get_field
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(LessonProgress._meta.db_table)} SET {quote(field('last_visited_at').column)} = %s "
           f"WHERE {quote(field('user').column)} = %s AND {quote(field('lesson').column)} = %s "
           f"RETURNING {quote(field('read_at').column)}")  # fmt: skip
    return sql, driver_sql(DEFAULT_DB_ALIAS, sql)


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
    last = next(iter(_LAST_VISITED(user_id=user.pk)), None)
    return next((lesson for lesson in lessons_in_order() if lesson.pk == last), None)
