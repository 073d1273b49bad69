from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labs.catalogue import LABS


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "labs/index.html", {"labs": LABS.items()})
