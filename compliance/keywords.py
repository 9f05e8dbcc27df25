"""STOP, START and HELP: what a text from a contact says about their consent. Pure.

`read_keyword(body, lists, embedded_opt_out=...)` reads one inbound message's body against the
keyword lists it is given (staff edit them per language: compliance.models.KeywordList, whose
`parser_lists()` builds the argument), so it never touches the database and is tested at
every edge.

- The whole message must be the keyword: trimmed, any case, punctuation ignored ("STOP ",
  "Stop.", "stop!!" are STOP). Words joined by a hyphen or an apostrophe are one word, so
  "non-stop deals?" holds no STOP at all.
- An opt-out word inside other text ("please stop texting me") is ambiguous: a person may
  mean it, or may be quoting. `embedded_opt_out` (settings.OMNI_KEYWORD_EMBEDDED_OPT_OUT)
  decides: opt out and flag the message for an agent (the default: a missed opt-out is a
  violation, a wrong one is fixed by a human), only flag it, or ignore it.
- Only opt-out words count inside other text: "yes, tell me more" starts nothing.
"""
import functools
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass

# The kinds of keyword (compliance.models.KeywordKind values), in the order a message that is
# on two lists (a staff mistake) is read: an opt-out wins.
STOP_ALL = "stop_all"
STOP = "stop"
START = "start"
HELP = "help"
KINDS = (STOP_ALL, STOP, START, HELP)
OPT_OUT_KINDS = (STOP_ALL, STOP)

OPT_OUT_AND_FLAG = "opt_out_and_flag"
FLAG = "flag"
IGNORE = "ignore"
EMBEDDED_OPT_OUT_POLICIES = (OPT_OUT_AND_FLAG, FLAG, IGNORE)

# A word: letters or digits and the combining marks on them (the vowel signs of Devanagari,
# which \w leaves out), with hyphens (ASCII, U+2010, U+2011) or apostrophes (' and ’) inside it
# joining its parts. Everything else separates words and is otherwise ignored.
JOINERS = "-\u2010\u2011'\u2019"


@functools.lru_cache(maxsize=256)
def _word_pattern(marks: str) -> re.Pattern:
    """WORD for a text holding these combining marks (re has no class for marks)."""
    part = f"[\\w{re.escape(marks)}]+" if marks else r"\w+"
    return re.compile(f"{part}(?:[{JOINERS}]{part})*")


@dataclass(frozen=True)
class Reading:
    """What an inbound message says. `keyword` is the kind Omni acts on ("" for none); `word`
    what matched; `embedded` that it was found inside other text; `needs_agent` that a person
    should read the message."""

    keyword: str = ""
    word: str = ""
    embedded: bool = False
    needs_agent: bool = False

    @property
    def opts_out(self) -> bool:
        return self.keyword in OPT_OUT_KINDS


def words_of(text: str) -> list[str]:
    """The words of `text`, case-folded and normalized (full-width letters become plain ones).

    Case folding turns the Turkish capital İ into i and a combining dot; the dot is dropped, so
    İPTAL, IPTAL and iptal are one word, as "any case" promises."""
    folded = unicodedata.normalize("NFKC", text or "").casefold().replace("i\u0307", "i")
    marks = "" if folded.isascii() else "".join(
        sorted({char for char in folded if unicodedata.category(char).startswith("M")}))
    return _word_pattern(marks).findall(folded)


class NormalizedLists(dict):
    """normalized_lists()'s result: read_keyword() takes it as it is."""


def normalized_lists(lists: Mapping[str, Collection[str]]) -> NormalizedLists:
    """Each kind's entries as read: words joined by single spaces, empty entries dropped. Made
    once where the lists are kept (channels' inbound settings), not for every message."""
    if isinstance(lists, NormalizedLists):
        return lists
    return NormalizedLists({kind: frozenset(" ".join(words_of(entry)) for entry in lists.get(kind, ())
                                            if words_of(entry)) for kind in KINDS})


def read_keyword(body: str, lists: Mapping[str, Collection[str]], *,
                 embedded_opt_out: str = OPT_OUT_AND_FLAG) -> Reading:
    """Read one inbound message's body against `lists` ({kind: words or phrases})."""
    if embedded_opt_out not in EMBEDDED_OPT_OUT_POLICIES:
        raise ValueError(f"Unknown embedded opt-out policy {embedded_opt_out!r}; "
                         f"one of {', '.join(EMBEDDED_OPT_OUT_POLICIES)}.")
    words = words_of(body)
    if not words:
        return Reading()
    lists = normalized_lists(lists)
    phrase = " ".join(words)
    for kind in KINDS:
        if phrase in lists[kind]:
            return Reading(kind, phrase)
    if embedded_opt_out == IGNORE:
        return Reading()
    padded = f" {phrase} "
    for kind in OPT_OUT_KINDS:
        # Longest entries first, so the reading names the fullest phrase found.
        for entry in sorted(lists[kind], key=len, reverse=True):
            if f" {entry} " in padded:
                acted_on = kind if embedded_opt_out == OPT_OUT_AND_FLAG else ""
                return Reading(acted_on, entry, embedded=True, needs_agent=True)
    return Reading()
