from django.urls import path

from courseware import views

app_name = "courseware"
urlpatterns = [
    path("", views.index, name="index"),
    path("search/", views.search, name="search"),
    path("glossary/", views.glossary, name="glossary"),
    path("code.css", views.code_css, name="code_css"),
    path("checks/<slug:check_id>/", views.inline_check, name="check"),
    path("checks/<slug:check_id>/answer/", views.answer_check, name="answer_check"),
    path("<slug:slug>/", views.lesson, name="lesson"),
    path("<slug:slug>/read/", views.mark_read, name="mark_read"),
]
