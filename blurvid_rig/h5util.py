"""Shared HDF5 plumbing for blurvid-rig capture and reconstruction files.

This module holds what :mod:`blurvid_rig.capture_file` and :mod:`blurvid_rig.recon_file` have in
common: the error types, the schema version, time stamps, units, typed fields with ``units``
attributes, settings trees (attributes + a JSON copy), safe opening of files that a crashed writer
left behind, the close -> reopen -> rename dance that finalises a SWMR file, and the mapping of
the ``hw.types`` records onto NeXus fields.

Only h5py, hdf5plugin and numpy are used; nothing here touches a device.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import subprocess
from collections.abc import Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from hw.errors import CodeError, RigError
from hw.types import (
    CameraInfo,
    CameraSettings,
    Roi,
    ShutterCode,
    ShutterInfo,
    ShutterStatus,
)

#: Version of the file layout written here. Readers accept any file with the same major version;
#: a minor bump only adds optional fields (see docs/FORMAT.md, "Versioning").
SCHEMA_VERSION = "1.0"
SUPPORTED_MAJOR = 1
CREATOR = "blurvid-rig"

#: Fill value of the provenance columns: a row still holding it was never written.
UNWRITTEN = int(np.iinfo(np.int64).min)

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

    Asks ``git rev-parse HEAD`` in ``root`` (default: the directory above this package, the
    checkout). Provenance only, so never an error: ``""`` when ``root`` has no ``.git`` (e.g. an
    installed package), git is not installed, or git cannot answer (no commit yet, a repository it
    refuses to read).
    """
    if root is None:
        return _own_git_sha()
    return _ask_git(Path(root))


@functools.cache
def _own_git_sha() -> str:
    """:func:`git_sha` of this code's own checkout, asked once per process (every capture and
    reconstruction file records it; the code that runs does not change under it)."""
    return _ask_git(Path(__file__).resolve().parent.parent)


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


def partial_path(final: Path) -> Path:
    """Name a file carries while it is being written: ``<final>.partial``."""
    return final.with_name(final.name + ".partial")


def creating_path(final: Path) -> Path:
    """Name a file carries while its metadata is written, before it becomes ``.partial``: a
    hidden ``.<final>.creating`` (a file killed then holds no frames; nothing reads it)."""
    return final.with_name("." + final.name + ".creating")


def refuse_existing(final: Path) -> None:
    """Refuse to start a file whose final or partial name is taken (nothing is ever overwritten)."""
    for p in (final, partial_path(final)):
        if p.exists():
            raise CaptureWriteError(
                f"{p} already exists; blurvid-rig never overwrites a file. Choose another name, or "
                "move the old file away first (a '.partial' file is what a crashed capture left: "
                "open it with CaptureFile.open to recover its frames)."
            )


def finalise(current: Path, final: Path, status: str, reason: str = "") -> Path:
    """Mark a closed file ``status``, stamp ``end_time`` and rename it to its final name.

    A SWMR writer must not add or change attributes while readers may be attached, so the writer
    closes its SWMR handle first and this reopens the file in ordinary ``r+`` mode to write the
    last metadata. The file is fsynced before the rename and the directory after it.

    Args:
        current: path of the closed file (normally ``<final>.partial``).
        final: name to give it.
        status: ``"complete"`` or ``"aborted"``.
        reason: why the file was aborted (stored as ``@status_reason``).

    Returns:
        The final path.

    Raises:
        CaptureWriteError: the final name is taken (the file stays at ``current``).
    """
    with h5py.File(current, "r+", libver=H5_LIBVER) as f:
        entry = f["entry"]
        if "end_time" in entry:
            del entry["end_time"]
        write_field(entry, "end_time", now_iso())
        f.attrs["status"] = status
        if reason:
            f.attrs["status_reason"] = reason
    with open(current, "rb+") as fh:
        os.fsync(fh.fileno())
    if current == final:
        return final
    if final.exists():
        raise CaptureWriteError(
            f"Cannot rename {current} to {final}: that name is taken. The data are safe in "
            f"{current}; rename it by hand."
        )
    os.replace(current, final)
    try:
        dir_fd = os.open(final.parent, os.O_RDONLY)
    except OSError:
        return final
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename itself has happened
    finally:
        os.close(dir_fd)
    return final


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


# --------------------------------------------------------------------------------------------
# Hardware records (hw.types) <-> NeXus fields
# --------------------------------------------------------------------------------------------

ROI_FIELDS = ("offset_x", "offset_y", "width", "height")


def write_camera(
    instrument: h5py.Group, info: CameraInfo, cs: CameraSettings, nodes: Mapping[str, Any]
) -> h5py.Group:
    """Create ``camera`` (NXdetector) with CameraInfo, CameraSettings, ROI and GenICam snapshot."""
    cam = new_group(instrument, "camera", "NXdetector")
    write_field(cam, "description", f"{info.vendor} {info.model}".strip())
    write_field(cam, "vendor", info.vendor)
    write_field(cam, "model", info.model)
    write_field(cam, "serial_number", info.serial_number)
    write_field(cam, "driver", info.driver)
    write_field(cam, "sensor_width", np.int64(info.sensor_width), "pixel")
    write_field(cam, "sensor_height", np.int64(info.sensor_height), "pixel")
    if np.isfinite(info.pixel_size_um):  # unknown for cameras that do not report it
        write_field(cam, "x_pixel_size", np.float64(info.pixel_size_um), "um")
        write_field(cam, "y_pixel_size", np.float64(info.pixel_size_um), "um")
    write_field(cam, "count_time", np.float64(cs.exposure_us), "us")
    write_field(cam, "frame_rate", np.float64(cs.frame_rate_hz), "Hz")
    write_field(cam, "frame_time", np.float64(1.0 / cs.frame_rate_hz), "s")
    write_field(cam, "gain", np.float64(cs.gain_db), "dB")
    write_field(cam, "black_level", np.float64(cs.black_level_dn), "counts")
    write_field(cam, "pixel_format", cs.pixel_format)
    write_field(cam, "bit_depth_readout", np.int64(cs.bit_depth), "bit")
    write_field(cam, "saturation_value", np.int64(cs.saturation_dn), "counts")
    write_field(cam, "trigger_mode", cs.trigger_mode)
    write_field(cam, "trigger_source", cs.trigger_source)
    write_field(cam, "exposure_mode", cs.exposure_mode)
    roi = new_group(cam, "roi", "NXcollection")
    for name in ("offset_x", "offset_y", "width", "height"):
        write_field(roi, name, np.int64(getattr(cs.roi, name)), "pixel")
    scalar_attrs(new_group(cam, "genicam", "NXcollection"), nodes, "genicam_nodes")
    return cam


def write_shutter(
    instrument: h5py.Group,
    info: ShutterInfo,
    code: ShutterCode,
    status: ShutterStatus | None,
    metrics: Mapping[str, float] | None,
) -> None:
    """Create ``shutter`` (NXcollection): controller, code, metrics and the controller's status."""
    sh = new_group(instrument, "shutter", "NXcollection")
    write_field(sh, "controller", info.controller)
    write_field(sh, "port", info.port)
    write_field(sh, "firmware_version", info.firmware_version)
    write_field(sh, "chip_us_min", np.float64(info.chip_us_min), "us")
    write_field(sh, "chip_us_max", np.float64(info.chip_us_max), "us")
    write_field(sh, "max_chips", np.int64(info.max_chips), "1")
    write_field(sh, "code", code.as_array(), "1")
    write_field(sh, "code_string", code.as_string())
    write_field(sh, "chip_duration", np.float64(code.chip_us), "us")
    write_field(sh, "code_period", np.float64(code.period_us), "us")
    write_field(sh, "n_chips", np.int64(code.n_chips), "1")
    write_field(sh, "n_open", np.int64(code.n_open), "1")
    write_field(sh, "light_fraction", np.float64(code.light_fraction), "1")
    write_field(sh, "code_name", code.name)
    write_field(sh, "code_sha256", code.sha256)
    write_field(sh, "echo_verified", np.bool_(status.echo_verified if status else False))
    mg = new_group(sh, "metrics", "NXcollection")
    for name, value in (metrics or {}).items():
        check_finite(value, f"code_metrics[{name!r}]")
        write_field(mg, name, np.float64(value), units_for(name) or "1")
    if status is not None:
        sg = new_group(sh, "status", "NXcollection")
        write_field(sg, "state", status.state)
        write_field(sg, "code_sha256", status.code_sha256)
        write_field(sg, "n_chips", np.int64(status.n_chips), "1")
        write_field(sg, "chip_us", np.float64(status.chip_us), "us")
        write_field(sg, "trigger_count", np.int64(status.trigger_count), "1")
        write_field(sg, "echo_verified", np.bool_(status.echo_verified))


def read_code(sh: h5py.Group, path: Path) -> ShutterCode:
    """The stored code, checked: 1-D, only 0/1, valid chip duration, matching code_sha256."""
    bits = np.asarray(sh["code"][()])
    if bits.ndim != 1 or bits.dtype.kind not in "biu" or not np.isin(bits, (0, 1)).all():
        raise CaptureFormatError(
            f"{path}: the exposure code {sh.name}/code must be a 1-D array of 0 and 1, got "
            f"{bits.dtype} values {np.unique(bits)[:6].tolist()}; the file is damaged."
        )
    try:
        chip_us = read_time_us(sh, "chip_duration", path)
        code = ShutterCode(tuple(int(b) for b in bits), chip_us, read_str(sh, "code_name"))
    except CodeError as e:
        raise CaptureFormatError(f"{path}: the stored exposure code is invalid: {e}") from e
    stored = read_str(sh, "code_sha256")
    if stored and stored != code.sha256:
        raise CaptureFormatError(
            f"{path}: code_sha256 {stored[:12]}... does not match the stored code bits "
            f"({code.sha256[:12]}...); the code was edited or damaged, so the frames cannot be "
            "trusted to match it."
        )
    return code


def read_shutter_info(sh: h5py.Group, path: Path) -> ShutterInfo:
    """ShutterInfo from the shutter group."""
    return ShutterInfo(
        controller=read_str(sh, "controller"),
        port=read_str(sh, "port"),
        firmware_version=read_str(sh, "firmware_version"),
        chip_us_min=read_time_us(sh, "chip_us_min", path),
        chip_us_max=read_time_us(sh, "chip_us_max", path),
        max_chips=int(read_num(sh, "max_chips", path)),
    )


def read_shutter_status(sh: h5py.Group, path: Path) -> ShutterStatus | None:
    """ShutterStatus from ``shutter/status``, or None when the controller reported none."""
    if "status" not in sh:
        return None
    sg = sh["status"]
    return ShutterStatus(
        state=read_str(sg, "state"),
        code_sha256=read_str(sg, "code_sha256"),
        n_chips=int(read_num(sg, "n_chips", path)),
        chip_us=read_time_us(sg, "chip_us", path),
        trigger_count=int(read_num(sg, "trigger_count", path)),
        echo_verified=bool(read_num(sg, "echo_verified", path)),
    )


def read_camera_info(cam: h5py.Group, path: Path) -> CameraInfo:
    """CameraInfo from the camera group."""
    return CameraInfo(
        vendor=read_str(cam, "vendor"),
        model=read_str(cam, "model"),
        serial_number=read_str(cam, "serial_number"),
        sensor_width=int(read_num(cam, "sensor_width", path)),
        sensor_height=int(read_num(cam, "sensor_height", path)),
        pixel_size_um=float(read_num(cam, "x_pixel_size", path))
        if "x_pixel_size" in cam
        else float("nan"),
        driver=read_str(cam, "driver"),
    )


def read_camera_settings(cam: h5py.Group, path: Path) -> CameraSettings:
    """CameraSettings from the camera group (times converted from their units)."""
    roi = require(cam, "roi", path, "the camera ROI")
    try:
        return CameraSettings(
            exposure_us=read_time_us(cam, "count_time", path),
            gain_db=float(read_num(cam, "gain", path)),
            pixel_format=read_str(cam, "pixel_format"),
            roi=Roi(**{k: int(read_num(roi, k, path)) for k in ROI_FIELDS}),
            trigger_mode=read_str(cam, "trigger_mode"),
            trigger_source=read_str(cam, "trigger_source"),
            exposure_mode=read_str(cam, "exposure_mode"),
            frame_rate_hz=float(read_num(cam, "frame_rate", path)),
            black_level_dn=float(read_num(cam, "black_level", path)),
        )
    except ValueError as e:
        raise CaptureFormatError(f"{path}: the stored camera settings are invalid: {e}") from e
