"""SMS over SMPP 3.4 to an operator's SMSC (smpplib), one bound transceiver per sender.

config.py reads the URL, submit.py turns a message into submit_sm PDUs and their answers
into results, receipts.py reads delivery receipts, connection.py owns the socket; this
module is the sender the delivery pipeline calls.


    send() --job--> queue --> [SMPP thread, owns the socket] --submit_sm (part 1..n)--> SMSC
      ^                            |  <--submit_sm_resp, matched by sequence number
      '---- concurrent Future -----'  <--deliver_sm (delivery receipt) --> ReceiptSink
                                      <->enquire_link both ways; reconnect when the link dies

smpplib is blocking, so one daemon thread owns the connection and nothing else touches it:
the event loop only enqueues a job and awaits its future. Up to `window` messages are in
flight at once; the parts of one message go in order, each after the previous one was
accepted, so a refused part stops the rest. The thread binds on the first send (or start())
and then stays bound, reconnecting after a drop, so that receipts keep arriving; after a
failed connect or bind it backs off (1 s doubling to 60 s) and answers RETRY meanwhile.

Encoding: GSM-7 text as data_coding 0 (default alphabet, one septet per octet), anything
else as data_coding 8 (UTF-16-BE). Long texts go as our splitter's parts with a 6-octet
user data header (IEI 0x00, 8-bit reference) and esm_class 0x40 (UDHI).

Result: SENT with the first part's SMSC message id (the one its receipt refers to) and the
part count; throttling and a full queue are RETRY, a bad destination INVALID_ADDRESS, no
connection or a refused bind RETRY, any other refusal FAILED. On anything but SENT, `parts`
is the number of parts the SMSC had already accepted (billed; they go again on retry).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import random
from typing import Any

from notify.senders.base import OutboundMessage, ReceiptSink, SendResult, SendStatus
from notify.senders.sms_smpp.config import SmppConfig, smpp_config_from_url
from notify.senders.sms_smpp.connection import SmppLink, SmsJob
from notify.senders.sms_smpp.receipts import receipt_parse
from notify.senders.sms_smpp.submit import relative_validity, submit_sm_fields

__all__ = ["SmppConfig", "SmppSender", "receipt_parse", "relative_validity",
           "smpp_config_from_url"]


class SmppSender:
    """Sends SMS through one SMPP connection; `receipts` hears the delivery receipts.

    The receipt sink runs on the SMPP thread (not the event loop): it must be thread-safe
    and quick. If it raises, the receipt is refused (ESME_RX_T_APPN) and the SMSC resends it.
    """

    kind = "sms"

    def __init__(self, config: SmppConfig, *, receipts: ReceiptSink | None = None) -> None:
        self.config = config
        self._link = SmppLink(config, receipts)
        self._references = itertools.count(random.randrange(256))

    @classmethod
    def from_url(cls, url: str, *, receipts: ReceiptSink | None = None) -> SmppSender:
        return cls(smpp_config_from_url(url), receipts=receipts)

    @property
    def receipts(self) -> ReceiptSink | None:
        return self._link.receipts

    @receipts.setter
    def receipts(self, sink: ReceiptSink | None) -> None:
        self._link.receipts = sink

    def start(self) -> None:
        """Bind now rather than at the first send (receipts flow only while bound)."""
        self._link.start()

    def close(self) -> None:
        """Unbind and stop the thread; messages still queued get RETRY."""
        self._link.close()

    async def send(self, message: OutboundMessage) -> SendResult:
        prepared = self.submit_sm_fields(message)
        if isinstance(prepared, SendResult):
            return prepared
        future: concurrent.futures.Future[SendResult] = concurrent.futures.Future()
        if not self._link.submit(SmsJob(parts=prepared, future=future)):
            return SendResult(status=SendStatus.RETRY, detail="SMPP sender closed", parts=0)
        return await asyncio.wrap_future(future)

    def submit_sm_fields(self, message: OutboundMessage) -> list[dict[str, Any]] | SendResult:
        """The submit_sm fields of each part, or the result when there is nothing to send."""
        return submit_sm_fields(message, config=self.config, references=self._references)
