"""New looks (driving/sim/looks.py): the same look for the same seed anywhere, wide variety, a road
that always stands out, look-N names wherever a style is named, seed ranges kept apart by purpose,
recordings painted in training looks, and worlds in new looks that render a drivable road."""

from __future__ import annotations

import colorsys
import json
import math
import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest

from driving.config import CROP_BOTTOM, CROP_TOP
from driving.evaluation.registry import RECIPES, SUITES, SuiteDrive
from driving.sim import looks
from driving.sim.__main__ import main
from driving.sim.conditions import MIN_ELEVATION_DEG, OVERCAST_BRIGHTNESS, Conditions
from driving.sim.looks import (
    SUITE_LOOKS,
    TRAINING_LOOKS,
    drivable,
    generate_style,
    look_seed,
    new_look,
    road_contrast,
    style_named,
)
from driving.sim.recorder import lap_new_look, record
from driving.sim.simulator import Simulator
from driving.sim.style import CENTRES, EDGES, STYLES
from driving.sim.track import TrackError, load_track, make_track
from driving.sim.world import OFF_ROAD, ROAD, World

SEEDS = range(300)


@pytest.fixture(scope="module")
def ring():
    """A small loop: small textures, quick worlds."""
    a = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    return make_track("ring", 8.0, np.column_stack([40 * np.cos(a), 28 * np.sin(a)]).tolist(), "lake")


@pytest.fixture(scope="module")
def drawn():
    return [new_look(seed) for seed in SEEDS]


def hue(rgb) -> float:
    return colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] * 360


# --- the same look for the same seed --------------------------------------------------------------


def test_a_look_is_the_same_for_the_same_seed_in_this_and_another_process():
    first = repr(looks.draw_new_look(123))
    looks._new_look.cache_clear()  # drawn again, not remembered
    assert repr(looks.draw_new_look(123)) == first
    assert generate_style(123) != generate_style(124)
    code = "from driving.sim import looks; print(repr(looks.draw_new_look(123)))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == first


def test_a_look_is_pinned():
    """The values of look 0 are pinned, so a machine (or a refactor) that draws differently fails."""
    look = new_look(0)
    assert (look.style.asphalt, look.style.ground, look.style.edge, look.style.scenery) == (
        (86, 48, 41),
        (216, 186, 134),
        "lines",
        "hills",
    )
    assert (look.conditions.sun_elevation_deg, look.conditions.overcast) == (25.465, 0.681)
    assert look.describe().startswith("reddish asphalt, blue edge lines, yellow double centre line")


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, None, 2**31])
def test_a_look_seed_must_be_a_whole_number_in_range(seed):
    with pytest.raises(ValueError, match="look seed"):
        new_look(seed)


# --- variety, and a road that always stands out ---------------------------------------------------


def test_looks_vary_widely(drawn):
    styles = [look.style for look in drawn]
    assert {s.edge for s in styles} == set(EDGES)
    assert {s.centre for s in styles if s.centre_colour is not None} == set(CENTRES)
    assert any(s.centre_colour is None for s in styles)
    assert {s.scenery for s in styles} == {"hills", "forest", "mesas"}
    for kind, options in (("asphalt", looks.ASPHALTS), ("ground", looks.GROUNDS), ("sky", looks.SKIES)):
        assert {look.kinds[kind] for look in drawn} == set(options), kind
    light = [look.conditions for look in drawn]
    assert min(c.sun_elevation_deg for c in light) < MIN_ELEVATION_DEG + 3  # dawn and dusk
    assert max(c.overcast for c in light) > 0.9 and min(c.overcast for c in light) < 0.05
    # Colours spread round the wheel; textures and markings vary in size and strength.
    coloured = [s.ground for s in styles if max(s.ground) - min(s.ground) > 40]
    assert np.ptp([hue(c) for c in coloured]) > 100
    assert len({hue(s.edge_colour) // 30 for s in styles if s.edge in ("lines", "dashed")}) >= 4
    assert len({s.curb_colours for s in styles}) == len(styles)  # every pair jittered
    for name in ("texture_amp", "wear", "light_patches", "edge_width_m", "dash_m", "shoulder_m"):
        assert np.ptp([getattr(s, name) for s in styles]) > 0, name
    assert any(s.ground_texture_amp is None for s in styles) and any(s.ground_texture_amp for s in styles)


def test_every_look_keeps_its_road_apart_from_the_roadside(drawn):
    for look in drawn:
        for light in (Conditions(), look.conditions):
            assert drivable(look.style, light), look.seed
            floor = looks.MIN_CONTRAST_UNMARKED if look.style.edge == "none" else looks.MIN_CONTRAST_MARKED
            assert road_contrast(look.style, light) >= floor
    # The floor refuses a road the colour of its ground, and markings the colour of the road.
    plain = replace(STYLES["desert"], ground=STYLES["desert"].asphalt, shoulder_m=0.0)
    assert not drivable(plain)
    assert drivable(STYLES["lake"]) and not drivable(replace(STYLES["lake"], edge_colour=(105, 105, 108)))


def road_apart(sim: Simulator) -> float:
    """How far, in the crop rows of the centre camera, the roadside stands from the road: the
    median over off-road pixels of their RGB distance to the road's mean colour (frame blurred
    over 7 x 7 pixels, so grain is not taken for contrast; markings are left out of the road)."""
    cam, car = sim.cameras["center"], sim.car
    frame = cv2.blur(sim.render("center"), (7, 7)).astype(float)[CROP_TOP:CROP_BOTTOM]
    labels = cam.render_labels(car.x, car.y, car.heading)[CROP_TOP:CROP_BOTTOM]
    road = frame[labels == ROAD].mean(axis=0)
    return float(np.median(np.linalg.norm(frame[labels == OFF_ROAD] - road, axis=1)))


def test_new_looks_render_a_road_in_the_crop_and_in_daylight(ring, monkeypatch):
    """A look-N track through the camera, in the look's own light: road in every crop row, and the
    roadside apart from the road in the frame itself (a road painted like its ground is not)."""
    for seed in [*range(0, 300, 25), 1_010_000]:
        look = new_look(seed)
        track = make_track("ring", ring.width, ring.control.tolist(), look.name)
        sim = Simulator(track, seed=0, ppm=4.0, conditions=look.conditions)
        for s in (20.0, 90.0):
            sim.reset(s=s)
            road = sim.cameras["center"].render_road_mask(sim.car.x, sim.car.y, sim.car.heading)
            assert road[CROP_TOP:CROP_BOTTOM].any(axis=1).all(), (seed, s)
            assert sim.render("center").mean() > 50, (seed, s)  # never night
            assert road_apart(sim) > 12, (seed, s, road_apart(sim))
    hidden = replace(STYLES["desert"], asphalt=STYLES["desert"].ground, shoulder=STYLES["desert"].ground)
    monkeypatch.setitem(STYLES, "desert", hidden)
    sim = Simulator(replace(ring, style="desert"), seed=0, ppm=4.0)
    sim.reset(s=20.0)
    assert road_apart(sim) < 12


def test_overcast_light_is_diffuse_its_shadows_fade_and_its_sky_greys(ring, monkeypatch):
    noon, grey = Conditions(), Conditions(overcast=1.0)
    assert grey.light == pytest.approx((OVERCAST_BRIGHTNESS,) * 3)
    low = Conditions(sun_elevation_deg=15.0, overcast=1.0)
    assert low.light == pytest.approx(grey.light)  # the sun's height no longer matters, nor warms
    painted = grey.paint(STYLES["lake"])
    sky = [colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[1] for rgb in (painted.sky_top, painted.sky_horizon)]
    assert max(sky) < 0.1 and painted.clouds == 1.0
    shady = replace(STYLES["lake"], shadows=400, bushes=0, texture_amp=0.0, wear=0.0, light_patches=0.0)
    monkeypatch.setitem(STYLES, "lake", shady)  # plain paint, many shadows: only the light differs
    ratios = []
    for conditions in (noon, grey):
        luma = World(ring, ppm=3.0, conditions=conditions).colour[0].astype(float).mean(axis=2)
        ratios.append(np.percentile(luma, 2) / np.median(luma))
    assert ratios[1] > ratios[0] + 0.1  # the darkest shadows lift
    # JSON: a field added since recordings began is written only when it changes something.
    assert "overcast" not in Conditions.draw(3).to_dict()
    assert Conditions.from_dict(json.loads(json.dumps(low.to_dict()))) == low
    with pytest.raises(ValueError, match="overcast"):
        Conditions(overcast=1.5)


# --- names ----------------------------------------------------------------------------------------


def test_look_names_resolve_wherever_a_style_is_named(tmp_path, ring):
    assert look_seed("look-7") == 7 and looks.look_name(7) == "look-7"
    for bad in ("look-07", "look--1", "look-", "look-1.0", "Look-1", " look-1", "look-2147483648", 7):
        assert look_seed(bad) is None, bad
        assert not looks.is_style_name(bad)
    assert style_named("lake") is STYLES["lake"] and style_named("look-7") == generate_style(7)
    with pytest.raises(ValueError, match="unknown style 'moon'.*look-N"):
        style_named("moon")
    # Track files and the command line take look-N; a bad name is refused naming the field.
    path = tmp_path / "t.json"
    spec = {"name": "t", "width": 8.0, "points": ring.control.round(2).tolist(), "style": "look-9"}
    path.write_text(json.dumps(spec))
    assert load_track(path).style == "look-9"
    path.write_text(json.dumps(spec | {"style": "look-9x"}))
    names = "lake, jungle, desert, lanes, lanes-dashed or look-N"
    with pytest.raises(TrackError, match=f"'style' must be {names}"):
        load_track(path)
    assert World(make_track("t", 8.0, spec["points"], "look-9"), ppm=2.0).style == generate_style(9)


# --- seeds kept apart by purpose ------------------------------------------------------------------


def test_training_and_suite_looks_never_meet():
    assert max(TRAINING_LOOKS.start, SUITE_LOOKS.start) >= min(TRAINING_LOOKS.stop, SUITE_LOOKS.stop)
    suite_looks = [d.look for s in SUITES.values() for d in s.drives if d.look is not None]
    assert suite_looks and all(seed in SUITE_LOOKS for seed in suite_looks)
    assert len(set(suite_looks)) == len(suite_looks)  # every new-look drive a look of its own
    with pytest.raises(ValueError, match="suite drive lake-10000: look 5 is a training look") as refused:
        SuiteDrive(10000, "lake", 1_010_000, look=5)
    assert "\n" not in str(refused.value)
    assert all(looks.training_look(seed, i) in TRAINING_LOOKS for seed in range(20) for i in range(20))
    # Every look a recipe's recordings paint is a training look, on tracks in no suite look.
    specs = {spec.folder_name: spec for recipe in RECIPES.values() for spec in recipe.recordings}
    for spec in specs.values():
        looks.check_recordable(spec.make_track().style, spec.folder_name)
        generated = spec.vary in looks.NEW_LOOK_KINDS
        stretches = math.ceil(spec.laps * looks.NEW_LOOKS_PER_LAP) + 1 if generated else 0
        for index in range(stretches):
            style = lap_new_look(spec.seed, index, faint=spec.vary == "faint-looks")[0]
            assert look_seed(style) in TRAINING_LOOKS, (spec.folder_name, style)
    assert any(spec.vary == "looks" for spec in RECIPES["looks"].recordings)
    assert set(RECIPES["robust"].recordings) < set(RECIPES["looks"].recordings)
    # looks-only is looks less robust's named-style laps: every frame in a generated look.
    only = RECIPES["looks-only"]
    assert all(spec.vary == "looks" for spec in only.recordings)
    assert set(only.recordings) == set(RECIPES["looks"].recordings) - set(RECIPES["robust"].recordings)
    looks_recipe = RECIPES["looks"]
    same_otherwise = replace(
        only, name="looks", description=looks_recipe.description, recordings=looks_recipe.recordings
    )
    assert same_otherwise == looks_recipe
    # looks-only-fixed is looks-only trained for its whole budget, nothing else.
    fixed = RECIPES["looks-only-fixed"]
    assert replace(fixed, name="looks-only", description=only.description, patience=None) == only
    # looks-faint is looks-only-fixed with the same laps again, in faint-road looks.
    faint = RECIPES["looks-faint"]
    again = tuple(replace(spec, vary="faint-looks") for spec in fixed.recordings)
    assert faint.recordings == fixed.recordings + again
    assert (
        replace(faint, name=fixed.name, description=fixed.description, recordings=fixed.recordings) == fixed
    )
    assert len({spec.folder_name for spec in faint.recordings}) == len(faint.recordings)
    assert [spec.folder_name for spec in again[:1]] == ["lake-3laps-seed0-faintlooks24"]
    with pytest.raises(ValueError, match="vary must be True, False or one of styles, looks, faint-looks"):
        replace(fixed.recordings[0], vary="new-looks")


def test_the_recorder_refuses_a_suite_look_in_one_line_before_writing(tmp_path, ring, capsys):
    suite_look = replace(ring, style="look-1000003")
    with pytest.raises(ValueError, match="track ring: look-1000003 is a suite look") as refused:
        record(suite_look, tmp_path / "rec", laps=0.1, progress=False)
    assert "\n" not in str(refused.value) and not (tmp_path / "rec").exists()
    with pytest.raises(ValueError, match="vary must be"):
        record(ring, tmp_path / "rec", laps=0.1, vary="colours", progress=False)
    # The command line: a track file in a suite look, and --style naming one.
    path = tmp_path / "t.json"
    spec = {"name": "t", "width": 8.0, "points": ring.control.round(2).tolist(), "style": "look-1500000"}
    path.write_text(json.dumps(spec))
    out, saved = tmp_path / "out", tmp_path / "kept" / "t.json"
    assert main(["record", "--track", str(path), "--out", str(out), "--save-track", str(saved)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "look-1500000 is a suite look" in err
    assert not out.exists() and not saved.parent.exists()
    with pytest.raises(SystemExit):
        main(["record", "--track", "lake", "--style", "look-1999999", "--out", str(out)])
    assert "argument --style: look-1999999 is a suite look" in capsys.readouterr().err


def test_a_recording_in_new_looks_paints_each_stretch_in_a_training_look(tmp_path, ring):
    done = record(ring, tmp_path / "a", laps=0.1, seed=5, vary="looks", progress=False, topdown=False)
    assert looks.NEW_LOOKS_PER_LAP == 24
    assert [look["look"] for look in done.looks] == [0, 1, 2]  # 24 looks a lap: 2.4 in 0.1 lap
    for entry in done.looks:
        style, conditions, world_seed = lap_new_look(5, entry["look"])
        assert (entry["style"], entry["world_seed"]) == (style, world_seed)
        assert look_seed(style) in TRAINING_LOOKS
        assert Conditions.from_dict(entry["conditions"]) == conditions
        assert conditions == looks.look_conditions(look_seed(style))  # the look's own light
    assert len({entry["style"] for entry in done.looks}) == 3
    assert json.loads((done.folder / "looks.json").read_text()) == done.looks
    # The command line's --new-looks is the same recording.
    cli = tmp_path / "b"
    track = tmp_path / "ring.json"
    track.write_text(json.dumps({"name": "ring", "width": 8.0, "points": ring.control.tolist()}))
    args = ["record", "--track", str(track), "--laps", "0.1", "--seed", "5", "--out", str(cli), "--new-looks"]
    assert main(args) == 0
    assert json.loads((cli / "looks.json").read_text()) == done.looks
    images = sorted(p.name for p in (done.folder / "IMG").iterdir())
    assert all((done.folder / "IMG" / n).read_bytes() == (cli / "IMG" / n).read_bytes() for n in images[:30])


def test_faint_roads_are_weakly_marked_and_close_to_their_roadside(drawn):
    faint = [look for look in drawn if looks.faint_road(look)]
    assert 0.1 < len(faint) / len(drawn) < 0.25  # about one look in six
    for look in faint:
        style = look.style
        assert style.edge in ("none", "dashed")
        if style.edge == "dashed":
            assert style.dash_m / (style.dash_m + style.dash_gap_m) < looks.FAINT_DASH_SHARE
        assert min(road_contrast(style), road_contrast(style, look.conditions)) < looks.FAINT_CONTRAST
    # Solid lines and curbs mark a road whatever its colour; a road far from its roadside's colour,
    # lit and unlit, stands out whatever its markings.
    assert not any(looks.faint_road(look) for look in drawn if look.style.edge in ("lines", "curbs"))
    standing_out = [
        look
        for look in drawn
        if min(road_contrast(look.style), road_contrast(look.style, look.conditions)) >= looks.FAINT_CONTRAST
    ]
    assert standing_out and not any(looks.faint_road(look) for look in standing_out)
    # A brown dirt road on red soil, its edges orange dashes a sixth of their length: faint.
    assert looks.faint_road(new_look(1_010_022))


def test_faint_training_looks_are_faint_training_looks_of_their_own_stream():
    picked = [looks.training_look(seed, i, faint=True) for seed in range(4) for i in range(12)]
    assert all(seed in TRAINING_LOOKS and looks.faint_road(new_look(seed)) for seed in picked)
    assert picked == [looks.training_look(seed, i, faint=True) for seed in range(4) for i in range(12)]
    assert len(set(picked)) > 40  # a look of its own for nearly every stretch
    plain = [looks.training_look(seed, i) for seed in range(4) for i in range(12)]
    assert sum(looks.faint_road(new_look(seed)) for seed in plain) < len(plain) / 2


def test_a_recording_in_faint_looks_paints_each_stretch_in_a_faint_training_look(tmp_path, ring, capsys):
    done = record(ring, tmp_path / "a", laps=0.1, seed=5, vary="faint-looks", progress=False, topdown=False)
    assert [look["look"] for look in done.looks] == [0, 1, 2]
    plain = record(ring, tmp_path / "p", laps=0.1, seed=5, vary="looks", progress=False, topdown=False)
    for entry, other in zip(done.looks, plain.looks, strict=True):
        style, conditions, world_seed = lap_new_look(5, entry["look"], faint=True)
        assert (entry["style"], entry["world_seed"]) == (style, world_seed)
        assert look_seed(style) in TRAINING_LOOKS and looks.faint_road(new_look(look_seed(style)))
        assert Conditions.from_dict(entry["conditions"]) == looks.look_conditions(look_seed(style))
        assert entry["style"] != other["style"] and entry["world_seed"] == other["world_seed"]
    # The command line's --faint-looks is the same recording; it and --new-looks exclude each other.
    cli = tmp_path / "b"
    track = tmp_path / "ring.json"
    track.write_text(json.dumps({"name": "ring", "width": 8.0, "points": ring.control.tolist()}))
    args = ["record", "--track", str(track), "--laps", "0.1", "--seed", "5", "--out", str(cli)]
    assert main([*args, "--faint-looks"]) == 0
    assert json.loads((cli / "looks.json").read_text()) == done.looks
    with pytest.raises(SystemExit):
        main([*args[:-1], str(tmp_path / "c"), "--faint-looks", "--new-looks"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_style_option_paints_a_recorded_track_in_a_look_and_its_light(tmp_path, ring):
    track = tmp_path / "ring.json"
    track.write_text(json.dumps({"name": "ring", "width": 8.0, "points": ring.control.tolist()}))
    out, saved = tmp_path / "rec", tmp_path / "saved.json"
    args = ["record", "--track", str(track), "--laps", "0.05", "--out", str(out), "--style", "look-42"]
    assert main([*args, "--save-track", str(saved)]) == 0
    assert load_track(saved).style == "look-42"
    direct = record(
        replace(ring, style="look-42"),
        tmp_path / "direct",
        laps=0.05,
        conditions=looks.look_conditions(42),
        progress=False,
        topdown=False,
    )
    first = sorted((direct.folder / "IMG").iterdir())[0]
    assert first.read_bytes() == (out / "IMG" / first.name).read_bytes()


def test_drive_and_eval_paint_the_track_in_a_named_style_or_look(capsys):
    from driving.sim.__main__ import _painted, build_parser

    for command in (["drive"], ["eval", "m.keras"]):
        args = build_parser().parse_args([*command, "--track", "lake", "--style", "look-1500000"])
        assert args.style == "look-1500000"  # a suite look may be driven, never recorded
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--style", "look-x"])
        err = capsys.readouterr().err
        assert "argument --style: must be lake, jungle, desert, lanes, lanes-dashed or look-N" in err
    track, conditions = _painted(make_track("t", 8.0, [[0, 0], [60, 0], [60, 40], [0, 40]]), "look-1500000")
    assert track.style == "look-1500000" and conditions == looks.look_conditions(1_500_000)
    assert _painted(track, "desert")[1] == Conditions() and _painted(track, None) == (track, Conditions())
