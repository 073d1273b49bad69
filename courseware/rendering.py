"""Turn a lesson's Markdown into the HTML a lesson page serves.

Python-Markdown with tables, fenced code highlighted by Pygments (CSS classes), a table of
contents with heading anchors, admonitions and attribute lists, plus three courseware steps:

1. ```check blocks become a marker (`<!--check:ID-->`) that the lesson view replaces with the
   inline-check form, so the form carries the reader's CSRF token and previous answer.
2. `lesson:`, `lab:` and `question:` links become site URLs.
3. The first use of each glossary term the lesson lists (by its term, an alias, or a
   `glossary:` link) becomes a tooltip: a button described by a role="tooltip" element.

The output depends only on the lesson file, the glossary definitions it uses, the URLs it links
to and RENDERER_VERSION, and `content_hash` covers all four, so a lesson is rendered again only
when one of them changes.
"""

import hashlib
import re
import xml.etree.ElementTree as etree
from dataclasses import dataclass, field
from html.parser import HTMLParser

import markdown
import yaml
from django.urls import reverse
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from markdown.treeprocessors import Treeprocessor
from pygments.formatters import HtmlFormatter

from courseware.content_files import GlossaryEntry, LessonSource

# Bump when the renderer's output changes, so every lesson is rendered again on the next load.
RENDERER_VERSION = "2"
CHECK_MARKER = re.compile(r"<!--check:([a-z0-9-]+)-->")
LIGHT_CODE_STYLE = "default"
DARK_CODE_STYLE = "github-dark"


def lesson_url(slug: str) -> str:
    return reverse("courseware:lesson", args=[slug])


def lab_url(slug: str) -> str:
    # Labs are listed on one page for now, each under an anchor named by its slug.
    return f"{reverse('labs:index')}#{slug}"


def question_url(question_id: str) -> str:
    return reverse("practice:question", kwargs={"question_id": question_id})


def glossary_url(slug: str) -> str:
    return f"{reverse('courseware:glossary')}#{slug}"


LINK_TARGETS = {"lesson": lesson_url, "lab": lab_url, "question": question_url, "glossary": glossary_url}


def content_hash(lesson: LessonSource, glossary: dict[str, GlossaryEntry]) -> str:
    """A digest of everything the rendered HTML depends on."""
    digest = hashlib.sha256()
    digest.update(RENDERER_VERSION.encode())
    digest.update(lesson.text.encode())
    for slug in lesson.glossary:
        entry = glossary[slug]
        digest.update(f"\0{slug}\0{entry.term}\0{entry.aliases}\0{entry.definition}".encode())
    digest.update("\0".join(target("x") for target in LINK_TARGETS.values()).encode())
    return digest.hexdigest()


# --- Inline checks ---------------------------------------------------------------------------


class CheckBlockPreprocessor(Preprocessor):
    """Replace each ```check block with a marker the lesson view fills in per request."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        block: list[str] | None = None
        for line in lines:
            if block is None and line.strip() == "```check":
                block = []
            elif block is not None and line.strip() == "```":
                check_id = yaml.safe_load("\n".join(block))["id"]
                out += ["", self.md.htmlStash.store(f"<!--check:{check_id}-->"), ""]
                block = None
            elif block is not None:
                block.append(line)
            else:
                out.append(line)
        return out


# --- Links ---------------------------------------------------------------------------------


class ContentLinkTreeprocessor(Treeprocessor):
    """Point lesson:, lab: and question: links at the pages they name."""

    def run(self, root: etree.Element) -> None:
        for link in root.iter("a"):
            scheme, _, target = link.get("href", "").partition(":")
            if scheme in ("lesson", "lab", "question"):
                slug, _, fragment = target.partition("#")
                link.set("href", LINK_TARGETS[scheme](slug) + (f"#{fragment}" if fragment else ""))
                link.set("class", f"{scheme}-link")


# --- Glossary tooltips -----------------------------------------------------------------------

# Where a term is never turned into a tooltip: code, headings (the table of contents reads them),
# links (a button inside a link is not allowed) and admonition titles.
SKIP_TAGS = {"code", "pre", "a", "h1", "h2", "h3", "h4", "h5", "h6", "button", "script", "style"}


class GlossaryTreeprocessor(Treeprocessor):
    """Turn the first use of each listed glossary term into an accessible tooltip.

    Steps: walk the tree in reading order; in each piece of text find the earliest spelling
    (term or alias) of a term not used yet; wrap it in a button described by a role="tooltip"
    element; a `glossary:` link counts as a use too, and once its term has a tooltip later
    `glossary:` links become plain links to the glossary page.
    """

    def __init__(self, md: markdown.Markdown, terms: list[GlossaryEntry]):
        super().__init__(md)
        self.terms = {entry.slug: entry for entry in terms}
        self.used: list[str] = []
        self.spellings: dict[str, str] = {}  # lower-case spelling -> slug, for case-insensitive spellings
        self.exact: dict[str, str] = {}  # spelling -> slug, for spellings with capitals (REST, gRPC)
        alternatives = []
        for entry in terms:
            for spelling in sorted({entry.term, *entry.aliases}, key=len, reverse=True):
                if spelling != spelling.lower():
                    self.exact[spelling] = entry.slug
                    alternatives.append((len(spelling), re.escape(spelling)))
                else:
                    self.spellings[spelling] = entry.slug
                    alternatives.append((len(spelling), f"(?i:{re.escape(spelling)})"))
        # Longest first, so "idempotency key" wins over "idempotency" at the same place.
        pattern = "|".join(p for _, p in sorted(alternatives, key=lambda a: a[0], reverse=True))
        self.pattern = re.compile(rf"(?<![\w-])(?:{pattern})(?![\w-])") if alternatives else None

    def run(self, root: etree.Element) -> None:
        self.visit(root)

    def slug_for(self, spelling: str) -> str | None:
        return self.exact.get(spelling) or self.spellings.get(spelling.lower())

    def visit(self, element: etree.Element) -> None:
        children = list(element)
        element.text, new = self.split(element.text)
        for index, node in enumerate(new):
            element.insert(index, node)
        for child in children:
            if child.tag == "a" and child.get("href", "").startswith("glossary:"):
                child = self.glossary_link(element, child)
            elif child.tag not in SKIP_TAGS and "admonition-title" not in child.get("class", ""):
                self.visit(child)
            child.tail, new = self.split(child.tail)
            position = list(element).index(child) + 1
            for offset, node in enumerate(new):
                element.insert(position + offset, node)

    def split(self, text: str | None) -> tuple[str | None, list[etree.Element]]:
        """Wrap first uses found in `text`: return the text before them and the new elements."""
        if not text or self.pattern is None:
            return text, []
        head, nodes, last = None, [], 0
        for match in self.pattern.finditer(text):
            slug = self.slug_for(match.group())
            if slug is None or slug in self.used:
                continue
            before = text[last : match.start()]
            if nodes:
                nodes[-1].tail = before
            else:
                head = before
            nodes.append(self.tooltip(slug, match.group()))
            last = match.end()
        if not nodes:
            return text, []
        nodes[-1].tail = text[last:]
        return head, nodes

    def glossary_link(self, parent: etree.Element, link: etree.Element) -> etree.Element:
        """Make a glossary: link the term's tooltip if it has none yet, else a glossary page link."""
        slug = link.get("href").partition(":")[2]
        if slug in self.terms and slug not in self.used:
            tooltip = self.tooltip(slug, "".join(link.itertext()))
            tooltip.tail = link.tail
            parent.insert(list(parent).index(link), tooltip)
            parent.remove(link)
            return tooltip
        link.set("href", glossary_url(slug))
        link.set("class", "glossary-link")
        return link

    def tooltip(self, slug: str, text: str) -> etree.Element:
        self.used.append(slug)
        entry = self.terms[slug]
        tip_id = f"gloss-{slug}"
        wrapper = etree.Element("span", {"class": "term", "data-term": slug})
        button = etree.SubElement(wrapper, "button", {"type": "button", "class": "term-button", "aria-describedby": tip_id})
        button.text = text
        tip = etree.SubElement(wrapper, "span", {"role": "tooltip", "id": tip_id, "class": "term-tip"})
        name = etree.SubElement(tip, "strong")
        name.text = entry.term
        name.tail = f": {entry.definition}"
        return wrapper


class CoursewareExtension(Extension):
    def __init__(self, terms: list[GlossaryEntry]):
        super().__init__()
        self.terms = terms

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Python-Markdown's name)
        # Before fenced_code (25), which would otherwise highlight a check as code.
        md.preprocessors.register(CheckBlockPreprocessor(md), "courseware_checks", 27)
        # After the inline patterns (20) have made the links and emphasis, before toc (5).
        md.treeprocessors.register(ContentLinkTreeprocessor(md), "courseware_links", 17)
        self.glossary = GlossaryTreeprocessor(md, self.terms)
        md.treeprocessors.register(self.glossary, "courseware_glossary", 15)


# --- Plain text -------------------------------------------------------------------------------


class TextExtractor(HTMLParser):
    """The words a reader reads: no diagrams, no tooltips, no heading anchors; code optional."""

    SKIPPED_TAGS = {"svg", "figure", "script", "style"}
    SKIPPED_CLASSES = {"headerlink", "term-tip"}
    VOID = {"br", "hr", "img", "input", "meta", "link", "wbr"}
    # Text runs on across inline elements ("<code>x</code>, y"); blocks end a run.
    BLOCKS = {"p", "li", "ul", "ol", "div", "pre", "table", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6",
              "blockquote", "dt", "dd", "figure", "figcaption", "section", "br"}  # fmt: skip

    def __init__(self, include_code: bool):
        super().__init__(convert_charrefs=True)
        self.skipped_tags = self.SKIPPED_TAGS | (set() if include_code else {"pre"})
        self.stack: list[bool] = []  # True where an open element hides its text
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        self.stack.append(tag in self.skipped_tags or bool(classes & self.SKIPPED_CLASSES))

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()
        if tag in self.BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data):
        if not any(self.stack):
            self.parts.append(data)


def plain_text(html: str, include_code: bool = False) -> str:
    extractor = TextExtractor(include_code)
    extractor.feed(html)
    extractor.close()
    return re.sub(r"\s+", " ", "".join(extractor.parts)).strip()


def count_words(text: str) -> int:
    return len(re.findall(r"\w+(?:['’-]\w+)*", text))


# --- The whole lesson -------------------------------------------------------------------------


@dataclass
class RenderedLesson:
    html: str
    toc_html: str
    body_text: str  # prose only: what a reader reads, for word counts and search snippets
    code_text: str  # prose and code, for search
    word_count: int
    terms_used: list[str] = field(default_factory=list)


def render_lesson(lesson: LessonSource, glossary: dict[str, GlossaryEntry]) -> RenderedLesson:
    courseware = CoursewareExtension([glossary[slug] for slug in lesson.glossary if slug in glossary])
    md = markdown.Markdown(
        extensions=["tables", "fenced_code", "codehilite", "toc", "admonition", "attr_list", courseware],
        extension_configs={
            "codehilite": {"css_class": "highlight", "guess_lang": False, "use_pygments": True},
            "toc": {"permalink": "#", "permalink_title": "Link to this section", "toc_depth": "2-3"},
        },
    )
    html = md.convert(lesson.body)
    body_text = plain_text(html)
    return RenderedLesson(
        html=html,
        toc_html=md.toc,
        body_text=body_text,
        code_text=plain_text(html, include_code=True),
        word_count=count_words(body_text),
        terms_used=courseware.glossary.used,
    )


def code_css() -> str:
    """Pygments token colours for both site themes, each scoped so neither leaks into the other.

    The site is dark when <html data-theme="dark">, or when no theme was chosen and the system
    prefers dark; light otherwise (see static/js/theme.js and static/css/site.css).
    """

    def rules(style: str, selectors: list[str]) -> str:
        css = HtmlFormatter(style=style).get_style_defs(selectors)
        # Only the scoped rules: Pygments also emits bare `pre` and line-number rules the site does not use.
        return "\n".join(line for line in css.splitlines() if line.startswith(":root"))

    light = rules(LIGHT_CODE_STYLE, [':root[data-theme="light"] .highlight'])
    light_system = rules(LIGHT_CODE_STYLE, [':root:not([data-theme="dark"]) .highlight'])
    dark = rules(DARK_CODE_STYLE, [':root[data-theme="dark"] .highlight'])
    dark_system = rules(DARK_CODE_STYLE, [':root:not([data-theme="light"]) .highlight'])
    return (
        f"/* Generated from Pygments' {LIGHT_CODE_STYLE} and {DARK_CODE_STYLE} styles by courseware.rendering.code_css. */\n"
        f"{light}\n@media (prefers-color-scheme: light) {{\n{light_system}\n}}\n"
        f"{dark}\n@media (prefers-color-scheme: dark) {{\n{dark_system}\n}}\n"
    )
