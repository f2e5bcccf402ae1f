"""A local SMSC speaking SMPP 3.4 over TCP on 127.0.0.1, for the SMPP sender's tests.

    SmppSender --bind_transceiver / submit_sm / enquire_link / unbind--> FakeSmsc
               <--*_resp, deliver_sm (receipts, on request), enquire_link----'

The PDUs are encoded and decoded here with struct from the SMPP 3.4 specification, and the
GSM 03.38 table is written out here again, not taken from smpplib or from notify.sms_parts:
this is the independent peer the sender is checked against. It checks credentials, refuses
a part that would not fit in 140 octets (ESME_RINVMSGLEN), records every part, reassembles
concatenated messages (8- and 16-bit reference headers) and can be told to answer a
destination with an error status, or not at all.
"""

import itertools
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
RESP = 0x80000000

ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_NETWORK_ERROR_CODE = 0x0423

MESSAGE_STATES = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6,
                  "UNKNOWN": 7, "REJECTD": 8, "ENROUTE": 1}

# GSM 03.38 default alphabet by code, and the extension table reached by 0x1B.
_GSM_DEFAULT = [
    "@", "£", "$", "¥", "è", "é", "ù", "ì", "ò", "Ç", "\n", "Ø", "ø", "\r", "Å", "å",
    "Δ", "_", "Φ", "Γ", "Λ", "Ω", "Π", "Ψ", "Σ", "Θ", "Ξ", None, "Æ", "æ", "ß", "É",
    " ", "!", '"', "#", "¤", "%", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/",
    *"0123456789", ":", ";", "<", "=", ">", "?",
    "¡", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "Ä", "Ö", "Ñ", "Ü", "§",
    "¿", *"abcdefghijklmnopqrstuvwxyz", "ä", "ö", "ñ", "ü", "à",
]
assert len(_GSM_DEFAULT) == 128
_GSM_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",
                  0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}


def gsm_decode(data: bytes) -> str:
    """Unpacked GSM 03.38 (one septet per octet) to text; ValueError on a bad code."""
    out: list[str] = []
    codes = iter(data)
    for code in codes:
        if code > 0x7F:
            raise ValueError(f"octet {code:#x} is not a septet")
        if code == 0x1B:
            following = next(codes, None)
            if following is None or following not in _GSM_EXTENSION:
                raise ValueError(f"escape followed by {following!r}")
            out.append(_GSM_EXTENSION[following])
            continue
        char = _GSM_DEFAULT[code]
        assert char is not None
        out.append(char)
    return "".join(out)


def gsm_encode(text: str) -> bytes:
    """The fake's own encoder, for receipt texts and mobile-originated messages."""
    reverse = {char: code for code, char in enumerate(_GSM_DEFAULT) if char is not None}
    extension = {char: code for code, char in _GSM_EXTENSION.items()}
    out = bytearray()
    for char in text:
        if char in reverse:
            out.append(reverse[char])
        else:
            out += bytes((0x1B, extension[char]))
    return bytes(out)


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def u8(self) -> int:
        value = self.body[self.pos]
        self.pos += 1
        return value

    def cstring(self) -> str:
        end = self.body.index(b"\x00", self.pos)
        value = self.body[self.pos:end].decode("latin-1")
        self.pos = end + 1
        return value

    def octets(self, length: int) -> bytes:
        value = self.body[self.pos:self.pos + length]
        if len(value) != length:
            raise ValueError("PDU body shorter than its lengths say")
        self.pos += length
        return value

    def tlvs(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        while self.pos < len(self.body):
            tag, length = struct.unpack_from(">HH", self.body, self.pos)
            self.pos += 4
            found[tag] = self.octets(length)
        return found


def _cstring(value: str) -> bytes:
    return value.encode("latin-1") + b"\x00"


def _pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


@dataclass(frozen=True)
class Concat:
    reference: int
    total: int
    seq: int
    iei: int  # 0x00 (8-bit reference) or 0x08 (16-bit reference)


@dataclass(frozen=True)
class SubmittedPart:
    system_id: str
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    registered_delivery: int
    validity_period: str
    data_coding: int
    udh: bytes  # the user data header with its length octet, b"" when none
    concat: Concat | None
    payload: bytes  # short_message without the header
    text: str
    message_id: str  # "" when the part was refused
    status: int


@dataclass
class ReceivedMessage:
    """A whole message as the handset would show it, from one or more accepted parts."""

    system_id: str
    source_addr: str
    destination_addr: str
    data_coding: int
    text: str
    parts: list[SubmittedPart]

    @property
    def message_ids(self) -> list[str]:
        return [part.message_id for part in self.parts]


@dataclass(frozen=True)
class BindAttempt:
    command: str
    system_id: str
    password: str
    status: int


@dataclass
class _Session:
    sock: socket.socket
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    bound_as: str = ""  # "transceiver", "transmitter", "receiver" once bound
    system_id: str = ""
    sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def write(self, data: bytes) -> None:
        with self.write_lock:
            self.sock.sendall(data)


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        self.server.smsc._serve(self.request)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, smsc: "FakeSmsc") -> None:
        self.smsc = smsc
        super().__init__(("127.0.0.1", 0), _Handler)


class FakeSmsc:
    def __init__(self, *, system_id: str = "sonor", password: str = "secret") -> None:
        self.system_id = system_id
        self.password = password
        self.binds: list[BindAttempt] = []
        self.parts: list[SubmittedPart] = []
        self.messages: list[ReceivedMessage] = []
        self.enquire_links = 0  # enquire_link requests received
        self.enquire_link_resps = 0  # answers to ours
        self.unbinds = 0
        self.receipt_acks: list[tuple[str, int]] = []  # (message id, deliver_sm_resp status)
        self.duplicates: list[SubmittedPart] = []  # a part number seen twice in one message
        self.errors: dict[str, int] = {}  # destination -> status answered to its submit_sm
        self.silent: set[str] = set()  # destinations whose submit_sm gets no answer
        self._ids = itertools.count(0x5A0001)
        self._pending: dict[tuple[str, str, str, int, int], dict[int, SubmittedPart]] = {}
        self._receipt_seqs: dict[tuple[int, int], str] = {}
        self._sessions: list[_Session] = []
        self._changed = threading.Condition()
        self._server = _Server(self)
        host, self.port = self._server.server_address[:2]
        self.host = str(host)  # an IPv4 address (the type also allows bytes)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-smsc", daemon=True)

    # -- test-facing API -----------------------------------------------------------------

    def start(self) -> "FakeSmsc":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.drop_connections()
        self._thread.join(5)

    def url(self, *, password: str | None = None, **options: str) -> str:
        query = "&".join(f"{key}={value}" for key, value in {"source": "136000", **options}.items())
        secret = self.password if password is None else password
        return f"smpp://{self.system_id}:{secret}@{self.host}:{self.port}?{query}"

    def fail_destination(self, destination: str, status: int) -> None:
        """Answer every submit_sm to `destination` (E.164, with or without +) with `status`."""
        with self._changed:
            self.errors[destination.lstrip("+")] = status

    def never_answer(self, destination: str) -> None:
        with self._changed:
            self.silent.add(destination.lstrip("+"))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until predicate() holds (checked whenever the SMSC's state changes)."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def messages_to(self, destination: str) -> list[ReceivedMessage]:
        with self._changed:
            return [m for m in self.messages if m.destination_addr == destination.lstrip("+")]

    def bound_sessions(self) -> int:
        with self._changed:
            return sum(1 for session in self._sessions if session.bound_as)

    def send_receipt(self, message_id: str, stat: str = "DELIVRD", *, err: str = "000",
                     tlvs: bool = True) -> None:
        """Send a delivery receipt for a part we accepted to a session that can receive it."""
        with self._changed:
            part = next(p for p in self.parts if p.message_id == message_id)
            sessions = [s for s in self._sessions
                        if s.bound_as in ("transceiver", "receiver") and s.system_id
                        == part.system_id]
        if not sessions:
            raise AssertionError("no bound receiver session to send the receipt to")
        stamp = datetime.now(UTC).strftime("%y%m%d%H%M")
        delivered = "001" if stat == "DELIVRD" else "000"
        text = (f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{stamp} "
                f"done date:{stamp} stat:{stat} err:{err} text:")
        short_message = gsm_encode(text)
        body = b"".join((
            _cstring(""),  # service_type
            bytes((1, 1)), _cstring(part.destination_addr),  # the handset is the source
            bytes((part.source_addr_ton, part.source_addr_npi)), _cstring(part.source_addr),
            bytes((0x04, 0, 0)),  # esm_class: SMSC delivery receipt; protocol_id; priority
            _cstring(""), _cstring(""),  # schedule_delivery_time, validity_period
            bytes((0, 0, 0, 0)),  # registered_delivery, replace, data_coding, default_msg_id
            bytes((len(short_message),)), short_message,
        ))
        if tlvs:
            receipted = _cstring(message_id)
            body += struct.pack(">HH", TLV_RECEIPTED_MESSAGE_ID, len(receipted)) + receipted
            body += struct.pack(">HHB", TLV_MESSAGE_STATE, 1, MESSAGE_STATES[stat])
            body += struct.pack(">HH", TLV_NETWORK_ERROR_CODE, 3) + bytes((3, 0, int(err)))
            body += struct.pack(">HH", 0x1401, 2) + b"mn"  # a vendor TLV the ESME must skip
        session = sessions[-1]
        sequence = next(session.sequence)
        with self._changed:
            self._receipt_seqs[(id(session), sequence)] = message_id
        session.write(_pdu(DELIVER_SM, ESME_ROK, sequence, body))

    def enquire_all(self) -> None:
        """Ask every bound session whether it is alive (the ESME must answer)."""
        with self._changed:
            sessions = [s for s in self._sessions if s.bound_as]
        for session in sessions:
            session.write(_pdu(ENQUIRE_LINK, ESME_ROK, next(session.sequence)))

    def drop_connections(self) -> None:
        """Cut every connection without unbind, as a network failure or SMSC restart would."""
        with self._changed:
            sessions = list(self._sessions)
        for session in sessions:
            try:
                session.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            session.sock.close()

    # -- the SMSC ------------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        session = _Session(sock)
        with self._changed:
            self._sessions.append(session)
            self._changed.notify_all()
        try:
            while True:
                header = self._recv(sock, 16)
                if header is None:
                    return
                length, command_id, status, sequence = struct.unpack(">IIII", header)
                body = self._recv(sock, length - 16) if length > 16 else b""
                if body is None:
                    return
                if not self._dispatch(session, command_id, status, sequence, body):
                    return
        except OSError:
            return
        finally:
            with self._changed:
                session.bound_as = ""
                if session in self._sessions:
                    self._sessions.remove(session)
                self._changed.notify_all()
            sock.close()

    @staticmethod
    def _recv(sock: socket.socket, size: int) -> bytes | None:
        chunks = b""
        while len(chunks) < size:
            chunk = sock.recv(size - len(chunks))
            if not chunk:
                return None
            chunks += chunk
        return chunks

    def _dispatch(self, session: _Session, command_id: int, status: int, sequence: int,
                  body: bytes) -> bool:
        """Handle one PDU; False closes the connection."""
        binds = {BIND_TRANSCEIVER: "transceiver", BIND_TRANSMITTER: "transmitter",
                 BIND_RECEIVER: "receiver"}
        if command_id in binds:
            self._bind(session, binds[command_id], command_id, sequence, body)
        elif command_id == ENQUIRE_LINK:
            with self._changed:
                self.enquire_links += 1
                self._changed.notify_all()
            session.write(_pdu(ENQUIRE_LINK | RESP, ESME_ROK, sequence))
        elif command_id == ENQUIRE_LINK | RESP:
            with self._changed:
                self.enquire_link_resps += 1
                self._changed.notify_all()
        elif command_id == UNBIND:
            with self._changed:
                self.unbinds += 1
                session.bound_as = ""
                self._changed.notify_all()
            session.write(_pdu(UNBIND | RESP, ESME_ROK, sequence))
            return False
        elif command_id == SUBMIT_SM:
            self._submit(session, sequence, body)
        elif command_id == DELIVER_SM | RESP:
            with self._changed:
                message_id = self._receipt_seqs.pop((id(session), sequence), "")
                self.receipt_acks.append((message_id, status))
                self._changed.notify_all()
        else:
            session.write(_pdu(GENERIC_NACK, ESME_RINVCMDID, sequence))
        return True

    def _bind(self, session: _Session, kind: str, command_id: int, sequence: int,
              body: bytes) -> None:
        reader = _Reader(body)
        system_id, password = reader.cstring(), reader.cstring()
        reader.cstring()  # system_type
        version = reader.u8()
        if session.bound_as:
            result = ESME_RALYBND
        elif (system_id, password) != (self.system_id, self.password) or version != 0x34:
            result = ESME_RBINDFAIL
        else:
            result = ESME_ROK
        with self._changed:
            self.binds.append(BindAttempt(kind, system_id, password, result))
            if result == ESME_ROK:
                session.bound_as, session.system_id = kind, system_id
            self._changed.notify_all()
        resp_body = _cstring("FAKESMSC") if result == ESME_ROK else b""
        session.write(_pdu(command_id | RESP, result, sequence, resp_body))

    def _submit(self, session: _Session, sequence: int, body: bytes) -> None:
        if session.bound_as not in ("transceiver", "transmitter"):
            session.write(_pdu(SUBMIT_SM | RESP, ESME_RINVBNDSTS, sequence))
            return
        reader = _Reader(body)
        reader.cstring()  # service_type
        source_ton, source_npi, source = reader.u8(), reader.u8(), reader.cstring()
        dest_ton, dest_npi, destination = reader.u8(), reader.u8(), reader.cstring()
        esm_class = reader.u8()
        reader.u8()  # protocol_id
        reader.u8()  # priority_flag
        reader.cstring()  # schedule_delivery_time
        validity = reader.cstring()
        registered_delivery = reader.u8()
        reader.u8()  # replace_if_present_flag
        data_coding = reader.u8()
        reader.u8()  # sm_default_msg_id
        short_message = reader.octets(reader.u8())
        reader.tlvs()

        udh, concat, payload = b"", None, short_message
        if esm_class & 0x40:
            udh_length = short_message[0]
            udh = short_message[:1 + udh_length]
            payload = short_message[1 + udh_length:]
            concat = self._concat(udh[1:])
        status = ESME_ROK
        try:
            text = self._decode(data_coding, payload)
        except ValueError:
            text, status = "", ESME_RINVMSGLEN
        if status == ESME_ROK and not self._fits(data_coding, udh, payload):
            status = ESME_RINVMSGLEN
        with self._changed:
            if destination in self.silent:
                return
            status = self.errors.get(destination, status)
            message_id = f"{next(self._ids):X}" if status == ESME_ROK else ""
            part = SubmittedPart(
                system_id=session.system_id, source_addr=source, source_addr_ton=source_ton,
                source_addr_npi=source_npi, destination_addr=destination,
                dest_addr_ton=dest_ton, dest_addr_npi=dest_npi, esm_class=esm_class,
                registered_delivery=registered_delivery, validity_period=validity,
                data_coding=data_coding, udh=udh, concat=concat, payload=payload, text=text,
                message_id=message_id, status=status)
            self.parts.append(part)
            if status == ESME_ROK:
                self._reassemble(part)
            self._changed.notify_all()
        resp_body = _cstring(message_id) if status == ESME_ROK else b""
        session.write(_pdu(SUBMIT_SM | RESP, status, sequence, resp_body))

    @staticmethod
    def _concat(elements: bytes) -> Concat | None:
        pos = 0
        while pos + 2 <= len(elements):
            iei, length = elements[pos], elements[pos + 1]
            data = elements[pos + 2:pos + 2 + length]
            if iei == 0x00 and length == 3:
                return Concat(reference=data[0], total=data[1], seq=data[2], iei=iei)
            if iei == 0x08 and length == 4:
                return Concat(reference=int.from_bytes(data[:2], "big"), total=data[2],
                              seq=data[3], iei=iei)
            pos += 2 + length
        return None

    @staticmethod
    def _decode(data_coding: int, payload: bytes) -> str:
        if data_coding == 0x00:
            return gsm_decode(payload)
        if data_coding == 0x08:
            # Strict: a part that splits a surrogate pair does not decode.
            try:
                return payload.decode("utf-16-be")
            except UnicodeDecodeError as exc:
                raise ValueError(str(exc)) from exc
        if data_coding == 0x03:
            return payload.decode("latin-1")
        raise ValueError(f"data_coding {data_coding:#x} not supported by the fake")

    @staticmethod
    def _fits(data_coding: int, udh: bytes, payload: bytes) -> bool:
        """Whether the part fits the 140 octets of one SMS on the air interface."""
        if data_coding == 0x00:
            header_septets = -(-len(udh) * 8 // 7)  # the header, padded to a septet boundary
            return header_septets + len(payload) <= 160
        return len(udh) + len(payload) <= 140

    def _reassemble(self, part: SubmittedPart) -> None:
        """Caller holds self._changed."""
        if part.concat is None:
            self.messages.append(ReceivedMessage(
                part.system_id, part.source_addr, part.destination_addr, part.data_coding,
                part.text, [part]))
            return
        key = (part.system_id, part.source_addr, part.destination_addr,
               part.concat.reference, part.concat.total)
        collected = self._pending.setdefault(key, {})
        if part.concat.seq in collected:
            self.duplicates.append(part)
            return
        collected[part.concat.seq] = part
        if len(collected) == part.concat.total:
            del self._pending[key]
            ordered = [collected[seq] for seq in range(1, part.concat.total + 1)]
            self.messages.append(ReceivedMessage(
                part.system_id, part.source_addr, part.destination_addr, part.data_coding,
                "".join(p.text for p in ordered), ordered))


@pytest.fixture
def smsc() -> Iterator[FakeSmsc]:
    server = FakeSmsc().start()
    yield server
    server.stop()

