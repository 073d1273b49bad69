"""Read the course's content files (modules, glossary, lessons) and the practice questions that
point at lessons, and validate them, keeping a file and line for every problem found.

Nothing here touches the database: `courseware.loading` turns a valid `Course` into rows, and
`check_content` reports what `read_course` found. The format is in content/FORMAT.md.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from labs import figures
from labs.catalogue import LABS

CONTENT_DIR = Path(__file__).resolve().parent / "content"
# Practice questions are read as plain YAML (id, title, lessons): the practice app owns them,
# and the lessons only need to know which questions point at them.
QUESTIONS_DIR = Path(settings.BASE_DIR) / "practice" / "content" / "questions"

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Paths the lesson URLs share with other courseware pages, so no lesson may take them.
RESERVED_SLUGS = {"search", "glossary", "checks", "code"}
REQUIRED_SECTIONS = ("Common mistakes", "In an interview")
MIN_CHECKS = 3
MIN_QUESTIONS = 3
WORDS = range(1200, 2501)
STRINGS = list[str]
LESSON_KEYS = {
    "title": str, "slug": str, "summary": str, "module": str, "order": int, "minutes": int,
    "prerequisites": STRINGS, "glossary": STRINGS, "labs": STRINGS, "questions": STRINGS,
}  # fmt: skip
KIND_NAMES = {str: "a string", int: "a whole number", bool: "true or false", list: "a list", STRINGS: "a list of strings"}
OPTIONAL_LESSON_KEYS = {"questions"}
LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<scheme>[a-z][a-z0-9+.-]*):(?P<target>[^)\s]*)\)")
WEB_SCHEMES = {"http", "https", "mailto"}
CONTENT_SCHEMES = {"lesson", "lab", "question", "glossary"}
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
# libyaml's loader when PyYAML was built with it: the same results and marks, several times faster.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Module:
    slug: str
    title: str
    order: int


@dataclass
class GlossaryEntry:
    slug: str
    term: str
    aliases: list[str]
    definition: str


@dataclass
class CheckOption:
    text: str
    explanation: str
    correct: bool = False


@dataclass
class InlineCheckSource:
    id: str
    question: str
    options: list[CheckOption]
    line: int


@dataclass
class Link:
    scheme: str
    target: str
    line: int

    @property
    def slug(self) -> str:
        """The linked thing without an in-page #fragment."""
        return self.target.split("#", 1)[0]


@dataclass
class PracticeQuestion:
    id: str
    title: str
    lessons: list[str]


@dataclass
class LessonSource:
    path: Path
    name: str  # the path shown in messages
    text: str
    front_matter: "YamlDocument"
    body: str
    body_line: int  # file line of the body's first line
    # The front matter (LESSON_KEYS):
    title: str
    slug: str
    summary: str
    module: str
    order: int
    minutes: int
    prerequisites: list[str]
    glossary: list[str]
    labs: list[str]
    questions: list[str]
    # Found in the body by scan_body:
    checks: list[InlineCheckSource] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)
    code_languages: list[tuple[str, int]] = field(default_factory=list)
    diagrams: int = 0
    # Faultline figures the lesson states ({{ faultline.NAME = N }}), with file lines; check_content compares them with the code.
    stated_figures: list[figures.Statement] = field(default_factory=list)


@dataclass
class Course:
    modules: dict[str, Module] = field(default_factory=dict)
    glossary: dict[str, GlossaryEntry] = field(default_factory=dict)
    lessons: list[LessonSource] = field(default_factory=list)
    questions: dict[str, PracticeQuestion] = field(default_factory=dict)
    glossary_texts: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def questions_for(self, lesson: LessonSource) -> list[PracticeQuestion]:
        """The questions a lesson lists in its front matter, then those that name the lesson."""
        listed = [self.questions[qid] for qid in lesson.questions if qid in self.questions]
        naming = [q for q in self.questions.values() if lesson.slug in q.lessons and q not in listed]
        return listed + naming


def display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(path)


# --- YAML with line numbers -------------------------------------------------------------


class YamlDocument:
    """Parsed YAML that still knows the file line of every value, for error messages."""

    def __init__(self, text: str, first_line: int = 1):
        self.first_line = first_line
        loader = YAML_LOADER(text)
        try:
            self.node = loader.get_single_node()
            self.data = loader.construct_document(self.node) if self.node is not None else None
        finally:
            loader.dispose()

    def line(self, *path: str | int) -> int:
        """The file line of the value at `path` (or of its closest existing parent)."""
        node = self.node
        if node is None:
            return self.first_line
        line = node.start_mark.line
        for key in path:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == key), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                node = None
            if node is None:
                break
            line = node.start_mark.line
        return self.first_line + line


def parse_yaml(text: str, name: str, first_line: int, errors: list[str]) -> YamlDocument | None:
    try:
        return YamlDocument(text, first_line)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = first_line + (mark.line if mark else 0)
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(f"{name}:{line}: this is not valid YAML ({problem})")
        return None


def has_kind(value: Any, kind: Any) -> bool:
    if kind == STRINGS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_fields(doc: YamlDocument, item: Any, where: tuple, required: dict[str, Any], optional: set[str],
                 name: str, errors: list[str]) -> bool:
    """Report missing, unknown and wrongly typed keys of one mapping; True when it is usable."""
    line = doc.line(*where)
    if not isinstance(item, dict):
        errors.append(f"{name}:{line}: expected a mapping with the keys {', '.join(required)}")
        return False
    ok = True
    for key in item.keys() - required.keys():
        errors.append(f"{name}:{doc.line(*where, key)}: unknown key '{key}' (expected one of {', '.join(required)})")
        ok = False
    for key, kind in required.items():
        if key not in item:
            if key not in optional:
                errors.append(f"{name}:{line}: missing '{key}'")
                ok = False
        elif not has_kind(item[key], kind):
            errors.append(f"{name}:{doc.line(*where, key)}: '{key}' must be {KIND_NAMES[kind]}, not {item[key]!r}")
            ok = False
    return ok


# --- Modules and glossary ---------------------------------------------------------------


def read_modules(path: Path, course: Course) -> None:
    name = display_name(path)
    if not path.exists():
        course.errors.append(f"{name}:1: the course map file is missing")
        return
    doc = parse_yaml(path.read_text(), name, 1, course.errors)
    if doc is None:
        return
    if not isinstance(doc.data, list):
        course.errors.append(f"{name}:1: expected a list of modules")
        return
    for i, item in enumerate(doc.data):
        if not check_fields(doc, item, (i,), {"slug": str, "title": str, "order": int}, set(), name, course.errors):
            continue
        if item["slug"] in course.modules:
            course.errors.append(f"{name}:{doc.line(i, 'slug')}: module '{item['slug']}' is defined twice")
            continue
        course.modules[item["slug"]] = Module(item["slug"], item["title"], item["order"])


def read_glossary(directory: Path, course: Course) -> None:
    defined_at: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        name = display_name(path)
        text = path.read_text()
        doc = parse_yaml(text, name, 1, course.errors)
        if doc is None:
            continue
        if not isinstance(doc.data, list):
            course.errors.append(f"{name}:1: expected a list of glossary terms")
            continue
        required = {"slug": str, "term": str, "aliases": STRINGS, "definition": str}
        for i, item in enumerate(doc.data):
            if not check_fields(doc, item, (i,), required, {"aliases"}, name, course.errors):
                continue
            slug, where = item["slug"], f"{name}:{doc.line(i, 'slug')}"
            if not SLUG.match(slug):
                course.errors.append(f"{where}: glossary slug '{slug}' must be lowercase words joined by hyphens")
            if slug in defined_at:
                course.errors.append(f"{where}: glossary term '{slug}' is already defined at {defined_at[slug]}")
                continue
            defined_at[slug] = where
            entry = GlossaryEntry(slug, item["term"].strip(), [a.strip() for a in item.get("aliases", [])], item["definition"].strip())
            for spelling in [entry.term, *entry.aliases]:
                other = spelled.setdefault(spelling.lower(), slug)
                if other != slug:
                    course.errors.append(f"{where}: '{spelling}' already names the glossary term '{other}'")
            course.glossary[slug] = entry
            course.glossary_texts[slug] = f"{entry.term}|{'|'.join(entry.aliases)}|{entry.definition}"


def read_questions(directory: Path, course: Course) -> None:
    """Read each practice question's id, title and lessons; the practice checker validates the rest."""
    for path in sorted(directory.glob("*/*.yaml")):
        try:
            data = yaml.load(path.read_text(), Loader=YAML_LOADER)
        except yaml.YAMLError:
            continue  # the practice app's checker reports the broken file with its line
        if isinstance(data, dict) and isinstance(data.get("id"), str) and isinstance(data.get("title"), str):
            lessons = data.get("lessons") if isinstance(data.get("lessons"), list) else []
            course.questions[data["id"]] = PracticeQuestion(data["id"], data["title"].strip(), [str(s) for s in lessons])


# --- Lessons ------------------------------------------------------------------------------


def split_front_matter(text: str, name: str, errors: list[str]) -> tuple[str, str, int] | None:
    """Return (front matter, body, file line where the body starts)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        errors.append(f"{name}:1: a lesson starts with front matter between two '---' lines")
        return None
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1 :]), i + 2
    errors.append(f"{name}:1: the front matter has no closing '---' line")
    return None


def scan_body(lesson: LessonSource, errors: list[str]) -> None:
    """Find the checks, links, headings, code languages and diagrams of a lesson body."""
    lines = lesson.body.splitlines()
    i = 0
    while i < len(lines):
        line_no = lesson.body_line + i
        fence = FENCE.match(lines[i])
        if fence:
            closing = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence["fence"]), None)
            if closing is None:
                errors.append(f"{lesson.name}:{line_no}: this code block is never closed with {fence['fence']}")
                return
            lang = fence["lang"]
            if lang == "check":
                read_check(lesson, "\n".join(lines[i + 1 : closing]), line_no, errors)
            else:
                lesson.code_languages.append((lang, line_no))
            i = closing + 1
            continue
        if lines[i].startswith("## "):
            lesson.headings.append(lines[i][3:].strip())
        if lines[i].startswith('<figure class="diagram"'):
            lesson.diagrams += 1
        # Inline code spans are not links, so drop them before looking for links.
        for match in LINK.finditer(re.sub(r"`[^`]*`", "", lines[i])):
            lesson.links.append(Link(match["scheme"], match["target"], line_no))
        i += 1


def read_check(lesson: LessonSource, text: str, fence_line: int, errors: list[str]) -> None:
    name = lesson.name
    doc = parse_yaml(text, name, fence_line + 1, errors)
    if doc is None:
        return
    if not check_fields(doc, doc.data, (), {"id": str, "question": str, "options": list}, set(), name, errors):
        return
    data = doc.data
    options: list[CheckOption] = []
    for n, option in enumerate(data["options"]):
        where = ("options", n)
        if not check_fields(doc, option, where, {"text": str, "explanation": str, "correct": bool}, {"correct"}, name, errors):
            if isinstance(option, dict) and isinstance(option.get("text"), bool):
                errors.append(f"{name}:{doc.line(*where, 'text')}: write the option \"{option['text']}\" in quotes, or YAML reads it as a boolean")
            continue
        options.append(CheckOption(option["text"].strip(), option["explanation"].strip(), option.get("correct", False)))
    if len(options) != len(data["options"]):
        return
    line = doc.line()
    if len(options) < 2:
        errors.append(f"{name}:{line}: check '{data['id']}' needs at least two options")
    if sum(o.correct for o in options) != 1:
        errors.append(f"{name}:{line}: check '{data['id']}' must have exactly one option with correct: true")
    if not data["id"].startswith(f"{lesson.slug}-"):
        errors.append(f"{name}:{doc.line('id')}: check id '{data['id']}' must start with the lesson slug: '{lesson.slug}-<n>'")
    lesson.checks.append(InlineCheckSource(data["id"], data["question"].strip(), options, doc.line("id")))


def read_lesson(path: Path, errors: list[str]) -> LessonSource | None:
    name = display_name(path)
    source = path.read_text()
    stated, malformed = figures.statements(source)
    errors.extend(f"{name}:{line}: {problem}" for line, problem in malformed)
    text = figures.fill(source)  # from here on, the lesson as a reader sees it
    parts = split_front_matter(text, name, errors)
    if parts is None:
        return None
    front, body, body_line = parts
    doc = parse_yaml(front, name, 2, errors)
    if doc is None:
        return None
    if not check_fields(doc, doc.data, (), LESSON_KEYS, OPTIONAL_LESSON_KEYS, name, errors):
        return None
    lesson = LessonSource(path, name, text, doc, body, body_line, **{"questions": [], **doc.data}, stated_figures=stated)
    if not SLUG.match(lesson.slug):
        errors.append(f"{name}:{doc.line('slug')}: slug '{lesson.slug}' must be lowercase words joined by hyphens")
    elif lesson.slug in RESERVED_SLUGS:
        errors.append(f"{name}:{doc.line('slug')}: slug '{lesson.slug}' is taken by a courseware page")
    for key in ("order", "minutes"):
        if getattr(lesson, key) < 1:
            errors.append(f"{name}:{doc.line(key)}: '{key}' must be 1 or more")
    scan_body(lesson, errors)
    return lesson


def field_line(lesson: LessonSource, *path: str | int) -> str:
    return f"{lesson.name}:{lesson.front_matter.line(*path)}"


def check_lesson_references(lesson: LessonSource, course: Course, slugs: set[str]) -> None:
    """Every slug a lesson names (front matter and links) must exist."""
    errors, warnings = course.errors, course.warnings
    if lesson.module not in course.modules:
        errors.append(f"{field_line(lesson, 'module')}: unknown module '{lesson.module}' (not in modules.yaml)")
    known = {"prerequisites": slugs - {lesson.slug}, "glossary": course.glossary.keys(), "labs": LABS.keys(), "questions": course.questions.keys()}
    what = {"prerequisites": "lesson", "glossary": "glossary term", "labs": "lab", "questions": "practice question"}
    for key, names in known.items():
        for n, value in enumerate(getattr(lesson, key)):
            if value not in names:
                errors.append(f"{field_line(lesson, key, n)}: unknown {what[key]} '{value}' in {key}")
    targets = {"lesson": slugs, "lab": LABS.keys(), "question": course.questions.keys(), "glossary": course.glossary.keys()}
    for link in lesson.links:
        if link.scheme in targets and link.slug not in targets[link.scheme]:
            errors.append(f"{lesson.name}:{link.line}: link to unknown {link.scheme} '{link.slug}'")
        elif link.scheme not in targets and link.scheme not in WEB_SCHEMES:
            errors.append(f"{lesson.name}:{link.line}: unknown link scheme '{link.scheme}:' (use lesson:, lab:, question:, glossary: or a web address)")
    for lang, line in lesson.code_languages:
        if not lang:
            errors.append(f"{lesson.name}:{line}: a code block needs a language (```python, ```text, ...)")
            continue
        try:
            get_lexer_by_name(lang)
        except ClassNotFound:
            errors.append(f"{lesson.name}:{line}: Pygments does not know the language '{lang}'")
    start = f"{lesson.name}:{lesson.body_line}"
    for section in REQUIRED_SECTIONS:
        if section not in lesson.headings:
            errors.append(f"{start}: the lesson has no '## {section}' section")
    if lesson.diagrams < 1:
        errors.append(f'{start}: the lesson has no diagram (<figure class="diagram">)')
    if len(lesson.checks) < MIN_CHECKS:
        errors.append(f"{start}: the lesson has {len(lesson.checks)} inline checks; it needs at least {MIN_CHECKS}")
    # Gaps that later work fills: reported, not failed on.
    if not lesson.labs and not any(link.scheme == "lab" for link in lesson.links):
        warnings.append(f"{lesson.name}: links no lab yet")
    count = len(course.questions_for(lesson))
    if count < MIN_QUESTIONS:
        warnings.append(f"{lesson.name}: has {count} practice question(s) so far; it should link at least {MIN_QUESTIONS}")


def read_course(content_dir: Path | None = None, questions_dir: Path | None = None) -> Course:
    """Read and validate every content file; problems land in `course.errors` / `course.warnings`."""
    content_dir = Path(content_dir or CONTENT_DIR)
    course = Course()
    read_modules(content_dir / "modules.yaml", course)
    read_glossary(content_dir / "glossary", course)
    read_questions(Path(questions_dir or QUESTIONS_DIR), course)
    for path in sorted((content_dir / "lessons").glob("*.md")):
        lesson = read_lesson(path, course.errors)
        if lesson is not None:
            course.lessons.append(lesson)

    first_seen: dict[str, str] = {}
    checks_seen: dict[str, str] = {}
    places: dict[tuple[str, int], str] = {}
    for lesson in course.lessons:
        where = field_line(lesson, "slug")
        if lesson.slug in first_seen:
            course.errors.append(f"{where}: lesson slug '{lesson.slug}' is already used by {first_seen[lesson.slug]}")
        first_seen.setdefault(lesson.slug, where)
        if not lesson.path.stem.endswith(lesson.slug):
            course.warnings.append(f"{where}: the file name does not end with the slug '{lesson.slug}' (NN-{lesson.slug}.md)")
        place = (lesson.module, lesson.order)
        if place in places:
            course.errors.append(f"{field_line(lesson, 'order')}: order {lesson.order} in module '{lesson.module}' is already taken by {places[place]}")
        places.setdefault(place, lesson.name)
        for check in lesson.checks:
            if check.id in checks_seen:
                course.errors.append(f"{lesson.name}:{check.line}: check id '{check.id}' is already used at {checks_seen[check.id]}")
            checks_seen.setdefault(check.id, f"{lesson.name}:{check.line}")
    slugs = set(first_seen)
    for lesson in course.lessons:
        check_lesson_references(lesson, course, slugs)
    return course
