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
