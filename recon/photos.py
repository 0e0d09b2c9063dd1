"""Still photographs and dead-leaves textures, the textures of the synthetic scenes.

:class:`PhotoLibrary` holds grayscale photographs from the free-licence Debian wallpaper packages
(:data:`PHOTO_PACKAGES`), or from given folders, or from a cache file written by
:meth:`PhotoLibrary.save_cache` (``python -m recon.photo_cache``); near-duplicates are grouped and
the groups split into ``"train"``, ``"val"`` and ``"test"`` so the test scenes use photographs
training never saw. The dead-leaves bank (:data:`DEAD_LEAVES_SEEDS`, :func:`dead_leaves_image`)
is split the same way. :class:`recon.scenes.SceneSampler` cuts its layers from both.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from recon.data import dead_leaves

__all__ = [
    "APT_COMMAND", "DEAD_LEAVES_SEEDS", "PHOTO_PACKAGES", "SPLITS", "PhotoLibrary",
    "PhotoLibraryError", "dead_leaves_image", "default_photos", "package_photo_paths",
    "preload_dead_leaves",
]

#: Debian packages whose still photographs (free licences) feed the scenes.
PHOTO_PACKAGES: tuple[str, ...] = (
    "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds",
)
APT_COMMAND = "sudo apt-get install -y " + " ".join(PHOTO_PACKAGES)
PHOTO_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
DPKG_INFO_DIR = Path("/var/lib/dpkg/info")
#: Splits of the photos (and of the dead-leaves bank): group ``g`` (sorted) is test if
#: ``g % 5 == 4`` (every 5th), val if ``g % 10 == 1``, train otherwise.
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Two files whose 64x64 high-passed thumbnails correlate above this are one picture (the same
# photo at several resolutions, colour variants of one design): they share a split.
_DUPLICATE_CORRELATION = 0.9
_IMAGE_CACHE: dict[tuple[str, int, int], np.ndarray] = {}


class PhotoLibraryError(FileNotFoundError):
    """No usable photograph was found, or one could not be read. The message says what to do."""


def _split_of_group(g: int) -> str:
    if g % 5 == 4:
        return "test"
    if g % 10 == 1:
        return "val"
    return "train"


def package_photo_paths(packages: Sequence[str] = PHOTO_PACKAGES,
                        info_dir: Path = DPKG_INFO_DIR) -> list[Path]:
    """Photographs installed by Debian packages, from dpkg's file lists (what ``dpkg -L`` prints).

    Args:
        packages: package names.
        info_dir: dpkg's database folder.

    Returns:
        Existing ``.jpg``/``.jpeg``/``.png`` files, sorted, without duplicates.
    """
    found: set[Path] = set()
    for pkg in packages:
        for lst in sorted(info_dir.glob(f"{pkg}.list")) + sorted(info_dir.glob(f"{pkg}:*.list")):
            for line in lst.read_text(encoding="utf-8", errors="replace").splitlines():
                p = Path(line.strip())
                if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file():
                    found.add(p)
    return sorted(found)


def _load_gray(path: Path, max_side: int) -> np.ndarray:
    """Grayscale float32 in [0, 1], short side ~max_side (never upsampled); alpha over black."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, max_side)
    if key in _IMAGE_CACHE:
        return _IMAGE_CACHE[key]
    try:
        with Image.open(path) as im:
            w0, h0 = im.size
    except OSError as e:
        raise PhotoLibraryError(f"Cannot read the image header of {path}: {e}. Remove or replace "
                                "the file, or pass roots= without it.") from e
    if path.suffix.lower() in (".jpg", ".jpeg"):
        factor = min(w0, h0) // max_side  # JPEG decodes directly at 1/2, 1/4 or 1/8 size
        flag = (cv2.IMREAD_REDUCED_GRAYSCALE_8 if factor >= 8 else
                cv2.IMREAD_REDUCED_GRAYSCALE_4 if factor >= 4 else
                cv2.IMREAD_REDUCED_GRAYSCALE_2 if factor >= 2 else cv2.IMREAD_GRAYSCALE)
        raw = cv2.imread(str(path), flag)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise PhotoLibraryError(f"OpenCV cannot decode {path}; remove or replace the file, or "
                                "pass roots= without it.")
    scale = 65535.0 if raw.dtype == np.uint16 else 255.0
    img = raw.astype(np.float32) / scale
    if img.ndim == 3:
        alpha = img[..., 3] if img.shape[2] == 4 else None
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
        if alpha is not None:
            img = img * alpha  # transparent wallpapers: composite over black
    h, w = img.shape
    if min(h, w) > max_side:
        f = max_side / min(h, w)
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                         interpolation=cv2.INTER_AREA)
    img = np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)
    img.setflags(write=False)
    _IMAGE_CACHE[key] = img
    return img


def _thumbnail(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    s = min(h, w)
    sq = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    t = cv2.resize(sq, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float64)
    t = t - cv2.GaussianBlur(t, (0, 0), 4.0)
    t = t.ravel() - t.mean()
    return t / (np.linalg.norm(t) + 1e-12)


class PhotoLibrary:
    """Still photographs as grayscale float32 images in ``[0, 1]``, cached in memory.

    Files are taken in sorted path order. Each is decoded with OpenCV (transparent PNGs composited
    over black) and downscaled so its short side is ``max_side`` (smaller images are kept as they
    are); the sampler draws crops at random scales from it. Near-duplicates (one photo at several
    resolutions, colour variants of one design) are grouped by their thumbnails, and the groups
    are split by position: every 5th group is ``"test"``, every 10th (offset 1) ``"val"``, the
    rest ``"train"``, so test scenes use photographs never seen in training.

    Args:
        roots: folders searched recursively for ``.jpg``/``.jpeg``/``.png``; default: the files of
            the Debian packages :data:`PHOTO_PACKAGES` (from dpkg's lists).
        max_side: short side of the cached images in pixels (>= 64).

    Raises:
        PhotoLibraryError: no photograph found (the message names the apt packages), or a file
            that cannot be decoded.
        ValueError: ``max_side < 64``.
    """

    def __init__(self, roots: Sequence[str | Path] | None = None, max_side: int = 512) -> None:
        if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 64:
            raise ValueError(f"max_side must be an integer >= 64 pixels; got {max_side!r}.")
        if roots is None:
            paths = package_photo_paths()
            where = "the files of the Debian packages " + ", ".join(PHOTO_PACKAGES)
        else:
            found: set[Path] = set()
            for root in roots:
                for p in Path(root).rglob("*"):
                    if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file():
                        found.add(p)
            paths = sorted(found)
            where = "the folders " + ", ".join(str(r) for r in roots)
        if not paths:
            raise PhotoLibraryError(
                f"No photograph (.jpg, .jpeg, .png) was found in {where}. Install the photo "
                f"packages with `{APT_COMMAND}`, or pass roots= folders that hold photographs."
            )
        self.max_side = max_side
        self.paths: tuple[Path, ...] = tuple(paths)
        self._images = [_load_gray(p, max_side) for p in self.paths]
        thumbs = np.stack([_thumbnail(im) for im in self._images])
        corr = thumbs @ thumbs.T
        parent = list(range(len(paths)))

        def find(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for i, j in zip(*np.nonzero(np.triu(corr, 1) > _DUPLICATE_CORRELATION), strict=True):
            a, b = find(int(i)), find(int(j))
            parent[max(a, b)] = min(a, b)
        roots_sorted = sorted({find(i) for i in range(len(paths))})
        group_of_root = {r: g for g, r in enumerate(roots_sorted)}
        self.groups: tuple[int, ...] = tuple(group_of_root[find(i)] for i in range(len(paths)))
        self._split = {s: tuple(i for i, g in enumerate(self.groups) if _split_of_group(g) == s)
                       for s in SPLITS}
        names = "\n".join(str(p) for p in self.paths)
        #: SHA-256 of the sorted paths and max_side: identifies the library a fixed set came from.
        self.fingerprint = hashlib.sha256(f"{max_side}\n{names}".encode()).hexdigest()

    def save_cache(self, path: str | Path) -> Path:
        """Write the decoded library to one ``.npz`` file (16-bit grey levels, splits kept).

        A machine without the photo packages (a GPU box used for training) can then load the
        same photographs with :meth:`from_cache`, or through the ``BLURVID_PHOTO_CACHE``
        environment variable read by :func:`default_photos`. Grey levels are rounded to 1/65535,
        so scenes rendered from a cache differ from those rendered from the packages by at most
        that much: use it for training, and the packages for the fixed evaluation sets.

        Returns:
            The path written.
        """
        path = Path(path)
        arrays = {f"img{i:03d}": np.round(im * 65535.0).astype(np.uint16)
                  for i, im in enumerate(self._images)}
        np.savez_compressed(path, paths=np.array([str(p) for p in self.paths]),
                            groups=np.array(self.groups, dtype=np.int64),
                            max_side=np.array(self.max_side), fingerprint=np.array(
                                self.fingerprint), **arrays)  # fmt: skip
        return path

    @classmethod
    def from_cache(cls, path: str | Path) -> PhotoLibrary:
        """A library written by :meth:`save_cache`.

        Raises:
            PhotoLibraryError: the file is missing or not such a cache.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                paths = tuple(Path(str(p)) for p in z["paths"])
                groups = tuple(int(g) for g in z["groups"])
                images = []
                for i in range(len(paths)):
                    im = (z[f"img{i:03d}"].astype(np.float32) / np.float32(65535.0))
                    im.setflags(write=False)
                    images.append(im)
                max_side, fingerprint = int(z["max_side"]), str(z["fingerprint"])
        except (OSError, KeyError, ValueError) as e:
            raise PhotoLibraryError(f"Cannot read the photo cache {path}: {e}. Write one with "
                                    "`python -m recon.photo_cache --save-cache FILE`.") from e
        lib = cls.__new__(cls)
        lib.max_side, lib.paths, lib._images, lib.groups = max_side, paths, images, groups
        lib._split = {s: tuple(i for i, g in enumerate(groups) if _split_of_group(g) == s)
                      for s in SPLITS}
        lib.fingerprint = fingerprint
        return lib

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        """The cached image ``index`` (read-only float32, shape ``(H, W)``)."""
        return self._images[index]

    def split(self, name: str) -> tuple[int, ...]:
        """Indices of the photos of one split.

        Args:
            name: ``"train"``, ``"val"`` or ``"test"``.

        Returns:
            Sorted photo indices.

        Raises:
            ValueError: unknown split name.
        """
        if name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; use one of {SPLITS}.")
        return self._split[name]

    def __repr__(self) -> str:
        n = {s: len(v) for s, v in self._split.items()}
        return f"PhotoLibrary({len(self)} photos, max_side={self.max_side}, split={n})"


@functools.cache
def default_photos(max_side: int = 512) -> PhotoLibrary:
    """The package photo library, built once per process (see :class:`PhotoLibrary`).

    With the environment variable ``BLURVID_PHOTO_CACHE`` naming a file written by
    :meth:`PhotoLibrary.save_cache`, the library is read from that file instead.
    """
    cache = os.environ.get("BLURVID_PHOTO_CACHE")
    if cache:
        lib = PhotoLibrary.from_cache(cache)
        if lib.max_side != max_side:
            raise PhotoLibraryError(f"The photo cache {cache} holds max_side={lib.max_side}, "
                                    f"not {max_side}; write a cache with that size.")
        return lib
    return PhotoLibrary(None, max_side)


#: Dead-leaves images used like photographs: seeds per split, side 384 px, r_min 3 px.
DEAD_LEAVES_SEEDS: dict[str, tuple[int, ...]] = {
    "train": tuple(range(8)), "val": (1000, 1001, 1002, 1003), "test": (2000, 2001, 2002, 2003),
}
_DEAD_LEAVES_SIDE = 384


@functools.lru_cache(maxsize=64)
def dead_leaves_image(seed: int) -> np.ndarray:
    """The dead-leaves image of ``seed`` of the bank (:func:`recon.data.dead_leaves`, side 384 px,
    ``r_min`` 3 px), drawn once per process.

    Returns:
        The image, read-only float32 in ``[0, 1]``.

    Shape:
        - output: ``(384, 384)``
    """
    img = dead_leaves(_DEAD_LEAVES_SIDE, _DEAD_LEAVES_SIDE, seed=seed, r_min=3.0).numpy()
    img.setflags(write=False)
    return img


def preload_dead_leaves(split: str = "train") -> None:
    """Draw the dead-leaves images of a split now (about 0.5 s each, once per process).

    Otherwise each is drawn when a scene first uses it, which makes the first batches slow.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        ValueError: unknown split.
    """
    if split not in DEAD_LEAVES_SEEDS:
        raise ValueError(f"Unknown split {split!r}; use one of {SPLITS}.")
    for seed in DEAD_LEAVES_SEEDS[split]:
        dead_leaves_image(seed)
