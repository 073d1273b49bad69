"""A workshop's roster: the people the instructor expects, pasted or uploaded as CSV.

One person a line: `name, email` or `name, username` (a header line `name,...` is skipped).
The grid shows a roster name on the tile of the account whose e-mail or username matches
(case-insensitively), and lists who has not joined yet. A bad line refuses the whole roster,
with its line number, and the roster already saved stays as it was.
"""

import csv
import io

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from workshops.models import RosterEntry, Workshop

MAX_PEOPLE = 500
MAX_BYTES = 100_000


def parse(text: str) -> list[RosterEntry]:
    if len(text.encode()) > MAX_BYTES:
        raise ValidationError(f"The roster is too long: at most {MAX_BYTES // 1000} kB.")
    people, seen = [], set()
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if number == 1 and cells[0].lower() == "name":
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise ValidationError(f"Line {number}: write a name and an e-mail or username, separated by a comma.")
        name, contact = cells
        if len(name) > 120:
            raise ValidationError(f"Line {number}: a name has at most 120 characters.")
        if "@" in contact:
            try:
                validate_email(contact)
            except ValidationError:
                raise ValidationError(f"Line {number}: “{contact[:80]}” is not an e-mail address.") from None
            entry = RosterEntry(name=name, email=contact.lower())
        elif len(contact) > 150:
            raise ValidationError(f"Line {number}: a username has at most 150 characters.")
        else:
            entry = RosterEntry(name=name, username=contact.lower())
        if (entry.email, entry.username) in seen:
            raise ValidationError(f"Line {number}: {contact[:80]} is on the roster twice.")
        seen.add((entry.email, entry.username))
        people.append(entry)
    if len(people) > MAX_PEOPLE:
        raise ValidationError(f"A roster holds at most {MAX_PEOPLE} people; this one has {len(people)}.")
    return people


def replace(workshop: Workshop, people: list[RosterEntry]) -> None:
    with transaction.atomic():
        workshop.roster.all().delete()
        for entry in people:
            entry.workshop = workshop
        RosterEntry.objects.bulk_create(people)


def names(workshop: Workshop) -> dict[str, str]:
    """{"e:<email>" or "u:<username>": name}, for matching seats' learners."""
    return {(f"e:{email}" if email else f"u:{username}"): name
            for name, email, username in workshop.roster.values_list("name", "email", "username")}  # fmt: skip


def name_of(user, by_key: dict[str, str]) -> str:
    return by_key.get(f"e:{(user.email or '').lower()}") or by_key.get(f"u:{user.get_username().lower()}") or ""


def not_joined(workshop: Workshop) -> list[RosterEntry]:
    joined_emails, joined_names = set(), set()
    for email, username in workshop.seats.values_list("learner__email", "learner__username"):
        joined_emails.add((email or "").lower())
        joined_names.add(username.lower())
    return [entry for entry in workshop.roster.all()
            if not (entry.email and entry.email in joined_emails) and not (entry.username and entry.username in joined_names)]  # fmt: skip
