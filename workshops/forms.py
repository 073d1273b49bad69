"""The workshop's forms: creating one, typing a join code, a broadcast fault, an announcement.

The broadcast form checks a fault with the lab page's own fault form (labs.forms.fault_form):
same fields, same ranges, same messages. It shows one set of provider fields for every
provider and one for the pipeline; the chosen target says which set counts.
"""

from django import forms

from labs.catalogue import CATALOGUE
from labs.forms import fault_form, fault_settings
from labs.pipeline import faults
from workshops import broadcasts, codes
from workshops.models import MAX_CAPACITY, Seat, Workshop

PROVIDER_FIELDS = "provider"  # the prefix of the provider fault fields; the pipeline's is faults.PIPELINE


class WorkshopForm(forms.ModelForm):
    lab = forms.ChoiceField(choices=[(slug, lab.title) for slug, lab in CATALOGUE.items()])
    capacity = forms.IntegerField(min_value=1, max_value=MAX_CAPACITY, initial=30, label="Seats")
    stuck_after_minutes = forms.IntegerField(min_value=1, max_value=120, initial=5, label="Stuck after (minutes)",
                                             help_text="A tile is marked stuck after this long without progress.")  # fmt: skip

    class Meta:
        model = Workshop
        fields = ["title", "lab", "capacity", "starts_at", "ends_at", "stuck_after_minutes"]
        labels = {"starts_at": "Starts (UTC, optional)", "ends_at": "Ends (UTC, optional)"}
        widgets = {
            "starts_at": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
            "ends_at": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        }

    def clean(self):
        cleaned = super().clean()
        starts, ends = cleaned.get("starts_at"), cleaned.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", "The workshop must end after it starts.")
        return cleaned


class JoinCodeForm(forms.Form):
    code = forms.CharField(max_length=20, label="Join code", widget=forms.TextInput(
        attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false", "placeholder": "K7M-P2Q"}))  # fmt: skip

    def clean_code(self):
        return codes.normalise(self.cleaned_data["code"])


def fault_fields(target: str, data=None) -> forms.Form:
    """The lab page's fault form for `target`, under the prefix its set of fields has on the broadcast form."""
    form = fault_form(target, data)
    form.prefix = faults.PIPELINE if target == faults.PIPELINE else PROVIDER_FIELDS
    return form


class BroadcastForm(forms.Form):
    target = forms.ChoiceField(choices=[(t, t) for t in faults.TARGETS], initial=faults.TARGETS[0], label="Fault on")
    duration_s = forms.IntegerField(min_value=broadcasts.MIN_DURATION_S, max_value=broadcasts.MAX_DURATION_S, initial=120,
                                    label="For (seconds)", help_text="It ends by itself on the server after this, browser open or not.")  # fmt: skip
    to = forms.ChoiceField(choices=[("everyone", "every learner"), ("selected", "the tiles I ticked")], initial="everyone",
                           widget=forms.RadioSelect, label="Inject into")  # fmt: skip
    seat = forms.ModelMultipleChoiceField(queryset=Seat.objects.none(), required=False)

    def __init__(self, workshop: Workshop, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["seat"].queryset = Seat.objects.filter(workshop=workshop)
        self.fault = {}

    @property
    def provider_fields(self) -> forms.Form:
        return self._fields_for(faults.TARGETS[0])

    @property
    def pipeline_fields(self) -> forms.Form:
        return self._fields_for(faults.PIPELINE)

    def _fields_for(self, target: str) -> forms.Form:
        chosen = self.data.get("target") if self.is_bound else None
        if self.is_bound and (chosen == faults.PIPELINE) == (target == faults.PIPELINE):
            return fault_fields(chosen if chosen in faults.TARGETS else target, self.data)
        return fault_fields(target)

    def clean(self):
        cleaned = super().clean()
        target = cleaned.get("target")
        if target is None:
            return cleaned
        settings_form = fault_fields(target, self.data)
        if not settings_form.is_valid():
            for name, errors in settings_form.errors.items():
                label = settings_form.fields[name].label if name in settings_form.fields else name
                self.add_error(None, f"{label}: {' '.join(errors)}")
            return cleaned
        self.fault = fault_settings(settings_form)
        if not self.fault:
            self.add_error(None, f"Choose what goes wrong with {target}: tick a fault or give it a number.")
        if cleaned.get("to") == "selected" and not cleaned.get("seat"):
            self.add_error("seat", "Tick the tiles of the learners to inject into, or choose every learner.")
        return cleaned


class AnnouncementForm(forms.Form):
    text = forms.CharField(max_length=500, label="Announcement", widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="Shown at the top of every learner's lab page until you take it down.")  # fmt: skip


class CoInstructorForm(forms.Form):
    username = forms.CharField(max_length=150, label="Add a co-instructor (their username)")

    def __init__(self, workshop: Workshop, *args, **kwargs):
        self.workshop = workshop
        super().__init__(*args, **kwargs)

    def clean_username(self):
        from django.contrib.auth import get_user_model

        typed = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username__iexact=typed).first()
        if user is None:
            raise forms.ValidationError(f"No account has the username “{typed}”. They sign up first, then you add them.")
        if user.pk == self.workshop.owner_id:
            raise forms.ValidationError("You own this workshop already.")
        if self.workshop.seats.filter(learner=user).exists():
            raise forms.ValidationError(f"{user.get_username()} is a learner in this workshop: a co-instructor would see their classmates' runs.")
        return user


class RosterForm(forms.Form):
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 5, "placeholder": "Rosalind Franklin, rosalind@example.org"}),
                           label="Paste the roster", help_text="One person a line: name, e-mail or username.")  # fmt: skip
    file = forms.FileField(required=False, label="…or upload a CSV file")

    def clean(self):
        from workshops import roster

        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is not None:
            if upload.size > roster.MAX_BYTES:
                raise forms.ValidationError(f"The file is too big: at most {roster.MAX_BYTES // 1000} kB.")
            try:
                text = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text: save the spreadsheet as “CSV UTF-8”.") from None
        else:
            text = cleaned.get("text") or ""
        cleaned["people"] = roster.parse(text)  # a ValidationError names the line
        return cleaned
