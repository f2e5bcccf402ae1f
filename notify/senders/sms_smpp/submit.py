"""submit_sm: a message as the PDUs of its parts, and the status codes the SMSC answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from notify.senders.base import OutboundMessage, SendResult, SendStatus
from notify.senders.sms_smpp.config import NPI_ISDN, TON_INTERNATIONAL, SmppConfig
from notify.sms_parts import MAX_PARTS, gsm7_encode, sms_encode_parts, ucs2_encode

# Command status codes (SMPP 3.4, 5.1.3) that we act on.
ESME_ROK = 0x00
ESME_RINVBNDSTS = 0x04
ESME_RSYSERR = 0x08
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64  # our answer to a receipt we could not record: the SMSC sends it again

STATUS_NAMES = {
    0x01: "ESME_RINVMSGLEN", 0x02: "ESME_RINVCMDLEN", 0x03: "ESME_RINVCMDID",
    ESME_RINVBNDSTS: "ESME_RINVBNDSTS", 0x05: "ESME_RALYBND", ESME_RSYSERR: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR", ESME_RINVDSTADR: "ESME_RINVDSTADR", 0x0C: "ESME_RINVMSGID",
    ESME_RBINDFAIL: "ESME_RBINDFAIL", ESME_RINVPASWD: "ESME_RINVPASWD",
    ESME_RINVSYSID: "ESME_RINVSYSID", ESME_RMSGQFUL: "ESME_RMSGQFUL",
    0x45: "ESME_RSUBMITFAIL", 0x48: "ESME_RINVSRCTON", 0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON", 0x51: "ESME_RINVDSTNPI", ESME_RTHROTTLED: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED", 0x62: "ESME_RINVEXPIRY", ESME_RX_T_APPN: "ESME_RX_T_APPN",
}
# Transient on the SMSC's side: try again later. RSYSERR and RINVBNDSTS are not in the
# usual list, but neither says anything about the message itself.
RETRY_STATUSES = {ESME_RTHROTTLED, ESME_RMSGQFUL, ESME_RSYSERR, ESME_RINVBNDSTS}

DATA_CODING_GSM7 = 0x00
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40

# Operator terms: an undeliverable SMS is kept up to 96 hours, then dropped.
MAX_VALIDITY_SECONDS = 96 * 3600

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def status_name(status: int) -> str:
    return f"{STATUS_NAMES.get(status, 'status')} ({status:#04x})"


def relative_validity(seconds: int) -> str:
    """SMPP 3.4 relative time format (7.1.1): YYMMDDhhmmss, tenths, 00, 'R'."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


def submit_sm_fields(message: OutboundMessage, *, config: SmppConfig, references: Iterator[int]
                     ) -> list[dict[str, Any]] | SendResult:
    """The submit_sm fields of each part, or the result when there is nothing to send."""
    if not _E164.fullmatch(message.address):
        return SendResult(status=SendStatus.INVALID_ADDRESS,
                          detail="not an E.164 number", parts=0)
    sms = sms_encode_parts(message.body)
    if sms.count == 0:
        return SendResult(status=SendStatus.FAILED, detail="empty SMS body", parts=0)
    if sms.count > MAX_PARTS:
        return SendResult(status=SendStatus.FAILED,
                          detail=f"SMS too long: {sms.count} parts", parts=0)
    ttl = MAX_VALIDITY_SECONDS if message.ttl_seconds is None else message.ttl_seconds
    if ttl <= 0:
        return SendResult(status=SendStatus.FAILED, detail="validity expired", parts=0)
    if sms.encoding == "gsm7":
        data_coding, encode = DATA_CODING_GSM7, gsm7_encode
    else:
        data_coding, encode = DATA_CODING_UCS2, ucs2_encode
    reference = next(references) % 256
    fields: list[dict[str, Any]] = []
    for number, text in enumerate(sms.parts, start=1):
        short_message = encode(text)
        esm_class = 0
        if sms.concatenated:
            # 3GPP TS 23.040 9.2.3.24.1: concatenated SM, 8-bit reference number.
            short_message = bytes((5, 0x00, 3, reference, sms.count, number)) + short_message
            esm_class = ESM_CLASS_UDHI
        fields.append({
            "service_type": "",
            "source_addr_ton": config.source_ton,
            "source_addr_npi": config.source_npi,
            "source_addr": config.source,
            "dest_addr_ton": TON_INTERNATIONAL,
            "dest_addr_npi": NPI_ISDN,
            "destination_addr": message.address[1:],
            "esm_class": esm_class,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": "",
            "validity_period": relative_validity(min(ttl, MAX_VALIDITY_SECONDS)),
            "registered_delivery": 1,  # SMSC delivery receipt on success or failure
            "replace_if_present_flag": 0,
            "data_coding": data_coding,
            "sm_default_msg_id": 0,
            "short_message": short_message,
        })
    return fields
