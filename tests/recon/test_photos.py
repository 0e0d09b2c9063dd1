"""Tests of recon.photos: the photo library (splits, cache) and recon.photo_cache.

Tests that need the photo packages skip without them, or fail under CI=true, naming the apt
command (the ``photos`` fixture of conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import recon.photos as ph
from recon.photo_cache import main as photo_cache_main
from recon.photos import PhotoLibrary, PhotoLibraryError


def test_photo_library_error_names_the_packages(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no photos here")
    with pytest.raises(PhotoLibraryError, match="apt-get install") as e:
        PhotoLibrary(roots=[tmp_path])
    assert all(pkg in str(e.value) for pkg in ph.PHOTO_PACKAGES)


@pytest.mark.slow
def test_photo_library_loads_and_splits_by_picture(photos: PhotoLibrary) -> None:
    assert len(photos) >= 40 and list(photos.paths) == sorted(photos.paths)
    img = photos[0]
    assert img.dtype == np.float32 and img.ndim == 2 and min(img.shape) <= 512
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    splits = {s: set(photos.split(s)) for s in ph.SPLITS}
    assert set().union(*splits.values()) == set(range(len(photos)))
    assert not (splits["train"] & splits["test"]) and not (splits["val"] & splits["test"])
    assert len(splits["test"]) >= 0.15 * len(photos)
    for s, members in splits.items():  # near-duplicates (one group) never straddle splits
        groups = {photos.groups[i] for i in members}
        assert all(photos.groups[i] not in groups for t in ph.SPLITS if t != s
                   for i in splits[t])


def test_photo_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    for i in range(6):  # distinct random pictures: six groups, so all three splits get some
        img = (rng.random((80 + 8 * i, 96)) * 255).astype(np.uint8)
        assert cv2.imwrite(str(tmp_path / f"p{i}.png"), img)
    lib = PhotoLibrary(roots=[tmp_path], max_side=64)
    cache = lib.save_cache(tmp_path / "cache.npz")
    back = PhotoLibrary.from_cache(cache)
    assert back.paths == lib.paths and back.groups == lib.groups
    assert back.fingerprint == lib.fingerprint and back.max_side == 64
    assert all(back.split(s) == lib.split(s) for s in ph.SPLITS)
    err = max(float(np.abs(back[i] - lib[i]).max()) for i in range(len(lib)))
    assert err <= 0.5 / 65535 + 1e-7  # 16-bit grey levels
    with pytest.raises(PhotoLibraryError, match="photo cache"):
        PhotoLibrary.from_cache(tmp_path / "p0.png")
    # default_photos reads the cache named by the environment (its own cache cleared around it)
    monkeypatch.setenv("BLURVID_PHOTO_CACHE", str(cache))
    ph.default_photos.cache_clear()
    try:
        with pytest.raises(PhotoLibraryError, match="max_side=64"):
            ph.default_photos()
        assert ph.default_photos(64).fingerprint == lib.fingerprint
    finally:
        ph.default_photos.cache_clear()


@pytest.mark.slow
def test_photo_cache_command_writes_the_package_library(
    photos: PhotoLibrary, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert photo_cache_main(["--save-cache", str(tmp_path / "lib.npz")]) == 0
    assert PhotoLibrary.from_cache(tmp_path / "lib.npz").fingerprint == photos.fingerprint
    assert "wrote PhotoLibrary(" in capsys.readouterr().out
