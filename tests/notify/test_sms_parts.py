"""Our GSM-7 / UCS-2 splitter against the shared vectors and the edges between parts."""

import json
from pathlib import Path
from typing import Any

import pytest

from notify.sms_parts import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    gsm7_encode,
    sms_encode_parts,
    ucs2_encode,
)

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "data" / "domain-vectors.json").read_text("utf-8")
)["sms_parts"]


def _vector_text(vector: dict[str, Any]) -> str:
    if "repeat" in vector:
        return str(vector["repeat"]["char"]) * int(vector["repeat"]["times"])
    return str(vector.get("text_full", vector.get("text")))


def _septets(text: str) -> int:
    return sum(2 if char in GSM7_EXTENSION else 1 for char in text)


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-be")) // 2


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: json.dumps(v, ensure_ascii=False)[:60])
def test_vector(vector: dict[str, Any]) -> None:
    text = _vector_text(vector)
    sms = sms_encode_parts(text)
    assert (sms.encoding, sms.units, sms.count) == (
        vector["encoding"], vector["units"], vector["parts"])
    assert "".join(sms.parts) == text


def test_every_vector_form_is_read() -> None:
    assert {key for v in VECTORS for key in ("repeat", "text", "text_full") if key in v} == {
        "repeat", "text", "text_full"}


def test_part_sizes_of_a_long_ucs2_text() -> None:
    sms = sms_encode_parts("ө" * 135)
    assert [len(part) for part in sms.parts] == [67, 67, 1]


def test_part_sizes_of_a_long_gsm7_text() -> None:
    sms = sms_encode_parts("A" * 307)
    assert [len(part) for part in sms.parts] == [153, 153, 1]


def test_escape_pair_straddling_the_boundary_moves_to_the_next_part() -> None:
    text = "A" * 152 + "€" + "B" * 10  # € would take septets 153 and 154
    sms = sms_encode_parts(text)
    assert sms.encoding == "gsm7"
    assert sms.units == 152 + 2 + 10
    assert sms.parts == ("A" * 152, "€" + "B" * 10)
    assert [_septets(part) for part in sms.parts] == [152, 12]


def test_escape_pair_exactly_at_the_end_of_a_part_stays() -> None:
    text = "A" * 151 + "[" + "B" * 10  # [ takes septets 152 and 153
    sms = sms_encode_parts(text)
    assert sms.parts == ("A" * 151 + "[", "B" * 10)
    assert _septets(sms.parts[0]) == 153


def test_escape_characters_at_the_single_message_limit() -> None:
    assert sms_encode_parts("A" * 158 + "^").count == 1  # exactly 160 septets
    sms = sms_encode_parts("A" * 159 + "^")  # 161 septets: concatenated
    assert (sms.units, sms.count) == (161, 2)
    assert sms.parts == ("A" * 153, "A" * 6 + "^")


def test_every_extension_character_counts_two_septets() -> None:
    text = "^{}\\[~]|€\f"
    sms = sms_encode_parts(text)
    assert (sms.encoding, sms.units, sms.count) == ("gsm7", 20, 1)


def test_emoji_straddling_67_units_moves_to_the_next_part() -> None:
    text = "ү" * 66 + "😀" + "ү" * 10  # the emoji would take units 67 and 68
    sms = sms_encode_parts(text)
    assert sms.encoding == "ucs2"
    assert sms.units == 66 + 2 + 10
    assert sms.parts == ("ү" * 66, "😀" + "ү" * 10)
    for part in sms.parts:
        part.encode("utf-16-be").decode("utf-16-be")  # no part holds half a pair


def test_emoji_ending_exactly_at_67_units_stays() -> None:
    text = "ү" * 65 + "😀" + "ү" * 10
    sms = sms_encode_parts(text)
    assert sms.parts == ("ү" * 65 + "😀", "ү" * 10)
    assert _utf16(sms.parts[0]) == 67


def test_emoji_at_the_single_message_limit() -> None:
    assert sms_encode_parts("ү" * 68 + "😀").count == 1  # exactly 70 units
    assert sms_encode_parts("😀" * 35).count == 1
    sms = sms_encode_parts("😀" * 36)  # 72 units
    assert (sms.units, sms.count) == (72, 2)
    assert [_utf16(part) for part in sms.parts] == [66, 6]


def test_empty_text_has_nothing_to_send() -> None:
    sms = sms_encode_parts("")
    assert (sms.encoding, sms.units, sms.parts, sms.count) == ("gsm7", 0, (), 0)


def test_one_cyrillic_letter_makes_latin_text_ucs2() -> None:
    sms = sms_encode_parts("Your request " + "Ө" + " is ready")
    assert (sms.encoding, sms.units) == ("ucs2", 23)


def test_mongolian_latin_transliteration_stays_gsm7() -> None:
    sms = sms_encode_parts("Tany örgödöl khüleen avlaa. Ü Ö ü ö")
    assert sms.encoding == "gsm7"
    assert gsm7_encode("öüÖÜ") == bytes((0x7C, 0x7E, 0x5C, 0x5E))


def test_characters_outside_gsm7() -> None:
    # Backtick, lower-case ç, the escape code itself and Cyrillic look-alikes are not GSM-7.
    for char in ("`", "ç", "\x1b", "А", "ё", "\t"):
        assert sms_encode_parts("abc" + char).encoding == "ucs2", repr(char)


def test_gsm7_encoding_of_the_table_edges() -> None:
    assert gsm7_encode("@§¿à€\f") == bytes((0x00, 0x5F, 0x60, 0x7F, 0x1B, 0x65, 0x1B, 0x0A))
    assert len(GSM7_BASIC) == 127  # 128 codes less the escape
    with pytest.raises(ValueError):
        gsm7_encode("Ө")


def test_ucs2_encoding_is_utf16_big_endian() -> None:
    assert ucs2_encode("Ө😀") == b"\x04\xe8\xd8\x3d\xde\x00"
