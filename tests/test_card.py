"""Model cards on a tiny real run: training writes the card beside the model, a real evaluate and
the report add to it without losing what was there, the JSON round-trips through its typed record,
the markdown shows every section, and drive.py prints the card's line when it starts serving."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from driving import card, models
from driving.config import AugmentConfig, RunConfig, model_seed
from driving.data.exclusions import from_spans, write_exclusions
from driving.data.reader import load_recordings
from driving.evaluation import suites
from driving.evaluation.registry import Suite, SuiteDrive
from driving.files import RecordError
from driving.modelio import load_keras
from driving.report import stage as report
from driving.report.config import ReportConfig
from driving.run import Checkpoint, DrivenFile, RunFolder, read_record, record_from_dict
from driving.train import stage as train
from tests.conftest import write_recording

ROOT = Path(__file__).resolve().parent.parent
NAME = "effnet-tiny"
SEED = 2
# Two short drives of unseen tracks (as tests/test_evaluate.py makes them): a real interval, fast.
TINY = Suite(
    "tiny", 1, (SuiteDrive(10900, "lake", 1_010_900, 0.04), SuiteDrive(10901, "desert", 1_010_901, 0.04)), "t"
)


def exclude(folder: Path, spans: list[tuple[int, int]]) -> None:
    """Leave rows `spans` (index spans of the recording's frames) out, as the browser does."""
    frames = load_recordings([folder], exclusions=False).frames.reset_index(drop=True)
    write_exclusions(folder, from_spans(frames, spans))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunFolder:
    """Two recordings, one with a range left out; one model trained a few steps on them, then
    driven over the tiny suite by a real evaluate."""
    data = tmp_path_factory.mktemp("data")
    write_recording(data / "a", n=60, seed=3)
    write_recording(data / "b", n=50, seed=4)
    exclude(data / "b", [(2, 5)])
    out = tmp_path_factory.mktemp("run") / "models"
    config = RunConfig(
        data=[str(data)],
        models=[NAME],
        out=str(out),
        seed=SEED,
        epochs=1,
        batch_size=16,
        steps_per_epoch=3,
        block_seconds=1.0,
        augment=AugmentConfig.off(),
        tensorboard=False,
    )
    train.run(config, progress=False)
    return RunFolder(out)


@pytest.fixture(scope="module")
def trained(run) -> dict:
    """The card as training wrote it, before any suite."""
    return read_record(run.card_json(NAME))


@pytest.fixture(scope="module")
def evaluated(run, trained) -> card.ModelCard:
    raw = read_record(run.card_json(NAME))
    raw["from_a_newer_version"] = {"kept": True}  # a section this version does not know
    run.card_json(NAME).write_text(json.dumps(raw))
    suites.run([run.model(NAME)], TINY, jobs=1, out=run.root / "suites", progress=False)
    return card.read(run, NAME)


def test_training_writes_a_card_of_what_the_model_is_and_what_made_it(run, trained):
    made = card.ModelCard.from_dict(trained, "card")
    model, _ = load_keras(run.model(NAME))
    assert (made.name, made.architecture) == (NAME, NAME)
    assert (made.params, made.trainable) == models.count_params(model)
    assert made.macs == models.count_macs(model) > 0
    assert made.sizes == {"keras": run.model(NAME).stat().st_size, "h5": run.h5(NAME).stat().st_size}
    assert made.preprocessing == RunConfig(data=["x"]).preprocessing
    # the data: both recordings, every row used counted, hashes over the logs and excluded.json
    a, b = made.data.recordings
    assert (Path(a.folder).name, Path(b.folder).name) == ("a", "b")
    assert (a.excluded, b.excluded) == (False, True) and 0 < b.rows < 50 and a.rows > b.rows
    assert a.rows + b.rows == made.data.rows == made.data.train_rows + made.data.val_rows
    assert a.sha256 == card.recording_sha256(a.folder) != b.sha256
    # the budget, the seed and the checkpoint, from run.json's figures
    results = read_record(run.record)["results"][NAME]
    assert (made.budget.epochs, made.budget.epochs_run, made.budget.steps, made.budget.batch_size) == (
        1,
        1,
        3,
        16,
    )
    assert (made.seed, made.model_seed) == (SEED, model_seed(SEED, NAME))
    assert made.val_mse == pytest.approx(results["best_val_loss"])
    best = made.checkpoints["val-best"]
    assert (best.kind, best.epoch, best.step, best.metric) == ("val-best", 1, 3, "val_loss")
    assert best.value == pytest.approx(results["best_val_loss"])
    assert made.suites == [] and made.report is None


def test_a_data_hash_changes_with_the_log_or_its_exclusions(tmp_path):
    folder = write_recording(tmp_path / "rec", n=12, seed=1)
    before = card.recording_sha256(folder)
    assert card.recording_sha256(folder) == before  # deterministic
    exclude(folder, [(2, 3)])
    assert card.recording_sha256(folder) != before


def test_evaluate_adds_the_suite_and_keeps_every_other_section(run, trained, evaluated):
    [figures] = evaluated.suites
    assert (figures.suite, figures.version, figures.file) == ("tiny", 1, f"{NAME}.keras")
    assert (figures.checkpoint, figures.precision, figures.tracks, figures.source) == (
        "val-best",
        "keras",
        2,
        "evaluate",
    )
    assert figures.training_seeds == [SEED] and figures.track_seeds == [10900, 10901]
    assert figures.conditions_seeds == [1_010_900, 1_010_901]
    summary = json.loads((run.root / "suites" / "suite-tiny.json").read_text())["summary"][NAME]
    assert figures.autonomy_mean == pytest.approx(summary["autonomy_mean"])
    assert list(figures.autonomy_ci95) == pytest.approx(summary["autonomy_ci95"])
    raw = read_record(run.card_json(NAME))
    assert raw["from_a_newer_version"] == {"kept": True}
    assert {k: v for k, v in raw.items() if k not in ("suites", "from_a_newer_version")} == {
        k: v for k, v in trained.items() if k != "suites"
    }
    # the same file on the same suite again replaces its figures rather than adding a row
    again = card.add_suite(suites.run([run.model(NAME)], TINY, jobs=1, progress=False))
    assert [len(c.suites) for c in again] == [1]


def test_the_json_round_trips_through_its_typed_record(run, evaluated):
    raw = read_record(run.card_json(NAME))
    assert record_from_dict(card.ModelCard, raw, "card") == evaluated
    assert card.ModelCard.from_dict(json.loads(json.dumps(evaluated.to_dict())), "card") == evaluated
    with pytest.raises(RecordError, match="field 'params'"):
        card.ModelCard.from_dict({**raw, "params": "many"}, "card")


def test_the_markdown_shows_every_section(run, evaluated):
    text = run.card_md(NAME).read_text()
    headings = ["# Model card: effnet-tiny", "## Model", "## Preprocessing", "## Training data"]
    headings += ["## Budget and seed", "## Checkpoints", "## Validation", "## Driven", "## Versions"]
    for heading in headings:
        assert f"\n{heading}\n" in f"\n{text}", heading
    assert evaluated.summary() in text and f"MACs per frame: {evaluated.macs:,}" in text
    assert (
        "One training run is one seed" in text and f"| val-best | {NAME}.keras | 1 | 3 | val_loss |" in text
    )
    assert f"| tiny v1 | {NAME}.keras | val-best | keras | 2 |" in text
    assert f"Serve {NAME}.keras: the run had no drive check and no fixed budget" in text
    assert evaluated.data.sha256[:16] in text and "| yes |" in text  # recording b's excluded.json


def test_the_summary_line_says_what_is_served(run, evaluated):
    line = card.summary_line(run.model(NAME))
    rows = evaluated.data.rows
    assert line.startswith(
        f"{NAME}: {evaluated.params:,} params, trained on 2 recordings ({rows:,} rows) seed {SEED}, "
    )
    # The tiny budget of these tests leaves the model no better than one constant angle: it says so.
    learnt = " (did not learn)" if evaluated.learnt_nothing else ""
    assert f"val MSE {evaluated.val_mse:.4f}{learnt}, tiny suite " in line and line.endswith(
        "over 2 tracks, 1 seed"
    )
    assert card.summary_line(run.h5(NAME)) == line  # the same weights in the other Keras format
    assert "suite" not in card.summary_line(run.checkpoint(NAME, "last"))  # never driven
    assert card.summary_line(run.root / "suites" / "elsewhere.keras") is None


def test_the_report_adds_its_measurements_and_each_precision_it_drove(run, evaluated):
    report.run(
        ReportConfig(run.root, runs=3, val_frames=16, export="none", saliency=["none"]), progress=False
    )
    measured = card.read(run, NAME)
    assert measured.report.model == NAME and measured.report.macs == evaluated.macs
    assert measured.suites == evaluated.suites  # the evaluate's figures stay
    # the precision drives as the report hands them over, for a file it exported
    int8 = DrivenFile(
        model=NAME,
        precision="int8",
        file=run.tflite(NAME, "int8").name,
        bytes=1234,
        all_cores_ms=1.0,
        one_core_ms=1.0,
        autonomy_by_track={"lake-10900": 90.0, "desert-10901": 80.0},
        autonomy_mean=85.0,
        autonomy_ci95=(80.0, 90.0),
        success_rate=0.5,
        verdict="no worse",
    )
    row = replace(measured.report, tflite={})
    [changed] = card.add_report(run, [row], [int8], TINY, 9.0)
    assert [(s.file, s.precision, s.source) for s in changed.suites] == [
        (f"{NAME}.keras", "keras", "evaluate"),
        (f"{NAME}.int8.tflite", "int8", "report"),
    ]
    assert changed.suites[1].training_seeds == [SEED] and changed.suites[1].track_seeds == [10900, 10901]
    assert card.locate(run.tflite(NAME, "int8"))[1:] == (NAME, "val-best", "int8")
    assert "tiny suite 85.0% [80.0, 90.0] over 2 tracks, 1 seed" in card.summary_line(
        run.tflite(NAME, "int8")
    )


def test_a_damaged_card_is_left_alone_with_one_line(tmp_path, capsys):
    folder = RunFolder(tmp_path)
    folder.card_json("m").write_text("{not json")
    assert card.update(folder, "m", lambda c: c) is None
    assert folder.card_json("m").read_text() == "{not json"
    assert "card: left alone:" in capsys.readouterr().err
    assert "its card is unreadable" in card.summary_line(tmp_path / "m.keras")


@pytest.mark.parametrize("field", ["val_mse", "val_mae", "val_steering_variance"])
def test_a_card_with_a_negative_error_figure_is_refused_naming_the_field(run, field):
    raw = read_record(run.card_json(NAME))
    raw[field] = -0.01
    with pytest.raises(RecordError, match=f"field '{field}' must not be negative") as refused:
        card.ModelCard.from_dict(raw, "m.card.json")
    assert "\n" not in str(refused.value)


def test_checkpoint_labels_of_older_files_are_read():
    best = card.as_checkpoint("best validation loss, epoch 4", steps_per_epoch=10)
    assert (best.kind, best.epoch, best.step, best.metric) == ("val-best", 4, 40, "val_loss")
    drive = card.as_checkpoint("best validation drive, step 240 (epoch 2)", steps_per_epoch=200)
    assert (drive.kind, drive.epoch, drive.step, drive.metric) == ("drive-best", 2, 240, "autonomy")
    assert card.as_checkpoint("").kind == card.as_checkpoint("untrained").kind == "unknown"
    typed = Checkpoint(kind="drive-best", epoch=3, step=7, metric="autonomy", value=92.0)
    assert card.as_checkpoint(typed) == typed


def test_drive_py_prints_the_card_line_when_it_starts(run, evaluated):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "drive.py"), str(run.model(NAME)), "--port", "0", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        while not any("serving" in line for line in seen):
            line = lines.get(timeout=180)  # bounded: TensorFlow's start and the model's conversion
            if line is None:
                break
            seen.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = "".join(seen)
    assert any(line.rstrip().endswith(card.summary_line(run.model(NAME))) for line in seen), text
    assert "serving" in text and "Traceback" not in text


def test_the_card_shows_where_the_model_looks_only_for_a_method_that_earns_its_place(run, evaluated):
    """The report's saliency section (per method: the road-and-edge score and the faithfulness
    check) lands on the card; a method's picture is shown as the model's only where it earned
    its place."""

    def found(ratio: float, low: float, high: float, earns: bool) -> dict:
        verdict = "earns its place" if earns else "not clearly better than elsewhere"
        moved = {"ratio": ratio, "low": low, "high": high}
        check = {"frames": 18, "moved": moved, "verdict": verdict, "earns_its_place": earns}
        return {"score": 0.42, "chance": 0.31, "per_frame": [0.42] * 18, "faithfulness": check}

    where = {"scores": {NAME: {"vbp": found(3.1, 2.4, 4.0, True), "smoothgrad": found(1.2, 0.8, 1.7, False)}}}
    if card.read(run, NAME).report is None:  # run alone: the report has not measured it yet
        config = ReportConfig(run.root, runs=3, val_frames=16, export="none", saliency=["none"])
        report.run(config, progress=False)
    row = card.read(run, NAME).report
    [changed] = card.add_report(run, [row], saliency=where, grid="saliency.png")
    assert changed.saliency["vbp"].earns_its_place and not changed.saliency["smoothgrad"].earns_its_place
    assert card.read(run, NAME).saliency == changed.saliency  # through the JSON and back
    text = run.card_md(NAME).read_text()
    assert "## Where it looks" in text and "3.10 [2.40, 4.00] | earns its place" in text
    assert text.count("![where") == 1  # one picture: the method that earned its place
    where["scores"][NAME]["vbp"] = found(1.1, 0.7, 1.6, False)
    [changed] = card.add_report(run, [row], saliency=where, grid="saliency.png")
    assert "No method earned its place" in run.card_md(NAME).read_text()
