"""`obsrvr-ray serve` on a Ray cluster: join it, start Serve's HTTP proxy on the app's listener
(host, port, TLS) and deploy the app. The command line prints and waits; Ray stays here."""

from __future__ import annotations

import ray
from ray import serve
from ray.serve.config import HTTPOptions

from obsrvr_ray.jobs.driver import connect
from obsrvr_ray.serve.deployments import compose
from obsrvr_ray.serve.serve_settings import LiveAppConfig

APP = "obsrvr"


def start(config: LiveAppConfig, ray_address: str | None) -> str:
    """Deploy the app (it keeps running without this process); the base URL of its HTTP listener."""
    connect(ray_address)
    sec = config.security
    http = HTTPOptions(host=sec.bind_hosts[0], port=config.http_port, ssl_certfile=sec.tls_cert,
                       ssl_keyfile=sec.tls_key)
    serve.start(http_options=http)
    serve.run(compose(config), name=APP, route_prefix="/", blocking=False)
    return f"{'https' if sec.tls_enabled else 'http'}://{http.host}:{http.port}"


def stop() -> None:
    """Remove the app and leave the cluster."""
    serve.delete(APP)
    ray.shutdown()
