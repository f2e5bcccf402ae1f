"""DAN, the national SSO: an OAuth2 authorization-code flow. A documented seam, not built yet.

    web page --(authorize URL, state)--> DAN --(redirect with code, state)--> our callback
    callback --(code + client secret)--> DAN token endpoint --(access token)--> DAN userinfo
    userinfo register number --> identity.services.citizen_create --> session_create("dan")

Configured by SONOR_DAN_AUTHORIZE_URL, SONOR_DAN_TOKEN_URL, SONOR_DAN_USERINFO_URL,
SONOR_DAN_CLIENT_ID, SONOR_DAN_CLIENT_SECRET, SONOR_DAN_REDIRECT_URI (and optionally
SONOR_DAN_SCOPE) in the settings module, which reads them from the environment. Unset means
disabled: every function here then raises LoginMethodUnavailable.

What building it still needs: a callback view that checks `state` against the one stored for
the browser (single use, short-lived), the code exchange and userinfo calls over HTTPS with a
timeout, the register number taken only from DAN's answer, and an access log entry.
"""

from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings

from identity.login.errors import LoginMethodUnavailable
from identity.models import DeviceSession


@dataclass(frozen=True)
class DanConfig:
    authorize_url: str
    token_url: str
    userinfo_url: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scope: str


def dan_config() -> DanConfig | None:
    """The DAN client configuration, or None when any required part is unset."""
    values = {
        field: str(getattr(settings, f"SONOR_DAN_{field.upper()}"))
        for field in ("authorize_url", "token_url", "userinfo_url", "client_id",
                      "client_secret", "redirect_uri")
    }
    if not all(values.values()):
        return None
    return DanConfig(**values, scope=settings.SONOR_DAN_SCOPE or "openid")


def dan_configured() -> bool:
    return dan_config() is not None


def _config_required() -> DanConfig:
    config = dan_config()
    if config is None:
        raise LoginMethodUnavailable("DAN login is not configured on this server.", method="dan")
    return config


def dan_authorize_url(*, state: str) -> str:
    """Where the browser goes to log in at DAN; `state` binds the answer to this browser."""
    config = _config_required()
    query = urlencode({"response_type": "code", "client_id": config.client_id,
                       "redirect_uri": config.redirect_uri, "scope": config.scope,
                       "state": state})
    return f"{config.authorize_url}?{query}"


def dan_login_complete(*, code: str, state: str, ip: str | None, device: str
                       ) -> tuple[DeviceSession, str]:
    """Trade DAN's authorization code for a Sonor session (see the module docstring).

    Not built yet: raises LoginMethodUnavailable whether or not DAN is configured.
    """
    _config_required()
    raise LoginMethodUnavailable("DAN login is not available in this version.", method="dan")
