"""docker-compose.yml follows the Compose Specification (its JSON schema, kept in tests/data)
and runs the processes the documentation describes: migrate once, `manage.py serve` for the
ASGI servers, `manage.py run_worker` for the workers."""

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    return loaded


def image_command() -> list[str]:
    """The Dockerfile's CMD: what a service of our image runs when it names no command."""
    [cmd] = re.findall(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text("utf-8"), re.M)
    command: list[str] = json.loads(cmd)
    return command


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text("utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose())]
    assert errors == []


def test_the_schema_refuses_a_broken_compose_file() -> None:
    """The check can fail: a misspelt key is refused."""
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text("utf-8"))
    broken = compose()
    broken["services"]["worker"]["comand"] = broken["services"]["worker"].pop("command")
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_the_compose_file_runs_the_documented_processes() -> None:
    services = compose()["services"]
    ours = {name: service.get("command", image_command())
            for name, service in services.items() if service.get("build") == "."}
    runs = {name: command[1:3] for name, command in ours.items()}
    assert all(command[0] == "python" for command in ours.values())
    assert runs == {"migrate": ["manage.py", "migrate"],
                    "app1": ["manage.py", "serve"], "app2": ["manage.py", "serve"],
                    "worker": ["manage.py", "run_worker"]}
    # Every server and worker starts only after the schema is migrated.
    for name in ("app1", "app2", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}
    docs = (ROOT / "docs" / "operations.md").read_text("utf-8")
    for command in ("manage.py serve", "manage.py run_worker", "manage.py migrate"):
        assert command in docs
