"""Lessons as loaded from courseware/content/, and what each learner did with them.

Content rows (Module, Lesson, GlossaryTerm, InlineCheck) are written only by `load_content`;
learner rows (CheckAnswer, LessonProgress) only by the lesson pages.
"""

from django.conf import settings
from django.db import models


class Module(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    order = models.PositiveIntegerField()

    class Meta:
        ordering = ["order"]

    def __str__(self) -> str:
        return self.title


class GlossaryTerm(models.Model):
    slug = models.SlugField(unique=True)
    term = models.CharField(max_length=200)
    aliases = models.JSONField(default=list)
    definition = models.TextField()

    class Meta:
        ordering = ["term"]

    def __str__(self) -> str:
        return self.term


class LessonQuerySet(models.QuerySet):
    def outline(self) -> "LessonQuerySet":
        """Only what a link, a list or progress needs, without the large HTML and text columns."""
        return self.only("slug", "title", "summary", "module_id", "order", "position", "minutes")


class Lesson(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    summary = models.TextField()
    module = models.ForeignKey(Module, on_delete=models.PROTECT, related_name="lessons")
    order = models.PositiveIntegerField(help_text="Position inside the module.")
    position = models.PositiveIntegerField(help_text="Position in the whole course, from 1.")
    minutes = models.PositiveIntegerField(help_text="Minutes to read.")
    source = models.CharField(max_length=300, help_text="The lesson file, relative to the project.")
    content_hash = models.CharField(max_length=64, help_text="What the HTML was rendered from; see courseware.rendering.")
    html = models.TextField()
    toc_html = models.TextField()
    body_text = models.TextField(help_text="The prose a reader reads, without code or diagrams.")
    search_text = models.TextField(help_text="Lower-case title, summary, prose, code and checks.")
    word_count = models.PositiveIntegerField()
    prerequisites = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="unlocks")
    glossary_terms = models.ManyToManyField(GlossaryTerm, blank=True, related_name="lessons")
    labs = models.JSONField(default=list, help_text="Lab slugs, from front matter and lab: links.")
    practice_questions = models.JSONField(default=list, help_text="[{id, title}] of the practice questions on this lesson.")

    objects = LessonQuerySet.as_manager()

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.title


class InlineCheck(models.Model):
    check_id = models.SlugField(unique=True, max_length=100)
    lesson = models.ForeignKey(Lesson, on_delete=models.CASCADE, related_name="checks")
    position = models.PositiveIntegerField()
    question = models.TextField()
    options = models.JSONField(help_text="[{text, explanation, correct}] in the order shown.")

    class Meta:
        ordering = ["lesson", "position"]

    def __str__(self) -> str:
        return self.check_id


class CheckAnswer(models.Model):
    """One answer a signed-in learner gave to an inline check; every attempt is a row."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="check_answers")
    inline_check = models.ForeignKey(InlineCheck, on_delete=models.CASCADE, related_name="answers")
    option = models.PositiveIntegerField(help_text="Index of the chosen option.")
    correct = models.BooleanField()
    answered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "inline_check", "-answered_at"])]

    def __str__(self) -> str:
        return f"{self.user} → {self.inline_check}: {self.option}"


class LessonProgress(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lesson_progress")
    lesson = models.ForeignKey(Lesson, on_delete=models.CASCADE, related_name="progress")
    last_visited_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "lesson"], name="one_progress_row_per_lesson")]
        indexes = [models.Index(fields=["user", "-last_visited_at"])]

    def __str__(self) -> str:
        return f"{self.user} on {self.lesson}"


class ContentVersion(models.Model):
    """A single row whose token changes whenever content rows change (courseware/content_cache.py).

    Pages cache what they build from content under this token, so a reload shows at once in
    every web process, on every machine that shares the database.
    """

    token = models.CharField(max_length=32)
    changed_at = models.DateTimeField(auto_now=True)
