"""docker-compose.yml, checked without Docker: services, health, ordering, env names and every command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(?::?[-?])([^}]*))?\}")


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example line without '=': {line!r}"
            pairs[key.strip()] = value.strip()
    return pairs


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:?msg}`` and ``${VAR:-default}``; ``$$`` stays a literal ``$``."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if match.group(0).startswith(f"${{{name}:-"):
            return default or ""
        raise AssertionError(f"{name} is used by docker-compose.yml but not defined in .env.example")

    return _VAR.sub(sub, text).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(_interpolate((ROOT / "docker-compose.yml").read_text(), _env_example()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def test_services_and_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert {"postgres", "minio", "create-bucket", "mlflow", "watch", "sweep-worker"} <= set(services)
    assert services["postgres"]["volumes"][0].startswith("pgdata:")
    assert services["minio"]["volumes"][0].startswith("miniodata:")
    assert {"pgdata", "miniodata"} <= set(compose["volumes"])
    assert services["watch"]["profiles"] == ["watch"] and services["sweep-worker"]["profiles"] == ["sweep"]


def test_images_are_pinned(services: dict[str, Any]) -> None:
    assert re.fullmatch(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z", services["minio"]["image"])
    assert re.fullmatch(r"minio/mc:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z", services["create-bucket"]["image"])
    assert re.fullmatch(r"postgres:\d+\.\d+", services["postgres"]["image"])
    assert services["mlflow"]["build"]["dockerfile"] == "Dockerfile" and (ROOT / "Dockerfile").is_file()


@pytest.mark.parametrize("name", ["postgres", "minio", "mlflow"])
def test_long_running_services_have_healthchecks(services: dict[str, Any], name: str) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 10


def test_start_order_waits_for_health(services: dict[str, Any]) -> None:
    assert services["create-bucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert services["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "create-bucket": {"condition": "service_completed_successfully"},
    }
    for name in ("watch", "sweep-worker"):
        assert services[name]["depends_on"]["mlflow"] == {"condition": "service_healthy"}
        assert services[name]["image"] == services["mlflow"]["image"]


def test_env_names_match_env_example() -> None:
    raw = (ROOT / "docker-compose.yml").read_text()
    used = {m.group(1) for m in _VAR.finditer(raw)}
    defined = _env_example()
    assert used == set(defined), f"compose uses {sorted(used)}, .env.example defines {sorted(defined)}"
    for key, value in defined.items():
        assert value.startswith("change-me") or key == "MLFLOW_ALLOWED_HOSTS", f"{key} looks like a real secret"


def test_server_env_names_match_ci_services(services: dict[str, Any]) -> None:
    script = (ROOT / ".ci" / "services.sh").read_text()
    for key in services["mlflow"]["environment"]:
        assert re.search(rf"\b{key}=", script), f"mlflow's {key} is not set by .ci/services.sh"


def test_server_gets_every_variable_its_plugin_reads(services: dict[str, Any]) -> None:
    from transfer_laws.plugin.webhooks import SECRET_ENV

    # Without it every delivery is refused with 503 ("webhooks are disabled"), so refits on new checkpoints stop.
    assert services["mlflow"]["environment"].get(SECRET_ENV), f"the mlflow service does not set {SECRET_ENV}"


def _mlflow_server_command(services: dict[str, Any]) -> list[str]:
    command = services["mlflow"]["command"]
    assert isinstance(command, list), "keep the server command an exec-form list"
    return [str(part) for part in command]


def test_server_command_is_the_documented_one(services: dict[str, Any]) -> None:
    cmd = _mlflow_server_command(services)
    assert cmd[:4] == ["mlflow", "server", "--app-name", "transfer-laws"]
    assert cmd[cmd.index("--backend-store-uri") + 1].startswith("postgresql+psycopg2://mlflow:")
    assert cmd[cmd.index("--artifacts-destination") + 1] == "s3://mlflow/"
    assert "--serve-artifacts" in cmd
    assert cmd[cmd.index("--allowed-hosts") + 1] == _env_example()["MLFLOW_ALLOWED_HOSTS"]
    bucket_job = services["create-bucket"]["entrypoint"][-1]
    assert "mc mb --ignore-existing store/mlflow" in bucket_job


def test_server_flags_are_accepted_by_installed_mlflow(services: dict[str, Any]) -> None:
    from mlflow.cli import server

    accepted = {opt for param in server.params for opt in (*param.opts, *param.secondary_opts)}
    flags = [part for part in _mlflow_server_command(services) if part.startswith("--")]
    assert flags and not set(flags) - accepted, f"unknown mlflow server flags: {set(flags) - accepted}"
    # Parse it for real (click converts every value) without starting a server.
    ctx = server.make_context("server", _mlflow_server_command(services)[2:])
    assert ctx.params["app_name"] == "transfer-laws" and ctx.params["serve_artifacts"] is True


def test_ci_services_uses_the_same_server_flags(services: dict[str, Any]) -> None:
    script = (ROOT / ".ci" / "services.sh").read_text()
    lines = script[script.index("bin/mlflow server"):].splitlines()
    end = next(i for i, line in enumerate(lines) if not line.rstrip().endswith("\\"))
    server_line = " ".join(line.rstrip().rstrip("\\") for line in lines[: end + 1])
    ci_flags = {part for part in shlex.split(server_line, posix=True) if part.startswith("--")}
    compose_flags = {part for part in _mlflow_server_command(services) if part.startswith("--")}
    # --allowed-hosts only matters off localhost, where .ci/services.sh never listens.
    assert compose_flags - {"--allowed-hosts"} <= ci_flags


@pytest.mark.parametrize(("service", "subcommand"), [("watch", "watch"), ("sweep-worker", "sweep")])
def test_transfer_laws_command_lines_parse(services: dict[str, Any], service: str, subcommand: str) -> None:
    from transfer_laws.scripts import cli

    argv = [str(part) for part in services[service]["command"]]
    assert argv[:2] == ["transfer-laws", subcommand]
    namespace = cli.build_parser(argv[1:]).parse_args(argv[1:])
    args = cli.parse_namespace(cli._args_class(subcommand), namespace, namespace.config)  # noqa: SLF001
    assert args is not None
