from django.urls import path

from labs import views

app_name = "labs"
urlpatterns = [
    path("", views.index, name="index"),
    path("history/", views.history, name="history"),
    path("<slug:slug>/", views.lab_page, name="lab"),
    path("<slug:slug>/start", views.start, name="start"),
    path("runs/<int:run_id>/reset", views.reset, name="reset"),
    path("runs/<int:run_id>/end", views.end, name="end"),
    path("runs/<int:run_id>/key", views.rotate_key, name="rotate_key"),
    path("runs/<int:run_id>/stream", views.stream, name="stream"),
    path("runs/<int:run_id>/panels", views.live_panels, name="panels"),
    path("runs/<int:run_id>/send", views.send, name="send"),
    path("runs/<int:run_id>/burst", views.burst, name="burst"),
    path("runs/<int:run_id>/poison", views.poison, name="poison"),
    path("runs/<int:run_id>/faults", views.fault, name="fault"),
    path("runs/<int:run_id>/faults/stop", views.stop_faults, name="stop_faults"),
    path("runs/<int:run_id>/defences", views.set_defences, name="defences"),
    path("runs/<int:run_id>/policy", views.policy, name="policy"),
    path("runs/<int:run_id>/call-policy", views.call_policy, name="call_policy"),
    path("runs/<int:run_id>/load", views.load, name="load"),
    path("runs/<int:run_id>/discovery", views.set_discovery, name="discovery"),
    path("runs/<int:run_id>/dead-letters/replay", views.replay, name="replay"),
    path("runs/<int:run_id>/dead-letters/discard", views.discard, name="discard"),
    path("runs/<int:run_id>/notifications/<int:intent_id>", views.notification, name="notification"),
    path("runs/<int:run_id>/deliveries/<int:delivery_id>", views.delivery, name="delivery"),
    path("runs/<int:run_id>/steps/<int:step>/prediction", views.prediction, name="prediction"),
    path("runs/<int:run_id>/steps/<int:step>/actions/<int:action>", views.act, name="act"),
    path("runs/<int:run_id>/steps/<int:step>/record", views.record, name="record"),
]
