"""Fetch the console's charting library (uPlot) from npm and put the files it ships into vendor/.

    python3 obsrvr_ray/serve/console/fetch_assets.py [--build-dir DIR] [--check]

`make install` runs this (stdlib only, so before the venv exists). How the files are fetched
and checked, in order:

1. `package.json` pins the exact version (no range) and `package-lock.json` records the
   tarball's sha512 `integrity`; `npm ci` in a build directory outside the source tree
   (default `.venv/console-npm`) installs exactly that and refuses a tarball whose digest differs;
2. the installed package's name, version and license are checked against `vendor.json`;
3. the files the console serves (`uPlot.esm.js`, `uPlot.min.css`) and the package's LICENSE are
   copied into `vendor/`, and each copy's sha256 must equal the one recorded in `vendor.json`.

`--check` does only step 3's comparison on the files already in vendor/ (no npm). A new uPlot
version means changing package.json, regenerating the lock (`npm install --package-lock-only`)
and recording the new files' digests in vendor.json, all in one reviewed change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"
RECORD = HERE / "vendor.json"
MARKER = ".fetched"  # written last: make's target, present only when every file checked out


class AssetError(Exception):
    pass


def record() -> dict:
    return json.loads(RECORD.read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(vendor: Path = VENDOR) -> list[str]:
    """What is wrong with the files in `vendor` (empty when every file matches its digest)."""
    problems = []
    for name, digest in record()["files"].items():
        path = vendor / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256(path) != digest:
            problems.append(f"{path}: sha256 {sha256(path)} is not the recorded {digest}")
    return problems


def npm_ci(build: Path) -> Path:
    """`npm ci` of package.json + package-lock.json in `build`; the installed package's directory."""
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError("npm is needed to fetch the console's charting library (node 18+ with npm; "
                         "Debian: apt-get install nodejs npm)")
    build.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(HERE / name, build / name)
    done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
                          cwd=build, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssetError(f"npm ci failed in {build}:\n{done.stdout}{done.stderr}")
    wanted = record()["package"]
    installed = build / "node_modules" / wanted["name"]
    meta = json.loads((installed / "package.json").read_text())
    for field in ("name", "version", "license"):
        if meta.get(field) != wanted[field]:
            raise AssetError(f"npm installed {wanted['name']} with {field} {meta.get(field)!r}, "
                             f"vendor.json expects {wanted[field]!r}")
    return installed


def fetch(build: Path, vendor: Path = VENDOR) -> None:
    installed = npm_ci(build)
    sources = record()["sources"]  # vendor name -> path inside the npm package
    staging = Path(tempfile.mkdtemp(prefix=".vendor-", dir=vendor.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the package's files are readable by all
    try:
        for name, inside in sources.items():
            shutil.copyfile(installed / inside, staging / name)
        problems = check(staging)
        if problems:
            raise AssetError("the fetched files differ from vendor.json:\n" + "\n".join(problems))
        (staging / MARKER).write_text(json.dumps(record()["package"]) + "\n")
        if vendor.exists():
            shutil.rmtree(vendor)
        os.replace(staging, vendor)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=HERE.parents[2] / ".venv" / "console-npm")
    parser.add_argument("--check", action="store_true", help="only compare vendor/ with vendor.json")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check()
            if problems:
                raise AssetError("\n".join(problems))
        else:
            fetch(args.build_dir)
    except AssetError as exc:
        print(f"console assets: {exc}", file=sys.stderr)
        return 1
    package = record()["package"]
    print(f"console assets: {package['name']} {package['version']} ({package['license']}) in {VENDOR} checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
