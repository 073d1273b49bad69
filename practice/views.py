from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "practice/index.html")


@require_GET
def question(request: HttpRequest, question_id: str) -> HttpResponse:
    # Placeholder until the question bank is loaded from files; the URL name is stable.
    from django.http import Http404

    raise Http404("No such question.")
