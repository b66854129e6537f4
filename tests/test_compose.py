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
    # The server and watch run the torch-free core image; sweep workers train, so theirs adds the [train] extra.
    assert services["watch"]["image"] == services["mlflow"]["image"]
    assert "build" not in services["watch"] and "args" not in services["mlflow"]["build"]
    worker = services["sweep-worker"]
    assert worker["image"] != services["mlflow"]["image"]
    assert worker["build"]["dockerfile"] == "Dockerfile" and worker["build"]["args"]["EXTRAS"] == "[train]"


def test_dockerfile_installs_the_core_unless_asked_for_training() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'(?m)^ARG EXTRAS=""$', dockerfile)
    assert re.search(r'(?m)^RUN pip install -c constraints\.txt "\.\$\{EXTRAS\}"$', dockerfile)
    # torch is installed only on the branch that asks for the training stack.
    torch_lines = [line for line in dockerfile.splitlines() if "torch==" in line]
    assert torch_lines and all("*train*" in dockerfile.split(line)[0].rsplit("RUN", 1)[-1] for line in torch_lines)


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
    from transfer_laws.registry.schema import ENV_WEBHOOK_SECRET

    # Without it every delivery is refused with 503 ("webhooks are disabled"), so refits on new checkpoints stop.
    assert services["mlflow"]["environment"].get(ENV_WEBHOOK_SECRET), f"the mlflow service lacks {ENV_WEBHOOK_SECRET}"


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


def _argv(service: dict[str, Any], command: list[str] | None = None) -> list[str]:
    """What the container runs: its entrypoint (when the service sets one) followed by its command (or ``command``)."""
    parts = [*service.get("entrypoint", []), *(service["command"] if command is None else command)]
    return [str(part) for part in parts]


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file of this repository that a bind mount of ``service`` shows at ``container_path``."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./") and container_path.startswith(target.rstrip("/") + "/"):
            return ROOT / source / container_path[len(target.rstrip("/")) + 1:]
    raise AssertionError(f"{container_path} is not in a folder this service mounts from the repository")


def _parse_cli(service: dict[str, Any], command: list[str] | None = None) -> tuple[list[str], Any]:
    """The service's ``transfer-laws`` command line and the arguments the CLI's own parser makes of it, reading
    a ``--config`` from the repository folder the service mounts."""
    from transfer_laws.scripts import cli

    argv = _argv(service, command)
    assert argv[0] == "transfer-laws", argv
    namespace = cli.build_parser(argv[1:]).parse_args(argv[1:])
    config = _host_path(service, str(namespace.config)) if namespace.config else None
    assert config is None or config.is_file(), f"{namespace.config} is not shipped ({config})"
    return argv, cli.parse_namespace(cli._args_class(argv[1]), namespace, config)


@pytest.mark.parametrize(("service", "subcommand"), [("watch", "watch"), ("sweep-worker", "sweep")])
def test_transfer_laws_command_lines_parse(services: dict[str, Any], service: str, subcommand: str) -> None:
    argv, args = _parse_cli(services[service])
    assert argv[1] == subcommand and args is not None


def _backend_store_uri(services: dict[str, Any]) -> str:
    cmd = _mlflow_server_command(services)
    return cmd[cmd.index("--backend-store-uri") + 1]


def test_sweep_worker_stores_its_study_in_optunas_own_postgres_database(services: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    _, args = _parse_cli(services["sweep-worker"])
    # Without a storage the worker looked for a SQLite file in its own container and never found the team's study.
    assert args.worker is True and args.storage, "the sweep worker names no Optuna storage"
    storage, backend = make_url(args.storage), make_url(_backend_store_uri(services))
    assert storage.drivername == "postgresql+psycopg2"
    assert (storage.host, storage.port) == ("postgres", 5432)
    assert (storage.username, storage.password) == (backend.username, _env_example()["POSTGRES_PASSWORD"])
    # MLflow's database would not do: Optuna and MLflow both keep an alembic_version table.
    assert storage.database and storage.database != backend.database
    assert services["sweep-worker"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_optunas_database_is_created_by_the_postgres_init_hook(services: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    postgres = services["postgres"]
    init_dir = _host_path(postgres, "/docker-entrypoint-initdb.d/x").parent
    created = set()
    for script in sorted(init_dir.iterdir()):
        assert script.suffix in (".sql", ".sh"), f"the postgres image ignores {script.name}"
        created |= {m.lower() for m in re.findall(r"(?i)\bCREATE\s+DATABASE\s+\"?(\w+)", script.read_text())}
    _, args = _parse_cli(services["sweep-worker"])
    assert make_url(args.storage).database in created
    # The hook runs on a socket-only server: a socket health check would let the worker in before it finished.
    assert "-h " in postgres["healthcheck"]["test"][-1]


def test_sweep_worker_joins_the_study_its_starter_creates(services: dict[str, Any]) -> None:
    from transfer_laws.plugin.sweeps import grid_cells

    worker = services["sweep-worker"]
    assert worker["command"][0] == "--worker", "keep the study's definition in the entrypoint, shared by its starter"
    _, joined = _parse_cli(worker)
    # The documented start: the same entrypoint with `--max-trials 0` in place of `--worker true`.
    _, started = _parse_cli(worker, ["--max-trials", "0"])
    assert started.worker is False and started.max_trials == 0
    for key in ("study", "storage", "sizes", "d_f_tokens", "roles", "from_template", "target", "tune_lr"):
        assert getattr(joined, key) == getattr(started, key), key
    assert grid_cells(joined.sizes, joined.d_f_tokens, joined.roles)  # a grid the sweep accepts
    start = "docker compose --profile sweep run --rm sweep-worker --max-trials 0"
    assert start in (ROOT / "docs" / "team-setup.md").read_text()


@pytest.mark.parametrize("service", ["watch", "sweep-worker"])
def test_client_services_take_refit_locks_in_the_servers_backend_database(
    services: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transfer_laws.registry.locks import lock_database
    from transfer_laws.registry.schema import ENV_LOCK_DB, MLFLOW_ENV_SERVER_BACKEND

    env = services[service]["environment"]
    # Where the server's refit hook locks: mlflow server hands its workers the backend store URI.
    monkeypatch.delenv(ENV_LOCK_DB, raising=False)
    monkeypatch.setenv(MLFLOW_ENV_SERVER_BACKEND, _backend_store_uri(services))
    server_lock = lock_database("http://localhost:5000")
    # Where this client locks (it runs outside the server process).
    monkeypatch.delenv(MLFLOW_ENV_SERVER_BACKEND)
    if env.get(ENV_LOCK_DB):
        monkeypatch.setenv(ENV_LOCK_DB, env[ENV_LOCK_DB])
    client_lock = lock_database(env["MLFLOW_TRACKING_URI"])
    assert server_lock, "the server's hook would take no advisory lock"
    assert client_lock == server_lock, f"{service} would lock in {client_lock}, the server in {server_lock}"


def test_sweep_worker_writes_its_workspace_where_the_image_user_can(services: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    workdir = re.findall(r"(?m)^WORKDIR\s+(\S+)", dockerfile)[-1]
    user = re.findall(r"(?m)^USER\s+(\S+)", dockerfile)[-1]
    home = services["sweep-worker"]["environment"].get("TRANSFER_LAWS_HOME", "")
    # The default workspace (transfer-laws-home under the working directory) needs a WORKDIR the user owns.
    assert re.search(rf"(?m)chown {re.escape(user)} {re.escape(workdir)}\b", dockerfile), "WORKDIR not given to USER"
    assert not home.startswith("/"), home
