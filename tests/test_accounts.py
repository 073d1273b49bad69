import pytest
from django.contrib.auth.models import Group

from accounts.roles import is_instructor


@pytest.mark.django_db
def test_the_instructor_role_exists_after_migrating():
    assert Group.objects.filter(name="instructor").exists()


@pytest.mark.django_db
def test_only_members_of_the_instructor_group_are_instructors(django_user_model):
    learner = django_user_model.objects.create_user("learner", password="x-long-password-1")
    teacher = django_user_model.objects.create_user("teacher", password="x-long-password-1")
    teacher.groups.add(Group.objects.get(name="instructor"))

    assert is_instructor(teacher)
    assert not is_instructor(learner)


@pytest.mark.django_db
def test_sign_up_rejects_mismatched_passwords_and_creates_nobody(client, django_user_model):
    response = client.post(
        "/accounts/signup/",
        {"username": "ada", "password1": "correct-horse-42", "password2": "correct-horse-43"},
    )

    assert response.status_code == 200
    assert "didn’t match" in response.content.decode()
    assert not django_user_model.objects.filter(username="ada").exists()


@pytest.mark.django_db
def test_sign_up_ignores_a_next_url_on_another_site(client):
    response = client.post(
        "/accounts/signup/?next=https://evil.example/",
        {"username": "ada", "password1": "correct-horse-42", "password2": "correct-horse-42"},
    )

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_a_kept_session_decoding_never_carries_one_requests_changes_into_the_next(client, django_user_model):
    """accounts/sessions.py remembers a signed-in session's decoded form by its signed text: each request gets
    its own copy, and a changed session (its text changes) is decoded afresh."""
    from accounts.sessions import SessionStore

    user = django_user_model.objects.create_user("ada")
    client.force_login(user)
    key = client.cookies["sessionid"].value
    first = SessionStore(key)
    assert first["_auth_user_id"] == str(user.pk)
    first["scribble"] = "only this request"

    second = SessionStore(key)
    assert "scribble" not in second and second["_auth_user_id"] == str(user.pk)
    first.save()
    assert SessionStore(key)["scribble"] == "only this request"
    client.logout()
    assert "_auth_user_id" not in SessionStore(key)
