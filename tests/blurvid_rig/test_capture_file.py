"""Capture and reconstruction files: round trips, crash safety, malformed files, summaries.

Frames are built with ``hw.types`` directly (no simulated camera). ``make_frame`` and
``writer_kwargs`` are module-level so the SIGKILL test's child process regenerates exactly the same
frames from the seed.
"""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from blurvid_rig.files.capture import CaptureFile
from blurvid_rig.files.capture_writer import CaptureWriter, make_capture_path
from blurvid_rig.files.describe import describe_file
from blurvid_rig.files.h5io import CaptureFormatError, CaptureWriteError
from blurvid_rig.files.reconstruction import ReconFile, recon_path_for
from blurvid_rig.files.reconstruction_writer import ReconWriter, write_recon
from hw.errors import RigError
from hw.types import (
    CameraInfo,
    CameraSettings,
    Frame,
    Roi,
    ShutterCode,
    ShutterInfo,
    ShutterStatus,
)

REPO = Path(__file__).resolve().parents[2]
SHAPE = (48, 64)  # (height, width)
CODE = ShutterCode.parse("11100101", 125.5, name="bdinr8")
CAMERA = "/entry/instrument/camera"
SHUTTER = "/entry/instrument/shutter"


def make_frame(i: int, seed: int = 7, shape: tuple[int, int] = SHAPE) -> Frame:
    """Frame ``i`` of a deterministic test capture (ids jump by 3 after frame 6: a 2-frame gap)."""
    rng = np.random.default_rng([seed, i])
    return Frame(
        image=rng.integers(0, 4096, shape, dtype=np.uint16),
        frame_id=1000 + i + (2 if i >= 7 else 0),
        camera_timestamp_ns=5_000_000_000 + i * 33_333_333,
        host_time_ns=1_700_000_000_000_000_000 + i * 33_400_000 + i % 3,
        trigger_index=i,
        code_sha256=CODE.sha256,
        exposure_us=1003.75,
    )


def writer_kwargs() -> dict[str, Any]:
    """Every metadata argument of CaptureWriter, none left at its default."""
    return dict(
        camera_info=CameraInfo(
            vendor="Acme Vision",
            model="AV-1234M",
            serial_number="SN00421",
            sensor_width=1440,
            sensor_height=1080,
            pixel_size_um=3.45,
            driver="simulated",
        ),
        camera_settings=CameraSettings(
            exposure_us=1003.75,
            gain_db=6.25,
            pixel_format="Mono12",
            roi=Roi(offset_x=16, offset_y=32, width=SHAPE[1], height=SHAPE[0]),
            trigger_mode="On",
            trigger_source="Line1",
            exposure_mode="TriggerWidth",
            frame_rate_hz=29.97,
            black_level_dn=64.0,
        ),
        code=CODE,
        shutter_info=ShutterInfo(
            controller="arduino",
            port="/dev/ttyACM0",
            firmware_version="blurvid-fw 1.2.3",
            chip_us_min=4.0,
            chip_us_max=65535.0,
            max_chips=512,
        ),
        shutter_status=ShutterStatus(
            state="armed",
            code_sha256=CODE.sha256,
            n_chips=CODE.n_chips,
            chip_us=125.5,
            trigger_count=17,
            echo_verified=True,
        ),
        frame_shape=SHAPE,
        dtype=np.uint16,
        genicam_nodes={
            "DeviceVendorName": "Acme Vision",
            "ExposureTime": 1003.75,
            "Width": SHAPE[1],
            "ReverseX": False,
            "TriggerActivation": "RisingEdge",
            "DeviceTemperature": float("nan"),  # snapshot oddity: stored as text
        },
        settings={
            "exposure_us": 1003.75,
            "operator": "ana",
            "flags": [True, False],
            "rig": {"led_current_ma": 350, "lens": {"focal_length_mm": 25.0, "f_number": 2.8}},
            "roi_list": [16, 32, 64, 48],
            "notes": None,
        },
        code_metrics={"min_abs_dft": 0.3125, "spectral_flatness": 0.61, "noise_gain_db": 3.5},
        calibration={
            "dark": np.full(SHAPE, 64.25, dtype=np.float32),
            "flat": np.linspace(0.9, 1.1, SHAPE[0] * SHAPE[1]).reshape(SHAPE),
            "gain_e_per_dn": 0.42,
            "read_noise_e": 2.1,
            "shutter": {"latency_us": 12.5, "effective_code": np.array([0.98, 0.97, 0.99, 0.02])},
            "source": "dark+flat 2025-03-01",
        },
        title="spinning fan, 8-chip code",
    )


def write_capture(
    directory: Path, n: int = 10, *, seed: int = 7, keys: list[int] | None = None, **over: Any
) -> tuple[Path, str]:
    """Write and close a capture of ``n`` frames; returns (final path, uuid)."""
    kw = writer_kwargs() | over
    path = make_capture_path(directory, "test", datetime(2025, 3, 1, 14, 2, 3))
    with CaptureWriter(path, **kw) as w:
        for i in range(n):
            w.append(make_frame(i, seed), image_key=(keys[i] if keys else 0))
    return w.path, w.uuid


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    return write_capture(tmp_path)[0]


# ------------------------------------------------------------------------------------------
# Round trip
# ------------------------------------------------------------------------------------------


def test_round_trip_every_field(tmp_path: Path) -> None:
    keys = [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    path, uuid = write_capture(tmp_path, 10, keys=keys, flush_every=3)
    kw = writer_kwargs()
    assert path.name == "250301_140203_test.h5"
    assert not Path(str(path) + ".partial").exists()
    with CaptureFile.open(path) as c:
        assert c.status == "complete" and c.opened_with == "normal"
        assert c.uuid == uuid and c.title == kw["title"] and c.schema_version == "1.0"
        for stamp in (c.start_time, c.end_time):
            assert datetime.fromisoformat(stamp).tzinfo is not None
        assert c.code == CODE and c.code.name == "bdinr8"
        assert c.code_metrics == kw["code_metrics"]
        assert c.camera_info == kw["camera_info"]
        assert c.camera_settings == kw["camera_settings"]
        assert c.shutter_info == kw["shutter_info"]
        assert c.shutter_status == kw["shutter_status"]
        assert c.echo_verified is True
        assert c.genicam == kw["genicam_nodes"] | {"DeviceTemperature": "nan"}
        assert c.settings == kw["settings"]
        cal, want = c.calibration, kw["calibration"]
        assert set(cal) == set(want)
        np.testing.assert_array_equal(cal["dark"], want["dark"])
        assert cal["dark"].dtype == np.float32
        np.testing.assert_array_equal(cal["flat"], want["flat"])
        assert cal["gain_e_per_dn"] == 0.42 and cal["read_noise_e"] == 2.1
        assert cal["source"] == want["source"]
        assert cal["shutter"]["latency_us"] == 12.5
        np.testing.assert_array_equal(
            cal["shutter"]["effective_code"], want["shutter"]["effective_code"]
        )
        assert len(c) == c.n_frames == 10 and c.frame_shape == SHAPE and c.dtype == np.uint16
        np.testing.assert_array_equal(c.image_key, keys)
        frames = [make_frame(i) for i in range(10)]
        for i, fr in enumerate(frames):
            got = c.read_frame(i)
            assert got.dtype == np.uint16
            np.testing.assert_array_equal(got, fr.image)
        np.testing.assert_array_equal(list(c.frames(3, 5)), [frames[3].image, frames[4].image])
        assert len(list(c.frames())) == 10
        log = c.frame_log
        for name in ("frame_id", "camera_timestamp_ns", "host_time_ns", "trigger_index"):
            np.testing.assert_array_equal(log[name], [getattr(f, name) for f in frames])
        np.testing.assert_array_equal(log["exposure_us"], [1003.75] * 10)
        assert log["code_sha"].tolist() == [CODE.sha256] * 10
        assert "all 10 frames" in c.recovery_note
        with pytest.raises(IndexError, match="10 recovered frames"):
            c.read_frame(10)


def test_layout_follows_nexus_and_units(capture: Path) -> None:
    with h5py.File(capture, "r") as f:
        assert f.attrs["NX_class"] == "NXroot" and f.attrs["default"] == "entry"
        for name in ("creator", "creator_version", "file_time", "uuid", "schema_version"):
            assert f.attrs[name]
        assert f.attrs["status"] == "complete"
        assert f["entry"].attrs["NX_class"] == "NXentry"
        assert f["entry/program_name"].attrs["version"]
        assert f[CAMERA].attrs["NX_class"] == "NXdetector"
        assert f[SHUTTER].attrs["NX_class"] == "NXcollection"
        data = f[f"{CAMERA}/data"]
        assert data.shape == (10, *SHAPE) and data.dtype == np.uint16
        assert data.chunks == (1, *SHAPE) and data.maxshape == (None, *SHAPE)
        assert "32008" in data._filters  # Bitshuffle (hdf5plugin) by default
        nxdata = f["entry/data"]
        assert nxdata.attrs["NX_class"] == "NXdata" and nxdata.attrs["signal"] == "data"
        assert nxdata["data"] == data  # a hard link: the same object
        assert f[f"{SHUTTER}/chip_duration"][()] == 125.5
        assert f[f"{SHUTTER}/chip_duration"].attrs["units"] == "us"
        np.testing.assert_array_equal(f[f"{SHUTTER}/code"][()], [1, 1, 1, 0, 0, 1, 0, 1])
        assert f[f"{SHUTTER}/code"].dtype == np.uint8
        assert f[f"{CAMERA}/frame_log/code_sha"].dtype == np.dtype("S64")
        settings = f["entry/settings"]
        assert settings.attrs["exposure_us"] == 1003.75
        assert settings["units"].attrs["exposure_us"] == "us"
        assert settings["rig"]["units"].attrs["led_current_ma"] == "mA"
        assert settings["rig/lens/units"].attrs["focal_length_mm"] == "mm"
        assert list(settings.attrs["roi_list"]) == [16, 32, 64, 48]
        missing: list[str] = []

        def check_units(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iuf":
                if "units" not in obj.attrs:
                    missing.append(name)

        f.visititems(check_units)
        assert missing == []


def test_compression_options_round_trip(tmp_path: Path) -> None:
    for comp in (None, "gzip"):
        path, _ = write_capture(tmp_path / str(comp), 3, compression=comp)
        with CaptureFile.open(path) as c:
            np.testing.assert_array_equal(c.read_frame(2), make_frame(2).image)
    with pytest.raises(CaptureWriteError, match="Unknown compression 'zstd'"):
        write_capture(tmp_path / "z", 1, compression="zstd")


# ------------------------------------------------------------------------------------------
# Crash safety
# ------------------------------------------------------------------------------------------

CHILD = """
import sys, time
from pathlib import Path
from blurvid_rig.files.capture_writer import CaptureWriter
from tests.blurvid_rig.test_capture_file import make_frame, writer_kwargs
w = CaptureWriter(Path(sys.argv[1]), **(writer_kwargs() | {"flush_every": 4}))
for i in range(100_000):
    w.append(make_frame(i, int(sys.argv[2])))
    if i + 1 == 12:
        print("flushed", flush=True)  # three flushes done (4, 8, 12)
    if i >= 12:
        time.sleep(0.003)  # still appending when the parent kills us
"""


@pytest.mark.slow
def test_sigkill_mid_capture_keeps_every_flushed_frame(tmp_path: Path) -> None:
    final = tmp_path / "killed.h5"
    seed = 1234
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(final), str(seed)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "flushed", f"child did not start: {proc.stderr.read()[-2000:]}"
        time.sleep(0.15)  # let it append (and flush) a few more
        assert proc.poll() is None, "the child must still be appending when it is killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = Path(str(final) + ".partial")
    assert partial.exists() and not final.exists()

    with CaptureFile.open(partial) as c:
        assert c.status == "partial" and c.opened_with == "swmr"
        n = c.n_frames
        assert n >= 12
        assert f"{n} frames were recovered" in c.recovery_note
        assert "interrupted" in c.recovery_note
        assert c.code == CODE and c.camera_settings == writer_kwargs()["camera_settings"]
        assert c.end_time is None
        for i in range(n):
            want = make_frame(i, seed)
            np.testing.assert_array_equal(c.read_frame(i), want.image, err_msg=f"frame {i}")
            assert c.frame_log["frame_id"][i] == want.frame_id
            assert c.frame_log["host_time_ns"][i] == want.host_time_ns
    assert "status: partial" in describe_file(partial)

    # A cut copy of a crashed file must fail fast with "truncated" (a SWMR open of it would hang).
    cut = tmp_path / "cut.h5.partial"
    cut.write_bytes(partial.read_bytes()[: partial.stat().st_size // 2])
    t0 = time.perf_counter()
    with pytest.raises(CaptureFormatError, match="truncated"):
        CaptureFile.open(cut)
    assert time.perf_counter() - t0 < 5


KILLED_EARLY = """
import os, sys, time
from pathlib import Path
import blurvid_rig.files.capture_writer as cw
from tests.blurvid_rig.test_capture_file import writer_kwargs
if sys.argv[2] == "during-creation":  # die half-way through writing the metadata
    cw.write_shutter = lambda *a, **k: os._exit(9)
w = cw.CaptureWriter(Path(sys.argv[1]), **writer_kwargs())
print("created", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize("when", ["during-creation", "before-first-frame"])
def test_a_writer_killed_before_any_frame_leaves_no_unreadable_partial(
        tmp_path: Path, when: str) -> None:
    """The file becomes <name>.partial only once its metadata is whole on disk: a writer killed
    while creating it leaves no .partial at all (a hidden .creating file, which nothing reads),
    and one killed after that leaves a .partial that opens and says it holds no frames."""
    final = tmp_path / "early.h5"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EARLY, str(final), when], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if when == "before-first-frame":
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready and proc.stdout.readline().strip() == "created", proc.stderr.read()
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    partial = Path(str(final) + ".partial")
    if when == "during-creation":
        assert proc.returncode == 9
        assert not partial.exists() and not final.exists()
        assert (tmp_path / ".early.h5.creating").exists()
        # the name is not blocked: the next capture of that name starts
        write_capture(tmp_path / "again", 1)
        return
    assert partial.exists()
    with CaptureFile.open(partial) as c:
        assert c.n_frames == 0 and c.status == "partial"
        assert "holds no frames at all" in c.recovery_note
    assert "holds no frames at all" in describe_file(partial)


def test_abort_keeps_frames_and_marks_aborted(tmp_path: Path) -> None:
    final = tmp_path / "a.h5"
    w = CaptureWriter(final, **(writer_kwargs() | {"flush_every": 100}))
    for i in range(5):
        w.append(make_frame(i))
    assert w.path.name == "a.h5.partial" and w.n_frames == 5
    assert w.abort("operator pressed stop") == final == w.path
    assert not Path(str(final) + ".partial").exists()
    with CaptureFile.open(final) as c:
        assert c.status == "aborted" and c.status_reason == "operator pressed stop"
        assert c.n_frames == 5  # rows waiting for a flush are written by abort too
        np.testing.assert_array_equal(c.read_frame(4), make_frame(4).image)
        assert "aborted (operator pressed stop)" in c.recovery_note
    with pytest.raises(CaptureWriteError, match="closed"):
        w.append(make_frame(5))


def test_exception_inside_with_aborts_and_propagates(tmp_path: Path) -> None:
    final = tmp_path / "b.h5"
    with pytest.raises(ZeroDivisionError):
        with CaptureWriter(final, **writer_kwargs()) as w:
            for i in range(3):
                w.append(make_frame(i))
            1 / 0  # noqa: B018
    with CaptureFile.open(final) as c:
        assert c.status == "aborted" and "ZeroDivisionError" in c.status_reason
        assert c.n_frames == 3


def test_writer_rejects_bad_input_clearly(tmp_path: Path) -> None:
    final = tmp_path / "c.h5"
    with CaptureWriter(final, **writer_kwargs()) as w:
        bad = make_frame(0, shape=(SHAPE[0], SHAPE[1] + 1))
        with pytest.raises(CaptureWriteError, match=r"shape \(48, 65\).*\(48, 64\)"):
            w.append(bad)
        f8 = Frame(make_frame(0).image.astype(np.uint8), 1, 1, 1)
        with pytest.raises(CaptureWriteError, match="dtype uint8.*uint16"):
            w.append(f8)
        with pytest.raises(CaptureWriteError, match="image_key 5"):
            w.append(make_frame(0), image_key=5)
        assert w.append(make_frame(0)) == 0  # the writer is still usable
    assert isinstance(CaptureWriteError("x"), RigError)
    with pytest.raises(CaptureWriteError, match="never overwrites"):
        CaptureWriter(final, **writer_kwargs())
    with pytest.raises(CaptureWriteError, match="not an integer type"):
        CaptureWriter(tmp_path / "d.h5", **(writer_kwargs() | {"dtype": np.float32}))
    with pytest.raises(CaptureWriteError, match="settings.*cannot be stored"):
        CaptureWriter(tmp_path / "e.h5", **(writer_kwargs() | {"settings": {"x": float("nan")}}))
    with pytest.raises(CaptureWriteError, match="NaN"):
        CaptureWriter(tmp_path / "f.h5", **(writer_kwargs() | {"code_metrics": {"m": np.inf}}))
    assert not list(tmp_path.glob("[def].h5*"))  # failed starts leave nothing behind


def test_make_capture_path() -> None:
    p = make_capture_path("/data", " fan test/2 ", datetime(2024, 12, 31, 23, 59, 58))
    assert p == Path("/data/241231_235958_fan_test_2.h5")
    with pytest.raises(CaptureWriteError, match="no letter or digit"):
        make_capture_path("/data", " // ")


# ------------------------------------------------------------------------------------------
# Malformed files
# ------------------------------------------------------------------------------------------


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-1000])


def _schema(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        f.attrs["schema_version"] = "2.0"


def _no_code(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        del f[f"{SHUTTER}/code"]


def _float_frames(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        del f["entry/data/data"], f[f"{CAMERA}/data"]
        data = np.ones((10, *SHAPE), np.float32)
        data[3, 4, 5] = np.nan
        f[CAMERA].create_dataset("data", data=data)


def _nan_metadata(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        f[f"{SHUTTER}/chip_duration"][()] = np.nan


def _code_not_binary(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        f[f"{SHUTTER}/code"][0] = 2


def _code_edited(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        f[f"{SHUTTER}/code"][3] = 1


def _code_swapped(p: Path) -> None:
    """A 12-chip code with its own matching sha256, while n_chips, the controller's echo and
    every frame's code hash name the 8-chip code."""
    other = ShutterCode((1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1), CODE.chip_us)
    with h5py.File(p, "r+") as f:
        del f[f"{SHUTTER}/code"]
        f[SHUTTER].create_dataset("code", data=np.array(other.bits, np.uint8))
        del f[f"{SHUTTER}/code_sha256"]
        f[SHUTTER].create_dataset("code_sha256", data=other.sha256)


def _code_swapped_everywhere_but_frames(p: Path) -> None:
    _code_swapped(p)
    with h5py.File(p, "r+") as f:
        f[f"{SHUTTER}/n_chips"][()] = 12
        del f[f"{SHUTTER}/status"]


def _random_bytes(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _foreign_hdf5(p: Path) -> None:
    p.unlink()
    with h5py.File(p, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 4, 4), np.uint16))
        f.attrs["NX_class"] = "NXroot"


def _bad_status(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        f.attrs["status"] = "finished"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_truncate, r"is truncated: it holds \d+ bytes but its HDF5 header says \d+"),
        (_schema, r"file schema 2\.0, newer than the 1\.x .* upgrade blurvid-rig"),
        (_no_code, r"has no exposure code \(/entry/instrument/shutter/code is missing\)"),
        (_float_frames, r"frame data must be integer .* float32 and holds NaN"),
        (_nan_metadata, r"/entry/instrument/shutter/chip_duration holds NaN or infinity"),
        (_code_not_binary, r"must be a 1-D array of 0 and 1"),
        (_code_edited, r"does not match the stored code bits"),
        (_code_swapped, r"stored exposure code \(12 chips.*disagrees with "
         r"/entry/instrument/shutter/n_chips \(8\) and the controller's echo .* and the code "
         r"hash of 10 of 10 recorded frames \(first: frame 0"),
        (_code_swapped_everywhere_but_frames, r"disagrees with the code hash of 10 of 10"),
        (_random_bytes, r"is not an HDF5 file"),
        (_foreign_hdf5, r"is an HDF5 file but not a blurvid-rig file"),
        (_bad_status, r"has status 'finished'"),
    ],
)
def test_malformed_file_gives_clear_error(capture: Path, damage: Any, expected: str) -> None:
    damage(capture)
    with pytest.raises(CaptureFormatError, match=expected) as err:
        CaptureFile.open(capture)
    assert str(capture) in str(err.value)  # the message names the file
    assert isinstance(err.value, RigError)
    with pytest.raises(CaptureFormatError):
        describe_file(capture)


def test_missing_file_and_newer_minor_version(tmp_path: Path, capture: Path) -> None:
    with pytest.raises(CaptureFormatError, match="does not exist"):
        CaptureFile.open(tmp_path / "nope.h5")
    with h5py.File(capture, "r+") as f:
        f.attrs["schema_version"] = "1.7"  # a minor bump only adds optional fields
        f["entry"].create_dataset("something_new", data=1.0).attrs["units"] = "1"
    with CaptureFile.open(capture) as c:
        assert c.schema_version == "1.7" and c.n_frames == 10


# ------------------------------------------------------------------------------------------
# Reconstruction files
# ------------------------------------------------------------------------------------------


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_recon_round_trip(capture: Path) -> None:
    raw_sha = _sha(capture)
    rng = np.random.default_rng(3)
    video = rng.random((4, 8, *SHAPE)).astype(np.float32)
    time_s = (np.arange(8) + 0.5) * 125.5e-6
    with CaptureFile.open(capture) as c:
        out = write_recon(
            recon_path_for(capture),
            video=video,
            time_s=time_s,
            frame_index=[2, 3, 5, 7],
            source=c,
            method="coded-deconvolution",
            parameters={"lam": 0.01, "iters": 50, "velocity": {"x_px": 3.5, "y_px": 0.0}},
            device="cpu",
            model_id="bdinr-v2",
            checkpoint_sha256="ab" * 32,
            calibration_used="dark+flat",
            per_frame={"residual": np.array([0.1, 0.2, 0.3, 0.4]), "v": np.ones((4, 2))},
        )
        source_uuid = c.uuid
    assert out == capture.with_name("250301_140203_test.recon.h5")
    assert _sha(capture) == raw_sha  # the raw capture is never touched
    with ReconFile.open(out) as r:
        assert r.status == "complete" and r.n_frames == len(r) == 4
        np.testing.assert_array_equal(r.video, video)
        np.testing.assert_array_equal(r.read_video(2), video[2])
        np.testing.assert_array_equal(r.time_s, time_s)
        np.testing.assert_array_equal(r.frame_index, [2, 3, 5, 7])
        np.testing.assert_array_equal(r.per_frame["residual"], [0.1, 0.2, 0.3, 0.4])
        np.testing.assert_array_equal(r.per_frame["v"], np.ones((4, 2)))
        assert r.source_uuid == source_uuid and r.method == "coded-deconvolution"
        p = r.process
        assert p["parameters"] == {"lam": 0.01, "iters": 50, "velocity": {"x_px": 3.5, "y_px": 0.0}}
        assert p["device"] == "cpu" and p["model_id"] == "bdinr-v2"
        assert p["checkpoint_sha256"] == "ab" * 32 and p["calibration_used"] == "dark+flat"
        assert p["code_sha256"] == CODE.sha256 and p["code"] == "11100101"
        assert p["source_path"] == str(capture.resolve())
    with h5py.File(out, "r") as f:
        data = f["entry/data"]
        assert data.attrs["signal"] == "video"
        assert list(data.attrs["axes"]) == ["frame", "time", ".", "."]
        assert f["entry/process"].attrs["NX_class"] == "NXprocess"
        assert data["time"].attrs["units"] == "s" and data["video"].dtype == np.float32
    with pytest.raises(CaptureFormatError, match="open it with ReconFile.open"):
        CaptureFile.open(out)
    with pytest.raises(CaptureFormatError, match="open it with CaptureFile.open"):
        ReconFile.open(capture)


def test_recon_writer_incremental_abort_and_guards(capture: Path, tmp_path: Path) -> None:
    with CaptureFile.open(capture) as c:
        kw = dict(
            time_s=[0.0, 1e-4], frame_shape=SHAPE, source=c, method="m", parameters={}, device="cpu"
        )
        with pytest.raises(CaptureWriteError, match=r"must be named '\*\.recon\.h5'"):
            ReconWriter(capture, **kw)
        target = tmp_path / "x.recon.h5"
        with pytest.raises(RuntimeError):
            with ReconWriter(target, **kw) as w:
                for i in range(3):
                    w.append(np.full((2, *SHAPE), i, np.float64), i, {"r": float(i)})
                    assert w.path.name == "x.recon.h5.partial"
                with pytest.raises(CaptureWriteError, match="NaN"):
                    w.append(np.full((2, *SHAPE), np.nan), 3, {"r": 0.0})
                with pytest.raises(CaptureWriteError, match="differ from the first"):
                    w.append(np.zeros((2, *SHAPE)), 3, {"other": 0.0})
                raise RuntimeError("GPU out of memory")
    with ReconFile.open(target) as r:
        assert r.status == "aborted" and "GPU out of memory" in r.status_reason
        assert r.n_frames == 3 and r.video.dtype == np.float32
        np.testing.assert_array_equal(r.per_frame["r"], [0.0, 1.0, 2.0])
        assert r.read_video(2)[1, 0, 0] == 2.0


def test_recon_writer_that_cannot_mark_its_file_keeps_every_frame(capture: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    import blurvid_rig.files.swmr as swmr

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(swmr, "finalise", disk_full)
    target = tmp_path / "y.recon.h5"
    with CaptureFile.open(capture) as c:
        w = ReconWriter(target, time_s=[0.0, 1e-4], frame_shape=SHAPE, source=c, method="m",
                        parameters={}, device="cpu")  # fmt: skip
        for i in range(3):
            w.append(np.full((2, *SHAPE), i, np.float64), i, {"r": float(i)})
        with pytest.raises(CaptureWriteError, match=r"Could not mark .*No space left.*partial"):
            w.close()
    # the same rule as for captures: the file takes its final name, keeps status "partial", and
    # every frame written is there
    assert target.exists() and not target.with_name(target.name + ".partial").exists()
    assert w.close() == target  # closing again answers where the file is
    with ReconFile.open(target) as r:
        assert r.status == "partial" and r.n_frames == 3
        np.testing.assert_array_equal(r.per_frame["r"], [0.0, 1.0, 2.0])


# ------------------------------------------------------------------------------------------
# describe_file
# ------------------------------------------------------------------------------------------


def test_describe_capture_and_recon(capture: Path, tmp_path: Path) -> None:
    text = describe_file(capture)
    for fact in (
        "blurvid-rig capture",
        "status: complete",
        "frames recovered: 10 of 64x48 uint16",
        "bdinr8 11100101 (8 chips, 5 open)",
        "chip duration 125.5 us",
        "light fraction 0.625",
        "min_abs_dft=0.3125",
        "Acme Vision AV-1234M, serial SN00421",
        "exposure 1003.75 us",
        "gain 6.25 dB",
        "pixel format Mono12",
        "trigger: mode On, source Line1, exposure mode TriggerWidth",
        "1 gap(s) detected: 1006->1009 (2 missing)",
        "mean frame interval 33.33 ms",
        "calibration: dark (48, 64) float32",
        "echo verified: yes",
    ):
        assert fact in text, f"{fact!r} missing from:\n{text}"

    with CaptureFile.open(capture) as c:
        out = write_recon(
            recon_path_for(capture),
            video=np.zeros((2, 4, *SHAPE), np.float32),
            time_s=np.arange(4) * 1e-4,
            frame_index=[0, 1],
            source=c,
            method="gap-tv",
            parameters={"iters": 5},
            device="cuda:0",
        )
    text = describe_file(out)
    for fact in (
        "blurvid-rig reconstruction",
        "method: gap-tv (iters=5)",
        "device: cuda:0",
        f"source: {capture.resolve()}",
        "video: 2 frames x 4 time samples x 64x48, stored float32",
        "time span: 0 .. 0.3 ms (4 samples)",
    ):
        assert fact in text, f"{fact!r} missing from:\n{text}"

    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(CaptureFormatError, match="not a blurvid-rig file"):
        describe_file(foreign)
