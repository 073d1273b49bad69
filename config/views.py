import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config import health
from config.prepared import Prepared
from courseware import kept_pages
from courseware.kept_pages import kept_page
from courseware.progress import where_to_continue
from labs.catalogue import CATALOGUE
from labs.models import RunLab
from practice import clock, scheduling
from practice.progress import progress_for


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The home page, kept whole (courseware/kept_pages.py); a learner's "pick up where you left off" in its slot."""
    resume = _where_you_left_off(request)
    return kept_page(request, "home", "home.html", dict, {("resume", ""): _resume_html(resume)})


def _resume_html(resume: dict | None) -> str:
    if resume is None:
        return ""
    key = (resume["lesson"] and resume["lesson"].pk, resume["due_reviews"], resume["lab"] and resume["lab"].slug)
    return kept_pages.fragment("resume", key, lambda: render_to_string("home.html#resume", {"resume": resume}))


def _where_you_left_off(request: HttpRequest) -> dict | None:
    """A signed-in learner's next lesson, practice reviews due, and latest lab; None when there is nothing yet."""
    if not request.user.is_authenticated:
        return None
    latest_lab = next(iter(_LATEST_LAB(owner_id=request.user.pk)), None)
    resume = {
        "lesson": where_to_continue(request.user),
        "due_reviews": scheduling.due_count(progress_for(request).due_dates().values(), clock.today()),
        "lab": CATALOGUE[latest_lab] if latest_lab else None,
    }
    return resume if any(resume.values()) else None


# Asked on every signed-in home page: compiled once (config/prepared.py).
_LATEST_LAB = Prepared(lambda owner_id: RunLab.objects.filter(owner_id=owner_id, lab__in=list(CATALOGUE))
                       .order_by("-started_at").values_list("lab", flat=True)[:1], owner_id=-1)  # fmt: skip


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Each part's status (config/health.py); 503 when an essential one is down. Details only to staff and the machine."""
    report = health.report()
    shown = report if _is_staff_or_the_machine(request) else health.public(report)
    return JsonResponse(shown, status=503 if report["status"] == "down" else 200)


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape (config/metrics.py): for staff, the machine itself, or a bearer of METRICS_TOKEN."""
    if not (_is_staff_or_the_machine(request) or _bears_metrics_token(request)):
        return HttpResponse(
            "/metrics is for staff, for this machine, or for a scraper sending `Authorization: Bearer` with METRICS_TOKEN.\n",
            status=403, content_type="text/plain; charset=utf-8",
        )  # fmt: skip
    from config.metrics import CONTENT_TYPE, exposition

    return HttpResponse(exposition(), content_type=CONTENT_TYPE)


def _bears_metrics_token(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.METRICS_TOKEN
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


def _is_staff_or_the_machine(request: HttpRequest) -> bool:
    # The machine itself: a loopback address with no proxy in between (a proxy adds X-Forwarded-For).
    from_the_machine = request.META.get("REMOTE_ADDR", "") in ("127.0.0.1", "::1") and "HTTP_X_FORWARDED_FOR" not in request.META
    return from_the_machine or (request.user.is_authenticated and request.user.is_staff)
