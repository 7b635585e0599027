"""The looks suites and the gap: every shape of `unseen` and `quick` driven seen and new, the gap
paired by shape on real drive results, shown only where a suite has both kinds, old suite records
still read, and a tiny seen-and-new suite driven end to end by a real model."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from driving.config import RunConfig
from driving.evaluation import seed_tables, suites
from driving.evaluation.registry import SUITES, UNSEEN_SEEDS, Suite, SuiteDrive
from driving.evaluation.suites import bootstrap_ci, bootstrap_difference_ci, markdown, summarise
from driving.modelio import ModelInfo, save_keras
from driving.run import DriveResult, StudyRecord, SuiteResult, TrainResult, write_record
from driving.sim.looks import SUITE_LOOKS, look_conditions, new_look
from tests.test_runtime import tiny_model


def result_of(track_seed: int, look: int | None, autonomy: float, style: str = "lake") -> DriveResult:
    """A drive's record as suites.drive_one makes it (figures chosen, not driven)."""
    painted = style if look is None else f"look-{look}"
    return DriveResult(
        track=f"suite-{track_seed}", laps_target=1.0, laps=1.0, distance_m=400.0, elapsed_s=120.0,
        frames=1800, interventions=0 if autonomy == 100 else 1, autonomy_pct=autonomy,
        mean_abs_cte_m=0.4, max_abs_cte_m=1.5, mean_speed_mph=9.0, steering_rate_rms=0.5,
        latency_median_ms=1.0, latency_p99_ms=2.0, completed=True, realtime=False, model="m",
        end_reason="laps done", drive=f"{painted}-{track_seed}", style=painted, look=look,
        track_seed=track_seed, conditions_seed=1_000_000 + track_seed, width_m=8.0,
    )  # fmt: skip


SEEN = [90.0, 80.0, 100.0, 70.0]
NEW = [70.0, 80.0, 60.0, 71.0]


def paired_rows() -> list[DriveResult]:
    rows = []
    for i, (seen, new) in enumerate(zip(SEEN, NEW, strict=True)):
        rows += [result_of(10000 + i, None, seen), result_of(10000 + i, SUITE_LOOKS.start + 10000 + i, new)]
    return rows


def suite_result(rows: list[DriveResult]) -> SuiteResult:
    drives = [{"name": r.drive, "track_seed": r.track_seed, "look": r.look} for r in rows]
    suite = {"name": "t", "version": 1, "description": "d", "drives": drives}
    return SuiteResult(suite, 9.0, {"m": "m.keras"}, {"m": rows}, {"m": summarise(rows)})


# --- the suites -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, seen", [("looks", "unseen"), ("quick-looks", "quick"), ("validation-looks", "validation")]
)
def test_the_looks_suites_drive_every_shape_seen_and_new(name, seen):
    suite, plain = SUITES[name], SUITES[seen]
    assert len(suite.drives) == 2 * len(plain.drives) and suite.version == 1
    assert suite.drives[0::2] == plain.drives  # the seen drives are the other suite's, exactly
    for old, new in zip(plain.drives, suite.drives[1::2], strict=True):
        assert new == replace(old, look=SUITE_LOOKS.start + old.track_seed)
    names = [d.name for d in suite.drives]
    assert len(set(names)) == len(names)
    old, new = plain.drives[0], suite.drives[1]
    np.testing.assert_array_equal(old.track().points, new.track().points)  # the very shape
    assert new.track().style == f"look-{new.look}" and new.conditions() == look_conditions(new.look)
    assert old.track().style == old.style and old.conditions() == plain.drives[0].conditions()


def test_the_held_out_looks_suite_shares_no_shape_and_no_look_with_another_suite():
    held_out = SUITES["looks-holdout"]
    seen, new = held_out.drives[0::2], held_out.drives[1::2]
    assert held_out.version == 1 and len(seen) == len(new) == 24
    assert [d.track_seed for d in seen] == list(range(11000, 11024))
    assert all(d.look is None and d.track_seed in UNSEEN_SEEDS for d in seen)
    for old, painted in zip(seen, new, strict=True):
        assert painted == replace(old, look=SUITE_LOOKS.start + old.track_seed)
    assert [d.style for d in seen[:3]] == ["lake", "jungle", "desert"]  # the styles take turns
    others = [d for name, suite in SUITES.items() if name != "looks-holdout" for d in suite.drives]

    def shapes(drives):
        return {(d.world, d.track_seed) for d in drives}

    assert shapes(held_out.drives).isdisjoint(shapes(others))
    assert {d.look for d in new}.isdisjoint({d.look for d in others})
    assert {d.conditions_seed for d in seen}.isdisjoint({d.conditions_seed for d in others})


def test_the_suites_of_seen_looks_are_as_they_were():
    for name, first, count in (("unseen", 10000, 24), ("quick", 10500, 6)):
        drives = SUITES[name].drives
        assert all(d.look is None for d in drives)
        styles = ("lake", "jungle", "desert")
        assert [d.name for d in drives] == [f"{styles[i % 3]}-{first + i}" for i in range(count)]
        assert all(d.track_seed in UNSEEN_SEEDS for d in drives)
    assert all(d.look is None for d in SUITES["validation"].drives)


# --- the gap --------------------------------------------------------------------------------------


def test_the_gap_is_paired_by_shape():
    rows = paired_rows()
    s = summarise(rows)
    diffs = [n - o for o, n in zip(SEEN, NEW, strict=True)]
    assert (s.seen_drives, s.new_look_drives, s.gap_pairs) == (4, 4, 4) and s.has_both_looks
    assert s.seen_autonomy_mean == np.mean(SEEN) and s.seen_autonomy_ci95 == bootstrap_ci(SEEN)
    assert s.new_look_autonomy_mean == np.mean(NEW) and s.new_look_autonomy_ci95 == bootstrap_ci(NEW)
    assert s.look_gap == pytest.approx(-14.75) and s.look_gap_ci95 == bootstrap_ci(diffs)
    assert s.autonomy_by_style == {"lake": np.mean(SEEN)}  # the named styles: seen drives only
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert summarise(shuffled).look_gap_ci95 == s.look_gap_ci95  # pairs found by shape, not order
    # A constant cost of 10 points has no spread: its interval is that one value.
    constant = [replace(r, autonomy_pct=SEEN[i // 2] - 10 * (r.look is not None)) for i, r in enumerate(rows)]
    assert summarise(constant).look_gap_ci95 == (-10.0, -10.0)


def test_the_gap_of_unpaired_drives_is_the_difference_of_the_means():
    rows = [result_of(1, None, 90.0), result_of(2, None, 70.0)]
    rows += [result_of(3, SUITE_LOOKS.start, 50.0), result_of(4, SUITE_LOOKS.start + 1, 40.0)]
    s = summarise(rows)
    assert s.gap_pairs == 0 and s.look_gap == pytest.approx(45.0 - 80.0)
    assert s.look_gap_ci95 == bootstrap_difference_ci([50.0, 40.0], [90.0, 70.0])
    low, high = s.look_gap_ci95
    assert low <= s.look_gap <= high and high - low > 0


def test_a_suite_of_seen_looks_only_has_no_gap():
    rows = [result_of(1, None, 90.0), result_of(2, None, 70.0, "desert")]
    s = summarise(rows)
    assert (s.seen_drives, s.seen_autonomy_mean) == (2, s.autonomy_mean)
    assert s.seen_autonomy_ci95 == s.autonomy_ci95
    assert (s.new_look_drives, s.new_look_autonomy_mean, s.look_gap, s.gap_pairs) == (0, None, None, 0)
    assert not s.has_both_looks


def test_the_table_and_chart_show_the_gap_only_for_a_suite_with_both(tmp_path):
    both = suite_result(paired_rows())
    text = markdown(both)
    assert "| model | seen looks | new looks | gap new - seen [95% CI] |" in text
    low, high = both.summary["m"].look_gap_ci95
    assert "| m | 85.0% [" in text and f"-14.8 [{low:+.1f}, {high:+.1f}] |" in text
    assert "paired by track shape (4 shapes driven in both)" in text
    assert f"- `look-{SUITE_LOOKS.start + 10000}`: {new_look(SUITE_LOOKS.start + 10000).describe()}" in text
    assert suites.plot(both, tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"
    seen_only = suite_result([r for r in paired_rows() if r.look is None])
    text = markdown(seen_only)
    assert "looks" not in text and "gap" not in text
    assert suites.plot(seen_only, tmp_path / "seen.png").read_bytes()[:4] == b"\x89PNG"


def test_a_suite_record_from_before_the_gap_is_still_read(tmp_path):
    """A schema-1 suite-NAME.json (no look fields anywhere) reads, with no gap, and tabulates."""
    data = suite_result([result_of(1, None, 90.0)]).to_dict()
    for row in data["drives"]["m"]:
        del row["look"]
    for name in list(data["summary"]["m"]):
        if "look" in name or name.startswith("seen") or name == "gap_pairs":
            del data["summary"]["m"][name]
    path = write_record(tmp_path / "suite-old.json", data)
    path.write_text(path.read_text().replace('"schema": 2', '"schema": 1'))
    assert json.loads(path.read_text())["schema"] == 1
    old = SuiteResult.read(path)
    assert old.drives["m"][0].look is None and old.summary["m"].seen_drives == 0
    assert not old.summary["m"].has_both_looks and "| m | 0% | 90.0% [90.0, 90.0]" in markdown(old)


def test_the_seed_table_shows_seen_and_new_looks_only_when_the_suite_has_both():
    settings = json.loads(json.dumps(RunConfig(data=["/rec"], models=["pilotnet"]).to_dict()))

    def run(seed: int, rows: list[DriveResult]) -> StudyRecord:
        return StudyRecord(
            settings=settings, suite="t v1", model="pilotnet", seed=seed, val_mse=0.02,
            summary={"val-best": summarise(rows)}, steps={"val-best": 10}, recipe="looks",
        )  # fmt: skip

    worse = [replace(r, autonomy_pct=r.autonomy_pct / 2) if r.look is not None else r for r in paired_rows()]
    table = seed_tables.summary_table([run(0, paired_rows()), run(1, worse)])
    assert (
        "| seen looks median [min, max] | new looks median [min, max] | new looks >= 90% | gap new - seen"
        in table
    )
    assert table.splitlines()[0].endswith("| new >= 90% and gap within 3 points |")
    gaps = sorted([summarise(paired_rows()).look_gap, summarise(worse).look_gap])
    assert f"{np.median(gaps):+.1f} [{gaps[0]:+.1f}, {gaps[1]:+.1f}] |" in table
    # The target's counts: seeds driving new looks at >= 90%, and of those, gaps within 3 points
    # either way (neither run here drives new looks at 90%, so none counts, whatever its gap).
    news = [summarise(rows).new_look_autonomy_mean for rows in (paired_rows(), worse)]
    assert f"| {sum(v >= 90 for v in news)} of 2 | {np.median(gaps):+.1f}" in table
    assert table.splitlines()[2].endswith("| 0 of 2 |")

    def drove(seen: float, new: float) -> list[DriveResult]:  # every shape at these autonomies
        return [replace(r, autonomy_pct=seen if r.look is None else new) for r in paired_rows()]

    near, above, nothing = drove(97.5, 95.0), drove(75.0, 95.0), drove(0.0, 0.0)
    slow_near = [
        replace(r, autonomy_pct=NEW[i // 2] + 2.5) if r.look is None else r
        for i, r in enumerate(paired_rows())
    ]
    runs = [run(0, near), run(1, above), run(2, nothing), run(3, slow_near)]
    assert [summarise(rows).look_gap for rows in (near, above, nothing, slow_near)] == pytest.approx(
        [-2.5, +20, 0, -2.5]
    )
    counted = seed_tables.summary_table(runs).splitlines()[2]
    # -2.5 at 95% counts; +20 (seen looks fell), a run that drove nothing (gap 0) and -2.5 at 70% do not.
    cells = [c.strip() for c in counted.split("|")]
    assert (cells[-4], cells[-2]) == ("2 of 4", "1 of 4")  # new looks >= 90%; and the gap met too
    # A run of a fixed budget serves its last checkpoint: the look cells are the last one's, and
    # the comparison column names it against val-best.
    best, last = summarise(worse), summarise(paired_rows())
    fixed = replace(
        run(0, worse), summary={"val-best": best, "last": last}, steps={"val-best": 10, "last": 20}
    )
    assert seed_tables.served_kind(fixed) == "last"
    fixed_table = seed_tables.summary_table([fixed])
    assert f"| {last.new_look_autonomy_mean:.1f}% [" in fixed_table
    assert f"| {best.new_look_autonomy_mean:.1f}% [" not in fixed_table
    gain = last.autonomy_mean - best.autonomy_mean
    assert f"| last: {int(last.autonomy_mean >= 90)} of 1, " in fixed_table
    assert f"1 of 1, {gain:+.1f} points" in fixed_table
    plain = seed_tables.summary_table([run(0, [r for r in paired_rows() if r.look is None])])
    assert "seen looks" not in plain and "gap new" not in plain
    # The study's figure: each seed's seen-look and new-look autonomy, where the table has them.
    figure = seed_tables.study_figure([run(0, paired_rows()), run(1, worse)], "t v1")
    drawn = {float(y) for line in figure.axes[0].lines for y in line.get_ydata()}
    for rows in (paired_rows(), worse):
        both = summarise(rows)
        assert {both.seen_autonomy_mean, both.new_look_autonomy_mean} <= drawn
        assert both.autonomy_mean not in drawn
    assert "Seen looks" in figure.axes[0].get_title()
    # Runs in recipe order come out grouped by model, so a model's recipes stand side by side.
    studied = [
        replace(run(0, paired_rows()), model=m, recipe=r)
        for r in ("looks", "looks-only")
        for m in ("effnet", "pilotnet")
    ]
    axes = seed_tables.study_figure(studied, "t v1").axes[0]
    ticks = [label.get_text() for label in axes.get_xticklabels()]
    assert ticks == ["effnet\nlooks", "effnet\nlooks-only", "pilotnet\nlooks", "pilotnet\nlooks-only"]
    plain_figure = seed_tables.study_figure([run(0, [r for r in paired_rows() if r.look is None])], "t v1")
    assert "hollow" in plain_figure.axes[0].get_title()
    plt.close("all")


def test_the_seed_table_says_which_new_looks_cost_most(tmp_path, capsys):
    settings = json.loads(json.dumps(RunConfig(data=["/rec"], models=["pilotnet"]).to_dict()))
    suite = Suite("t", 1, (), "d")
    worse = [replace(r, autonomy_pct=r.autonomy_pct / 2) if r.look is not None else r for r in paired_rows()]

    def run(seed: int, drives: dict[str, list[DriveResult]], write: bool = True) -> StudyRecord:
        if write:
            folder = seed_tables.study_run(tmp_path, "looks", "pilotnet", seed)
            folder.root.mkdir(parents=True)
            found = {kind: summarise(rows) for kind, rows in drives.items()}
            SuiteResult({"name": "t"}, 9.0, {}, drives, found).write(folder.suite("t"))
        return StudyRecord(
            settings=settings, suite="t v1", model="pilotnet", seed=seed, val_mse=0.02,
            summary={kind: summarise(rows) for kind, rows in drives.items()},
            steps={kind: 10 * (i + 1) for i, kind in enumerate(drives)}, recipe="looks",
        )  # fmt: skip

    # Seed 1 trained a fixed budget: its last checkpoint is served, so its drives are the ones read.
    runs = [
        run(0, {"val-best": paired_rows()}),
        run(1, {"val-best": worse, "last": paired_rows()}),
        run(2, {"val-best": paired_rows()}, write=False),  # no suite file: left out, in one line
        run(4, {"val-best": [replace(r, look=-5) if r.look else r for r in paired_rows()]}),  # tampered
    ]
    table = seed_tables.write_tables(tmp_path, suite, runs, with_plot=False).table
    # Each run's new looks cost -20, 0, -40 and +1 points against their shapes seen (SEEN, NEW).
    first, third = SUITE_LOOKS.start + 10000, SUITE_LOOKS.start + 10002
    # Every shape's gap is -14.75 in both runs; without the two costliest looks', +0.5.
    row = f"| looks | pilotnet | 2 | look-{third} -40.0 (2 of 2), look-{first} -20.0 (2 of 2) | "
    assert row + "-14.8 [-14.8, -14.8] | +0.5 [+0.5, +0.5] |" in table.splitlines()
    assert f"- `look-{third}`: {new_look(third).describe()}" in table
    assert table in (tmp_path / "study.md").read_text()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "seed-2/suite-t.json" in err[0] and "left out of where the gap lives" in err[0]
    assert "seed-4/suite-t.json: drive " in err[1] and "field 'look' is not a look seed: -5" in err[1]
    # A suite of seen looks alone has no such section.
    seen_only = [run(3, {"val-best": [r for r in paired_rows() if r.look is None]})]
    assert "Where the gap lives" not in seed_tables.write_tables(tmp_path, suite, seen_only).table


# --- a tiny suite driven by a real model ----------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m") / "tiny.keras"
    save_keras(tiny_model(), path, ModelInfo(model="tiny"))
    return path


def test_a_tiny_suite_of_one_shape_seen_and_new_is_driven_and_summed_up(model_file, tmp_path):
    seen = SuiteDrive(10900, "lake", 1_010_900, 0.04)
    suite = Suite("tiny-looks", 1, (seen, replace(seen, look=SUITE_LOOKS.start + 10900)), "t")
    result = suites.run([model_file], suite, jobs=1, progress=False, out=tmp_path)
    rows = result.drives["tiny"]
    assert [(r.drive, r.style, r.look) for r in rows] == [
        ("lake-10900", "lake", None),
        ("look-1010900-10900", "look-1010900", 1_010_900),
    ]
    assert rows[0].features == rows[1].features and rows[0].width_m == rows[1].width_m  # one shape
    s = result.summary["tiny"]
    gap = rows[1].autonomy_pct - rows[0].autonomy_pct
    assert s.gap_pairs == 1 and s.look_gap == gap and s.look_gap_ci95 == (gap, gap)
    assert SuiteResult.read(tmp_path / "suite-tiny-looks.json") == result
    text = (tmp_path / "suite-tiny-looks.md").read_text()
    assert new_look(1_010_900).describe() in text and "gap new - seen" in text
    assert (tmp_path / "suite-tiny-looks.png").read_bytes()[:4] == b"\x89PNG"


# --- the demo's table -----------------------------------------------------------------------------


def test_the_demo_names_a_model_that_learnt_nothing():
    from driving.demo import learnt_nothing_note

    def result(name: str, idle: bool) -> TrainResult:
        return TrainResult(name, 10, 2, 0.048 if idle else 0.01, 0.2, 3.0, False, None, 0.046, idle)

    assert learnt_nothing_note([result("effnet", False), result("pilotnet", False)], 0) == ""
    note = learnt_nothing_note([result("effnet", False), result("base", True)], 3)
    assert note.startswith("**Did not learn to steer:** `base` (best val MSE 0.0480 against 0.0460")
    assert "effnet" not in note and "seed 3 did" in note and note.endswith("\n\n")


def test_the_demo_table_shows_the_gap_beside_the_seen_styles():
    from driving.demo import summary_table

    report = [{"model": "m", "params": 1234, "val_mse": 0.0123}]
    table = summary_table(report, suite_result(paired_rows())).splitlines()
    head = [cell.strip() for cell in table[0].strip("|").split("|")]
    row = dict(zip(head, (cell.strip() for cell in table[2].strip("|").split("|")), strict=True))
    assert head[-4:] == ["lake", "seen looks", "new looks", "gap new - seen, points"]
    assert row["params"] == "1,234" and row["val MSE"] == "0.0123" and row["MACs/frame"] == "-"
    assert row["seen looks"].startswith(f"{np.mean(SEEN):.1f}% [")
    assert row["new looks"].startswith(f"{np.mean(NEW):.1f}% [")
    assert row["gap new - seen, points"].startswith(f"{np.mean(NEW) - np.mean(SEEN):+.1f} [")
    # A suite of seen looks only: its styles, and no look columns.
    plain = summary_table(report, suite_result([r for r in paired_rows() if r.look is None]))
    assert "seen looks" not in plain and "| lake |" in plain.splitlines()[0]
