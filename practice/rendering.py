"""Markdown to safe HTML for everything the practice pages show.

A candidate's answer is untrusted: Markdown passes raw HTML through, so every
rendering goes through nh3 (the Rust `ammonia` sanitiser), which keeps formatting
tags and drops scripts, event handlers, styles and `javascript:` links. The
question files are trusted, but rendering them the same way costs nothing and
keeps one rule: no Markdown reaches a page without nh3.
"""

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

EXTENSIONS = ["fenced_code", "tables", "sane_lists", "toc"]
# Answers sit under the page's own h2 sections, so "## Heading" in an answer becomes an h3.
EXTENSION_CONFIGS = {"toc": {"baselevel": 2}}
# No images: an answer must not make the browser fetch anything, least of all from another host.
TAGS = nh3.ALLOWED_TAGS - {"img"}


def render_markdown(text: str) -> SafeString:
    html = markdown.markdown(text or "", extensions=EXTENSIONS, extension_configs=EXTENSION_CONFIGS, output_format="html")
    return mark_safe(nh3.clean(html, tags=TAGS, link_rel="nofollow noopener noreferrer"))
