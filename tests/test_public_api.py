"""The package's one public surface: the documented names come from `obsrvr_ray` itself, lazily,
so importing the package loads neither Ray nor delta-rs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import obsrvr_ray
from tests.conftest import REPO


def test_every_public_name_resolves_and_is_documented():
    assert obsrvr_ray.__all__, "obsrvr_ray declares its public names"
    documented = set(re.findall(r"\b\w+\b", obsrvr_ray.__doc__))
    for name in obsrvr_ray.__all__:
        assert getattr(obsrvr_ray, name) is not None
        assert name in documented, f"{name} is public but the package docstring does not list it"
    assert set(obsrvr_ray.__all__) <= set(dir(obsrvr_ray))
    from obsrvr_ray.data import read_ledgers
    from obsrvr_ray.table import TableSet

    assert obsrvr_ray.read_ledgers is read_ledgers and obsrvr_ray.TableSet is TableSet


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        obsrvr_ray.nonexistent  # noqa: B018


def test_import_loads_neither_ray_nor_delta_rs():
    code = ("import sys, obsrvr_ray; obsrvr_ray.decode_ledger; obsrvr_ray.TABLES; "
            "print(sorted(m for m in ('ray', 'deltalake') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
