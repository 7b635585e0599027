"""Settings declared once: the command line, the bounds and the remade command all come from the
dataclass declarations (driving/options.py)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, replace

import pytest

from driving.config import AugmentConfig, ConfigError, Preprocessing, RunConfig
from driving.options import add_options, check_bounds, declared_flags, flag_for, from_args, option, to_argv


def parser_for(cls) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test", exit_on_error=False)
    add_options(parser, cls)
    return parser


def remade(config):
    return from_args(type(config), parser_for(type(config)).parse_args(to_argv(config)))


def one_changed(config: RunConfig) -> list[tuple[str, RunConfig]]:
    """The config with each declared setting moved off its default, one at a time."""
    other = {
        "data": ["a", "b c"],
        "models": ["base", "pilotnet"],
        "epochs": 7,
        "batch_size": 48,
        "steps_per_epoch": 31,
        "lr": 0.00037,
        "patience": 9,
        "drive_check_steps": 120,
        "drive_check_suite": "two-lane-validation",
        "bn_refresh_batches": 20,
        "seed": 2**31 - 1,
        "val_fraction": 0.15,
        "block_seconds": 12.5,
        "val_data": ["held out", "c"],
        "out": "runs/x y",
        "cache_dir": "/tmp/cache",
        "resume": True,
        "mixed_precision": True,
        "strategy": "multiworker",
        "workers": ["127.0.0.1:5000", "127.0.0.1:5001"],
        "worker_index": 1,
        "start_timeout": 42.5,
        "tensorboard": False,
    }
    cases = [(name, replace(config, **{name: value})) for name, value in other.items()]
    for switch in AugmentConfig.SWITCHES:
        flipped = replace(config.augment, **{switch: not getattr(config.augment, switch)})
        cases.append((switch, replace(config, augment=flipped)))
    cases.append(
        ("steering_correction", replace(config, augment=replace(config.augment, steering_correction=0.2)))
    )
    cases.append(
        (
            "shift_steering_per_px",
            replace(config, augment=replace(config.augment, shift_steering_per_px=0.0064)),
        )
    )
    for name, value in {
        "frame_height": (120, 240),
        "input_height": (64, 96),
    }.items():
        width = "frame_width" if name == "frame_height" else "input_width"
        geometry = replace(config.preprocessing, **{name: value[0], width: value[1]})
        cases.append((name, replace(config, preprocessing=geometry)))
    cases.append(("crop_top", replace(config, preprocessing=replace(config.preprocessing, crop_top=60))))
    cases.append(
        ("crop_bottom", replace(config, preprocessing=replace(config.preprocessing, crop_bottom=120)))
    )
    return cases


@pytest.mark.parametrize("case", one_changed(RunConfig(data=["rec"])), ids=lambda c: c[0])
def test_every_run_setting_survives_its_command_line(case):
    _, config = case
    assert remade(config) == config


def test_every_declared_flag_is_exercised_by_the_round_trip():
    """A new setting must join the round trip above: its flag appears in some case's command."""
    used = {arg for _, config in one_changed(RunConfig(data=["rec"])) for arg in to_argv(config)}
    assert set(declared_flags(RunConfig)) <= used


def test_all_at_once_and_defaults_give_no_flags():
    config = RunConfig(data=["rec"])
    assert to_argv(config) == ["--data", "rec"]
    everything = config
    for _, changed in one_changed(config):
        everything = merge(everything, changed, config)
    assert remade(everything) == everything


def merge(into, changed, base):
    """`into` with every field where `changed` differs from `base` (nested dataclasses too)."""
    values = {}
    for f in dataclasses.fields(base):
        old, new = getattr(base, f.name), getattr(changed, f.name)
        if dataclasses.is_dataclass(old):
            values[f.name] = merge(getattr(into, f.name), new, old)
        elif new != old:
            values[f.name] = new
    return replace(into, **values)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs"),
        (["--lr", "nan"], "--lr"),
        (["--batch-size", "9000"], "--batch-size"),
        (["--frame-size", "0x3"], "--frame-size"),
        (["--strategy", "everywhere"], "--strategy"),
        (["--val-fraction", "1"], "--val-fraction"),
        (["--bn-refresh", "-1"], "--bn-refresh"),
        (["--drive-check-suite", "unseen"], "--drive-check-suite"),
    ],
)
def test_the_command_line_refuses_out_of_range_values_naming_the_option(argv, message):
    with pytest.raises(argparse.ArgumentError, match=message):
        parser_for(RunConfig).parse_args(["--data", "x", *argv])


@pytest.mark.parametrize(
    "change, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"bn_refresh_batches": -1}, "bn_refresh_batches"),
        ({"bn_refresh_batches": 2.5}, "bn_refresh_batches"),
        ({"lr": float("inf")}, "lr"),
        ({"seed": -1}, "seed"),
        ({"data": []}, "data"),
        ({"strategy": "x"}, "strategy"),
        ({"drive_check_steps": 5, "drive_check_suite": "two-lane"}, "drive_check_suite"),
        ({"drive_check_suite": "two-lane-validation"}, "drive_check_suite"),  # no drive check to drive it
        ({"preprocessing": Preprocessing(input_width=8)}, "input_width"),
        ({"augment": AugmentConfig(steering_correction=2.0)}, "steering_correction"),
    ],
)
def test_the_same_bounds_hold_for_configs_made_in_code(change, field):
    with pytest.raises(ConfigError) as raised:
        RunConfig(**{"data": ["x"], **change}).validate()
    assert raised.value.field == field


def test_errors_name_the_option_that_sets_a_field():
    assert flag_for(RunConfig, "input_width") == "--input-size"
    assert flag_for(RunConfig, "crop_bottom") == "--crop-bottom"
    assert flag_for(RunConfig, "flip") == "--no-flip"
    assert flag_for(RunConfig, "models") == "--model"
    assert flag_for(RunConfig, "bn_refresh_batches") == "--bn-refresh"


def test_a_small_declaration_makes_a_whole_command_line():
    @dataclass
    class Settings:
        files: list[str] = option(list, None, "input files", metavar="FILE")
        jobs: int = option(0, "--jobs", "drives at a time (0: one per core)", low=0, high=64)
        speed: float = option(9.0, "--speed", "target speed in mph", low=0, low_open=True, high=30)
        fast: bool = option(False, "--fast", "skip the slow checks")

    parser = parser_for(Settings)
    made = from_args(Settings, parser.parse_args(["a", "b", "--jobs", "3", "--fast"]))
    assert made == Settings(files=["a", "b"], jobs=3, speed=9.0, fast=True)
    assert to_argv(made) == ["a", "b", "--jobs", "3", "--fast"]
    assert "(default 9.0)" in parser.format_help()
    with pytest.raises(ConfigError, match="jobs"):
        check_bounds(Settings(files=["a"], jobs=65))
