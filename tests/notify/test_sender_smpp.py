"""The SMPP sender against a local SMSC that speaks SMPP 3.4 (tests/fakes/smsc.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import async_to_sync

from notify.senders.base import OutboundMessage, SendStatus
from notify.senders.registry import sender_for
from notify.senders.sms_smpp import (
    SmppSender,
    receipt_parse,
    relative_validity,
    smpp_config_from_url,
)
from tests.loopback import free_port

if TYPE_CHECKING:
    from tests.fakes.smsc import FakeSmsc

# The fake is loaded as a plugin (not imported here) so that pytest rewrites its asserts.

ESME_RMSGQFUL = 0x14
ESME_RINVDSTADR = 0x0B
ESME_RSUBMITFAIL = 0x45
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64

NUMBER = "+97688110011"
# A real notice of 150 characters (Cyrillic letters, spaces and punctuation).
MONGOLIAN_150 = (
    "Таны иргэний үнэмлэхийн захиалгыг хүлээн авлаа. Бэлэн болмогц бид танд мэдэгдэнэ. "
    "Өргөдлөө цахим хэлбэрээр хянах боломжтой. Баярлалаа! Ёс журам, Щ Ъ Ь"
)


class Receipts:
    """A ReceiptSink that tests can wait on (it is called on the SMPP thread)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, SendStatus, str]] = []
        self._changed = threading.Condition()
        self.fail = False

    def __call__(self, provider_id: str, status: SendStatus, detail: str) -> None:
        if self.fail:
            raise RuntimeError("database unavailable")
        with self._changed:
            self.got.append((provider_id, status, detail))
            self._changed.notify_all()

    def wait(self, count: int = 1) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.got) >= count, 10)


@pytest.fixture
def make_sender(smsc: FakeSmsc) -> Iterator[Callable[..., SmppSender]]:
    made: list[SmppSender] = []

    def make(url: str | None = None, **kwargs: Any) -> SmppSender:
        sender = SmppSender.from_url(url or smsc.url(), **kwargs)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close()


def sms(body: str, address: str = NUMBER, **kwargs: Any) -> OutboundMessage:
    return OutboundMessage(kind="sms", address=address, body=body, **kwargs)


def test_the_mongolian_text_is_150_characters_with_no_latin_letter() -> None:
    assert len(MONGOLIAN_150) == 150
    assert all(0x0400 <= ord(c) <= 0x04FF for c in MONGOLIAN_150 if c.isalpha())
    assert "ө" in MONGOLIAN_150 and "ү" in MONGOLIAN_150


async def test_long_mongolian_text_arrives_as_three_ucs2_parts_and_reassembles(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    result = await make_sender().send(sms(MONGOLIAN_150))

    assert result.status == SendStatus.SENT, result.detail
    assert result.parts == 3
    [message] = smsc.messages_to(NUMBER)
    assert message.text == MONGOLIAN_150
    assert result.provider_id == message.message_ids[0]
    assert len(set(message.message_ids)) == 3
    assert smsc.duplicates == []
    reference = message.parts[0].udh[3]
    for number, part in enumerate(message.parts, start=1):
        assert part.data_coding == 0x08
        assert part.esm_class & 0x40
        assert part.udh == bytes((0x05, 0x00, 0x03, reference, 3, number))
        assert part.registered_delivery == 1
        assert (part.source_addr, part.source_addr_ton, part.source_addr_npi) == (
            "136000", 0, 1)
        assert (part.destination_addr, part.dest_addr_ton, part.dest_addr_npi) == (
            "97688110011", 1, 1)
        assert part.validity_period == "000004000000000R"  # 96 hours, relative
    assert [len(part.text) for part in message.parts] == [67, 67, 16]


async def test_gsm7_text_with_euro_and_escapes_arrives_decoded(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    text = "Tany tolbor 1500€ tölögdlöö. {ref:A-17} [ok] ~^|\\ @£$¥ §¿"
    result = await make_sender().send(sms(text))

    assert result.status == SendStatus.SENT, result.detail
    assert result.parts == 1
    [message] = smsc.messages_to(NUMBER)
    assert message.text == text
    [part] = message.parts
    assert (part.data_coding, part.esm_class, part.udh) == (0x00, 0x00, b"")


async def test_long_gsm7_text_with_an_escape_on_the_boundary_reassembles(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    text = "A" * 152 + "€" + "B" * 100
    result = await make_sender().send(sms(text))

    assert (result.status, result.parts) == (SendStatus.SENT, 2)
    [message] = smsc.messages_to(NUMBER)
    assert message.text == text
    assert [part.text for part in message.parts] == ["A" * 152, "€" + "B" * 100]
    assert all(part.data_coding == 0 and part.esm_class & 0x40 for part in message.parts)


async def test_emoji_on_the_part_boundary_is_not_split(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    text = "ү" * 69 + "😀"  # the shared vector: 71 units, 2 parts
    result = await make_sender().send(sms(text))

    assert (result.status, result.parts) == (SendStatus.SENT, 2)
    [message] = smsc.messages_to(NUMBER)
    assert message.text == text  # the SMSC decodes each part strictly


async def test_short_mongolian_text_is_one_part_without_header(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    result = await make_sender().send(sms("Таны өргөдөл хүлээн авлаа"))

    assert (result.status, result.parts) == (SendStatus.SENT, 1)
    [message] = smsc.messages_to(NUMBER)
    assert message.text == "Таны өргөдөл хүлээн авлаа"
    assert (message.parts[0].esm_class, message.parts[0].udh) == (0, b"")


async def test_throttled_and_queue_full_are_retry(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    smsc.fail_destination("+97688000001", ESME_RTHROTTLED)
    smsc.fail_destination("+97688000002", ESME_RMSGQFUL)
    sender = make_sender()

    throttled = await sender.send(sms("Sain baina uu", "+97688000001"))
    queue_full = await sender.send(sms("Sain baina uu", "+97688000002"))

    assert throttled.status == SendStatus.RETRY
    assert "ESME_RTHROTTLED" in throttled.detail
    assert queue_full.status == SendStatus.RETRY
    assert "ESME_RMSGQFUL" in queue_full.detail
    assert smsc.messages_to("+97688000001") == []
    # The link survives a refusal.
    assert (await sender.send(sms("Sain baina uu"))).status == SendStatus.SENT


async def test_invalid_destination_is_invalid_address(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    smsc.fail_destination("+97699000000", ESME_RINVDSTADR)

    result = await make_sender().send(sms("Sain baina uu", "+97699000000"))

    assert result.status == SendStatus.INVALID_ADDRESS
    assert "ESME_RINVDSTADR" in result.detail


async def test_other_refusals_are_failed(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    smsc.fail_destination(NUMBER, ESME_RSUBMITFAIL)

    result = await make_sender().send(sms("Sain baina uu"))

    assert result.status == SendStatus.FAILED
    assert "ESME_RSUBMITFAIL" in result.detail


async def test_refused_first_part_stops_the_rest(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    smsc.fail_destination(NUMBER, ESME_RTHROTTLED)

    result = await make_sender().send(sms(MONGOLIAN_150))

    assert result.status == SendStatus.RETRY
    assert "part 1 of 3" in result.detail
    assert result.parts == 0
    assert len(smsc.parts) == 1


async def test_wrong_password_is_retry_with_a_clear_detail(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    result = await make_sender(smsc.url(password="wrong")).send(sms("Sain baina uu"))

    assert result.status == SendStatus.RETRY
    assert "bind" in result.detail and "refused" in result.detail
    assert "ESME_RBINDFAIL" in result.detail
    assert result.retry_after is not None and result.retry_after > 0
    assert [(b.system_id, b.password, b.status) for b in smsc.binds] == [
        ("sonor", "wrong", 0x0D)]
    assert smsc.parts == []


async def test_no_smsc_listening_is_retry(make_sender: Callable[..., SmppSender]) -> None:
    port = free_port()  # a loopback port that nobody listens on
    sender = make_sender(f"smpp://sonor:secret@127.0.0.1:{port}?source=136000")

    result = await sender.send(sms("Sain baina uu"))

    assert result.status == SendStatus.RETRY
    assert "connection" in result.detail


async def test_delivery_receipt_reaches_the_sink_with_the_provider_id(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    receipts = Receipts()
    sender = make_sender(receipts=receipts)
    result = await sender.send(sms("Таны өргөдөл хүлээн авлаа"))
    assert result.status == SendStatus.SENT

    smsc.send_receipt(result.provider_id, "DELIVRD")

    assert receipts.wait()
    assert receipts.got == [(result.provider_id, SendStatus.SENT, "DELIVRD")]
    assert smsc.wait_for(lambda: smsc.receipt_acks == [(result.provider_id, 0)])


async def test_failed_receipt_without_tlvs_is_parsed_from_the_text(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    receipts = Receipts()
    sender = make_sender(receipts=receipts)
    result = await sender.send(sms("Sain baina uu"))

    smsc.send_receipt(result.provider_id, "UNDELIV", err="001", tlvs=False)

    assert receipts.wait()
    assert receipts.got == [(result.provider_id, SendStatus.FAILED, "UNDELIV err:001")]


async def test_receipts_of_later_parts_report_only_failures_under_the_first_id(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    receipts = Receipts()
    sender = make_sender(receipts=receipts)
    result = await sender.send(sms(MONGOLIAN_150))
    first, second, third = smsc.messages_to(NUMBER)[0].message_ids

    smsc.send_receipt(second, "DELIVRD")
    assert smsc.wait_for(lambda: len(smsc.receipt_acks) == 1)
    assert receipts.got == []
    smsc.send_receipt(first, "DELIVRD")
    smsc.send_receipt(third, "EXPIRED")

    assert receipts.wait(2)
    assert receipts.got == [(result.provider_id, SendStatus.SENT, "DELIVRD"),
                            (result.provider_id, SendStatus.FAILED, "EXPIRED")]


async def test_a_receipt_the_sink_cannot_take_is_refused_for_redelivery(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    receipts = Receipts()
    receipts.fail = True
    sender = make_sender(receipts=receipts)
    result = await sender.send(sms("Sain baina uu"))

    smsc.send_receipt(result.provider_id, "DELIVRD")

    assert smsc.wait_for(lambda: len(smsc.receipt_acks) == 1)
    assert smsc.receipt_acks == [(result.provider_id, ESME_RX_T_APPN)]


async def test_reconnects_after_the_smsc_drops_the_link(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    sender = make_sender()
    assert (await sender.send(sms("Neg"))).status == SendStatus.SENT

    smsc.drop_connections()
    assert smsc.wait_for(lambda: len(smsc.binds) == 2 and smsc.bound_sessions() == 1)

    assert (await sender.send(sms("Khoyor"))).status == SendStatus.SENT
    assert [m.text for m in smsc.messages_to(NUMBER)] == ["Neg", "Khoyor"]


async def test_enquire_link_both_ways(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    sender = make_sender(smsc.url(enquire_link="0.05"))
    sender.start()

    assert smsc.wait_for(lambda: smsc.enquire_links >= 2)  # ours, while idle
    smsc.enquire_all()
    assert smsc.wait_for(lambda: smsc.enquire_link_resps == 1)  # the SMSC's, answered
    assert (await sender.send(sms("Sain baina uu"))).status == SendStatus.SENT


async def test_an_smsc_that_never_answers_is_retry(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    smsc.never_answer(NUMBER)

    result = await make_sender(smsc.url(timeout="0.2")).send(sms("Sain baina uu"))

    assert result.status == SendStatus.RETRY
    assert "no submit_sm_resp" in result.detail


async def test_many_messages_in_flight_at_once(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    sender = make_sender(smsc.url(window="4"))
    numbers = [f"+976880000{n:02d}" for n in range(30)]

    results = await asyncio.gather(*(sender.send(sms(f"Мэдэгдэл {n}", number))
                                     for n, number in enumerate(numbers)))

    assert {r.status for r in results} == {SendStatus.SENT}
    assert len({r.provider_id for r in results}) == 30
    for n, number in enumerate(numbers):
        assert [m.text for m in smsc.messages_to(number)] == [f"Мэдэгдэл {n}"]
    assert len(smsc.binds) == 1


def test_sync_callers_in_new_event_loops_share_one_bind(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    # The delivery worker calls async_to_sync(sender.send): a new event loop each time.
    sender = make_sender()

    results = [async_to_sync(sender.send)(sms(f"Мэдэгдэл {n}")) for n in range(3)]

    assert [r.status for r in results] == [SendStatus.SENT] * 3
    assert [m.text for m in smsc.messages_to(NUMBER)] == [
        "Мэдэгдэл 0", "Мэдэгдэл 1", "Мэдэгдэл 2"]
    assert len(smsc.binds) == 1


async def test_validity_follows_the_remaining_ttl_up_to_96_hours(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    sender = make_sender()
    await sender.send(sms("Neg", ttl_seconds=3600 + 61))
    await sender.send(sms("Khoyor", ttl_seconds=30 * 86400))

    assert [p.validity_period for p in smsc.parts] == ["000000010101000R", "000004000000000R"]
    assert relative_validity(96 * 3600) == "000004000000000R"


async def test_alphanumeric_sender_id(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    await make_sender(smsc.url(source="E-Mongolia")).send(sms("Sain baina uu"))

    [part] = smsc.parts
    assert (part.source_addr, part.source_addr_ton, part.source_addr_npi) == ("E-Mongolia", 5, 0)


async def test_nothing_is_sent_for_a_bad_number_an_empty_body_or_an_expired_message(
        smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    sender = make_sender()

    assert (await sender.send(sms("Hi", "88110011"))).status == SendStatus.INVALID_ADDRESS
    assert (await sender.send(sms(""))).status == SendStatus.FAILED
    assert (await sender.send(sms("Hi", ttl_seconds=0))).status == SendStatus.FAILED
    assert smsc.binds == []


async def test_close_unbinds(smsc: FakeSmsc, make_sender: Callable[..., SmppSender]) -> None:
    sender = make_sender()
    await sender.send(sms("Sain baina uu"))

    sender.close()

    assert smsc.wait_for(lambda: smsc.unbinds == 1 and smsc.bound_sessions() == 0)
    after = await sender.send(sms("Sain baina uu"))
    assert (after.status, after.detail) == (SendStatus.RETRY, "SMPP sender closed")


async def test_registry_picks_smpp_from_settings(
        smsc: FakeSmsc, settings: Any) -> None:
    settings.SONOR_SMPP_URL = smsc.url()
    sender_for.cache_clear()
    try:
        sender = sender_for("sms")
        assert isinstance(sender, SmppSender)
        try:
            result = await sender.send(sms("Таны код: 123456"))
        finally:
            sender.close()
    finally:
        sender_for.cache_clear()

    assert result.status == SendStatus.SENT
    assert [m.text for m in smsc.messages_to(NUMBER)] == ["Таны код: 123456"]


def test_url_options() -> None:
    config = smpp_config_from_url(
        "smpp://user%40x:p%26ss@smsc.example.mn:2776?source=%2B97670001234&window=5"
        "&enquire_link=15&timeout=20&bind=transmitter&system_type=SONOR")
    assert (config.system_id, config.password, config.host, config.port) == (
        "user@x", "p&ss", "smsc.example.mn", 2776)
    assert (config.source, config.source_ton, config.source_npi) == ("97670001234", 1, 1)
    assert (config.window, config.enquire_link_seconds, config.response_timeout) == (5, 15, 20)
    assert (config.bind, config.system_type) == ("transmitter", "SONOR")
    for bad in ("http://u:p@h:1", "smpp://h:1", "smpp://u:p@h:1?sauce=1",
                "smpp://u:toolongpass@h:1", "smpp://u:p@h:1?source=TwelveLetter",
                "smpp://u:p@h:1?source=%D0%A1%D0%BE%D0%BD%D0%BE%D1%80"):
        with pytest.raises(ValueError):
            smpp_config_from_url(bad)


def test_receipt_parse() -> None:
    text = ("id:0A1B2C sub:001 dlvrd:000 submit date:2501011200 done date:2501011300 "
            "stat:EXPIRED err:045 text:Sain baina")
    receipt = receipt_parse(text)
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.status, receipt.detail) == (
        "0A1B2C", "EXPIRED", SendStatus.FAILED, "EXPIRED err:045")
    # The TLVs win over the text; intermediate states are not final.
    receipt = receipt_parse(text, receipted_message_id="XYZ", message_state=2)
    assert receipt is not None and (receipt.message_id, receipt.status) == ("XYZ", SendStatus.SENT)
    enroute = receipt_parse("id:1 stat:ENROUTE")
    assert enroute is not None and not enroute.final
    assert receipt_parse("Sain baina uu") is None
