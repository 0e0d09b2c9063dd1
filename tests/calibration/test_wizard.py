"""The calibration wizard end to end on the simulated rig (pytest-qt, offscreen)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QWizard  # noqa: E402

from calibration.bench import Board, SimBench, make_sim_bench_rig, sim_truth  # noqa: E402
from calibration.model import Calibration  # noqa: E402
from calibration.procedures.plan import Plan  # noqa: E402
from calibration.wizard import CalibrationWizard, WizardBench  # noqa: E402
from tests.calibration.conftest import MovingBench, assert_timing_matches  # noqa: E402


@pytest.fixture
def sim_rig():
    cam, sh = make_sim_bench_rig(160, 128, seed=1)
    with cam, sh:
        cam.apply_settings(cam.settings.replace(exposure_us=10_000.0, black_level_dn=64.0))
        with SimBench(cam, n_views=6) as bench:
            yield cam, sh, bench


def _run_page(qtbot, wiz, page):
    assert wiz.currentPage() is page and not page.isComplete()
    qtbot.mouseClick(page.run_button, qtbot_button())
    qtbot.waitUntil(lambda: page.isComplete() or "color:#c00" in page.status.text(),
                    timeout=60_000)
    assert page.isComplete(), page.status.text()


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


@pytest.mark.slow
def test_wizard_runs_every_step_and_saves(qtbot, sim_rig, tmp_path):
    cam, sh, bench = sim_rig
    saved = []
    plan = Plan(exposure_us=10_000.0, n_frames=4, geometry_views=6, board=Board())
    wiz = CalibrationWizard(cam, sh, bench, plan, rig_info={"name": "bench A"},
                            out_path=tmp_path / "a.cal.h5", truth=sim_truth(cam, sh),
                            on_saved=lambda c, p: saved.append(p))
    qtbot.addWidget(wiz)
    wiz.show()
    wiz.next()  # plan page
    for page in wiz.step_pages:
        _run_page(qtbot, wiz, page)
        assert page.figure.axes, f"{page.step} drew no plot"
        wiz.next()
    assert wiz.currentPage() is wiz.summary_page
    assert "(true" in wiz.summary_page.text.toPlainText()
    wiz.button(QWizard.WizardButton.FinishButton).click()  # validates (saves), then accepts
    assert saved == [tmp_path / "a.cal.h5"]
    cal = Calibration.load(saved[0])
    assert cal.parts == ["dark", "flat", "photon_transfer", "shutter_timing", "geometry"]
    assert cal.rig["name"] == "bench A"
    assert (tmp_path / "a.report.png").exists()
    assert cal.shutter_timing.rise_us == pytest.approx(50.0, abs=5)


def test_cancel_a_step_keeps_the_devices_and_allows_skip(qtbot, sim_rig):
    cam, sh, bench = sim_rig
    before = cam.settings
    plan = Plan(exposure_us=10_000.0, steps=("photon_transfer", "dark"), n_frames=64)
    wiz = CalibrationWizard(cam, sh, bench, plan)
    qtbot.addWidget(wiz)
    wiz.show()
    wiz.next()
    page = wiz.step_pages[0]
    # the real procedure, held after its first progress until the cancel lands (on a fast or
    # idle machine the 64 frames could finish before the progress reached the window)
    real = page._procedure

    def held():
        proc = real()
        yield next(proc)
        page._cancel.wait(10.0)
        yield from proc

    page._procedure = held
    page.start()
    qtbot.waitUntil(lambda: page.bar.value() > 0, timeout=10_000)
    page.cancel()
    qtbot.waitUntil(lambda: not page.running, timeout=10_000)
    qtbot.waitUntil(lambda: "Cancelled" in page.status.text(), timeout=5_000)
    assert not page.isComplete() and cam.settings == before and not cam.is_acquiring
    page.skip()
    assert page.isComplete()
    wiz.next()
    assert wiz.currentPage() is wiz.step_pages[1]


def test_real_bench_waits_for_continue(qtbot, sim_rig):
    """Without a simulated bench, views after the first wait for the user's Continue."""
    cam, sh, bench = sim_rig
    plan = Plan(exposure_us=10_000.0, steps=("geometry",), geometry_views=4)
    wiz = CalibrationWizard(cam, sh, None, plan)
    # a person would move the board; here the simulated bench does it behind the wizard's back
    wiz.bench = _PersonBench(bench)
    wiz.rig.bench = wiz.bench
    qtbot.addWidget(wiz)
    wiz.show()
    wiz.next()
    page = wiz.step_pages[0]
    page.start()
    for _ in range(3):
        qtbot.waitUntil(lambda: page.continue_button.isVisible(), timeout=10_000)
        assert "view" in page.status.text()
        qtbot.mouseClick(page.continue_button, qtbot_button())
    qtbot.waitUntil(page.isComplete, timeout=30_000)
    assert len(page.result.per_view_rms_px) == 4


class _PersonBench(WizardBench):
    def __init__(self, sim: SimBench) -> None:
        super().__init__(None)
        self.sim = sim

    def setup(self, target, instruction, *, view=0):
        super().setup(target, instruction, view=view)  # waits for Continue
        self.sim.setup(target, instruction, view=view)


def test_wizard_has_a_dmd_page_when_the_dmd_is_the_shutter(qtbot, tmp_path):
    from calibration.procedures.dmd_mapping import DmdProjector
    from hw.sim.dlpc900 import make_sim_dlpc900_rig

    cam, sh = make_sim_dlpc900_rig(128, 96)
    with cam, sh:
        cam.apply_settings(cam.settings.replace(black_level_dn=64.0))
        with SimBench(cam) as bench:
            wiz = CalibrationWizard(cam, sh, bench, Plan(steps=("dark",), n_frames=2),
                                    projector=DmdProjector(sh), out_path=tmp_path / "d.cal.h5")
            qtbot.addWidget(wiz)
            wiz.show()
            assert [p.step for p in wiz.step_pages] == ["dark", "dmd_mapping"]
            wiz.next()
            wiz.step_pages[0].skip()
            wiz.next()
            page = wiz.step_pages[1]
            page.start()
            qtbot.waitUntil(lambda: page.isComplete() or "c00" in page.status.text(),
                            timeout=30_000)
            assert page.isComplete(), page.status.text()
            assert page.result.rms_px < 0.3 and page.figure.axes


@pytest.mark.slow
def test_effective_code_plot_shows_the_loaded_code(qtbot, sim_rig, tmp_path):
    """The shutter-timing page plots the effective code of the code the rig has loaded (it
    always showed 11100101)."""
    from hw.types import ShutterCode

    cam, sh, bench = sim_rig
    code = ShutterCode.parse("1100111100000101", 250.0)
    plan = Plan(exposure_us=10_000.0, n_frames=4, steps=("shutter_timing",))
    wiz = CalibrationWizard(cam, sh, bench, plan, out_path=tmp_path / "c.cal.h5", code=code)
    qtbot.addWidget(wiz)
    wiz.show()
    wiz.next()
    (page,) = [p for p in wiz.step_pages if p.step == "shutter_timing"]
    _run_page(qtbot, wiz, page)
    titles = [ax.get_title() for ax in page.figure.axes]
    assert any("code 1100111100000101 at 250 us chips" in t for t in titles), titles


def test_dark_step_offers_the_black_level_it_needs(qtbot, tmp_path):
    """At black level 0 the dark step fails (the dark noise is clipped at 0 DN); the page offers
    to set the black level it needs, and running again with it passes and records it."""
    cam, sh = make_sim_bench_rig(96, 64, seed=1)
    with cam, sh:
        cam.apply_settings(cam.settings.replace(exposure_us=10_000.0, black_level_dn=0.0))
        with SimBench(cam) as bench:
            plan = Plan(exposure_us=10_000.0, n_frames=4, steps=("dark",))
            wiz = CalibrationWizard(cam, sh, bench, plan, out_path=tmp_path / "d.cal.h5")
            qtbot.addWidget(wiz)
            wiz.show()
            wiz.next()
            (page,) = wiz.step_pages
            qtbot.mouseClick(page.run_button, qtbot_button())
            qtbot.waitUntil(lambda: "color:#c00" in page.status.text(), timeout=60_000)
            assert "black level" in page.status.text() and not page.isComplete()
            assert page.fix_button.isVisible()
            assert page.fix_button.text() == "Set black level 64 DN and run again"
            qtbot.mouseClick(page.fix_button, qtbot_button())
            qtbot.waitUntil(page.isComplete, timeout=60_000)
            assert cam.settings.black_level_dn == 64.0
            assert wiz.calibration.applies_to.black_level_dn == 64.0


# -- the shutter-timing step as the rig window runs it (issue 15, item 10) ---------------------


class _FlickerBench(SimBench):
    """The bright target lit by a lamp flickering by +-1 % at 120 Hz (60 Hz mains)."""

    def __init__(self, camera, **kw):
        super().__init__(camera, flicker=0.01, flicker_hz=120.0, **kw)


def _window_timing_page(qtbot, tmp_path, *, optics=None, pixel_format=None, bench=None,
                        monkeypatch=None, size=128):
    """The rig window on the simulated rig (as `blurvid-rig gui` makes it, ``optics`` on its
    shutter), Calibrate..., the shutter-timing page run with the Run button. ``bench``: the
    simulated bench class the window gives the wizard."""
    from blurvid_rig.gui.main_window import MainWindow, sim_rig_factory
    from blurvid_rig.session import SessionState

    if bench is not None:
        monkeypatch.setattr("calibration.bench.SimBench", bench)
    kw = {} if optics is None else {"shutter_kw": {"optics": optics}}
    win = MainWindow(rig_factory=sim_rig_factory(size, **kw), out_dir=tmp_path)
    qtbot.addWidget(win)
    win.connect_rig()
    qtbot.waitUntil(lambda: win.session is not None and not win.tasks.busy, timeout=15_000)
    assert win.session.state == SessionState.IDLE
    if pixel_format is not None:
        win.camera_panel.pixel_format.setCurrentText(pixel_format)
        win.camera_panel.black_level.setValue(15.0)
        win.apply_camera()
        qtbot.waitUntil(lambda: win.session.camera.settings.pixel_format == pixel_format
                        and not win.tasks.busy, timeout=15_000)
    win.open_calibration_wizard()
    wiz = win.wizard
    assert wiz is not None
    wiz.summary_page.path.setText(str(tmp_path / "window.cal.h5"))
    wiz.next()
    (page,) = [p for p in wiz.step_pages if p.step == "shutter_timing"]
    while wiz.currentPage() is not page:
        wiz.currentPage().skip()
        wiz.next()
    qtbot.mouseClick(page.run_button, qtbot_button())
    qtbot.waitUntil(lambda: page.isComplete() or "color:#c00" in page.status.text(),
                    timeout=120_000)
    return win, wiz, page


def _close(qtbot, win, wiz):
    if win.wizard is not None:
        wiz.reject()
        qtbot.waitUntil(lambda: win.wizard is None and not win.tasks.busy, timeout=15_000)
    win.close()


@pytest.mark.slow
@pytest.mark.parametrize("shutter", ["ideal", "lc"])
def test_window_wizard_times_the_simulated_shutter_against_its_truth(qtbot, tmp_path, shutter):
    """From the rig window, the shutter-timing step measures what the simulator's shutter is:
    the window's own (ideal: it read -4.8 us latencies, the crossing estimate's bias on an
    instantaneous edge) and the leaky, slow LC shutter of ``calibrate --sim``; the fitted values
    are saved with the fit's residual, which the frames' noise explains."""
    from calibration.bench import SIM_LC_SHUTTER

    win, wiz, page = _window_timing_page(
        qtbot, tmp_path, optics=SIM_LC_SHUTTER if shutter == "lc" else None)
    try:
        assert page.isComplete(), page.status.text()
        assert "shutter fit residual" in page.status.text()
        truth = win.session.shutter.optics
        st = page.result
        assert_timing_matches(st, truth, edge_us=3.0, leakage=0.003)
        wiz.next()
        while wiz.currentPage() is not wiz.summary_page:  # geometry
            wiz.currentPage().skip()
            wiz.next()
        wiz.button(QWizard.WizardButton.FinishButton).click()  # saves
        qtbot.waitUntil(lambda: win.wizard is None, timeout=15_000)
        saved = Calibration.load(tmp_path / "window.cal.h5").shutter_timing
        assert saved.fit_residual_rms == pytest.approx(st.fit_residual_rms)
        assert saved.fit_noise_rms == pytest.approx(st.fit_noise_rms)
        assert saved.latency_us == pytest.approx(st.latency_us)
    finally:
        _close(qtbot, win, wiz)


@pytest.mark.parametrize("disturbance, sentence", [
    ("moving", "something moves in front of the camera"),
    ("flicker", "the light flickers"),
    ("mono8", "Use a pixel format with more bits than Mono8"),
])
@pytest.mark.slow
def test_window_wizard_refuses_a_disturbed_timing_and_says_why(qtbot, tmp_path, monkeypatch,
                                                               disturbance, sentence):
    """A moving target, a flickering lamp, or a signal quantised to Mono8 (what the window's
    simulated camera ran when it read transmittance up to 3.4): the step fails and its sentence
    names the cause; nothing is kept and the page cannot be left as done."""
    bench = {"moving": MovingBench, "flicker": _FlickerBench}.get(disturbance)
    win, wiz, page = _window_timing_page(
        qtbot, tmp_path, bench=bench, monkeypatch=monkeypatch,
        pixel_format="Mono8" if disturbance == "mono8" else None)
    try:
        text = page.status.text()
        assert "color:#c00" in text and sentence in text, text
        assert "implausible" in text
        if disturbance != "moving":  # the fit's residual against the frames' noise is named
            assert "times the" in text and "that the frames' noise explains" in text
        assert not page.isComplete() and page.result is None
        assert wiz.calibration.shutter_timing is None
    finally:
        _close(qtbot, win, wiz)
