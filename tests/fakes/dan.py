"""A local DAN (the national SSO) on a loopback port, speaking the endpoints a service meets.

    GET  /oauth2/authorize        checks client_id and redirect_uri, decodes the scope (base64
                                  of a JSON list of registry services), shows a consent page: the
                                  tester picks or types the citizen (register number, names)
    POST /oauth2/authorize        "allow" redirects back with a code, "deny" with
                                  error=access_denied; the state comes back as it went
    POST /oauth2/token            authorization_code grant: client id and secret (form or
                                  Basic), the redirect_uri of the authorization, PKCE S256 when
                                  a challenge was sent; a code is single use and short-lived
    GET  /oauth2/api/v1/service   Bearer token -> a JSON list: the login record, then the
                                  ID card service's answer

What the tester types goes into the answer as is (an empty or malformed register number
too), so that a service's checks can be tried. `hold()` keeps token requests waiting until
`release()` (a slow DAN). Run alone for the demo, from the repository root:

    SONOR_DAN_CLIENT_ID=sonor-demo SONOR_DAN_CLIENT_SECRET=S \\
    SONOR_DAN_REDIRECT_URL=http://127.0.0.1:8000/dan/callback \\
        python -m tests.fakes.dan --port 8001 --citizen "УБ99011512:Батын:Бат-Эрдэнэ"
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import html
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CITIZEN_SERVICE = "WS100101_getCitizenIDCardInfo"
TOKEN_LIFETIME_SECONDS = 600


@dataclass(frozen=True)
class Citizen:
    register_number: str
    lastname: str
    firstname: str


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    services: list[dict[str, Any]]
    citizen: Citizen
    expires_at: float
    used: bool = False


@dataclass
class FakeDan:
    client_id: str = "sonor-test"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redirect_uri: str = ""  # the one registered for the client: exact match
    citizens: list[Citizen] = field(default_factory=list)  # offered on the consent page
    code_ttl: float = 60.0
    port: int = 0

    def __post_init__(self) -> None:
        self.token_requests: list[dict[str, str]] = []  # form fields as received
        self._grants: dict[str, _Grant] = {}
        self._tokens: dict[str, tuple[_Grant, float]] = {}
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, name="fake-dan",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeDan:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def hold(self) -> None:
        """Token requests wait (unanswered) until release() or stop()."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    # ---- the protocol ----------------------------------------------------------------------

    def _client_checked(self, query: dict[str, str]) -> str | None:
        """Why an authorization request cannot even be answered by a redirect, or None."""
        if query.get("client_id") != self.client_id:
            return "unknown client_id"
        if not self.redirect_uri or query.get("redirect_uri") != self.redirect_uri:
            return "redirect_uri is not the one registered for this client"
        return None

    def issue_code(self, query: dict[str, str], citizen: Citizen) -> str:
        code = secrets.token_urlsafe(24)
        services = json.loads(base64.b64decode(query.get("scope", ""), validate=True))
        with self._lock:
            self._grants[code] = _Grant(
                client_id=query["client_id"], redirect_uri=query["redirect_uri"],
                code_challenge=query.get("code_challenge", ""), services=services,
                citizen=citizen, expires_at=time.monotonic() + self.code_ttl)
        return code

    def exchange(self, form: dict[str, str], basic: tuple[str, str] | None
                 ) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(dict(form))
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if client_id != self.client_id or not hmac.compare_digest(secret.encode(),
                                                                    self.client_secret.encode()):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self._grants.get(form.get("code", ""))
            if grant is None or grant.client_id != client_id:
                return 400, {"error": "invalid_grant", "error_description": "unknown code"}
            if grant.used:
                return 400, {"error": "invalid_grant", "error_description": "code already used"}
            grant.used = True
        if time.monotonic() > grant.expires_at:
            return 400, {"error": "invalid_grant", "error_description": "code expired"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        if grant.code_challenge:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if not hmac.compare_digest(digest.rstrip(b"="), grant.code_challenge.encode()):
                return 400, {"error": "invalid_grant", "error_description": "PKCE failed"}
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (grant, time.monotonic() + TOKEN_LIFETIME_SECONDS)
        return 200, {"access_token": token, "token_type": "bearer",
                     "expires_in": TOKEN_LIFETIME_SECONDS}

    def service_answer(self, token: str) -> tuple[int, Any]:
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or time.monotonic() > entry[1]:
            return 401, {"error": "invalid_token"}
        grant = entry[0]
        citizen = grant.citizen
        card: dict[str, Any] = {"lastname": citizen.lastname, "firstname": citizen.firstname,
                                "surname": "", "gender": "", "birthDateAsText": ""}
        if citizen.register_number:
            card["regnum"] = citizen.register_number
        answer: list[Any] = [{"citizen_loginType": 2,
                              "citizen_loginDate": time.strftime("%Y-%m-%d %H:%M:%S")}]
        for wanted in grant.services:
            names = wanted.get("services", []) if isinstance(wanted, dict) else []
            answer.append({"wsdl": wanted.get("wsdl", ""), "services": {
                name: ({"request": {}, "response": card, "resultCode": 0,
                        "resultMessage": "амжилттай"} if name == CITIZEN_SERVICE else
                       {"request": {}, "response": None, "resultCode": 100,
                        "resultMessage": "сервис олдсонгүй"})
                for name in names}})
        return 200, answer


def _consent_page(dan: FakeDan, query: dict[str, str]) -> str:
    try:
        services = json.loads(base64.b64decode(query.get("scope", ""), validate=True))
        names = [name for item in services for name in item["services"]]
    except (ValueError, binascii.Error, KeyError, TypeError):
        names = ["?"]
    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in query.items())
    first = dan.citizens[0] if dan.citizens else Citizen("", "", "")
    options = "".join(f'<option value="{html.escape(c.register_number)}">'
                      f'{html.escape(c.lastname)} {html.escape(c.firstname)}</option>'
                      for c in dan.citizens)
    return f"""<!doctype html><html lang="mn"><head><meta charset="utf-8">
<title>ДАН (local test peer)</title></head><body>
<h1>ДАН · нэвтрэх зөвшөөрөл <small>(local DAN for development and tests)</small></h1>
<p>Үйлчилгээ <code>{html.escape(query.get("client_id", ""))}</code> таны мэдээллийг авахыг
хүсэж байна: <code>{html.escape(", ".join(names))}</code></p>
<form method="post" action="/oauth2/authorize">{hidden}
<p><label>Регистрийн дугаар (register number)
<input name="regnum" list="citizens" value="{html.escape(first.register_number)}"></label></p>
<datalist id="citizens">{options}</datalist>
<p><label>Эцэг/эхийн нэр (surname)
<input name="lastname" value="{html.escape(first.lastname)}"></label></p>
<p><label>Нэр (given name)
<input name="firstname" value="{html.escape(first.firstname)}"></label></p>
<button type="submit" name="decision" value="allow">Зөвшөөрөх (allow)</button>
<button type="submit" name="decision" value="deny">Татгалзах (deny)</button>
</form></body></html>"""


def _handler_for(dan: FakeDan) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: str, content_type: str,
                  headers: tuple[tuple[str, str], ...] = ()) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload, ensure_ascii=False), "application/json")

        def _redirect(self, redirect_uri: str, params: dict[str, str]) -> None:
            joiner = "&" if urlsplit(redirect_uri).query else "?"
            self._send(302, "", "text/plain",
                       (("Location", f"{redirect_uri}{joiner}{urlencode(params)}"),))

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            if url.path == "/oauth2/authorize":
                problem = dan._client_checked(query)
                if problem:  # RFC 6749 4.1.2.1: never redirect to an unchecked address
                    self._send(400, problem, "text/plain; charset=utf-8")
                elif query.get("response_type") != "code":
                    self._redirect(query["redirect_uri"], {"error": "unsupported_response_type",
                                                           "state": query.get("state", "")})
                else:
                    self._send(200, _consent_page(dan, query), "text/html; charset=utf-8")
            elif url.path == "/oauth2/api/v1/service":
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                self._json(*dan.service_answer(token if scheme.lower() == "bearer" else ""))
            else:
                self._send(404, "not found", "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            form = self._form()
            if url.path == "/oauth2/authorize":
                problem = dan._client_checked(form)
                if problem:
                    self._send(400, problem, "text/plain; charset=utf-8")
                    return
                params = {"state": form.get("state", "")}
                if form.get("decision") == "allow":
                    citizen = Citizen(form.get("regnum", "").strip(), form.get("lastname", ""),
                                      form.get("firstname", ""))
                    fields = {k: v for k, v in form.items()
                              if k not in {"regnum", "lastname", "firstname", "decision"}}
                    try:
                        params["code"] = dan.issue_code(fields, citizen)
                    except (ValueError, binascii.Error):
                        params["error"] = "invalid_scope"
                else:
                    params["error"] = "access_denied"
                self._redirect(form["redirect_uri"], params)
            elif url.path == "/oauth2/token":
                dan._released.wait(60)
                basic = None
                scheme, _, value = self.headers.get("Authorization", "").partition(" ")
                if scheme.lower() == "basic":
                    user, _, password = base64.b64decode(value).decode().partition(":")
                    basic = (user, password)
                self._json(*dan.exchange(form, basic))
            else:
                self._send(404, "not found", "text/plain")

    return Handler


@contextmanager
def running(**options: Any) -> Iterator[FakeDan]:
    dan = FakeDan(**options).start()
    try:
        yield dan
    finally:
        dan.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description="A local DAN peer for development. The client's id, secret and redirect "
                    "address default to the server's SONOR_DAN_* variables.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", default=os.environ.get("SONOR_DAN_CLIENT_ID"))
    parser.add_argument("--client-secret", default=os.environ.get("SONOR_DAN_CLIENT_SECRET"))
    parser.add_argument("--redirect-uri", default=os.environ.get("SONOR_DAN_REDIRECT_URL"))
    parser.add_argument("--citizen", action="append", default=[],
                        help="REGISTER:SURNAME:GIVEN_NAME, offered on the consent page")
    args = parser.parse_args()
    if not (args.client_id and args.client_secret and args.redirect_uri):
        parser.error("the client id, secret and redirect address are required")
    citizens = [Citizen(*(c.split(":", 2) + ["", ""])[:3]) for c in args.citizen]
    dan = FakeDan(client_id=args.client_id, client_secret=args.client_secret,
                  redirect_uri=args.redirect_uri, citizens=citizens, port=args.port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"local DAN on {dan.url}", flush=True)
    stop.wait()
    dan.stop()


if __name__ == "__main__":
    main()
