"""The question bank's list, built once per content version (courseware/content_cache.py).

Each row's HTML comes from the `question_row` partial of practice/index.html, rendered once
with a marker where the learner's own badges go (due, next review, latest score). A request
filters the kept rows and puts each learner's badges in, so the bank costs the same whether
it holds 50 questions or 500, and a learner's part is two small queries.
"""

from dataclasses import dataclass
from datetime import date, datetime

from django.template.loader import get_template
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from courseware import content_cache
from practice import scheduling
from practice.models import Question
from practice.question_files import TOPICS

# Where a row's learner badges go; question text is escaped, so no question can contain it.
LEARNER_BADGES = "<!--learner-badges-->"
LIST_FIELDS = ("id", "title", "kind", "difficulty", "topics", "minutes")


@dataclass(frozen=True)
class BankRow:
    id: str
    kind: str
    difficulty: int
    topics: tuple[str, ...]
    before: str  # the row's HTML up to the learner's badges
    after: str  # and after them


def filter_form(filters: dict[str, str]) -> SafeString:
    """The bank's filters, rendered once, with the chosen option of each select marked."""
    kept = content_cache.cached("practice-filters", lambda: content_cache.SlottedHTML.render(
        "practice/index.html#filter_form", {"topics": TOPICS.items(), "kinds": Question.Kind.choices}))  # fmt: skip
    return kept.fill(lambda select, value: " selected" if filters.get(select) == value else "")


def bank_rows() -> list[BankRow]:
    return content_cache.cached("practice-bank", _build_rows)


def _build_rows() -> list[BankRow]:
    row_template = get_template("practice/index.html#question_row")
    rows = []
    for question in Question.objects.filter(retired=False).only(*LIST_FIELDS):
        html = row_template.render({"question": question, "learner_badges": mark_safe(LEARNER_BADGES)})
        before, after = html.split(LEARNER_BADGES)
        rows.append(BankRow(question.id, question.kind, question.difficulty, tuple(question.topics), before, after))
    return rows


def status(due: datetime | None, today: date) -> str:
    """A row's status for the learner: new (no card yet), due (today or overdue) or scheduled (later)."""
    if due is None:
        return "new"
    return "due" if scheduling.due_day(due) <= today else "scheduled"


def learner_badges(status: str, due: datetime | None, score: int | None) -> str:
    """A learner's badges on one row (escaped HTML): due or next review, and their latest score."""
    badges = ""
    if status == "due":
        badges = '<span class="badge due">Due</span>'
    elif status == "scheduled":
        day = formats.date_format(timezone.localtime(due), "j M")
        badges = format_html('<span class="badge plain" title="Next review">Next {}</span>', day)
    if score is not None:
        badges += format_html('<span class="badge score" title="Latest score">{}%</span>', score)
    return badges


def list_html(rows: list[tuple[BankRow, str, datetime | None, int | None]]) -> SafeString:
    """The list's rows, each with the learner's badges: (row, status, due, score). A row the learner has not
    touched takes no formatting at all, so a long bank costs a join."""
    return mark_safe("".join(
        row.before + row.after if status == "new" and score is None else row.before + learner_badges(status, due, score) + row.after
        for row, status, due, score in rows
    ))  # fmt: skip
