"""The live process's URLs: the lab pages' event streams, and lab 9's simulated services (labs/services.py),
under /live/ (config/asgi.py serves nothing else).

A reverse proxy sends /live/ to the live process and everything else to the page server, so
pages and streams share one origin. The page server includes these too: reached directly
(tests, or LAB_LIVE_URL pointing at it), it answers with what has happened so far; the lab
page's own fallback, when the live process is down, is `labs:stream`, a path the proxy
sends to the page server.
"""

from django.urls import path

from labs import services, views

app_name = "live"
urlpatterns = [
    path("runs/<int:run_id>/stream", views.stream, name="stream"),
    path("services/<int:run_id>/preferences-service/users/<int:user_id>", services.preferences, name="preferences_service"),
    path("services/<int:run_id>/template-service/templates/<str:name>", services.template, name="template_service"),
]
