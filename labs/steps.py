"""A lab step as the learner runs it: a prediction first, then the step's buttons, then what happened.

The experiment card keeps all three. The run's facts (labs.checks) are stored when the
first button is pressed (`before`) and when the learner records the outcome (`after`),
so the card can say what the fault did even after the run is reset or deleted.
"""

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.translation import ngettext

from labs import checks, live
from labs.lab_files import Action, Lab, Step
from labs.models import Experiment, LabRun, RunLab, SagaMode
from labs.pipeline import defences, discovery, faults, intake, saga, sync_chain, sync_load, traffic


MAX_SPREAD_S = 600


def spread_seconds(argument: dict) -> float:
    """`over_s` of a `send`: the seconds its messages are spread over (0: all at once); ValueError when out of range."""
    over = argument.get("over_s", 0)
    if isinstance(over, bool) or not isinstance(over, (int, float)) or not 0 <= over <= MAX_SPREAD_S:
        raise ValueError(f"over_s is the seconds to spread the messages over, from 0 to {MAX_SPREAD_S}")
    return float(over)


def _send(run: LabRun, argument: dict) -> str:
    """`send` in a lab file: `count` messages to users 1..count, or all to `user_id`; a fixed key repeats one request.
    With `over_s`, the messages are accepted at once and leave the outbox one after another over that many
    seconds: a steady stream of calls (as scheduled notifications make)."""
    count = argument.get("count", 1)
    template = argument["template"]
    if spread_seconds(argument):
        return _send_stream(run, argument, count, template)
    data = argument.get("data", traffic.SAMPLE_DATA.get(template, {}))
    key = argument.get("idempotency_key")
    intents, replays, crashed = [], 0, 0
    for n in range(count):
        request = intake.IntentRequest(key or f"step-{uuid.uuid4().hex}", argument.get("user_id", n + 1), template, None,
                                       argument.get("channels"), data)  # fmt: skip
        try:
            [accepted] = intake.accept(run, [request])
        except intake.SimulatedCrash:
            crashed += 1  # the client saw a 500; the intent was committed and never published
            continue
        intents.append(accepted.intent.pk)
        replays += accepted.replayed
    described = f"{count} × {template}" + (f" to user {argument['user_id']}" if "user_id" in argument else "")
    if crashed:
        return f"Sent {described}: the API crashed after its commit on {crashed} of them (the client saw an error)"
    if replays:
        repeated = ngettext("request returned", "requests returned", replays)
        return f"Sent {described}: {replays} {repeated} intent {intents[-1]} again (replayed, nothing new written)"
    return f"Sent {described} (notification {intents[0]}" + (f"–{intents[-1]})" if count > 1 else ")")


def _send_stream(run: LabRun, argument: dict, count: int, template: str) -> str:
    """`count` messages round the run's users, in one request, released evenly over `over_s` seconds."""
    over = spread_seconds(argument)
    user = argument.get("user_id")
    users = run.recipients.count()
    numbers = [user] * count if user else [n % users + 1 for n in range(count)]
    data = argument.get("data", traffic.SAMPLE_DATA.get(template, {}))
    requests = [intake.IntentRequest(f"step-{uuid.uuid4().hex}", number, template, None, argument.get("channels"), data)
                for number in numbers]  # fmt: skip
    start, gap = timezone.now(), timedelta(seconds=over / count)
    try:
        accepted = intake.accept(run, requests, release_at=[start + gap * n for n in range(count)])
    except intake.SimulatedCrash:
        return f"The API crashed after committing {count} × {template} and before publishing them"
    return f"Sent {count} × {template} over {over:g} s (notifications {accepted[0].intent.pk}–{accepted[-1].intent.pk})"


def perform(run: LabRun, action: Action) -> list[str]:
    """Do what a step's button says, in order; returns a line per operation for the card and the page."""
    done = []
    for operation, argument in action.operations:
        if operation == "fault":
            settings = dict(argument)
            target = settings.pop("target")
            faults.set_fault(run.pk, target, **settings)
            done.append(f"Fault on {target}: {live.settings_text(settings)}")
        elif operation == "clear_fault":
            faults.set_fault(run.pk, argument)
            done.append(f"Fault on {argument} cleared")
        elif operation == "clear_faults":
            faults.clear_faults(run.pk)
            done.append("Every fault stopped")
        elif operation == "discovery":
            setting = discovery.set_discovery(run, argument["mode"], argument.get("ttl_s", discovery.DEFAULT_TTL_S))
            done.append(discovery.describe(setting))
        elif operation == "defences":
            defences.set_defences(run, **argument)
            done.append("Defences: " + ", ".join(f"{name.replace('_', ' ')} {'on' if on else 'off'}" for name, on in argument.items()))
        elif operation == "burst":
            template = argument.get("template", "weekly_digest")
            try:
                count = traffic.send_burst(run, argument.get("count", 100), template)
            except intake.SimulatedCrash:
                done.append(f"The API crashed after committing the campaign of {template} and before publishing it")
            else:
                done.append(f"Sent a campaign of {count} × {template}")
        elif operation == "poison":
            count = traffic.send_poison(run, argument.get("count", 1))
            done.append(f"Sent {count} poison {ngettext('message', 'messages', count)}: order updates without an order id")
        elif operation == "send":
            done.append(_send(run, argument))
        elif operation == "saga_mode":
            saga.set_mode(run, argument)
            done.append(f"Orders placed from now on are {SagaMode(argument).label.lower()}")
        elif operation == "orders":
            orders = saga.place_orders(run, argument["count"])
            done.append(f"Placed {len(orders)} {ngettext('order', 'orders', len(orders))} ({orders[0].reference}"
                        + (f"–{orders[-1].reference})" if len(orders) > 1 else ")"))
        elif operation == "call_policy":
            done.append("Call policy: " + sync_chain.policy_text(sync_chain.set_policy(run, **argument)))
        elif operation == "load":
            number = sync_load.start_load(run, argument["rate"], argument["seconds"])
            done.append(f"Load {number} started: {argument['rate']} requests a second for {argument['seconds']} s, "
                        f"served by {sync_load.API_WORKERS} API workers")  # fmt: skip
    return done


def current_experiment(run_lab: RunLab, step: Step) -> Experiment | None:
    """The card of this go at the step: the latest since the run was started or reset."""
    return (
        Experiment.objects.filter(run=run_lab.run, lab=run_lab.lab, step=step.number, created_at__gte=run_lab.started_at)
        .order_by("-created_at", "-id")
        .first()
    )


def current_experiments(run_lab: RunLab) -> dict[int, Experiment]:
    """Each step's card of the current go, by step number, in one query (the latest card of a step wins)."""
    cards = Experiment.objects.filter(run=run_lab.run, lab=run_lab.lab, created_at__gte=run_lab.started_at)
    return {card.step: card for card in cards.order_by("created_at", "id")}


def hold_passed(lab: Lab, results: dict[str, checks.CheckResult], cards: dict[int, Experiment]) -> dict[str, checks.CheckResult]:
    """The checks as the learner sees them: once passed during a step, passed until the step starts again.

    A later step's fault may undo what an earlier check reads (lab 3's poison messages fill the
    dead-letter queue that step 2 drained); the learner still did step 2.
    1. A check that passes now is written on the card of each step that lists it, if the
       learner ran that step (pressed one of its buttons), with the time.
    2. A check that does not pass now but is on such a card counts as passed, since then.
    A new prediction starts a new card (save_prediction), and with it the step's checks.
    """
    held = dict(results)
    now = timezone.now()
    for step in lab.steps:
        card = cards.get(step.number)
        if card is None or card.acted_at is None:
            continue
        newly = {check: now.isoformat() for check in step.checks if results[check].passed and check not in card.checks_passed}
        if newly:
            card.checks_passed = {**card.checks_passed, **newly}
            card.save(update_fields=["checks_passed"])
        for check, since in card.checks_passed.items():
            if check in held and not held[check].passed:
                held[check] = replace(held[check], passed=True, failing=[], held_since=datetime.fromisoformat(since))
    return held


def earlier_passes_at_stake(lab: Lab, cards: dict[int, Experiment], acting: Step) -> bool:
    """Whether another step the learner ran has a check not yet held, which `acting`'s fault might undo
    before the panels next look (so the checks are worth reading before it acts)."""
    return any(card.acted_at is not None and set(lab.step(number).checks) - set(card.checks_passed)
               for number, card in cards.items() if number != acting.number and lab.step(number))  # fmt: skip


def save_prediction(run_lab: RunLab, step: Step, prediction: str) -> Experiment:
    """Write the prediction; once a button has been pressed it is kept as written, and a new one starts a new card."""
    experiment = current_experiment(run_lab, step)
    if experiment is None or experiment.acted_at is not None:
        return Experiment.objects.create(owner=run_lab.owner, run=run_lab.run, lab=run_lab.lab, step=step.number, prediction=prediction)
    experiment.prediction = prediction
    experiment.save(update_fields=["prediction"])
    return experiment


def act(experiment: Experiment, action: Action, run: LabRun) -> list[str]:
    now = timezone.now()
    if experiment.before is None:
        experiment.before = checks.snapshot_for_history(checks.facts(run))
        experiment.acted_at = now
    done = perform(run, action)
    experiment.actions = [*experiment.actions, {"label": action.label, "at": now.isoformat(), "result": done}]
    experiment.after = None  # a new fault: the recorded outcome, if any, is out of date
    experiment.recorded_at = None
    experiment.save(update_fields=["before", "acted_at", "actions", "after", "recorded_at"])
    return done


def record(experiment: Experiment, found: dict) -> Experiment:
    experiment.after = checks.snapshot_for_history(found)
    experiment.recorded_at = timezone.now()
    experiment.save(update_fields=["after", "recorded_at"])
    return experiment
