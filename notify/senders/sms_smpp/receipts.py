"""Delivery receipts (deliver_sm with esm_class "delivery receipt")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from notify.senders.base import SendStatus

ESM_CLASS_TYPE_MASK = 0x3C
ESM_CLASS_DELIVERY_RECEIPT = 0x04

# The receipt text of SMPP 3.4 Appendix B: "id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:
# YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text: . . . ."
_RECEIPT_ID = re.compile(r"\bid:\s*([^\s]+)", re.IGNORECASE)
_RECEIPT_STAT = re.compile(r"\bstat:\s*([A-Za-z_]+)", re.IGNORECASE)
_RECEIPT_ERR = re.compile(r"\berr:\s*([0-9A-Za-z]+)", re.IGNORECASE)
# message_state TLV values (5.2.28) by their receipt stat names.
MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                  6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"}
# Not final: the SMSC will send another receipt.
INTERMEDIATE_STATES = {"ENROUTE", "ACCEPTD"}


@dataclass(frozen=True)
class Receipt:
    message_id: str
    stat: str  # DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED, UNKNOWN (ENROUTE, ACCEPTD)
    err: str = ""

    @property
    def final(self) -> bool:
        return self.stat not in INTERMEDIATE_STATES

    @property
    def status(self) -> SendStatus:
        return SendStatus.SENT if self.stat == "DELIVRD" else SendStatus.FAILED

    @property
    def detail(self) -> str:
        if self.err and self.err.strip("0") and self.stat != "DELIVRD":
            return f"{self.stat} err:{self.err}"
        return self.stat


def receipt_parse(text: str, *, receipted_message_id: str = "",
                  message_state: int | None = None) -> Receipt | None:
    """A delivery receipt from its text and, when the SMSC sends them, its TLVs (which win)."""
    id_match, stat_match = _RECEIPT_ID.search(text), _RECEIPT_STAT.search(text)
    err_match = _RECEIPT_ERR.search(text)
    message_id = receipted_message_id or (id_match.group(1) if id_match else "")
    stat = MESSAGE_STATES.get(message_state or 0, "") or (
        stat_match.group(1).upper() if stat_match else "")
    if not message_id or not stat:
        return None
    return Receipt(message_id=message_id, stat=stat, err=err_match.group(1) if err_match else "")


def pdu_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00")
    return str(value)
