from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme

from accounts import limits
from accounts.forms import SignUpForm
from config import ratelimits


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    form = SignUpForm(request.POST or None, request=request)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        messages.success(request, f"Welcome to Faultline, {user.username}.")
        return redirect(next_url or "home")
    return render(request, "registration/signup.html", {"form": form, "next": next_url})


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset, counted: each request sends a mail, so an address cannot be flooded with them.

    The answer is the same whether an account has that address or not (Django's own rule), so
    the page reveals nothing about who is signed up; only the rate limit answers differently.
    """

    success_url = reverse_lazy("accounts:password_reset_done")
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"

    def form_valid(self, form):
        limited = limits.reset_refusal(self.request, form.cleaned_data["email"])
        if limited is not None:
            form.add_error(None, limits.sentence(ratelimits.refuse(self.request, limited)))
            return self.form_invalid(form)
        return super().form_valid(form)
