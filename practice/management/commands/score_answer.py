"""`manage.py score_answer QUESTION_ID < answer.md`: the rubric estimate of one answer, as JSON.

For content authors tuning a rubric's terms (practice/content/FORMAT.md) and for scripts
that check one. It reads the question files, not the database, so an edited rubric counts
at once, without `load_content`. The score is what the candidate would get by grading
every suggested point covered and the others missed.
"""

import difflib
import json
import sys

from django.core.management.base import BaseCommand, CommandError

from practice.question_files import content_dir, read_questions
from practice.rubric import match_answer
from practice.scheduling import score_from_credits


class Command(BaseCommand):
    help = "Read an answer (Markdown) on standard input and print the rubric estimate for one question as JSON."

    def add_arguments(self, parser):
        parser.add_argument("question_id", help="The question's id, the file name without .yaml.")

    def handle(self, *args, question_id: str, **options):
        bank = {q["id"]: q for q in read_questions().questions}
        if question_id not in bank:
            raise CommandError(_unknown(question_id, list(bank)))
        answer = sys.stdin.read()
        if not answer.strip():
            raise CommandError("No answer on standard input: pipe one in, e.g. score_answer ID < answer.md")
        question = bank[question_id]
        matches = match_answer(answer, question["rubric"])
        credits = [1.0 if m.found else 0.0 for m in matches]
        result = {
            "question": question_id,
            "points": [
                {"point": m.point, "weight": m.weight, "covered": m.found, "evidence": m.sentence or None}
                for m in matches
            ],
            "score": score_from_credits([{"weight": m.weight} for m in matches], credits),
        }
        self.stdout.write(json.dumps(result, ensure_ascii=False))


def _unknown(question_id: str, ids: list[str]) -> str:
    close = difflib.get_close_matches(question_id, ids, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else " Run check_content to list the questions and any broken file."
    return f"No question {question_id!r} in {content_dir() / 'questions'}.{hint}"
