"""The debrief page and its exports (CSV, JSON), and the workshop API key shown once.

Each is the workshop instructor's only: `_get_workshop_for_instructor` answers 404 to anyone
else, as the grid does. The page is printable: debrief.css drops the site's chrome and the
buttons on paper.
"""

import csv

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from workshops import api_keys, debrief, debrief_chart
from workshops.models import WorkshopKey
from workshops.views import _get_workshop_for_instructor


def _filename(workshop, extension: str) -> str:
    return f"workshop-{workshop.pk}-debrief.{extension}"


@never_cache
@require_GET
def debrief_page(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    built = debrief.build(workshop)
    return render(request, "workshops/debrief.html", {"workshop": workshop, "debrief": built, "chart": debrief_chart.chart(built)})


@never_cache
@require_GET
def debrief_csv(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename(workshop, "csv")}"'
    csv.writer(response).writerows(debrief.csv_rows(debrief.build(workshop)))
    return response


@never_cache
@require_GET
def debrief_json(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    response = JsonResponse(debrief.as_json(debrief.build(workshop)), json_dumps_params={"ensure_ascii": False, "indent": 1})
    response["Content-Disposition"] = f'attachment; filename="{_filename(workshop, "json")}"'
    return response


@never_cache
@require_POST
def new_api_key(request: HttpRequest, workshop_id: int) -> HttpResponse:
    """A new key for the workshop API, shown in this response only; the previous key stops working."""
    workshop = _get_workshop_for_instructor(request, workshop_id)
    key = api_keys.new_key(workshop, request.user)
    context = {"workshop": workshop, "key": key, "made": WorkshopKey.objects.get(workshop=workshop)}
    if request.htmx:
        return render(request, "workshops/api_key.html#key_panel", context)
    return render(request, "workshops/api_key.html", context)
