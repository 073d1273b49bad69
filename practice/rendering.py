"""Markdown to safe HTML for everything the practice pages show.

A candidate's answer is untrusted: Markdown passes raw HTML through, so every
rendering goes through nh3 (the Rust `ammonia` sanitiser), which keeps formatting
tags and drops scripts, event handlers, styles and `javascript:` links. The
question files are trusted, but rendering them the same way costs nothing and
keeps one rule: no Markdown reaches a page without nh3.
"""

import functools
import html

import markdown
import nh3
from django.utils.html import strip_tags
from django.utils.safestring import SafeString, mark_safe

EXTENSIONS = ["fenced_code", "tables", "sane_lists", "toc"]
# Answers sit under the page's own h2 sections, so "## Heading" in an answer becomes an h3.
EXTENSION_CONFIGS = {"toc": {"baselevel": 2}}
# No images: an answer must not make the browser fetch anything, least of all from another host.
TAGS = nh3.ALLOWED_TAGS - {"img"}


def render_markdown(text: str) -> SafeString:
    rendered = markdown.markdown(text or "", extensions=EXTENSIONS, extension_configs=EXTENSION_CONFIGS)
    return mark_safe(nh3.clean(rendered, tags=TAGS, link_rel="nofollow noopener noreferrer"))


@functools.lru_cache(maxsize=1024)
def render_question_text(text: str) -> SafeString:
    """`render_markdown` for the question files' own text (prompts, options, hints, model answers), remembered.

    The same few hundred texts are shown again and again; keyed by the text itself, a reloaded
    question is rendered afresh. Never for a candidate's answer: those are each new.
    """
    return render_markdown(text)


def plain_text(text: str) -> str:
    """A candidate's text as plain text, for a quote: through nh3 first, then without any tag.

    The template escapes the result again, so nothing in it can be markup.
    """
    return html.unescape(strip_tags(nh3.clean(text or "", tags=set())))
