"""The calibration wizard end to end on the simulated rig (pytest-qt, offscreen)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QWizard  # noqa: E402

from calibration.bench import Board, SimBench, make_sim_bench_rig, sim_truth  # noqa: E402
from calibration.model import Calibration  # noqa: E402
from calibration.procedures import Plan  # noqa: E402
from calibration.wizard import CalibrationWizard, WizardBench  # noqa: E402


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
    from calibration.procedures import DmdProjector
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
