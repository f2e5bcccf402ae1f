"""docs/protocol.md is generated from chatserver/protocol.py and must agree with it."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from chatserver.core import protocol
from chatserver.core.protocol_doc import (
    DOC_PATH,
    documented_frames,
    frame_type,
    render_protocol_doc,
    union_members,
)

DOC = Path(settings.BASE_DIR) / DOC_PATH


def test_docs_protocol_md_matches_the_models() -> None:
    assert DOC.exists(), f"{DOC_PATH} is missing: run `python manage.py protocol_docs`"
    assert DOC.read_text("utf-8") == render_protocol_doc(), (
        f"{DOC_PATH} is out of date: run `python manage.py protocol_docs` and commit it")


def test_rendering_is_deterministic() -> None:
    assert render_protocol_doc() == render_protocol_doc()


@pytest.mark.parametrize("union", [protocol.ClientFrame, protocol.ServerFrame,
                                   protocol.LoginServerFrame])
def test_every_frame_of_every_union_is_documented(union: object) -> None:
    documented = {model for _, model in documented_frames()}
    members = union_members(union)
    assert members
    assert set(members) <= documented
    text = render_protocol_doc()
    for model in members:
        assert f"### `{frame_type(model)}`" in text
        assert f"Model `{model.__name__}`." in text


def test_intro_states_the_close_codes_and_limits() -> None:
    text = render_protocol_doc()
    assert f"| {protocol.CLOSE_UNAUTHENTICATED} | `CLOSE_UNAUTHENTICATED` |" in text
    assert f"| {protocol.CLOSE_ORIGIN_FORBIDDEN} | `CLOSE_ORIGIN_FORBIDDEN` |" in text
    assert "| 4503 | `CLOSE_TRY_AGAIN_LATER` |" in text
    assert "live events\n  may reach it before `welcome`" in text
    assert "64 KiB" in text
    assert "resync" in text
    assert "Authorization: Bearer" in text


def test_check_flag_fails_on_a_stale_file_and_passes_on_a_fresh_one(tmp_path: Path) -> None:
    output = tmp_path / "protocol.md"
    output.write_text("# stale\n", "utf-8")
    with pytest.raises(CommandError, match="out of date"):
        call_command("protocol_docs", "--check", "--output", str(output))
    assert output.read_text("utf-8") == "# stale\n"  # --check writes nothing

    call_command("protocol_docs", "--output", str(output))
    assert output.read_text("utf-8") == render_protocol_doc()
    call_command("protocol_docs", "--check", "--output", str(output))


def test_check_flag_on_the_committed_file() -> None:
    call_command("protocol_docs", "--check")
