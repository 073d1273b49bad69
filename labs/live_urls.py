"""The live process's URLs: the lab pages' event streams, lab 9's simulated services (labs/services.py),
and the instructor's lane, under /live/ (config/asgi.py serves nothing else).

The instructor's lane: the emergency stop and a broadcast, the two actions a workshop needs within
a second, and the grid's poll of its tiles, are answered here too; so is the learners' classroom bar, which
every page asks for at once when a broadcast or a stop reaches it. With a hundred lab pages open, the page server's workers queue
their panel refreshes; the live process holds its connections without a worker each, so an
instructor's stop, or their view of the cohort, does not wait behind them. The grid uses it only when the live process
shares the page's origin (a reverse proxy: LAB_LIVE_URL "/"); otherwise to the page server
(workshops.views.instructor_lane).

A reverse proxy sends /live/ to the live process and everything else to the page server, so
pages and streams share one origin. The page server includes these too: reached directly
(tests, or LAB_LIVE_URL pointing at it), it answers with what has happened so far; the lab
page's own fallback, when the live process is down, is `labs:stream`, a path the proxy
sends to the page server.
"""

from django.urls import path

from labs import services, views
from workshops import views as workshop_views

app_name = "live"
urlpatterns = [
    path("runs/<int:run_id>/stream", views.stream, name="stream"),
    path("services/<int:run_id>/preferences-service/users/<int:user_id>", services.preferences, name="preferences_service"),
    path("services/<int:run_id>/template-service/templates/<str:name>", services.template, name="template_service"),
    path("workshops/<int:workshop_id>/stop", workshop_views.stop, name="workshop_stop"),
    path("workshops/<int:workshop_id>/broadcasts", workshop_views.broadcast, name="workshop_broadcast"),
    path("workshops/<int:workshop_id>/cohort", workshop_views.cohort_tiles_in_lane, name="workshop_cohort"),
    path("workshops/seats/<int:seat_id>/bar", workshop_views.classroom_in_lane, name="workshop_classroom"),
]
