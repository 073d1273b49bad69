"""The lab page's forms: traffic, faults, defences, the retry policy, predictions.

The fault and defence forms are built from the pipeline's own tables (PROVIDER_FAULTS,
PIPELINE_FAULTS, defences.NAMES) and their modules' docstrings, so a fault or defence
added there appears on the page without a change here.
"""

import json
import re

from django import forms

from config.whole_numbers import LARGEST_ROW_ID, whole_number
from labs.models import LabRun
from labs.pipeline import defences, discovery, faults, sync_chain, sync_load, templating
from labs.seeding import USERS_PER_RUN


def docstring_table(module) -> dict[str, str]:
    """`  name   what it does` lines of a module docstring, as {name: what it does}."""
    found = {}
    for line in (module.__doc__ or "").splitlines():
        match = re.match(r"^\s{2,}([a-z_]+)\s{2,}(\S.*)$", line)
        if match:
            found[match[1]] = match[2].strip()
    return found


FAULT_HELP = docstring_table(faults)
DEFENCE_HELP = docstring_table(defences)


def fault_form(target: str, data=None, current: dict | None = None) -> forms.Form:
    """A form with one field per fault the target can have, showing its current settings."""
    fields = {}
    for name, kind in faults.kinds_for(target).items():
        label = name.replace("_", " ")
        help_text = FAULT_HELP.get(name, "")
        if kind is bool:
            fields[name] = forms.BooleanField(required=False, label=label, help_text=help_text)
        elif kind == faults.SHARE:
            fields[name] = forms.FloatField(required=False, min_value=0, max_value=1, label=f"{label} (0–1)", help_text=help_text,
                                            widget=forms.NumberInput(attrs={"step": "0.05", "min": 0, "max": 1}))  # fmt: skip
        else:
            low, high = faults.WHOLE_NUMBER_RANGES[name]
            fields[name] = forms.IntegerField(required=False, min_value=low, max_value=high, label=label, help_text=help_text,
                                              widget=forms.NumberInput(attrs={"min": low, "max": high}))  # fmt: skip
    form_class = type("FaultForm", (forms.Form,), fields)
    form = form_class(data, initial=current or {}, prefix=target)
    form.target = target
    form.current = current or {}
    return form


def fault_settings(form: forms.Form) -> dict:
    """The settings a valid fault form asks for: checked boxes and filled-in numbers."""
    return {name: value for name, value in form.cleaned_data.items() if value not in (None, False)}


class DefencesForm(forms.Form):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in defences.NAMES:
            self.fields[name] = forms.BooleanField(required=False, label=name.replace("_", " "), help_text=DEFENCE_HELP.get(name, ""))


def template_choices(run: LabRun) -> list[tuple[str, str]]:
    names = sorted(set(run.templates.values_list("name", flat=True)))
    return [(name, name.replace("_", " ")) for name in names]


class SendForm(forms.Form):
    user_id = forms.IntegerField(min_value=1, max_value=USERS_PER_RUN, initial=7, label="User")
    template = forms.ChoiceField(initial="password_reset")
    channels = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: the user's preferred channels.",
        choices=[("email", "email"), ("sms", "SMS"), ("push", "push"), ("inapp", "in-app")],
    )
    data = forms.CharField(required=False, max_length=templating.MAX_DATA_BYTES, label="Template data (JSON)",
                           help_text="Empty: sample data for the template.",
                           widget=forms.TextInput(attrs={"placeholder": '{"code": "271828"}', "spellcheck": "false"}))  # fmt: skip
    idempotency_key = forms.CharField(required=False, max_length=200, help_text="Empty: a fresh key. Repeat one to see a replay.")

    def __init__(self, run: LabRun, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = template_choices(run)

    def clean_data(self):
        raw = self.cleaned_data["data"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
            raise forms.ValidationError('Write a JSON object, e.g. {"code": "271828"}.') from None
        try:
            templating.check_data(value)
        except ValueError as exc:
            raise forms.ValidationError(f"Template data {exc}.") from None
        return value


class BurstForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=1000, initial=200, label="Messages")
    template = forms.ChoiceField(initial="weekly_digest")

    def __init__(self, run: LabRun, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = template_choices(run)


class StreamForm(BurstForm):
    """A steady stream: the page sends `count` messages every second while the stream runs."""

    count = forms.IntegerField(min_value=1, max_value=50, initial=5, label="Messages per second")


def _policy_number(name: str, label: str, help_text: str) -> forms.IntegerField:
    low, high = sync_chain.POLICY_RANGES[name]
    return forms.IntegerField(min_value=low, max_value=high, label=label, help_text=help_text)


class CallPolicyForm(forms.Form):
    """Lab 9's call policy (labs.pipeline.sync_chain.CallPolicy): the client of the API and of the template service."""

    timeout_ms = _policy_number("timeout_ms", "Timeout per attempt (ms)", "How long a call waits for an answer before it gives up.")
    retries = _policy_number("retries", "Retries", "Attempts after the first, made at once.")
    breaker = forms.BooleanField(required=False, label="Circuit breaker", help_text="Refuse calls at once while a service keeps failing.")
    cooldown_s = _policy_number("cooldown_s", "Breaker cooldown (s)", "How long an open breaker refuses calls before it lets a trial through.")
    fallback = forms.BooleanField(required=False, label="Fallback",
                                  help_text="When a call fails: the last good answer, kept by the API; English, for the template service.")  # fmt: skip
    deadline = forms.BooleanField(required=False, label="Pass the deadline on",
                                  help_text="Each call carries the time its caller has left; a service drops work nobody waits for.")  # fmt: skip


class LoadForm(forms.Form):
    rate = forms.IntegerField(min_value=1, max_value=sync_load.MAX_RATE, initial=5, label="Requests per second")
    seconds = forms.IntegerField(min_value=1, max_value=sync_load.MAX_SECONDS, initial=10, label="For (seconds)")


class PoisonForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=100, initial=3, label="Poison messages")


class PolicyForm(forms.ModelForm):
    class Meta:
        model = LabRun
        fields = ["retry_base_ms", "retry_cap_ms", "max_attempts"]
        labels = {"retry_base_ms": "Base delay (ms)", "retry_cap_ms": "Cap (ms)", "max_attempts": "Max attempts"}

    def clean(self):
        cleaned = super().clean()
        base, cap, attempts = cleaned.get("retry_base_ms"), cleaned.get("retry_cap_ms"), cleaned.get("max_attempts")
        if base is not None and not 10 <= base <= 60_000:
            self.add_error("retry_base_ms", "Between 10 ms and 60,000 ms.")
        if cap is not None and base is not None and not base <= cap <= 600_000:
            self.add_error("retry_cap_ms", "At least the base delay, and at most 600,000 ms.")
        if attempts is not None and not 1 <= attempts <= 20:
            self.add_error("max_attempts", "Between 1 and 20.")
        return cleaned


class DiscoveryForm(forms.Form):
    """How the run's workers find a provider's instances (labs.pipeline.discovery), and the resolver's TTL."""

    prefix = "discovery"
    mode = forms.ChoiceField(label="Workers find instances", choices=[
        ("off", "directly: no discovery (one address per provider)"),
        (discovery.DNS, "through a DNS resolver that caches answers"),
        (discovery.REGISTRY, "through the health-checked registry"),
    ])  # fmt: skip
    ttl_s = forms.IntegerField(min_value=discovery.TTL_RANGE_S[0], max_value=discovery.TTL_RANGE_S[1], initial=discovery.DEFAULT_TTL_S,
                               label="DNS answers cached for (s)", help_text="The TTL: how long a cached answer is used before the resolver asks again.")  # fmt: skip

    @classmethod
    def for_run(cls, run: LabRun) -> "DiscoveryForm":
        return cls(initial={"mode": discovery.mode_of(run) or "off", "ttl_s": discovery.ttl_of(run)})


class DeadLetterIdsField(forms.Field):
    """The ticked dead letters, one `dead_letter=<id>` pair each: every value must be an id (ASCII digits, in the column's range)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[int]:
        ids = []
        for raw in value or []:
            row_id = whole_number(raw, LARGEST_ROW_ID)
            if row_id is None:
                raise forms.ValidationError(f"{raw[:30]!r} is not the id of a dead letter.")
            ids.append(row_id)
        return ids


class DeadLetterPickForm(forms.Form):
    """What the workbench replays or discards: a whole error group, or the ticked dead letters."""

    group = forms.CharField(required=False, max_length=64)  # Django's CharField also refuses NUL characters
    dead_letter = DeadLetterIdsField(required=False)


class PredictionForm(forms.Form):
    prediction = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3}), label="Your prediction")
