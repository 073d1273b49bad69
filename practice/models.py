"""The question bank (loaded from files) and a signed-in candidate's practice.

Anonymous visitors get the same Attempt, ReviewCard and MockInterview objects,
unsaved, kept in their session (practice/progress.py).
"""

from django.conf import settings
from django.db import models
from django.urls import NoReverseMatch, reverse

from courseware import content_cache
from labs.catalogue import LABS
from practice.question_files import lesson_titles


class Question(models.Model):
    class Kind(models.TextChoices):
        CONCEPT = "concept", "Concept"
        COMPARE = "compare", "Compare and choose"
        FAILURE = "failure", "When it fails"
        DESIGN = "design", "System design"
        CHOICE = "choice", "Quick check"
        ESTIMATE = "estimate", "Estimation drill"

    id = models.SlugField(primary_key=True, max_length=100)
    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    difficulty = models.PositiveSmallIntegerField()
    topic = models.CharField(max_length=40, help_text="The folder the file is in: the question's main topic.")
    topics = models.JSONField(default=list)
    minutes = models.PositiveSmallIntegerField(help_text="The time box for answering.")
    prompt = models.TextField()
    hints = models.JSONField(default=list)
    rubric = models.JSONField(default=list, help_text="Key points: point, weight, terms, why.")
    options = models.JSONField(default=list, blank=True, help_text="Choice questions only: text, explanation, correct.")
    estimate = models.JSONField(default=dict, blank=True, help_text="Estimation drills only: answer, unit, tolerance.")
    model_answer = models.TextField()
    follow_ups = models.JSONField(default=list)
    mistakes = models.JSONField(default=list)
    lessons = models.JSONField(default=list)
    labs = models.JSONField(default=list)
    source = models.CharField(max_length=300, help_text="The file it was loaded from.")
    retired = models.BooleanField(default=False, help_text="Its file is gone; kept for the attempts that name it.")

    class Meta:
        ordering = ["topic", "difficulty", "id"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("practice:question", kwargs={"question_id": self.id})

    @property
    def is_choice(self) -> bool:
        return self.kind == self.Kind.CHOICE

    @property
    def is_estimate(self) -> bool:
        return self.kind == self.Kind.ESTIMATE

    @property
    def correct_option(self) -> int | None:
        return next((i for i, option in enumerate(self.options) if option.get("correct")), None)

    @property
    def difficulty_label(self) -> str:
        return {1: "Easy", 2: "Medium", 3: "Hard"}.get(self.difficulty, "")

    def lesson_links(self) -> list[tuple[str, str]]:
        # The lesson files are read once per content version, not on every question page.
        titles = content_cache.cached("lesson-titles", lesson_titles)
        return [(titles.get(slug, slug), lesson_url(slug)) for slug in self.lessons]

    def lab_links(self) -> list[tuple[str, str]]:
        return [(LABS.get(slug, slug), lab_url(slug)) for slug in self.labs]


def lesson_url(slug: str) -> str:
    # The lessons app names its detail page `courseware:lesson`; until it does, the path is the contract.
    try:
        return reverse("courseware:lesson", kwargs={"slug": slug})
    except NoReverseMatch:
        return f"/lessons/{slug}/"


def lab_url(slug: str) -> str:
    return f"{reverse('labs:index')}#{slug}"


class Rating(models.IntegerChoices):
    """FSRS's four ratings (fsrs.Rating), as a candidate's self-grade maps to them."""

    AGAIN = 1, "Again"
    HARD = 2, "Hard"
    GOOD = 3, "Good"
    EASY = 4, "Easy"


class Attempt(models.Model):
    class Source(models.TextChoices):
        ANSWER = "answer", "Written answer"
        CHOICE = "choice", "Quick check"
        GAVE_UP = "gave_up", "Gave up"
        MOCK = "mock", "Mock interview"
        ESTIMATE = "estimate", "Estimation drill"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="practice_attempts")
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="attempts")
    source = models.CharField(max_length=10, choices=Source.choices)
    created_at = models.DateTimeField()
    answer = models.TextField(blank=True)
    choice = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The option picked, for a quick check.")
    matches = models.JSONField(default=list, help_text="The rubric matcher's estimate, one entry per point.")
    grades = models.JSONField(null=True, blank=True, help_text="The candidate's credit per point: 1, 0.5 or 0.")
    score = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Weighted share of points, 0–100.")
    rating = models.PositiveSmallIntegerField(choices=Rating.choices, null=True, blank=True)
    graded_at = models.DateTimeField(null=True, blank=True)
    due_after = models.DateTimeField(null=True, blank=True, help_text="When the grade scheduled the next review.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.question_id} at {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def graded(self) -> bool:
        return self.graded_at is not None

    @property
    def reveals_model_answer(self) -> bool:
        """The model answer stays hidden until the candidate has graded this attempt or given up."""
        return self.graded or self.source == self.Source.GAVE_UP

    @property
    def suggested_count(self) -> int:
        """How many points the matcher suggested: an estimate shown beside the points, never a grade."""
        return sum(1 for m in self.matches if m.get("found"))

    @property
    def covered_count(self) -> int | None:
        """How many points the candidate graded covered; None until they have graded."""
        return None if self.grades is None else sum(1 for credit in self.grades if credit == 1.0)


class ReviewCard(models.Model):
    """One question as a spaced-repetition card for one candidate (FSRS state as JSON)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="practice_cards")
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="cards")
    due = models.DateTimeField(db_index=True)
    state = models.JSONField(help_text="fsrs.Card.to_dict()")
    reviews = models.PositiveIntegerField(default=0)
    last_review = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "question"], name="one_card_per_question")]
        ordering = ["due"]


class MockInterview(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mock_interviews")
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="mock_interviews")
    started_at = models.DateTimeField()
    phase_seconds = models.JSONField(help_text="How long each phase lasts, in seconds.")
    advanced_at = models.JSONField(default=list, help_text="When the candidate began each phase early (or null).")
    notes = models.JSONField(default=list, help_text="The candidate's notes, one text per phase.")
    follow_ups = models.JSONField(
        default=list, blank=True,
        help_text="Per phase, the follow-up questions the interviewer asked when it ended: [[{point, question}], ...].",
    )  # fmt: skip
    finished_at = models.DateTimeField(null=True, blank=True)
    attempt = models.ForeignKey(Attempt, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-started_at", "-id"]
