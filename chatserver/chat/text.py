"""Chat text rules: normalisation, and the personal-data guard of terms 14.4.

Pure functions, no I/O. What counts as personal data (each is refused with `pii_warning`
unless the sender confirms):

- register number: two Mongolian Cyrillic letters (either case, an optional space or dash)
  and eight digits, not inside a longer word or number, whose first six digits are a real,
  past birth date (identity.domain.register_parse decides);
- bank card number: 13 to 19 digits, optionally grouped by single spaces or dashes, that pass
  the Luhn check;
- passport number (Mongolian passports): one or two capital letters, Latin or Cyrillic,
  directly followed by exactly seven digits, not inside a longer word or number
  (E1234567, MN1234567, Э1234567). Lower-case letters do not count: "e1234567" reads as a
  code, not a passport.

Invisible formatting characters (Unicode category Cf: bidirectional embeddings, overrides
and isolates, zero-width spaces, word joiners, the byte-order mark, soft hyphens...) are
removed before anything else: they can make text read differently from what it is
("gpj.exe" shown as "exe.jpg") or hide a word from a reader. Kept, because text needs them
and they reorder nothing: ZWJ U+200D and ZWNJ U+200C (emoji sequences such as a family or a
rainbow flag; joining in Mongolian and other scripts), the Mongolian vowel separator
U+180E (traditional Mongolian script), and tag characters U+E0020-E007F only inside an emoji
tag sequence (the flags of England, Scotland, Wales: U+1F3F4 then tags).
"""

import re
import unicodedata

from chatserver.chat.errors import TextControlCharacters, TextEmpty, TextTooLong
from chatserver.core.errors import InvalidRegisterNumber
from identity.domain import _CYRILLIC, register_parse

TEXT_MAX = 4096
_ALLOWED_CONTROLS = {"\n", "\t"}
_KEPT_FORMAT = {"\u200c", "\u200d", "\u180e"}
_TAG_BASE = "\U0001f3f4"  # waving black flag: the base of emoji tag sequences
_TAGS = range(0xE0020, 0xE0080)

_CYRILLIC_ALL = _CYRILLIC + _CYRILLIC.lower()
# Not preceded or followed by a letter or digit (\w covers both, Cyrillic included).
_REGISTER_RE = re.compile(rf"(?<!\w)([{_CYRILLIC_ALL}]{{2}})[ -]?([0-9]{{8}})(?!\w)")
_PASSPORT_RE = re.compile(rf"(?<!\w)[A-Z{_CYRILLIC}]{{1,2}}[0-9]{{7}}(?!\w)")
# Runs of digit groups separated by one space or dash: candidates for card numbers.
_DIGIT_RUN_RE = re.compile(r"(?<![\w])[0-9]+(?:[ -][0-9]+)*(?![\w])")


def text_clean(text: str) -> str:
    """The text as stored: NFC, CRLF as LF, invisible formatting characters removed; refuses
    control characters other than newline and tab, empty or blank texts and texts over 4,096
    characters (counted after NFC)."""
    value = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    kept: list[str] = []
    stripped = False
    for char in value:
        if char in _ALLOWED_CONTROLS:
            kept.append(char)
            continue
        category = unicodedata.category(char)
        if category == "Cc" or category == "Cs":  # Cs: lone surrogates from "\ud800" escapes
            raise TextControlCharacters()
        if category == "Cf" and char not in _KEPT_FORMAT and not (
                ord(char) in _TAGS and kept
                and (kept[-1] == _TAG_BASE or ord(kept[-1]) in _TAGS)):
            stripped = True
            continue
        kept.append(char)
    if stripped:
        value = "".join(kept)
    if len(value) > TEXT_MAX:
        raise TextTooLong(length=len(value), max_length=TEXT_MAX)
    if not value.strip():
        raise TextEmpty()
    return value


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _has_card_number(text: str) -> bool:
    for run in _DIGIT_RUN_RE.finditer(text):
        groups = re.split(r"[ -]", run.group(0))
        # Any consecutive groups totalling 13-19 digits: "4111 1111 1111 1111 99112233" holds
        # a card followed by a phone number.
        for start in range(len(groups)):
            digits = ""
            for group in groups[start:]:
                digits += group
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_valid(digits):
                    return True
    return False


def _has_register_number(text: str) -> bool:
    for match in _REGISTER_RE.finditer(text):
        try:
            register_parse(match.group(1) + match.group(2))
        except InvalidRegisterNumber:
            continue
        return True
    return False


def pii_kinds(text: str) -> list[str]:
    """What personal data the text seems to hold: register_number, card_number,
    passport_number (in that order), or nothing."""
    kinds = []
    if _has_register_number(text):
        kinds.append("register_number")
    if _has_card_number(text):
        kinds.append("card_number")
    if _PASSPORT_RE.search(text):
        kinds.append("passport_number")
    return kinds
