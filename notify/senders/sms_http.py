"""SMS through an HTTP gateway: Kannel's sendsms, operators' and aggregators' send URLs.

    send() --GET template with {to}, {text} filled in--> gateway --> SMSC
           <--2xx sent / 429, 5xx retry / 4xx failed or dead number--'

SONOR_SMS_HTTP_URL is the gateway's own URL with placeholders, for example
    http://gw:13013/cgi-bin/sendsms?username=u&password=p&to={to_digits}&text={text}&coding={coding}&charset=UTF-8

Placeholders (each value percent-encoded as UTF-8, "+" included, so it survives any query
parser):
    {text}              the message body
    {to}                the E.164 number as stored, with its "+": +97688110011
    {to_digits}         the same without "+": 97688110011
    {to_national}       the national number: 88110011 (what most Mongolian gateways want)
    {ref}               our delivery key, for the gateway's de-duplication or callbacks
    {coding}            0 for GSM-7 text, 2 for UCS-2 (Kannel's `coding` values)
    {validity_minutes}  how long the SMSC may keep trying (Kannel's `validity`), 96 h at most
{text} and one of the {to...} forms are required; any other {name} is a configuration error.

The gateway splits long texts itself; `parts` is our splitter's count, for billing.

Answers:
    2xx                       SENT; provider_id from a JSON `id`/`message_id`/`messageId`/
                              `msgid` (top level or under `data`/`result`), else the body
                              text when it is one short line
    2xx with a JSON failure   (`"success": false`, `"status"`/`"result"` error|failed|fail)
                              treated like a 400
    429                       RETRY, retry_after from Retry-After (seconds or HTTP date)
    408, 5xx, timeout, no connection
                              RETRY (Retry-After honoured when given)
    401, 403                  RETRY: our credentials; messages wait until an operator fixes them
    400, 404, 422, other 4xx  FAILED, or INVALID_ADDRESS when the body says the number is bad:
                              "invalid destination|number|msisdn|recipient|phone|to",
                              "unknown subscriber", "number is invalid", "дугаар буруу", ...
    3xx                       FAILED (a template pointing at a redirect is wrong)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import phonenumbers

from notify.senders.base import OutboundMessage, SendResult, SendStatus, retry_after_seconds
from notify.sms_parts import sms_encode_parts

logger = logging.getLogger(__name__)

# httpx logs every request URL at INFO, and ours carry the gateway password, the number and
# the text. Keep it quiet unless the logging settings say otherwise.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)

PLACEHOLDERS = ("text", "to", "to_digits", "to_national", "ref", "coding", "validity_minutes")
MAX_VALIDITY_SECONDS = 96 * 3600
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ADDRESS_WORDS = r"(?:destination|number(?!\s+of\b)|msisdn|recipient|receiver|phone|mobile|to\b)"
_INVALID_NUMBER = re.compile(
    rf"(?:invalid|unknown|bad|wrong|unroutable|malformed)[\s_'\"-]*{_ADDRESS_WORDS}"
    rf"|{_ADDRESS_WORDS}[\s\w'\"]{{0,20}}?(?:is\s+)?(?:invalid|not\s+valid|unknown|unroutable)"
    r"|unknown[\s_-]*subscriber"
    r"|буруу\s+дугаар|дугаар\s+буруу",
    re.IGNORECASE,
)
_JSON_ID_KEYS = ("id", "message_id", "messageId", "msgid", "msg_id")
_JSON_FAILED = {"error", "failed", "fail", "failure", "rejected"}


def invalid_number_said(body: str) -> bool:
    """Whether a gateway's refusal says the destination number itself is bad."""
    return bool(_INVALID_NUMBER.search(body))


class HttpSmsSender:
    kind = "sms"

    def __init__(self, template: str, *, timeout: float = 10.0,
                 connect_timeout: float = 5.0) -> None:
        names = set(_PLACEHOLDER.findall(template))
        unknown = names - set(PLACEHOLDERS)
        if unknown:
            raise ValueError(f"unknown SMS gateway URL placeholder(s): {sorted(unknown)}")
        if "text" not in names or not names & {"to", "to_digits", "to_national"}:
            raise ValueError("SMS gateway URL needs {text} and {to} (or {to_digits}, "
                             "{to_national})")
        if urlsplit(template).scheme not in ("http", "https"):
            raise ValueError("SMS gateway URL must be http:// or https://")
        self.template = template
        # A blocking client in worker threads, not an AsyncClient: an AsyncClient belongs to
        # one event loop, and the pipeline's async_to_sync runs each send in a new one. The
        # blocking client is thread-safe and keeps its connections across sends and loops.
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout), follow_redirects=False,
            headers={"User-Agent": "Sonor-SMS/1"})

    @classmethod
    def from_url(cls, template: str) -> HttpSmsSender:
        return cls(template)

    def close(self) -> None:
        self._client.close()

    def request_url(self, message: OutboundMessage) -> str:
        sms = sms_encode_parts(message.body)
        ttl = MAX_VALIDITY_SECONDS if message.ttl_seconds is None else message.ttl_seconds
        values = {
            "text": message.body,
            "to": message.address,
            "to_digits": message.address[1:],
            "to_national": _national(message.address),
            "ref": message.dedupe_key,
            "coding": "0" if sms.encoding == "gsm7" else "2",
            "validity_minutes": str(math.ceil(min(ttl, MAX_VALIDITY_SECONDS) / 60)),
        }
        return _PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe=""), self.template)

    async def send(self, message: OutboundMessage) -> SendResult:
        if not _E164.fullmatch(message.address):
            return SendResult(status=SendStatus.INVALID_ADDRESS,
                              detail="not an E.164 number", parts=0)
        parts = sms_encode_parts(message.body).count
        if parts == 0:
            return SendResult(status=SendStatus.FAILED, detail="empty SMS body", parts=0)
        if message.ttl_seconds is not None and message.ttl_seconds <= 0:
            return SendResult(status=SendStatus.FAILED, detail="validity expired", parts=0)
        try:
            response = await asyncio.to_thread(self._client.get, self.request_url(message))
        except httpx.TimeoutException as exc:
            return SendResult(status=SendStatus.RETRY, parts=0,
                              detail=f"SMS gateway timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return SendResult(status=SendStatus.RETRY, parts=0,
                              detail=f"SMS gateway unreachable: {type(exc).__name__}: {exc}")
        return _result(response, parts)


def _national(address: str) -> str:
    try:
        return phonenumbers.national_significant_number(phonenumbers.parse(address))
    except phonenumbers.NumberParseException:
        return address.lstrip("+")


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _provider_id(body: str, data: Any) -> str:
    if isinstance(data, dict):
        for scope in (data, data.get("data"), data.get("result")):
            if isinstance(scope, dict):
                for key in _JSON_ID_KEYS:
                    value = scope.get(key)
                    if isinstance(value, str | int) and not isinstance(value, bool):
                        return str(value)
        return ""
    text = body.strip()
    return text if text and len(text) <= 64 and "\n" not in text else ""


def _json_failure(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    if data.get("success") is False or data.get("ok") is False:
        return True
    return any(isinstance(data.get(key), str) and data[key].lower() in _JSON_FAILED
               for key in ("status", "result"))


def _result(response: httpx.Response, parts: int) -> SendResult:
    code = response.status_code
    body = response.text[:2000]
    said = " ".join(body.split())[:200]
    data = _json(body)
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    if 200 <= code < 300 and not _json_failure(data):
        return SendResult(status=SendStatus.SENT, provider_id=_provider_id(body, data),
                          parts=parts)
    if code == 429:
        return SendResult(status=SendStatus.RETRY, retry_after=retry_after, parts=0,
                          detail=f"SMS gateway throttled (429): {said}")
    if code == 408 or code >= 500:
        return SendResult(status=SendStatus.RETRY, retry_after=retry_after, parts=0,
                          detail=f"SMS gateway error ({code}): {said}")
    if code in (401, 403):
        return SendResult(status=SendStatus.RETRY, parts=0,
                          detail=f"SMS gateway refused our credentials ({code}): {said}")
    if 300 <= code < 400:
        return SendResult(status=SendStatus.FAILED, parts=0,
                          detail=f"SMS gateway redirected ({code}); check the URL")
    status = SendStatus.INVALID_ADDRESS if invalid_number_said(body) else SendStatus.FAILED
    return SendResult(status=status, parts=0, detail=f"SMS gateway refused ({code}): {said}")
