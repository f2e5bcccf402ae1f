"""Register numbers and phone numbers: parsing and normalisation at the edge."""

import re
from dataclasses import dataclass
from datetime import date

import phonenumbers
from django.utils import timezone
from phonenumbers import PhoneNumberType

from chatserver.core.errors import InvalidPhoneNumber, InvalidRegisterNumber, PhoneNotMobile

# The Mongolian Cyrillic alphabet: the Russian letters plus Ө and Ү (Ё included).
_CYRILLIC = "АБВГДЕЁЖЗИЙКЛМНОӨПРСТУҮФХЦЧШЩЪЫЬЭЮЯ"
_CITIZEN_RE = re.compile(rf"^([{_CYRILLIC}]{{2}})([0-9]{{8}})$")
_ORGANISATION_RE = re.compile(r"^[0-9]{7}$")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class RegisterNumber:
    value: str
    birth_date: date
    sex: str  # "male" or "female"


def register_parse(raw: str) -> RegisterNumber:
    """A citizen's register number, upper-cased and without spaces; no check-digit rule."""
    value = _SPACES.sub("", raw or "").upper()
    if _ORGANISATION_RE.match(value):
        raise InvalidRegisterNumber("This is an organisation's register, not a citizen's.")
    match = _CITIZEN_RE.match(value)
    if not match:
        raise InvalidRegisterNumber(
            "A register number is two Cyrillic letters and eight digits, e.g. УБ99011512."
        )
    digits = match.group(2)
    year, month, day = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    if month > 20:
        year, month = 2000 + year, month - 20
    else:
        year += 1900
    try:
        born = date(year, month, day)
    except ValueError as exc:
        raise InvalidRegisterNumber("The birth date in the register number does not exist.") \
            from exc
    if born > timezone.localdate():
        raise InvalidRegisterNumber("The birth date in the register number is in the future.")
    sex = "male" if int(digits[6]) % 2 else "female"
    return RegisterNumber(value=value, birth_date=born, sex=sex)


def phone_parse(raw: str) -> str:
    """E.164 form of a valid number; national numbers are read as Mongolian."""
    try:
        number = phonenumbers.parse(raw or "", "MN")
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber() from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mobile_parse(raw: str) -> str:
    """E.164 form of a valid mobile number (only mobiles receive verification codes)."""
    e164 = phone_parse(raw)
    kind = phonenumbers.number_type(phonenumbers.parse(e164))
    if kind not in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise PhoneNotMobile()
    return e164
