"""The package's version is the crate's, and the tests run against the installed package."""

from __future__ import annotations

import importlib.metadata
import os
import re

import glstream
from helpers import run

CARGO_TOML = os.path.join(os.path.dirname(__file__), "..", "..", "Cargo.toml")


def test_the_version_is_the_crates():
    with open(CARGO_TOML, encoding="utf-8") as f:
        crate = re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)
    assert glstream.__version__ == crate
    assert importlib.metadata.version("glstream") == crate
    assert run("--version").decode().split()[-1] == crate


def test_the_installed_package_is_under_test():
    # Not python/src on sys.path: .ci/run installs the package (non-editable) and tests that.
    assert "site-packages" in glstream.__file__, glstream.__file__


def test_the_installed_package_is_the_source_here():
    # A stale install would test old code: reinstall with pip install "./python[all]".
    source = os.path.join(os.path.dirname(__file__), "..", "src", "glstream")
    installed = os.path.dirname(glstream.__file__)
    names = sorted(n for n in os.listdir(source) if n.endswith((".py", ".typed")))
    assert names == sorted(n for n in os.listdir(installed) if n.endswith((".py", ".typed")))
    for name in names:
        with open(os.path.join(source, name), "rb") as a, open(os.path.join(installed, name), "rb") as b:
            assert a.read() == b.read(), (
                f"{name} differs from the installed copy: pip install \"./python[all]\""
            )
