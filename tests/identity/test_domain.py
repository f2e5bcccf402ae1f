"""Register numbers and phone numbers: the shared domain vectors, then cases of our own."""

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from chatserver.core.errors import InvalidPhoneNumber, InvalidRegisterNumber, PhoneNotMobile
from identity.domain import mobile_parse, phone_parse, register_parse

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "domain-vectors.json").read_text("utf-8"))
REGISTERS = VECTORS["register_numbers"]
PHONES = VECTORS["phone_numbers"]
NOT_MOBILE_KINDS = {"fixed line", "VoIP"}


def _register_for(born: date, *, tail: str = "12") -> str:
    month = born.month + 20 if born.year >= 2000 else born.month
    return f"УБ{born.year % 100:02d}{month:02d}{born.day:02d}{tail}"


# ---- register numbers ----------------------------------------------------------------------

@pytest.mark.parametrize("vector", REGISTERS["valid"], ids=lambda v: repr(v["input"]))
def test_valid_register_numbers(vector: dict[str, str]) -> None:
    register = register_parse(vector["input"])
    assert register.value == vector["normalised"]
    assert register.birth_date == date.fromisoformat(vector["birth_date"])
    assert register.sex == vector["sex"]


@pytest.mark.parametrize("vector", REGISTERS["invalid"], ids=lambda v: v["why"])
def test_invalid_register_numbers(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidRegisterNumber):
        register_parse(vector["input"])


@pytest.mark.parametrize("raw", [
    "УB99011512",  # Cyrillic У, Latin B
    "YБ99011512",  # Latin Y, Cyrillic Б
    "YB99011512",  # both Latin look-alikes
    "УБ٩٩٠١١٥١٢",  # Arabic-Indic digits
    "УБ９９０１１５１２",  # full-width digits
    "",
    "   ",
    "УБУ9901151",  # three letters
    "Б99011512",  # one letter
])
def test_register_numbers_of_our_own_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRegisterNumber):
        register_parse(raw)


def test_register_number_lower_case_mongolian_letters_are_upper_cased() -> None:
    assert register_parse("өү99011512").value == "ӨҮ99011512"
    assert register_parse("ёө00291234").value == "ЁӨ00291234"


def test_register_number_born_tomorrow_is_refused_and_today_is_accepted() -> None:
    today = timezone.localdate()
    with pytest.raises(InvalidRegisterNumber):
        register_parse(_register_for(today + timedelta(days=1)))
    assert register_parse(_register_for(today)).birth_date == today


def test_register_number_sex_is_the_seventh_digit_parity() -> None:
    assert register_parse("УБ99011502").sex == "female"
    assert register_parse("УБ99011592").sex == "male"


def test_register_number_check_digit_is_not_enforced() -> None:
    values = {register_parse(f"УБ9901151{d}").value for d in range(10)}
    assert len(values) == 10


def test_register_number_of_an_organisation_is_refused_with_its_own_message() -> None:
    with pytest.raises(InvalidRegisterNumber, match="organisation"):
        register_parse("1234567")


# ---- phone numbers -------------------------------------------------------------------------

@pytest.mark.parametrize("raw", PHONES["same_number"])
def test_all_forms_of_one_number_give_one_e164(raw: str) -> None:
    assert phone_parse(raw) == "+97699112233"
    assert mobile_parse(raw) == "+97699112233"


@pytest.mark.parametrize("e164", sorted(PHONES["mobile"]),
                         ids=lambda n: f"{n}-{PHONES['mobile'][n]}")
def test_mobile_numbers_of_every_operator_are_verifiable(e164: str) -> None:
    assert mobile_parse(e164) == e164
    assert mobile_parse(e164.removeprefix("+976")) == e164
    assert phone_parse(e164) == e164


@pytest.mark.parametrize("raw", sorted(PHONES["not_verifiable"]),
                         ids=lambda n: f"{n}-{PHONES['not_verifiable'][n]}")
def test_numbers_that_cannot_receive_a_code_are_refused(raw: str) -> None:
    kind = PHONES["not_verifiable"][raw]
    if kind in NOT_MOBILE_KINDS:
        # A real number, just not a mobile one.
        assert phone_parse(raw) == f"+976{raw}"
        with pytest.raises(PhoneNotMobile):
            mobile_parse(raw)
    else:
        with pytest.raises(InvalidPhoneNumber):
            phone_parse(raw)
        with pytest.raises(InvalidPhoneNumber):
            mobile_parse(raw)


@pytest.mark.parametrize("raw", ["٩٩١١٢٢٣٣", "+٩٧٦٩٩١١٢٢٣٣", "９９１１２２３３"])
def test_phone_digits_of_other_scripts_normalise_to_ascii_e164(raw: str) -> None:
    assert mobile_parse(raw) == "+97699112233"


@pytest.mark.parametrize("raw", ["", "   ", "not a number", "+976", "+976 99"])
def test_phone_garbage_is_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        phone_parse(raw)
    with pytest.raises(InvalidPhoneNumber):
        mobile_parse(raw)
