"""Small facts of blurvid_rig.files.h5io: the git commit recorded as provenance."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from blurvid_rig.files.h5io import git_sha
from tests.ci import missing_install

CHECKOUT = Path(__file__).resolve().parents[2]


def _need_git() -> None:
    """git is part of the install (the provenance records the commit): a failure under CI."""
    if shutil.which("git") is None:
        missing_install("git is not installed; run `sudo apt-get install -y git`.")


def _git(root: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    done = subprocess.run([*cmd, *args], cwd=root, check=True, capture_output=True, text=True)
    return done.stdout


def test_git_sha_is_the_checkouts_head() -> None:
    _need_git()
    if not (CHECKOUT / ".git").exists():
        # an unpacked source archive has no commit to record; CI always runs from a clone
        missing_install(f"{CHECKOUT} is not a git checkout; run the tests from a clone.")
    assert git_sha() == _git(CHECKOUT, "rev-parse", "HEAD").strip()


def test_git_sha_of_a_repository_before_and_after_its_first_commit(tmp_path: Path) -> None:
    _need_git()
    _git(tmp_path, "init", "-q")
    assert git_sha(tmp_path) == ""  # no commit yet
    (tmp_path / "a").write_text("a")
    _git(tmp_path, "add", "a")
    _git(tmp_path, "commit", "-q", "-m", "a")
    assert git_sha(tmp_path) == _git(tmp_path, "rev-parse", "HEAD").strip()
    assert len(git_sha(tmp_path)) in (40, 64)


def test_git_sha_is_empty_without_a_repository_or_without_git(tmp_path, monkeypatch) -> None:
    assert git_sha(tmp_path) == ""  # no .git (e.g. an installed package)
    (tmp_path / ".git").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # git is not installed
    assert git_sha(tmp_path) == ""
    assert git_sha(CHECKOUT) == ""
