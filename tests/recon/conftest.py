"""Fixtures of the recon tests."""

from __future__ import annotations

import pytest

from recon.photos import APT_COMMAND, PhotoLibrary, PhotoLibraryError, default_photos
from tests.ci import missing_install


@pytest.fixture(scope="module")
def photos() -> PhotoLibrary:
    """The package photo library; skips (or fails under CI=true) without the photo packages."""
    try:
        return default_photos()
    except PhotoLibraryError as e:
        missing_install(f"The photo packages are missing ({e}); install them with `{APT_COMMAND}`.")
