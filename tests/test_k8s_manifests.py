"""deploy/k8s without a cluster: schema-valid, and in agreement with the server and the image.

``kubernetes-validate --strict`` (pinned; it ships the API schemas) checks every manifest
against Kubernetes' own schemas, unknown fields included.  The rest checks what a schema
cannot: that the probes ask the server's health path, the ports are the ones the server binds
and the image exposes, the grace period outlasts the preStop pause plus the server's drain,
every ``SERVER_*`` value is a real setting with a valid value, the security context is the
image's user, and the locust pods run our locustfile against the app's Service.  The server's
settings come from ``server/config.py``'s ``SETTINGS``, the image's from the Dockerfile, so a
change on either side that the manifests do not follow fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.config import SETTINGS, Setting

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def objects() -> dict[tuple[str, str], dict[str, Any]]:
    """``{(kind, name): object}`` of every manifest."""
    found = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def setting(name: str) -> Setting:
    by_name = {s.name: s for s in SETTINGS}
    assert name in by_name, f"server/config.py has no setting {name!r} any more"
    return by_name[name]


def server_value(name: str) -> Any:
    """What the app pods run with: the ConfigMap's value, else the server's default
    (repeatable settings as a tuple, comma-separated in the environment as for the server)."""
    s = setting(name)
    data = objects()[("ConfigMap", "ctxserver-config")]["data"]
    if s.env not in data:
        return s.default
    if s.repeatable:
        return tuple(s.parse(part.strip()) for part in data[s.env].split(",") if part.strip())
    return s.parse(data[s.env])


def dockerfile(keyword: str) -> list[str]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [line.split(None, 1)[1] for line in text.splitlines()
            if line.strip().upper().startswith(keyword + " ")]


def app_pod() -> dict[str, Any]:
    return objects()[("Deployment", "ctxserver")]["spec"]["template"]


def app_container() -> dict[str, Any]:
    [container] = app_pod()["spec"]["containers"]
    return container


def named_port(container: dict[str, Any], name_or_number: str | int) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    [port] = [p["containerPort"] for p in container["ports"] if p["name"] == name_or_number]
    return port


def run_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VALIDATE), "--strict", *map(str, paths)], capture_output=True,
                          text=True, timeout=120)


# ---------------------------------------------------------------- schemas

def test_every_manifest_passes_strict_schema_validation() -> None:
    assert MANIFESTS
    result = run_validate(*MANIFESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(objects())


def test_the_validator_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The check can fail: a misspelt probe is an unknown field, not a silent no-op."""
    broken = tmp_path / "deployment.yaml"
    broken.write_text((K8S / "app-deployment.yaml").read_text().replace(
        "readinessProbe:", "readinesProbe:"))
    result = run_validate(broken)
    assert result.returncode != 0 and "readinesProbe" in result.stdout + result.stderr


def test_the_kustomization_lists_every_manifest_once() -> None:
    kustomization = load(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    assert kustomization["kind"] == "Kustomization"


# ---------------------------------------------------------------- the app and the server

def test_every_server_setting_in_the_configmap_is_real_and_valid() -> None:
    data = objects()[("ConfigMap", "ctxserver-config")]["data"]
    by_env = {s.env: s for s in SETTINGS}
    for key, value in data.items():
        assert key in by_env or key == "SERVER_APP", f"{key} is not a server setting"
        if key in by_env:
            by_env[key].parse(value)  # raises on a value the server would refuse


def test_the_app_container_gets_the_configmap() -> None:
    assert app_container()["envFrom"] == [{"configMapRef": {"name": "ctxserver-config"}}]


def test_probes_ask_the_servers_health_path_on_its_port() -> None:
    container = app_container()
    health = server_value("health_path")
    assert health != "off", "probes need the server's health endpoint"
    bound = server_value("bind")[0]
    port = int(bound.rpartition(":")[2])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == health, probe
        assert named_port(container, http["port"]) == port, probe


def test_the_container_port_is_the_images_and_the_servers() -> None:
    container = app_container()
    [exposed] = dockerfile("EXPOSE")
    bind = server_value("bind")[0]
    assert [p["containerPort"] for p in container["ports"]] == [int(exposed)]
    assert bind.rpartition(":")[0] in ("0.0.0.0", "[::]", ""), "must listen beyond loopback"
    assert int(bind.rpartition(":")[2]) == int(exposed)


def test_the_grace_period_outlasts_the_prestop_pause_and_the_drain() -> None:
    """SIGTERM comes after preStop; the server then drains for --graceful-timeout."""
    pod = app_pod()["spec"]
    command = app_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    assert pause >= 2, "the load balancer needs a moment to drop the endpoint"
    drain = float(server_value("graceful_timeout"))
    assert pod["terminationGracePeriodSeconds"] > pause + drain


def test_the_pods_run_as_the_images_non_root_user() -> None:
    [user] = dockerfile("USER")
    uid, _, gid = user.partition(":")
    for name in ("ctxserver", "locust-master", "locust-worker"):
        spec = objects()[("Deployment", name)]["spec"]["template"]["spec"]
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert (str(security["runAsUser"]), str(security["runAsGroup"])) == (uid, gid), name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            if context.get("readOnlyRootFilesystem"):  # the server's metrics live in /tmp
                assert "/tmp" in [m["mountPath"] for m in container["volumeMounts"]], name


def test_the_service_and_autoscaler_point_at_the_deployment() -> None:
    everything = objects()
    deployment = everything[("Deployment", "ctxserver")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = everything[("Service", "ctxserver")]
    assert service["spec"]["selector"].items() <= labels.items()
    [port] = service["spec"]["ports"]
    assert named_port(app_container(), port["targetPort"]) == int(dockerfile("EXPOSE")[0])
    hpa = everything[("HorizontalPodAutoscaler", "ctxserver")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "ctxserver"}
    assert hpa["spec"]["minReplicas"] >= 2  # a rolling update or a drain keeps one serving
    # Utilization is measured against the request: without one the HPA cannot scale.
    assert "cpu" in app_container()["resources"]["requests"]
    assert "memory" in app_container()["resources"]["limits"]
    pdb = everything[("PodDisruptionBudget", "ctxserver")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


# ---------------------------------------------------------------- locust

def command_options(container: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    args = container["command"]
    return args, {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}


@pytest.mark.parametrize("name", ["locust-master", "locust-worker"])
def test_locust_runs_our_locustfile_on_the_one_image(name: str) -> None:
    [container] = objects()[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
    args, opts = command_options(container)
    assert args[:3] == ["python", "-m", "locust"]
    assert (ROOT / opts["--locustfile"]).is_file()
    assert container["image"] == app_container()["image"]
    assert {"name": "LOCUST_EXPECT_LEAKS", "value": "false"} in container["env"]


def test_the_master_targets_the_app_service_and_the_workers_find_the_master() -> None:
    everything = objects()
    [master] = everything[("Deployment", "locust-master")]["spec"]["template"]["spec"][
        "containers"]
    _, opts = command_options(master)
    service = everything[("Service", "ctxserver")]
    [port] = service["spec"]["ports"]
    assert opts["--host"] == f"http://{service['metadata']['name']}:{port['port']}"
    assert "--master" in master["command"] and "--headless" not in master["command"]
    assert everything[("Deployment", "locust-master")]["spec"]["replicas"] == 1

    [worker] = everything[("Deployment", "locust-worker")]["spec"]["template"]["spec"][
        "containers"]
    _, opts = command_options(worker)
    master_service = everything[("Service", "locust-master")]
    assert opts["--master-host"] == master_service["metadata"]["name"]
    ports = {p["name"]: p["port"] for p in master_service["spec"]["ports"]}
    assert ports == {"web": 8089, "workers": 5557}  # locust's defaults, as the pods use them
    assert master["readinessProbe"]["tcpSocket"]["port"] == "workers"
    assert master_service["spec"]["type"] == "ClusterIP"  # the UI has no authentication
