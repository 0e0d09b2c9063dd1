"""The command line end to end, on the simulated rig, in temporary folders."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from blurvid_rig.cli import main
from blurvid_rig.demo import run_demo
from blurvid_rig.files.capture import CaptureFile
from blurvid_rig.files.reconstruction import ReconFile


@pytest.fixture(scope="module")
def capture_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("cap")
    rc = main(
        [
            "-q",
            "capture",
            "--sim",
            "--count",
            "3",
            "--out",
            str(out),
            "--width",
            "96",
            "--height",
            "80",
            "--code",
            "11100101",
            "--chip-us",
            "500",
        ]
    )
    assert rc == 0
    (path,) = out.glob("*.h5")
    return path


def test_capture_cli_writes_a_complete_file(capture_path, capsys):
    with CaptureFile.open(capture_path) as f:
        assert f.status == "complete" and len(f) == 3
        assert f.code.as_string() == "11100101" and f.code.chip_us == 500
        assert f.frame_shape == (80, 96)
    assert main(["info", str(capture_path)]) == 0
    out = capsys.readouterr().out
    assert "11100101" in out and "complete" in out


@pytest.mark.slow
def test_recon_goes_on_past_bad_files_and_reports_them(capture_path, tmp_path, capsys):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not an HDF5 file at all" * 10)
    truncated = tmp_path / "truncated.h5"
    data = capture_path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    no_code = tmp_path / "no_code.h5"
    shutil.copy(capture_path, no_code)
    with h5py.File(no_code, "r+") as f:
        del f["entry/instrument/shutter/code"]
    good = tmp_path / capture_path.name
    shutil.copy(capture_path, good)

    rc = main(
        [
            "-q",
            "recon",
            str(garbage),
            str(good),
            str(truncated),
            str(no_code),
            "--export",
            "png",
            "gif",
            "mp4",
        ]
    )
    assert rc == 1, "a batch with bad files must exit non-zero"
    cap = capsys.readouterr()
    assert "1 of 4 files reconstructed" in cap.out
    for bad in (garbage, truncated, no_code):
        assert f"FAILED {bad}" in cap.err
    recon = good.with_name(good.name.removesuffix(".h5") + ".recon.h5")
    assert recon.exists()
    with ReconFile.open(recon) as rf:
        assert rf.video.shape == (3, 8, 80, 96)
        assert np.all(np.isfinite(rf.video[:]))
    assert recon.with_suffix(".png").exists() and recon.with_suffix(".gif").exists()
    # the movie is the whole high-speed video: every coded frame's 8 frames, in time order
    import cv2

    movie = cv2.VideoCapture(str(recon.with_suffix(".mp4")))
    assert int(movie.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 * 8
    movie.release()
    # a second run refuses to overwrite without being asked
    assert main(["-q", "recon", str(good)]) == 1


def test_code_command_prints_metrics(capsys):
    assert main(["code", "raskar52"]) == 0
    out = capsys.readouterr().out
    assert "52" in out


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    report = run_demo(tmp_path, n_frames=2, size=128, quiet=True)
    out = capsys.readouterr().out
    assert report.capture.exists() and report.recon.exists()
    suffixes = sorted(p.suffix for p in report.exports)
    assert suffixes == [".gif", ".mp4", ".png"]
    for p in report.exports:
        assert p.stat().st_size > 1000
        assert str(p) in out
    # the reconstruction must beat repeating the blurry frame, clearly
    assert report.psnr_db > report.baseline_psnr_db + 3.0, (report.psnr_db, report.baseline_psnr_db)
    # the velocity estimate finds the direction of the pan
    tvx, tvy = report.true_velocity_px
    for vx, vy in report.estimated_velocity_px:
        assert vx * tvx + vy * tvy > 0.8 * (tvx**2 + tvy**2)


@pytest.mark.slow
def test_recon_options_reach_the_solver_and_overwrite_replaces(capture_path, tmp_path):
    out = tmp_path / "r"
    args = ["-q", "recon", str(capture_path), "--out", str(out), "--frames", "4"]
    assert main([*args, "--max-blur-px", "12"]) == 0
    (recon,) = out.glob("*.recon.h5")
    with ReconFile.open(recon) as rf:
        assert rf.process["parameters"]["max_blur_px"] == 12.0
        assert rf.video.shape[1] == 4
        v = np.hypot(rf.per_frame["velocity_x"][:], rf.per_frame["velocity_y"][:])
        assert np.all(v <= 12.0 + 1e-6)
    assert main(args) == 1  # exists: refused without --overwrite
    # an interrupted earlier run leaves a .partial: refused, then cleared by --overwrite
    stale = recon.with_name(recon.name + ".partial")
    stale.write_bytes(b"half")
    assert main([*args, "--overwrite", "--max-blur-px", "16"]) == 0
    assert not stale.exists()
    assert sorted(p.name for p in out.iterdir()) == [recon.name]
    with ReconFile.open(recon) as rf:
        assert rf.process["parameters"]["max_blur_px"] == 16.0


def test_cli_reports_unwritable_output_as_a_sentence(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(
        [
            "-q",
            "capture",
            "--count",
            "1",
            "--out",
            str(blocker / "sub"),
            "--width",
            "32",
            "--height",
            "32",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def _flip(path, offset: int, n: int = 8) -> None:
    b = bytearray(path.read_bytes())
    for k in range(n):
        b[offset + k] ^= 0x5A
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("obj", ["/", "/entry", "/entry/instrument/camera",
                                 "/entry/instrument/shutter",
                                 "/entry/instrument/camera/frame_log"])
def test_info_on_a_damaged_object_header_says_so_without_a_traceback(
        capture_path, tmp_path, capsys, obj) -> None:
    """A damaged object header (bytes flipped inside it: HDF5's 'incorrect metadata checksum')
    gives one sentence naming the file, from info and from recon, never a Python traceback."""
    p = tmp_path / capture_path.name
    shutil.copy(capture_path, p)
    with h5py.File(p, "r") as f:
        addr = h5py.h5o.get_info(f[obj].id).addr
    _flip(p, addr + 20)
    assert main(["info", str(p)]) == 1
    err = capsys.readouterr().err
    assert f"{p} is damaged" in err and "Traceback" not in err
    assert main(["-q", "recon", str(p), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "is damaged" in err


@pytest.mark.slow
def test_damaged_chunk_costs_one_frame_and_info_verify_finds_it(
        capture_path, tmp_path, capsys) -> None:
    """A damaged compressed chunk: the frame is named, the other frames are reconstructed (the
    file says which was skipped), and `info --verify` lists it."""
    p = tmp_path / capture_path.name
    shutil.copy(capture_path, p)
    with h5py.File(p, "r") as f:
        d = f["/entry/instrument/camera/data"]
        assert d.compression is not None or d.id.get_create_plist().get_nfilters() > 0
        info = d.id.get_chunk_info_by_coord((1, 0, 0))
    _flip(p, info.byte_offset, 16)  # the compressed stream's header: sizes that cannot hold
    assert main(["info", str(p)]) == 0  # the metadata is whole
    capsys.readouterr()
    assert main(["info", "--verify", str(p)]) == 1
    out = capsys.readouterr().out
    assert "verify: 1 of 3 frames cannot be read (damaged data): 1" in out
    rc = main(["-q", "recon", str(p), "--out", str(tmp_path), "--motion", "spectral",
               "--max-blur-px", "8"])
    io = capsys.readouterr()
    assert rc == 1  # the batch says that something was lost
    assert f"Frame 1 of {p} cannot be read (damaged chunk" in io.err
    assert "with damaged frames skipped" in io.out
    (rec,) = tmp_path.glob("*.recon.h5")
    with ReconFile.open(rec) as r:
        assert r.n_frames == 2 and r.status == "complete"
        assert "source frames 1 could not be read" in r.status_reason


@pytest.mark.slow
def test_recon_twice_over_a_folder_or_glob_skips_reconstructions(capture_path, tmp_path,
                                                                 capsys) -> None:
    """A second `recon captures/*.h5` meets the .recon.h5 files of the first: they are skipped
    with one line each, not reported FAILED; a folder gives its captures only."""
    folder = tmp_path / "caps"
    folder.mkdir()
    p = folder / capture_path.name
    shutil.copy(capture_path, p)
    args = ["--motion", "spectral", "--max-blur-px", "8"]
    assert main(["-q", "recon", str(folder / "*.h5"), *args]) == 0
    capsys.readouterr()
    recon = next(folder.glob("*.recon.h5"))
    # the shell's expansion of captures/*.h5 on the second run: the capture and its result
    assert main(["-q", "recon", str(p), str(recon), "--overwrite", *args]) == 0
    io = capsys.readouterr()
    assert f"{recon} is a reconstruction, skipped" in io.err and "FAILED" not in io.err
    assert "1 of 1 files reconstructed" in io.out
    # a calibration file in the folder is not a capture: left out, not reported FAILED
    from calibration.model import AppliesTo, Calibration

    Calibration(applies_to=AppliesTo(1000.0, 0.0, "Mono12", (0, 0, 96, 80))).save(
        folder / "rig.cal.h5")
    assert main(["-q", "recon", str(folder), "--overwrite", *args]) == 0
    assert "1 of 1 files reconstructed" in capsys.readouterr().out
    assert main(["info", "--verify", str(recon)]) == 0  # a reconstruction, verified as one
    assert "verify: all 3 frames read back whole" in capsys.readouterr().out
    assert main(["-q", "recon", str(recon)]) == 1
    assert "No capture files to reconstruct" in capsys.readouterr().err


def test_bad_output_paths_and_counts_get_sentences_in_the_users_words(tmp_path, capsys) -> None:
    """No raw errno text, no internal names: the path and the problem, the option typed."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, words in ((a_file / "sub", "a part of this path is a file"),):
        rc = main(["-q", "capture", "--sim", "--count", "1", "--width", "32", "--height", "24",
                   "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and "[Errno" not in err
        assert f"{out}" in err and words in err
    with pytest.raises(SystemExit):
        main(["-q", "capture", "--sim", "--count", "0"])
    err = capsys.readouterr().err
    assert "argument --count: must be at least 1, got 0" in err and "n_frames" not in err


def test_os_error_sentence_names_path_and_problem() -> None:
    import errno

    from blurvid_rig.cli import os_error_sentence

    e = FileNotFoundError(errno.ENOENT, "No such file or directory", "/proc/nope")
    assert os_error_sentence(e) == "/proc/nope cannot be found or created; check the path."
    assert "permission denied" in os_error_sentence(
        PermissionError(errno.EACCES, "Permission denied", "/root/x"))


def test_capture_progress_ends_with_one_full_bar(tmp_path, capsys) -> None:
    """The progress bar's 100 % line is drawn once (it was drawn three times)."""
    rc = main(["capture", "--sim", "--count", "5", "--width", "32", "--height", "24",
               "--out", str(tmp_path)])
    assert rc == 0
    err = capsys.readouterr().err
    assert err.count("100%") == 1, err


def test_capture_warns_about_a_code_that_cannot_be_inverted(tmp_path, capsys) -> None:
    rc = main(["-q", "capture", "--sim", "--count", "1", "--width", "32", "--height", "24",
               "--code", "11111111", "--out", str(tmp_path)])
    assert rc == 0  # a warning, not a refusal: the user may want it for a test
    err = capsys.readouterr().err
    assert "warning: Code 11111111 has min |DFT| 0.0000" in err and "cannot be inverted" in err
    main(["-q", "capture", "--sim", "--count", "1", "--width", "32", "--height", "24",
          "--code", "11100101", "--out", str(tmp_path)])
    assert "cannot be inverted" not in capsys.readouterr().err


@pytest.mark.slow
def test_reconstructions_are_stored_compactly_unless_float32_is_asked(capture_path, tmp_path,
                                                                       capsys) -> None:
    """The video is stored as uint16 with a scale and offset (Bitshuffle+LZ4): about half the
    float32 file or less (the simulated scene here is noise-like texture, which LZ4 barely
    compresses; photo scenes compress further), decoded to within half a step of float32."""
    args = ["-q", "recon", str(capture_path), "--motion", "spectral", "--max-blur-px", "8"]
    assert main([*args, "--out", str(tmp_path / "compact")]) == 0
    assert main([*args, "--out", str(tmp_path / "f32"), "--float32"]) == 0
    (compact,) = (tmp_path / "compact").glob("*.recon.h5")
    (f32,) = (tmp_path / "f32").glob("*.recon.h5")
    with ReconFile.open(compact) as a, ReconFile.open(f32) as b:
        assert a.storage == "uint16 (scaled)" and b.storage == "float32"
        va, vb = a.video, b.video
        assert va.dtype == np.float32 and va.shape == vb.shape
        step, offset = a._scale
        inside = (vb > offset) & (vb < offset + 65535 * step)
        assert np.abs(va - vb)[inside].max() <= step / 2 + 1e-3
        np.testing.assert_allclose(a.read_video(1), va[1])
    sizes = compact.stat().st_size, f32.stat().st_size, capture_path.stat().st_size
    print("compact, float32, capture bytes:", sizes)
    assert sizes[0] <= 0.55 * sizes[1]
    assert main(["info", str(compact)]) == 0
    assert "stored uint16 (scaled)" in capsys.readouterr().out


@pytest.mark.slow
def test_clipped_pixels_are_flagged_and_left_out_of_the_data_term(capture_path, tmp_path) -> None:
    """A frame with a clipped (4095 DN) patch: the file records its share of clipped pixels and
    that the solver left them out of its data term; frames without clipping record 0."""
    p = tmp_path / capture_path.name
    shutil.copy(capture_path, p)
    with h5py.File(p, "r+") as f:
        d = f["/entry/instrument/camera/data"]
        frame = d[2]
        frame[10:26, 20:40] = 4095
        d[2] = frame
    assert main(["-q", "recon", str(p), "--out", str(tmp_path), "--max-blur-px", "8",
                 "--motion", "spectral"]) == 0
    (rec,) = tmp_path.glob("*.recon.h5")
    with ReconFile.open(rec) as r:
        share = r.per_frame["saturated_fraction"]
        h, w = r.read_video(0).shape[-2:]
        assert share[:2].tolist() == [0.0, 0.0]
        assert share[2] == pytest.approx(16 * 20 / (h * w), rel=0.05)
        assert r.per_frame["clip_aware"].tolist() == [0.0, 0.0, 1.0]


@pytest.mark.slow
@pytest.mark.parametrize("value", [4095, 0])
def test_a_saturated_or_dark_frame_does_not_stop_the_capture(capture_path, tmp_path, capsys,
                                                             value) -> None:
    """Frame 1 all saturated (or all zero): it comes back as a constant video, flagged in the
    file, and the frames after it are reconstructed (it used to abort the whole capture)."""
    p = tmp_path / capture_path.name
    shutil.copy(capture_path, p)
    with h5py.File(p, "r+") as f:
        d = f["/entry/instrument/camera/data"]
        d[1] = np.full(d.shape[1:], value, d.dtype)
    assert main(["-q", "recon", str(p), "--out", str(tmp_path), "--max-blur-px", "8"]) == 0
    (rec,) = tmp_path.glob("*.recon.h5")
    with ReconFile.open(rec) as r:
        assert r.n_frames == 3 and r.status == "complete"
        assert r.per_frame["uniform_frame"].tolist() == [0.0, 1.0, 0.0]
        v = r.read_video(1)
        assert np.ptp(v) < 1.0  # constant (up to the storage step)
