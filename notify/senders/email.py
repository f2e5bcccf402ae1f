"""Email over SMTP (aiosmtplib): a notification rendered in Mongolian or English.

    OutboundMessage --templates (text + HTML)--> EmailMessage --SMTP (STARTTLS or TLS, AUTH)-->
    relay answers: 250 -> SENT (provider_id = Message-ID)      4xx, network, no TLS -> RETRY
                   550/551/553 or 5.1.x on RCPT -> INVALID_ADDRESS     other 5xx, AUTH -> FAILED

Configured by SONOR_SMTP_URL:
    smtp://user:password@host:587?starttls=1&from=noreply@example.mn   STARTTLS (required)
    smtps://user:password@host:465?from=noreply@example.mn             implicit TLS
    smtp://host:25?from=noreply@example.mn                             plain (a local relay)
  options: from= (required; may carry a display name, URL-encoded), cafile= (a private CA
  bundle to verify the server with), timeout= (seconds, default 30). user and password are
  optional and URL-decoded.

With starttls=1, a server that does not offer STARTTLS gets nothing (RETRY, like Postfix with
TLS required): neither the password nor the message is ever sent in clear.
One connection per `send`; `send_many` sends a batch over one connection.
"""

import hashlib
import logging
import re
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from django.template.loader import render_to_string

from notify.senders.base import OutboundMessage, SendResult, SendStatus

logger = logging.getLogger(__name__)

TlsMode = Literal["none", "starttls", "implicit"]
DEFAULT_TIMEOUT = 30.0
LANGUAGES = ("mn", "en")
# Recipient refusals that mean the address is dead: 550 mailbox unavailable, 551 user not
# local, 553 mailbox name not allowed; or an enhanced status 5.1.x (bad destination address).
_INVALID_ADDRESS_CODES = frozenset({550, 551, 553})
_ENHANCED_BAD_ADDRESS = re.compile(r"^\s*5\.1\.\d{1,3}\b")

CATEGORY_LABELS: dict[str, dict[str, str]] = {
    "service_request": {"mn": "Үйлчилгээний хүсэлт", "en": "Service requests"},
    "petition": {"mn": "Өргөдөл", "en": "Petitions"},
    "complaint": {"mn": "Гомдол", "en": "Complaints"},
    "payment": {"mn": "Төлбөр", "en": "Payments"},
    "system": {"mn": "Системийн мэдээлэл", "en": "System notices"},
    "security": {"mn": "Аюулгүй байдал", "en": "Security"},
    "chat": {"mn": "Чат", "en": "Chat"},
}
_DEFAULT_SUBJECT = {"mn": "e-Mongolia мэдэгдэл", "en": "e-Mongolia notification"}


class _Refused(Exception):
    """Raised before any connection for a message we will not hand to the server."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.detail)
        self.result = result


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _one_line(text: str) -> str:
    # Header values must not carry CR/LF (header injection); fold whitespace instead.
    return " ".join(text.split())


class SmtpSender:
    kind = "email"

    def __init__(self, *, host: str, port: int, from_address: str, username: str | None = None,
                 password: str | None = None, tls: TlsMode = "starttls",
                 cafile: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        envelope_from = parseaddr(from_address)[1]
        if "@" not in envelope_from:
            raise ValueError(f"the email sender address {from_address!r} has no domain")
        self.host = host
        self.port = port
        self.from_address = from_address
        self.envelope_from = envelope_from
        self.domain = envelope_from.rsplit("@", 1)[1]
        self.username = username
        self.password = password
        self.tls = tls
        self.cafile = cafile
        self.timeout = timeout
        # Built now, so that a wrong cafile shows when the sender is configured.
        self._tls_context = None if tls == "none" else ssl.create_default_context(cafile=cafile)

    @classmethod
    def from_url(cls, url: str) -> "SmtpSender":
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"}:
            raise ValueError("SONOR_SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("SONOR_SMTP_URL has no host")
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        from_address = query.get("from", "")
        if not from_address:
            raise ValueError("SONOR_SMTP_URL needs from=<sender address>")
        starttls = _truthy(query.get("starttls", "0"))
        if parts.scheme == "smtps" and starttls:
            raise ValueError("SONOR_SMTP_URL: smtps:// is implicit TLS, starttls=1 contradicts it")
        tls: TlsMode = "implicit" if parts.scheme == "smtps" else (
            "starttls" if starttls else "none")
        default_port = {"implicit": 465, "starttls": 587, "none": 25}[tls]
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if username and tls == "none" and parts.hostname not in {"127.0.0.1", "::1", "localhost"}:
            logger.warning("SONOR_SMTP_URL sends a password without TLS to %s: add starttls=1 "
                           "or use smtps://", parts.hostname)
        return cls(
            host=parts.hostname, port=parts.port or default_port, from_address=from_address,
            username=username, password=password, tls=tls, cafile=query.get("cafile") or None,
            timeout=float(query.get("timeout", DEFAULT_TIMEOUT)),
        )

    # Building the message ---------------------------------------------------------------

    def build(self, message: OutboundMessage, *, to: str | None = None) -> EmailMessage:
        """The MIME message: multipart/alternative (text/plain, text/html), headers set.
        `to` replaces message.address in the To header (its domain in IDNA form)."""
        language = message.language if message.language in LANGUAGES else "mn"
        link = message.link if message.link.startswith("https://") else ""
        context = {
            "title": message.title,
            "body": message.body,
            "link": link,
            "category_label": CATEGORY_LABELS.get(message.category, {}).get(language, ""),
            "unsubscribe_url": message.unsubscribe_url,
        }
        text = render_to_string(f"notify/email/notification.{language}.txt", context)
        html = render_to_string(f"notify/email/notification.{language}.html", context)

        email = EmailMessage()  # the default policy: RFC 2047 encoded words for non-ASCII
        email["Subject"] = _one_line(message.title) or _DEFAULT_SUBJECT[language]
        email["From"] = self.from_address
        email["To"] = to or message.address
        email["Date"] = format_datetime(datetime.now(UTC))
        # A resend of the same delivery (after a crash) keeps its Message-ID, so that mail
        # systems can drop the duplicate.
        email["Message-ID"] = (
            f"<{hashlib.sha256(message.dedupe_key.encode()).hexdigest()[:32]}@{self.domain}>"
            if message.dedupe_key else make_msgid(domain=self.domain))
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        email["X-Auto-Response-Suppress"] = "All"
        if message.unsubscribe_url:
            email["List-Unsubscribe"] = f"<{_one_line(message.unsubscribe_url)}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        email.set_content(text)
        email.add_alternative(html, subtype="html")
        email["Content-Language"] = language  # after the body: set_content clears Content-*
        return email

    def _recipient(self, address: str) -> tuple[str, list[str]]:
        """(envelope recipient, MAIL options); raises _Refused for an unusable address."""
        address = address.strip()
        local, _, domain = address.rpartition("@")
        if (not local or not domain or any(c.isspace() or c in "<>,;\"" for c in address)
                or parseaddr(address)[1] != address):
            raise _Refused(SendResult(SendStatus.INVALID_ADDRESS,
                                      detail=f"not an email address: {address!r}"))
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise _Refused(SendResult(SendStatus.INVALID_ADDRESS,
                                      detail=f"bad domain in {address!r}: {exc}")) from exc
        options = [] if local.isascii() else ["SMTPUTF8"]
        return f"{local}@{domain}", options

    # Sending ------------------------------------------------------------------------------

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host, port=self.port, username=self.username,
            password=self.password, timeout=self.timeout,
            use_tls=self.tls == "implicit",
            # True: STARTTLS is required (no STARTTLS offered -> error, nothing sent).
            start_tls=self.tls == "starttls",
            tls_context=self._tls_context,
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        return (await self.send_many([message]))[0]

    async def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send over one connection; a broken connection is opened again for the next
        message, and a failure to connect or log in answers for all that remain."""
        results: list[SendResult] = []
        smtp: aiosmtplib.SMTP | None = None
        try:
            for index, message in enumerate(messages):
                try:
                    recipient, options, message_id, raw = self._prepare(message)
                except _Refused as refused:
                    results.append(refused.result)
                    continue
                if smtp is None or not smtp.is_connected:
                    smtp = self._client()
                    try:
                        await smtp.connect()
                    except Exception as exc:  # every failure to connect becomes a result
                        result = self._connect_result(exc)
                        logger.warning("email: cannot connect to %s:%s: %s",
                                       self.host, self.port, result.detail)
                        results.extend(result for _ in messages[index:])
                        smtp = None
                        return results
                results.append(await self._send_one(smtp, recipient, options, message_id, raw))
        finally:
            if smtp is not None and smtp.is_connected:
                try:
                    await smtp.quit()
                except (aiosmtplib.SMTPException, OSError):
                    smtp.close()
        return results

    def _prepare(self, message: OutboundMessage) -> tuple[str, list[str], str, bytes]:
        """(envelope recipient, MAIL options, Message-ID, message bytes) or _Refused."""
        recipient, options = self._recipient(message.address)
        email = self.build(message, to=recipient)
        # CRLF line ends; UTF-8 headers only where the server takes SMTPUTF8 for this message.
        policy = SMTP_POLICY.clone(utf8=True) if options else SMTP_POLICY
        try:
            raw = email.as_bytes(policy=policy)
        except (ValueError, TypeError) as exc:
            logger.exception("email: cannot serialise the message to %s", recipient)
            raise _Refused(SendResult(SendStatus.FAILED,
                                      detail=f"cannot build the message: {exc}")) from exc
        return recipient, options, str(email["Message-ID"]), raw

    async def _send_one(self, smtp: aiosmtplib.SMTP, recipient: str, options: list[str],
                        message_id: str, raw: bytes) -> SendResult:
        try:
            await smtp.sendmail(self.envelope_from, [recipient], raw, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return self._recipient_result(refused.code, refused.message)
        except aiosmtplib.SMTPNotSupported as exc:
            return SendResult(SendStatus.FAILED, detail=f"server cannot take this: {exc}")
        except aiosmtplib.SMTPResponseException as exc:
            return self._response_result(exc.code, exc.message, stage=type(exc).__name__)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            smtp.close()  # the connection is in an unknown state: the next one starts afresh
            return SendResult(SendStatus.RETRY, detail=f"connection lost: {exc!r}")
        except ValueError as exc:  # an address aiosmtplib will not put on the wire
            return SendResult(SendStatus.INVALID_ADDRESS, detail=str(exc))
        return SendResult(SendStatus.SENT, provider_id=message_id)

    def _connect_result(self, exc: Exception) -> SendResult:
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            if 400 <= exc.code < 500:
                return SendResult(SendStatus.RETRY,
                                  detail=f"authentication failed for now: {exc.code} {exc.message}")
            return SendResult(
                SendStatus.FAILED,
                detail=f"SMTP authentication failed ({exc.code} {exc.message}): check the user "
                       "and password in SONOR_SMTP_URL",
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return self._response_result(exc.code, exc.message, stage="connect")
        if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
            return SendResult(SendStatus.RETRY, detail=f"TLS failed: {exc}")
        if isinstance(exc, aiosmtplib.SMTPException) and "starttls" in str(exc).lower():
            return SendResult(SendStatus.RETRY,
                              detail=f"TLS required but the server offers none, nothing sent "
                                     f"in clear: {exc}")
        if isinstance(exc, aiosmtplib.SMTPException) and "auth" in str(exc).lower():
            return SendResult(SendStatus.FAILED,
                              detail=f"SMTP login impossible, check SONOR_SMTP_URL: {exc}")
        if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
            return SendResult(SendStatus.RETRY, detail=f"cannot reach the SMTP server: {exc!r}")
        return SendResult(SendStatus.RETRY, detail=f"unexpected SMTP error: {exc!r}")

    @staticmethod
    def _recipient_result(code: int, text: str) -> SendResult:
        detail = f"recipient refused: {code} {text}"
        if 400 <= code < 500:
            return SendResult(SendStatus.RETRY, detail=detail)
        if code in _INVALID_ADDRESS_CODES or _ENHANCED_BAD_ADDRESS.match(text):
            return SendResult(SendStatus.INVALID_ADDRESS, detail=detail)
        return SendResult(SendStatus.FAILED, detail=detail)

    @staticmethod
    def _response_result(code: int, text: str, *, stage: str) -> SendResult:
        detail = f"{stage}: {code} {text}"
        if 400 <= code < 500:
            return SendResult(SendStatus.RETRY, detail=detail)
        return SendResult(SendStatus.FAILED, detail=detail)
