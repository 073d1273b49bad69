"""Estimate which rubric points a written answer covers, offline and explainably.

The lesson on interview answers is not the point here: this module is a plain
keyword matcher, and it says so. For each rubric point it reports whether one of
the point's `terms` appears in a sentence of the answer, quotes that sentence,
and for a miss explains what the point is and which words would have shown it.

Steps:
1. Split the answer into blocks (paragraphs, even when wrapped over several lines,
   list items and headings), drop Markdown list markers, heading marks and
   emphasis, then split each block into sentences (after . ! ? or ; and a space),
   keeping each sentence's original text to quote.
2. Normalise each sentence and each term the same way: lowercase, hyphens and
   punctuation become spaces, then every word is lightly stemmed ("retries",
   "retried" and "retrying" all become "retry"; "randomise" and "randomize" meet).
3. A one-word term matches a sentence that contains that word. A longer term
   matches when its words appear together as a phrase, or when all of them appear
   anywhere in the same sentence (ignoring little words like "the" and "it" while
   two others remain). A compound meets its spaced form ("rollback", "rolled back").
4. A point is found in the sentence that matches the most of its distinct terms
   (the earliest on a tie); it is missed when no sentence matches any term.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_BLOCK_START = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+|#{1,6}\s+|>\s*)")
_EMPHASIS = re.compile(r"[*`]+")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_DOUBLE_CONSONANT = re.compile(r"([b-df-hj-km-np-rtv-y])\1$")

# Suffixes removed by the light stemmer, longest first; the replacement keeps
# "retries" → "retry" and "processes" → "process".
_SUFFIXES = (
    ("isations", "iz"), ("izations", "iz"), ("isation", "iz"), ("ization", "iz"), ("ations", "at"), ("ation", "at"),
    ("ies", "y"), ("ied", "y"), ("sses", "ss"),
    ("ingly", ""), ("edly", ""), ("ings", ""), ("ing", ""), ("ed", ""), ("ly", ""), ("s", ""),
)  # fmt: skip
_KEEP_FINAL_S = ("ss", "us", "is", "os")


def stem(word: str) -> str:
    """Reduce a lowercase word to a rough stem shared by its common inflections."""
    if len(word) <= 3 or word.isdigit():
        return word
    if len(word) == 4 and word.endswith(("ies", "ied")):
        return word[:3]  # ties, tied → tie; dies, died → die
    for suffix, replacement in _SUFFIXES:
        if not word.endswith(suffix):
            continue
        if suffix == "s" and word.endswith(_KEEP_FINAL_S):
            break
        base = word[: -len(suffix)] + replacement
        if len(base) >= 3:
            word = base
            if suffix in ("ing", "ings", "ingly", "ed", "edly"):
                word = _DOUBLE_CONSONANT.sub(r"\1", word)
        break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    # British and American spellings meet: randomis(e) / randomiz(e), synchronis- / synchroniz-.
    if word.endswith("is") and len(word) > 4:
        word = word[:-2] + "iz"
    return word


def words(text: str) -> list[str]:
    """The normalised, stemmed words of `text`."""
    return [stem(w) for w in _NON_WORD.split(text.lower()) if w]


def _blocks(answer: str) -> list[str]:
    """Paragraphs, list items and headings, each as one line: a paragraph wrapped over
    several lines (as a textarea wraps it) is one block, as Markdown shows it."""
    blocks: list[str] = []
    continues = False
    for line in answer.splitlines():
        if not line.strip():
            continues = False
            continue
        starts_block = _BLOCK_START.match(line)
        text = _EMPHASIS.sub("", _BLOCK_START.sub("", line)).strip()
        if continues and not starts_block:
            blocks[-1] += " " + text
        else:
            blocks.append(text)
        # A heading ends at its line; a paragraph or a list item runs on.
        continues = not line.lstrip().startswith("#")
    return blocks


def sentences(answer: str) -> list[str]:
    """Split an answer into sentences, without list markers and emphasis, for quoting."""
    found = []
    for block in _blocks(answer):
        for piece in _SENTENCE_END.split(block):
            text = piece.strip()
            if any(ch.isalnum() for ch in text):
                found.append(text)
    return found


# Words that carry no meaning of their own in a term: "before it trips" is shown by
# "before the breaker trips". Left out only while two other words remain.
STOPWORDS = frozenset(
    "a an the it its is are be been to of in on at by for with as and or this that their there than".split()
)


def term_matches(term_words: Sequence[str], sentence_words: Sequence[str]) -> bool:
    """A term matches as a phrase, or (for several words) with all its words in the sentence.

    Compounds meet their spaced forms: "rollback" matches "rolled back" and "fail over"
    matches "failover".
    """
    if not term_words:
        return False
    n = len(term_words)
    joined_pairs = {a + b for a, b in zip(sentence_words, sentence_words[1:])}
    if n == 1:
        return term_words[0] in sentence_words or term_words[0] in joined_pairs
    if any(list(sentence_words[i : i + n]) == list(term_words) for i in range(len(sentence_words) - n + 1)):
        return True
    if n == 2 and "".join(term_words) in sentence_words:
        return True
    content = [w for w in term_words if w not in STOPWORDS]
    return set(content if len(content) >= 2 else term_words) <= set(sentence_words)


@dataclass(frozen=True)
class PointMatch:
    """What the matcher concluded about one rubric point."""

    point: str
    weight: int
    found: bool
    sentence: str = ""  # the sentence of the answer that shows the point, quoted as written
    term: str = ""  # the term that matched in it
    terms: tuple[str, ...] = field(default_factory=tuple)  # every term that matched there
    explanation: str = ""  # for a miss: why the point matters and words that would show it

    def as_dict(self) -> dict:
        return {
            "point": self.point,
            "weight": self.weight,
            "found": self.found,
            "sentence": self.sentence,
            "term": self.term,
            "terms": list(self.terms),
            "explanation": self.explanation,
        }


def explain_miss(point: dict, examples: int = 4) -> str:
    shown = ", ".join(f"“{t}”" for t in point["terms"][:examples])
    return f"No sentence mentions {shown} or a close variant. Why it matters: {point['why']}"


def match_point(point: dict, answer_sentences: Iterable[tuple[str, list[str]]]) -> PointMatch:
    best_sentence, best_terms = "", []
    term_words = [(term, words(term)) for term in point["terms"]]
    for sentence, sentence_words in answer_sentences:
        matched = [term for term, tw in term_words if term_matches(tw, sentence_words)]
        if len(matched) > len(best_terms):
            best_sentence, best_terms = sentence, matched
    if not best_terms:
        return PointMatch(point["point"], point["weight"], False, explanation=explain_miss(point))
    return PointMatch(point["point"], point["weight"], True, best_sentence, best_terms[0], tuple(best_terms))


def match_answer(answer: str, rubric: Sequence[dict]) -> list[PointMatch]:
    """Match every rubric point (dicts with point, weight, terms, why) against an answer."""
    answer_sentences = [(s, words(s)) for s in sentences(answer)]
    return [match_point(point, answer_sentences) for point in rubric]
