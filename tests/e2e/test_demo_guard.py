"""Demo mode shows every SMS code and email link at /demo/outbox: a server that looks like
production refuses to start in it unless forced, and cookies are Secure outside demo mode.
Each case starts `manage.py` as an operator would, with only the given environment."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

PRINT_SETTINGS = ("from django.conf import settings; "
                  "print('secure_cookies', settings.SECURE_COOKIES, settings.SECURE_HSTS_SECONDS)")


def _manage(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("SONOR_") and k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PRINT_SETTINGS], cwd=ROOT,
        env={**base, "SONOR_DATA_DIR": str(tmp_path), **env},
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("env", "sign"), [
    ({"DATABASE_URL": "postgres://sonor@db.internal:5432/sonor"},
     "DATABASE_URL points at db.internal"),
    ({"SONOR_ALLOWED_HOSTS": "sonor.example.mn"}, "SONOR_ALLOWED_HOSTS names sonor.example.mn"),
    ({"SONOR_SECURE_COOKIES": "1"}, "SONOR_SECURE_COOKIES is on"),
    ({"REDIS_URL": "redis://10.1.2.3:6379/0"}, "REDIS_URL points at 10.1.2.3"),
])
def test_demo_mode_on_a_production_configuration_refuses_to_start(
        tmp_path: Path, env: dict[str, str], sign: str) -> None:
    refused = _manage(tmp_path, SONOR_DEMO="1", **env)
    assert refused.returncode != 0
    assert "refusing to start in demo mode" in refused.stderr and sign in refused.stderr
    assert "secure_cookies" not in refused.stdout

    forced = _manage(tmp_path, SONOR_DEMO="1", SONOR_DEMO_FORCE="1", **env)
    assert forced.returncode == 0, forced.stderr
    assert "WARNING demo mode forced" in forced.stderr and sign in forced.stderr


def test_demo_mode_on_loopback_starts_as_ci_and_scripts_demo_run_it(tmp_path: Path) -> None:
    demo = _manage(tmp_path, SONOR_DEMO="1",
                   DATABASE_URL="postgres://postgres@127.0.0.1:5432/sonor",
                   REDIS_URL="redis://127.0.0.1:6379/0",
                   SONOR_ALLOWED_HOSTS="127.0.0.1,localhost,[::1]")
    assert demo.returncode == 0, demo.stderr
    assert "secure_cookies False 0" in demo.stdout
    assert "demo mode" not in demo.stderr


def test_cookies_are_secure_and_hsts_on_by_default_outside_demo_mode(tmp_path: Path) -> None:
    assert "secure_cookies True 31536000" in _manage(tmp_path).stdout
    assert "secure_cookies False 0" in _manage(tmp_path, SONOR_SECURE_COOKIES="0").stdout
