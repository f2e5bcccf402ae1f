"""How a text travels as SMS: its alphabet and the parts it is split into (and billed for).

    text --all in GSM 03.38 (basic + extension)?--> GSM-7: 160 septets, else 153 per part
         \\--otherwise (Mongolian Cyrillic, emoji)--> UCS-2: 70 UTF-16 units, else 67 per part

A concatenated part carries a 6-octet user data header (8-bit reference, IEI 0x00), which is
why 153 and 67 rather than 160 and 70. The extension characters ^{}\\[~]|€ and form feed take
two septets (escape + code); a character outside the BMP (emoji) takes two UTF-16 units.
A part never splits either pair: we split between characters, never inside one.
"""

from dataclasses import dataclass
from typing import Literal

GSM7_SINGLE_SEPTETS = 160
GSM7_PART_SEPTETS = 153
UCS2_SINGLE_UNITS = 70
UCS2_PART_UNITS = 67
# The concatenation header numbers parts in one octet.
MAX_PARTS = 255

GSM7_ESCAPE = 0x1B

# 3GPP TS 23.038, 6.2.1: the default alphabet, row by row (0x00-0x7F). 0x1B is the escape
# to the extension table, not a character.
_GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_GSM7_BASIC_TABLE) == 128

GSM7_BASIC: dict[str, int] = {
    char: code for code, char in enumerate(_GSM7_BASIC_TABLE) if code != GSM7_ESCAPE
}
# 6.2.1.1: the extension table, reached by the escape; each takes two septets.
GSM7_EXTENSION: dict[str, int] = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
    "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}

Encoding = Literal["gsm7", "ucs2"]


@dataclass(frozen=True)
class SmsParts:
    encoding: Encoding
    units: int  # septets (gsm7) or UTF-16 code units (ucs2) of the whole text
    parts: tuple[str, ...]  # the text of each part, in order; () for an empty text

    @property
    def count(self) -> int:
        """Parts billed; 0 for an empty text (nothing to send)."""
        return len(self.parts)

    @property
    def concatenated(self) -> bool:
        return len(self.parts) > 1


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def _gsm7_septets(char: str) -> int:
    return 2 if char in GSM7_EXTENSION else 1


def _utf16_units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def sms_encode_parts(text: str) -> SmsParts:
    """The alphabet, size and parts of `text` sent as SMS."""
    if is_gsm7(text):
        encoding: Encoding = "gsm7"
        width = _gsm7_septets
        single, per_part = GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS
    else:
        encoding = "ucs2"
        width = _utf16_units
        single, per_part = UCS2_SINGLE_UNITS, UCS2_PART_UNITS
    widths = [width(char) for char in text]
    units = sum(widths)
    if not text:
        return SmsParts(encoding=encoding, units=0, parts=())
    if units <= single:
        return SmsParts(encoding=encoding, units=units, parts=(text,))
    parts: list[str] = []
    start = filled = 0
    for index, char_units in enumerate(widths):
        # Whole characters only: an escape pair or a surrogate pair moves to the next part.
        if filled + char_units > per_part:
            parts.append(text[start:index])
            start, filled = index, 0
        filled += char_units
    parts.append(text[start:])
    return SmsParts(encoding=encoding, units=units, parts=tuple(parts))


def gsm7_encode(text: str) -> bytes:
    """GSM 03.38 default alphabet, one septet per octet (unpacked), as SMPP's data_coding 0
    carries it; extension characters become escape + code. ValueError outside the alphabet."""
    out = bytearray()
    for char in text:
        code = GSM7_BASIC.get(char)
        if code is not None:
            out.append(code)
            continue
        code = GSM7_EXTENSION.get(char)
        if code is None:
            raise ValueError(f"{char!r} is not in the GSM 03.38 alphabet")
        out += bytes((GSM7_ESCAPE, code))
    return bytes(out)


def ucs2_encode(text: str) -> bytes:
    """UTF-16 big-endian, as SMPP's data_coding 8 carries it (surrogate pairs for emoji)."""
    return text.encode("utf-16-be", errors="surrogatepass")
