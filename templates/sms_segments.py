"""How many SMS segments a text costs (pure): each segment is billed as one message.

A text made only of the GSM 03.38 character set is sent in GSM-7: 160 characters in one SMS, 153
per part once it must be split (each part carries a header). The extension table's characters
(^ { } \\ [ ~ ] | € and form feed) take an escape and so count twice. One character outside the
set, a curly apostrophe pasted from a word processor as easily as an emoji, sends the whole text
in UCS-2: 70 units in one SMS, 67 per part, a character outside the BMP (most emoji) taking two.
"""
import unicodedata
from dataclasses import dataclass

from .rendering import fixed_text

GSM7 = "GSM-7"
UCS2 = "UCS-2"

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

# Units in a single SMS, and in each part of a concatenated one.
SINGLE = {GSM7: 160, UCS2: 70}
PER_PART = {GSM7: 153, UCS2: 67}

# Twilio refuses a body over 1600 characters; ten segments (1530 GSM-7 characters, 670 UCS-2
# units) stay under that in either encoding.
MAX_SMS_SEGMENTS = 10


@dataclass(frozen=True)
class SmsSegments:
    encoding: str
    units: int
    segments: int
    # The characters that forced UCS-2, each once, in order of appearance.
    ucs2_characters: tuple[str, ...] = ()

    @property
    def capacity(self) -> int:
        """The units the segments used could hold."""
        if self.segments <= 1:
            return SINGLE[self.encoding]
        return self.segments * PER_PART[self.encoding]

    def describe(self) -> str:
        """One line for a person: "3 segments (UCS-2 because of ’ and 😀, 150 of 201)"."""
        encoding = self.encoding
        if self.ucs2_characters:
            named = [_shown(c) for c in self.ucs2_characters]
            listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
            encoding = f"{encoding} because of {listed}"
        plural = "" if self.segments == 1 else "s"
        return f"{self.segments} segment{plural} ({encoding}, {self.units} of {self.capacity})"


def _shown(character: str) -> str:
    # A no-break space or a tab pasted with the text cannot be seen: it is named instead.
    if character.isprintable() and not character.isspace():
        return character
    return unicodedata.name(character, "").lower() or f"U+{ord(character):04X}"


def count_segments(text: str) -> SmsSegments:
    """The encoding `text` is sent in, its length in that encoding's units and its segments."""
    text = text or ""
    forcing = tuple(dict.fromkeys(c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENSION))
    if forcing:
        encoding = UCS2
        sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
    else:
        encoding = GSM7
        sizes = [2 if c in GSM7_EXTENSION else 1 for c in text]
    units = sum(sizes)
    if units <= SINGLE[encoding]:
        segments = 1 if units else 0
    else:
        segments = _parts(sizes, PER_PART[encoding])
    return SmsSegments(encoding, units, segments, forcing)


def _parts(sizes: list[int], per_part: int) -> int:
    # An escaped character or a surrogate pair is never split between two parts: when it does
    # not fit what is left of a part, it starts the next one.
    parts, used = 1, 0
    for size in sizes:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts


def fixed_segments(source: str) -> tuple[SmsSegments, str]:
    """The segments of what a template `source` prints whatever its variables, and the line for
    a person: "at least ..." where its variables or blocks may add to it."""
    text, varies = fixed_text(source)
    counted = count_segments(text)
    return counted, f"at least {counted.describe()}" if varies else counted.describe()
