"""Where a candidate's practice is kept: rows for a signed-in candidate, the session for a visitor.

Both stores hand out the same model classes (Attempt, ReviewCard, MockInterview),
so views and templates never ask which one they have. A visitor's objects are
unsaved instances rebuilt from JSON in the session, with ids that count up per
session. When a visitor signs up or logs in, `adopt_session_progress` moves what
the session holds into their account.
"""

import secrets
from datetime import datetime

from django.contrib.auth.signals import user_logged_in
from django.db import models, transaction
from django.dispatch import receiver
from django.http import Http404, HttpRequest

from config.prepared import Prepared, attnames
from practice import stats
from practice.models import Attempt, MockInterview, ReviewCard

SESSION_KEY = "practice"
# A session is a cookie-sized promise, not an archive: keep the newest attempts.
SESSION_ATTEMPTS_KEPT = 100


class AccountProgress:
    def __init__(self, user):
        self.user = user
        self.is_anonymous = False

    def learner_seed(self) -> str:
        """Part of the seed that orders a choice question's options for this candidate."""
        return f"user-{self.user.pk}"

    def attempts(self, question_id: str | None = None) -> list[Attempt]:
        if question_id:  # one question's attempts: the caller has the question, so no join to it
            return _ATTEMPTS_AT.instances(Attempt, user_id=self.user.pk, question_id=question_id)
        return list(Attempt.objects.filter(user=self.user).select_related("question"))

    def attempt(self, pk: int) -> Attempt:
        return _or_404(Attempt.objects.filter(user=self.user, pk=pk).select_related("question").first())

    def save_attempt(self, attempt: Attempt) -> Attempt:
        attempt.user = self.user
        attempt.save()
        return attempt

    def cards(self) -> list[ReviewCard]:
        return list(ReviewCard.objects.filter(user=self.user).select_related("question"))

    def due_dates(self) -> dict[str, datetime]:
        """When each of the candidate's cards is due, by question id: what a list shows, without the cards."""
        return dict(_DUE_DATES(user_id=self.user.pk))

    def latest_scores(self) -> dict[str, int]:
        """The score of the newest graded attempt at each question (stats.latest_graded's rule, two columns)."""
        return dict(_LATEST_SCORES(user_id=self.user.pk))

    def card(self, question_id: str) -> ReviewCard:
        found = _CARD.instances(ReviewCard, user_id=self.user.pk, question_id=question_id)
        return found[0] if found else ReviewCard(user=self.user, question_id=question_id, state={})

    def save_card(self, card: ReviewCard) -> ReviewCard:
        card.user = self.user
        card.save()
        return card

    def mock(self, pk: int) -> MockInterview:
        return _or_404(MockInterview.objects.filter(user=self.user, pk=pk).select_related("question").first())

    def mocks(self) -> list[MockInterview]:
        return list(MockInterview.objects.filter(user=self.user).select_related("question"))

    def save_mock(self, mock: MockInterview) -> MockInterview:
        mock.user = self.user
        mock.save()
        return mock

    def save_graded(self, attempt: Attempt, card: ReviewCard) -> None:
        with transaction.atomic():
            self.save_attempt(attempt)
            self.save_card(card)


# A candidate's own rows, asked for on every practice page: compiled once (config/prepared.py).
_DUE_DATES = Prepared(lambda user_id: ReviewCard.objects.filter(user_id=user_id).order_by().values_list("question_id", "due"),
                      user_id=-1)  # fmt: skip
_LATEST_SCORES = Prepared(lambda user_id: Attempt.objects.filter(user_id=user_id, graded_at__isnull=False)
                          .order_by("created_at", "id").values_list("question_id", "score"), user_id=-1)  # fmt: skip
_CARD = Prepared(lambda user_id, question_id: ReviewCard.objects.filter(user_id=user_id, question_id=question_id)
                 .order_by().values_list(*attnames(ReviewCard))[:1], user_id=-1, question_id="\0")  # fmt: skip
_ATTEMPTS_AT = Prepared(lambda user_id, question_id: Attempt.objects.filter(user_id=user_id, question_id=question_id)
                        .values_list(*attnames(Attempt)), user_id=-1, question_id="\0")  # fmt: skip


class SessionProgress:
    """A visitor's practice as JSON in their session: {"attempts": [...], "cards": {...}, "mocks": [...]}."""

    def __init__(self, session):
        self.session = session
        self.is_anonymous = True
        self._loaded: dict | None = None  # what this visitor has until something is saved

    @property
    def _data(self) -> dict:
        """The visitor's practice; an empty one until something is saved. Reading never writes the session,
        so a visitor who only looks at pages costs no session row."""
        stored = self.session.get(SESSION_KEY)
        if stored is not None:
            return stored
        if self._loaded is None:
            self._loaded = {"attempts": [], "cards": {}, "mocks": [], "next_id": 1}
        return self._loaded

    def _next_id(self) -> int:
        data = self._data
        data["next_id"] += 1
        return data["next_id"] - 1

    def _changed(self) -> None:
        self.session[SESSION_KEY] = self._data  # marks the session modified, so it is saved

    def learner_seed(self) -> str:
        """A random word kept in the session: a visitor's options stay in one order per attempt."""
        data = self._data
        if "seed" not in data:
            data["seed"] = secrets.token_hex(8)
            self._changed()
        return data["seed"]

    def attempts(self, question_id: str | None = None) -> list[Attempt]:
        found = [_load(Attempt, row) for row in reversed(self._data["attempts"])]
        return [a for a in found if question_id in (None, a.question_id)]

    def attempt(self, pk: int) -> Attempt:
        return _or_404(next((a for a in self.attempts() if a.pk == pk), None))

    def save_attempt(self, attempt: Attempt) -> Attempt:
        attempt.pk = attempt.pk or self._next_id()
        rows = [row for row in self._data["attempts"] if row["id"] != attempt.pk]
        self._data["attempts"] = (rows + [_dump(attempt)])[-SESSION_ATTEMPTS_KEPT:]
        self._changed()
        return attempt

    def cards(self) -> list[ReviewCard]:
        return [_load(ReviewCard, row) for row in self._data["cards"].values()]

    def due_dates(self) -> dict[str, datetime]:
        return {card.question_id: card.due for card in self.cards()}

    def latest_scores(self) -> dict[str, int]:
        return {question_id: a.score for question_id, a in stats.latest_graded(self.attempts()).items()}

    def card(self, question_id: str) -> ReviewCard:
        row = self._data["cards"].get(question_id)
        return _load(ReviewCard, row) if row else ReviewCard(question_id=question_id, state={})

    def save_card(self, card: ReviewCard) -> ReviewCard:
        self._data["cards"][card.question_id] = _dump(card)
        self._changed()
        return card

    def mock(self, pk: int) -> MockInterview:
        return _or_404(next((_load(MockInterview, r) for r in self._data["mocks"] if r["id"] == pk), None))

    def mocks(self) -> list[MockInterview]:
        return [_load(MockInterview, row) for row in reversed(self._data["mocks"])]

    def save_mock(self, mock: MockInterview) -> MockInterview:
        mock.pk = mock.pk or self._next_id()
        self._data["mocks"] = [r for r in self._data["mocks"] if r["id"] != mock.pk] + [_dump(mock)]
        self._changed()
        return mock

    def save_graded(self, attempt: Attempt, card: ReviewCard) -> None:
        self.save_attempt(attempt)
        self.save_card(card)

    def clear(self) -> None:
        self.session.pop(SESSION_KEY, None)
        self._loaded = None


def progress_for(request: HttpRequest) -> AccountProgress | SessionProgress:
    if request.user.is_authenticated:
        return AccountProgress(request.user)
    return SessionProgress(request.session)


def _or_404(found):
    if found is None:
        raise Http404("No such practice record.")
    return found


def _fields(model) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if f.name != "user"]


def _dump(instance: models.Model) -> dict:
    row = {}
    for f in _fields(type(instance)):
        value = getattr(instance, f.attname)
        row[f.attname] = value.isoformat() if isinstance(value, datetime) else value
    return row


def _load(model, row: dict):
    return model(**{f.attname: f.to_python(row.get(f.attname)) for f in _fields(model) if f.attname in row})


@receiver(user_logged_in, dispatch_uid="practice-adopt-session-progress")
def adopt_session_progress(sender, request, user, **kwargs) -> None:
    """Move a visitor's session practice into the account they just signed up for or logged into."""
    if request is None or SESSION_KEY not in request.session:
        return
    visitor, account = SessionProgress(request.session), AccountProgress(user)
    with transaction.atomic():
        new_ids: dict[int, Attempt] = {}
        for attempt in reversed(visitor.attempts()):
            old_id, attempt.pk = attempt.pk, None
            new_ids[old_id] = account.save_attempt(attempt)
        known = set(ReviewCard.objects.filter(user=user).values_list("question_id", flat=True))
        for card in visitor.cards():
            if card.question_id not in known:
                card.pk = None
                account.save_card(card)
        for mock in reversed(visitor.mocks()):
            mock.pk = None
            mock.attempt = new_ids.get(mock.attempt_id)
            account.save_mock(mock)
    visitor.clear()
