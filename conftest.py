"""Root conftest: the fakes of outside services (tests/fakes) serve their fixtures to every
test module (pytest reads pytest_plugins only here)."""

pytest_plugins = (
    "tests.fakes.fcm",
    "tests.fakes.smsc",
    "tests.fakes.sms_gateway",
    "tests.fakes.smtp",
)
