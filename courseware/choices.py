"""Multiple-choice options a learner cannot answer by their shape alone.

Two habits give a right answer away without any knowledge: writers make the right option
the longest (it needs the most qualifying), and they put it in the same place (B). This
module removes the second for each learner and measures both in the files:

1. `shuffled_order` gives each learner their own order of a check's options, seeded by who
   they are, which check it is and how many times they answered it before, so the order
   stays put for one attempt (a reload, the result page) and changes for the next.
2. `measure_bias` reports, for a whole bank of checks, how often the right option is the
   strictly longest and where the right option sits in the file (anonymous visitors and
   exports such as the Anki deck see that order), and `ChoiceBias.problems` fails a bank
   past the limits below.
"""

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

# A third at most: with three or four options a fair bank has the right one longest about
# a third or a quarter of the time.
MAX_LONGEST_SHARE = 1 / 3
# Each position holds between half and one and a half times its fair share of right answers.
SPREAD = (0.5, 1.5)
# Below this many checks the figures are reported but not enforced: too few to tell bias from chance.
MIN_CHECKS_ENFORCED = 20
TRUE_FALSE = {"true", "false"}
LETTERS = "ABCDEFGHIJ"


def shuffled_order(count: int, *seed: object) -> list[int]:
    """The indexes 0..count-1 in the order one learner sees them; the same seed gives the same order.

    A string seed keeps the order the same across processes and Python versions
    (random.Random hashes it with SHA-512, not with the salted built-in hash).
    """
    return list(_order(count, ":".join(str(part) for part in seed)))


@lru_cache(maxsize=8192)  # seeding a generator (SHA-512, then 624 words) cost more than the rest of a check's form
def _order(count: int, seed: str) -> tuple[int, ...]:
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return tuple(order)


@dataclass(frozen=True)
class ChoiceItem:
    """One check as the figures see it: where it is, its options' texts and which one is right."""

    where: str
    texts: tuple[str, ...]
    right: int

    @property
    def true_false(self) -> bool:
        return {t.strip().lower() for t in self.texts} == TRUE_FALSE

    @property
    def right_is_longest(self) -> bool:
        """The right option is longer than every other one (a tie gives nothing away)."""
        mine = len(self.texts[self.right].strip())
        return all(mine > len(t.strip()) for i, t in enumerate(self.texts) if i != self.right)


@dataclass
class ChoiceBias:
    checks: int = 0
    measured: int = 0  # checks whose length can give the answer away: all but true/false
    longest: list[ChoiceItem] = field(default_factory=list)
    right_at: Counter = field(default_factory=Counter)  # position → right answers there
    fair: dict[int, float] = field(default_factory=dict)  # position → right answers expected by chance

    @property
    def longest_share(self) -> float:
        return len(self.longest) / self.measured if self.measured else 0.0

    def positions(self) -> str:
        return ", ".join(f"{LETTERS[p]} {self.right_at[p]} (fair {self.fair[p]:.1f})" for p in sorted(self.fair))

    def summary(self) -> str:
        return (
            f"right option longest in {len(self.longest)} of {self.measured} ({self.longest_share:.0%}, limit "
            f"{MAX_LONGEST_SHARE:.0%}); right option at {self.positions()}"
        )

    def problems(self, what: str) -> list[str]:
        """What fails the bank; nothing below MIN_CHECKS_ENFORCED checks."""
        if self.checks < MIN_CHECKS_ENFORCED:
            return []
        found = []
        if self.longest_share > MAX_LONGEST_SHARE:
            examples = ", ".join(item.where for item in self.longest[:6])
            found.append(
                f"in {len(self.longest)} of {self.measured} {what} ({self.longest_share:.0%}) the right option is the "
                f"longest (at most {MAX_LONGEST_SHARE:.0%}): shorten it or give a wrong option more substance, e.g. in {examples}"
            )
        low, high = SPREAD
        for position, fair in sorted(self.fair.items()):
            seen = self.right_at[position]
            if not low * fair <= seen <= high * fair:
                found.append(
                    f"{what}: the right option is at {LETTERS[position]} in {seen}, but a fair share is {fair:.1f} "
                    f"(keep it between {low * fair:.1f} and {high * fair:.1f}); move some right answers"
                )
        return found


def measure_bias(items: Iterable[ChoiceItem]) -> ChoiceBias:
    bias = ChoiceBias()
    for item in items:
        bias.checks += 1
        bias.right_at[item.right] += 1
        for position in range(len(item.texts)):
            bias.fair[position] = bias.fair.get(position, 0.0) + 1 / len(item.texts)
        if not item.true_false:
            bias.measured += 1
            if item.right_is_longest:
                bias.longest.append(item)
    return bias


def choice_item(where: str, options: Sequence[dict]) -> ChoiceItem:
    """A ChoiceItem from options as the content files hold them ({text, correct, ...})."""
    texts = tuple(str(option.get("text", "")) for option in options)
    right = next((i for i, option in enumerate(options) if option.get("correct") is True), 0)
    return ChoiceItem(where, texts, right)
