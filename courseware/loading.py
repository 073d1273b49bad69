"""`load_content` and `check_content` for the lessons (see the two management commands).

Loading makes the tables match the files exactly and touches only what differs, so a second
run changes nothing; a lesson is rendered again only when its content hash changes.
"""

from pathlib import Path
from typing import Any

from django.db import models, transaction

from courseware.choices import ChoiceItem, measure_bias
from courseware.content_files import WORDS, Course, LessonSource, read_course
from courseware.content_report import ContentReport
from courseware.models import GlossaryTerm, InlineCheck, Lesson, Module
from labs import figures
from courseware.rendering import RenderedLesson, content_hash, render_lesson
from courseware.search import rebuild_index

# Rendering depends only on what the content hash covers, so a process that loads more than once
# (a test run, a long shell session) renders each version of a lesson once.
_rendered: dict[str, RenderedLesson] = {}
MAX_RENDERED = 256


def sync(model: type[models.Model], key: str, wanted: dict[str, dict[str, Any]], delete_stale: bool = True) -> tuple[dict[str, Any], int]:
    """Create, update (and delete) rows so `model` holds exactly `wanted` (key -> field values).

    Returns the rows by key and how many rows changed; unchanged rows are not written.
    """
    rows = {getattr(row, key): row for row in model.objects.all()}
    changed = 0
    for name, fields in wanted.items():
        row = rows.get(name)
        if row is None:
            rows[name] = model.objects.create(**{key: name}, **fields)
            changed += 1
        elif any(getattr(row, field) != value for field, value in fields.items()):
            for field, value in fields.items():
                setattr(row, field, value)
            row.save()
            changed += 1
    stale = [row.pk for name, row in rows.items() if name not in wanted]
    if stale and delete_stale:
        model.objects.filter(pk__in=stale).delete()
        changed += len(stale)
    return {name: rows[name] for name in wanted}, changed


def render_version(digest: str, lesson: LessonSource, course: Course) -> RenderedLesson:
    if digest not in _rendered:
        if len(_rendered) >= MAX_RENDERED:
            _rendered.clear()
        _rendered[digest] = render_lesson(lesson, course.glossary)
    return _rendered[digest]


def course_order(course: Course) -> list[LessonSource]:
    return sorted(course.lessons, key=lambda lesson: (course.modules[lesson.module].order, lesson.order))


def lesson_fields(lesson: LessonSource, course: Course, position: int, module: Module) -> dict[str, Any]:
    """The fields that come from the front matter and its neighbours, not from rendering."""
    labs = list(dict.fromkeys([*lesson.labs, *(link.slug for link in lesson.links if link.scheme == "lab")]))
    return {
        "title": lesson.title.strip(),
        "summary": lesson.summary.strip(),
        "module_id": module.pk,
        "order": lesson.order,
        "position": position,
        "minutes": lesson.minutes,
        "source": lesson.name,
        "labs": labs,
        "practice_questions": [{"id": q.id, "title": q.title} for q in course.questions_for(lesson)],
    }


def check_search_text(lesson: LessonSource) -> str:
    return " ".join(f"{check.question} " + " ".join(option.text for option in check.options) for check in lesson.checks)


def load_content(content_dir: Path | None = None, questions_dir: Path | None = None) -> str:
    """Load modules, glossary and lessons; raise ValueError("file:line: ...") on bad content."""
    course = read_course(content_dir, questions_dir)
    if course.errors:
        raise ValueError("\n".join(course.errors))
    with transaction.atomic():
        modules, changed = sync(
            Module, "slug", {m.slug: {"title": m.title, "order": m.order} for m in course.modules.values()}, delete_stale=False
        )
        terms, terms_changed = sync(
            GlossaryTerm, "slug",
            {t.slug: {"term": t.term, "aliases": t.aliases, "definition": t.definition} for t in course.glossary.values()},
        )  # fmt: skip
        changed += terms_changed
        existing = {lesson.slug: lesson for lesson in Lesson.objects.all()}
        wanted: dict[str, dict[str, Any]] = {}
        rendered: dict[str, list[str]] = {}
        for position, lesson in enumerate(course_order(course), start=1):
            fields = lesson_fields(lesson, course, position, modules[lesson.module])
            digest = content_hash(lesson, course.glossary)
            if lesson.slug not in existing or existing[lesson.slug].content_hash != digest:
                page = render_version(digest, lesson, course)
                rendered[lesson.slug] = page.terms_used
                search = " ".join([lesson.title, lesson.summary, page.code_text, check_search_text(lesson)])
                fields |= {
                    "content_hash": digest, "html": page.html, "toc_html": page.toc_html, "body_text": page.body_text,
                    "search_text": search.lower(), "word_count": page.word_count,
                }  # fmt: skip
            wanted[lesson.slug] = fields
        lessons, lessons_changed = sync(Lesson, "slug", wanted)
        changed += lessons_changed
        stale_modules = Module.objects.exclude(slug__in=course.modules)
        changed += stale_modules.count()
        stale_modules.delete()

        for lesson in course.lessons:
            row = lessons[lesson.slug]
            if lesson.slug in rendered:
                row.glossary_terms.set([terms[slug] for slug in rendered[lesson.slug]])
            prerequisites = {lessons[slug].pk for slug in lesson.prerequisites}
            if set(row.prerequisites.values_list("pk", flat=True)) != prerequisites:
                row.prerequisites.set(prerequisites)
                changed += 1
        checks = {
            check.id: {
                "lesson_id": lessons[lesson.slug].pk,
                "position": n,
                "question": check.question,
                "options": [{"text": o.text, "explanation": o.explanation, "correct": o.correct} for o in check.options],
            }
            for lesson in course.lessons
            for n, check in enumerate(lesson.checks, start=1)
        }
        _, checks_changed = sync(InlineCheck, "check_id", checks)
        changed += checks_changed
        rebuild_index()
    return (
        f"{len(lessons)} lessons in {len(modules)} modules, {len(terms)} glossary terms, {len(checks)} inline checks; "
        f"{changed} changed, {len(rendered)} rendered"
    )


def check_content(content_dir: Path | None = None, questions_dir: Path | None = None) -> ContentReport:
    """Validate the lesson files and the Faultline figures they state; render them too, to report
    glossary terms they list but never use."""
    course = read_course(content_dir, questions_dir)
    report = ContentReport(errors=course.errors, warnings=course.warnings)
    for lesson in course.lessons:
        for statement in lesson.stated_figures:
            problem = figures.disagreement(statement)
            if problem:
                report.errors.append(f"{lesson.name}:{statement.line}: {problem}")
    if not course.errors:
        for lesson in course.lessons:
            page = render_version(content_hash(lesson, course.glossary), lesson, course)
            for slug in sorted(set(lesson.glossary) - set(page.terms_used)):
                report.warnings.append(f"{lesson.name}: lists the glossary term '{slug}' but never uses it")
            if page.word_count not in WORDS:
                report.warnings.append(f"{lesson.name}: {page.word_count} words; lessons run {WORDS.start}-{WORDS.stop - 1}")
    checks = sum(len(lesson.checks) for lesson in course.lessons)
    bias = measure_bias(check_items(course))
    report.errors += bias.problems("inline checks")
    report.summary = (
        f"{len(course.lessons)} lessons, {len(course.glossary)} glossary terms, {checks} inline checks checked: "
        f"{len(report.errors)} error(s), {len(report.warnings)} warning(s); inline checks: {bias.summary()}"
    )
    return report


def check_items(course: Course) -> list[ChoiceItem]:
    """Every inline check, in the order its file gives the options, for the bias figures."""
    return [
        ChoiceItem(f"{lesson.name}:{check.line}", tuple(o.text for o in check.options), right)
        for lesson in course.lessons
        for check in lesson.checks
        for right in [next((i for i, o in enumerate(check.options) if o.correct), 0)]
    ]
