"""Capture files are readable by the standard HDF5 command-line tools (Debian's hdf5-tools).

`make test` installs hdf5-tools; a missing tool is a failure here, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess

import hdf5plugin
import numpy as np
import pytest

from blurvid_rig.capture import run_coded_capture
from blurvid_rig.files.capture import CaptureFile
from hw.sim import make_sim_rig
from hw.types import ShutterCode


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"'{name}' is not installed; `make test` installs it (apt-get install hdf5-tools)."
        )
    return path


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    cam, sh = make_sim_rig(width=40, height=24, seed=5)
    with cam, sh:
        res = run_coded_capture(
            cam, sh, ShutterCode.parse("1101", 250.0), 3, tmp_path_factory.mktemp("io")
        )
    return res.path


def test_h5ls_sees_the_nexus_layout(capture):
    out = subprocess.run(
        [_tool("h5ls"), "-r", str(capture)], capture_output=True, text=True, check=True
    ).stdout
    for path in (
        "/entry/data/data",
        "/entry/instrument/camera/frame_log",
        "/entry/instrument/shutter/code",
        "/entry/instrument/camera/genicam",
    ):
        assert path in out, f"{path} not listed by h5ls:\n{out}"


def test_h5dump_reads_code_and_lz4_frames_with_the_plugin_path(capture):
    env = {"HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH, "PATH": "/usr/bin:/bin"}
    code = subprocess.run(
        [_tool("h5dump"), "-d", "/entry/instrument/shutter/code", "-y", "-w", "0", str(capture)],
        capture_output=True, text=True, check=True, env=env,
    ).stdout
    assert "1, 1, 0, 1" in code.replace("\n", " ")
    dump = subprocess.run(
        [_tool("h5dump"), "-d", "/entry/data/data[2,0,0;;1,1,5]", "-y", "-w", "0", str(capture)],
        capture_output=True, text=True, check=True, env=env,
    ).stdout
    with CaptureFile.open(capture) as f:
        expected = f.read_frame(2)[0, :5]
    body = dump.split("DATA {", 1)[1].split("}", 1)[0]
    got = np.array([int(v) for v in body.replace(",", " ").split()[-5:]])
    assert np.array_equal(got, expected), (got, expected)
