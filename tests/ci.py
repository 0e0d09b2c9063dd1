"""A missing install in the tests: a failure under ``CI=true``, a skip elsewhere."""

from __future__ import annotations

import os

import pytest


def missing_install(msg: str) -> None:
    """Fail (under ``CI=true``) or skip with ``msg``, which says what to install and how."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)
