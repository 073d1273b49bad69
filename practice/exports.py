"""The question bank as an Anki deck, and a candidate's attempts as CSV.

The deck is a real `.apkg` built with genanki, offline: one note per question with
the prompt on the front, the model answer on the back, and the question's topics,
kind and difficulty as tags. Notes keep a stable GUID per question id, so importing
a newer export updates the cards instead of duplicating them.
"""

import csv
import io
import itertools
import json
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import genanki
from django.utils.html import escape

from practice.models import Attempt, Question
from practice.rendering import render_markdown

# Fixed ids: Anki recognises the deck and the note type across exports by them.
DECK_ID = 1_733_870_415_207
MODEL_ID = 1_733_870_415_208
DECK_NAME = "Faultline interview questions"

CARD_CSS = """
.card { font-family: system-ui, sans-serif; font-size: 18px; line-height: 1.5; text-align: left;
        max-width: 42em; margin: 0 auto; }
.meta { color: #57606a; font-size: 14px; }
code, pre { font-family: ui-monospace, monospace; font-size: 15px; }
"""

NOTE_MODEL = genanki.Model(
    MODEL_ID,
    "Faultline question",
    fields=[{"name": "Prompt"}, {"name": "Model answer"}, {"name": "Question id"}],
    templates=[
        {
            "name": "Answer it",
            "qfmt": "{{Prompt}}",
            "afmt": '{{FrontSide}}<hr id="answer">{{Model answer}}',
        }
    ],
    css=CARD_CSS,
)


def _front(question: Question) -> str:
    meta = f'<p class="meta">{question.get_kind_display()} · {question.difficulty_label} · {question.minutes} min</p>'
    options = ""
    if question.is_choice:
        items = "".join(f"<li>{render_markdown(o['text'])}</li>" for o in question.options)
        options = f"<ol type='A'>{items}</ol>"
    return f"<h2>{escape(question.title)}</h2>{meta}{render_markdown(question.prompt)}{options}"


def _back(question: Question) -> str:
    correct = ""
    if question.is_choice:
        letter = "ABCDEFGH"[question.correct_option]
        text = escape(question.options[question.correct_option]["text"])
        correct = f"<p><strong>Answer: {letter}.</strong> {text}</p>"
    return correct + str(render_markdown(question.model_answer))


def tags_for(question: Question) -> list[str]:
    # Anki tags cannot hold spaces; "::" makes a tag hierarchy in Anki's browser.
    topics = [f"topic::{t}" for t in question.topics]
    return ["faultline", *topics, f"kind::{question.kind}", f"difficulty::{question.difficulty}"]


def anki_deck(questions: Iterable[Question], now: datetime) -> bytes:
    deck = genanki.Deck(DECK_ID, DECK_NAME, description="Interview questions on how services talk to each other.")
    for question in questions:
        deck.add_note(
            genanki.Note(
                model=NOTE_MODEL,
                fields=[_front(question), _back(question), question.id],
                tags=tags_for(question),
                guid=genanki.guid_for("faultline", question.id),
            )
        )
    # genanki's write_to_file leaves its temporary database behind; build the package here instead.
    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "collection.anki2"
        connection = sqlite3.connect(db_path)
        timestamp = now.timestamp()
        genanki.Package(deck).write_to_db(connection.cursor(), timestamp, itertools.count(int(timestamp * 1000)))
        connection.commit()
        connection.close()
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as apkg:
            apkg.write(db_path, "collection.anki2")
            apkg.writestr("media", json.dumps({}))
    return out.getvalue()


CSV_COLUMNS = ["date", "question", "title", "kind", "how", "points covered", "score", "rating", "answer"]


def _cell(value) -> str:
    """Text a spreadsheet shows as text: a leading = + - @ would otherwise run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def attempts_csv(attempts: Iterable[Attempt]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for a in attempts:
        q = a.question
        writer.writerow([
            _cell(a.created_at.isoformat(timespec="seconds")), _cell(q.id), _cell(q.title), _cell(q.get_kind_display()),
            _cell(a.get_source_display()), "" if a.covered_count is None else f"{a.covered_count}/{len(a.matches)}", _cell(a.score),
            _cell(a.get_rating_display() if a.rating else ""), _cell(a.answer),
        ])  # fmt: skip
    return out.getvalue()
