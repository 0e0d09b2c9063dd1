"""Small facts of blurvid_rig.h5util: the git commit recorded as provenance."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from blurvid_rig.h5util import git_sha

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
CHECKOUT = Path(__file__).resolve().parents[2]


def _git(root: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    done = subprocess.run([*cmd, *args], cwd=root, check=True, capture_output=True, text=True)
    return done.stdout


@needs_git
@pytest.mark.skipif(not (CHECKOUT / ".git").exists(), reason="not run from a git checkout")
def test_git_sha_is_the_checkouts_head() -> None:
    assert git_sha() == _git(CHECKOUT, "rev-parse", "HEAD").strip()


@needs_git
def test_git_sha_of_a_repository_before_and_after_its_first_commit(tmp_path: Path) -> None:
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
