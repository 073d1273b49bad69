"""Lab pages: the catalogue, a lab with its live run, the controls, the lineage of a message, the history.

Only a run's owner sees or changes it: every run URL goes through `_get_run_for_user`,
which answers 404 for anybody else. Each control answers an htmx request with the
fragment it changed (and asks the page to refresh its live panels); without htmx it
redirects back to the lab page.
"""

import functools
import time
import uuid
from dataclasses import asdict

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.db import IntegrityError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.utils.translation import ngettext
from django_htmx.http import trigger_client_event

from config.prepared import Prepared
from courseware import content_cache
from courseware.kept_pages import kept_page
from courseware.models import Lesson
from labs import checks, lineage, live, pace, panels, runs, steps
from labs.catalogue import CATALOGUE
from labs.forms import (
    BurstForm,
    CallPolicyForm,
    DeadLetterPickForm,
    DefencesForm,
    LoadForm,
    DiscoveryForm,
    PoisonForm,
    PolicyForm,
    PredictionForm,
    SendForm,
    StreamForm,
    fault_form,
    fault_settings,
)
from labs.lab_files import Lab
from labs.models import DeadLetter, Delivery, Experiment, LabRun, NotificationIntent, RunLab
from labs.pipeline import deadletters, defences, discovery, faults, intake, sync_chain, sync_load, traffic
from labs.pipeline.topology import SERVICES
from workshops import access

CHANGED = "lab:changed"  # the client event that makes the page refresh its live panels


def _get_lab(slug: str) -> Lab:
    lab = CATALOGUE.get(slug)
    if lab is None:
        raise Http404("No such lab")
    return lab


def _get_run_for_user(request: HttpRequest, run_id: int, even_if_frozen: bool = False) -> LabRun:
    """The run, if it is the signed-in user's; 404 for anyone else (the run's existence stays private).
    A change to a run of an ended workshop is refused with 403 and why (its owner may still delete it)."""
    if not request.user.is_authenticated:
        raise Http404("No such run")
    run = LabRun.objects.filter(pk=run_id, owner=request.user).select_related("lab").first()
    if run is None:
        raise Http404("No such run")
    if request.method not in ("GET", "HEAD") and not even_if_frozen:
        access.refuse_if_frozen(run.pk)
    runs.touch(run)  # a run in use is not an idle run for the relay's housekeeping
    return run


def _get_run_to_read(request: HttpRequest, run_id: int) -> tuple[LabRun, bool]:
    """(the run, read-only?): its owner reads and changes it; an instructor of the workshop whose seat
    holds it reads it (workshops.access), and the learner's page says so. 404 for anyone else."""
    if request.user.is_authenticated:
        run = LabRun.objects.filter(pk=run_id, owner=request.user).select_related("lab").first()
        if run is not None:
            runs.touch(run)
            return run, False
    seat = access.watched_seat(request.user, run_id)
    if seat is None:
        raise Http404("No such run")
    access.note_watching(seat)
    return LabRun.objects.select_related("lab").get(pk=run_id), True


def _run_lab(run: LabRun) -> RunLab:
    try:
        return run.lab
    except RunLab.DoesNotExist:
        raise Http404("This run was not started from a lab page") from None


def _back(run: LabRun) -> HttpResponse:
    return redirect("labs:lab", _run_lab(run).lab)


def _changed(response: HttpResponse) -> HttpResponse:
    return trigger_client_event(response, CHANGED)


# --- Pages --------------------------------------------------------------------------------------

# A learner's runs, asked for on every catalogue and lab page: compiled once (config/prepared.py).
_LABS_STARTED = Prepared(lambda owner_id: RunLab.objects.filter(owner_id=owner_id).values_list("lab", flat=True), owner_id=-1)
_RUN_OF_LAB = Prepared(lambda owner_id, lab: RunLab.objects.filter(owner_id=owner_id, lab=lab).values_list("pk", flat=True)[:1],
                       owner_id=-1, lab="\0")  # fmt: skip


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The catalogue, kept whole (courseware/kept_pages.py), with "run in progress" on the labs this learner started."""
    started = set()
    if request.user.is_authenticated:
        started = set(_LABS_STARTED(owner_id=request.user.pk))
    return kept_page(request, "labs", "labs/index.html", lambda: {"labs": CATALOGUE.values()},
                     {("started", slug): _run_in_progress() for slug in started})  # fmt: skip


@functools.cache
def _run_in_progress() -> str:
    return render_to_string("labs/index.html#lab_started")


@require_GET
def lab_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The lab with this learner's run; a first load (no run yet) is kept whole (courseware/kept_pages.py)."""
    lab = _get_lab(slug)
    if request.user.is_authenticated and _RUN_OF_LAB(owner_id=request.user.pk, lab=slug):  # a first load has none
        run_lab = RunLab.objects.filter(owner=request.user, lab=slug).select_related("run").first()
        if run_lab is not None:
            context = {"lab": lab, "lessons": lab_lessons(lab), **run_context(request, lab, run_lab),
                       "read_only": access.is_frozen(run_lab.run_id)}  # fmt: skip
            return render(request, "labs/lab.html", context)
    return kept_page(request, f"lab:{slug}", "labs/lab.html", lambda: {"lab": lab, "run": None, "lessons": lab_lessons(lab)})


def lab_lessons(lab: Lab) -> list[tuple[str, str]]:
    """(url, title) of the lessons to read first, kept per content version (courseware/content_cache.py)."""
    return content_cache.cached(f"lab-lessons:{lab.slug}", lambda: _lab_lessons(lab))


def _lab_lessons(lab: Lab) -> list[tuple[str, str]]:
    titles = dict(Lesson.objects.filter(slug__in=lab.lessons).values_list("slug", "title"))
    return [(reverse("courseware:lesson", args=[lesson]), titles.get(lesson, lesson.replace("-", " "))) for lesson in lab.lessons]


def run_context(request: HttpRequest, lab: Lab, run_lab: RunLab) -> dict:
    """What the lab page shows of a run (its owner's page, or an instructor's read-only drop-in)."""
    run = run_lab.run
    runs.touch(run)
    run.api_key = request.session.pop(_new_key_slot(run), None)  # shown on this one page, then forgotten
    state = panels.run_state(run, lab)
    feed, last_event = live.opening_feed(run)
    return {
        "run": run,
        "run_lab": run_lab,
        "state": state,
        "feed": feed,
        "last_event": last_event,
        "stream_url": live.stream_url(request, run.pk),
        "stream_token": live.stream_token(run.pk, request.session.session_key or ""),
        "cards": _step_cards(lab, run_lab, state),
        "send_form": SendForm(run),
        "burst_form": BurstForm(run),
        "stream_form": StreamForm(run, prefix="stream"),
        "poison_form": PoisonForm(),
        **_control_context(run, state.faults),
        "curl": _curl(request, run),
    }


def fault_targets(run: LabRun) -> list[str]:
    """The targets the fault panel offers: lab 9's services only where the API calls them."""
    chain = sync_chain.chain_on(run)
    return [target for target in faults.TARGETS if chain or target not in SERVICES]


def _control_context(run: LabRun, current_faults: dict, forms_with_errors: dict | None = None) -> dict:
    given = forms_with_errors or {}
    context = {
        "fault_forms": [given.get(t) or fault_form(t, current=current_faults.get(t)) for t in fault_targets(run)],
        "active_faults": current_faults,
        "defences_form": given.get("defences") or DefencesForm(initial=defences.all_defences(run)),
        "policy_form": given.get("policy") or PolicyForm(instance=run),
        "sync_chain": sync_chain.chain_on(run),
        "discovery_form": given.get("discovery") or DiscoveryForm.for_run(run),
        "show_discovery": shows_discovery(run) or "discovery" in given,
    }
    if context["sync_chain"]:
        context["call_policy_form"] = given.get("call_policy") or CallPolicyForm(initial=asdict(sync_chain.CallPolicy.of(run)))
        context["load_form"] = given.get("load") or LoadForm()
        context["client_timeout_s"] = sync_chain.CLIENT_TIMEOUT_MS // 1000
        context["api_workers"] = sync_load.API_WORKERS
    return context


def shows_discovery(run: LabRun) -> bool:
    """The discovery panel and form are on the page when discovery is on, or the run's lab switches it."""
    lab = CATALOGUE.get(getattr(getattr(run, "lab", None), "lab", ""))
    return bool(run.discovery) or (lab is not None and lab.uses_discovery)


def _step_cards(lab: Lab, run_lab: RunLab, state: panels.RunState) -> list[dict]:
    """Every step's card; the checks a step passed stay passed, on its card and in `state` (steps.hold_passed)."""
    experiments = steps.current_experiments(run_lab)
    state.checks = steps.hold_passed(lab, state.checks, experiments)
    return [_card(lab, step, experiments.get(step.number), state.facts, state.checks) for step in lab.steps]


def _card(lab: Lab, step, experiment: Experiment | None, found: dict, results: dict, form=None) -> dict:
    observed = experiment.after if experiment and experiment.after else found
    return {
        "step": step,
        "experiment": experiment,
        "form": form or PredictionForm(initial={"prediction": experiment.prediction if experiment else ""}),
        "changes": checks.changes(experiment.before, observed, step.observe) if experiment and experiment.before else [],
        "checks": [results[check.id] for check in lab.checks_of(step) if check.id in results],
    }


def _new_key_slot(run: LabRun) -> str:
    return f"labs:new-api-key:{run.pk}"


def _show_key_once(request: HttpRequest, run: LabRun) -> None:
    """Keep a key made in this request for the next lab page, the one place its plaintext is shown."""
    request.session[_new_key_slot(run)] = run.api_key


def _curl(request: HttpRequest, run: LabRun) -> str:
    endpoint = request.build_absolute_uri(reverse("labs-api:send_notification"))
    key = run.api_key or f"<your run's key, starting {run.api_key_start}: shown once; make a new key to see one>"
    return (
        f"KEY='{key}'\n"
        f"curl -s -X POST {endpoint} \\\n"
        '  -H "Authorization: Bearer $KEY" \\\n'
        '  -H "Idempotency-Key: reset-42" -H "Content-Type: application/json" \\\n'
        """  -d '{"user_id": 7, "template": "password_reset", "data": {"code": "271828"}}'"""
    )


@login_required
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    experiments = Experiment.objects.filter(owner=request.user).order_by("-created_at", "-id")[:200]
    cards = []
    for experiment in experiments:
        lab = CATALOGUE.get(experiment.lab)
        step = lab.step(experiment.step) if lab else None
        observe = step.observe if step else sorted((experiment.after or {}).keys())[:6]
        changes = checks.changes(experiment.before, experiment.after, observe) if experiment.before and experiment.after else []
        cards.append({"experiment": experiment, "lab": lab, "step": step, "changes": changes})
    return render(request, "labs/history.html", {"cards": cards})


# --- The run ------------------------------------------------------------------------------------


@login_required
@require_POST
def start(request: HttpRequest, slug: str) -> HttpResponse:
    lab = _get_lab(slug)
    if not RunLab.objects.filter(owner=request.user, lab=slug).exists():
        try:
            _show_key_once(request, runs.start_lab_run(request.user, lab).run)
        except IntegrityError:
            pass  # a second click raced the first: that run is the learner's
    return redirect("labs:lab", slug)


@require_POST
def reset(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    run_lab = _run_lab(run)
    runs.restart_lab_run(run_lab, _get_lab(run_lab.lab))
    messages.success(request, "The run starts again from its seed: no traffic, no faults, every defence on. Your history is kept.")
    return _back(run)


@require_POST
def end(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id, even_if_frozen=True)
    slug = _run_lab(run).lab
    runs.delete_run(run)
    messages.success(request, "Run deleted. Your experiment history is kept.")
    return redirect("labs:lab", slug)


@require_POST
def rotate_key(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    runs.rotate_api_key(run)
    _show_key_once(request, run)
    messages.success(request, "New API key: the old one no longer works. Copy it now: it is shown only on this page.")
    return _back(run)


# --- Live view ----------------------------------------------------------------------------------


@never_cache
@require_GET
async def stream(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run's events as server-sent events (labs/live.py): held open under ASGI, one answer under WSGI.

    The owner's page carries a stream token, so opening the stream needs no query; without
    a valid one it checks ownership like every other run URL.
    """
    if live.origin_refused(request):
        return HttpResponseForbidden("This stream is for the site's own pages.", content_type="text/plain; charset=utf-8")
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")
    # In the live process (ASGI) the checks run on the process's small shared pool. Thread-sensitive code would
    # get a thread of its own per request, kept for as long as the stream stays open, each holding a database
    # connection: 100 open lab pages used up PostgreSQL's 100 connections (bench/workshop.py found it).
    # Under WSGI (the page server's once-a-second answer, Django's test client) the request's thread is fine.
    request_thread = not isinstance(request, ASGIRequest)
    if not await sync_to_async(live.stream_token_allows, thread_sensitive=request_thread)(request.GET.get("token", ""), run_id, session_key):
        await sync_to_async(_get_run_to_read, thread_sensitive=request_thread)(request, run_id)
    try:
        after = live.stream_position(request.GET.get("after"), request.headers.get("Last-Event-ID"))
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    if isinstance(request, ASGIRequest):
        response = StreamingHttpResponse(live.stream(run_id, after, session_key), content_type="text/event-stream")
    else:
        response = HttpResponse(await sync_to_async(live.one_shot)(run_id, after), content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"  # a proxy must pass each event on at once
    origin = live.cross_origin_page(request)
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Credentials"] = "true"
        patch_vary_headers(response, ["Origin"])
    return response


@never_cache
@require_GET
def live_panels(request: HttpRequest, run_id: int) -> HttpResponse:
    started = time.process_time()
    run, read_only = _get_run_to_read(request, run_id)
    run_lab = _run_lab(run)
    lab = _get_lab(run_lab.lab)
    state = panels.run_state(run, lab)
    context = {"run": run, "lab": lab, "state": state, "cards": _step_cards(lab, run_lab, state), "oob": True,
               "read_only": read_only, "next_ms": pace.PANELS.next_gap_ms()}  # fmt: skip
    response = render(request, "labs/live_panels.html", context)
    pace.PANELS.add(time.process_time() - started)
    return response


# --- Traffic ------------------------------------------------------------------------------------


def _traffic_response(request: HttpRequest, run: LabRun, result: str | None, **forms) -> HttpResponse:
    if not request.htmx:
        if result:
            messages.success(request, result)
        else:
            for form in forms.values():
                for errors in form.errors.values():
                    messages.error(request, " ".join(errors))
        return _back(run)
    context = {"run": run, "result": result, "send_form": SendForm(run), "burst_form": BurstForm(run),
               "stream_form": StreamForm(run, prefix="stream"), "poison_form": PoisonForm(), **forms}  # fmt: skip
    response = render(request, "labs/controls.html#traffic_response", context)
    return _changed(response) if result else response


@require_POST
def send(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    form = SendForm(run, request.POST)
    result = None
    if form.is_valid():
        data = form.cleaned_data
        key = data["idempotency_key"] or f"ui-{uuid.uuid4().hex}"
        template_data = data["data"] if data["data"] is not None else traffic.SAMPLE_DATA.get(data["template"], {})
        request_ = intake.IntentRequest(key, data["user_id"], data["template"], None, data["channels"] or None, template_data)
        try:
            accepted = sync_chain.accept_one(run, request_)
        except intake.IntakeError as exc:
            for name, message in exc.errors.items():
                form.add_error(name if name in form.fields else None, message)
        except intake.SimulatedCrash as exc:
            form.add_error(None, f"500 from the API: {exc}. The intent is committed; nothing will publish it.")
        except sync_chain.ServiceUnavailable as exc:
            form.add_error(None, f"503 from the API: {exc}.")
        else:
            intent = accepted.intent
            result = (f"Key {key!r} was used before: the API returned notification {intent.pk} again and wrote nothing."
                      if accepted.replayed else f"Accepted notification {intent.pk}: {intent.template.name} to user {data['user_id']}.")  # fmt: skip
    return _traffic_response(request, run, result, send_form=form)


@require_POST
def burst(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    stream = request.POST.get("stream") == "1"
    form = (StreamForm(run, request.POST, prefix="stream") if stream else BurstForm(run, request.POST))
    result = None
    if form.is_valid():
        try:
            count = traffic.send_burst(run, form.cleaned_data["count"], form.cleaned_data["template"])
        except (ValueError, intake.IntakeError, intake.SimulatedCrash) as exc:
            form.add_error(None, str(exc))
        else:
            result = f"Sent {count} × {form.cleaned_data['template']}" + (" (stream)" if stream else " as a campaign.")
    if stream:
        # The page's script ticks the stream once a second: answer small, and say what went wrong.
        return JsonResponse({"sent": form.cleaned_data["count"]} if result else {"error": form.errors.get_json_data()},
                            status=200 if result else 422)  # fmt: skip
    return _traffic_response(request, run, result, **{"stream_form" if stream else "burst_form": form})


@require_POST
def poison(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    form = PoisonForm(request.POST)
    result = None
    if form.is_valid():
        try:
            count = traffic.send_poison(run, form.cleaned_data["count"])
        except (ValueError, intake.SimulatedCrash) as exc:
            form.add_error(None, str(exc))
        else:
            result = f"Sent {count} poison {ngettext('message', 'messages', count)}: order updates without their order id."
    return _traffic_response(request, run, result, poison_form=form)


# --- Faults, defences, retry policy ----------------------------------------------------------------


def _controls_response(request: HttpRequest, run: LabRun, note: str | None, **forms_with_errors) -> HttpResponse:
    if not request.htmx:
        if note:
            messages.success(request, note)
        for form in forms_with_errors.values():
            for errors in form.errors.values():
                messages.error(request, " ".join(errors))
        return _back(run)
    context = {"run": run, "note": note, **_control_context(run, faults.all_faults(run.pk), forms_with_errors)}
    response = render(request, "labs/controls.html#fault_response", context)
    return response if forms_with_errors else _changed(response)


@require_http_methods(["GET", "POST"])
def fault(request: HttpRequest, run_id: int) -> HttpResponse:
    """GET: the fault panel as it is now (the page fetches it when a fault changed elsewhere). POST: set one target's fault."""
    run = _get_run_for_user(request, run_id)
    if request.method == "GET":
        context = {"run": run, **_control_context(run, faults.all_faults(run.pk))}
        return render(request, "labs/controls.html#fault_controls", context)
    target = request.POST.get("target", "")
    if target not in faults.TARGETS:
        raise Http404("No such fault target")
    form = fault_form(target, request.POST)
    if request.POST.get("clear"):
        faults.set_fault(run.pk, target)
        return _controls_response(request, run, f"Fault on {target} cleared.")
    if form.is_valid():
        try:
            chosen = faults.set_fault(run.pk, target, **fault_settings(form))
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            shown = ", ".join(f"{k} {v}" for k, v in chosen.items()) or "no fault"
            return _controls_response(request, run, f"{target}: {shown}.")
    return _controls_response(request, run, None, **{target: form})


@require_POST
def stop_faults(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    faults.clear_faults(run.pk)
    return _controls_response(request, run, "Every fault stopped.")


@require_POST
def set_defences(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    form = DefencesForm(request.POST)
    form.is_valid()  # checkboxes only: always valid
    chosen = defences.set_defences(run, **form.cleaned_data)
    off = [name.replace("_", " ") for name, on in chosen.items() if not on]
    return _controls_response(request, run, f"Defences off: {', '.join(off)}." if off else "Every defence is on.")


@require_POST
def policy(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    form = PolicyForm(request.POST, instance=run)
    if form.is_valid():
        form.save()
        return _controls_response(request, run, "Retry policy saved: it applies to the next failures.")
    return _controls_response(request, run, None, policy=form)


@require_POST
def call_policy(request: HttpRequest, run_id: int) -> HttpResponse:
    """Lab 9: the call policy of the API and the template service."""
    run = _get_run_for_user(request, run_id)
    if not sync_chain.chain_on(run):
        raise Http404("This run's API makes no synchronous calls")
    form = CallPolicyForm(request.POST)
    if not form.is_valid():
        return _controls_response(request, run, None, call_policy=form)
    policy = sync_chain.set_policy(run, **form.cleaned_data)
    return _controls_response(request, run, f"Call policy saved: {sync_chain.policy_text(policy)}.")


@require_POST
def load(request: HttpRequest, run_id: int) -> HttpResponse:
    """Lab 9: a load on the API's synchronous path, in the background."""
    run = _get_run_for_user(request, run_id)
    if not sync_chain.chain_on(run):
        raise Http404("This run's API makes no synchronous calls")
    form = LoadForm(request.POST)
    if form.is_valid():
        try:
            number = sync_load.start_load(run, form.cleaned_data["rate"], form.cleaned_data["seconds"])
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            rate, seconds = form.cleaned_data["rate"], form.cleaned_data["seconds"]
            return _controls_response(request, run, f"Load {number} started: {rate} requests a second for {seconds} s.")
    return _controls_response(request, run, None, load=form)


@require_POST
def set_discovery(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    form = DiscoveryForm(request.POST)
    if form.is_valid():
        setting = discovery.set_discovery(run, form.cleaned_data["mode"], form.cleaned_data["ttl_s"])
        return _controls_response(request, run, discovery.describe(setting) + ".")
    return _controls_response(request, run, None, discovery=form)


# --- Dead-letter workbench ---------------------------------------------------------------------


def _workbench_response(request: HttpRequest, run: LabRun, note: str = "", form: DeadLetterPickForm | None = None) -> HttpResponse:
    """The workbench after `note`; with an invalid `form`, what was wrong with it and nothing done."""
    error = " ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()) if form is not None else ""
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, note)
        return _back(run)
    state = panels.run_state(run)
    context = {"run": run, "state": state, "note": note, "error": error}
    response = render(request, "labs/dead_letter_workbench.html#workbench_response", context)
    return response if error else _changed(response)


def _dead_letters(count: int) -> str:
    return f"{count} {ngettext('dead letter', 'dead letters', count)}"


@require_POST
def replay(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    form = DeadLetterPickForm(request.POST)
    if not form.is_valid():
        return _workbench_response(request, run, form=form)
    group = form.cleaned_data["group"]
    count = deadletters.replay_group(run, group) if group else deadletters.replay(run, form.cleaned_data["dead_letter"])
    return _workbench_response(request, run, f"Replayed {_dead_letters(count)}" + (f" of {group}." if group else "."))


@require_POST
def discard(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    form = DeadLetterPickForm(request.POST)
    if not form.is_valid():
        return _workbench_response(request, run, form=form)
    group, ids = form.cleaned_data["group"], form.cleaned_data["dead_letter"]
    if group:
        ids = list(run.dead_letters.filter(error_group=group, resolution=DeadLetter.Resolution.OPEN).values_list("pk", flat=True))
    count = deadletters.discard(run, ids)
    return _workbench_response(request, run, f"Discarded {_dead_letters(count)}" + (f" of {group}." if group else "."))


# --- A message's lineage -------------------------------------------------------------------------


@require_GET
def notification(request: HttpRequest, run_id: int, intent_id: int) -> HttpResponse:
    run, _ = _get_run_to_read(request, run_id)
    intent = get_object_or_404(NotificationIntent.objects.select_related("template", "recipient"), run=run, pk=intent_id)
    context = {"run": run, "intent": intent, "lineage": lineage.lineage(run, intent), "lab": _get_lab(_run_lab(run).lab)}
    template = "labs/lineage.html#lineage" if request.htmx else "labs/lineage.html"
    return render(request, template, context)


@require_GET
def delivery(request: HttpRequest, run_id: int, delivery_id: int) -> HttpResponse:
    run, _ = _get_run_to_read(request, run_id)
    intent_id = get_object_or_404(Delivery, run=run, pk=delivery_id).intent_id
    if request.htmx:
        return notification(request, run_id, intent_id)
    return redirect("labs:notification", run.pk, intent_id)


# --- Experiment cards ----------------------------------------------------------------------------


def _step_of(run: LabRun, number: int):
    run_lab = _run_lab(run)
    lab = _get_lab(run_lab.lab)
    step = lab.step(number)
    if step is None:
        raise Http404("No such step")
    return run_lab, lab, step


def _card_response(request: HttpRequest, run: LabRun, lab: Lab, step, note: str = "", form=None, error: str = ""):
    """The step's card again (htmx), or the lab page at the step; `form` and `error` say what was wrong."""
    problems = [error] if error else [" ".join(e) for e in form.errors.values()] if form is not None else []
    if not request.htmx:
        if note and not problems:
            messages.success(request, note)
        for problem in problems:
            messages.error(request, problem)
        return redirect(f"{reverse('labs:lab', args=[lab.slug])}#step-{step.number}")
    found = checks.facts(run)
    experiments = steps.current_experiments(run.lab)
    results = steps.hold_passed(lab, checks.evaluate(lab, found), experiments)
    card = _card(lab, step, experiments.get(step.number), found, results, form)
    context = {"run": run, "lab": lab, "card": card, "note": "" if problems else note, "error": error,
               "note_id": f"step-{step.number}-note"}  # fmt: skip
    response = render(request, "labs/step_card.html#step_response", context)
    return response if problems else _changed(response)


@require_POST
def prediction(request: HttpRequest, run_id: int, step: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    run_lab, lab, lab_step = _step_of(run, step)
    form = PredictionForm(request.POST)
    if not form.is_valid():
        return _card_response(request, run, lab, lab_step, form=form)
    steps.save_prediction(run_lab, lab_step, form.cleaned_data["prediction"].strip())
    return _card_response(request, run, lab, lab_step, "Prediction saved. Now run the step.")


@require_POST
def act(request: HttpRequest, run_id: int, step: int, action: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    run_lab, lab, lab_step = _step_of(run, step)
    if not 1 <= action <= len(lab_step.actions):
        raise Http404("No such action")
    experiment = steps.current_experiment(run_lab, lab_step)
    if experiment is None:
        return _card_response(request, run, lab, lab_step, error="Write your prediction before you run this step.")
    # What the other steps achieved is written down before this step's fault can undo it.
    cards = steps.current_experiments(run_lab)
    if steps.earlier_passes_at_stake(lab, cards, lab_step):
        steps.hold_passed(lab, checks.evaluate(lab, checks.facts(run)), cards)
    try:
        done = steps.act(experiment, lab_step.actions[action - 1], run)
    except (ValueError, intake.IntakeError) as exc:
        return _card_response(request, run, lab, lab_step, error=str(exc))
    return _card_response(request, run, lab, lab_step, " ".join(done))


@require_POST
def record(request: HttpRequest, run_id: int, step: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    run_lab, lab, lab_step = _step_of(run, step)
    experiment = steps.current_experiment(run_lab, lab_step)
    if experiment is None or experiment.acted_at is None:
        raise Http404("Nothing to record yet")
    steps.record(experiment, checks.facts(run))
    return _card_response(request, run, lab, lab_step, "Recorded in your lab history.")
