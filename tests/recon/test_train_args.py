"""Tests of recon.train_args: training takes a frozen TrainConfig, built from the command line by
both ``python -m recon.train`` and ``blurvid-rig train``, with the same defaults."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from recon.train_args import TrainConfig, add_arguments


def _parse(argv: list[str]) -> TrainConfig:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return TrainConfig.from_args(p.parse_args(argv))


def test_the_command_line_defaults_are_the_config_defaults() -> None:
    assert _parse([]) == TrainConfig()


def test_every_option_reaches_its_field() -> None:
    cfg = _parse(["--variant", "base", "--steps", "7", "--minutes", "1.5", "--batch", "3",
                  "--size", "96", "--lr", "0.01", "--seed", "4", "--box", "--out", "o",
                  "--resume", "--export", "e", "--name", "n", "--device", "cpu", "--threads",
                  "2", "--workers", "0", "--render-in-loop", "--no-bf16", "--val-every", "5",
                  "--ckpt-every", "6", "--log-every", "8", "--quiet"])
    assert cfg == TrainConfig("base", 7, 1.5, 3, 96, 0.01, 4, True, "o", True, "e", "n", "cpu",
                              2, 0, True, False, 5, 6, 8, True)


def test_the_config_is_frozen_and_checks_the_variant() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().steps = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="variant"):
        TrainConfig(variant="huge")


def test_blurvid_rig_train_passes_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import recon.train
    from blurvid_rig.cli import main

    seen = []
    monkeypatch.setattr(recon.train, "train", seen.append)
    assert main(["train", "--steps", "3", "--box"]) == 0
    assert seen == [TrainConfig(steps=3, box=True)]
