"""The SMPP connection: one daemon thread owns the socket (smpplib is blocking), binds,
submits queued messages within the window, answers the SMSC, keeps the link alive and
reconnects after a drop."""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import smpplib.client  # type: ignore[import-untyped]
import smpplib.exceptions  # type: ignore[import-untyped]
import smpplib.smpp  # type: ignore[import-untyped]

from notify.senders.base import ReceiptSink, SendResult, SendStatus, redact
from notify.senders.sms_smpp.config import SmppConfig
from notify.senders.sms_smpp.receipts import (
    ESM_CLASS_DELIVERY_RECEIPT,
    ESM_CLASS_TYPE_MASK,
    Receipt,
    pdu_text,
    receipt_parse,
)
from notify.senders.sms_smpp.submit import (
    ESME_RINVBNDSTS,
    ESME_RINVDSTADR,
    ESME_ROK,
    ESME_RX_T_APPN,
    RETRY_STATUSES,
    status_name,
)

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class SmsJob:
    parts: list[dict[str, Any]]  # submit_sm fields of each part
    future: concurrent.futures.Future[SendResult]
    message_ids: list[str] = field(default_factory=list)
    sent_at: float = 0.0  # when the part in flight went out


class _LinkDown(Exception):
    """The connection is unusable: drop it, fail what is in flight, reconnect."""


class SmppLink:
    """The thread that owns the SMPP connection. Only _run and what it calls touch it."""

    def __init__(self, config: SmppConfig, receipts: ReceiptSink | None) -> None:
        self.config = config
        self.receipts = receipts
        self._queue: collections.deque[SmsJob] = collections.deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._client: Any = None
        self._bound_at = 0.0
        self._in_flight: dict[int, SmsJob] = {}  # submit_sm sequence number -> job
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

    def submit(self, job: SmsJob) -> bool:
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

    def _submit_part(self, job: SmsJob) -> None:
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

    def _answered(self, job: SmsJob, pdu: Any) -> None:
        status = int(pdu.status)
        total = len(job.parts)
        if status == ESME_ROK:
            job.message_ids.append(pdu_text(pdu.message_id))
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
        if status in RETRY_STATUSES:
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
                pdu_text(pdu.short_message) or pdu_text(getattr(pdu, "message_payload", None)),
                receipted_message_id=pdu_text(getattr(pdu, "receipted_message_id", None)),
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
    def _complete(job: SmsJob, result: SendResult) -> None:
        future = job.future
        if future.done():
            return
        # A queued job is still pending; a cancelled one (the caller gave up) gets nothing.
        if future.running() or future.set_running_or_notify_cancel():
            future.set_result(result)
