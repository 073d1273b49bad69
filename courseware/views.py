"""Lesson pages: the course map, a lesson, inline checks, progress, the glossary and search.

Anyone can read everything; answers and progress are kept only for signed-in learners.
"""

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import cache

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from config.prepared import Prepared, attnames
from config.whole_numbers import whole_number
from courseware import content_cache, kept_pages, progress
from courseware.choices import shuffled_order
from courseware.kept_pages import kept_page
from courseware.models import CheckAnswer, GlossaryTerm, InlineCheck, Lesson
from courseware.rendering import CHECK_MARKER, code_css as generate_code_css
from courseware.search import search_lessons
from labs.catalogue import LABS


@dataclass
class CheckState:
    """An inline check as one reader sees it: not yet answered, or just answered with `chosen`.

    `order` is the order this reader sees the options in; `chosen` and answers keep the
    option's index in the file, so a stored answer means the same option whatever the order.
    """

    check: InlineCheck
    chosen: int | None = None
    previous: CheckAnswer | None = None
    order: list[int] | None = None

    @property
    def correct(self) -> bool:
        return self.chosen is not None and self.check.options[self.chosen]["correct"]

    @property
    def previous_option(self) -> int | None:
        return self.previous.option if self.previous is not None else None

    @property
    def shown(self) -> list[tuple[int, dict]]:
        """(index in the file, option) in the order this reader sees them."""
        order = self.order if self.order is not None else range(len(self.check.options))
        return [(i, self.check.options[i]) for i in order]


def option_order(request: HttpRequest, check: InlineCheck, answered_before: int) -> list[int]:
    """This reader's order for a check's options, the same until they answer it again.

    A signed-in learner gets a new order for each attempt (the count of their earlier
    answers is part of the seed); visitors, whose answers are not kept, share one order per check.
    """
    reader = f"user-{request.user.pk}" if request.user.is_authenticated else "visitor"
    return shuffled_order(len(check.options), "check", reader, check.check_id, answered_before)


@cache
def _code_css() -> str:
    return generate_code_css()


@cache
def code_css_version() -> str:
    return hashlib.sha256(_code_css().encode()).hexdigest()[:12]


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The course map, kept whole (courseware/kept_pages.py), with this learner's progress in its slots."""
    own = _course_progress(request) if request.user.is_authenticated else {}
    return kept_page(request, "lessons", "courseware/index.html", _course_context, own)


def _course_context() -> dict:
    outline = progress.outline()
    return {"outline": outline, "modules": [progress.ModuleProgress(module, lessons, set()) for module, lessons in outline],
            "lesson_count": sum(len(lessons) for _, lessons in outline)}  # fmt: skip


def _course_progress(request: HttpRequest) -> dict[tuple[str, str], str]:
    """A learner's slots on the course map: their "continue" card, each module's bar, each lesson they read."""
    modules = progress.course_map(request.user)
    lesson_count, read_count = sum(m.total for m in modules), sum(m.read_count for m in modules)
    continue_lesson = progress.where_to_continue(request.user)
    context = {"read_count": read_count, "lesson_count": lesson_count, "continue_lesson": continue_lesson, "modules": modules}
    own = {("continue", ""): kept_pages.fragment("continue", (continue_lesson and continue_lesson.pk, read_count),
                                                 lambda: render_to_string("courseware/index.html#continue", context))}  # fmt: skip
    bars = content_cache.cached("module-progress-bars", dict)  # a module's bar for each count of lessons read
    for entry in modules:
        key = (entry.module.pk, entry.read_count)
        if key not in bars:
            bars[key] = render_to_string("courseware/index.html#module_progress", {"entry": entry})
        own["module-progress", str(entry.module.pk)] = bars[key]
    for pk in modules[0].read if modules else ():
        own["read-class", str(pk)] = " is-read"
        own["read-badge", str(pk)] = '<span class="read-badge">✓ Read</span>'
    return own


@dataclass(frozen=True)
class LessonContent:
    """What a lesson page shows that changes only with content: kept per content version (courseware/content_cache.py)."""

    lesson: Lesson
    checks: list[InlineCheck]
    prerequisites: list[Lesson]
    pieces: list[str]  # the stored HTML split at its check markers: odd pieces are check ids


def lesson_content(slug: str) -> LessonContent:
    return content_cache.cached(f"lesson:{slug}", lambda: _build_lesson_content(slug))


def _build_lesson_content(slug: str) -> LessonContent:
    lesson = get_object_or_404(Lesson.objects.select_related("module").defer("search_text", "body_text"), slug=slug)
    wanted = set(lesson.prerequisites.values_list("pk", flat=True))
    return LessonContent(
        lesson=lesson,
        checks=list(lesson.checks.all()),
        prerequisites=[other for other in progress.lessons_in_order() if other.pk in wanted],
        pieces=CHECK_MARKER.split(lesson.html),
    )


# A reader's answers on the page, asked for on every view of a lesson: compiled once (config/prepared.py).
_ANSWERS_IN_LESSON = Prepared(lambda user_id, lesson_id: CheckAnswer.objects.filter(user_id=user_id, inline_check__lesson_id=lesson_id)
                              .order_by("answered_at").values_list(*attnames(CheckAnswer)), user_id=-1, lesson_id=-2)  # fmt: skip


@require_GET
def lesson(request: HttpRequest, slug: str) -> HttpResponse:
    return _lesson_page(request, lesson_content(slug))


def _lesson_page(request: HttpRequest, content: LessonContent, answered: CheckState | None = None) -> HttpResponse:
    """The lesson page, kept whole (courseware/kept_pages.py); `answered` shows one check with its result (an
    answer sent without htmx). The reader's parts go in its slots: each check (a form kept per option order
    with their last answer, or their result), and a learner's read mark and progress in the module."""
    lesson = content.lesson
    checks = {check.check_id: CheckState(check) for check in content.checks}
    answered_before = Counter()
    read = None  # a visitor's; a learner's: whether they marked the lesson read
    if request.user.is_authenticated:
        read = progress.record_visit(request.user, lesson)
        check_ids = {check.pk: check.check_id for check in content.checks}
        for answer in _ANSWERS_IN_LESSON.instances(CheckAnswer, user_id=request.user.pk, lesson_id=lesson.pk):
            checks[check_ids[answer.inline_check_id]].previous = answer  # oldest first: the latest answer wins
            answered_before[check_ids[answer.inline_check_id]] += 1
    for check_id, state in checks.items():
        state.order = option_order(request, state.check, answered_before[check_id])
    if answered is not None:
        checks[answered.check.check_id] = answered
    forms = content_cache.cached("check-forms", dict)  # (check id, option order) -> SlottedHTML, for this content version
    token = get_token(request)
    own = {}
    for check_id, state in checks.items():
        if state.chosen is None:  # a form to answer: kept rendered, the reader's parts in its slots
            own["check", check_id] = _check_form(forms, state, lesson, token)
        else:
            own["check", check_id] = render_to_string("courseware/lesson.html#inline_check", {"state": state, "lesson": lesson, "user": request.user})
    if read is not None:
        if read:
            own["read-badge", ""] = '· <span class="read-badge">✓ Read</span>'
        module_progress = progress.module_progress(request.user, lesson.module)
        kept = kept_pages.fragment("read-status", (lesson.pk, read, module_progress.read_count),
                                   lambda: content_cache.SlottedHTML.render("courseware/lesson.html#read_status", {
                                       "lesson": lesson, "reading": {"read_at": read}, "module_progress": module_progress,
                                       "user": kept_pages.KeptVisitor(True), "csrf_token": content_cache.slot("csrf")}))  # fmt: skip
        own["read-status", ""] = kept.fill_from({("csrf", ""): token})
    return kept_page(request, f"lesson:{lesson.slug}", "courseware/lesson.html", lambda: _kept_lesson_context(content), own)


def _kept_lesson_context(content: LessonContent) -> dict:
    """What the kept lesson page shows of the lesson itself; a slot for each check."""
    lesson = content.lesson
    neighbours = {other.position: other for other in progress.lessons_in_order() if abs(other.position - lesson.position) == 1}
    return {
        "lesson": lesson,
        "segments": [("html", mark_safe(piece) if n % 2 == 0 else content_cache.slot("check", piece)) for n, piece in enumerate(content.pieces)],
        "previous_lesson": neighbours.get(lesson.position - 1),
        "next_lesson": neighbours.get(lesson.position + 1),
        "prerequisites": content.prerequisites,
        "labs": [(slug, LABS.get(slug, slug)) for slug in lesson.labs],
        "code_css_version": code_css_version(),
        # Named here, so that no lookup fails (a failed template lookup raises, is caught and logged).
        "focus": False,
        "error": "",
    }


def _check_form(forms: dict, state: CheckState, lesson: Lesson, token: str) -> SafeString:
    """An unanswered check's form: rendered once per option order (a visitor's is the same for everyone, a
    learner's changes as they answer again), with this reader's CSRF token, last choice and last answer put in."""
    key = (state.check.check_id, tuple(state.order))
    if key not in forms:
        context = {"state": CheckState(state.check, order=state.order), "lesson": lesson, "kept_form": True,
                   "csrf_token": content_cache.slot("csrf"), "focus": False, "error": ""}  # fmt: skip
        forms[key] = content_cache.SlottedHTML.render("courseware/lesson.html#inline_check", context)
    own = {("csrf", ""): token}
    previous = state.previous
    if previous is not None:
        own["checked", str(previous.option)] = " checked"
        own["previous", ""] = kept_pages.fragment("check-previous", (timezone.localdate(previous.answered_at), previous.correct),
                                                  lambda: render_to_string("courseware/lesson.html#check_previous", {"previous": previous}))  # fmt: skip
    return forms[key].fill_from(own)


def _get_check(check_id: str) -> InlineCheck:
    return get_object_or_404(InlineCheck.objects.select_related("lesson__module"), check_id=check_id)


@require_GET
def inline_check(request: HttpRequest, check_id: str) -> HttpResponse:
    """A check's unanswered form, for "Try again"; without htmx, the check on its lesson page."""
    check = _get_check(check_id)
    if not request.htmx:
        return redirect(f"{reverse('courseware:lesson', args=[check.lesson.slug])}#check-{check.check_id}")
    state = CheckState(check, order=option_order(request, check, _answers_so_far(request, check)))
    context = {"state": state, "lesson": check.lesson, "focus": True}
    return render(request, "courseware/lesson.html#inline_check", context)


@require_POST
def answer_check(request: HttpRequest, check_id: str) -> HttpResponse:
    check = _get_check(check_id)
    chosen = whole_number(request.POST.get("option", ""), len(check.options) - 1)
    # The order the reader answered in: their answers before this one make the seed.
    order = option_order(request, check, _answers_so_far(request, check))
    if chosen is None:
        state = CheckState(check, order=order)
        context = {"state": state, "lesson": check.lesson, "error": "Choose one of the answers first."}
        return render(request, "courseware/lesson.html#inline_check", context, status=200 if request.htmx else 400)
    state = CheckState(check, chosen, order=order)
    if request.user.is_authenticated:
        CheckAnswer.objects.create(user=request.user, inline_check=check, option=chosen, correct=state.correct)
    if request.htmx:
        if request.user.is_authenticated:  # answering in place is reading the lesson, for "continue where you left off"
            progress.record_visit(request.user, check.lesson)
        return render(request, "courseware/lesson.html#inline_check", {"state": state, "lesson": check.lesson})
    return _lesson_page(request, lesson_content(check.lesson.slug), answered=state)


def _answers_so_far(request: HttpRequest, check: InlineCheck) -> int:
    if not request.user.is_authenticated:
        return 0
    return CheckAnswer.objects.filter(user=request.user, inline_check=check).count()


@require_POST
@login_required
def mark_read(request: HttpRequest, slug: str) -> HttpResponse:
    lesson = get_object_or_404(Lesson.objects.select_related("module"), slug=slug)
    reading = progress.mark_read(request.user, lesson, read=request.POST.get("read") == "1")
    if not request.htmx:
        return redirect("courseware:lesson", slug=lesson.slug)
    context = {"lesson": lesson, "reading": reading, "module_progress": progress.module_progress(request.user, lesson.module)}
    return render(request, "courseware/lesson.html#read_status", context)


@require_GET
def glossary(request: HttpRequest) -> HttpResponse:
    lessons = Prefetch("lessons", queryset=Lesson.objects.outline())
    terms = sorted(GlossaryTerm.objects.prefetch_related(lessons), key=lambda term: term.term.lower())
    by_letter: dict[str, list[GlossaryTerm]] = {}
    for term in terms:
        by_letter.setdefault(term.term[0].upper(), []).append(term)
    return render(request, "courseware/glossary.html", {"by_letter": by_letter.items()})


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    context = {"query": query, "results": search_lessons(query) if query else []}
    template = "courseware/search.html#search_results" if request.htmx else "courseware/search.html"
    return render(request, template, context)


@require_GET
@cache_control(public=True, max_age=60 * 60 * 24 * 365, immutable=True)
def code_css(request: HttpRequest) -> HttpResponse:
    """Pygments colours for both themes; the page links it with ?v=<hash>, so it may be cached for good."""
    return HttpResponse(_code_css(), content_type="text/css; charset=utf-8")
