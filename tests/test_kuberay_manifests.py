"""The kuberay/ manifests, checked offline on what `kubectl apply` would send.

The sources an operator applies are the backfill's file and, per region, the live app's kustomize
overlay (kuberay/overlays/<region> over kuberay/base), rendered here by `kubectl kustomize` (.ci/run
installs kubectl). Every RayJob/RayService they hold validates against the v1 schema of KubeRay
v1.7.0's CRDs (../shared/data/kuberay-crds) in strict mode: `additionalProperties: false` on every
object schema that lists properties (unless it preserves unknown fields), so a misspelt field fails
here instead of being pruned by the API server. The rules a schema cannot say (the CRDs' CEL rules,
KubeRay's controller validation) are checked as Python. Then each manifest is held against the code
it runs: the backfill's own settings parser, the live app's builder and Ray Serve's config schema,
what the Ray autoscaler reads from the cluster spec, and the metric names the alert rules use.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import functools
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, SHARED

KUBERAY = REPO / "kuberay"
CRD_DIR = SHARED / "kuberay-crds"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: a CRD loads in ~0.4 s, not ~1.5 s
BACKFILL = "rayjob-backfill.yaml"
OVERLAYS = sorted(p.parent.relative_to(KUBERAY).as_posix() for p in KUBERAY.glob("overlays/*/kustomization.yaml"))
SOURCES = [BACKFILL, *OVERLAYS]  # each holds one Ray cluster
PLACEHOLDER = "set-by-overlay"  # the base's value for what each region sets
MANAGED_BY = ("ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue")
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")  # at most 63 characters
MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayService": 47}  # KubeRay appends 6 chars to name the cluster
REGION_LABEL = "obsrvr.io/region"
ROLE_ARN = "eks.amazonaws.com/role-arn"


@functools.cache
def manifest_text(source: str) -> str:
    """A manifest file's text, or what `kubectl kustomize` renders from a kustomization directory."""
    path = KUBERAY / source
    if not path.is_dir():
        return path.read_text()
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl not found: it renders kuberay/'s kustomizations (.ci/run installs the package when absent)"
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize kuberay/{source} failed: {done.stderr}"
    return done.stdout


def documents(source: str) -> list[dict]:
    """The objects of a source, parsed afresh, so a test may change them."""
    return [d for d in yaml.load_all(manifest_text(source), Loader=LOADER) if d]


def one(source: str, kind: str) -> dict:
    found = [d for d in documents(source) if d["kind"] == kind]
    assert len(found) == 1, f"{source}: expected one {kind}, found {len(found)}"
    return found[0]


def ray_doc(source: str) -> dict:
    (doc,) = [d for d in documents(source) if d["kind"] in CRD_FILES]
    return doc


def cluster_spec(doc: dict) -> dict:
    return {"RayJob": lambda s: s["rayClusterSpec"], "RayService": lambda s: s["rayClusterConfig"],
            "RayCluster": lambda s: s}[doc["kind"]](doc["spec"])


def groups(spec: dict) -> list[tuple[str, dict]]:
    return [("head", spec["headGroupSpec"]), *((g["groupName"], g) for g in spec.get("workerGroupSpecs", []))]


def ray_container(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]  # KubeRay's RayContainerIndex


def port(container: dict, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"container {container['name']} has no port named {name!r}: {sorted(ports)}"
    return ports[name]


def serve_config(rayservice: dict) -> dict:
    return yaml.safe_load(rayservice["spec"]["serveConfigV2"])


def the_app(config: dict) -> dict:
    (app,) = config["applications"]
    return app


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pinned_ray() -> str:
    (pin,) = [d for d in project()["dependencies"] if d.startswith("ray[")]
    return pin.split("==")[1]


def autoscaler_view(doc: dict) -> dict:
    """The node types the Ray autoscaler derives from the cluster spec: each group's resources
    (num-cpus, custom resources, memory from the limits) and min/max workers. A private Ray
    function: the test pins what ray==2.60.0 reads, and a Ray upgrade that changes it fails here."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    cr = {"metadata": {"name": doc["metadata"]["name"], "namespace": "default"}, "spec": cluster_spec(doc)}
    return _derive_autoscaling_config_from_ray_cr(cr)["available_node_types"]


def test_the_sources_hold_every_ray_cluster_in_kuberay():
    """A Ray manifest that no source renders would escape every check below."""
    assert {"overlays/us-east-2", "overlays/eu-west-1", "overlays/ap-southeast-1"} <= set(OVERLAYS)
    on_disk = {p.relative_to(KUBERAY).as_posix() for p in KUBERAY.rglob("*.yaml")
               for d in yaml.load_all(p.read_text(), Loader=LOADER) if d and d.get("kind") in CRD_FILES}
    assert on_disk == {BACKFILL, "base/rayservice-live.yaml"}
    assert ray_doc(BACKFILL)["kind"] == "RayJob"
    for overlay in OVERLAYS:
        assert sorted((d["kind"], d["metadata"]["name"]) for d in documents(overlay)) == [
            ("ConfigMap", "obsrvr-live-region"), ("RayService", "obsrvr-live"),
            ("Service", "obsrvr-live-flight"), ("ServiceAccount", "obsrvr-live")], overlay


# --- schema validation -------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """additionalProperties: false on every object schema that has properties and no
    additionalProperties, as `kubectl apply`'s strict field validation and `kubeconform -strict`
    do, except where the CRD keeps unknown fields (in place)."""
    if isinstance(schema, dict):
        if (schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for key, value in schema.items():
            if key == "properties":
                for sub in value.values():
                    strict(sub)
            elif isinstance(value, dict | list):
                strict(value)
    elif isinstance(schema, list):
        for item in schema:
            strict(item)
    return schema


@pytest.fixture(scope="session")
def validators() -> dict:
    """One strict Draft 7 validator per kind the sources hold, each CRD loaded once."""
    import jsonschema

    if not CRD_DIR.is_dir():
        pytest.skip(f"KubeRay CRDs not found under {CRD_DIR} (set OBSRVR_SHARED_DATA)")
    out = {}
    for kind in sorted({ray_doc(s)["kind"] for s in SOURCES}):
        crd = yaml.load((CRD_DIR / CRD_FILES[kind]).read_text(), Loader=LOADER)
        schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
        out[kind] = jsonschema.Draft7Validator(strict(schema))
    return out


def schema_errors(validator, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("source", SOURCES)
def test_ray_documents_validate_against_the_kuberay_crds_strictly(validators, source):
    doc = ray_doc(source)
    assert doc["apiVersion"] == "ray.io/v1"
    assert schema_errors(validators[doc["kind"]], doc) == []


def test_strict_mode_catches_what_kubernetes_would_prune_or_reject(validators):
    doc = one(OVERLAYS[0], "RayService")
    spec = doc["spec"]["rayClusterConfig"]
    spec["enableInTreeAutoscalling"] = spec.pop("enableInTreeAutoscaling")  # a typo the API server drops
    ray_container(spec["headGroupSpec"])["readinesProbe"] = {}
    spec["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # YAML 1.1: an int, not the string "0"
    errors = "\n".join(schema_errors(validators["RayService"], doc))
    assert "enableInTreeAutoscalling" in errors and "readinesProbe" in errors
    assert "0 is not of type 'string'" in errors


# --- what the schema cannot say ----------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_rules_of_the_api_server_and_the_kuberay_controller(source):
    for obj in documents(source):  # the API server's rule for every object's label values
        assert all(LABEL_VALUE.match(v) for v in obj["metadata"].get("labels", {}).values()), obj["metadata"]
    doc = ray_doc(source)
    kind, name, spec = doc["kind"], doc["metadata"]["name"], cluster_spec(doc)
    assert DNS1035.match(name) and len(name) <= MAX_NAME[kind], f"{kind} name {name!r}"
    # CEL: spec.managedBy (on the CR and on the embedded cluster spec)
    for owner in (doc["spec"], spec):
        assert owner.get("managedBy", MANAGED_BY[0]) in MANAGED_BY
    if kind == "RayJob":
        job = doc["spec"]
        strategy = job.get("deletionStrategy")
        if strategy is not None:  # CEL: legacy onSuccess/onFailure and deletionRules exclude each other
            legacy = "onSuccess" in strategy or "onFailure" in strategy
            assert not (legacy and "deletionRules" in strategy)
            assert ("onSuccess" in strategy and "onFailure" in strategy) or "deletionRules" in strategy
            for rule in strategy.get("deletionRules", []):
                condition = rule["condition"]
                assert ("jobStatus" in condition) != ("jobDeploymentStatus" in condition)
        assert job.get("submissionMode", "K8sJobMode") in ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
        assert job.get("ttlSecondsAfterFinished", 0) >= 0
        if job.get("ttlSecondsAfterFinished", 0) > 0:
            assert job.get("shutdownAfterJobFinishes"), "a TTL needs shutdownAfterJobFinishes"
        assert job.get("backoffLimit", 0) >= 0 and job.get("activeDeadlineSeconds", 1) > 0
    for group_name, group in groups(spec):  # KubeRay's controller checks, per group
        params = group.get("rayStartParams", {})
        assert all(isinstance(v, str) for v in params.values()), f"{group_name}: rayStartParams values are strings"
        assert "labels" not in params, f"{group_name}: use the group's labels field"
        resources_in_params = any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources"))
        assert not (resources_in_params and group.get("resources")), f"{group_name}: resources set twice"
        if group_name != "head":
            assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
    # KubeRay's controller: autoscaler v2 restarts nothing in place, so pods must not either.
    if spec.get("enableInTreeAutoscaling") and spec.get("autoscalerOptions", {}).get("version") == "v2":
        for group_name, group in groups(spec):
            assert group["template"]["spec"].get("restartPolicy", "Never") == "Never", group_name
    if spec.get("authOptions", {}).get("mode") == "token":
        assert tuple(map(int, spec["rayVersion"].split("."))) >= (2, 52, 0), "token auth needs Ray >= 2.52"


@pytest.mark.parametrize("source", SOURCES)
def test_clusters_run_this_projects_image_and_ray(source):
    spec = cluster_spec(ray_doc(source))
    assert spec["rayVersion"] == pinned_ray()
    images = {c["image"] for _, g in groups(spec) for c in g["template"]["spec"]["containers"]}
    assert images == {f"ghcr.io/obsrvr/obsrvr-ray:{project()['version']}"}


@pytest.mark.parametrize("source", SOURCES)
def test_clusters_autoscale_in_tree_around_an_idle_head(source):
    doc = ray_doc(source)
    spec = cluster_spec(doc)
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2" and spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    nodes = autoscaler_view(doc)
    assert nodes["headgroup"]["resources"]["CPU"] == 0
    for group_name, group in groups(spec):
        resources = ray_container(group)["resources"]
        assert resources["requests"] == resources["limits"], f"{group_name}: Ray counts the limits"
        if group_name != "head":
            assert nodes[group_name]["min_workers"] == group["minReplicas"]
            assert nodes[group_name]["max_workers"] == group["maxReplicas"]


@pytest.mark.parametrize("source", SOURCES)
def test_ray_token_auth_comes_from_the_operators_secret(source):
    assert all(d["kind"] != "Secret" for d in documents(source)), "Secrets are created by the operator"
    spec = cluster_spec(ray_doc(source))
    auth = spec["authOptions"]
    assert auth["mode"] == "token" and auth["secretName"]
    for group_name, group in groups(spec):
        env = {e["name"]: e for e in ray_container(group).get("env", [])}
        assert env["RAY_AUTH_MODE"]["value"] == "token", group_name
        token = env["RAY_AUTH_TOKEN"]
        assert "value" not in token, f"{group_name}: the token is never written here"
        # The same Secret KubeRay gives its own clients (authOptions), so all present one token.
        assert token["valueFrom"]["secretKeyRef"] == {"name": auth["secretName"], "key": "auth_token"}


@pytest.mark.parametrize("source", SOURCES)
def test_every_pod_reaches_s3_through_the_irsa_service_account(source):
    account = one(source, "ServiceAccount")
    arn = account["metadata"]["annotations"][ROLE_ARN]
    assert arn.startswith("arn:aws:iam::") and "REPLACE" in arn
    for group_name, group in groups(cluster_spec(ray_doc(source))):
        assert group["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"], group_name


# --- the backfill RayJob ----------------------------------------------------------------------


def test_the_rayjob_runs_the_backfill_with_settings_its_parser_accepts(tmp_path):
    from obsrvr_ray.backfill_settings import add_arguments, from_arguments
    from obsrvr_ray.sources.lake_layout import PUBNET_PUBLIC_LAKE

    job, configmap = one(BACKFILL, "RayJob"), one(BACKFILL, "ConfigMap")
    assert job["spec"]["submissionMode"] == "K8sJobMode"
    assert job["spec"]["shutdownAfterJobFinishes"] is True and job["spec"]["ttlSecondsAfterFinished"] > 0
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "obsrvr_ray.jobs.backfill"]
    args = argv[3:]
    config_path = args[args.index("--config") + 1]

    # The file the entrypoint names is the ConfigMap's key, mounted on the head (where the driver runs).
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    volumes = {v["name"]: v for v in head["template"]["spec"]["volumes"]}
    mounted = {
        f"{m['mountPath'].rstrip('/')}/{key}": volumes[m["name"]]["configMap"]["name"]
        for m in ray_container(head)["volumeMounts"] if "configMap" in volumes[m["name"]]
        for key in configmap["data"]
    }
    assert mounted.get(config_path) == configmap["metadata"]["name"]
    key = config_path.rsplit("/", 1)[1]
    local = tmp_path / key
    local.write_text(configmap["data"][key])
    args[args.index("--config") + 1] = str(local)

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = from_arguments(parser.parse_args(args))  # the checks the job runs first (exit 2 on a bad value)
    assert config.source == PUBNET_PUBLIC_LAKE and config.anonymous is True and config.s3_region == "us-east-2"
    assert config.out.startswith("s3://") and config.ranges
    # Prometheus finds the driver's metrics where the job serves them.
    assert config.metrics_port == port(ray_container(head), "backfill-metrics")
    assert head["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(config.metrics_port)


# --- the live RayService, per region -----------------------------------------------------------


def region_neutral(docs: list[dict]) -> list[dict]:
    """The documents without the values that differ by region, in a stable order."""
    for doc in docs:
        doc["metadata"].get("labels", {}).pop(REGION_LABEL, None)
        if doc["kind"] == "ServiceAccount":
            doc["metadata"]["annotations"].pop(ROLE_ARN)
        if doc["kind"] == "ConfigMap":
            doc["data"] = sorted(doc["data"])
        if doc["kind"] == "RayService":
            config = serve_config(doc)
            for key in ("rpc_url", "dataset"):
                the_app(config)["args"].pop(key)
            doc["spec"]["serveConfigV2"] = config
    return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_is_the_base_with_its_regions_values(overlay):
    from obsrvr_ray.sources.lake_layout import PUBNET_PUBLIC_LAKE

    region = overlay.removeprefix("overlays/")
    docs = documents(overlay)
    assert PLACEHOLDER not in json.dumps(docs), f"{overlay} leaves a value of the base unset"
    # Nothing else differs: this also holds components/region to the lines of serveConfigV2 it replaces.
    got, want = (yaml.safe_dump(region_neutral(d)).splitlines() for d in (copy.deepcopy(docs), documents("base")))
    assert got == want, "\n".join(difflib.unified_diff(want, got, "base", overlay, lineterm=""))

    assert {d["metadata"]["labels"][REGION_LABEL] for d in docs} == {region}
    assert one(overlay, "ConfigMap")["data"] == {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    assert one(overlay, "ServiceAccount")["metadata"]["annotations"][ROLE_ARN].endswith(f"-{region}")
    args = the_app(serve_config(one(overlay, "RayService")))["args"]
    assert region in args["rpc_url"] and region in args["dataset"].removeprefix("s3://").split("/")[0]
    assert "s3_region" not in args  # it would send the lake's reads (us-east-2) to this region
    assert args["lake"] == PUBNET_PUBLIC_LAKE


@pytest.fixture
def clean_env(monkeypatch):
    """SecuritySettings also reads OBSRVR_* variables: the manifest alone must decide here."""
    import os

    for name in [n for n in os.environ if n.startswith("OBSRVR_")]:
        monkeypatch.delenv(name)


def unknown_keys(mapping: dict, model) -> set[str]:
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    return set(mapping) - known


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serve_config_is_one_ray_serve_accepts_without_ignoring_a_key(overlay):
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        LoggingConfig,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    config = serve_config(one(overlay, "RayService"))
    ServeDeploySchema.model_validate(config)  # what the dashboard checks when KubeRay deploys it
    # Serve ignores unknown keys (forward compatibility), so a typo would pass: look for them.
    assert unknown_keys(config, ServeDeploySchema) == set()
    assert unknown_keys(config["http_options"], HTTPOptionsSchema) == set()
    assert unknown_keys(config["logging_config"], LoggingConfig) == set()
    app = the_app(config)
    assert unknown_keys(app, ServeApplicationSchema) == set()
    assert (app["import_path"], app["route_prefix"]) == ("obsrvr_ray.serve.deployments:build", "/")
    for deployment in app["deployments"]:
        assert unknown_keys(deployment, DeploymentSchema) == set(), deployment["name"]
        assert unknown_keys(deployment.get("autoscaling_config", {}), AutoscalingConfig) == set()


def deployments_of(application) -> dict:
    """Every deployment of a built application graph, by name (the ingress's arguments hold the rest)."""
    from ray.serve.deployment import Application

    found = {}

    def walk(app: Application) -> None:
        deployment = app._bound_deployment
        found[deployment.name] = deployment
        for arg in [*deployment.init_args, *deployment.init_kwargs.values()]:
            if isinstance(arg, Application):
                walk(arg)

    walk(application)
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serve_args_build_the_live_app(overlay, clean_env):
    from obsrvr_ray.network import PUBNET
    from obsrvr_ray.serve.deployments import build
    from obsrvr_ray.serve.serve_settings import live_config_from_args

    app = the_app(serve_config(one(overlay, "RayService")))
    args = app["args"]
    assert args["network"]  # else building the app would ask the RPC node (getNetwork)
    live = live_config_from_args(args)
    assert live.follower.settings.extract.passphrase == PUBNET
    assert live.dataset.startswith("s3://") and live.follower.rpc_url.startswith("https://")
    assert live.security.auth_enabled and live.security.tls_enabled and live.security.key_store
    assert live.flight_host == "0.0.0.0" and "0.0.0.0" in live.security.bind_hosts  # reachable from the Services

    built = deployments_of(build(args))  # builds offline: binding needs no cluster
    assert next(iter(built)) == "Api"  # the ingress
    assert {d["name"] for d in app["deployments"]} == set(built) == {"Api", "Follower", "Flight"}
    by_name = {d["name"]: d for d in app["deployments"]}
    assert by_name["Follower"]["num_replicas"] == 1 and by_name["Flight"]["num_replicas"] == 1
    assert by_name["Follower"]["max_surge_percent"] == 0  # never two followers writing one dataset
    scaling = by_name["Api"]["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"] and scaling["target_ongoing_requests"] > 0


def secret_mounts(container: dict, volumes: list[dict]) -> dict[str, str]:
    secrets = {v["name"]: v["secret"]["secretName"] for v in volumes if "secret" in v}
    return {m["mountPath"].rstrip("/") + "/": secrets[m["name"]] for m in container.get("volumeMounts", [])
            if m["name"] in secrets}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_files_the_app_and_serve_read_are_mounted_from_secrets_on_every_node(overlay):
    service = one(overlay, "RayService")
    config = serve_config(service)
    http, security = config["http_options"], the_app(config)["args"]["security"]
    # Serve's HTTPS and the app's Flight TLS serve one certificate.
    assert (http["ssl_certfile"], http["ssl_keyfile"]) == (security["tls_cert"], security["tls_key"])
    files = {security["tls_cert"]: "obsrvr-tls", security["tls_key"]: "obsrvr-tls",
             security["key_store"]: "obsrvr-api-keys"}
    for group_name, group in groups(cluster_spec(service)):
        container = ray_container(group)
        mounts = secret_mounts(container, group["template"]["spec"]["volumes"])
        for file, secret in files.items():
            holders = [s for mount, s in mounts.items() if file.startswith(mount)]
            assert holders == [secret], f"{group_name}: {file} is not mounted from Secret {secret}"
        # A proxy runs on every node, on the port KubeRay's Serve Service targets.
        assert port(container, "serve") == http["port"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_readiness_follows_serves_health_over_https(overlay):
    service = one(overlay, "RayService")
    http = serve_config(service)["http_options"]
    assert http.get("ssl_certfile")
    # KubeRay checks the head's proxy over plain HTTP: with TLS on, the head stays out of the Service.
    assert service["spec"]["excludeHeadPodFromServeSvc"] is True
    for group in cluster_spec(service)["workerGroupSpecs"]:
        command = " ".join(ray_container(group)["readinessProbe"]["exec"]["command"])
        assert f"https://localhost:{http['port']}/-/healthz" in command, group["groupName"]
        assert "/api/local_raylet_healthz" in command, group["groupName"]


def demand(options: dict) -> dict[str, float]:
    assert "num_cpus" in options, f"say num_cpus explicitly: {options}"
    return {"CPU": options["num_cpus"], **options.get("resources", {})}


def fits(need: dict[str, float], have: dict[str, float]) -> bool:
    return all(have.get(name, 0) >= amount for name, amount in need.items() if amount > 0)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_land_on_workers_and_flight_on_its_own_pod(overlay):
    from ray import serve

    from obsrvr_ray.serve import deployments as code

    by_name = {d.name: d for d in vars(code).values() if isinstance(d, serve.Deployment)}  # the config's names
    service = one(overlay, "RayService")
    app = the_app(serve_config(service))
    nodes = autoscaler_view(service)
    workers = {name: node for name, node in nodes.items() if name != "headgroup"}
    for deployment in app["deployments"]:
        # A config's ray_actor_options replace the code's whole (Serve's override rule).
        options = deployment.get("ray_actor_options", by_name[deployment["name"]].ray_actor_options)
        need = demand(options)
        assert not fits(need, nodes["headgroup"]["resources"]), f"{deployment['name']} could land on the head"
        assert any(fits(need, node["resources"]) for node in workers.values()), f"{deployment['name']} fits nowhere"

    # Flight: its custom resource exists on one group of exactly one pod, which the Service selects.
    flight = next(d for d in app["deployments"] if d["name"] == "Flight")
    custom = set(flight["ray_actor_options"]["resources"])
    (home,) = [name for name, node in workers.items() if custom <= set(node["resources"])]
    assert workers[home]["min_workers"] == workers[home]["max_workers"] == flight["num_replicas"] == 1
    flight_service = one(overlay, "Service")
    selector = flight_service["spec"]["selector"].items()
    for group_name, group in groups(cluster_spec(service)):
        labels = group["template"]["metadata"]["labels"].items()
        assert (selector <= labels) == (group_name == home), f"the Flight Service and group {group_name}"
    (service_port,) = flight_service["spec"]["ports"]
    home_group = dict(groups(cluster_spec(service)))[home]
    assert port(ray_container(home_group), service_port["targetPort"]) == app["args"]["flight_port"]


# --- monitoring and alerts ---------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """The sample names the live app and the backfill export (families, counters' _total, and
    histograms' series)."""
    from obsrvr_ray.backfill_metrics import BackfillMetrics
    from obsrvr_ray.live.live_metrics import ApiMetrics

    names = set()
    for registry in (ApiMetrics(lambda: None).registry, BackfillMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def monitor_components() -> set[str]:
    endpoints = [e for d in documents("monitoring.yaml")
                 for e in d["spec"].get("endpoints", []) + d["spec"].get("podMetricsEndpoints", [])]
    return {r["replacement"] for e in endpoints for r in e.get("relabelings", [])
            if r["targetLabel"] == "obsrvr_component"}


def test_alert_rules_use_the_metrics_the_code_exports():
    (rule_doc,) = documents("alerts.yaml")
    assert (rule_doc["apiVersion"], rule_doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    exported = exported_metric_names()
    rules = [r for g in rule_doc["spec"]["groups"] for r in g["rules"]]
    used: set[str] = set()
    for rule in rules:
        expr = rule["expr"]
        names = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
        assert names and names <= exported, f"{rule['alert']}: {sorted(names - exported)} are not exported"
        components = set(re.findall(r'obsrvr_component="(\w+)"', expr))
        assert components and components <= monitor_components(), f"{rule['alert']} selects {components}"
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
        used |= names
    # What the operators asked to be alerted on.
    assert {"follower_lag_ledgers", "follower_up", "circuit_breaker_state", "export_errors_total",
            "ledgers_processed_total"} <= used
    assert len({r["alert"] for r in rules}) == len(rules)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_monitors_point_at_what_the_manifests_expose(overlay):
    docs = {d["metadata"]["name"]: d for d in documents("monitoring.yaml")}
    service = one(overlay, "RayService")
    http = serve_config(service)["http_options"]

    live = docs["obsrvr-live"]
    assert live["kind"] == "ServiceMonitor"
    # KubeRay labels the Serve Service ray.io/serve=<RayService name>-serve and names its port `serve`.
    assert live["spec"]["selector"]["matchLabels"] == {"ray.io/serve": f"{service['metadata']['name']}-serve"}
    (endpoint,) = live["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("serve", "/metrics")
    assert endpoint["scheme"] == ("https" if http.get("ssl_certfile") else "http")

    head = one(BACKFILL, "RayJob")["spec"]["rayClusterSpec"]["headGroupSpec"]
    driver = docs["obsrvr-backfill-driver"]
    selector = dict(driver["spec"]["selector"]["matchLabels"])
    assert selector.pop("ray.io/node-type") == "head"  # KubeRay's label on head pods
    assert selector.items() <= head["template"]["metadata"]["labels"].items()
    (endpoint,) = driver["spec"]["podMetricsEndpoints"]
    port(ray_container(head), endpoint["port"])

    nodes = docs["obsrvr-ray-nodes"]
    selector = nodes["spec"]["selector"]["matchLabels"].items()
    for doc in (service, ray_doc(BACKFILL)):
        for group_name, group in groups(cluster_spec(doc)):
            assert selector <= group["template"]["metadata"]["labels"].items(), group_name
            port(ray_container(group), nodes["spec"]["podMetricsEndpoints"][0]["port"])


# --- the image and what must never be committed ------------------------------------------------


def test_the_dockerfile_installs_the_project_with_its_compiled_decoder():
    text = (KUBERAY / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    body = "\n".join(instructions)
    python = re.search(r">=\s*(\d+\.\d+)", project()["requires-python"]).group(1)
    assert re.search(rf"^FROM python:{re.escape(python)}-slim\b", body, re.M)
    assert re.search(r"install[^\n]*\bgcc\b", body), "a compiler for obsrvr_ray/xdr/_fastxdr.c"
    assert re.search(r"pip install\b[^\n]*\s\.\s*$", body, re.M), "pip install of the repository"
    assert re.search(r"^COPY\s+obsrvr_ray\b", body, re.M) and "setup.py" in body
    assert "import obsrvr_ray.xdr._fastxdr" in body, "the build fails when the compiled decoder is missing"
    assert re.search(r"install[^\n]*\bwget\b", body), "the readiness probes run wget"


SECRET_PATTERNS = {
    "a PEM block": re.compile(r"-----BEGIN [A-Z ]+-----"),
    "an AWS access key id": re.compile(r"\bA(KIA|SIA)[0-9A-Z]{16}\b"),
    "a literal token": re.compile(r"^\s*(auth_token|RAY_AUTH_TOKEN|aws_secret_access_key)\s*[:=]\s*\S", re.I | re.M),
    "an API key of ours": re.compile(r"\bork_[A-Za-z0-9_-]{8,}"),
}


@pytest.mark.parametrize("path", sorted(p for p in KUBERAY.rglob("*") if p.is_file()),
                         ids=lambda p: str(p.relative_to(KUBERAY)))
def test_no_secret_is_committed(path):
    text = path.read_text()
    for what, pattern in SECRET_PATTERNS.items():
        assert not pattern.search(text), f"{path.name} holds {what}"
    if path.suffix == ".yaml":
        for doc in [d for d in yaml.load_all(text, Loader=LOADER) if d]:
            assert doc.get("kind") != "Secret", "Secrets are created by the operator"
            assert '"name": "RAY_AUTH_TOKEN", "value"' not in json.dumps(doc)


def test_the_cert_manager_example_issues_what_the_mtls_settings_name():
    """cert-manager's CRDs are not here, so the example is checked by structure: cert-manager.io/v1
    Issuers and Certificates, the server certificate in the Secret the RayService mounts, client
    certificates for client auth whose SPIFFE IDs are the identities the settings in its header map,
    and those settings accepted by the app's security settings model."""
    from obsrvr_ray.security.security_settings import TlsSettings

    text = (KUBERAY / "mtls-cert-manager.yaml").read_text()
    docs = [d for d in yaml.load_all(text, Loader=LOADER) if d]
    assert {(d["apiVersion"], d["kind"]) for d in docs} == {("cert-manager.io/v1", "Issuer"),
                                                           ("cert-manager.io/v1", "Certificate")}
    issuers = {d["metadata"]["name"] for d in docs if d["kind"] == "Issuer"}
    certificates = [d for d in docs if d["kind"] == "Certificate"]
    assert all(c["spec"]["issuerRef"]["name"] in issuers for c in certificates)
    mounted = set(re.findall(r"secretName: ([\w-]+)", manifest_text("base/rayservice-live.yaml")))
    server = next(c for c in certificates if c["metadata"]["name"] == "obsrvr-tls")
    assert server["spec"]["secretName"] in mounted and "server auth" in server["spec"]["usages"]
    lines = text.splitlines()
    start = lines.index("#   tls:")
    block = next(i for i in range(start, len(lines)) if not lines[i].startswith("#   "))
    settings = TlsSettings.check(yaml.safe_load("\n".join(x[4:] for x in lines[start:block]))["tls"])
    clients = [c for c in certificates if "client auth" in c["spec"].get("usages", [])]
    assert {uri for c in clients for uri in c["spec"]["uris"]} == set(settings.identities)
    assert settings.client_ca == "/etc/obsrvr/tls/ca.crt"
