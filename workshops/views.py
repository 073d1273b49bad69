"""Workshop pages: the instructor's list and grid, joining by code, and the learner's classroom bar.

Who sees what (workshops/access.py):
- A workshop's grid and every action on it are its instructors': its owner and the co-instructors
  the owner added. Anyone else gets 404 from `_get_workshop_for_instructor`, so a workshop's
  existence stays private. Adding co-instructors and ending the workshop are the owner's alone.
- An instructor drops in on a seated learner's run: the lab page, read-only, and its read-only
  URLs (panels, lineage, stream); the learner's bar says they are being looked at.
- A seat's classroom bar and hand are its learner's: anyone else gets 404 from `_get_seat_for_learner`.
- Creating a workshop needs the instructor role (403 otherwise); an admin grants it by adding
  the user to the "instructor" group (accounts.roles).
- The join page is public: it shows a workshop's title, lab and instructor to whoever has its code.
The learner's run itself is reached only through the labs' own run URLs, which answer 404 to
anybody but its owner.

Each instructor action answers an htmx request with the controls again (and a "cohort:changed"
event, so the grid refreshes at once); without htmx it redirects back to the grid.
"""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from accounts.forms import LoginForm, SignUpForm
from accounts.roles import is_instructor
from labs.catalogue import CATALOGUE
from labs import runs
from labs.live import live_base
from labs.views import lab_lessons, run_context
from workshops import access, broadcasts, codes, cohort, joining, lifecycle, notices, roster
from workshops.forms import AnnouncementForm, BroadcastForm, CoInstructorForm, JoinCodeForm, RosterForm, WorkshopForm
from workshops.models import Seat, Workshop

COHORT_CHANGED = "cohort:changed"  # the client event that makes the grid refresh now


def _only_for(request: HttpRequest, rows, **lookup):
    """The row of `rows` matching `lookup` (which names the signed-in user); 404 otherwise, so its existence stays private."""
    found = rows.filter(**lookup).first() if request.user.is_authenticated else None
    if found is None:
        raise Http404("Not found")
    return found


def _get_workshop_for_instructor(request: HttpRequest, workshop_id: int) -> Workshop:
    """The workshop, if the signed-in user owns or co-teaches it; 404 for anyone else."""
    return access.workshop_for_instructor(request.user, workshop_id)


def _get_workshop_for_owner(request: HttpRequest, workshop_id: int) -> Workshop:
    """The workshop, if the signed-in user owns it; 404 for anyone else, co-instructors included."""
    return access.workshop_for_owner(request.user, workshop_id)


def _get_seat_with_run(workshop: Workshop, seat_id: int) -> Seat:
    return get_object_or_404(Seat.objects.select_related("learner", "run"), workshop=workshop, pk=seat_id, run__isnull=False)


def _get_seat_for_learner(request: HttpRequest, seat_id: int) -> Seat:
    """The seat, if it is the signed-in user's; 404 for anyone else (the instructor included)."""
    return _only_for(request, Seat.objects.select_related("workshop__owner"), pk=seat_id, learner_id=request.user.pk)


def _require_instructor(request: HttpRequest) -> None:
    if not is_instructor(request.user):
        raise PermissionDenied("Only instructors create workshops: ask an admin to add you to the instructor group.")


def _join_url(request: HttpRequest, workshop: Workshop) -> str:
    return request.build_absolute_uri(reverse("workshops:join_code", args=[workshop.join_code]))


# --- Lists and creating ----------------------------------------------------------------------------


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    seats = Seat.objects.filter(learner=request.user).select_related("workshop__owner").order_by("-joined_at")
    context = {
        "instructor": is_instructor(request.user),
        "taught": access.taught_by(request.user).annotate(seats_taken=Count("seats")),
        "seats": seats,
        "join_form": JoinCodeForm(),
    }
    return render(request, "workshops/index.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def create(request: HttpRequest) -> HttpResponse:
    _require_instructor(request)
    form = WorkshopForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        workshop = form.save(commit=False)
        workshop.owner = request.user
        workshop.save()
        messages.success(request, f"Workshop created. Learners join with the code {workshop.shown_code} or the link below.")
        return redirect("workshops:grid", workshop.pk)
    return render(request, "workshops/create.html", {"form": form})


# --- Joining ---------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def join(request: HttpRequest) -> HttpResponse:
    """Type a code: on to that workshop's join page, or a message saying no workshop has it."""
    form = JoinCodeForm(request.GET or request.POST or None)
    unknown = False
    if form.is_bound and form.is_valid():
        workshop = joining.find(form.cleaned_data["code"])
        if workshop is not None:
            return redirect("workshops:join_code", workshop.join_code)
        form.add_error("code", joining.unknown_code_message(form.data.get("code", "")))
        unknown = True
    return render(request, "workshops/join.html", {"form": form}, status=404 if unknown else 200)


@require_http_methods(["GET", "POST"])
def join_code(request: HttpRequest, code: str) -> HttpResponse:
    """The join link: the workshop, and a Join button; a visitor signs in or signs up here and joins in one go."""
    workshop = joining.find(code)
    if workshop is None:
        form = JoinCodeForm({"code": code})
        form.is_valid()
        form.add_error("code", joining.unknown_code_message(code))
        return render(request, "workshops/join.html", {"form": form}, status=404)
    if workshop.join_code != code:
        return redirect("workshops:join_code", workshop.join_code)  # typed in lower case or with a dash
    user = request.user if request.user.is_authenticated else None
    login_form = LoginForm(request, data=request.POST if request.POST.get("action") == "login" else None)
    signup_form = SignUpForm(request.POST if request.POST.get("action") == "signup" else None, prefix="new", request=request)
    problem = joining.refusal(workshop, user)
    if request.method == "POST" and problem is None:
        try:
            seat = _join_from_post(request, workshop, login_form, signup_form)
        except joining.JoinRefused as refused:
            problem = str(refused)
        else:
            if seat is not None:
                messages.success(request, f"You joined “{workshop.title}”. This lab run is yours for the workshop.")
                return redirect("labs:lab", workshop.lab)
    context = {
        "workshop": workshop,
        "lab": CATALOGUE.get(workshop.lab),
        "problem": problem,
        "login_form": login_form,
        "signup_form": signup_form,
        "has_run": user is not None and user.lab_pages.filter(lab=workshop.lab).exists(),
        "seated": user is not None and Seat.objects.filter(workshop=workshop, learner=user).exists(),
    }
    return render(request, "workshops/join_code.html", context, status=200 if problem is None or request.method == "GET" else 409)


def _join_from_post(request: HttpRequest, workshop: Workshop, login_form, signup_form) -> Seat | None:
    """Join as the signed-in user, or sign in / sign up and join; None when a form has errors. JoinRefused writes nothing."""
    if request.user.is_authenticated:
        return joining.join(workshop, request.user)
    action = request.POST.get("action")
    if action == "login" and login_form.is_valid():
        user = login_form.get_user()
        seat = joining.join(workshop, user)
    elif action == "signup" and signup_form.is_valid():
        with transaction.atomic():  # a refused seat takes the new account back with it
            user = signup_form.save()
            seat = joining.take_seat(workshop, user)
        joining.give_run(seat)
    else:
        return None
    login(request, user)
    return seat


# --- The grid ----------------------------------------------------------------------------------------


def _grid_query(request: HttpRequest) -> tuple[str, str]:
    sort = request.GET.get("sort", "name")
    show = request.GET.get("show", "all")
    return (sort if sort in cohort.SORTS else "name"), show


def _cohort_context(request: HttpRequest, workshop: Workshop) -> dict:
    sort, show = _grid_query(request)
    notices.note_grid_open(workshop)
    return {
        "workshop": workshop,
        "cohort": cohort.read(workshop, sort, show),
        "sort": sort,
        "show": show,
        "sorts": cohort.SORTS,
        "shows": cohort.show_options(workshop),
        "in_force": list(broadcasts.in_force(workshop).prefetch_related("runs")),
        "poll_seconds": cohort.POLL_SECONDS,
        "lane": instructor_lane(request, workshop),
    }


# What the grid sends through the instructor's lane: action -> (the live process's URL name, the page server's).
LANE = {"stop": ("live:workshop_stop", "workshops:stop"), "broadcast": ("live:workshop_broadcast", "workshops:broadcast"),
        "cohort": ("live:workshop_cohort", "workshops:cohort")}  # fmt: skip


def instructor_lane(request: HttpRequest, workshop: Workshop) -> dict[str, str]:
    """Where the grid posts its emergency stop and broadcasts, and polls its tiles: the live process when it
    shares the page's origin (behind a reverse proxy), which answers them without queueing behind the lab
    pages' requests (labs/live_urls.py); else the page server."""
    live = live_base(request) == ""
    return {action: reverse(names[0] if live else names[1], args=[workshop.pk]) for action, names in LANE.items()}


def _controls_context(request: HttpRequest, workshop: Workshop, **forms) -> dict:
    return {
        "workshop": workshop,
        "lane": instructor_lane(request, workshop),
        "lab": CATALOGUE.get(workshop.lab),
        "join_url": _join_url(request, workshop),
        "qr": codes.qr_svg(_join_url(request, workshop)),
        "seats_taken": workshop.seats.count(),
        "broadcast_form": forms.get("broadcast_form") or BroadcastForm(workshop),
        "announcement_form": forms.get("announcement_form") or AnnouncementForm(),
        "announcement": notices.current_announcement(workshop),
        "stops": workshop.stops.select_related("stopped_by")[:5],
        "owner": workshop.owner_id == request.user.pk,
        "co_instructors": list(workshop.co_instructors.all()),
        "co_instructor_form": forms.get("co_instructor_form") or CoInstructorForm(workshop),
        "roster_form": forms.get("roster_form") or RosterForm(),
        "roster_size": workshop.roster.count(),
        "keep_days": settings.WORKSHOP_KEEP_DAYS,
        "not_joined": roster.not_joined(workshop),
    }


@never_cache
@require_GET
def grid(request: HttpRequest, workshop_id: int) -> HttpResponse:
    """The cohort grid; the page polls it with htmx every few seconds for the tiles alone."""
    workshop = _get_workshop_for_instructor(request, workshop_id)
    context = _cohort_context(request, workshop)
    if request.htmx:
        return render(request, "workshops/grid.html#cohort", context)
    return render(request, "workshops/grid.html", {**context, **_controls_context(request, workshop)})


@require_GET
def cohort_tiles(request: HttpRequest, workshop_id: int) -> HttpResponse:
    """The grid's tiles alone, which the grid polls (through the instructor's lane behind a proxy)."""
    workshop = _get_workshop_for_instructor(request, workshop_id)
    return render(request, "workshops/grid.html#cohort", _cohort_context(request, workshop))


async def cohort_tiles_in_lane(request: HttpRequest, workshop_id: int) -> HttpResponse:
    """`cohort_tiles` for the live process, in a thread of the instructor's own: Django's ASGI handler runs every sync
    view of the process one at a time in one thread, and a grid refresh (a second on a saturated machine) must not
    hold an instructor's emergency stop or broadcast behind it; nor may the hundred live streams' renders, which
    share the event loop's default threads, hold the grid's refresh behind them. Reached over WSGI (the page
    server, the tests) it runs in the request's own thread, as a sync view would."""
    if not isinstance(request, ASGIRequest):
        return await sync_to_async(cohort_tiles)(request, workshop_id)
    return await sync_to_async(cohort_tiles, thread_sensitive=False, executor=INSTRUCTOR_THREADS)(request, workshop_id)


INSTRUCTOR_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="instructor-lane")  # the grids' polls


def _controls_response(request: HttpRequest, workshop: Workshop, note: str = "", error: str = "", **forms) -> HttpResponse:
    problems = [error] if error else [f"{' '.join(e)}" for form in forms.values() for e in form.errors.values()]
    if not request.htmx:
        for problem in problems:
            messages.error(request, problem)
        if note and not problems:
            messages.success(request, note)
        return redirect("workshops:grid", workshop.pk)
    context = {**_controls_context(request, workshop, **forms), "note": "" if problems else note, "error": error}
    response = render(request, "workshops/grid.html#controls_response", context)
    return response if problems else trigger_client_event(response, COHORT_CHANGED)


@require_POST
def joining_switch(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    workshop.joining_open = request.POST.get("open") == "1"
    workshop.save(update_fields=["joining_open"])
    return _controls_response(request, workshop, "Joining is open again." if workshop.joining_open else
                              "Joining is closed: the code and link now turn new learners away.")  # fmt: skip


@require_POST
def rotate_code(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    old = workshop.shown_code
    for _ in range(5):  # a clash with another workshop's code is rare; try again if it happens
        candidate = codes.new_code()
        if not Workshop.objects.filter(join_code=candidate).exists():
            break
    workshop.join_code = candidate
    workshop.save(update_fields=["join_code"])
    return _controls_response(request, workshop, f"New code {workshop.shown_code}: {old} no longer works. Learners already in stay in.")


@require_POST
def broadcast(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    form = BroadcastForm(workshop, request.POST)
    if not form.is_valid():
        return _controls_response(request, workshop, broadcast_form=form)
    data = form.cleaned_data
    seats = list(data["seat"]) if data["to"] == "selected" else None
    try:
        started = broadcasts.start(workshop, request.user, data["target"], form.fault, data["duration_s"], seats)
    except ValueError as exc:
        form.add_error(None, str(exc))
        return _controls_response(request, workshop, broadcast_form=form)
    return _controls_response(request, workshop, f"Injected {notices.describe(started)} into {notices.runs_text(started.runs.count())} "
                              f"for {notices.duration_text(data['duration_s'])}.")  # fmt: skip


@require_POST
def end_broadcast(request: HttpRequest, workshop_id: int, broadcast_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    chosen = get_object_or_404(workshop.broadcasts, pk=broadcast_id)
    ended = broadcasts.end_now(chosen)
    return _controls_response(request, workshop, f"Ended {notices.describe(chosen)}." if ended else "That fault had ended already.")


@require_POST
def stop(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    done = broadcasts.emergency_stop(workshop, request.user)
    return _controls_response(request, workshop, f"Emergency stop: every fault cleared in {notices.runs_text(done.runs_cleared)} in {done.took_ms} ms.")


@require_POST
def announce(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    if request.POST.get("take_down"):
        notices.take_down(workshop)
        return _controls_response(request, workshop, "Announcement taken down.")
    form = AnnouncementForm(request.POST)
    if not form.is_valid():
        return _controls_response(request, workshop, announcement_form=form)
    notices.announce(workshop, request.user, form.cleaned_data["text"].strip())
    return _controls_response(request, workshop, "Announced on every learner's page.")


@require_POST
def lower_hand(request: HttpRequest, workshop_id: int, seat_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    seat = get_object_or_404(Seat, workshop=workshop, pk=seat_id)
    Seat.objects.filter(pk=seat.pk).update(hand_raised_at=None)
    if seat.run_id:
        notices.tell([seat.run_id], "Your instructor saw your raised hand")
    if request.htmx:
        return trigger_client_event(HttpResponse(status=204), COHORT_CHANGED)
    return redirect("workshops:grid", workshop.pk)


# --- The learner's classroom bar ---------------------------------------------------------------------


@never_cache
@require_GET
def classroom(request: HttpRequest, seat_id: int) -> HttpResponse:
    seat = _get_seat_for_learner(request, seat_id)
    return render(request, "workshops/classroom_bar.html", {"classroom": notices.classroom(seat), "bar_url": notices.bar_url(request, seat)})


async def classroom_in_lane(request: HttpRequest, seat_id: int) -> HttpResponse:
    """`classroom` for the live process, in a thread of the executor's own (as `cohort_tiles_in_lane`)."""
    return await sync_to_async(classroom, thread_sensitive=not isinstance(request, ASGIRequest))(request, seat_id)


@require_POST
def hand(request: HttpRequest, seat_id: int) -> HttpResponse:
    seat = _get_seat_for_learner(request, seat_id)
    seat.hand_raised_at = timezone.now() if request.POST.get("raise") == "1" else None
    seat.save(update_fields=["hand_raised_at"])
    if request.htmx:
        return render(request, "workshops/classroom_bar.html", {"classroom": notices.classroom(seat), "bar_url": notices.bar_url(request, seat)})
    messages.success(request, "Your hand is raised: your instructor sees it on the grid." if seat.hand_raised_at else "Hand lowered.")
    return redirect("labs:lab", seat.workshop.lab)


# --- Drop in on a learner's run ------------------------------------------------------------------


@never_cache
@require_GET
def drop_in(request: HttpRequest, workshop_id: int, seat_id: int) -> HttpResponse:
    """The learner's lab page as they see it, without its controls; the learner's bar says an instructor is looking."""
    workshop = _get_workshop_for_instructor(request, workshop_id)
    seat = _get_seat_with_run(workshop, seat_id)
    lab = CATALOGUE[workshop.lab]
    if not access.being_watched(seat):
        notices.tell([seat.run_id], "Your instructor is looking at your run")
    access.note_watching(seat)
    context = {"lab": lab, "lessons": lab_lessons(lab), **run_context(request, lab, seat.run.lab),
               "read_only": True, "watching": seat, "workshop": workshop}  # fmt: skip
    return render(request, "labs/lab.html", context)


@require_POST
def reset_seat(request: HttpRequest, workshop_id: int, seat_id: int) -> HttpResponse:
    """Start the learner's run again from its seed, as their own Reset button does; they are told."""
    workshop = _get_workshop_for_instructor(request, workshop_id)
    seat = _get_seat_with_run(workshop, seat_id)
    if workshop.ended:
        raise PermissionDenied(access.FROZEN_MESSAGE)
    runs.restart_lab_run(seat.run.lab, CATALOGUE[workshop.lab])
    notices.tell([seat.run_id], "Your instructor reset your run: it starts again from its seed; your history is kept")
    messages.success(request, f"{seat.learner.get_username()}'s run starts again from its seed.")
    return redirect("workshops:drop_in", workshop.pk, seat.pk)


# --- Co-instructors, roster, ending --------------------------------------------------------------


@require_POST
def co_instructors(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_owner(request, workshop_id)
    if request.POST.get("remove"):
        removed = workshop.co_instructors.filter(pk=request.POST["remove"] if request.POST["remove"].isascii() and
                                                 request.POST["remove"].isdecimal() else 0).first()  # fmt: skip
        if removed is None:
            return _controls_response(request, workshop, error="That person is not a co-instructor of this workshop.")
        workshop.co_instructors.remove(removed)
        return _controls_response(request, workshop, f"{removed.get_username()} no longer teaches this workshop.")
    form = CoInstructorForm(workshop, request.POST)
    if not form.is_valid():
        return _controls_response(request, workshop, co_instructor_form=form)
    workshop.co_instructors.add(form.cleaned_data["username"])
    return _controls_response(request, workshop, f"{form.cleaned_data['username'].get_username()} now teaches this workshop with you.")


@require_POST
def upload_roster(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    form = RosterForm(request.POST, request.FILES)
    if not form.is_valid():
        return _controls_response(request, workshop, roster_form=form)
    people = form.cleaned_data["people"]
    roster.replace(workshop, people)
    return _controls_response(request, workshop, f"Roster saved: {len(people)} people." if people else "Roster cleared.")


@require_POST
def end_workshop(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_owner(request, workshop_id)
    if request.POST.get("confirm") != workshop.shown_code:
        return _controls_response(request, workshop, error=f"To end the workshop, type its code {workshop.shown_code} in the box.")
    if not lifecycle.end(workshop, request.user):
        return _controls_response(request, workshop, error="This workshop had ended already.")
    workshop.refresh_from_db()
    return _controls_response(request, workshop, f"Workshop ended: every run is read-only, and is deleted on {workshop.runs_deleted_on:%Y-%m-%d}.")
