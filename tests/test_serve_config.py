"""obsrvr_ray/serve/config.example.yaml, the `serve run` / `serve deploy` config in the repo:
Ray Serve's own schema accepts it without ignoring a key, it holds no secret, and Serve's
application builder turns its args into the live app with authentication and TLS on. Offline:
building binds deployments and starts no Ray."""

from __future__ import annotations

import copy
import re
import secrets
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

CONFIG = REPO / "obsrvr_ray" / "serve" / "config.example.yaml"


def unknown_keys(mapping: dict, model) -> set[str]:
    """Keys a Serve schema model would silently ignore (Serve accepts extra keys)."""
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    return set(mapping) - known


@pytest.fixture
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture
def clean_env(monkeypatch):
    """SecuritySettings also reads OBSRVR_* variables: the file alone must decide here."""
    import os

    for name in [n for n in os.environ if n.startswith("OBSRVR_")]:
        monkeypatch.delenv(name)


def test_ray_serve_accepts_the_config_without_ignoring_a_key(config):
    from ray.serve.schema import DeploymentSchema, HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

    ServeDeploySchema.model_validate(config)  # what `serve deploy` and `serve run` check
    assert unknown_keys(config, ServeDeploySchema) == set()
    assert unknown_keys(config["http_options"], HTTPOptionsSchema) == set()
    (app,) = config["applications"]
    assert unknown_keys(app, ServeApplicationSchema) == set()
    for deployment in app["deployments"]:
        assert unknown_keys(deployment, DeploymentSchema) == set(), deployment["name"]
    assert app["import_path"] == "obsrvr_ray.serve.deployments:build"


def test_the_config_holds_no_secret_only_file_names(config):
    text = CONFIG.read_text()
    assert not re.search(r"-----BEGIN [A-Z ]+-----", text)
    assert not re.search(r"\bork_[A-Za-z0-9_-]{8,}", text)  # an API key of ours
    security = config["applications"][0]["args"]["security"]
    assert "secret" not in security["jwt"] and "public_key" not in security["jwt"]  # only *_file
    assert security["dev_mode"] is False and security["public_metrics"] is False


def test_serves_builder_makes_the_app_from_the_args_with_auth_and_tls_on(config, tmp_path, clean_env):
    import ray
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.deployment import Application

    from obsrvr_ray.security.keystore import KeyStore
    from obsrvr_ray.security.tls import generate_self_signed
    from obsrvr_ray.serve.http_security import build_guard
    from obsrvr_ray.serve.serve_settings import live_config_from_args

    (app,) = config["applications"]
    args = copy.deepcopy(app["args"])
    # The files the config names are provided on each node; temporary ones stand in for them here.
    tls = generate_self_signed(tmp_path / "tls")
    store = KeyStore(tmp_path / "keys.json")
    store.create("reader")
    secret = tmp_path / "jwt-secret"
    secret.write_text(secrets.token_hex(32))
    security = args["security"]
    given = {security["key_store"], security["tls_cert"], security["tls_key"], security["jwt"]["secret_file"]}
    assert all(Path(p).is_absolute() for p in given)
    security.update(key_store=str(store.path), tls_cert=str(tls.cert), tls_key=str(tls.key))
    security["jwt"]["secret_file"] = str(secret)
    args["dataset"] = str(tmp_path / "live")

    built = call_user_app_builder_with_args_if_necessary(import_attr(app["import_path"]), args)

    names, todo = [], [built]
    while todo:
        deployment = todo.pop()._bound_deployment
        names.append(deployment.name)
        todo += [a for a in [*deployment.init_args, *deployment.init_kwargs.values()] if isinstance(a, Application)]
    assert names[0] == "Api"  # the ingress
    assert set(names) == {d["name"] for d in app["deployments"]} == {"Api", "Flight", "Follower"}

    live = live_config_from_args(args)
    assert live.security.auth_enabled and live.security.tls_enabled and not live.security.public_metrics
    assert live.security.jwt.configured and live.security.jwt.issuer and live.security.jwt.audience
    guard, routers, _ = build_guard(live.security)  # what each Api replica builds
    assert guard.gate.store is not None and guard.gate.tokens is not None and routers  # API keys, JWT, admin API
    assert config["http_options"]["ssl_certfile"] == app["args"]["security"]["tls_cert"]  # one certificate
    assert live.follower.rpc_max_concurrent == args["resilience"]["rpc_max_concurrent"]
    assert live.follower.lake_options.max_concurrent == args["resilience"]["lake_max_concurrent"]
    assert not ray.is_initialized()
