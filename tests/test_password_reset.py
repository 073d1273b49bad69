"""A learner who forgot their password gets a link by e-mail and chooses a new one; an admin makes instructors
from the command line. The reset is rate limited, and says the same whether an account has the address or not."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from accounts.roles import is_instructor

pytestmark = pytest.mark.django_db
OLD, NEW = "forgotten-horse-42", "remembered-battery-17"


def link_in(message) -> str:
    return re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", message.body)[1]


def test_a_learner_resets_a_forgotten_password_from_the_log_in_page():
    get_user_model().objects.create_user("ada", email="ada@example.org", password=OLD)
    client = Client()
    login_page = client.get(reverse("accounts:login")).content.decode()
    assert reverse("accounts:password_reset") in login_page

    sent = client.post(reverse("accounts:password_reset"), {"email": "ADA@example.org"}, follow=True)
    assert "a link to choose a new password is on its way" in sent.content.decode()
    [message] = mail.outbox
    assert message.to == ["ada@example.org"] and "Hello ada" in message.body

    form = client.get(link_in(message), follow=True)  # Django moves the token out of the URL, then shows the form
    chosen = client.post(form.redirect_chain[-1][0], {"new_password1": NEW, "new_password2": NEW}, follow=True)
    assert "Your new password works now" in chosen.content.decode()
    assert Client().login(username="ada", password=NEW) and not Client().login(username="ada", password=OLD)
    again = client.get(link_in(message), follow=True).content.decode()
    assert "This link no longer works" in again


def test_an_unknown_address_gets_the_same_answer_and_no_mail():
    response = Client().post(reverse("accounts:password_reset"), {"email": "nobody@example.org"}, follow=True)
    assert "a link to choose a new password is on its way" in response.content.decode() and not mail.outbox


def test_a_fourth_reset_for_one_address_within_the_hour_gets_429_and_sends_nothing():
    get_user_model().objects.create_user("ada", email="ada@example.org", password=OLD)
    client = Client()
    for _ in range(3):
        assert client.post(reverse("accounts:password_reset"), {"email": "ada@example.org"}).status_code == 302
    refused = client.post(reverse("accounts:password_reset"), {"email": "ada@example.org"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Too many password-reset requests for this address" in refused.content.decode()
    assert len(mail.outbox) == 3


def test_createinstructor_gives_the_role_and_a_one_time_link_to_choose_a_password(capsys):
    call_command("createinstructor", "grace", "--email", "grace@example.org", "--base-url", "https://faultline.example.org")
    printed = capsys.readouterr().out
    grace = get_user_model().objects.get(username="grace")
    assert is_instructor(grace) and not grace.has_usable_password() and grace.email == "grace@example.org"
    link = re.search(r"https://faultline\.example\.org(/accounts/reset/\S+/)", printed)[1]
    client = Client()
    form = client.get(link, follow=True)
    client.post(form.redirect_chain[-1][0], {"new_password1": NEW, "new_password2": NEW})
    assert Client().login(username="grace", password=NEW)

    with pytest.raises(CommandError, match="--email 'not-an-address' is not an e-mail address"):
        call_command("createinstructor", "hopper", "--email", "not-an-address")
    assert not get_user_model().objects.filter(username="hopper").exists()
