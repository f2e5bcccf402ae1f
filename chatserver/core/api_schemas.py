"""Schemas every API router shares (a leaf: it imports nothing of ours)."""

from typing import Any

from ninja import Schema


class ErrorOut(Schema):
    """Every error of the citizen and agency APIs: `code` is stable, `message` is for people,
    `extra` holds details (field, retry_after, ...)."""

    code: str
    message: str
    extra: dict[str, Any]
