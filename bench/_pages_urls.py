"""The site's URLs plus `/bench/trivial/`, a one-line template view: the yardstick of bench/pages.py.

It lives here, never in config/urls.py: the site has no such page. It goes through the same
middleware as every page, so the ratio of a page's rate to its rate is what the page itself costs.
"""

from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.urls import path

from config.urls import urlpatterns as site_urlpatterns

TRIVIAL = engines["django"].from_string("<p>Faultline</p>\n")


def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse(TRIVIAL.render({}, request))


urlpatterns = [path("bench/trivial/", trivial, name="bench_trivial"), *site_urlpatterns]
