"""Generic HDF5 I/O shared by every blurvid-rig file: capture and reconstruction alike.

The error types, the schema version, time stamps, units, typed fields with ``units`` attributes,
settings trees (attributes + a JSON copy), the NXroot/NXentry every file starts with, and the
reading side: safe opening of files that a crashed writer left behind, schema checks, required
fields, and the sentence for a damaged file. The SWMR writer lifecycle lives in
:mod:`blurvid_rig.files.swmr`; what a capture stores about the hardware lives in
:mod:`blurvid_rig.files.instrument`.

Only h5py, hdf5plugin and numpy are used; nothing here touches a device or knows a file kind's
layout below ``/entry``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import subprocess
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Self

import h5py
import hdf5plugin
import numpy as np

from hw.errors import RigError

#: Version of the file layout written here. Readers accept any file with the same major version;
#: a minor bump only adds optional fields (see docs/FORMAT.md, "Versioning").
SCHEMA_VERSION = "1.0"
SUPPORTED_MAJOR = 1
CREATOR = "blurvid-rig"

STATUSES = ("complete", "partial", "aborted")

#: HDF5 file-format bounds. SWMR needs at least the 1.10 format; capping it at 1.10 as well keeps
#: captures readable by HDF5 1.10-era tools (Debian 12's h5dump/h5ls, older HDFView and MATLAB),
#: which cannot read objects written in the newest (2.0) format.
H5_LIBVER = ("v110", "v110")

#: Units given to a setting, a metric or a calibration entry from the end of its name.
_SUFFIX_UNITS = {
    "_ns": "ns",
    "_us": "us",
    "_ms": "ms",
    "_s": "s",
    "_hz": "Hz",
    "_khz": "kHz",
    "_mhz": "MHz",
    "_db": "dB",
    "_dn": "counts",
    "_nm": "nm",
    "_um": "um",
    "_mm": "mm",
    "_m": "m",
    "_px": "pixel",
    "_deg": "deg",
    "_rad": "rad",
    "_v": "V",
    "_ma": "mA",
    "_pct": "%",
    "_percent": "%",
    "_degc": "degC",
    "_e": "e-",
    "_e_per_dn": "e-/counts",
}

_TIME_TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}

# Names inside a settings group that the layout itself uses.
_RESERVED = frozenset({"NX_class", "units"})


class CaptureFormatError(RigError):
    """A capture or reconstruction file is malformed, damaged, too new, or not one of ours."""


class CaptureWriteError(RigError, ValueError):
    """Something handed to a capture or reconstruction writer cannot be stored as asked."""


# --------------------------------------------------------------------------------------------
# Small facts
# --------------------------------------------------------------------------------------------


def creator_version() -> str:
    """Installed version of blurvid-rig, or ``"0+unknown"`` when it is not installed."""
    try:
        return metadata.version(CREATOR)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def git_sha(root: Path | None = None) -> str:
    """Commit of the source tree this code runs from, or ``""`` when it is not known.

    Asks ``git rev-parse HEAD`` in ``root`` (default: the directory above the ``blurvid_rig``
    package, the checkout). Provenance only, so never an error: ``""`` when ``root`` has no
    ``.git`` (e.g. an installed package), git is not installed, or git cannot answer (no commit
    yet, a repository it refuses to read).
    """
    if root is None:
        return _own_git_sha()
    return _ask_git(Path(root))


@functools.cache
def _own_git_sha() -> str:
    """:func:`git_sha` of this code's own checkout, asked once per process (every capture and
    reconstruction file records it; the code that runs does not change under it)."""
    return _ask_git(Path(__file__).resolve().parents[2])


def _ask_git(root: Path) -> str:
    if not (root / ".git").exists():
        return ""
    # Without GIT_DIR & co. (set in git hooks), git finds the repository of ``root`` itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def now_iso() -> str:
    """Local time as ISO-8601 with its UTC offset, e.g. ``2025-03-01T14:02:03.123456+01:00``."""
    return datetime.now().astimezone().isoformat(timespec="microseconds")


def units_for(name: str) -> str | None:
    """Units implied by the end of a name (``exposure_us`` -> ``"us"``), or None.

    >>> units_for("exposure_us"), units_for("gain_db"), units_for("mode")
    ('us', 'dB', None)
    """
    low = name.lower()
    best = None
    for suffix, unit in _SUFFIX_UNITS.items():
        if low.endswith(suffix) and (best is None or len(suffix) > len(best[0])):
            best = (suffix, unit)
    return best[1] if best else None


def to_us(value: float, units: str, where: str) -> float:
    """Convert a time stored with ``units`` to microseconds (exact when already in us)."""
    if units not in _TIME_TO_US:
        raise CaptureFormatError(
            f"{where} has units {units!r}; a time must be in s, ms, us or ns. The file was edited "
            "by hand or written by another tool: fix the units attribute."
        )
    return float(value) if units == "us" else float(value) * _TIME_TO_US[units]


def compression_kwargs(compression: str | None) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords for a compression name (``"lz4"``, ``"gzip"`` or None)."""
    if compression is None or compression == "none":
        return {}
    if compression == "lz4":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    raise CaptureWriteError(
        f"Unknown compression {compression!r}; use 'lz4' (Bitshuffle+LZ4, fast), 'gzip' "
        "(portable, slow) or None."
    )


def py_value(value: Any) -> Any:
    """Turn numpy scalars/arrays and bytes read from HDF5 into plain Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OS":
            return [py_value(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any, where: str) -> str:
    """JSON text of a settings-like tree; refuses NaN/inf and objects JSON cannot hold."""
    try:
        return json.dumps(value, default=_json_default, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise CaptureWriteError(
            f"{where} cannot be stored: {e}. Settings must be numbers (finite), strings, booleans, "
            "lists of those or nested dicts."
        ) from e


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def check_finite(value: Any, where: str) -> None:
    """Raise CaptureWriteError if a number or numeric array holds NaN or inf."""
    arr = np.asarray(value)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise CaptureWriteError(
            f"{where} holds NaN or infinity; metadata stored in a capture must be finite numbers. "
            "Fix the value before starting the capture."
        )


def write_field(
    group: h5py.Group, name: str, value: Any, units: str | None = None, **kwargs: Any
) -> h5py.Dataset:
    """Create a dataset ``name`` holding ``value``; numbers get a ``units`` attribute.

    Args:
        group: parent group.
        name: dataset name.
        value: str, number, bool or numpy array.
        units: units string; numeric values without explicit units get ``"1"`` (dimensionless).
        **kwargs: passed to ``create_dataset``.

    Returns:
        The new dataset.
    """
    if isinstance(value, str):
        return group.create_dataset(name, data=value, dtype=h5py.string_dtype())
    data = np.asarray(value)
    check_finite(data, f"{group.name}/{name}")
    ds = group.create_dataset(name, data=data, **kwargs)
    if data.dtype.kind in "iuf":
        ds.attrs["units"] = units if units is not None else "1"
    return ds


def new_group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    """Create a child group with its ``NX_class`` attribute."""
    g = parent.create_group(name)
    g.attrs["NX_class"] = nx_class
    return g


def _attr_value(value: Any, where: str) -> Any:
    """Value as an HDF5 attribute: scalars and uniform lists as such, the rest as JSON text."""
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, (int, np.integer)):
        return np.int64(value)
    if isinstance(value, (float, np.floating)):
        check_finite(value, where)
        return np.float64(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0:
        items = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
        if all(isinstance(v, str) for v in items):
            return np.array(items, dtype=h5py.string_dtype())
        if all(isinstance(v, (bool, np.bool_)) for v in items):
            return np.array(items, dtype=bool)
        numeric = (int, float, np.integer, np.floating)
        if all(isinstance(v, numeric) and not isinstance(v, (bool, np.bool_)) for v in items):
            arr = np.asarray(value)
            check_finite(arr, where)
            return arr
    return to_json(value, where)


def write_attr_tree(group: h5py.Group, tree: Mapping[str, Any], where: str) -> None:
    """Store a (possibly nested) settings dict as attributes, one subgroup per nested dict.

    Values whose name ends in a unit suffix (``_us``, ``_db``, ...) get their units recorded as an
    attribute of the same name in a child group ``units`` (ScopeFoundry's habit).
    """
    units: dict[str, str] = {}
    for key, value in tree.items():
        if not isinstance(key, str) or not key or "/" in key or key in _RESERVED:
            raise CaptureWriteError(
                f"{where}: the name {key!r} cannot be stored; names are non-empty strings without "
                f"'/' and not one of {sorted(_RESERVED)}. Rename that setting."
            )
        path = f"{where}.{key}"
        if isinstance(value, Mapping):
            write_attr_tree(new_group(group, key, "NXcollection"), value, path)
            continue
        group.attrs[key] = _attr_value(value, path)
        unit = units_for(key)
        if unit is not None and not isinstance(value, str):
            units[key] = unit
    if units:
        ugroup = new_group(group, "units", "NXcollection")
        for key, unit in units.items():
            ugroup.attrs[key] = unit


def read_attr_tree(group: h5py.Group) -> dict[str, Any]:
    """Inverse of :func:`write_attr_tree` (lists come back as lists, JSON text stays text)."""
    out: dict[str, Any] = {k: py_value(v) for k, v in group.attrs.items() if k != "NX_class"}
    for key, child in group.items():
        if isinstance(child, h5py.Group) and key != "units":
            out[key] = read_attr_tree(child)
    return out


def scalar_attrs(group: h5py.Group, snapshot: Mapping[str, Any], where: str) -> None:
    """Store a flat name -> scalar snapshot (e.g. a GenICam node map) as attributes.

    Non-finite floats are stored as text (``"nan"``, ``"inf"``) so a snapshot never fails a capture;
    anything that is not a scalar is stored as its JSON text.
    """
    for key, value in snapshot.items():
        if not isinstance(key, str) or not key or key == "NX_class":
            raise CaptureWriteError(f"{where}: the name {key!r} cannot be stored as an attribute.")
        if isinstance(value, (float, np.floating)) and not math.isfinite(value):
            group.attrs[key] = str(float(value))
        elif isinstance(value, (bool, np.bool_, int, np.integer, float, np.floating, str)):
            group.attrs[key] = _attr_value(value, f"{where}.{key}")
        else:
            group.attrs[key] = to_json(value, f"{where}.{key}")


def root_attrs(f: h5py.File, *, kind: str, uuid: str, time: str) -> None:
    """Write the NXroot attributes every blurvid-rig file carries (status starts as partial)."""
    f.attrs["NX_class"] = "NXroot"
    f.attrs["default"] = "entry"
    f.attrs["creator"] = CREATOR
    f.attrs["creator_version"] = creator_version()
    f.attrs["file_time"] = time
    f.attrs["uuid"] = uuid
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["kind"] = kind
    f.attrs["status"] = "partial"
    f.attrs["HDF5_Version"] = h5py.version.hdf5_version
    f.attrs["h5py_version"] = h5py.version.version


def entry_group(f: h5py.File, *, title: str, start_time: str) -> h5py.Group:
    """Create ``/entry`` (NXentry) with title, start_time and program_name."""
    entry = new_group(f, "entry", "NXentry")
    entry.attrs["default"] = "data"
    write_field(entry, "title", title)
    write_field(entry, "start_time", start_time)
    prog = write_field(entry, "program_name", CREATOR)
    prog.attrs["version"] = creator_version()
    prog.attrs["git_sha"] = git_sha()
    return entry


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _superblock(path: Path) -> tuple[int, int, int] | None:
    """(version, consistency flags, end-of-file address incl. base) of a v2/v3 superblock."""
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 44 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] not in (2, 3):
        return None
    if head[9] != 8:  # size of offsets; every HDF5 library we know writes 8
        return None
    base, _ext, eof = struct.unpack_from("<3Q", head, 12)
    return head[8], head[11], base + eof


def open_h5(path: Path) -> tuple[h5py.File, str]:
    """Open an HDF5 file for reading, including files a crashed SWMR writer left behind.

    Order: refuse non-HDF5 and truncated files up front (a SWMR-mode open of a truncated file
    retries its reads for minutes instead of failing); then a normal read-only open; if that fails
    because the file is still marked open for writing, a SWMR read (``swmr=True``), which is how a
    file killed mid-capture is read without ``h5clear``; on a locking failure, an open without
    file locking.

    Returns:
        The open file and how it was opened (``"normal"``, ``"swmr"`` or ``"no-locking"``).

    Raises:
        CaptureFormatError: missing, not HDF5, truncated, or unreadable file.
    """
    if not path.is_file():
        raise CaptureFormatError(f"{path} does not exist or is not a file; check the path.")
    if not h5py.is_hdf5(path):
        raise CaptureFormatError(
            f"{path} is not an HDF5 file (its first bytes are not an HDF5 signature), so it is not "
            "a blurvid-rig capture or reconstruction; pick a '.h5' file written by blurvid-rig."
        )
    sb = _superblock(path)
    size = path.stat().st_size
    if sb is not None and size < sb[2]:
        if path.name.endswith(".partial") and size < 4096:
            raise CaptureFormatError(
                f"{path} holds no frames at all: its writer stopped while creating it ({size} "
                f"bytes of the {sb[2]} its HDF5 header announces). Nothing was recorded in it; "
                "delete it."
            )
        raise CaptureFormatError(
            f"{path} is truncated: it holds {size} bytes but its HDF5 header says {sb[2]}. It was "
            "cut short (interrupted copy, full disk). Copy it again from the original; if this is "
            "the original, the end of the file is lost."
        )
    try:
        return h5py.File(path, "r"), "normal"
    except OSError as first:
        message = str(first)
        marked_open = sb is not None and sb[1] != 0
        attempts: list[tuple[str, dict[str, Any]]] = []
        if marked_open or "already open for write" in message:
            attempts.append(("swmr", {"swmr": True}))
        if "lock" in message.lower():
            attempts.append(("no-locking", {"locking": False}))
            attempts.append(("swmr", {"swmr": True, "locking": False}))
        for how, kwargs in attempts:
            try:
                return h5py.File(path, "r", **kwargs), how
            except OSError:
                continue
        raise CaptureFormatError(
            f"{path} could not be opened by HDF5 ({message}). The file is damaged; if a writer "
            "crashed while writing it, try `h5clear -s` on a copy and open the copy."
        ) from first


def parse_schema(f: h5py.File, path: Path, kind: str) -> str:
    """Check that an open file is a blurvid-rig file of ``kind`` with a readable schema version.

    Returns:
        The schema version string.

    Raises:
        CaptureFormatError: not ours, wrong kind, or a schema this version cannot read.
    """
    attrs = f.attrs
    if "schema_version" not in attrs or py_value(attrs.get("creator")) != CREATOR:
        raise CaptureFormatError(
            f"{path} is an HDF5 file but not a blurvid-rig file (its root has no "
            f"creator='{CREATOR}' and schema_version attributes); open it with h5py or "
            "another tool."
        )
    found_kind = py_value(attrs.get("kind", ""))
    if found_kind != kind:
        hint = "ReconFile.open" if found_kind == "reconstruction" else "CaptureFile.open"
        raise CaptureFormatError(
            f"{path} is a blurvid-rig {found_kind or 'file of unknown kind'}, not a {kind} file; "
            f"open it with {hint}."
        )
    version = str(py_value(attrs["schema_version"]))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise CaptureFormatError(
            f"{path} has schema_version {version!r}, which is not of the form MAJOR.MINOR; the "
            "file was edited or damaged."
        ) from None
    if major > SUPPORTED_MAJOR:
        raise CaptureFormatError(
            f"{path} uses file schema {version}, newer than the {SUPPORTED_MAJOR}.x this "
            f"blurvid-rig ({creator_version()}) reads; upgrade blurvid-rig to read it."
        )
    if major < 1:
        raise CaptureFormatError(
            f"{path} uses file schema {version}, which no released blurvid-rig wrote; the file was "
            "edited or damaged."
        )
    return version


def check_numeric_finite(group: h5py.Group, path: Path, skip: frozenset[str]) -> None:
    """Raise CaptureFormatError if any float dataset or attribute under ``group`` is NaN/inf.

    Args:
        group: where to start.
        path: file path, for the message.
        skip: dataset names (full HDF5 paths) not to scan (e.g. the bulk image data).
    """
    bad: list[str] = []

    def _attrs(obj: h5py.HLObject) -> None:
        for key, value in obj.attrs.items():
            arr = np.asarray(value)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad.append(f"{obj.name}@{key}")

    def _visit(name: str, obj: h5py.HLObject) -> None:
        _attrs(obj)
        if isinstance(obj, h5py.Dataset) and obj.name not in skip and obj.dtype.kind == "f":
            if not np.isfinite(obj[()]).all():
                bad.append(obj.name)

    _attrs(group)
    group.visititems(_visit)
    if bad:
        raise CaptureFormatError(
            f"{path}: numeric metadata {', '.join(bad[:5])} holds NaN or infinity; metadata must "
            "be finite numbers. The file was written by a faulty tool or damaged; fix or drop "
            "those values with h5py before using it."
        )


#: The exceptions h5py raises when a file's bytes are damaged (and a malformed file's values).
H5_READ_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError)


def damaged_file_error(path: Path, e: BaseException, where: str = "") -> CaptureFormatError:
    """The sentence for an HDF5 read that failed: what was damaged, and what to do."""
    msg = str(e)
    low = msg.lower()
    place = f" ({where})" if where else ""
    todo = "The file cannot be read as a whole; use the original copy if there is one."
    if "checksum" in low:
        why = "part of its HDF5 metadata is damaged (incorrect checksum)"
    elif "filter returned failure" in low or "can't read data" in low or "read failed" in low:
        why = "part of its data is damaged (a compressed chunk cannot be decoded)"
        todo = (f"The other frames can still be read; `blurvid-rig info --verify {path}` lists "
                "the damaged ones.")
    elif "bad object header" in low or "unable to synchronously open object" in low:
        why = "one of its HDF5 objects cannot be read (damaged object header)"
    else:
        why = f"reading it failed ({type(e).__name__}: {msg})"
    return CaptureFormatError(f"{path} is damaged{place}: {why}. {todo}")


class H5Reader:
    """What the capture and reconstruction readers share: the open file, its path, ``len``
    (``n_frames``, set by the reader's load), closing (idempotent) and ``with``."""

    n_frames: int
    status: str

    def __init__(self, f: h5py.File, path: Path) -> None:
        self._f = f
        self.path = path

    def __len__(self) -> int:
        return self.n_frames

    def close(self) -> None:
        """Close the HDF5 file (idempotent)."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, status={self.status!r}, "
                f"n_frames={self.n_frames})")


def load_or_close(f: h5py.File, path: Path, load: Callable[[], None]) -> None:
    """Run a reader's ``load``; on any error close ``f``, and turn an HDF5 error into the
    project's format error that names the file (:func:`damaged_file_error`)."""
    try:
        load()
    except CaptureFormatError:
        f.close()
        raise
    except H5_READ_ERRORS as e:
        f.close()
        raise damaged_file_error(path, e) from e


def read_header(f: h5py.File, path: Path, kind: str) -> tuple[str, str, str, str]:
    """The root attributes every file of ours has: ``(schema_version, uuid, status,
    status_reason)``, the schema checked for ``kind`` and the status one of :data:`STATUSES`.

    Raises:
        CaptureFormatError: wrong kind, newer schema, or an unknown status.
    """
    schema = parse_schema(f, path, kind)
    uuid = str(py_value(f.attrs.get("uuid", "")))
    status = str(py_value(f.attrs.get("status", "")))
    if status not in STATUSES:
        raise CaptureFormatError(
            f"{path} has status {status!r}; expected one of {STATUSES}. The file was edited or "
            "damaged."
        )
    return schema, uuid, status, str(py_value(f.attrs.get("status_reason", "")))


def require(f: h5py.Group, name: str, path: Path, what: str) -> Any:
    """``f[name]``, or a CaptureFormatError naming the missing (or unreadable) item."""
    try:
        return f[name]
    except KeyError as e:
        if "checksum" in str(e).lower() or "object header" in str(e).lower():
            raise damaged_file_error(path, e, f"{name}, {what}") from None
        raise CaptureFormatError(
            f"{path} lacks {name} ({what}); the file is damaged or was not written by "
            "blurvid-rig. It cannot be used without it."
        ) from None


def read_str(g: h5py.Group, name: str, default: str = "") -> str:
    """A string field (or ``default`` when absent)."""
    if name not in g:
        return default
    return str(py_value(g[name][()]))


def allocated_frames(data: h5py.Dataset, n: int) -> int:
    """How many of the first ``n`` frames (axis 0) have their chunks on disk.

    A frame whose chunk was never written reads back as fill values (zeros), so a crash between
    growing a dataset and writing it must not count that frame as recovered. Checks the first and
    the last chunk of each frame when the chunk count says some are missing.
    """
    if n == 0 or data.chunks is None:
        return n
    per_frame = math.prod(
        math.ceil(s / c) for s, c in zip(data.shape[1:], data.chunks[1:], strict=True)
    )
    if data.chunks[0] == 1 and data.id.get_num_chunks() >= data.shape[0] * per_frame:
        return n
    last = tuple((s - 1) // c * c for s, c in zip(data.shape[1:], data.chunks[1:], strict=True))
    for i in range(n):
        for coord in ((i, *([0] * (data.ndim - 1))), (i, *last)):
            if data.id.get_chunk_info_by_coord(coord).byte_offset is None:
                return i
    return n


def read_num(g: h5py.Group, name: str, path: Path) -> Any:
    """A required numeric field as a Python value."""
    return py_value(require(g, name, path, f"field {name}")[()])


def read_time_us(g: h5py.Group, name: str, path: Path) -> float:
    """A required time field converted to microseconds from its ``units``."""
    ds = require(g, name, path, f"field {name}")
    return to_us(ds[()], str(py_value(ds.attrs.get("units", "us"))), f"{path}:{ds.name}")

