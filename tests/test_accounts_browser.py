"""Signing up, out and in, the way a new learner does it."""


def test_a_visitor_signs_up_logs_out_and_logs_back_in(page, django_user_model, screenshot):
    page.goto("/")
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password", exact=True).fill("correct-horse-battery-42")
    page.get_by_label("Password confirmation").fill("correct-horse-battery-42")
    screenshot("signup")
    page.get_by_role("button", name="Sign up").click()

    assert page.get_by_test_id("signed-in-as").inner_text() == "grace"
    assert page.get_by_role("status").inner_text() == "Welcome to Faultline, grace."
    assert django_user_model.objects.filter(username="grace").exists()

    page.get_by_role("button", name="Log out").click()
    assert page.get_by_role("link", name="Log in").is_visible()

    page.get_by_role("link", name="Log in").click()
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password").fill("correct-horse-battery-42")
    page.get_by_role("button", name="Log in").click()

    assert page.get_by_test_id("signed-in-as").inner_text() == "grace"


def test_a_wrong_password_shows_an_error_and_keeps_the_visitor_out(page, django_user_model):
    django_user_model.objects.create_user("linus", password="the-right-password-7")
    page.goto("/accounts/login/")

    page.get_by_label("Username").fill("linus")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()

    assert "Please enter a correct username and password" in page.get_by_role("alert").inner_text()
    assert page.get_by_test_id("signed-in-as").count() == 0


def test_signing_up_with_a_taken_name_explains_why(page, django_user_model):
    django_user_model.objects.create_user("taken", password="the-right-password-7")
    page.goto("/accounts/signup/")

    page.get_by_label("Username").fill("taken")
    page.get_by_label("Password", exact=True).fill("correct-horse-battery-42")
    page.get_by_label("Password confirmation").fill("correct-horse-battery-42")
    page.get_by_role("button", name="Sign up").click()

    assert "A user with that username already exists." in page.locator(".field-errors").inner_text()
    assert django_user_model.objects.filter(username="taken").count() == 1


def test_a_learner_who_forgot_their_password_chooses_a_new_one_through_the_mailed_link(page, django_user_model):
    import re

    from django.core import mail

    django_user_model.objects.create_user("ada", email="ada@example.org", password="forgotten-horse-42")
    page.goto("/accounts/login/")
    page.get_by_test_id("forgot-password").click()
    page.get_by_label("Email").fill("ada@example.org")
    page.get_by_role("button", name="Send me the link").click()
    assert "on its way" in page.get_by_test_id("reset-sent").inner_text()

    [message] = mail.outbox  # the live server runs in this process: its mail is in Django's test outbox
    page.goto(re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", message.body)[1])
    page.get_by_label("New password", exact=True).fill("remembered-battery-17")
    page.get_by_label("New password confirmation").fill("remembered-battery-17")
    page.get_by_role("button", name="Save my new password").click()
    assert "works now" in page.get_by_test_id("reset-complete").inner_text()

    page.get_by_role("link", name="Log in").last.click()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("remembered-battery-17")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_test_id("signed-in-as").inner_text() == "ada"
