"""Which part of a look costs a model (driving/evaluation/ablation.py): each change touches only its
part of the look, a world painted from a given style is the world the style's name paints, and a
tiny suite drive is driven by a real model as drawn and once per change, with its files."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import numpy as np
import pytest

from driving import evaluate
from driving.evaluation import ablation, suites
from driving.evaluation.registry import Suite, SuiteDrive
from driving.modelio import ModelInfo, save_keras
from driving.sim.looks import look_name, new_look
from driving.sim.track import builtin_track
from driving.sim.world import World
from tests.test_runtime import tiny_model

LOOKS = (1_010_006, 1_010_001, 1_010_002, 1_010_900)  # dashed edges, curbs, no centre line, lines
# The fields each change may touch: of the style, and of the light.
TOUCHES = {
    "solid edges": {"edge"},
    "marked edges": {"edge", "edge_colour"},
    "no centre line": {"centre_colour"},
    "no shadows": {"shadows"},
    "midday light": {"sun_elevation_deg", "overcast"},
    "no grain": {"texture_amp", "ground_texture_amp"},
    "no wear": {"wear", "light_patches"},
    "no ground cover": {"bushes"},
    "no shoulder": {"shoulder_m"},
    "contrasting road": {"asphalt"},
}


def changed_fields(before, after) -> set[str]:
    return {f.name for f in fields(before) if getattr(before, f.name) != getattr(after, f.name)}


@pytest.mark.parametrize("seed", LOOKS)
def test_each_change_touches_only_its_part_of_the_look_and_leaves_none_of_it(seed):
    look = new_look(seed)
    assert set(TOUCHES) == {c.name for c in ablation.CHANGES}
    for change in ablation.CHANGES:
        if not change.applies(look.style, look.conditions):
            continue
        style, conditions = change.apply(look.style, look.conditions)
        touched = changed_fields(look.style, style) | changed_fields(look.conditions, conditions)
        assert touched and touched <= TOUCHES[change.name], (change.name, touched)
        if change.name != "contrasting road":  # the others take their part away for good
            assert not change.applies(style, conditions), change.name


def test_a_look_without_a_part_is_not_changed_there():
    applies = {
        c.name
        for c in ablation.CHANGES
        if c.applies(new_look(1_010_900).style, new_look(1_010_900).conditions)
    }
    assert "solid edges" not in applies and "marked edges" not in applies  # solid lines already
    applies = {
        c.name
        for c in ablation.CHANGES
        if c.applies(new_look(1_010_002).style, new_look(1_010_002).conditions)
    }
    assert "no centre line" not in applies and "solid edges" in applies


def test_a_world_painted_from_a_style_is_the_world_its_name_paints():
    track = builtin_track("lake")
    look = new_look(1_010_006)
    named = World(replace(track, style=look_name(1_010_006)), seed=3, conditions=look.conditions)
    given = World(track, seed=3, conditions=look.conditions, style=look.style)
    assert np.array_equal(named.colour[0], given.colour[0])
    solid = World(track, seed=3, conditions=look.conditions, style=replace(look.style, edge="lines"))
    assert not np.array_equal(solid.colour[0], given.colour[0])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny.keras"
    save_keras(tiny_model(), path, ModelInfo(model="tiny"))
    return path


def test_a_look_is_driven_as_drawn_and_once_per_change_with_its_files(model_file, tmp_path):
    drive = SuiteDrive(10900, "lake", 1_010_900, 0.04, look=1_010_006)
    suite = Suite("tiny-ablation", 1, (replace(drive, look=None), drive), "t")
    result = ablation.ablate_look([model_file, model_file], suite, 1_010_006, jobs=1, progress=False)
    look = new_look(1_010_006)
    expected = [ablation.AS_DRAWN] + [
        c.name for c in ablation.CHANGES if c.applies(look.style, look.conditions)
    ]
    assert list(result.changes) == expected and "solid edges" in expected
    # the same file given twice is two models with the same figures
    assert result.drives == ["look-1010006-10900"] and list(result.models) == ["tiny#1", "tiny#2"]
    assert all(len(result.autonomy[c][m]) == 1 for c in expected for m in result.models)
    assert all(result.autonomy[c]["tiny#1"] == result.autonomy[c]["tiny#2"] for c in expected)
    # as drawn is the suite's own drive of that look, to the figure
    driven = suites.run([model_file], Suite("one", 1, (drive,), "t"), jobs=1, progress=False)
    assert result.autonomy[ablation.AS_DRAWN]["tiny#1"] == [driven.drives["tiny"][0].autonomy_pct]

    written = ablation.write(result, tmp_path)
    assert [p.name for p in written] == [f"ablation-look-1010006{s}" for s in (".json", ".md", ".png")]
    assert json.loads(written[0].read_text())["autonomy"] == result.autonomy
    text = written[1].read_text()
    assert all(f"| {c} |" in text for c in expected) and look.kinds["edge"] in text
    assert written[2].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="has no drive in look-1010001"):
        ablation.ablate_look([model_file], suite, 1_010_001, jobs=1, progress=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["m.keras", "--suite", "looks", "--ablate-look", "5"],
            "--ablate-look: 5: suite looks has no drive in that look",
        ),
        (
            ["m.keras", "--suite", "quick", "--ablate-look", "1010006"],
            "suite quick has no drive in that look (it drives no new look)",
        ),
        (["m.keras", "--suite", "looks", "--ablate-look", "-1"], "--ablate-look"),
    ],
)
def test_a_look_the_suite_does_not_drive_is_refused_in_one_line_before_any_drive(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        evaluate.main(argv)
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error


@pytest.mark.parametrize("ablate", [[], ["--ablate-look", "1010006"]])
def test_evaluate_writes_nothing_into_a_recording(ablate, model_file, tmp_path, capsys):
    recording = tmp_path / "rec"
    recording.mkdir()
    (recording / "driving_log.csv").write_text("kept\n")
    code = evaluate.main([str(model_file), "--suite", "looks", "--out", str(recording), *ablate])
    assert code == 2
    assert "inside a recording" in capsys.readouterr().err.strip().splitlines()[-1]
    assert sorted(p.name for p in recording.iterdir()) == ["driving_log.csv"]
