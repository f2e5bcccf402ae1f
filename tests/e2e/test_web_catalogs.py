"""The web client's Mongolian catalogs: every string of the templates and scripts is in them,
translated, and the committed .mo files say what the .po files say (a .po edited without
`compilemessages` fails here)."""

import ast
import gettext
import re
from pathlib import Path

import pytest

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
CATALOGS = FRONTEND / "locale" / "mn" / "LC_MESSAGES"


def po_entries(path: Path) -> dict[str, tuple[str, bool]]:
    """msgid -> (msgstr, fuzzy) of a .po file, the header left out."""
    entries: dict[str, tuple[str, bool]] = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in block.splitlines())
        fields: dict[str, str] = {}
        current = ""
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            key, _, rest = line.partition(" ")
            if key in ("msgid", "msgstr"):
                current = key
                fields[key] = ast.literal_eval(rest)
            elif line.startswith('"') and current:
                fields[current] += ast.literal_eval(line)
        if fields.get("msgid"):
            entries[fields["msgid"]] = (fields.get("msgstr", ""), fuzzy)
    return entries


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_catalog_is_translated_and_compiled(domain: str) -> None:
    entries = po_entries(CATALOGS / f"{domain}.po")
    assert entries
    untranslated = [msgid for msgid, (msgstr, fuzzy) in entries.items() if not msgstr or fuzzy]
    assert not untranslated
    with (CATALOGS / f"{domain}.mo").open("rb") as compiled:
        catalog = gettext.GNUTranslations(compiled)
    stale = [msgid for msgid, (msgstr, _) in entries.items() if catalog.gettext(msgid) != msgstr]
    assert not stale, f"run compilemessages: {stale[:5]}"


def test_every_script_string_is_in_the_catalog() -> None:
    entries = po_entries(CATALOGS / "djangojs.po")
    used: set[str] = set()
    for script in (FRONTEND / "static" / "sonor").glob("*.js"):
        used |= {ast.literal_eval(m) for m in re.findall(r'\b_\(("(?:[^"\\]|\\.)*")\)',
                                                          script.read_text(encoding="utf-8"))}
    assert used
    assert not used - set(entries), "run makemessages -d djangojs"


def test_every_template_string_is_in_the_catalog() -> None:
    entries = po_entries(CATALOGS / "django.po")
    used: set[str] = set()
    for template in (FRONTEND / "templates").glob("*.html"):
        used |= set(re.findall(r'{% translate "([^"]*)" %}',
                               template.read_text(encoding="utf-8")))
    assert used
    assert not used - set(entries), "run makemessages -d django"
