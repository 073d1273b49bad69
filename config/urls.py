from django.contrib import admin
from django.urls import include, path

from config import views
from labs.api import api as labs_api

# The workshop API shares the lab API's schema (/api/docs) and its JSON errors, under its own key.
labs_api.add_router("/workshops", "workshops.api.router")

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("accounts/", include("accounts.urls")),
    path("lessons/", include("courseware.urls")),
    path("practice/", include("practice.urls")),
    path("labs/", include("labs.urls")),
    path("live/", include("labs.live_urls")),  # the live process serves these (config/asgi.py)
    path("workshops/", include("workshops.urls")),
    path("api/", labs_api.urls),
    path("admin/", admin.site.urls),
]
