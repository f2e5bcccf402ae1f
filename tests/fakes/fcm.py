"""A local FCM: the OAuth2 token endpoint and the FCM HTTP v1 send endpoint on a loopback port.

    POST /token                                    JWT-bearer grant, assertion verified against
                                                   the test service account's key
    POST /v1/projects/{project}/messages:send      Bearer token checked, v1 body validated,
                                                   accepted messages recorded

`fail(token, "UNREGISTERED")` makes the send endpoint answer for that registration token with
FCM's own error body (status, google.rpc status, FcmError detail, Retry-After where FCM sends
one). `hold()` keeps send requests waiting until `release()`, so a test can count how many are
in flight at once. The `fcm_server` fixture writes a service-account JSON whose token_uri is the
fake's /token; `loopback_only` fails a test that tries to reach any other host.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PROJECT_ID = "sonor-test"
CLIENT_EMAIL = f"fcm-sender@{PROJECT_ID}.iam.gserviceaccount.com"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth puts Google's token endpoint in `aud` whatever the token_uri.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
FCM_SCOPES = {
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
}
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
TOKEN_LIFETIME_SECONDS = 3600
SEND_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/messages:send$")

_MESSAGE_FIELDS = {"name", "data", "notification", "android", "webpush", "apns",
                   "fcm_options", "token", "topic", "condition"}
_NOTIFICATION_FIELDS = {"title", "body", "image"}
_ANDROID_FIELDS = {"collapse_key", "priority", "ttl", "restricted_package_name", "data",
                   "notification", "fcm_options", "direct_boot_ok"}
_APNS_FIELDS = {"headers", "payload", "fcm_options", "live_activity_token"}
_RESERVED_DATA_KEYS = {"from", "message_type", "notification"}
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")


@dataclass(frozen=True)
class FcmError:
    """One error answer of the send endpoint, as FCM v1 writes it."""

    http_status: int
    rpc_status: str
    message: str
    error_code: str | None  # FcmError.errorCode; None for a plain Google API error
    extra_details: tuple[dict[str, Any], ...] = ()
    retry_after: str | None = None

    def body(self) -> dict[str, Any]:
        details = [*self.extra_details]
        if self.error_code is not None:
            details.insert(0, {"@type": FCM_ERROR_TYPE, "errorCode": self.error_code})
        return {"error": {"code": self.http_status, "message": self.message,
                          "status": self.rpc_status, "details": details}}


FCM_ERRORS: dict[str, FcmError] = {
    "UNREGISTERED": FcmError(404, "NOT_FOUND", "Requested entity was not found.",
                             "UNREGISTERED"),
    "INVALID_ARGUMENT": FcmError(
        400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
        "INVALID_ARGUMENT",
        ({"@type": "type.googleapis.com/google.rpc.BadRequest",
          "fieldViolations": [{"field": "message.token",
                               "description": "Invalid registration token"}]},)),
    "QUOTA_EXCEEDED": FcmError(
        429, "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
        "QUOTA_EXCEEDED", retry_after="30"),
    "UNAVAILABLE": FcmError(503, "UNAVAILABLE", "The service is currently unavailable.",
                            "UNAVAILABLE"),
    "INTERNAL": FcmError(500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
    "SENDER_ID_MISMATCH": FcmError(403, "PERMISSION_DENIED", "SenderId mismatch",
                                   "SENDER_ID_MISMATCH"),
    "THIRD_PARTY_AUTH_ERROR": FcmError(401, "UNAUTHENTICATED",
                                       "Auth error from APNS or Web Push Service",
                                       "THIRD_PARTY_AUTH_ERROR"),
}


def invalid_argument(message: str, field_path: str | None = None) -> FcmError:
    """A 400 INVALID_ARGUMENT, optionally naming the offending field."""
    extra: tuple[dict[str, Any], ...] = ()
    if field_path:
        extra = ({"@type": "type.googleapis.com/google.rpc.BadRequest",
                  "fieldViolations": [{"field": field_path, "description": message}]},)
    return FcmError(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT", extra)


def platform_error(http_status: int, rpc_status: str, message: str) -> FcmError:
    """An error of the Google API front end, with no FCM error code (bad credentials,
    missing permission, unknown project, a gateway's 502)."""
    return FcmError(http_status, rpc_status, message, None)


class _Invalid(Exception):
    def __init__(self, message: str, field_path: str | None = None) -> None:
        super().__init__(message)
        self.error = invalid_argument(message, field_path)


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class FakeFcm:
    """State of the fake; the handler threads update it under `lock`."""

    private_key: rsa.RSAPrivateKey
    project_id: str = PROJECT_ID
    client_email: str = CLIENT_EMAIL
    host: str = "127.0.0.1"
    port: int = 0
    credentials_path: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    token_requests: int = 0
    token_claims: list[dict[str, Any]] = field(default_factory=list)
    issued_tokens: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)  # accepted v1 messages
    names: list[str] = field(default_factory=list)  # the name answered for each of them
    requests_by_token: Counter[str] = field(default_factory=Counter)  # every send attempt
    request_headers: list[dict[str, str]] = field(default_factory=list)
    refused: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    arrivals: int = 0  # send requests received so far
    in_flight: int = 0  # send requests received and not yet answered
    max_in_flight: int = 0
    # (HTTP status, OAuth2 error body) to answer every token request with, e.g. invalid_grant
    token_failure: tuple[int, dict[str, Any]] | None = None
    _failures: dict[str, tuple[FcmError, int | None]] = field(default_factory=dict)
    _gate: threading.Event = field(default_factory=threading.Event)
    _serial: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._gate.set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def send_url(self) -> str:
        return f"{self.base_url}/v1/projects/{self.project_id}/messages:send"

    def fail(self, token: str, error: str | FcmError, *, retry_after: str | None = None,
             times: int | None = None) -> None:
        """Answer sends to `token` with an FCM error (`times` answers, or always)."""
        found = FCM_ERRORS[error] if isinstance(error, str) else error
        if retry_after is not None:
            found = FcmError(found.http_status, found.rpc_status, found.message,
                             found.error_code, found.extra_details, retry_after)
        with self.lock:
            self._failures[token] = (found, times)

    def hold(self) -> None:
        """Keep send requests waiting (they count in `in_flight`) until release()."""
        self._gate.clear()

    def release(self, *, hold_next: bool = False) -> None:
        """Let the waiting send requests go; with hold_next, later ones wait again."""
        gate = self._gate
        if hold_next:
            self._gate = threading.Event()
        gate.set()

    def accepted_tokens(self) -> Counter[str]:
        with self.lock:
            return Counter(message["token"] for message in self.messages)

    def wait_arrivals(self, count: int, timeout: float = 30.0) -> int:
        """Wait until `count` send requests have come in so far; returns how many have."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.arrivals >= count:
                    return self.arrivals
            time.sleep(0.01)
        with self.lock:
            return self.arrivals

    # -- the two endpoints ------------------------------------------------------------------

    def answer_token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        content_type = headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return 400, {"error": "invalid_request", "error_description": "form body expected"}
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = self._verified_claims(form.get("assertion", ""))
        except ValueError as error:
            return 400, {"error": "invalid_grant", "error_description": str(error)}
        if self.token_failure is not None:
            return self.token_failure
        token = f"fake-access-token-{next(self._serial)}"
        with self.lock:
            self.token_requests += 1
            self.token_claims.append(claims)
            self.issued_tokens.add(token)
        return 200, {"access_token": token, "expires_in": TOKEN_LIFETIME_SECONDS,
                     "token_type": "Bearer"}

    def _verified_claims(self, assertion: str) -> dict[str, Any]:
        parts = assertion.split(".")
        if len(parts) != 3:
            raise ValueError("assertion is not a JWT")
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        if header.get("alg") != "RS256":
            raise ValueError(f"unexpected alg {header.get('alg')!r}")
        if header.get("kid") != key_id(self.private_key):
            raise ValueError("unknown key id")
        try:
            self.private_key.public_key().verify(
                _b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode(),
                padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as error:
            raise ValueError("bad signature") from error
        now = time.time()
        if claims.get("iss") != self.client_email:
            raise ValueError("unexpected issuer")
        if claims.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, self.token_url):
            raise ValueError("unexpected audience")
        skew = 60
        if not (claims.get("iat", now + 2 * skew) <= now + skew
                and now - skew < claims.get("exp", 0) <= now + 3600 + skew):
            raise ValueError("assertion expired, not yet valid or living over an hour")
        if not FCM_SCOPES & set(str(claims.get("scope", "")).split()):
            raise ValueError("no scope allows FCM")
        return claims

    def answer_send(self, project: str, headers: dict[str, str],
                    body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        authorization = headers.get("authorization", "")
        with self.lock:
            authorized = (authorization.startswith("Bearer ")
                          and authorization.removeprefix("Bearer ") in self.issued_tokens)
        if not authorized:
            return 401, {"error": {
                "code": 401, "status": "UNAUTHENTICATED",
                "message": "Request had invalid authentication credentials."}}, {}
        if project != self.project_id:
            return 403, {"error": {"code": 403, "status": "PERMISSION_DENIED",
                                   "message": f"Permission denied on project {project}"}}, {}
        try:
            message = self._validated_message(body)
        except _Invalid as invalid:
            with self.lock:
                self.refused.append((400, invalid.error.body()))
            return 400, invalid.error.body(), {}
        token = message["token"]
        with self.lock:
            self.requests_by_token[token] += 1
            self.request_headers.append(headers)
            failure = self._failures.get(token)
            if failure is not None:
                error, times = failure
                if times is not None:
                    if times <= 1:
                        del self._failures[token]
                    else:
                        self._failures[token] = (error, times - 1)
        if failure is not None:
            extra = {"Retry-After": error.retry_after} if error.retry_after else {}
            return error.http_status, error.body(), extra
        name = f"projects/{self.project_id}/messages/{next(self._serial)}"
        with self.lock:
            self.messages.append(message)
            self.names.append(name)
        return 200, {"name": name}, {}

    def _validated_message(self, body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise _Invalid(f"Invalid JSON payload received. {error}") from error
        if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
            raise _Invalid("Invalid JSON payload received. 'message' is required.")
        _no_unknown(payload, {"message", "validate_only"}, "")
        message = payload["message"]
        _no_unknown(message, _MESSAGE_FIELDS, "message")
        targets = [key for key in ("token", "topic", "condition") if key in message]
        if targets != ["token"] or not isinstance(message["token"], str) or not message["token"]:
            raise _Invalid("Exactly one registration token is expected", "message.token")
        notification = message.get("notification", {})
        _string_map(notification, "message.notification")
        _no_unknown(notification, _NOTIFICATION_FIELDS, "message.notification")
        data = message.get("data", {})
        _string_map(data, "message.data")  # FCM refuses any value that is not a string
        for key in data:
            if key in _RESERVED_DATA_KEYS or key.startswith(("google.", "gcm.")):
                raise _Invalid(f"Invalid data payload key: {key}", "message.data")
        android = message.get("android", {})
        if not isinstance(android, dict):
            raise _Invalid("android must be an object", "message.android")
        _no_unknown(android, _ANDROID_FIELDS, "message.android")
        if android.get("priority", "normal").lower() not in ("normal", "high"):
            raise _Invalid("Invalid value at 'message.android.priority'",
                           "message.android.priority")
        if "ttl" in android and not _DURATION.match(str(android["ttl"])):
            raise _Invalid("Invalid value at 'message.android.ttl'", "message.android.ttl")
        if not isinstance(android.get("collapse_key", ""), str):
            raise _Invalid("Invalid value at 'message.android.collapse_key'",
                           "message.android.collapse_key")
        apns = message.get("apns", {})
        if not isinstance(apns, dict):
            raise _Invalid("apns must be an object", "message.apns")
        _no_unknown(apns, _APNS_FIELDS, "message.apns")
        apns_headers = apns.get("headers", {})
        _string_map(apns_headers, "message.apns.headers")
        if apns_headers.get("apns-priority", "10") not in ("5", "10"):
            raise _Invalid("Invalid APNs priority", "message.apns.headers")
        if not apns_headers.get("apns-expiration", "0").isdigit():
            raise _Invalid("Invalid APNs expiration", "message.apns.headers")
        if len(apns_headers.get("apns-collapse-id", "").encode()) > 64:
            raise _Invalid("apns-collapse-id is longer than 64 bytes", "message.apns.headers")
        if _payload_bytes(notification, data) > 4096:
            raise _Invalid("Message is too big")
        return message


def _no_unknown(value: dict[str, Any], known: set[str], path: str) -> None:
    for key in value:
        if key not in known:
            where = f"{path}.{key}" if path else key
            raise _Invalid(
                f'Invalid JSON payload received. Unknown name "{key}" at \'{path}\': '
                "Cannot find field.", where)


def _payload_bytes(*maps: dict[str, str]) -> int:
    """What FCM counts against its 4 KiB limit: the text itself, not its JSON escaping."""
    return sum(len(key.encode()) + len(value.encode()) for m in maps for key, value in m.items())


def _string_map(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(f"Invalid value at '{path}': expected an object", path)
    for key, item in value.items():
        if not isinstance(item, str):
            raise _Invalid(f"Invalid value at '{path}[{key}]' (TYPE_STRING), {item!r}",
                           f"{path}[{key}]")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {key.lower(): value for key, value in self.headers.items()}
        if self.path == "/token":
            status, answer = fake.answer_token(headers, body)
            self._reply(status, answer)
            return
        match = SEND_PATH.match(self.path)
        if match is None:
            self._reply(404, {"error": {"code": 404, "status": "NOT_FOUND",
                                        "message": f"no route {self.path}"}})
            return
        gate = fake._gate
        with fake.lock:
            fake.arrivals += 1
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            gate.wait(timeout=60)
            status, answer, extra = fake.answer_send(match["project"], headers, body)
        finally:
            with fake.lock:
                fake.in_flight -= 1
        self._reply(status, answer, extra)

    def _reply(self, status: int, answer: dict[str, Any],
               extra: dict[str, str] | None = None) -> None:
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a send_each chunk opens up to 500 connections at once

    def __init__(self, fake: FakeFcm) -> None:
        super().__init__((fake.host, 0), _Handler)
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """End idle keep-alive connections, so that their handler threads end too."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def key_id(private_key: rsa.RSAPrivateKey) -> str:
    public = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA1())  # like Google's key ids: a hex fingerprint
    digest.update(public)
    return digest.finalize().hex()


_signing_key: rsa.RSAPrivateKey | None = None


def signing_key() -> rsa.RSAPrivateKey:
    """The service account's key, one per test run: 2048-bit keys are slow to make."""
    global _signing_key
    if _signing_key is None:
        _signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _signing_key


def service_account_info(fake: FakeFcm) -> dict[str, str]:
    pem = fake.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    return {
        "type": "service_account",
        "project_id": fake.project_id,
        "private_key_id": key_id(fake.private_key),
        "private_key": pem,
        "client_email": fake.client_email,
        "client_id": "100000000000000000001",
        "auth_uri": f"{fake.base_url}/auth",
        "token_uri": fake.token_url,
        "auth_provider_x509_cert_url": f"{fake.base_url}/certs",
        "client_x509_cert_url": f"{fake.base_url}/certs/{fake.client_email}",
        "universe_domain": "googleapis.com",
    }


def start_fake(directory: Path) -> tuple[FakeFcm, _Server, threading.Thread]:
    fake = FakeFcm(private_key=signing_key())
    server = _Server(fake)
    fake.port = server.server_address[1]
    fake.credentials_path = directory / "fcm-service-account.json"
    fake.credentials_path.write_text(json.dumps(service_account_info(fake)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="fake-fcm", daemon=True)
    thread.start()
    return fake, server, thread


def stop_fake(fake: FakeFcm, server: _Server, thread: threading.Thread) -> None:
    fake.release()
    server.shutdown()
    server.close_connections()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def fcm_server(tmp_path: Path) -> Iterator[FakeFcm]:
    """A running fake FCM; `credentials_path` is a service account that trusts it."""
    fake, server, thread = start_fake(tmp_path)
    try:
        yield fake
    finally:
        stop_fake(fake, server, thread)


_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    return host in _LOOPBACK_NAMES or host.startswith("127.")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse, and remember, every attempt to resolve or reach a host other than loopback,
    from any thread (google-auth makes some lookups on background threads)."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            attempts.append(f"resolve {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"test: no internet ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            attempts.append(f"connect {address}")
            raise OSError(f"test: no internet ({address})")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            attempts.append(f"connect {address}")
            return 101  # ENETUNREACH
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    time.sleep(0.1)  # let background lookups started by the test show up
    assert attempts == [], f"tried to leave the machine: {attempts}"
