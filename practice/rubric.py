"""Estimate which rubric points a written answer states, offline and explainably.

The estimate is a suggestion beside each point; the candidate grades every point
and only their grades count (practice/views.py). So the matcher is built to be
trusted when it says "found": it credits a point only for a sentence that states
it, and it would rather miss a point than credit a word used in passing.
Measured on tests/data/rubric_eval/ (tests/test_practice_rubric_eval.py).

Steps:
1. Split the answer into blocks (paragraphs, even when wrapped over several lines,
   list items and headings), drop Markdown list markers, heading marks and
   emphasis, then split each block into sentences (after . ! ? or ; and a space),
   keeping each sentence's original text to quote.
2. Set aside sentences that state nothing: questions ("Marking first would lose
   messages?"), bare lists of terms ("outbox, relay, jitter, DLQ"), told by having
   almost none of the little words ("the", "is", "so") that explanations need or by
   short comma-separated terms that no article or pronoun ties together, and
   name-dropping ("we use a compacted topic, an outbox and a schema registry"): a
   short lead into names that end the sentence, with no word that says how or why.
3. Tokenise the rest: CamelCase splits ("CrashLoopBackOff" → crash loop back off),
   lowercase, hyphens and punctuation become spaces, every word is lightly stemmed
   ("retries", "retried" → "retry"; "randomise", "randomize" meet).
4. Mark the words a negation takes back, within the clause that holds it:
   "not", "never", "n't" and their kind reach to the end of the clause ("we don't
   need idempotency keys or a dead-letter queue"); "no" and "without" reach their
   noun ("without a limit it is retried forever" still states the retrying); a
   dismissal reaches back over its clause ("a circuit breaker is overkill");
   "rather than", "instead of" and "avoid" set aside what follows, up to a comma.
   A term that carries its own negation ("no shared transaction") matches as written,
   and a point that opens by rejecting something ("Reject synchronous calls per
   send") is shown where the answer negates those words, not where it affirms them.
   A sentence that calls one of a point's terms unneeded ("so we don't need APNs or
   FCM") contradicts that point and shows none of it.
5. Match each point's evidence in each sentence, negated words excluded: its terms,
   and the specific words of the point's own statement. A one-word term matches a
   word (or two words written as one, "timed out" ~ "timeout"); a longer term
   matches as a phrase, or with all its words apart in the sentence.
6. Weigh the matches in signal units: a term written as a phrase 3, any other term
   2, a word of the point's statement 1. A term made only of words common across
   the bank's model answers ("worker", "retry", "api") counts nothing, and a term
   inside another matched one counts once.
7. A point is found in the sentence (read with the next two) with the most signal,
   when that reaches 4 units: two distinct terms, or a term and words of the point.
   One term in passing, even a phrase, is not a statement of the point, and words of
   the point without one of its terms are not either.
"""

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_BLOCK_START = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+|#{1,6}\s+|>\s*)")
_EMPHASIS = re.compile(r"[*`]+")
_PARENTHESES = re.compile(r"\([^)]*\)")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[,;:()=]")
_CONTRACTED = {"ca": "can", "wo": "will", "sha": "shall"}  # can't, won't, shan't
_DOUBLE_CONSONANT = re.compile(r"([b-df-hj-km-np-rtv-y])\1$")

# Suffixes removed by the light stemmer, longest first; the replacement keeps
# "retries" → "retry" and "processes" → "process".
_SUFFIXES = (
    ("isations", "iz"), ("izations", "iz"), ("isation", "iz"), ("ization", "iz"), ("ations", "at"), ("ation", "at"),
    ("ies", "y"), ("ied", "y"), ("sses", "ss"),
    ("ingly", ""), ("edly", ""), ("ings", ""), ("ing", ""), ("ed", ""), ("ly", ""), ("s", ""),
)  # fmt: skip
_KEEP_FINAL_S = ("ss", "us", "is", "os")


@lru_cache(maxsize=1 << 16)  # an answer's words are mostly words seen before
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


# Words the bank's answers write in several ways for one thing, met on one stem: a
# candidate who writes "vendor" or "dedupe" means the rubric's "provider" or "deduplicate".
SAME_THING = {
    "vendor": "provider", "backup": "secondary", "fallback": "secondary",
    "idempotency": "idempotent", "deduplicat": "dedup",
    "acknowledg": "ack", "acknowledgement": "ack", "acknowledgment": "ack",
    "unacknowledg": "unack", "randomiz": "random",
}  # fmt: skip


def normal(word: str) -> str:
    """A word's stem, and for a word of SAME_THING the one stem it shares with its variants."""
    stemmed = stem(word)
    return SAME_THING.get(stemmed, stemmed)


def words(text: str) -> list[str]:
    """The normalised, stemmed words of `text`: CamelCase split into its words, "don't" into "do n't"."""
    return [normal(t) for t in _raw_tokens(text) if t[0].isalnum() or t == "n't"]


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

# The little words an explanation cannot do without and a list of terms has none of.
FUNCTION_WORDS = frozenset("""
    a an the this that these those it its they them their we our us you your i he she his her
    is are was were be been being am do does did doing has have had having will would can could
    should shall may might must to of in on at by for with from into onto over under about after
    before between through during until while as and or but so because since if then than when
    where which who whom what how why whether not no nor never only also just even still each
    every all any some both either neither other another such there here once again too very
    more most less least much many few own same up down out off away back yet though although
    instead rather unless otherwise per
""".split())
LIST_FUNCTION_SHARE = 0.15  # a sentence of terms: under this share of little words ...
LIST_MIN_WORDS = 4  # ... among at least this many words
LIST_MIN_SEGMENTS = 3  # or this many comma-separated parts ...
LIST_BARE_SHARE = 0.6  # ... of which this share have no little word at all
LIST_TERM_MAX_WORDS = 4  # or all of them this short, with no article or pronoun:
_TYING_WORDS = frozenset("a an the this that these those it its we our us you your i they them their he she".split())
LIST_ANSWER_SHARE = 0.6  # an answer whose sentences are mostly lists (two or more) is a list

# Name-dropping in a grammatical sentence: "we use a compacted topic, an outbox and a schema
# registry". Items are split at commas (not inside "10,000"), "and", "or" and "+"; a name is a
# short item with no little word but its article.
_COMMA = re.compile(r",(?!\d)")  # not the one in "20,000"
_ITEM_BREAK = re.compile(r",(?!\d)|\band\b|\bor\b|\+|&")
_ARTICLES = frozenset("a an the our their its".split())
NAME_MAX_WORDS = 4
NAMES_IN_A_ROW = 2  # bare names that end the sentence ...
LEAD_MAX_WORDS = 5  # ... after a short item that leads into them ("we use a compacted topic")
# Words that explain how or why; a sentence with one of them is more than a list of names.
_EXPLAINING = frozenset("""
    because so since which that when if to by until before after then otherwise unless while
    whereas means once instead rather than
""".split())

# Negation. Forward cues take back the rest of their clause; narrow ones only their noun.
_FORWARD_NEGATIONS = frozenset("not never nothing none neither nor cannot n't skip skipping ignore disable".split())
_NARROW_NEGATIONS = frozenset("no without".split())
_NARROW_REACH = 2
_DISMISSING_NOUNS = frozenset({"point", "need", "reason", "use"})  # "no need for X" takes back X
_DISMISSING_VERBS = frozenset({"need", "requir", "bother", "want"})  # "we don't need X" dismisses X
# Dismissals written after the thing they dismiss: "X is overkill", "X isn't needed".
_DISMISSALS = (
    ("overkill",), ("unnecessary",), ("pointless",), ("not", "need"), ("n't", "need"), ("not", "necessary"),
    ("n't", "necessary"), ("n't", "matter"), ("not", "matter"), ("not", "requir"), ("n't", "requir"),
    ("n't", "help"), ("not", "concern"), ("n't", "concern"), ("be", "ignor"), ("thing", "of", "the", "past"),
    ("n't", "a", "problem"), ("n't", "a", "real", "problem"), ("not", "a", "problem"), ("not", "a", "real", "problem"),
    ("n't", "real", "necessary"), ("n't", "real", "need"),
)  # fmt: skip
_DISMISSALS_BY_START: dict[str, list[tuple[str, ...]]] = {}
for _dismissal in _DISMISSALS:
    _DISMISSALS_BY_START.setdefault(_dismissal[0], []).append(_dismissal)
# Words that end a clause, and with it the reach of a negation.
_CLAUSE_BREAKS = frozenset(
    "but so because since which while whereas though although then yet otherwise unless until when "
    "whether where who if instead rather except".split()
)
_CLAUSE_PUNCTUATION = frozenset(";:()=")
# Cues that set aside what follows them, up to the next comma: "wait for a token rather than
# calling the provider", "keep the newest per key instead of deleting by age", "avoid a call per send".
_SETTING_ASIDE = (("rather", "than"), ("instead", "of"), ("avoid",), ("avoids",), ("avoiding",))
_ASIDE_STARTS = frozenset(cue[0] for cue in _SETTING_ASIDE)
# A rubric point may reject what it names ("Reject synchronous calls per send"): read in the
# point's own statement only, since in an answer "the provider rejects it" names an outcome.
_POINT_NEGATIONS = frozenset({"reject"})
NEGATION_WORDS = _FORWARD_NEGATIONS | _NARROW_NEGATIONS | {"n't"}

# A stem in at least this share of the bank's model answers says nothing specific.
COMMON_SHARE = 0.4

# Signal units: a point is suggested when one sentence, or two in a row, hold ENOUGH_UNITS.
PHRASE_UNITS = 3  # a term of two or more words, written as a phrase
WORD_UNITS = 2  # a one-word term, or a term's words apart in the sentence
POINT_WORD_UNITS = 1  # a specific word of the point's own statement
ENOUGH_UNITS = 4
WINDOW = 3  # sentences read together: an explanation often runs over two or three


@dataclass(frozen=True)
class Sentence:
    """One sentence of an answer: its text to quote, its words and which of them are taken back."""

    text: str
    words: tuple[str, ...]
    negated: tuple[bool, ...]
    is_question: bool
    is_list: bool  # a bare list of terms
    dismissed: tuple[bool, ...] = ()  # the negated words said not to be needed ("we don't need APNs")

    @cached_property
    def all_words(self) -> "WordView":
        return WordView(self.words)

    @cached_property
    def affirmed_words(self) -> "WordView":
        """The words no negation takes back (a negated word leaves a gap, so phrases do not bridge it)."""
        return WordView([w if not negated else "" for w, negated in zip(self.words, self.negated, strict=True)])

    @cached_property
    def negated_words(self) -> "WordView":
        """The words a negation takes back, alone: where a point that rejects something is stated."""
        return WordView([w if negated else "" for w, negated in zip(self.words, self.negated, strict=True)])

    @cached_property
    def dismissed_words(self) -> "WordView":
        return WordView([w if d else "" for w, d in zip(self.words, self.dismissed, strict=True)])

    @property
    def states(self) -> bool:
        return not (self.is_question or self.is_list)


def _raw_tokens(text: str) -> list[str]:
    """Lowercase word and punctuation tokens, with "don't" split into "do" and "n't"."""
    tokens = []
    for token in _TOKEN.findall(_CAMEL.sub(" ", text).replace("’", "'").lower()):
        if token.endswith("n't"):
            base = token[:-3]
            tokens += [_CONTRACTED.get(base, base), "n't"]
        elif token == "cannot":
            tokens += ["can", "not"]
        elif "'" in token:
            tokens.append(token.split("'")[0])
        else:
            tokens.append(token)
    return tokens


def _written_words(text: str) -> list[str]:
    """Words as written: "at-most-once" and "CrashLoopBackOff" are one term each, not little words."""
    found = [w.strip(".,;:()=\"'").lower() for w in text.replace("’", "'").split()]
    return [w for w in found if w[:1].isalpha()]


def _is_little(word: str) -> bool:
    return word in FUNCTION_WORDS or word.endswith("n't")


def _is_list(text: str) -> bool:
    """A run of terms: almost no little words, mostly comma-separated terms without any, or
    comma-separated short terms that no article or pronoun ties into a sentence
    ("accept both, either field, run both versions")."""
    written = _written_words(text)
    little = sum(map(_is_little, written))
    if not little or (len(written) >= LIST_MIN_WORDS and little / len(written) < LIST_FUNCTION_SHARE):
        return True
    pieces = [part for part in _COMMA.split(_PARENTHESES.sub(" ", text)) if any(ch.isalnum() for ch in part)]
    segments = [_written_words(part) for part in pieces]
    if len(pieces) >= LIST_MIN_SEGMENTS and all(
        len(seg) <= LIST_TERM_MAX_WORDS and not set(seg) & _TYING_WORDS for seg in segments
    ):
        return True
    segments = [seg for seg in segments if seg]
    bare = sum(not any(map(_is_little, seg)) for seg in segments)
    return len(segments) >= LIST_MIN_SEGMENTS and bare / len(segments) >= LIST_BARE_SHARE


def _is_name(item: list[str]) -> bool:
    named = item[1:] if item[:1] and item[0] in _ARTICLES else item
    return 0 < len(named) <= NAME_MAX_WORDS and not any(map(_is_little, named))


def _drops_names(text: str) -> bool:
    """A sentence that names things and explains nothing: a short item leading into at least two
    bare names that end it ("we use a compacted topic, an outbox and a schema registry"), and no
    word that says how or why. A longer lead ("each waiting call holds a thread or a stream, a
    database connection, memory") or a colon ("messages carry ids: intent id, user id") explains."""
    if any(w in _EXPLAINING for w in _written_words(text)):
        return False
    pieces = _ITEM_BREAK.split(_PARENTHESES.sub(" ", text).lower())
    items = [(piece, _written_words(piece)) for piece in pieces if _written_words(piece)]
    run = 0
    while run < len(items) and _is_name(items[-1 - run][1]):
        run += 1
    if run < NAMES_IN_A_ROW or run == len(items):
        return False
    lead, lead_words = items[-1 - run]
    return len(lead_words) <= LEAD_MAX_WORDS and ":" not in lead


def _negated_flags(tokens: list[str], forward: frozenset[str] = _FORWARD_NEGATIONS) -> list[bool]:
    """Which tokens a negation takes back, scoped to the clause that holds the negation."""
    return _negation(tokens, forward)[0]


def _negation(tokens: list[str], forward: frozenset[str] = _FORWARD_NEGATIONS) -> tuple[list[bool], list[bool]]:
    """Which tokens a negation takes back, and which of them it dismisses as not needed."""
    stems = [stem(t) for t in tokens]
    flags = [False] * len(tokens)
    dismissed = [False] * len(tokens)
    breaks = [t in _CLAUSE_BREAKS or t in _CLAUSE_PUNCTUATION for t in tokens]
    for i, token in enumerate(tokens):
        aside = token in _ASIDE_STARTS and next(
            (len(cue) for cue in _SETTING_ASIDE if tuple(tokens[i : i + len(cue)]) == cue), 0
        )
        if aside:
            j = i + aside
            while j < len(tokens) and not breaks[j] and tokens[j] != ",":
                flags[j] = True
                j += 1
        elif token in forward:
            dismissing = i + 1 < len(tokens) and stems[i + 1] in _DISMISSING_VERBS
            j = i + 1
            while j < len(tokens) and not breaks[j]:
                flags[j] = True
                dismissed[j] = dismissing
                j += 1
        elif token in _NARROW_NEGATIONS and i + 1 < len(tokens) and stems[i + 1] in _DISMISSING_NOUNS:
            j = i + 1
            while j < len(tokens) and not breaks[j]:
                flags[j] = True
                dismissed[j] = True
                j += 1
        elif token in _NARROW_NEGATIONS:
            j = i + 1
            while j < len(tokens) and j <= i + _NARROW_REACH and not breaks[j] and tokens[j] != ",":
                flags[j] = True
                j += 1
        for dismissal in _DISMISSALS_BY_START.get(stems[i], ()):
            if tuple(stems[i : i + len(dismissal)]) == dismissal:
                j = i - 1
                while j >= 0 and not breaks[j] and tokens[j] != ",":
                    flags[j] = True
                    dismissed[j] = True
                    j -= 1
    return flags, dismissed


def read_sentence(text: str) -> Sentence:
    tokens = _raw_tokens(text)
    flags, dismissed = _negation(tokens)
    kept = [(normal(t), f, d) for t, f, d in zip(tokens, flags, dismissed, strict=True) if t[0].isalnum() or t == "n't"]
    return Sentence(
        text, tuple(w for w, _, _ in kept), tuple(f for _, f, _ in kept), text.rstrip().endswith("?"),
        _is_list(text) or _drops_names(text), tuple(d for _, _, d in kept),
    )  # fmt: skip


class WordView:
    """A sentence's words as a term sees them, with the sets each match looks in, built once."""

    def __init__(self, sentence_words: Sequence[str]):
        self.words = tuple(sentence_words)
        self.word_set = frozenset(self.words)
        # "timed out" stems to "tim out": the stemmer's dropped "e" comes back at the join.
        self.joined_pairs = frozenset(a + glue + b for a, b in zip(self.words, self.words[1:]) for glue in ("", "e"))


def term_matches(term_words: Sequence[str], sentence_words: Sequence[str]) -> bool:
    """A term matches as a phrase, or (for several words) with all its words in the sentence.

    Compounds meet their spaced forms: "rollback" matches "rolled back" and "fail over"
    matches "failover".
    """
    return _term_units(term_words, WordView(sentence_words)) > 0


def _term_units(term_words: Sequence[str], view: WordView) -> int:
    """A term's signal in a sentence: PHRASE_UNITS for two or more words written as a phrase,
    WORD_UNITS for one word or several words apart, 0 when it does not match."""
    if not term_words:
        return 0
    n = len(term_words)
    if n == 1:
        return WORD_UNITS if term_words[0] in view.word_set or term_words[0] in view.joined_pairs else 0
    content = [w for w in term_words if w not in STOPWORDS]
    if not set(content if len(content) >= 2 else term_words) <= view.word_set:
        if n == 2 and "".join(term_words) in view.word_set:
            return PHRASE_UNITS
        return 0
    sentence_words, phrase = view.words, tuple(term_words)
    if any(sentence_words[i : i + n] == phrase for i in range(len(sentence_words) - n + 1)):
        return PHRASE_UNITS
    return WORD_UNITS


# How a piece of evidence must be said in the answer to count.
AFFIRMED = "affirmed"  # as the point affirms it: a negation takes it back
NEGATED = "negated"  # as the point rejects it: "no synchronous lookup per send" for "Reject synchronous calls"
AS_WRITTEN = "as written"  # a term that carries its own negation ("no shared transaction")


def _visible_words(sentence: Sentence, polarity: str) -> WordView:
    """The sentence's words a piece of evidence may match, given how the point says it."""
    if polarity == AS_WRITTEN:
        return sentence.all_words
    if polarity == NEGATED:
        return sentence.negated_words
    return sentence.affirmed_words


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
    return f"No sentence states it (with words such as {shown}). Why it matters: {point['why']}"


def common_stems(texts: Iterable[str], share: float = COMMON_SHARE) -> frozenset[str]:
    """Stems that appear in at least `share` of `texts`: too common to show any one point."""
    texts = list(texts)
    counts = Counter(w for text in texts for w in set(words(text)))
    return frozenset(w for w, n in counts.items() if texts and n / len(texts) >= share)


@cache
def bank_common_stems() -> frozenset[str]:
    """Stems common across the question bank's model answers (the files, read once per process)."""
    from practice.question_files import read_questions  # noqa: PLC0415 -- needs Django settings, not at import

    return common_stems(q["model_answer"] for q in read_questions().questions)


Matched = tuple[str, list[str], int, bool]  # a piece of evidence found: label, words, signal units, is a term


def _units(matched: list[Matched], common: frozenset[str]) -> int:
    """Sum the matched evidence's signal units. Terms made only of common words add nothing,
    and a term written inside another matched one ("ack" in "auto-ack") adds nothing more.
    Without one of the point's terms it is 0: the words of a point's own statement ("account",
    "publish") only back a term up, they do not state the point alone."""
    total = 0
    has_term = False
    counted: list[str] = []
    for _term, tw, signal, is_term in sorted(matched, key=lambda m: -len("".join(m[1]))):
        content = [w for w in tw if w not in STOPWORDS and w not in NEGATION_WORDS] or list(tw)
        if set(content) <= common:
            continue
        joined = "".join(content)
        if any(joined in seen for seen in counted):
            continue
        counted.append(joined)
        total += signal
        has_term = has_term or is_term
    return total if has_term else 0


@cache
def _term_words(term: str) -> list[str]:
    """A term's words, read once: the same rubrics are matched again and again."""
    return words(term)


# A term or a word of the point, its words, whether it is a term, and its polarity.
Evidence = tuple[str, list[str], bool, str]


@cache
def _rejected_words(statement: str) -> frozenset[str]:
    """The words a point that opens by rejecting something names ("Reject synchronous calls per
    send", "No shared state between workers"): an answer states them negated.

    Only a point that opens so: elsewhere a point's negation is part of a claim ("so no intent is
    lost"), which answers put in as many ways as there are answers."""
    tokens = _raw_tokens(statement)
    if not tokens or not (tokens[0] in _POINT_NEGATIONS | _FORWARD_NEGATIONS | {"no"} or tokens[1:2] == ["n't"]):
        return frozenset()
    flags = _negated_flags(tokens, _FORWARD_NEGATIONS | _POINT_NEGATIONS | _NARROW_NEGATIONS)
    said = [(normal(t), f) for t, f in zip(tokens, flags, strict=True) if t[0].isalnum()]
    return frozenset(w for w, f in said if f) - {w for w, f in said if not f}


def _polarity(term_words: Sequence[str], rejected: frozenset[str]) -> str:
    if any(w in NEGATION_WORDS for w in term_words):
        return AS_WRITTEN
    content = [w for w in term_words if w not in STOPWORDS]
    return NEGATED if content and set(content) <= rejected else AFFIRMED


def _evidence(point: dict, common: frozenset[str]) -> list[Evidence]:
    """A point's terms, then the specific words of its own statement that no term already holds."""
    rejected = _rejected_words(point["point"])
    evidence = [(term, tw, True, _polarity(tw, rejected)) for term in point["terms"] for tw in [_term_words(term)]]
    seen = {w for _, tw, _, _ in evidence for w in tw}
    for token in _raw_tokens(point["point"]):
        word = normal(token)
        if token[0].isalpha() and token not in FUNCTION_WORDS and len(word) > 2 and word not in common | seen:
            seen.add(word)
            evidence.append((token, [word], False, NEGATED if word in rejected else AFFIRMED))
    return evidence


def _sentence_matches(evidence: list[Evidence], sentence: Sentence) -> list[Matched]:
    """The evidence a stating sentence holds: (term, its words, signal units)."""
    if not sentence.states:
        return []
    matched = []
    for term, tw, is_term, polarity in evidence:
        units = _term_units(tw, _visible_words(sentence, polarity))
        if is_term and polarity == AFFIRMED and not units and _term_units(tw, sentence.dismissed_words):
            return []
        if units:
            matched.append((term, tw, units if is_term else POINT_WORD_UNITS, is_term))
    return matched


def match_point(point: dict, answer_sentences: Sequence[Sentence], common: frozenset[str] = frozenset()) -> PointMatch:
    """Find the sentence, read with the next ones (WINDOW in all), that states the point most strongly."""
    evidence = _evidence(point, common)
    per_sentence = [_sentence_matches(evidence, s) for s in answer_sentences]
    best_units, quote, terms = 0, -1, []
    for i in range(len(answer_sentences)):
        window = range(i, min(i + WINDOW, len(answer_sentences)))
        matched = [m for j in window for m in per_sentence[j]]
        units = _units(matched, common)
        if units > best_units:
            best_units, terms = units, [term for term, *_ in matched]
            quote = max(window, key=lambda j: _units(per_sentence[j], common))
    if best_units < ENOUGH_UNITS:
        return PointMatch(point["point"], point["weight"], False, explanation=explain_miss(point))
    terms = list(dict.fromkeys(terms))
    return PointMatch(point["point"], point["weight"], True, answer_sentences[quote].text, terms[0], tuple(terms))


def match_answer(answer: str, rubric: Sequence[dict], common: frozenset[str] | None = None) -> list[PointMatch]:
    """Match every rubric point (dicts with point, weight, terms, why) against an answer.

    `common` are stems too common to show a point; by default those of the bank's model answers.
    """
    if common is None:
        common = bank_common_stems()
    answer_sentences = [read_sentence(s) for s in sentences(answer)]
    lists = sum(s.is_list for s in answer_sentences)
    if lists >= 2 and lists / len(answer_sentences) >= LIST_ANSWER_SHARE:
        return [PointMatch(p["point"], p["weight"], False, explanation=explain_miss(p)) for p in rubric]
    return [match_point(point, answer_sentences, common) for point in rubric]
