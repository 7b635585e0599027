"""What the evaluation commands offer by name: the suites of unseen worlds (SUITES) and the seed
studies' training recipes (RECIPES). Definitions only, with no rendering and no TensorFlow behind
them, so every --help that lists them stays instant. Driving a suite is suites.py; running a seed
study is seeds.py.

A suite is a named, versioned list of drives. Each drive is one lap of a procedurally generated
track (driving.sim.track.suite_track: every one has a hairpin and S-bends) in one of the three
styles, under conditions drawn from a seed (driving.sim.conditions: sun, shadows, palettes,
grain), with a road width drawn within the simulator's range. The track seeds come from ranges
kept apart by purpose, so no recording ever drives a suite's track:

    TRAINING_SEEDS    0 - 4999      suite-style tracks a recording may use
    VALIDATION_SEEDS  5000 - 9999   the held-out tracks that choose a drive-best checkpoint
    UNSEEN_SEEDS      10000 -       the `unseen` and `quick` suites (and their shapes in `looks`),
                                    and `looks-holdout`'s shapes (11000 -)

A drive may also carry a look: a seed of driving.sim.looks.SUITE_LOOKS, whose generated style and
light it is driven in instead of its named style under drawn conditions. Looks are kept apart by
purpose too (TRAINING_LOOKS for recordings, SUITE_LOOKS for suites, both in driving/sim/looks.py):
a drive refuses a training look. The `looks` suites drive each shape twice, in its seen style and
in a new look, so the difference between the two isolates the look.

The two-lane suites drive another kind of world (driving/sim/kinds.py: its own camera and steering
scale; keep to the right lane) on maps of tight corners (driving/sim/lanes.py) whose seeds are
split by purpose there, as the classic tracks' are here:

    LANE_TRAINING_SEEDS    0 - 4999      maps a recording may use
    LANE_HELD_OUT_SEEDS    5000 - 9999   maps no recording may use: the two-lane suites'
    LANE_VALIDATION_SEEDS  9000 - 9999   of those, the `two-lane-validation` suite's alone: the
                                         maps that choose a two-lane model's drive-best checkpoint

A recipe is how the training data is made and used: which recordings (the headless simulator
records them on first use), with which settings. Each lever of docs/evaluation.md is one recipe,
measured side by side; the project's defaults are the recipe that measured best.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

from driving.config import AugmentConfig, Preprocessing
from driving.sim.conditions import Conditions
from driving.sim.kinds import KINDS, TWO_LANE
from driving.sim.lanes import LANE_HELD_OUT_SEEDS, LANE_VALIDATION_SEEDS, check_training_seed, lane_track
from driving.sim.looks import (
    NEW_LOOK_KINDS,
    NEW_LOOKS_PER_LAP,
    SUITE_LOOKS,
    check_suite_look,
    look_conditions,
    look_name,
    vary_kind,
)
from driving.sim.style import LANE_STYLES, styles_for
from driving.sim.track import Track, builtin_track, suite_track

TRAINING_SEEDS = range(0, 5000)
VALIDATION_SEEDS = range(5000, 10000)
UNSEEN_SEEDS = range(10000, 20000)
STYLE_ORDER = ("lake", "jungle", "desert")


# --- suites ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteDrive:
    """One drive of a suite: a track, a look, a distance, and the kind of world (its maps,
    cameras and steering scale: a name in driving.sim.kinds.KINDS). Without `look`, the track in
    `style` under conditions drawn from `conditions_seed` (which also seeds the textures); with one,
    the same shape in new look `look` (driving.sim.looks), in that look's own light."""

    track_seed: int
    style: str
    conditions_seed: int
    laps: float = 1.0
    look: int | None = None  # a seed in SUITE_LOOKS; None: the seen style under drawn conditions
    world: str = "classic"

    def __post_init__(self) -> None:
        if self.look is not None:
            check_suite_look(self.look, f"suite drive {self.style}-{self.track_seed}")

    @property
    def world_style(self) -> str:
        """The style name the world is painted in: `style`, or look-N."""
        return self.style if self.look is None else look_name(self.look)

    @property
    def name(self) -> str:
        return f"{self.world_style}-{self.track_seed}"

    def track(self) -> Track:
        if self.world == TWO_LANE.name:
            seen = _lane_track(self.track_seed, self.style)
        else:
            seen = _suite_track(self.track_seed, self.style)
        return seen if self.look is None else replace(seen, style=self.world_style)  # the same shape

    def conditions(self) -> Conditions:
        if self.look is not None:
            return look_conditions(self.look)
        return Conditions.draw(self.conditions_seed, styles_for(KINDS[self.world].lanes))


@cache
def _suite_track(seed: int, style: str) -> Track:
    return suite_track(seed, style)


@cache
def _lane_track(seed: int, style: str) -> Track:
    return lane_track(seed, style)


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    drives: tuple[SuiteDrive, ...]
    description: str

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def _drives(first_seed: int, count: int, laps: float) -> tuple[SuiteDrive, ...]:
    """`count` drives on consecutive track seeds, the styles taking turns; each world's conditions
    are drawn from a seed of their own (the track seed plus a million, so never a track seed)."""
    return tuple(
        SuiteDrive(first_seed + i, STYLE_ORDER[i % 3], 1_000_000 + first_seed + i, laps) for i in range(count)
    )


def _seen_and_new(drives: tuple[SuiteDrive, ...]) -> tuple[SuiteDrive, ...]:
    """Each drive twice, in turn: as it is (its seen style), then the same shape and textures in a
    new look of its own (SUITE_LOOKS.start + its track seed, so two suites' shapes never share
    one)."""
    return tuple(d for seen in drives for d in (seen, replace(seen, look=_new_look_of(seen))))


def _new_look_of(drive: SuiteDrive) -> int:
    return SUITE_LOOKS.start + drive.track_seed


def _lane_drives(first_seed: int, count: int, laps: float) -> tuple[SuiteDrive, ...]:
    """`count` two-lane drives on consecutive held-out map seeds, the lane styles taking turns;
    conditions from seeds of their own (the map seed plus two million)."""
    return tuple(
        SuiteDrive(first, LANE_STYLES[i % len(LANE_STYLES)], 2_000_000 + first, laps, world=TWO_LANE.name)
        for i, first in enumerate(range(first_seed, first_seed + count))
    )


SUITES = {
    "unseen": Suite(
        "unseen",
        1,
        _drives(UNSEEN_SEEDS.start, 24, 1.0),
        "24 tracks never recorded, 8 per style, each with a hairpin and S-bends, under drawn conditions",
    ),
    "quick": Suite(
        "quick",
        1,
        _drives(UNSEEN_SEEDS.start + 500, 6, 1.0),
        "6 unseen tracks, 2 per style: a demo- and CI-sized look at generalisation",
    ),
    "validation": Suite(
        "validation",
        1,
        _drives(VALIDATION_SEEDS.start, 3, 0.5),
        "3 held-out half laps, one per style: how train.py's drive check picks a checkpoint",
    ),
    "two-lane": Suite(
        "two-lane",
        1,
        _lane_drives(LANE_HELD_OUT_SEEDS.start, 12, 2.0),
        "12 held-out two-lane maps of tight corners, 2 laps each, keeping to the right lane, in the "
        "two-lane world's camera and steering scale, under drawn conditions",
    ),
    "two-lane-quick": Suite(
        "two-lane-quick",
        1,
        _lane_drives(LANE_HELD_OUT_SEEDS.start + 500, 4, 1.0),
        "4 held-out two-lane maps, one lap each: a quick look at the two-lane world",
    ),
    "two-lane-validation": Suite(
        "two-lane-validation",
        1,
        _lane_drives(LANE_VALIDATION_SEEDS.start, 3, 0.5),
        "3 held-out two-lane half laps (two to four tight corners each): how train.py's drive check "
        "picks a two-lane model's checkpoint (--drive-check-suite two-lane-validation)",
    ),
}
SUITES["looks"] = Suite(
    "looks",
    1,
    _seen_and_new(SUITES["unseen"].drives),
    "the 24 shapes of `unseen`, each driven in its seen style (as in `unseen`) and in a new look no "
    "recording has: the gap between the two isolates the look",
)
SUITES["quick-looks"] = Suite(
    "quick-looks",
    1,
    _seen_and_new(SUITES["quick"].drives),
    "the 6 shapes of `quick`, each in its seen style and in a new look: a demo- and CI-sized look at the gap",
)
# Held out from every choice: the recipes and levers of docs/evaluation.md were chosen by their
# figures on `looks`, so a choice is confirmed here, on shapes and looks none of them was made on.
SUITES["looks-holdout"] = Suite(
    "looks-holdout",
    1,
    _seen_and_new(_drives(UNSEEN_SEEDS.start + 1000, 24, 1.0)),
    "24 more unseen shapes, each in its seen style and in a new look, held out from choosing "
    "recipes and levers (they were chosen on `looks`): confirms a choice on shapes and looks it "
    "was not made on",
)
SUITES["validation-looks"] = Suite(
    "validation-looks",
    1,
    _seen_and_new(SUITES["validation"].drives),
    "the 3 held-out half laps of `validation`, each in its seen style and in a new look of its own: "
    "a drive check (--drive-check-suite validation-looks) that also asks for looks no recording has",
)


# --- seed-study recipes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """One training recording: a built-in track, a suite-style track (TRAINING_SEEDS) in a style,
    or a two-lane map (driving.sim.lanes' training seeds, recorded in the two-lane world),
    recorded with `laps` expert laps. `vary` is the recorder's (driving.sim.looks.vary_kind):
    True paints each lap in a new style and light, "looks" each stretch in a generated training
    look (driving.sim.looks.TRAINING_LOOKS), "faint-looks" each stretch in a faint-road one
    (driving.sim.looks.faint_road)."""

    track: str  # a built-in name, "suite" or "two-lane"
    laps: float
    seed: int
    vary: bool | str = False
    style: str = "lake"  # for suite tracks

    def __post_init__(self) -> None:
        vary_kind(self.vary)  # ValueError, naming the kinds, for anything else

    @property
    def folder_name(self) -> str:
        where = {"suite": f"suite{self.seed}-{self.style}", TWO_LANE.name: f"two-lane{self.seed}"}.get(
            self.track, self.track
        )
        kind = vary_kind(self.vary)
        # The look density is in the name: a recording made at another density is another one.
        if kind in NEW_LOOK_KINDS:
            varied = f"-{'new' if kind == 'looks' else 'faint'}looks{NEW_LOOKS_PER_LAP}"
        else:
            varied = "-varied" if kind else ""
        return f"{where}-{self.laps:g}laps-seed{self.seed}{varied}"

    def make_track(self) -> Track:
        if self.track == TWO_LANE.name:
            return lane_track(check_training_seed(self.seed, "two-lane recording seed"), self.style)
        if self.track != "suite":
            return builtin_track(self.track)
        if self.seed not in TRAINING_SEEDS:
            raise ValueError(f"suite-style training tracks must use seeds in {TRAINING_SEEDS}")
        return suite_track(self.seed, self.style)


DEMO_RECORDINGS = (Recording("lake", 3.0, 0), Recording("jungle", 3.0, 1))
VARIED_RECORDINGS = (Recording("lake", 3.0, 0, vary=True), Recording("jungle", 3.0, 1, vary=True))
SUITE_STYLE_RECORDINGS = tuple(
    Recording("suite", 1.5, i, vary=True, style=style)
    for i, style in enumerate(("lake", "jungle", "desert", "lake"))
)
DIVERSE_RECORDINGS = VARIED_RECORDINGS + SUITE_STYLE_RECORDINGS
# The same tracks and laps again, every stretch in a generated training look (24 a lap): the
# looks recipe records twice what robust does, half of it in looks no style has.
NEW_LOOK_RECORDINGS = tuple(replace(r, vary="looks") for r in DIVERSE_RECORDINGS)
# The same laps once more, every stretch in a faint-road training look (driving.sim.looks.faint_road).
FAINT_LOOK_RECORDINGS = tuple(replace(r, vary="faint-looks") for r in NEW_LOOK_RECORDINGS)
# Eight training maps of the two-lane world, two laps each, every third of a lap in a new look.
TWO_LANE_RECORDINGS = tuple(
    Recording(TWO_LANE.name, 2.0, i, vary=True, style=LANE_STYLES[i % len(LANE_STYLES)]) for i in range(8)
)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    recordings: tuple[Recording, ...] = DEMO_RECORDINGS
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    drive_check_steps: int = 0
    drive_check_suite: str = "validation"  # train.py --drive-check-suite (config.DRIVE_CHECK_SUITES)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    bn_refresh_batches: int = 0  # train.py --bn-refresh N
    # Recordings validated on instead of held-out blocks of `recordings` (train.py --val-data).
    validation: tuple[Recording, ...] = ()
    # train.py --patience (None: its default). 0 fixes the budget; the study then also drives the
    # last checkpoint and serves it.
    patience: int | None = None


# What training must be told about data not made like the Udacity simulator's (docs/worlds.md): the
# two-lane world's crop rows, its side cameras' correction and shift steering (computed from its
# camera and steering scale), no flips (a mirror image drives on the left), no brightness
# augmentation (the recordings vary their light, as `robust`'s do), and a drive check on the
# two-lane world's own held-out half laps (as `robust`'s is on the classic ones). Its recipe also
# refreshes the BatchNorm statistics from 20 clean batches before each validation and drive check
# (--bn-refresh 20): without it effnet-slim's moving statistics, averaged over augmented batches,
# were far from the clean frames it drives on (docs/worlds.md).
TWO_LANE_AUGMENT = AugmentConfig(
    flip=False,
    brightness=False,
    steering_correction=round(TWO_LANE.steering_correction(), 3),
    shift_steering_per_px=round(TWO_LANE.shift_steering_per_px(), 5),
)
TWO_LANE_PREPROCESSING = Preprocessing(crop_top=TWO_LANE.crop_rows[0], crop_bottom=TWO_LANE.crop_rows[1])


LOOKS = Recipe(
    "looks",
    "robust's recordings and augmentation, plus the same laps again with every 24th of a lap "
    "painted in a generated training look (sim record --new-looks), BatchNorm statistics refreshed "
    "from 20 clean batches (--bn-refresh 20), and no drive check: its best-validation-loss "
    "checkpoint drove new looks as well or better (effnet-slim, 5 of 5 seeds)",
    recordings=DIVERSE_RECORDINGS + NEW_LOOK_RECORDINGS,
    augment=AugmentConfig(brightness=False),
    bn_refresh_batches=20,
)

# The looks recipe less robust's laps in the three named styles, whose grey asphalt made half of
# every frame: effnet-slim at cpu4x narrowed the gap in 5 of 5 seeds (docs/evaluation.md).
LOOKS_ONLY = replace(
    LOOKS,
    name="looks-only",
    description="looks' laps in generated training looks alone, without robust's laps in the named "
    "styles (every frame in a generated look, so no road surface dominates), BatchNorm statistics "
    "refreshed from 20 clean batches, no drive check",
    recordings=NEW_LOOK_RECORDINGS,
)

# cpu8x's last checkpoints drove new looks better than its val-best ones in 5 of 5 seeds
# (effnet-slim, docs/evaluation.md): train the whole budget and serve its end.
LOOKS_ONLY_FIXED = replace(
    LOOKS_ONLY,
    name="looks-only-fixed",
    description="looks-only trained for the whole budget (early stopping off: --patience 0) "
    "and serving its last checkpoint, NAME.last.keras; the study drives val-best as well",
    patience=0,
)

# The looks that cost every model most have faint roads: weak edge markings, a road near its
# roadside's colour. One training look in six is of that kind; here more than half are. Measured
# at cpu8x, not kept: pilotnet gained on the suite's own faint looks and not on faint looks no
# suite holds, effnet-slim lost a little (docs/evaluation.md).
LOOKS_FAINT = replace(
    LOOKS_ONLY_FIXED,
    name="looks-faint",
    description="looks-only-fixed's laps, and the same laps again with every stretch in a faint-road "
    "training look (sim record --faint-looks: edges unmarked or sparsely dashed, a road close in "
    "colour to its roadside), trained for the whole budget and serving its last checkpoint",
    recordings=NEW_LOOK_RECORDINGS + FAINT_LOOK_RECORDINGS,
)


RECIPES = {
    r.name: r
    for r in (
        Recipe("demo", "the demo's recordings (3 expert laps of lake and of jungle), default training"),
        Recipe(
            "varied",
            "the same tracks and laps, each lap painted in a new style and conditions (sim record --vary)",
            recordings=VARIED_RECORDINGS,
        ),
        Recipe(
            "varied-colour",
            "varied recordings, and colour augmentation in training (train.py --colour)",
            recordings=VARIED_RECORDINGS,
            augment=AugmentConfig(colour=True),
        ),
        Recipe(
            "varied-nobright",
            "varied recordings, without the brightness augmentation (frames darkened to as little as "
            "10% of their light: the recordings' varied light does that job)",
            recordings=VARIED_RECORDINGS,
            augment=AugmentConfig(brightness=False),
        ),
        Recipe(
            "diverse-nobright",
            "varied recordings of lake and jungle plus four suite-style training tracks (hairpins, "
            "S-bends; seeds 0-3, 1.5 varied laps each), without the brightness augmentation",
            recordings=DIVERSE_RECORDINGS,
            augment=AugmentConfig(brightness=False),
        ),
        Recipe(
            "robust",
            "the project's default: varied recordings of lake and jungle plus four suite-style "
            "training tracks, no brightness augmentation, and a drive check every 120 steps that "
            "keeps the best validation driver (NAME.drive.keras)",
            recordings=DIVERSE_RECORDINGS,
            augment=AugmentConfig(brightness=False),
            drive_check_steps=120,
        ),
        Recipe(
            "diverse",
            "varied recordings of lake and jungle plus four suite-style training tracks (hairpins, "
            "S-bends; seeds 0-3, 1.5 varied laps each), colour augmentation",
            recordings=DIVERSE_RECORDINGS,
            augment=AugmentConfig(colour=True),
        ),
        LOOKS,
        LOOKS_ONLY,
        LOOKS_ONLY_FIXED,
        LOOKS_FAINT,
        Recipe(
            "two-lane",
            "the two-lane world: 2 varied laps of each of 8 training maps (keep to the right lane, "
            "its own camera and steering scale), with its crop rows, side-camera correction and shift "
            "steering, no flips, no brightness augmentation, BatchNorm statistics refreshed from 20 "
            "clean batches before each validation (--bn-refresh 20), and a drive check every 120 "
            "steps on held-out two-lane half laps (--drive-check-suite two-lane-validation); drive "
            "it on the two-lane suites",
            recordings=TWO_LANE_RECORDINGS,
            augment=TWO_LANE_AUGMENT,
            preprocessing=TWO_LANE_PREPROCESSING,
            bn_refresh_batches=20,
            drive_check_steps=120,
            drive_check_suite="two-lane-validation",
        ),
    )
}
