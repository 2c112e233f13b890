"""The web console: static files of this package, served by the live app at `/`.

    /                       static/index.html (the page)
    /console/<name>         static/<name>: the console's scripts, styles, icon
    /console/vendor/<name>  vendor/<name>: uPlot (charts) and its license, fetched from npm by
                            `make install` (fetch_assets.py: pinned, integrity-checked, digests in vendor.json)

The page holds no data and no secret, so these answer without credentials, like the OpenAPI
docs; everything the page shows comes from the API with the caller's key. The key is typed
into the page, kept in sessionStorage and sent as a header (`Authorization: Bearer`); the
WebSocket offers it as the `bearer.<key>` subprotocol (obsrvr_ray/serve/http_security.py), never in
a URL. When the app runs with authentication off (`--dev`, loopback only) the page says so in
a meta tag and asks for no key.

Every file is answered with CONSOLE_CSP: scripts, styles, images and connections from this
origin only, no inline script or style, no plugins, frames or form posts. uPlot styles its
elements through CSSOM (element.style), which CSP does not restrict, so it needs no 'unsafe-inline'.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = HERE / "vendor"
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}
AUTH_META = '<meta name="obsrvr-auth" content="required">'


def charting_library() -> dict:
    """The vendored charting library's name, version and license (vendor.json)."""
    return json.loads((HERE / "vendor.json").read_text())["package"]


def _files(root: Path, prefix: str) -> dict[str, tuple[bytes, str]]:
    if not root.is_dir():
        return {}
    return {prefix + p.name: (p.read_bytes(), TYPES[p.suffix]) for p in sorted(root.iterdir())
            if p.is_file() and p.suffix in TYPES}


def console_files(auth_required: bool) -> dict[str, tuple[bytes, str]]:
    """URL path (below the app's root) -> (content, media type). A missing vendor/ (no `make
    install`) leaves the page without charts: it says so and still shows every table."""
    files = {**_files(STATIC, "console/"), **_files(VENDOR, "console/vendor/")}
    page = (STATIC / "index.html").read_text()
    if AUTH_META not in page:
        raise RuntimeError(f"{STATIC / 'index.html'} lost its {AUTH_META}")
    if not auth_required:
        page = page.replace(AUTH_META, '<meta name="obsrvr-auth" content="off">')
    files[""] = (page.encode(), TYPES[".html"])
    del files["console/index.html"]
    return files


def console_router(auth_required: bool) -> APIRouter:
    """GET / and /console/*: the console's files, read once, each with the console's CSP."""
    files = console_files(auth_required)
    router = APIRouter(include_in_schema=False)

    def answer(name: str) -> Response:
        if name not in files:
            raise HTTPException(status_code=404, detail="no such console file")
        content, media_type = files[name]
        return Response(content, media_type=media_type, headers={"Content-Security-Policy": CONSOLE_CSP})

    @router.get("/")
    async def page() -> Response:
        return answer("")

    @router.get("/console/{name:path}")
    async def asset(name: str) -> Response:
        return answer(f"console/{name}")

    return router
