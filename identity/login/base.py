"""Login methods behind one interface, so that the web page can ask which ones to offer.

    qr    always: a logged-in device approves a code shown by the web page (identity.login.qr)
    demo  only with SONOR_DEMO=1: one-time demo links (identity.login.demo)
    dan   only when SONOR_DAN_* is configured: the national SSO (identity.login.dan)

Every method ends in identity.services.session_create(login_method=<name>, ...).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from identity.login.errors import LoginMethodUnavailable


class LoginMethod(Protocol):
    @property
    def name(self) -> str: ...

    def is_enabled(self) -> bool: ...


@dataclass(frozen=True)
class SimpleLoginMethod:
    """A login method whose availability is one check of the settings."""

    name: str
    enabled_when: Callable[[], bool]

    def is_enabled(self) -> bool:
        return self.enabled_when()


def _registered() -> tuple[LoginMethod, ...]:
    from identity.login.dan import dan_configured  # dan reads settings; keep imports lazy

    return (
        SimpleLoginMethod(name="qr", enabled_when=lambda: True),
        SimpleLoginMethod(name="demo", enabled_when=lambda: bool(settings.SONOR_DEMO)),
        SimpleLoginMethod(name="dan", enabled_when=dan_configured),
    )


def login_methods() -> list[LoginMethod]:
    """The login methods enabled on this server, in the order a page should offer them."""
    return [method for method in _registered() if method.is_enabled()]


def login_method_get(*, name: str) -> LoginMethod:
    """An enabled login method by name, or LoginMethodUnavailable."""
    for method in login_methods():
        if method.name == name:
            return method
    raise LoginMethodUnavailable(method=name)
