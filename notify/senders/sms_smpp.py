"""SMS over SMPP 3.4 to an operator's SMSC (smpplib), one bound transceiver per sender.

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
import collections
import concurrent.futures
import itertools
import logging
import random
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import smpplib.client  # type: ignore[import-untyped]
import smpplib.exceptions  # type: ignore[import-untyped]
import smpplib.smpp  # type: ignore[import-untyped]

from notify.senders.base import OutboundMessage, ReceiptSink, SendResult, SendStatus, redact
from notify.sms_parts import MAX_PARTS, gsm7_encode, sms_encode_parts, ucs2_encode

logger = logging.getLogger(__name__)

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
_RETRY_STATUSES = {ESME_RTHROTTLED, ESME_RMSGQFUL, ESME_RSYSERR, ESME_RINVBNDSTS}

DATA_CODING_GSM7 = 0x00
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40
ESM_CLASS_TYPE_MASK = 0x3C
ESM_CLASS_DELIVERY_RECEIPT = 0x04
TON_UNKNOWN, TON_INTERNATIONAL, TON_ALPHANUMERIC = 0x00, 0x01, 0x05
NPI_UNKNOWN, NPI_ISDN = 0x00, 0x01

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


# -- delivery receipts --------------------------------------------------------------------

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


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00")
    return str(value)


# -- configuration ------------------------------------------------------------------------

@dataclass(frozen=True)
class SmppConfig:
    host: str
    port: int
    system_id: str
    password: str
    source: str = ""  # sender id: short code, number or alphanumeric name
    source_ton: int = TON_UNKNOWN
    source_npi: int = NPI_ISDN
    system_type: str = ""
    bind: str = "transceiver"  # "transmitter" gets no receipts
    window: int = 10  # messages in flight at once
    enquire_link_seconds: float = 30.0  # idle time before we check the link
    response_timeout: float = 30.0  # for any answer from the SMSC
    connect_timeout: float = 10.0
    max_backoff: float = 60.0


_INT_OPTIONS = {"source_ton", "source_npi", "window"}
_FLOAT_OPTIONS = {"enquire_link": "enquire_link_seconds", "timeout": "response_timeout",
                  "connect_timeout": "connect_timeout", "max_backoff": "max_backoff"}


def smpp_config_from_url(url: str) -> SmppConfig:
    """smpp://system_id:password@host:port?source=136000[&option=value...]

    Options: source, source_ton, source_npi (default from source: alphanumeric 5/0, a
    +number 1/1, digits 0/1), system_type, bind (transceiver|transmitter), window,
    enquire_link, timeout, connect_timeout, max_backoff (seconds).
    """
    parts = urlsplit(url)
    if parts.scheme != "smpp":
        raise ValueError("SMPP URL must start with smpp://")
    if not parts.hostname or parts.username is None or parts.password is None:
        raise ValueError("SMPP URL needs system_id:password@host")
    system_id, password = unquote(parts.username), unquote(parts.password)
    # SMPP 3.4 fields are C strings of at most 16 and 9 octets; smpplib would cut them.
    if len(system_id) > 15 or len(password) > 8:
        raise ValueError("SMPP system_id is at most 15 characters and password at most 8")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("source", "system_type", "bind"):
            options[key] = value
        elif key in _INT_OPTIONS:
            options[key] = int(value)
        elif key in _FLOAT_OPTIONS:
            options[_FLOAT_OPTIONS[key]] = float(value)
        else:
            raise ValueError(f"unknown SMPP URL option {key!r}")
    if options.get("bind", "transceiver") not in ("transceiver", "transmitter"):
        raise ValueError("SMPP bind must be transceiver or transmitter")
    source = options.pop("source", "")
    if source.startswith("+") and source[1:].isdigit():
        ton, npi, source = TON_INTERNATIONAL, NPI_ISDN, source[1:]
    elif source.isdigit() or not source:
        ton, npi = TON_UNKNOWN, NPI_ISDN
    else:
        if len(source) > 11 or not source.isascii() or not source.isprintable():
            raise ValueError("an alphanumeric SMS sender id is at most 11 ASCII characters")
        ton, npi = TON_ALPHANUMERIC, NPI_UNKNOWN
    options.setdefault("source_ton", ton)
    options.setdefault("source_npi", npi)
    return SmppConfig(host=parts.hostname, port=parts.port or 2775, system_id=system_id,
                      password=password, source=source, **options)


# -- the connection thread ----------------------------------------------------------------

@dataclass(eq=False)
class _Job:
    parts: list[dict[str, Any]]  # submit_sm fields of each part
    future: concurrent.futures.Future[SendResult]
    message_ids: list[str] = field(default_factory=list)
    sent_at: float = 0.0  # when the part in flight went out


class _LinkDown(Exception):
    """The connection is unusable: drop it, fail what is in flight, reconnect."""


class _SmppLink:
    """The thread that owns the SMPP connection. Only _run and what it calls touch it."""

    def __init__(self, config: SmppConfig, receipts: ReceiptSink | None) -> None:
        self.config = config
        self.receipts = receipts
        self._queue: collections.deque[_Job] = collections.deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._client: Any = None
        self._bound_at = 0.0
        self._in_flight: dict[int, _Job] = {}  # submit_sm sequence number -> job
        self._enquire: tuple[int, float] | None = None  # (sequence, sent at)
        self._last_io = 0.0
        self._backoff = 0.0
        self._backoff_until = 0.0
        self._last_error = ""
        # A receipt names the part it is about; later parts map to the first (bounded).
        self._later_parts: collections.OrderedDict[str, str] = collections.OrderedDict()

    # Called from any thread.

    def start(self) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("SMPP sender is closed")
            self._start_thread()

    def submit(self, job: _Job) -> bool:
        """Queue a job; False when the link is closed (then nothing will answer it)."""
        with self._lock:  # held with the check, so close() cannot slip in between
            if self._stopping:
                return False
            self._start_thread()
            self._queue.append(job)
        self._wake()
        return True

    def _start_thread(self) -> None:
        """Caller holds self._lock."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, daemon=True,
                name=f"smpp-{self.config.host}:{self.config.port}")
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake()
        if thread is not None:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\x00")
        except (BlockingIOError, OSError):
            pass  # already awake (buffer full) or closed

    # The thread.

    def _run(self) -> None:
        try:
            while not self._stopping:
                if self._client is None:
                    self._connect_or_wait()
                    continue
                try:
                    self._step()
                except (_LinkDown, smpplib.exceptions.ConnectionError,
                        smpplib.exceptions.PDUError, smpplib.exceptions.UnknownCommandError,
                        OSError) as exc:
                    self._drop(str(exc) or type(exc).__name__)
                except Exception as exc:
                    # A bug here must not strand the callers awaiting their futures.
                    logger.exception("SMPP link failed unexpectedly")
                    self._drop(f"unexpected {type(exc).__name__}")
        finally:
            self._shut_down()

    def _step(self) -> None:
        self._start_jobs()
        now = time.monotonic()
        wait = max(0.0, self._next_deadline() - now)
        # smpplib has no public accessor for its socket; we only wait on it here.
        readable, _, _ = select.select([self._client._socket, self._wake_r], [], [], wait)
        if self._wake_r in readable:
            self._drain_wake()
        if self._client._socket in readable:
            self._read_one()
        self._check_timers()

    def _connect_or_wait(self) -> None:
        now = time.monotonic()
        if now < self._backoff_until:
            self._fail_queued(retry_after=self._backoff_until - now)
            select.select([self._wake_r], [], [], self._backoff_until - now)
            self._drain_wake()
            return
        config = self.config
        client = smpplib.client.Client(
            config.host, config.port, timeout=config.connect_timeout,
            logger_name="notify.senders.smpplib", allow_unknown_opt_params=True)
        try:
            client.connect()
            bind = getattr(client, f"bind_{config.bind}")
            bind(system_id=config.system_id, password=config.password,
                 system_type=config.system_type)
        except smpplib.exceptions.PDUError as exc:
            status = exc.args[1] if len(exc.args) > 1 else 0
            error = (f"SMPP bind to {config.host}:{config.port} as {config.system_id!r} "
                     f"refused: {status_name(status)}")
        except (smpplib.exceptions.ConnectionError, OSError) as exc:
            error = (f"SMPP connection to {config.host}:{config.port} failed: "
                     f"{str(exc) or type(exc).__name__}")
        else:
            self._client = client
            self._bound_at = self._last_io = time.monotonic()
            logger.info("SMPP bound to %s:%s as %s", config.host, config.port, config.bind)
            return
        self._close_client(client)
        self._back_off(error)
        self._fail_queued(retry_after=self._backoff)

    def _back_off(self, error: str) -> None:
        self._backoff = min(max(1.0, self._backoff * 2), self.config.max_backoff)
        self._backoff_until = time.monotonic() + self._backoff
        self._last_error = error
        logger.warning("%s; next attempt in %.0f s", error, self._backoff)

    def _fail_queued(self, *, retry_after: float) -> None:
        with self._lock:
            jobs = list(self._queue)
            self._queue.clear()
        for job in jobs:
            self._complete(job, SendResult(status=SendStatus.RETRY, detail=self._last_error,
                                           retry_after=retry_after, parts=0))

    def _drop(self, reason: str) -> None:
        """The link is gone: what is in flight may or may not have reached the SMSC."""
        logger.warning("SMPP link to %s:%s lost: %s", self.config.host, self.config.port,
                       reason)
        in_flight = list(dict.fromkeys(self._in_flight.values()))
        self._in_flight.clear()
        self._enquire = None
        for job in in_flight:
            self._complete(job, SendResult(
                status=SendStatus.RETRY, detail=f"SMPP link lost before the answer: {reason}",
                parts=len(job.message_ids)))
        self._close_client(self._client)
        self._client = None
        # A link that dies right after binding must not turn into a reconnect storm.
        if time.monotonic() - self._bound_at < 10.0:
            self._back_off(f"SMPP link lost: {reason}")
        else:
            self._backoff = 0.0

    @staticmethod
    def _close_client(client: Any) -> None:
        if client is not None and client._socket is not None:
            client.disconnect()

    def _start_jobs(self) -> None:
        while len(self._in_flight) < self.config.window:
            with self._lock:
                if not self._queue:
                    return
                job = self._queue.popleft()
            if job.future.set_running_or_notify_cancel():  # False: the caller gave up
                self._submit_part(job)

    def _submit_part(self, job: _Job) -> None:
        try:
            pdu = smpplib.smpp.make_pdu("submit_sm", client=self._client,
                                        **job.parts[len(job.message_ids)])
            pdu.generate()  # an encoding problem shows here, before anything is on the wire
        except Exception as exc:
            logger.exception("submit_sm could not be encoded")
            self._complete(job, SendResult(status=SendStatus.FAILED, parts=len(job.message_ids),
                                           detail=f"submit_sm not encodable: {exc}"))
            return
        self._in_flight[pdu.sequence] = job
        job.sent_at = self._last_io = time.monotonic()
        self._client.send_pdu(pdu)

    def _read_one(self) -> None:
        pdu = self._client.read_pdu()
        self._last_io = time.monotonic()
        command = pdu.command
        if command == "submit_sm_resp" or (command == "generic_nack"
                                            and pdu.sequence in self._in_flight):
            job = self._in_flight.pop(pdu.sequence, None)
            if job is not None:
                self._answered(job, pdu)
        elif command == "deliver_sm":
            self._deliver_sm(pdu)
        elif command == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=self._client)
            resp.sequence = pdu.sequence
            self._client.send_pdu(resp)
        elif command in ("enquire_link_resp", "generic_nack"):
            if self._enquire is not None and self._enquire[0] == pdu.sequence:
                self._enquire = None
        elif command == "unbind":
            resp = smpplib.smpp.make_pdu("unbind_resp", client=self._client)
            resp.sequence = pdu.sequence
            self._client.send_pdu(resp)
            raise _LinkDown("the SMSC unbound")
        else:
            logger.info("SMPP %s ignored", command)

    def _answered(self, job: _Job, pdu: Any) -> None:
        status = int(pdu.status)
        total = len(job.parts)
        if status == ESME_ROK:
            job.message_ids.append(_text(pdu.message_id))
            if len(job.message_ids) < total:
                self._submit_part(job)
                return
            first = job.message_ids[0]
            for later in job.message_ids[1:]:
                self._later_parts[later] = first
            while len(self._later_parts) > 100_000:
                self._later_parts.popitem(last=False)
            self._complete(job, SendResult(status=SendStatus.SENT, provider_id=first,
                                           parts=total))
            return
        where = f"part {len(job.message_ids) + 1} of {total}: " if total > 1 else ""
        what = "the PDU (generic_nack)" if pdu.command == "generic_nack" else "the message"
        detail = f"SMSC refused {what}: {where}{status_name(status)}"
        if status in _RETRY_STATUSES:
            result_status = SendStatus.RETRY
        elif status == ESME_RINVDSTADR:
            result_status = SendStatus.INVALID_ADDRESS
        else:
            result_status = SendStatus.FAILED
        self._complete(job, SendResult(status=result_status, detail=detail,
                                       parts=len(job.message_ids)))
        if status == ESME_RINVBNDSTS:
            raise _LinkDown("the SMSC says we are not bound")

    def _deliver_sm(self, pdu: Any) -> None:
        answer = ESME_ROK
        if (int(pdu.esm_class or 0) & ESM_CLASS_TYPE_MASK) == ESM_CLASS_DELIVERY_RECEIPT:
            receipt = receipt_parse(
                _text(pdu.short_message) or _text(getattr(pdu, "message_payload", None)),
                receipted_message_id=_text(getattr(pdu, "receipted_message_id", None)),
                message_state=getattr(pdu, "message_state", None))
            if receipt is None:
                logger.warning("SMPP delivery receipt not understood")
            else:
                try:
                    self._report(receipt)
                except Exception:
                    logger.exception("receipt sink failed; the SMSC will send it again")
                    answer = ESME_RX_T_APPN
        else:
            logger.info("SMPP mobile-originated message ignored")
        resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=self._client, status=answer)
        resp.sequence = pdu.sequence
        self._client.send_pdu(resp)

    def _report(self, receipt: Receipt) -> None:
        """First parts report their fate; a later part only when it failed (then the
        message as a whole did not arrive), under the first part's id."""
        if self.receipts is None or not receipt.final:
            return
        first = self._later_parts.get(receipt.message_id)
        if first is not None and receipt.status == SendStatus.SENT:
            return
        self.receipts(first or receipt.message_id, receipt.status, redact(receipt.detail))

    def _next_deadline(self) -> float:
        config = self.config
        if self._enquire is None:
            deadlines = [self._last_io + config.enquire_link_seconds]
        else:
            deadlines = [self._enquire[1] + config.response_timeout]
        deadlines.extend(job.sent_at + config.response_timeout
                         for job in self._in_flight.values())
        return min(deadlines)

    def _check_timers(self) -> None:
        now = time.monotonic()
        timeout = self.config.response_timeout
        if any(now - job.sent_at >= timeout for job in self._in_flight.values()):
            raise _LinkDown(f"no submit_sm_resp within {timeout:g} s")
        if self._enquire is not None and now - self._enquire[1] >= timeout:
            raise _LinkDown(f"no enquire_link_resp within {timeout:g} s")
        if self._enquire is None and now - self._last_io >= self.config.enquire_link_seconds:
            pdu = smpplib.smpp.make_pdu("enquire_link", client=self._client)
            self._enquire = (pdu.sequence, now)
            self._last_io = now
            self._client.send_pdu(pdu)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _shut_down(self) -> None:
        client, self._client = self._client, None
        for job in list(dict.fromkeys(self._in_flight.values())):
            self._complete(job, SendResult(status=SendStatus.RETRY, detail="SMPP sender closed",
                                           parts=len(job.message_ids)))
        self._in_flight.clear()
        self._last_error = "SMPP sender closed"
        self._fail_queued(retry_after=0.0)
        if client is not None:
            try:
                client.unbind()
            except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError,
                    OSError):
                pass
            self._close_client(client)

    @staticmethod
    def _complete(job: _Job, result: SendResult) -> None:
        future = job.future
        if future.done():
            return
        # A queued job is still pending; a cancelled one (the caller gave up) gets nothing.
        if future.running() or future.set_running_or_notify_cancel():
            future.set_result(result)


# -- the sender -----------------------------------------------------------------------------

class SmppSender:
    """Sends SMS through one SMPP connection; `receipts` hears the delivery receipts.

    The receipt sink runs on the SMPP thread (not the event loop): it must be thread-safe
    and quick. If it raises, the receipt is refused (ESME_RX_T_APPN) and the SMSC resends it.
    """

    kind = "sms"

    def __init__(self, config: SmppConfig, *, receipts: ReceiptSink | None = None) -> None:
        self.config = config
        self._link = _SmppLink(config, receipts)
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
        if not self._link.submit(_Job(parts=prepared, future=future)):
            return SendResult(status=SendStatus.RETRY, detail="SMPP sender closed", parts=0)
        return await asyncio.wrap_future(future)

    def submit_sm_fields(self, message: OutboundMessage) -> list[dict[str, Any]] | SendResult:
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
        reference = next(self._references) % 256
        config = self.config
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
