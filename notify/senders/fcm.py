"""Push through Firebase Cloud Messaging (HTTP v1) with firebase-admin.

    send / send_many --to_thread--> firebase-admin (sync, requests; send_each = one request per
                                    message on its own threads, at most 500 per call)
                                        |  OAuth2 JWT grant at the service account's token_uri
                                        v  POST {FCM_URL}/v1/projects/{project}/messages:send
                                    FCM answer or FirebaseError --> SendResult

The service account's `token_uri` and SONOR_FCM_URL point the whole exchange elsewhere
(staging, tests); firebase-admin takes its send URL from the class attribute
`messaging._MessagingService.FCM_URL` when the messaging service of an app is built, so we
build ours eagerly with the attribute set, then put the attribute back.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import firebase_admin  # type: ignore[import-untyped]
import google.auth.exceptions
import google.auth.transport.requests
import requests
from django.conf import settings
from firebase_admin import exceptions as fb_exceptions  # type: ignore[import-untyped]
from firebase_admin import messaging  # type: ignore[import-untyped]
from google.oauth2 import service_account
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from notify.senders.base import OutboundMessage, SendResult, SendStatus, retry_after_seconds

logger = logging.getLogger(__name__)

# firebase-admin refuses more than 500 messages in one send_each call.
CHUNK_SIZE = 500
FCM_SCOPES = ("https://www.googleapis.com/auth/firebase.messaging",)
HIGH_PRIORITY_CATEGORIES = frozenset({"security", "chat"})
MAX_TTL_SECONDS = 28 * 24 * 3600  # FCM keeps a message four weeks at most
# FCM refuses payloads over 4 KiB; a push shows a preview, the inbox holds the full text.
MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 1000
APNS_COLLAPSE_ID_MAX_BYTES = 64
GOOGLE_FCM_HOST = "fcm.googleapis.com"
HTTP_TIMEOUT_SECONDS = 30

_app_serial = itertools.count(1)
# FCM_URL is a class attribute, read when an app's messaging service is built: hold it for
# the time of building ours.
_fcm_url_lock = threading.Lock()


class _OffGoogleServiceAccountCredentials(service_account.Credentials):
    """A service account whose tokens come from a non-Google token endpoint (staging, tests).

    Recent google-auth looks up a "regional access boundary" at iamcredentials.googleapis.com
    in a background thread after the first request, sending the access token along. A token
    from our own endpoint means nothing to Google and must not leave the machine.
    """

    def _is_regional_access_boundary_lookup_required(self) -> bool:
        return False


def fcm_url_template(url: str) -> str:
    """SONOR_FCM_URL as firebase-admin's FCM_URL template (`{0}` = project id).

    Accepts a base URL (`http://127.0.0.1:9099`), a template with `{project_id}` or `{0}`,
    or the complete send URL of one project.
    """
    if "{project_id}" in url:
        return url.replace("{project_id}", "{0}")
    if "{0}" in url:
        return url
    if urlsplit(url).path in ("", "/"):
        return url.rstrip("/") + "/v1/projects/{0}/messages:send"
    return url.replace("{", "{{").replace("}", "}}")


def _is_google_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "googleapis.com" or host.endswith(".googleapis.com")


class FcmSender:
    """Sends pushes to FCM registration tokens; one named firebase_admin App per sender."""

    kind = "push"

    def __init__(
        self,
        service_account_info: dict[str, Any],
        *,
        fcm_url: str = "",
        timeout: float = HTTP_TIMEOUT_SECONDS,
    ) -> None:
        project_id = service_account_info.get("project_id") or ""
        if not project_id:
            raise ValueError("the FCM service account has no project_id")
        template = fcm_url_template(fcm_url) if fcm_url else messaging._MessagingService.FCM_URL
        self.send_url: str = template.format(project_id)
        token_uri = service_account_info.get("token_uri", "")
        off_google = not (_is_google_host(token_uri) and _is_google_host(self.send_url))
        credentials_class = (
            _OffGoogleServiceAccountCredentials if off_google else service_account.Credentials
        )
        self._credential = credentials_class.from_service_account_info(
            service_account_info, scopes=list(FCM_SCOPES))
        # Passing options stops firebase-admin from reading FIREBASE_CONFIG; passing the
        # project id stops it from looking anywhere else.
        self._app = firebase_admin.initialize_app(
            self._credential,
            options={"projectId": project_id, "httpTimeout": timeout},
            name=f"sonor-fcm-{next(_app_serial)}",
        )
        try:
            self._service = self._build_service(fcm_url)
        except Exception:
            firebase_admin.delete_app(self._app)
            raise
        self._token_lock = threading.Lock()
        self._token_transport = google.auth.transport.requests.Request()
        self._token_request = functools.partial(self._token_transport, timeout=timeout)
        self._closed = False

    @classmethod
    def from_settings(cls) -> FcmSender:
        path = Path(settings.SONOR_FCM_CREDENTIALS)
        info = json.loads(path.read_text(encoding="utf-8"))
        return cls(info, fcm_url=settings.SONOR_FCM_URL)

    def _build_service(self, fcm_url: str) -> Any:
        service_class = messaging._MessagingService
        with _fcm_url_lock:
            default_template = service_class.FCM_URL
            if fcm_url:
                service_class.FCM_URL = fcm_url_template(fcm_url)
            try:
                service = messaging._get_messaging_service(self._app)
            finally:
                service_class.FCM_URL = default_template
        if fcm_url and getattr(service, "_fcm_url", None) != self.send_url:
            # Sending to Google from staging or tests would be worse than not starting.
            raise RuntimeError(
                "this firebase-admin version no longer takes its send URL from "
                "messaging._MessagingService.FCM_URL; SONOR_FCM_URL cannot be honoured")
        session = getattr(getattr(service, "_client", None), "session", None)
        if isinstance(session, requests.Session):
            # Keep-alive for a whole send_each chunk, and no retries inside the library: it
            # would retry 500/503 four times with backoff (and sleep out a 503's Retry-After)
            # on a worker thread, and resend after a read error. The pipeline owns retries.
            # A refused connection sent nothing, so one more try is safe.
            session.mount(self.send_url, HTTPAdapter(
                pool_connections=1, pool_maxsize=CHUNK_SIZE,
                max_retries=Retry(total=None, connect=1, read=0, redirect=0, status=0,
                                  other=0, raise_on_status=False),
            ))
        else:
            logger.warning("firebase-admin's HTTP session not found; library retries apply")
        return service

    # -- sending ----------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        return (await self.send_many([message]))[0]

    async def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Results in the order of `messages`; chunks of CHUNK_SIZE, one after the other."""
        results: list[SendResult] = []
        for start in range(0, len(messages), CHUNK_SIZE):
            chunk = messages[start:start + CHUNK_SIZE]
            results.extend(await asyncio.to_thread(self._send_chunk, chunk))
        return results

    def _send_chunk(self, chunk: Sequence[OutboundMessage]) -> list[SendResult]:
        results: list[SendResult | None] = [None] * len(chunk)
        to_send: list[tuple[int, messaging.Message]] = []
        for index, outbound in enumerate(chunk):
            if not outbound.address:
                results[index] = SendResult(SendStatus.INVALID_ADDRESS, detail="empty token")
                continue
            fcm_message = build_message(outbound)
            try:
                # Encoding is where firebase-admin validates; one bad message would otherwise
                # fail the whole send_each call.
                messaging._MessagingService.encode_message(fcm_message)
            except ValueError as error:
                results[index] = SendResult(SendStatus.FAILED, detail=f"invalid message: {error}")
                continue
            to_send.append((index, fcm_message))
        if to_send:
            for (index, _), result in zip(to_send, self._send_each([m for _, m in to_send]),
                                          strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _send_each(self, fcm_messages: list[messaging.Message]) -> list[SendResult]:
        try:
            self._ensure_token()
            if len(fcm_messages) == 1:
                name = messaging.send(fcm_messages[0], app=self._app)
                return [SendResult(SendStatus.SENT, provider_id=name)]
            batch = messaging.send_each(fcm_messages, app=self._app)
        except (fb_exceptions.FirebaseError, google.auth.exceptions.GoogleAuthError,
                requests.RequestException, OSError) as error:
            return [result_for_error(error)] * len(fcm_messages)
        return [
            SendResult(SendStatus.SENT, provider_id=response.message_id) if response.success
            else result_for_error(response.exception)
            for response in batch.responses
        ]

    def _ensure_token(self) -> None:
        """Fetch the access token once for all threads of a chunk.

        google-auth refreshes an invalid token in every request that finds it so, without a
        lock: a first chunk of 500 would fetch 500 tokens.
        """
        with self._token_lock:
            if not self._credential.valid:
                self._credential.refresh(self._token_request)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Delete the firebase_admin App and close its connections."""
        if self._closed:
            return
        self._closed = True
        session = getattr(getattr(self._service, "_client", None), "session", None)
        # firebase-admin's cleanup calls asyncio.run(): keep it off any running loop.
        worker = threading.Thread(target=firebase_admin.delete_app, args=(self._app,))
        worker.start()
        worker.join()
        if isinstance(session, requests.Session):
            session.close()
        self._token_transport.session.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


# -- mapping ---------------------------------------------------------------------------------


def build_message(outbound: OutboundMessage) -> messaging.Message:
    """Our message as an FCM v1 message: notification, data, Android and APNs options."""
    high = outbound.category in HIGH_PRIORITY_CATEGORIES
    data = dict(outbound.data)
    # Data values must be strings; ours win over anything of the same name in `data`.
    if outbound.category:
        data["category"] = outbound.category
    if outbound.link:
        data["link"] = outbound.link
    ttl = None
    if outbound.ttl_seconds is not None:
        ttl = min(max(int(outbound.ttl_seconds), 0), MAX_TTL_SECONDS)
    apns_headers = {"apns-priority": "10" if high else "5"}
    if outbound.collapse_key:
        apns_headers["apns-collapse-id"] = _apns_collapse_id(outbound.collapse_key)
    if ttl is not None:
        # 0 tells APNs to try once and not store the notification.
        apns_headers["apns-expiration"] = str(int(time.time()) + ttl) if ttl else "0"
    shown = bool(outbound.title or outbound.body)  # else a data-only message (e.g. a clear)
    fcm_message = messaging.Message(
        notification=messaging.Notification(
            title=_clip(outbound.title, MAX_TITLE_CHARS) or None,
            body=_clip(outbound.body, MAX_BODY_CHARS) or None,
        ) if shown else None,
        data={str(key): str(value) for key, value in data.items()} or None,
        android=messaging.AndroidConfig(
            priority="high" if high else "normal",
            collapse_key=outbound.collapse_key or None,
            ttl=ttl,
            # The tag makes the device replace a shown notification with the same key.
            notification=(messaging.AndroidNotification(tag=outbound.collapse_key)
                          if outbound.collapse_key and shown else None),
        ),
        apns=messaging.APNSConfig(headers=apns_headers),
    )
    # Devices register FCM registration tokens, which the v1 API takes as `message.token`.
    # firebase-admin 7.7 deprecates the `token=` argument for installation ids (`fid`) and
    # warns on every message; setting the attribute skips the warning, the encoder reads it.
    fcm_message.token = outbound.address
    return fcm_message


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _apns_collapse_id(key: str) -> str:
    if len(key.encode()) <= APNS_COLLAPSE_ID_MAX_BYTES:
        return key
    return hashlib.sha256(key.encode()).hexdigest()  # 64 hex characters


def result_for_error(error: BaseException | None) -> SendResult:
    """The SendResult for a failed send (see the table in the module's tests)."""
    if isinstance(error, messaging.UnregisteredError):
        return SendResult(SendStatus.INVALID_ADDRESS, detail=_detail(error))
    if isinstance(error, fb_exceptions.InvalidArgumentError):
        status = SendStatus.INVALID_ADDRESS if _about_token(error) else SendStatus.FAILED
        return SendResult(status, detail=_detail(error))
    if isinstance(error, messaging.SenderIdMismatchError | messaging.ThirdPartyAuthError):
        # The token belongs to another project, or APNs / web push refused our credentials.
        logger.error("FCM refused a push: %s", _detail(error))
        return SendResult(SendStatus.FAILED, detail=_detail(error))
    if isinstance(error, fb_exceptions.FirebaseError):
        status_code = _http_status(error)
        retryable = isinstance(error, (
            fb_exceptions.ResourceExhaustedError, fb_exceptions.UnavailableError,
            fb_exceptions.InternalError, fb_exceptions.DeadlineExceededError,
            # Our own credentials refused (after google-auth refreshed them) or lacking a
            # permission: nothing wrong with the message, and an operator can fix it.
            fb_exceptions.UnauthenticatedError, fb_exceptions.PermissionDeniedError,
        ))
        if retryable or status_code is None or status_code >= 500:
            if isinstance(error, fb_exceptions.UnauthenticatedError
                          | fb_exceptions.PermissionDeniedError):
                logger.error("FCM refused our credentials: %s", _detail(error))
            return SendResult(SendStatus.RETRY, detail=_detail(error),
                              retry_after=_retry_after(error))
        return SendResult(SendStatus.FAILED, detail=_detail(error))
    if isinstance(error, google.auth.exceptions.GoogleAuthError):
        # The OAuth exchange failed (token endpoint down, key refused): not the message's fault.
        logger.error("FCM access token not obtained: %s", error)
        return SendResult(SendStatus.RETRY, detail=f"oauth: {error}")
    # Network errors before firebase-admin could wrap them.
    return SendResult(SendStatus.RETRY, detail=f"network: {error}")


def _response_error(error: fb_exceptions.FirebaseError) -> dict[str, Any]:
    response = error.http_response
    if response is None:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    found = body.get("error") if isinstance(body, dict) else None
    return found if isinstance(found, dict) else {}


def _fcm_error_code(error: fb_exceptions.FirebaseError) -> str:
    for item in _response_error(error).get("details") or []:
        if isinstance(item, dict) and item.get("@type", "").endswith("fcm.v1.FcmError"):
            return str(item.get("errorCode", ""))
    return ""


def _about_token(error: fb_exceptions.FirebaseError) -> bool:
    """Whether an INVALID_ARGUMENT answer is about the registration token itself."""
    for item in _response_error(error).get("details") or []:
        for violation in (item.get("fieldViolations") or []) if isinstance(item, dict) else []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                return True
    # FCM's words: "The registration token is not a valid FCM registration token".
    return "registration token" in str(error).lower()


def _http_status(error: fb_exceptions.FirebaseError) -> int | None:
    response = error.http_response
    return getattr(response, "status_code", None) if response is not None else None


def _detail(error: fb_exceptions.FirebaseError) -> str:
    code = _fcm_error_code(error) or str(error.code)
    status_code = _http_status(error)
    prefix = f"{status_code} {code}" if status_code else code
    return f"{prefix}: {error}"[:500]


def _retry_after(error: fb_exceptions.FirebaseError) -> float | None:
    response = error.http_response
    value = response.headers.get("Retry-After") if response is not None else None
    return retry_after_seconds(value)
