"""`load_content` and `check_content` for the question bank (named in PracticeConfig).

Loading is idempotent: a question whose file did not change is left alone, so a
second run reports every question unchanged. A question whose file is gone is
retired, not deleted, so the attempts that name it keep their history.
"""

from pathlib import Path

from django.conf import settings
from django.db import transaction

from courseware import content_cache
from courseware.choices import choice_item, measure_bias
from courseware.content_report import ContentReport
from practice import drills
from practice.mock import read_phases
from practice.models import Question
from practice.question_files import KINDS, content_dir, read_questions

FIELDS = (
    "title", "kind", "difficulty", "topic", "topics", "minutes", "prompt", "hints", "rubric", "options",
    "model_answer", "follow_ups", "mistakes", "lessons", "labs", "source",
)  # fmt: skip


def _read_drills(found) -> drills.DrillFiles:
    """The drill files, with an error for a drill whose id a question already has (they share one bank)."""
    drill_files = drills.read_drills()
    question_ids = {q["id"] for q in found.questions}
    for drill in list(drill_files.drills):
        if drill["id"] in question_ids:
            drill_files.errors.append(f"{drill['source']}:1: id {drill['id']!r} is already used by a question")
            drill_files.drills.remove(drill)
    return drill_files


def check_questions() -> ContentReport:
    found = read_questions()
    drill_files = _read_drills(found)
    errors = list(found.errors) + drill_files.errors
    try:
        phases = len(read_phases())
    except ValueError as exc:
        errors.append(str(exc))
        phases = 0
    kinds = {kind: sum(q["kind"] == kind for q in found.questions) for kind in KINDS}
    by_kind = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    bias = measure_bias(choice_item(q["source"], q["options"]) for q in found.questions if q["kind"] == "choice")
    errors += bias.problems("choice questions")
    summary = (
        f"{len(found.questions)} of {found.files} question files valid ({by_kind}); "
        f"{len(drill_files.drills)} of {drill_files.files} estimation drills valid; "
        f"{phases} mock interview phases; choice questions: {bias.summary()}"
    )
    return ContentReport(summary, errors, found.warnings)


def load_questions() -> str:
    found = read_questions()
    drill_files = _read_drills(found)
    problems = found.errors + drill_files.errors
    if problems:
        more = f" (and {len(problems) - 1} more: run check_content)" if len(problems) > 1 else ""
        raise ValueError(problems[0] + more)
    read_phases()  # refuse to load a bank whose mock interviews could not run
    created = updated = unchanged = 0
    rows = [
        *({"id": data["id"], **{name: data.get(name, []) if name == "options" else data[name] for name in FIELDS}, "estimate": {}}
          for data in found.questions),
        *({"id": drill["id"], **drills.question_fields(drill)} for drill in drill_files.drills),
    ]  # fmt: skip
    with transaction.atomic():
        existing = {q.id: q for q in Question.objects.all()}
        for data in rows:
            values = {name: value for name, value in data.items() if name != "id"}
            values["retired"] = False
            question = existing.get(data["id"])
            if question is None:
                Question.objects.create(id=data["id"], **values)
                created += 1
            elif any(getattr(question, name) != value for name, value in values.items()):
                Question.objects.filter(pk=question.pk).update(**values)
                updated += 1
            else:
                unchanged += 1
        gone = set(existing) - {data["id"] for data in rows}
        retired = Question.objects.filter(pk__in=gone, retired=False).update(retired=True)
        if updated or retired:  # QuerySet.update() sends no signal: say so to the pages' cache
            content_cache.bump()
    return (
        f"{len(found.questions)} questions and {len(drill_files.drills)} estimation drills from {_shown(content_dir())} "
        f"({created} new, {updated} updated, {unchanged} unchanged, {retired} retired)"
    )


def _shown(folder: Path) -> Path:
    """The folder as the reader knows it: relative to the checkout when it lies inside."""
    base = Path(settings.BASE_DIR)
    return folder.relative_to(base) if folder.is_relative_to(base) else folder
