"""The calibration wizard (Qt): one page per procedure, each run in a worker thread.

``CalibrationWizard(camera, shutter, bench)`` walks through the steps of a
:class:`~calibration.procedures.plan.Plan`. Each page says what to put in front of the
camera, runs its procedure off the GUI thread with a progress bar and a cancel button, and shows
its plot (the same figures as the report). The last page shows the summary, saves the calibration
file and the report. The rig window opens it (Calibrate...), and ``blurvid-rig calibrate --wizard``.
"""

from calibration.wizard.wizard import CalibrationWizard, WizardBench

__all__ = ["CalibrationWizard", "WizardBench"]
