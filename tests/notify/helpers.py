"""Helpers of the agency API tests: a valid notification request and sending it."""

from typing import Any

from tests.conftest import JsonClient


def notification_body(register_number: str, **fields: Any) -> dict[str, Any]:
    """A valid notification request, with `fields` replacing or adding to it."""
    body: dict[str, Any] = {
        "register_number": register_number,
        "category": "service_request",
        "title": "Таны лавлагаа бэлэн боллоо",
        "body": "Оршин суугаа хаягийн лавлагааг e-mongolia.mn-ээс татаж авна уу.",
        "link": "https://e-mongolia.mn/requests/42",
        "reference": "REQ-42",
    }
    body.update(fields)
    return body


def send(client: JsonClient, register_number: str, key: str | None = None,
         **fields: Any) -> Any:
    headers = {"Idempotency-Key": key} if key else None
    return client.post("/api/agency/v1/notifications",
                       notification_body(register_number, **fields), headers=headers)
