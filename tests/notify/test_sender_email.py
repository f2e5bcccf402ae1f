"""The SMTP sender against a real SMTP server (aiosmtpd) with TLS and AUTH, and the one-click
unsubscribe (RFC 8058) that its List-Unsubscribe header points to."""

import html
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.core import signing
from django.test import Client

from identity.models import User
from notify.models import PreferenceChange
from notify.preferences import preferences_get
from notify.senders.base import OutboundMessage, SendStatus, send_many
from notify.senders.email import SmtpSender
from notify.senders.registry import sender_for
from notify.unsubscribe import (
    unsubscribe_token_make,
    unsubscribe_url,
)
from tests.fakes.smtp import SMTP_PASSWORD, SMTP_USER, FakeSmtpServer, SmtpPki
from tests.loopback import free_port

# The fake SMTP servers' fixtures, used by this module.

TITLE = "Таны лавлагаа бэлэн боллоо"
BODY = "Иргэний үнэмлэхний лавлагаа бэлэн.\nХавсралт: <script>alert('x')</script> & бусад"
LINK = "https://e-mongolia.mn/requests/42?tab=status&lang=mn"
TO = "bat.erdene@example.mn"


def outbound(**fields: object) -> OutboundMessage:
    values: dict[str, object] = {
        "kind": "email", "address": TO, "title": TITLE, "body": BODY, "category": "payment",
        "link": LINK, "language": "mn",
    }
    values.update(fields)
    return OutboundMessage(**values)  # type: ignore[arg-type]


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    page = message.get_body(preferencelist=("html",))
    assert text is not None and page is not None
    return str(text.get_content()), str(page.get_content())


def raw_header(raw: bytes, name: str) -> str:
    """The header as it went over the wire, unfolded, before any decoding."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ")
    for line in unfolded.split("\r\n"):
        key, _, value = line.partition(":")
        if key.lower() == name.lower():
            return value.strip()
    raise AssertionError(f"no {name} header")


@pytest.fixture
def opt_outs(db: None) -> Callable[[], list[tuple[int, str]]]:
    """The email opt-outs recorded so far: (user id, category) of each preference change
    the unsubscribe endpoint made, in order."""

    def recorded() -> list[tuple[int, str]]:
        return [(change.user_id, change.what.removesuffix(".email"))
                for change in PreferenceChange.objects.filter(
                    source="email_unsubscribe").order_by("pk")]

    return recorded


# Delivery over STARTTLS with AUTH ---------------------------------------------------------

async def test_mongolian_notification_arrives_over_starttls_with_auth(
        smtp_server: FakeSmtpServer) -> None:
    sender = SmtpSender.from_url(smtp_server.url())
    unsubscribe = unsubscribe_url(user_id=7, category="payment")

    result = await sender.send(outbound(unsubscribe_url=unsubscribe))

    assert result.status == SendStatus.SENT, result.detail
    [mail] = smtp_server.received
    assert mail.tls and mail.authenticated
    assert mail.mail_from == "noreply@example.mn" and mail.rcpt_tos == [TO]
    message = mail.message
    assert result.provider_id == message["Message-ID"]
    assert message["Message-ID"].endswith("@example.mn>")
    # The Subject is the Cyrillic title, sent as RFC 2047 encoded words (7-bit on the wire).
    assert message["Subject"] == TITLE
    assert raw_header(mail.raw, "Subject").lower().startswith("=?utf-8?")
    assert all(byte < 128 for byte in mail.raw)
    assert message["From"].addresses[0].addr_spec == "noreply@example.mn"
    assert message["From"].addresses[0].display_name == "e-Mongolia"
    assert message["To"] == TO
    assert message["Date"].datetime is not None
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"

    text, page = parts(message)
    assert BODY in text and LINK in text
    assert "Имэйлээр авахаа болих" in text and unsubscribe in text
    assert 'lang="mn"' in page and "Дэлгэрэнгүй үзэх" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert f'href="{html.escape(LINK)}"' in page
    assert "Иргэний үнэмлэхний лавлагаа бэлэн.<br>" in page
    assert html.escape(unsubscribe) in page


async def test_english_template_and_no_unsubscribe_header_without_url(
        smtp_server: FakeSmtpServer) -> None:
    sender = SmtpSender.from_url(smtp_server.url())

    result = await sender.send(outbound(language="en", title="Payment due", body="Pay by Friday."))

    assert result.status == SendStatus.SENT, result.detail
    message = smtp_server.received[0].message
    assert message["Subject"] == "Payment due"
    assert message["Content-Language"] == "en"
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message
    text, page = parts(message)
    assert "Pay by Friday." in text and f"Details: {LINK}" in text
    assert "You received this email because" in text and "“Payments”" in text
    assert 'lang="en"' in page and "View details" in page and "Pay by Friday." in page
    assert "Дэлгэрэнгүй" not in text + page


async def test_title_cannot_inject_headers_and_only_https_links_are_shown(
        smtp_server: FakeSmtpServer) -> None:
    sender = SmtpSender.from_url(smtp_server.url())

    result = await sender.send(outbound(title="Мэдэгдэл\r\nBcc: victim@example.mn",
                                        link="javascript:alert(1)"))

    assert result.status == SendStatus.SENT, result.detail
    [mail] = smtp_server.received
    assert mail.rcpt_tos == [TO] and "Bcc" not in mail.message
    assert mail.message["Subject"] == "Мэдэгдэл Bcc: victim@example.mn"
    text, page = parts(mail.message)
    assert "javascript:" not in text + page


async def test_implicit_tls_smtps(smtps_server: FakeSmtpServer) -> None:
    sender = SmtpSender.from_url(smtps_server.url())
    assert sender.tls == "implicit"

    result = await sender.send(outbound())

    assert result.status == SendStatus.SENT, result.detail
    [mail] = smtps_server.received
    assert mail.tls and mail.authenticated


async def test_a_batch_shares_one_connection_and_survives_a_refused_recipient(
        smtp_server: FakeSmtpServer) -> None:
    smtp_server.handler.rcpt_replies["gone@example.mn"] = "550 5.1.1 No such user"
    sender = SmtpSender.from_url(smtp_server.url())

    results = await send_many(sender, [
        outbound(address="a@example.mn"), outbound(address="gone@example.mn"),
        outbound(address="b@example.mn"),
    ])

    assert [r.status for r in results] == [
        SendStatus.SENT, SendStatus.INVALID_ADDRESS, SendStatus.SENT]
    first, second = smtp_server.received
    assert (first.rcpt_tos, second.rcpt_tos) == (["a@example.mn"], ["b@example.mn"])
    assert first.peer == second.peer  # the same client socket: one connection, one login
    assert smtp_server.auth_attempts == [SMTP_USER]


# Result mapping -----------------------------------------------------------------------------

async def test_wrong_password_is_a_configuration_failure(smtp_server: FakeSmtpServer) -> None:
    sender = SmtpSender.from_url(smtp_server.url(password="not the password"))

    result = await sender.send(outbound())

    assert result.status == SendStatus.FAILED
    assert "authentication failed" in result.detail and "SONOR_SMTP_URL" in result.detail
    assert smtp_server.received == []


async def test_recipient_rejected_with_550_is_an_invalid_address(
        smtp_server: FakeSmtpServer) -> None:
    smtp_server.handler.rcpt_replies[TO] = "550 5.1.1 Mailbox does not exist"
    sender = SmtpSender.from_url(smtp_server.url())

    result = await sender.send(outbound())

    assert result.status == SendStatus.INVALID_ADDRESS
    assert "550" in result.detail
    assert smtp_server.received == []


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_a_451_answer_means_retry(smtp_server: FakeSmtpServer, stage: str) -> None:
    if stage == "rcpt":
        smtp_server.handler.rcpt_replies[TO] = "451 4.7.1 Greylisted, try again later"
    else:
        smtp_server.handler.data_reply = "451 4.3.0 Temporary local problem"
    sender = SmtpSender.from_url(smtp_server.url())

    result = await sender.send(outbound())

    assert result.status == SendStatus.RETRY
    assert "451" in result.detail
    assert smtp_server.received == []


async def test_other_permanent_refusal_fails(smtp_server: FakeSmtpServer) -> None:
    smtp_server.handler.data_reply = "554 5.7.1 Message rejected as spam"
    sender = SmtpSender.from_url(smtp_server.url())

    result = await sender.send(outbound())

    assert result.status == SendStatus.FAILED
    assert "554" in result.detail


async def test_server_down_means_retry() -> None:
    sender = SmtpSender.from_url(
        f"smtp://127.0.0.1:{free_port()}?starttls=1&from=noreply@example.mn&timeout=5")

    result = await sender.send(outbound())

    assert result.status == SendStatus.RETRY
    assert "cannot reach" in result.detail


async def test_required_starttls_never_falls_back_to_clear_text(
        plain_smtp_server: FakeSmtpServer) -> None:
    sender = SmtpSender.from_url(plain_smtp_server.url(starttls=True))

    result = await sender.send(outbound())

    assert result.status in (SendStatus.RETRY, SendStatus.FAILED)
    assert "TLS" in result.detail
    assert plain_smtp_server.received == []
    assert plain_smtp_server.auth_attempts == []  # the password was not sent either


async def test_a_certificate_from_an_unknown_ca_is_refused(smtp_server: FakeSmtpServer) -> None:
    # Verified against the system's CAs, which do not know the test CA.
    sender = SmtpSender.from_url(smtp_server.url(with_cafile=False))
    assert sender.cafile is None

    result = await sender.send(outbound())

    assert result.status == SendStatus.RETRY
    assert "certificate" in result.detail.lower()
    assert smtp_server.received == [] and smtp_server.auth_attempts == []


async def test_malformed_address_is_invalid_without_connecting(
        smtp_server: FakeSmtpServer) -> None:
    sender = SmtpSender.from_url(smtp_server.url())

    results = [await sender.send(outbound(address=address))
               for address in ("no-at-sign", "a@b@example.mn", "x <y@example.mn>", "")]

    assert {r.status for r in results} == {SendStatus.INVALID_ADDRESS}
    assert smtp_server.received == [] and smtp_server.auth_attempts == []


# Configuration ------------------------------------------------------------------------------

def test_from_url_options(smtp_pki: SmtpPki) -> None:
    cafile = str(smtp_pki.cafile)
    sender = SmtpSender.from_url(
        "smtp://mail%40sonor:p%C3%A4ss%3Aw%2Fd@smtp.example.mn?starttls=1"
        f"&from=e-Mongolia%20%3Cnoreply%40example.mn%3E&cafile={quote(cafile)}&timeout=7")
    assert (sender.host, sender.port, sender.tls) == ("smtp.example.mn", 587, "starttls")
    assert (sender.username, sender.password) == ("mail@sonor", "päss:w/d")
    assert sender.from_address == "e-Mongolia <noreply@example.mn>"
    assert sender.envelope_from == "noreply@example.mn" and sender.domain == "example.mn"
    assert (sender.cafile, sender.timeout) == (cafile, 7.0)

    smtps = SmtpSender.from_url("smtps://smtp.example.mn?from=noreply@example.mn")
    assert (smtps.port, smtps.tls, smtps.username, smtps.password) == (
        465, "implicit", None, None)
    plain = SmtpSender.from_url("smtp://127.0.0.1?from=noreply@example.mn")
    assert (plain.port, plain.tls) == (25, "none")

    for bad in ("smtp://smtp.example.mn:587?starttls=1",  # no from=
                "http://smtp.example.mn?from=noreply@example.mn",
                "smtps://smtp.example.mn?starttls=1&from=noreply@example.mn",
                "smtp://smtp.example.mn?from=nobody",
                "smtp://smtp.example.mn?starttls=1&from=a@example.mn&cafile=/no/such/ca.pem"):
        with pytest.raises((ValueError, OSError)):
            SmtpSender.from_url(bad)


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    sender_for.cache_clear()
    yield
    sender_for.cache_clear()


def test_registry_picks_the_smtp_sender_from_settings(
        settings: Any, smtp_server: FakeSmtpServer, fresh_registry: None) -> None:
    settings.SONOR_SMTP_URL = smtp_server.url()

    sender = sender_for("email")

    assert isinstance(sender, SmtpSender)
    assert (sender.host, sender.port, sender.password) == (
        "127.0.0.1", smtp_server.port, SMTP_PASSWORD)
    result = async_to_sync(sender.send)(outbound())
    assert result.status == SendStatus.SENT, result.detail


# One-click unsubscribe ------------------------------------------------------------------------

def test_unsubscribe_url_is_absolute_on_the_public_url(settings: Any) -> None:
    settings.SONOR_PUBLIC_URL = "https://sonor.e-mongolia.mn/"

    url = unsubscribe_url(user_id=12, category="petition")

    assert url.startswith("https://sonor.e-mongolia.mn/email/unsubscribe/")
    assert url.endswith(unsubscribe_token_make(user_id=12, category="petition"))


@pytest.mark.django_db
def test_the_list_unsubscribe_url_of_a_sent_email_unsubscribes_on_post_only(
        smtp_server: FakeSmtpServer, opt_outs: Callable[[], list[tuple[int, str]]],
        citizen: User) -> None:
    sender = SmtpSender.from_url(smtp_server.url())
    result = async_to_sync(sender.send)(
        outbound(unsubscribe_url=unsubscribe_url(user_id=citizen.pk, category="complaint")))
    assert result.status == SendStatus.SENT, result.detail
    header = smtp_server.received[0].message["List-Unsubscribe"]
    path = urlsplit(header.strip("<>")).path
    client = Client()

    page = client.get(path)  # a mail scanner or a person opening the link
    assert page.status_code == 200
    assert opt_outs() == []
    content = page.content.decode()
    assert 'method="post"' in content and 'name="List-Unsubscribe" value="One-Click"' in content
    assert "Гомдол" in content

    done = client.post(path, {"List-Unsubscribe": "One-Click"})  # RFC 8058 one-click
    assert done.status_code == 200
    assert opt_outs() == [(citizen.pk, "complaint")]
    assert preferences_get(user=citizen).channels["complaint"]["email"] is False

    again = client.post(path, "List-Unsubscribe=One-Click",
                        content_type="application/x-www-form-urlencoded")
    assert again.status_code == 200
    assert preferences_get(user=citizen).channels["complaint"]["email"] is False


@pytest.mark.django_db
def test_a_tampered_or_foreign_token_is_refused(
        opt_outs: Callable[[], list[tuple[int, str]]]) -> None:
    token = unsubscribe_token_make(user_id=31, category="complaint")
    payload, signature = token.rsplit(":", 1)
    other_user = unsubscribe_token_make(user_id=32, category="complaint").rsplit(":", 1)[0]
    unsalted = signing.Signer().sign_object({"u": 31, "c": "complaint"})
    bad_tokens = [
        f"{payload}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        f"{other_user}:{signature}",  # another user's payload under this signature
        unsalted,  # signed by us, but for another purpose
        "garbage",
    ]
    client = Client()
    for bad in bad_tokens:
        path = f"/email/unsubscribe/{bad}"
        assert client.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 400, bad
        assert client.get(path).status_code == 400, bad
    unknown_category = signing.Signer(salt="sonor.notify.email-unsubscribe").sign_object(
        {"u": 31, "c": "no-such-category"})
    path = f"/email/unsubscribe/{unknown_category}"
    assert client.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 400
    assert opt_outs() == []


@pytest.mark.django_db
def test_a_post_without_the_one_click_body_changes_nothing(
        opt_outs: Callable[[], list[tuple[int, str]]]) -> None:
    path = urlsplit(unsubscribe_url(user_id=5, category="payment")).path
    client = Client()

    assert client.post(path).status_code == 400
    assert client.post(path, {"List-Unsubscribe": "yes"}).status_code == 400
    assert client.put(path).status_code == 405
    assert opt_outs() == []




@pytest.mark.django_db
def test_a_resent_delivery_keeps_its_message_id(smtp_server: FakeSmtpServer) -> None:
    sender = SmtpSender.from_url(smtp_server.url())
    for _ in range(2):
        result = async_to_sync(sender.send)(outbound(dedupe_key="n7:email:abc"))
        assert result.status == SendStatus.SENT
    first, second = smtp_server.received
    assert first.message["Message-ID"] == second.message["Message-ID"]
    other = async_to_sync(sender.send)(outbound(dedupe_key="n8:email:abc"))
    assert other.provider_id != first.message["Message-ID"]
