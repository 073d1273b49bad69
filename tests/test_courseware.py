"""Lessons: loading and checking the content files, rendering, and the lesson pages (test client).

Browser behaviour (themes, tooltips with the keyboard, htmx in a real page) is in
test_courseware_browser.py.
"""

import re
import shutil
import textwrap
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from courseware import content_files
from courseware.content_files import CONTENT_DIR, read_course
from courseware.loading import check_content, load_content
from courseware.models import CheckAnswer, GlossaryTerm, InlineCheck, Lesson, LessonProgress
from courseware.rendering import render_lesson
from tests import content_counts as counts

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(scope="session")
def course(django_db_setup, django_db_blocker):
    """The real lessons, loaded once: tests on `db` roll back their own changes around them."""
    with django_db_blocker.unblock():
        load_content()


@pytest.fixture
def learner(django_user_model):
    return django_user_model.objects.create_user("ada", password="correct-horse-battery-42")


# --- A small course in a temporary folder, for loader and checker tests ------------------------


def check_block(check_id: str, correct: tuple[bool, ...] = (True, False)) -> str:
    options = "".join(
        f"  - text: Option {n}\n    explanation: Why option {n} is {'right' if right else 'wrong'}.\n"
        + ("    correct: true\n" if right else "")
        for n, right in enumerate(correct)
    )
    return f"```check\nid: {check_id}\nquestion: Which option?\noptions:\n{options}```\n"


def lesson_file(slug: str, order: int, glossary: str = "[timeout]", labs: str = "[outbox-and-relay]", body: str = "") -> str:
    checks = "\n".join(check_block(f"{slug}-{n}") for n in (1, 2, 3))
    return textwrap.dedent(f"""\
        ---
        title: Lesson {slug}
        slug: {slug}
        summary: A lesson about {slug}.
        module: basics
        order: {order}
        minutes: 5
        prerequisites: []
        glossary: {glossary}
        labs: {labs}
        questions: []
        ---
        """) + (
        f"A timeout ends the wait. Another timeout later.\n\n{body}\n\n"
        '<figure class="diagram">\n<svg viewBox="0 0 10 10" role="img" aria-label="a box"><rect width="5" height="5"/></svg>\n'
        "<figcaption>A box.</figcaption>\n</figure>\n\n"
        f"```python\nimport time\n```\n\n{checks}\n## Common mistakes\n\nSome.\n\n## In an interview\n\nSay so.\n"
    )


@pytest.fixture
def tmp_course(tmp_path) -> tuple[Path, Path]:
    """(content dir, questions dir) holding two valid lessons and one practice question."""
    content = tmp_path / "content"
    (content / "lessons").mkdir(parents=True)
    (content / "glossary").mkdir()
    (content / "modules.yaml").write_text("- slug: basics\n  title: Basics\n  order: 1\n")
    (content / "glossary" / "terms.yaml").write_text(
        "- slug: timeout\n  term: timeout\n  aliases: [timeouts]\n  definition: How long a caller waits.\n"
    )
    (content / "lessons" / "01-first.md").write_text(lesson_file("first", 1))
    (content / "lessons" / "02-second.md").write_text(lesson_file("second", 2))
    questions = tmp_path / "questions"
    (questions / "retries").mkdir(parents=True)
    (questions / "retries" / "q-one.yaml").write_text("id: q-one\ntitle: Question one\nlessons: [first]\nlabs: []\n")
    return content, questions


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def error_for(content: Path, questions: Path) -> str:
    with pytest.raises(ValueError) as raised:
        load_content(content, questions)
    return str(raised.value)


# --- Loading: errors name the file and line ----------------------------------------------------


@pytest.mark.django_db
def test_malformed_front_matter_stops_loading_with_the_file_and_line(tmp_course):
    content, questions = tmp_course
    replace_in(content / "lessons" / "01-first.md", "summary: A lesson about first.", "summary: [unclosed")

    message = error_for(content, questions)

    assert re.match(rf"{re.escape(str(content / 'lessons' / '01-first.md'))}:\d+: this is not valid YAML", message)
    assert Lesson.objects.count() == 0


@pytest.mark.django_db
def test_an_undefined_glossary_term_is_named_with_its_line(tmp_course):
    content, questions = tmp_course
    replace_in(content / "lessons" / "02-second.md", "glossary: [timeout]", "glossary: [timeout, no-such-term]")

    message = error_for(content, questions)

    assert f"{content / 'lessons' / '02-second.md'}:9: unknown glossary term 'no-such-term' in glossary" in message
    assert Lesson.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("See [the other](lesson:missing-lesson).", "link to unknown lesson 'missing-lesson'"),
        ("Try [the lab](lab:no-such-lab).", "link to unknown lab 'no-such-lab'"),
        ("Answer [this](question:no-such-question).", "link to unknown question 'no-such-question'"),
        ("A [term](glossary:nothing).", "link to unknown glossary 'nothing'"),
    ],
)
def test_a_link_to_something_missing_is_named_with_its_line(tmp_course, body, expected):
    content, questions = tmp_course
    (content / "lessons" / "01-first.md").write_text(lesson_file("first", 1, body=body))

    message = error_for(content, questions)

    # The body starts on line 13; the link is in its third line.
    assert f"{content / 'lessons' / '01-first.md'}:15: {expected}" in message


@pytest.mark.django_db
def test_a_check_needs_exactly_one_correct_option(tmp_course):
    content, questions = tmp_course
    path = content / "lessons" / "01-first.md"
    path.write_text(lesson_file("first", 1).replace(check_block("first-2"), check_block("first-2", (True, True))))
    line = path.read_text().splitlines().index("id: first-2") + 1

    message = error_for(content, questions)

    assert f"{path}:{line}: check 'first-2' must have exactly one option with correct: true" in message


@pytest.mark.django_db
def test_an_unknown_module_and_a_duplicate_glossary_term_are_both_reported(tmp_course):
    content, questions = tmp_course
    replace_in(content / "lessons" / "02-second.md", "module: basics", "module: advanced")
    with (content / "glossary" / "words.yaml").open("w") as more:
        more.write("- slug: timeout\n  term: time limit\n  definition: Again.\n")

    message = error_for(content, questions)

    assert f"{content / 'lessons' / '02-second.md'}:5: unknown module 'advanced'" in message
    assert f"{content / 'glossary' / 'words.yaml'}:1: glossary term 'timeout' is already defined at" in message


@pytest.mark.django_db
def test_the_load_content_command_stops_with_the_file_and_line(tmp_course, monkeypatch):
    content, questions = tmp_course
    replace_in(content / "lessons" / "01-first.md", "order: 1", "order: first")
    monkeypatch.setattr(content_files, "CONTENT_DIR", content)

    with pytest.raises(CommandError) as raised:
        call_command("load_content")

    assert f"courseware: {content / 'lessons' / '01-first.md'}:6: 'order' must be a whole number" in str(raised.value)


# --- Loading: idempotent, rendered only when a file changes -----------------------------------


@pytest.mark.django_db
def test_loading_twice_changes_nothing_and_an_edit_renders_only_that_lesson(tmp_course, learner):
    content, questions = tmp_course
    first = load_content(content, questions)
    LessonProgress.objects.create(user=learner, lesson=Lesson.objects.get(slug="first"))

    again = load_content(content, questions)
    replace_in(content / "lessons" / "02-second.md", "Say so.", "Say it clearly.")
    edited = load_content(content, questions)

    assert first == "2 lessons in 1 modules, 1 glossary terms, 6 inline checks; 10 changed, 2 rendered"
    assert again == "2 lessons in 1 modules, 1 glossary terms, 6 inline checks; 0 changed, 0 rendered"
    assert edited.endswith("1 changed, 1 rendered")
    assert "Say it clearly." in Lesson.objects.get(slug="second").html
    assert LessonProgress.objects.filter(user=learner, lesson__slug="first").exists()


@pytest.mark.django_db
def test_a_deleted_lesson_file_removes_the_lesson_and_its_checks(tmp_course):
    content, questions = tmp_course
    load_content(content, questions)

    (content / "lessons" / "02-second.md").unlink()
    summary = load_content(content, questions)

    assert list(Lesson.objects.values_list("slug", flat=True)) == ["first"]
    assert not InlineCheck.objects.filter(check_id__startswith="second-").exists()
    assert summary.startswith("1 lessons in 1 modules")


@pytest.mark.django_db
def test_the_real_content_loads_twice_with_nothing_changed_the_second_time(tmp_path):
    content = shutil.copytree(CONTENT_DIR, tmp_path / "content")

    first = load_content(content)
    second = load_content(content)

    assert first.startswith(f"{counts.lessons()} lessons in {counts.modules()} modules")
    assert first.endswith(f"{counts.lessons()} rendered")
    assert second.endswith("; 0 changed, 0 rendered")


# --- check_content ----------------------------------------------------------------------------


def test_check_content_passes_on_the_real_content(capsys):
    call_command("check_content")

    out = capsys.readouterr().out
    assert (
        f"courseware: {counts.lessons()} lessons, {counts.glossary_terms()} glossary terms, "
        f"{counts.inline_checks()} inline checks checked: 0 error(s)"
    ) in out
    assert "check_content: all content is valid." in out


def test_check_content_reports_gaps_as_warnings_and_broken_files_as_errors(tmp_course):
    content, questions = tmp_course
    replace_in(content / "lessons" / "02-second.md", "labs: [outbox-and-relay]", "labs: []")
    replace_in(content / "lessons" / "01-first.md", "## Common mistakes", "## Usual mistakes")

    report = check_content(content, questions)

    assert report.errors == [f"{content / 'lessons' / '01-first.md'}:13: the lesson has no '## Common mistakes' section"]
    assert f"{content / 'lessons' / '02-second.md'}: links no lab yet" in report.warnings
    assert f"{content / 'lessons' / '01-first.md'}: has 1 practice question(s) so far; it should link at least 3" in report.warnings
    assert f"{content / 'lessons' / '02-second.md'}: has 0 practice question(s) so far; it should link at least 3" in report.warnings


def test_every_lesson_links_a_lab_and_three_practice_questions():
    course = read_course()

    assert course.errors == [] and course.warnings == []
    for lesson in course.lessons:
        assert lesson.labs, lesson.name
        assert len(course.questions_for(lesson)) >= 3, lesson.name


# --- Rendering --------------------------------------------------------------------------------


def render(tmp_course, body: str, glossary: str = "[timeout]"):
    content, questions = tmp_course
    (content / "lessons" / "01-first.md").write_text(lesson_file("first", 1, glossary=glossary, body=body))
    course = read_course(content, questions)
    assert course.errors == []
    return render_lesson(course.lessons[0], course.glossary)


@pytest.mark.django_db
def test_only_the_first_use_of_a_term_becomes_a_described_tooltip(tmp_course):
    page = render(tmp_course, "Timeouts again, and `timeout` in code.")

    assert page.html.count('class="term"') == 1
    button = re.search(r'<button aria-describedby="gloss-timeout" class="term-button" type="button">(\w+)</button>', page.html)
    assert button and button.group(1) == "timeout"
    assert '<span class="term-tip" id="gloss-timeout" role="tooltip"><strong>timeout</strong>: How long a caller waits.</span>' in page.html
    assert page.terms_used == ["timeout"]


@pytest.mark.django_db
def test_content_links_point_at_lessons_labs_questions_and_the_glossary(tmp_course):
    page = render(
        tmp_course,
        "[Next](lesson:second#common-mistakes), [lab](lab:outbox-and-relay), [q](question:q-one), [again](glossary:timeout).",
    )

    assert 'href="/lessons/second/#common-mistakes"' in page.html
    assert 'href="/labs/#outbox-and-relay"' in page.html
    assert 'href="/practice/questions/q-one/"' in page.html
    # The term already has its tooltip (first use in the opening line), so the link goes to the glossary.
    assert 'class="glossary-link" href="/lessons/glossary/#timeout"' in page.html


@pytest.mark.django_db
def test_markdown_gets_highlighting_tables_admonitions_anchors_and_a_table_of_contents(tmp_course):
    page = render(tmp_course, '| a | b |\n|---|---|\n| 1 | 2 |\n\n!!! interview "In an interview"\n    Say why.\n')

    assert '<div class="highlight"><pre><span></span><code><span class="kn">import</span>' in page.html
    assert "<table>" in page.html and "<td>1</td>" in page.html
    assert '<div class="admonition interview">\n<p class="admonition-title">In an interview</p>' in page.html
    assert '<h2 id="common-mistakes">Common mistakes<a class="headerlink" href="#common-mistakes"' in page.html
    assert '<a href="#in-an-interview">In an interview</a>' in page.toc_html
    assert page.html.count("<!--check:first-") == 3


def test_word_counts_leave_out_code_diagrams_checks_and_tooltips(tmp_course):
    page = render(tmp_course, "")

    # "A timeout ends the wait. Another timeout later." + "Common mistakes Some. In an interview Say so."
    assert page.word_count == 8 + 8


# --- Pages --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_anonymous_reader_gets_the_lesson_with_checks_labs_and_questions(client, course):
    response = client.get("/lessons/network-calls/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "<h1 id=\"lesson-title\">Why a network call is not a function call</h1>" in html
    assert html.count('class="check"') == 3
    assert 'href="/labs/#retries-backoff-jitter">Retries, backoff and jitter</a>' in html
    assert 'href="/practice/questions/rest-vs-grpc-deadline-propagation/"' in html
    assert 'rel="next" href="/lessons/rest-and-grpc/"' in html
    assert "to mark lessons as read" in html


@pytest.mark.django_db
def test_an_answer_sent_with_htmx_returns_every_explanation_and_is_recorded(client, course, learner):
    client.force_login(learner)
    check = InlineCheck.objects.get(check_id="network-calls-1")
    wrong = next(n for n, option in enumerate(check.options) if not option["correct"])

    response = client.post("/lessons/checks/network-calls-1/answer/", {"option": wrong}, **HTMX)

    html = response.content.decode()
    assert "<html" not in html and "✗ Not quite." in html
    for option in check.options:
        assert option["explanation"] in html
    answer = CheckAnswer.objects.get(user=learner)
    assert (answer.inline_check, answer.option, answer.correct) == (check, wrong, False)


@pytest.mark.django_db
def test_an_anonymous_answer_shows_the_explanation_and_is_not_recorded(client, course):
    check = InlineCheck.objects.get(check_id="sagas-1")
    right = next(n for n, option in enumerate(check.options) if option["correct"])

    response = client.post("/lessons/checks/sagas-1/answer/", {"option": right}, **HTMX)

    assert "✓ Correct." in response.content.decode()
    assert check.options[right]["explanation"] in response.content.decode()
    assert CheckAnswer.objects.count() == 0


@pytest.mark.django_db
def test_without_javascript_an_answer_shows_the_lesson_with_the_result(client, course, learner):
    client.force_login(learner)

    response = client.post("/lessons/checks/network-calls-2/answer/", {"option": 1})

    html = response.content.decode()
    assert "<h1 id=\"lesson-title\">Why a network call is not a function call</h1>" in html
    assert "✓ Correct." in html
    assert CheckAnswer.objects.filter(user=learner, correct=True).count() == 1
    assert "Last time" not in html.split('id="check-network-calls-2"')[1].split("</section>")[0]


@pytest.mark.django_db
def test_a_returning_learner_sees_their_last_answer_and_an_answer_without_a_choice_is_refused(client, course, learner):
    client.force_login(learner)
    check = InlineCheck.objects.get(check_id="network-calls-3")
    wrong = next(n for n, option in enumerate(check.options) if not option["correct"])
    client.post("/lessons/checks/network-calls-3/answer/", {"option": wrong}, **HTMX)

    page = client.get("/lessons/network-calls/").content.decode()
    refused = client.post("/lessons/checks/network-calls-3/answer/", {"option": 7}, **HTMX)

    section = page.split('id="check-network-calls-3"')[1].split("</section>")[0]
    assert f'value="{wrong}" required checked' in section
    assert "you were not quite right" in section
    assert "Choose one of the answers first." in refused.content.decode()
    assert CheckAnswer.objects.count() == 1


@pytest.mark.django_db
def test_marking_as_read_needs_a_signed_in_learner_and_updates_the_module_progress(client, course, learner):
    anonymous = client.post("/lessons/network-calls/read/", {"read": "1"})
    client.force_login(learner)
    marked = client.post("/lessons/network-calls/read/", {"read": "1"}, **HTMX)
    unmarked = client.post("/lessons/network-calls/read/", {"read": "0"}, **HTMX)

    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert "1 of 4 lessons read in Calling across the network" in marked.content.decode()
    assert "Mark as read" in unmarked.content.decode()
    assert LessonProgress.objects.get(user=learner).read_at is None


@pytest.mark.django_db
def test_the_course_map_shows_progress_per_module_and_where_to_continue(client, course, learner):
    client.force_login(learner)
    client.get("/lessons/transactional-outbox/")
    client.post("/lessons/transactional-outbox/read/", {"read": "1"})
    client.get("/lessons/queues-vs-streams/")

    html = client.get("/lessons/").content.decode()
    client.post("/lessons/queues-vs-streams/read/", {"read": "1"})
    after_reading = client.get("/lessons/").content.decode()

    assert re.search(r'data-testid="continue-link">Asynchronous messaging: queues vs event streams<', html)
    assert '<progress max="5" value="1"' in html and "1 of 5 read" in html
    assert f"1 of {counts.lessons()} lessons read" in html
    # Marking it read does not move the learner on: they may still be in the middle of it.
    assert re.search(r'data-testid="continue-link">Asynchronous messaging: queues vs event streams<', after_reading)


@pytest.mark.django_db
def test_continue_points_to_the_lesson_the_learner_was_reading_not_the_next_one_in_order(client, course, learner):
    client.force_login(learner)
    client.get("/lessons/sagas/")
    client.get("/lessons/network-calls/")  # back to an earlier lesson
    client.post("/lessons/network-calls/read/", {"read": "1"}, **HTMX)

    back_at_an_earlier_one = client.get("/lessons/").content.decode()
    client.get("/lessons/rest-and-grpc/")  # a look at the next lesson...
    client.post("/lessons/checks/network-calls-1/answer/", {"option": "0"}, **HTMX)  # ...then back to answer a check
    answering = client.get("/lessons/").content.decode()

    assert re.search(r'data-testid="continue-link">Why a network call is not a function call<', back_at_an_earlier_one)
    assert re.search(r'data-testid="continue-link">Why a network call is not a function call<', answering)


@pytest.mark.django_db
def test_going_back_to_a_lesson_at_once_makes_it_the_one_to_continue_and_a_reload_writes_nothing(client, course, learner):
    client.force_login(learner)
    client.get("/lessons/sagas/")
    client.get("/lessons/network-calls/")
    client.get("/lessons/sagas/")  # back within the same second

    continue_at = client.get("/lessons/").content.decode()
    with CaptureQueriesContext(connection) as reload:
        client.get("/lessons/sagas/")

    assert re.search(r'data-testid="continue-link">[^<]*[Ss]aga', continue_at), continue_at[:2000]
    writes = [q["sql"] for q in reload.captured_queries if q["sql"].startswith(("UPDATE", "INSERT")) and "lessonprogress" in q["sql"]]
    assert writes == []


@pytest.mark.django_db
def test_search_finds_a_lesson_by_a_word_only_in_its_body_and_ranks_title_hits_first(client, course):
    body_only = client.get("/lessons/search/", {"q": "hystrix"}).content.decode()
    plural = client.get("/lessons/search/", {"q": "sagas compensations"}, **HTMX).content.decode()

    lesson = Lesson.objects.get(slug="circuit-breakers-bulkheads")
    assert "hystrix" not in f"{lesson.title} {lesson.summary}".lower()
    assert re.findall(r'class="lesson-link" href="/lessons/([\w-]+)/"', body_only) == [lesson.slug]
    assert "<mark>Hystrix</mark>" in body_only
    assert "<html" not in plural
    assert re.findall(r'href="/lessons/([\w-]+)/"', plural)[0] == "sagas"


@pytest.mark.django_db
def test_the_glossary_lists_every_term_with_the_lessons_that_use_it(client, course):
    html = client.get("/lessons/glossary/").content.decode()

    entry = html.split('id="idempotency-key"')[1].split("</div>")[0]
    assert html.count('class="glossary-entry"') == GlossaryTerm.objects.count() == counts.glossary_terms()
    assert "A unique identifier attached to a request or message" in entry
    assert 'href="/lessons/network-calls/">Why a network call is not a function call</a>' in entry


@pytest.mark.django_db
def test_code_colours_come_in_a_light_and_a_dark_theme_that_never_overlap(client, course):
    page = client.get("/lessons/rest-and-grpc/").content.decode()
    href = re.search(r'href="(/lessons/code\.css\?v=\w+)"', page).group(1)

    response = client.get(href)

    css = response.content.decode()
    assert response["Content-Type"].startswith("text/css")
    assert "immutable" in response["Cache-Control"]
    assert ':root[data-theme="dark"] .highlight .k' in css and ':root[data-theme="light"] .highlight .k' in css
    assert '@media (prefers-color-scheme: dark) {\n:root:not([data-theme="light"]) .highlight' in css
    assert not re.search(r"^(pre|td|span)\b", css, re.MULTILINE)
