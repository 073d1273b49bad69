from django.urls import path

from practice import views

app_name = "practice"
urlpatterns = [
    path("", views.index, name="index"),
    path("questions/<slug:question_id>/", views.question, name="question"),
    path("questions/<slug:question_id>/answer/", views.answer, name="answer"),
    path("questions/<slug:question_id>/give-up/", views.give_up, name="give_up"),
    path("questions/<slug:question_id>/attempts/<int:attempt_id>/", views.attempt, name="attempt"),
    path("questions/<slug:question_id>/attempts/<int:attempt_id>/grade/", views.grade, name="grade"),
    path("preview/", views.preview, name="preview"),
    path("review/", views.review, name="review"),
    path("progress/", views.dashboard, name="dashboard"),
    path("mock/", views.mock_index, name="mock_index"),
    path("mock/start/", views.mock_start, name="mock_start"),
    path("mock/<int:mock_id>/", views.mock, name="mock"),
    path("mock/<int:mock_id>/notes/", views.mock_notes, name="mock_notes"),
    path("mock/<int:mock_id>/next/", views.mock_next, name="mock_next"),
    path("mock/<int:mock_id>/follow-ups/", views.mock_follow_ups, name="mock_follow_ups"),
    path("mock/<int:mock_id>/finish/", views.mock_finish, name="mock_finish"),
    path("export/faultline-questions.apkg", views.export_deck, name="export_deck"),
    path("export/attempts.csv", views.export_attempts, name="export_attempts"),
]
