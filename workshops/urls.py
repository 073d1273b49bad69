from django.urls import path

from workshops import debrief_views, scenario_views, views

app_name = "workshops"
urlpatterns = [
    path("", views.index, name="index"),
    path("new", views.create, name="create"),
    path("join/", views.join, name="join"),
    path("join/<str:code>/", views.join_code, name="join_code"),
    path("<int:workshop_id>/", views.grid, name="grid"),
    path("<int:workshop_id>/cohort", views.cohort_tiles, name="cohort"),
    path("<int:workshop_id>/joining", views.joining_switch, name="joining"),
    path("<int:workshop_id>/code", views.rotate_code, name="rotate_code"),
    path("<int:workshop_id>/broadcasts", views.broadcast, name="broadcast"),
    path("<int:workshop_id>/broadcasts/<int:broadcast_id>/end", views.end_broadcast, name="end_broadcast"),
    path("<int:workshop_id>/stop", views.stop, name="stop"),
    path("<int:workshop_id>/announcements", views.announce, name="announce"),
    path("<int:workshop_id>/seats/<int:seat_id>/hand", views.lower_hand, name="lower_hand"),
    path("<int:workshop_id>/seats/<int:seat_id>/run", views.drop_in, name="drop_in"),
    path("<int:workshop_id>/seats/<int:seat_id>/reset", views.reset_seat, name="reset_seat"),
    path("<int:workshop_id>/co-instructors", views.co_instructors, name="co_instructors"),
    path("<int:workshop_id>/roster", views.upload_roster, name="roster"),
    path("<int:workshop_id>/end", views.end_workshop, name="end"),
    path("seats/<int:seat_id>/", views.classroom, name="classroom"),
    path("seats/<int:seat_id>/hand", views.hand, name="hand"),
    # The debrief, its exports, and the workshop API's key (workshops/debrief_views.py).
    path("<int:workshop_id>/debrief", debrief_views.debrief_page, name="debrief"),
    path("<int:workshop_id>/debrief.csv", debrief_views.debrief_csv, name="debrief_csv"),
    path("<int:workshop_id>/debrief.json", debrief_views.debrief_json, name="debrief_json"),
    path("<int:workshop_id>/api-key", debrief_views.new_api_key, name="api_key"),
]

# --- Scenarios (workshops/scenario_views.py) ---------------------------------------------------------
urlpatterns += [
    path("<int:workshop_id>/scenarios/", scenario_views.panel, name="scenarios"),
    path("<int:workshop_id>/scenarios/play", scenario_views.play, name="play_scenario"),
    path("<int:workshop_id>/scenarios/<int:play_id>/pause", scenario_views.pause, name="pause_scenario"),
    path("<int:workshop_id>/scenarios/<int:play_id>/resume", scenario_views.resume, name="resume_scenario"),
    path("<int:workshop_id>/scenarios/<int:play_id>/next", scenario_views.move_on, name="move_on_scenario"),
    path("<int:workshop_id>/scenarios/<int:play_id>/stop", scenario_views.stop, name="stop_scenario"),
]
