"""Practice pages: the question bank, answering, the review queue, progress, mock interviews, exports."""

import hashlib
from datetime import datetime

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from courseware import content_cache, kept_pages
from courseware.choices import shuffled_order
from courseware.content_cache import slot
from courseware.kept_pages import kept_page
from practice import bank, charts, clock, drills, exports, interviewer, scheduling, stats
from practice.mock import phase_seconds, read_phases, timeline
from practice.models import Attempt, MockInterview, Question, Rating
from practice.progress import progress_for
from practice.question_files import TOPICS
from practice.rubric import match_answer

MAX_ANSWER_CHARS = 20_000
UPCOMING_DAYS = 14
HISTORY_DAYS = 30


def _get_question(question_id: str) -> Question:
    return get_object_or_404(Question, pk=question_id, retired=False)


def _question_to_show(question_id: str) -> Question:
    """The question for its page, kept per content version (courseware/content_cache.py): shared by every
    request of the process, so read it, never change it."""
    return content_cache.cached(f"question:{question_id}", lambda: _get_question(question_id))


def _get_attempt_for_visitor(request: HttpRequest, question_id: str, attempt_id: int) -> Attempt:
    """The visitor's own attempt at this question (from their account or session), or 404."""
    attempt = progress_for(request).attempt(attempt_id)
    if attempt.question_id != question_id:
        raise Http404("No such attempt at this question.")
    return attempt


# --- The bank --------------------------------------------------------------------------


FILTERS = ("topic", "kind", "difficulty", "status")


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The bank, kept whole (courseware/kept_pages.py); its list kept per filters and learner's badges (practice/bank.py)."""
    progress = progress_for(request)
    today = clock.today()
    due_dates = progress.due_dates()
    scores = progress.latest_scores()
    filters = tuple(request.GET.get(name, "") for name in FILTERS)
    # Everything the list shows of this learner: two learners (or visitors) share a list only if it is the same.
    own = tuple(sorted((question_id, due_dates.get(question_id), scores.get(question_id)) for question_id in due_dates.keys() | scores.keys()))
    question_list = kept_pages.fragment("bank-list", (filters, today, own), lambda: _question_list(dict(zip(FILTERS, filters)), due_dates, scores, today))
    if request.htmx:
        return HttpResponse(question_list)
    own = {
        ("question-list", ""): question_list,
        ("filters", ""): kept_pages.fragment("bank-filters", filters, lambda: bank.filter_form(dict(zip(FILTERS, filters)))),
        ("due-count", ""): str(scheduling.due_count(due_dates.values(), today)),
    }
    return kept_page(request, "practice", "practice/index.html", lambda: {"total": len(bank.bank_rows()), "anonymous": progress.is_anonymous},
                     own)  # fmt: skip


def _question_list(filters: dict[str, str], due_dates: dict, scores: dict, today) -> str:
    """The bank's list: the kept rows that pass the filters, each with this learner's badges."""
    bank_rows = bank.bank_rows()
    rows = []
    for row in bank_rows:
        due = due_dates.get(row.id)
        status = bank.status(due, today)
        if filters["topic"] and filters["topic"] not in row.topics:
            continue
        if filters["kind"] and row.kind != filters["kind"]:
            continue
        if filters["difficulty"] and str(row.difficulty) != filters["difficulty"]:
            continue
        if filters["status"] and status != filters["status"]:
            continue
        rows.append((row, status, due, scores.get(row.id)))
    return render_to_string("practice/index.html#question_list", {"rows_html": bank.list_html(rows), "shown": len(rows), "total": len(bank_rows)})


# --- Answering -----------------------------------------------------------------------------


def _options_shown(progress, question: Question, attempts_before: int) -> list[tuple[int, dict]]:
    """A choice question's options as (index in the file, option), in this candidate's order for
    their next attempt (or, for a past attempt, the order they answered in): the same until they answer."""
    order = shuffled_order(len(question.options), "question", progress.learner_seed(), question.id, attempts_before)
    return [(i, question.options[i]) for i in order]


def _question_context(request: HttpRequest, question: Question, **extra) -> dict:
    progress = progress_for(request)
    return {
        "question": question,
        "hints_shown": _hints_shown(request, question),
        **_own_parts(progress, question),
        "anonymous": progress.is_anonymous,
        "max_answer_chars": MAX_ANSWER_CHARS,
        **extra,
    }


def _hints_shown(request: HttpRequest, question: Question) -> int:
    return max(0, min(_int(request.GET.get("hints"), 0), len(question.hints)))


def _own_parts(progress, question: Question) -> dict:
    """The candidate's own parts of a question page, as HTML: their next review, their order of a choice
    question's options (one of a few: kept rendered per order) and their attempts."""
    card = progress.card(question.id)
    attempts = progress.attempts(question.id)
    options = ""
    if question.is_choice:
        shown = _options_shown(progress, question, len(attempts))
        options = kept_pages.fragment("question-options", (question.id, tuple(i for i, _ in shown)),
                                      lambda: render_to_string("practice/question.html#options", {"options_shown": shown}))  # fmt: skip
    next_review = history = ""
    if card.state:
        next_review = kept_pages.fragment("next-review", (timezone.localdate(card.due),),
                                          lambda: render_to_string("practice/question.html#next_review", {"card": card}))  # fmt: skip
    if attempts:
        history = kept_pages.fragment("question-history", tuple(_history_row(a) for a in attempts),
                                      lambda: render_to_string("practice/history.html", {"attempts": attempts}))  # fmt: skip
    return {"next_review_html": next_review, "options_html": options, "history_html": history}


def _history_row(a: Attempt) -> tuple:
    """Everything practice/history.html shows of an attempt (the answer by its digest): the key of a kept history,
    so two candidates share one only if every row they would see is the same."""
    return (a.pk, a.question_id, a.created_at, a.source, a.choice, a.score, None if a.grades is None else tuple(a.grades), len(a.matches),
            hashlib.sha256(a.answer.encode()).digest())  # fmt: skip


@require_GET
def question(request: HttpRequest, question_id: str) -> HttpResponse:
    """A question, kept whole per number of hints shown (courseware/kept_pages.py), with the candidate's own parts."""
    q = _question_to_show(question_id)
    if request.htmx and "hints" in request.GET:
        return render(request, "practice/question.html#hints", _question_context(request, q))
    progress = progress_for(request)
    hints_shown = _hints_shown(request, q)
    parts = _own_parts(progress, q)
    kept_context = {"question": q, "hints_shown": hints_shown, "anonymous": progress.is_anonymous, "max_answer_chars": MAX_ANSWER_CHARS,
                    **{name: slot(kind) for kind, name in _OWN_PARTS.items()}}  # fmt: skip
    return kept_page(request, f"question:{q.id}:{hints_shown}", "practice/question.html", lambda: kept_context,
                     {(kind, ""): parts[name] for kind, name in _OWN_PARTS.items()})  # fmt: skip


_OWN_PARTS = {"next-review": "next_review_html", "options": "options_html", "history": "history_html"}  # slot: context name


@require_POST
def preview(request: HttpRequest) -> HttpResponse:
    """The answer as it will show, Markdown rendered and sanitised (practice/rendering.py)."""
    text = request.POST.get("answer", "")[:MAX_ANSWER_CHARS]
    return render(request, "practice/question.html#answer_preview", {"preview_text": text})


@require_POST
def answer(request: HttpRequest, question_id: str) -> HttpResponse:
    q = _get_question(question_id)
    progress = progress_for(request)
    now = clock.now()
    if q.is_choice:
        choice = _int(request.POST.get("choice"), -1)
        if not 0 <= choice < len(q.options):
            return _answer_error(request, q, "Pick one of the options first.")
        correct = choice == q.correct_option
        point = q.rubric[0]
        found = {"point": point["point"], "weight": point["weight"], "found": correct, "sentence": "", "term": "",
                 "terms": [], "explanation": "" if correct else f"Why it matters: {point['why']}"}  # fmt: skip
        attempt = Attempt(question=q, source=Attempt.Source.CHOICE, created_at=now, choice=choice, matches=[found])
        _grade(progress, attempt, [1.0 if correct else 0.0], now, Rating.GOOD if correct else Rating.AGAIN)
    elif q.is_estimate:
        text = request.POST.get("estimate", "").strip()[:200]
        try:
            value = drills.parse_estimate(text, q.estimate["unit"])
        except drills.NotAnEstimate as exc:
            return _answer_error(request, q, str(exc), text)
        right = drills.check_estimate(value, q.estimate["answer"], q.estimate["tolerance"]).right
        attempt = Attempt(question=q, source=Attempt.Source.ESTIMATE, created_at=now, answer=text, matches=[_estimate_match(q, right)])
        _grade(progress, attempt, [1.0 if right else 0.0], now, Rating.GOOD if right else Rating.AGAIN)
    else:
        text = request.POST.get("answer", "").strip()
        if not text:
            return _answer_error(request, q, "Write an answer first, or give up to see the model answer.")
        if len(text) > MAX_ANSWER_CHARS:
            return _answer_error(request, q, f"Keep the answer under {MAX_ANSWER_CHARS:,} characters.", text)
        attempt = _written_attempt(q, text, Attempt.Source.ANSWER, now)
        progress.save_attempt(attempt)
    return redirect(_attempt_url(attempt))


def _estimate_match(q: Question, right: bool) -> dict:
    """An estimation drill's one rubric point, found when the estimate is within the tolerance."""
    point = q.rubric[0]
    return {"point": point["point"], "weight": point["weight"], "found": right, "sentence": "", "term": "", "terms": [],
            "explanation": "" if right else point["why"]}  # fmt: skip


def _written_attempt(q: Question, text: str, source: str, now: datetime) -> Attempt:
    matches = [m.as_dict() for m in match_answer(text, q.rubric)]
    return Attempt(question=q, source=source, created_at=now, answer=text, matches=matches)


def _answer_error(request: HttpRequest, q: Question, message: str, text: str = "") -> HttpResponse:
    context = _question_context(request, q, error=message, draft=text, preview_text=text)
    return render(request, "practice/question.html", context, status=400)


@require_POST
def give_up(request: HttpRequest, question_id: str) -> HttpResponse:
    """Show the model answer now; the card comes back soon (rated Again)."""
    q = _get_question(question_id)
    progress = progress_for(request)
    now = clock.now()
    text = request.POST.get("answer", "").strip()[:MAX_ANSWER_CHARS]
    if q.is_estimate:
        attempt = Attempt(question=q, source=Attempt.Source.GAVE_UP, created_at=now, matches=[_estimate_match(q, False)])
    else:
        attempt = _written_attempt(q, text, Attempt.Source.GAVE_UP, now)
    _grade(progress, attempt, [0.0] * len(attempt.matches), now, Rating.AGAIN)
    return redirect(_attempt_url(attempt) + "#model-answer")


def _grade(progress, attempt: Attempt, credits: list[float], now: datetime, rating: int | None = None) -> None:
    """Record the candidate's credits, score and rating on the attempt and schedule the question's card."""
    q = attempt.question
    attempt.grades = credits
    attempt.score = scheduling.score_from_credits(attempt.matches, credits)
    attempt.rating = rating or scheduling.rating_for_score(attempt.score)
    attempt.graded_at = now
    card = scheduling.review(progress.card(q.id), attempt.rating, now)
    attempt.due_after = card.due
    progress.save_graded(attempt, card)


@require_GET
def attempt(request: HttpRequest, question_id: str, attempt_id: int) -> HttpResponse:
    a = _get_attempt_for_visitor(request, question_id, attempt_id)
    q = a.question
    # The attempt keeps its own copy of the points it was matched against, so a later
    # edit of the question's rubric cannot shift grades onto the wrong points.
    grades = a.grades or [None] * len(a.matches)
    grade_names = {credit: name for name, credit in scheduling.CREDITS.items()}
    points = [
        {"index": i, "match": match, "grade": grade, "grade_name": grade_names.get(grade, ""),
         "why": q.rubric[i]["why"] if i < len(q.rubric) else ""}
        for i, (match, grade) in enumerate(zip(a.matches, grades, strict=True))
    ]  # fmt: skip
    progress = progress_for(request)
    attempts = progress.attempts(q.id)
    context = {
        "question": q,
        "attempt": a,
        "points": points,
        "credits": scheduling.CREDITS,
        "attempts": attempts,
        "options_shown": _options_shown(progress, q, sum(1 for b in attempts if b.pk < a.pk)) if q.is_choice else [],
        "estimate_verdict": _estimate_verdict(q, a) if a.source == Attempt.Source.ESTIMATE else "",
        "mock_review": _mock_review(progress, a) if a.source == Attempt.Source.MOCK else None,
        "anonymous": progress_for(request).is_anonymous,
        "due_in_days": (timezone.localdate(a.due_after) - clock.today()).days if a.due_after else None,
    }
    return render(request, "practice/attempt.html", context)


def _mock_review(progress, a: Attempt) -> dict | None:
    """What the interviewer asked after each phase, and the minutes each phase took against the plan."""
    m = next((m for m in progress.mocks() if m.attempt_id == a.pk), None)
    if m is None or m.finished_at is None:
        return None
    phases = read_phases()
    rounds = []
    for index, asked in enumerate(m.follow_ups[: len(phases)]):
        questions = [{**q, "found": q["point"] < len(a.matches) and a.matches[q["point"]]["found"]} for q in asked]
        if questions:
            rounds.append({"title": phases[index].title, "final": index == len(phases) - 1, "questions": questions})
    times = interviewer.phase_times(_timeline(m, m.finished_at), m.phase_seconds, m.finished_at)
    return {
        "rounds": rounds,
        "times": [{"title": p.title, **t, "over": t["spent"] > t["planned"]} for p, t in zip(phases, times, strict=False)],
        "planned": sum(m.phase_seconds),
        "spent": round((m.finished_at - m.started_at).total_seconds()),
    }


def _estimate_verdict(q: Question, a: Attempt) -> str:
    """What the drill's review says about the estimate: how far it is from the answer."""
    spec = q.estimate
    value = drills.parse_estimate(a.answer, spec["unit"])
    return drills.check_estimate(value, spec["answer"], spec["tolerance"]).describe(spec["answer"], spec["unit"], spec["tolerance"])


@require_POST
def grade(request: HttpRequest, question_id: str, attempt_id: int) -> HttpResponse:
    a = _get_attempt_for_visitor(request, question_id, attempt_id)
    if a.graded:
        return redirect(_attempt_url(a))
    names = [request.POST.get(f"point-{i}") for i in range(len(a.matches))]
    if any(name not in scheduling.CREDITS for name in names):
        return HttpResponseBadRequest("Grade every point: covered, partly or missed.")
    _grade(progress_for(request), a, [scheduling.CREDITS[name] for name in names], clock.now())
    return redirect(_attempt_url(a) + "#result")


def _attempt_url(a: Attempt) -> str:
    return reverse("practice:attempt", kwargs={"question_id": a.question_id, "attempt_id": a.pk})


# --- Review queue and progress --------------------------------------------------------------


@require_GET
def review(request: HttpRequest) -> HttpResponse:
    progress = progress_for(request)
    today = clock.today()
    cards = progress.cards()
    attempts = progress.attempts()
    seen = {c.question_id for c in cards}
    upcoming = scheduling.due_per_day(cards, today, UPCOMING_DAYS)
    context = {
        "today": today,
        "due": scheduling.due_cards(cards, today),
        "new_questions": [q for q in Question.objects.filter(retired=False) if q.id not in seen][:5],
        "streak": scheduling.streak(stats.practice_days(attempts), today),
        "reviewed_today": sum(1 for a in attempts if a.graded and timezone.localdate(a.graded_at) == today),
        "upcoming_chart": charts.column_chart([(d.strftime("%a %d"), n) for d, n in upcoming], "due"),
        "upcoming": upcoming,
        "anonymous": progress.is_anonymous,
    }
    return render(request, "practice/review.html", context)


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    progress = progress_for(request)
    today = clock.today()
    attempts = progress.attempts()
    per_day = stats.attempts_per_day(attempts, today, HISTORY_DAYS)
    by_topic = stats.score_by_topic(attempts)
    graded = [a for a in attempts if a.graded]
    context = {
        "attempts": attempts[:20],
        "attempt_count": len(attempts),
        "question_count": len({a.question_id for a in attempts}),
        "average_score": round(sum(a.score for a in graded) / len(graded)) if graded else None,
        "streak": scheduling.streak(stats.practice_days(attempts), today),
        "due_count": len(scheduling.due_cards(progress.cards(), today)),
        "per_day_chart": charts.column_chart([(d.strftime("%d %b"), n) for d, n in per_day], "attempts"),
        "topic_chart": charts.bar_chart([(TOPICS[t], s) for t, s in by_topic], 100, "%"),
        "weakest": stats.weakest_topics(attempts),
        "anonymous": progress.is_anonymous,
    }
    return render(request, "practice/dashboard.html", context)


# --- Mock interviews -------------------------------------------------------------------------


@require_GET
def mock_index(request: HttpRequest) -> HttpResponse:
    progress = progress_for(request)
    context = {
        "questions": Question.objects.filter(retired=False, kind=Question.Kind.DESIGN),
        "phases": read_phases(),
        "mocks": progress.mocks(),
        "anonymous": progress.is_anonymous,
    }
    return render(request, "practice/mock_index.html", context)


@require_POST
def mock_start(request: HttpRequest) -> HttpResponse:
    q = get_object_or_404(Question, pk=request.POST.get("question", ""), retired=False, kind=Question.Kind.DESIGN)
    phases = read_phases()
    mock = MockInterview(
        question=q,
        started_at=clock.now(),
        phase_seconds=phase_seconds(q.minutes, phases),
        advanced_at=[None] * len(phases),
        notes=[""] * len(phases),
    )
    progress_for(request).save_mock(mock)
    return redirect("practice:mock", mock_id=mock.pk)


def _timeline(mock: MockInterview, now: datetime):
    advanced = [datetime.fromisoformat(t) if t else None for t in mock.advanced_at]
    return timeline(mock.started_at, mock.phase_seconds, advanced, now)


def _ask_follow_ups(progress, m: MockInterview, line) -> None:
    """Let the interviewer ask about every phase that has ended by now (practice/interviewer.py)."""
    if interviewer.ask_due_rounds(m.follow_ups, line.current, m.question.rubric, m.notes):
        progress.save_mock(m)


def _follow_up_round(m: MockInterview, index: int, phases) -> dict:
    """Round `index` (asked when phase `index` ended) as a page slot: questions is None until asked."""
    asked = m.follow_ups[index] if index < len(m.follow_ups) else None
    return {"index": index, "title": phases[index].title, "questions": asked, "final": index == len(phases) - 1}


@require_GET
def mock(request: HttpRequest, mock_id: int) -> HttpResponse:
    progress = progress_for(request)
    m = progress.mock(mock_id)
    if m.finished_at and m.attempt_id:
        return redirect("practice:attempt", question_id=m.question_id, attempt_id=m.attempt_id)
    now = clock.now()
    line = _timeline(m, now)
    _ask_follow_ups(progress, m, line)
    phases = read_phases()
    q = m.question
    sections = []
    for i, phase in enumerate(phases):
        extra = q.hints if phase.slug == "deep-dive" else q.follow_ups if phase.slug == "wrap-up" else []
        sections.append({
            "index": i, "phase": phase, "prompts": [*phase.prompts, *extra], "notes": m.notes[i],
            "minutes": m.phase_seconds[i] // 60, "ends_ms": int(line.ends[i].timestamp() * 1000),
            "state": "done" if i < line.current else "now" if i == line.current else "next",
            "asked_before": _follow_up_round(m, i - 1, phases) if i else None,
            "closing": _follow_up_round(m, i, phases) if i == len(phases) - 1 else None,
        })  # fmt: skip
    context = {
        "mock": m,
        "question": q,
        "sections": sections,
        "timeline": line,
        "server_now_ms": int(now.timestamp() * 1000),
        "current_title": phases[line.current].title if not line.over else "",
    }
    return render(request, "practice/mock.html", context)


def _save_notes(request: HttpRequest, m: MockInterview) -> None:
    for i in range(len(m.notes)):
        if f"notes-{i}" in request.POST:
            m.notes[i] = request.POST[f"notes-{i}"][:MAX_ANSWER_CHARS]


@require_POST
def mock_notes(request: HttpRequest, mock_id: int) -> HttpResponse:
    """Autosave from the page (htmx) while the candidate types."""
    progress = progress_for(request)
    m = progress.mock(mock_id)
    _save_notes(request, m)
    progress.save_mock(m)
    _ask_follow_ups(progress, m, _timeline(m, clock.now()))
    return render(request, "practice/mock.html#notes_saved", {"saved_at": clock.now()})


@require_POST
def mock_follow_ups(request: HttpRequest, mock_id: int) -> HttpResponse:
    """The page's timer saw a phase end: save the notes, let the interviewer ask, show round `round`."""
    progress = progress_for(request)
    m = progress.mock(mock_id)
    phases = read_phases()
    index = _int(request.POST.get("round"), -1)
    if not 0 <= index < len(phases):
        return HttpResponseBadRequest("Name a phase: round is 0 to the number of phases minus one.")
    _save_notes(request, m)
    progress.save_mock(m)
    if not m.finished_at:
        _ask_follow_ups(progress, m, _timeline(m, clock.now()))
    context = {"round": _follow_up_round(m, index, phases), "mock": m}
    return render(request, "practice/mock.html#follow_up_round", context)


@require_POST
def mock_next(request: HttpRequest, mock_id: int) -> HttpResponse:
    """Save the notes and start the next phase now, before its time."""
    progress = progress_for(request)
    m = progress.mock(mock_id)
    _save_notes(request, m)
    now = clock.now()
    line = _timeline(m, now)
    if line.current + 1 < len(m.phase_seconds):
        m.advanced_at[line.current + 1] = now.isoformat()
    elif not line.over:
        return mock_finish(request, mock_id)
    progress.save_mock(m)
    _ask_follow_ups(progress, m, _timeline(m, now))
    return redirect("practice:mock", mock_id=m.pk)


@require_POST
def mock_finish(request: HttpRequest, mock_id: int) -> HttpResponse:
    """End the interview: the notes of all phases become an attempt to review against the rubric."""
    progress = progress_for(request)
    m = progress.mock(mock_id)
    if m.finished_at and m.attempt_id:
        return redirect("practice:attempt", question_id=m.question_id, attempt_id=m.attempt_id)
    _save_notes(request, m)
    now = clock.now()
    phases = read_phases()
    if len(m.follow_ups) < len(phases) and _ask_closing_round(m, _timeline(m, now), len(phases)):
        progress.save_mock(m)
        return redirect(reverse("practice:mock", kwargs={"mock_id": m.pk}) + f"#follow-ups-{len(phases) - 1}")
    text = "\n\n".join(f"## {p.title}\n\n{notes.strip()}" for p, notes in zip(phases, m.notes) if notes.strip())
    a = progress.save_attempt(_written_attempt(m.question, text, Attempt.Source.MOCK, now))
    m.finished_at = now
    m.attempt_id = a.pk
    progress.save_mock(m)
    return redirect(_attempt_url(a))


def _ask_closing_round(m: MockInterview, line, phase_count: int) -> bool:
    """Before the interview ends, the interviewer's last round: True when it has questions to answer first.

    Phases that really ended get their rounds; phases skipped by finishing early get none,
    and the closing round asks about whatever the notes still miss.
    """
    interviewer.ask_due_rounds(m.follow_ups, min(line.current, phase_count - 1), m.question.rubric, m.notes)
    m.follow_ups += [[] for _ in range(phase_count - 1 - len(m.follow_ups))]
    interviewer.ask_due_rounds(m.follow_ups, phase_count, m.question.rubric, m.notes)
    return bool(m.follow_ups[-1])


# --- Exports -------------------------------------------------------------------------------------


@require_GET
def export_deck(request: HttpRequest) -> HttpResponse:
    deck = exports.anki_deck(Question.objects.filter(retired=False), clock.now())
    response = HttpResponse(deck, content_type="application/apkg")
    response["Content-Disposition"] = 'attachment; filename="faultline-questions.apkg"'
    return response


@require_GET
def export_attempts(request: HttpRequest) -> HttpResponse:
    attempts = progress_for(request).attempts()
    response = HttpResponse(exports.attempts_csv(attempts), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="faultline-attempts-{clock.today():%Y-%m-%d}.csv"'
    return response


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
