"""deploy/k8s renders (Kustomize semantics) and every object passes the Kubernetes schema.

kustomize itself is not installable from the package registries this project uses, so the
subset of Kustomize the manifests use (resources, namespace, labels, images, config map and
secret generators with hash suffixes, strategic-merge patches of maps) is rendered here.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays" / "example"
KUBERNETES_VERSION = "1.33"
GENERATED = "__generated_name"

Resource = dict[str, Any]


def _read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def _generate(root: Path, kustomization: dict, resources: list[Resource]) -> None:
    for kind, field in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for gen in kustomization.get(field, []):
            data: dict[str, str] = {}
            for env in gen.get("envs", []):
                data.update(_read_env_file(root / env))
            for literal in gen.get("literals", []):
                key, _, value = literal.partition("=")
                data[key] = value
            existing = [
                r for r in resources if r["kind"] == kind and r.get(GENERATED) == gen["name"]
            ]
            if gen.get("behavior") == "merge":
                assert existing, f"{field} {gen['name']}: merge with nothing to merge into"
                existing[0]["_data"].update(data)
                continue
            assert not existing, f"{field} {gen['name']}: generated twice"
            resources.append(
                {
                    "apiVersion": "v1",
                    "kind": kind,
                    "metadata": {"name": gen["name"]},
                    GENERATED: gen["name"],
                    "_data": data,
                }
            )


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _containers(resource: Resource) -> list[dict]:
    spec = resource.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", []) + pod.get("initContainers", [])


def _build(root: Path) -> list[Resource]:
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = root / entry
        if path.is_dir():
            resources += _build(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    _generate(root, kustomization, resources)
    for patch_ref in kustomization.get("patches", []):
        patch = yaml.safe_load((root / patch_ref["path"]).read_text())
        targets = [
            r
            for r in resources
            if r["kind"] == patch["kind"] and r["metadata"]["name"] == patch["metadata"]["name"]
        ]
        assert len(targets) == 1, f"patch {patch_ref['path']} matches {len(targets)} objects"
        _merge(targets[0], {k: v for k, v in patch.items() if k != "metadata"})
    for label_set in kustomization.get("labels", []):
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    for image in kustomization.get("images", []):
        for resource in resources:
            for container in _containers(resource):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] != "Namespace":
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


def _finish(resources: list[Resource]) -> list[Resource]:
    """Give generated objects their content-hash names and point every reference at them."""
    renamed: dict[tuple[str, str], str] = {}
    for resource in resources:
        if GENERATED not in resource:
            continue
        data = resource.pop("_data")
        name = resource.pop(GENERATED)
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
        resource["metadata"]["name"] = f"{name}-{digest}"
        renamed[(resource["kind"], name)] = resource["metadata"]["name"]
        if resource["kind"] == "Secret":
            resource["type"] = "Opaque"
            resource["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        else:
            resource["data"] = data
    for resource in resources:
        for container in _containers(resource):
            for source in container.get("envFrom", []):
                for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if field in source:
                        source[field]["name"] = renamed.get(
                            (kind, source[field]["name"]), source[field]["name"]
                        )
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    ref["name"] = renamed.get(("Secret", ref["name"]), ref["name"])
    return resources


def render(root: Path) -> list[Resource]:
    """The objects `kustomize build root` produces, for the features these manifests use."""
    return _finish(_build(root))


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


def test_only_the_migrate_job_holds_the_bootstrap_or_the_owner_url(
    example: list[Resource],
) -> None:
    holders = {}
    for kind, name in (("Deployment", "gateway"), ("Deployment", "users"), ("Job", "migrate")):
        (container,) = _one(example, kind, name)["spec"]["template"]["spec"]["containers"]
        holders[name] = {var["name"] for var in container.get("env", [])}
    assert "GATEWAY_DATABASE_URL" in holders["gateway"]
    assert not holders["gateway"] & {"DATABASE_URL", "OWNER_DATABASE_URL", "APP_DATABASE_URL"}
    assert not holders["users"] & {"DATABASE_URL", "OWNER_DATABASE_URL", "GATEWAY_DATABASE_URL"}
    assert {"DATABASE_URL", "OWNER_DATABASE_URL", "GATEWAY_DATABASE_URL", "APP_DATABASE_URL"} <= (
        holders["migrate"]
    )


def test_gateway_routes_users_to_the_users_service_port(example: list[Resource]) -> None:
    config = next(r for r in example if r["kind"] == "ConfigMap")
    port = _one(example, "Service", "users")["spec"]["ports"][0]["port"]
    assert config["data"]["GATEWAY_ROUTES"] == f"/users=http://users:{port}"
    assert config["data"]["DEFAULT_RATE_LIMIT_PER_SECOND"] == "200"
