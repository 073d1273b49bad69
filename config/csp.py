"""The Content-Security-Policy every response carries: scripts and styles from this site's own files only.

No page has an inline script or style (htmx's indicator style is switched off in base.html),
so an injected `<script>` or `style=` that slipped past escaping would not run. The only other
origin a page talks to is the live process of a lab run's event stream (labs/live.py), on the
next port or at LAB_LIVE_URL.
"""

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

from labs.live import live_origin

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def policy(request: HttpRequest) -> str:
    try:
        live = live_origin(request)
    except DisallowedHost:  # answered with 400 already; the policy still goes out
        live = ""
    directives = {**POLICY, "connect-src": f"'self' {live}".strip()}
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", policy(request))
        return response
