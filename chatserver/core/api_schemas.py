"""Schemas every API router shares (a leaf: it imports nothing of ours)."""

import re
from typing import Annotated, Any

from ninja import Schema
from pydantic import BeforeValidator, Field
from pydantic.json_schema import JsonDict


def _json_integer(value: Any) -> Any:
    """A JSON integer (5 or 5.0), not "5" nor true, which a lax int would take."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("an integer")
    return value


# An id in a body: a JSON integer within the database's 64-bit ids.
IdIn = Annotated[int, Field(ge=-2**63 + 1, le=2**63 - 1), BeforeValidator(_json_integer)]


class ErrorOut(Schema):
    """Every error of the citizen and agency APIs: `code` is stable, `message` is for people,
    `extra` holds details (field, retry_after, ...)."""

    code: str
    message: str
    extra: dict[str, Any]


# Documented shapes of strings whose full rule is the server's (a valid phone number, a real
# birth date): the pattern gives the syntax, the format names the rule.
PHONE: JsonDict = {"format": "phone",
         "description": "A phone number: international (+976...) or Mongolian national "
                        "(8 digits); it must be a real number (mobile where a code is sent)."}
REGISTER_NUMBER: JsonDict = {
    "format": "register-number",
    "pattern": r"^\s*[А-ЯЁӨҮа-яёөү]{2}\s*[0-9]{2}(0[1-9]|1[0-2]|2[1-9]|3[0-2])"
               r"(0[1-9]|[12][0-9]|3[01])[0-9]{2}\s*$",
    "description": "A citizen's register number: two Mongolian Cyrillic letters and eight "
                   "digits, the first six a real birth date not in the future (YYMMDD, the "
                   "month plus 20 for births from 2000), e.g. УБ99011512.",
}
# Text a person reads: no control characters but newline and tab (lines: neither), and
# something visible: not only spaces or invisible formatting, which the server removes.
_VISIBLE = r"[^\x00-\x20\x7f-\xa0\xad\u1680\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]"
VISIBLE_TEXT = rf"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*{_VISIBLE}[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
ONE_LINE = rf"^[^\x00-\x1f\x7f-\x9f]*{_VISIBLE}[^\x00-\x1f\x7f-\x9f]*$"
# Short machine-made text (an agency's own reference): no control characters; may be empty.
NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f]*$"
HTTPS_LINK = r"^(https://[^\s/\x00-\x1f\x7f-\x9f]+[^\x00-\x1f\x7f-\x9f]*)?$"


def pattern_matches(pattern: str, value: str) -> bool:
    """Whether `value` matches a documented pattern as a JSON Schema validator reads it (a
    search, `$` before a final newline included), so that the server refuses exactly what
    its document calls invalid."""
    return re.search(pattern, value) is not None


def _refused_unless(pattern: str, rule: str) -> BeforeValidator:
    """A value that, as sent (before any stripping), does not match the documented `pattern`
    is refused with `rule`."""
    def check(value: Any) -> Any:
        if isinstance(value, str) and not pattern_matches(pattern, value):
            raise ValueError(rule)
        return value
    return BeforeValidator(check)


# Strings whose documented pattern is the rule the server checks (each pattern stated once:
# in the document and in the check). A field adds its own lengths with Field(...).
OneLineText = Annotated[str, Field(json_schema_extra={"pattern": ONE_LINE}), _refused_unless(
    ONE_LINE, "one line of visible text, without control characters")]
VisibleText = Annotated[str, Field(json_schema_extra={"pattern": VISIBLE_TEXT}), _refused_unless(
    VISIBLE_TEXT, "visible text, without control characters but newline and tab")]
HttpsLink = Annotated[str, Field(json_schema_extra={"pattern": HTTPS_LINK}), _refused_unless(
    HTTPS_LINK, "an https:// address, without control characters")]
# A string a program makes (an id, a device token): no control characters, which PostgreSQL
# (NUL) or a log line would mangle.
PlainStr = Annotated[str, Field(json_schema_extra={"pattern": NO_CONTROLS}),
                     _refused_unless(NO_CONTROLS, "no control characters")]
