"""A real SMTP server for tests (aiosmtpd on a loopback port), with TLS made on the spot.

    smtp_server    STARTTLS required, AUTH (one user) required and offered only under TLS
    smtps_server   implicit TLS (SMTPS), AUTH offered (check `authenticated`)
    plain_smtp_server  no TLS at all, AUTH offered in clear: a client that insists on TLS
                   must send nothing to it

Each records what it received (envelope, raw bytes, parsed message, TLS and AUTH state) and
every AUTH attempt; `rcpt_replies` and `data_reply` make it refuse like a real relay.
The certificates come from a throwaway CA written to a temporary directory: pass its file as
`cafile=` to the client.
"""

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote, urlencode

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.loopback import free_port

SMTP_USER = "sonor"
SMTP_PASSWORD = "pä55 wörd:@/"  # needs URL quoting: the client must decode it
SERVER_NAME = "smtp.sonor.test"

Mode = Literal["starttls", "implicit", "plain"]


@dataclass(frozen=True)
class SmtpPki:
    cafile: Path
    certfile: Path
    keyfile: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path) -> SmtpPki:
    """A CA and a server certificate for 127.0.0.1 and localhost, signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Sonor test CA")).issuer_name(_name("Sonor test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVER_NAME)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            x509.DNSName(SERVER_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = SmtpPki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.cafile.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.keyfile.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return pki


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    peer: Any
    tls: bool
    authenticated: bool


@dataclass
class RecordingHandler:
    received: list[ReceivedMail] = field(default_factory=list)
    # address -> the reply to its RCPT (e.g. "550 5.1.1 No such user"); others are accepted.
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None  # e.g. "451 4.3.0 Try again later"; None accepts

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        raw = cast(bytes, envelope.original_content or envelope.content)
        self.received.append(ReceivedMail(
            mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos), raw=raw,
            message=cast(EmailMessage, message_from_bytes(raw, policy=policy.default)),
            peer=session.peer,
            tls=(session.ssl is not None
                 or (server.transport is not None
                     and server.transport.get_extra_info("ssl_object") is not None)),
            authenticated=bool(session.authenticated),
        ))
        return "250 Message accepted for delivery"


@dataclass
class FakeSmtpServer:
    host: str
    port: int
    mode: Mode
    cafile: Path | None
    handler: RecordingHandler
    auth_attempts: list[str]  # the logins tried, right or wrong

    @property
    def received(self) -> list[ReceivedMail]:
        return self.handler.received

    def url(self, *, user: str | None = SMTP_USER, password: str | None = SMTP_PASSWORD,
            starttls: bool | None = None, sender: str = "e-Mongolia <noreply@example.mn>",
            with_cafile: bool = True, **query: str) -> str:
        """SONOR_SMTP_URL for this server (STARTTLS asked for unless it is SMTPS)."""
        scheme = "smtps" if self.mode == "implicit" else "smtp"
        userinfo = ""
        if user is not None:
            userinfo = quote(user, safe="")
            if password is not None:
                userinfo += ":" + quote(password, safe="")
            userinfo += "@"
        params: dict[str, str] = {"from": sender}
        if starttls if starttls is not None else self.mode != "implicit":
            params["starttls"] = "1"
        if self.cafile is not None and with_cafile:
            params["cafile"] = str(self.cafile)
        params.update(query)
        return f"{scheme}://{userinfo}{self.host}:{self.port}?{urlencode(params)}"


def _serve(mode: Mode, pki: SmtpPki | None) -> Iterator[FakeSmtpServer]:
    handler = RecordingHandler()
    attempts: list[str] = []

    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        attempts.append(auth_data.login.decode("utf-8", "replace"))
        ok = (auth_data.login == SMTP_USER.encode()
              and auth_data.password == SMTP_PASSWORD.encode())
        return AuthResult(success=ok, handled=False)

    kwargs: dict[str, Any] = {"authenticator": authenticator, "server_hostname": SERVER_NAME}
    if mode == "starttls":
        assert pki is not None
        kwargs.update(tls_context=pki.server_context(), require_starttls=True,
                      auth_required=True, auth_require_tls=True)
    elif mode == "implicit":
        assert pki is not None
        # aiosmtpd counts only STARTTLS as TLS for AUTH, and warns when AUTH is required
        # without it: offer AUTH (every byte is under TLS here); tests check `authenticated`.
        kwargs.update(ssl_context=pki.server_context(), auth_required=False,
                      auth_require_tls=False)
    else:  # a careless relay: takes anything, password in clear included
        kwargs.update(auth_required=False, auth_require_tls=False)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield FakeSmtpServer(host="127.0.0.1", port=controller.port, mode=mode,
                             cafile=pki.cafile if pki else None, handler=handler,
                             auth_attempts=attempts)
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def smtp_pki(tmp_path_factory: pytest.TempPathFactory) -> SmtpPki:
    return make_pki(tmp_path_factory.mktemp("smtp-pki"))


@pytest.fixture
def smtp_server(smtp_pki: SmtpPki) -> Iterator[FakeSmtpServer]:
    """STARTTLS required, AUTH required (SMTP_USER / SMTP_PASSWORD) and only under TLS."""
    yield from _serve("starttls", smtp_pki)


@pytest.fixture
def smtps_server(smtp_pki: SmtpPki) -> Iterator[FakeSmtpServer]:
    """Implicit TLS from the first byte (port 465 style), AUTH offered."""
    yield from _serve("implicit", smtp_pki)


@pytest.fixture
def plain_smtp_server() -> Iterator[FakeSmtpServer]:
    """No TLS at all, AUTH offered in clear: a client requiring TLS must send it nothing."""
    yield from _serve("plain", None)
