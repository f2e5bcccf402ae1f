"""A local HTTP SMS gateway (stdlib http.server in a thread): records every request and
answers what the test told it to, by default 200 with a JSON message id."""

import itertools
import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass(frozen=True)
class GatewayRequest:
    method: str
    path: str
    raw_query: str  # as it came over the wire, percent-encoded
    query: dict[str, str]  # decoded strictly as UTF-8
    headers: dict[str, str]
    client_port: int  # the same port again means a kept-alive connection


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False  # hold the request until the gateway stops


class FakeSmsGateway:
    def __init__(self) -> None:
        self.requests: list[GatewayRequest] = []
        self._ids = itertools.count(1)
        self._queued: deque[GatewayResponse] = deque()
        self._default: GatewayResponse | None = None
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        host, self.port = self._server.server_address[:2]
        self.host = str(host)  # an IPv4 address (the type also allows bytes)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-sms-gateway", daemon=True)

    def start(self) -> "FakeSmsGateway":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def url(self, query: str = "to={to}&text={text}", path: str = "/send") -> str:
        """A send URL template as an operator would configure it, credentials included."""
        return f"http://{self.host}:{self.port}{path}?user=sonor&pass=p%40ss&{query}"

    def respond(self, status: int, body: str = "", headers: dict[str, str] | None = None,
                *, always: bool = False, hang: bool = False) -> None:
        """The answer to the next request (or to every one, with always=True)."""
        response = GatewayResponse(status, body, tuple((headers or {}).items()), hang)
        with self._lock:
            if always:
                self._default = response
            else:
                self._queued.append(response)

    def _next_response(self) -> GatewayResponse:
        with self._lock:
            if self._queued:
                return self._queued.popleft()
            if self._default is not None:
                return self._default
        body = json.dumps({"status": "ok", "id": f"gw-{next(self._ids)}"})
        return GatewayResponse(200, body, (("Content-Type", "application/json"),))

    def _record(self, handler: BaseHTTPRequestHandler) -> GatewayResponse:
        split = urlsplit(handler.path)
        query = {key: values[0] for key, values in parse_qs(
            split.query, keep_blank_values=True, encoding="utf-8", errors="strict").items()}
        with self._lock:
            self.requests.append(GatewayRequest(
                handler.command, split.path, split.query, query, dict(handler.headers.items()),
                handler.client_address[1]))
        response = self._next_response()
        if response.hang:
            self._release.wait()
        return response


def _handler_for(gateway: FakeSmsGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            response = gateway._record(self)
            body = response.body.encode("utf-8")
            try:
                self.send_response(response.status)
                for name, value in response.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def sms_gateway() -> Iterator[FakeSmsGateway]:
    gateway = FakeSmsGateway().start()
    yield gateway
    gateway.stop()
