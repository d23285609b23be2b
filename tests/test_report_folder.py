"""The analyzer reads study folders alone: a copied folder, an interrupted one and a resumed one give
the report the run itself wrote; the result object serves notebooks; studies are compared.

One small real study (mnist-5k, scratch vs torch SGD, lr x momentum with a diverging lr, two
seeds) is trained once for the module, uninterrupted, and once interrupted and resumed.
"""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from rich.console import Console
from study_files import write_study
from typer.testing import CliRunner

import gdlab
from gdlab.cli import app
from gdlab.errors import GdlabError
from gdlab.report import LiveReport, compare_studies, load_study, write_comparison, write_report
from gdlab.report.compare import welch
from gdlab.study import StudyInterrupted, run_study

# The module trains its studies once: under xdist, keep its tests on one worker.
pytestmark = pytest.mark.xdist_group("report_folder")

ROOT = Path(__file__).resolve().parents[1]
PLANNED_RUNS = 24  # 3 lr x 2 momentum x 2 seeds x (scratch, torch)
FIGURES = {"training_loss.png", "validation_accuracy.png", "sensitivity.png", "heatmap.png", "configurations.png",
           "pairs.png"}


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"))


def study_file(folder: Path) -> Path:
    return write_study(folder, seeds=2, implementation="both", lr="[0.05, 0.2, 1e6]", momentum="[0.0, 0.9]")


def without_timing(report: str) -> str:
    """report.md without what differs between two processes running one study: seconds, dates."""
    lines, seconds_column = [], None
    for line in report.splitlines():
        if not line.startswith("|"):
            seconds_column = None  # a table ended
        else:
            cells = line.strip().strip("|").split("|")
            if seconds_column is None and "seconds" in [cell.strip() for cell in cells]:
                seconds_column = [cell.strip() for cell in cells].index("seconds")
            if seconds_column is not None:
                del cells[seconds_column]
                line = "|".join(cells)
        if not line.startswith(("- created:", "Rebuilt at")):
            lines.append(line)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    out = folder / "study"
    run_study(study_file(folder), out_dir=out, backend="sequential", console=quiet(), on_saved=LiveReport(quiet()))
    return out


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> tuple[Path, list[str]]:
    """The study stopped (as by Ctrl-C) after its third job, with the report rebuilt after every job."""
    folder = tmp_path_factory.mktemp("interrupted")
    out = folder / "study"
    live = LiveReport(quiet(), min_interval=0.0, max_share=1.0)
    seen = []

    def save_then_stop(root: Path, done: bool) -> None:
        live(root, done)
        seen.append((root / "report.md").read_text())
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(StudyInterrupted):
        run_study(study_file(folder), out_dir=out, backend="sequential", console=quiet(), on_saved=save_then_stop)
    return out, seen


def test_the_run_writes_report_md_html_and_one_figure_per_kind(finished):
    report = (finished / "report.md").read_text()
    summary = json.loads((finished / "summary.json").read_text())
    selected = summary["selected"]["config_id"]
    assert f"- selected on validation: {selected}" in report
    assert f"| * {selected} | ok |" in report
    assert "| 04_lr=1e+06_mom=0 | diverged (2/2) |" in report.replace("|   ", "| ")
    assert {path.name for path in (finished / "plots").iterdir()} == FIGURES
    for name in FIGURES:
        assert f"](plots/{name})" in report
    html = (finished / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(FIGURES) and "http-equiv" not in html


def test_a_copied_folder_rebuilds_the_report_the_run_wrote(finished, tmp_path):
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(finished, copy)
    for written in ("report.md", "report.html"):
        (copy / written).unlink()
    shutil.rmtree(copy / "plots")
    write_report(copy)
    assert (copy / "report.md").read_text() == (finished / "report.md").read_text()
    assert (copy / "report.html").read_text() == (finished / "report.html").read_text()
    assert (copy / "plots" / "pairs.png").read_bytes() == (finished / "plots" / "pairs.png").read_bytes()


def test_an_interrupted_study_is_reported_as_it_stands(interrupted):
    out, seen = interrupted
    finished_runs = len(list((out / "runs").glob("*.json")))
    assert 0 < finished_runs < PLANNED_RUNS
    progress = [int(re.search(r"unfinished: (\d+) of 24 runs", text).group(1)) for text in seen]
    assert progress == sorted(progress) and progress[-1] == finished_runs and len(set(progress)) == 3
    report = (out / "report.md").read_text()
    assert "## Selection and test" not in report and "selected on validation" not in report
    assert "not run yet" in report  # the configurations still to come are listed
    assert not (out / "summary.json").exists()
    html = (out / "report.html").read_text()
    assert '<meta http-equiv="refresh"' in html  # a browser watching it reloads
    write_report(out)
    assert without_timing((out / "report.md").read_text()) == without_timing(report)


def test_the_result_object_works_on_an_unfinished_study(interrupted):
    out, _ = interrupted
    result = gdlab.load_study(out)
    finished_runs = len(list((out / "runs").glob("*.json")))
    assert not result.finished and result.selected is None
    assert result.progress == f"unfinished: {finished_runs} of {PLANNED_RUNS} runs"
    assert len(result.table()) == finished_runs
    assert isinstance(result.plot("loss"), Figure)
    assert "unfinished" in result._repr_html_()


def test_a_resumed_study_reports_as_an_uninterrupted_one(interrupted, finished, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(interrupted[0], out)
    run_study(study_file(tmp_path), out_dir=out, backend="sequential", resume=True, console=quiet(),
              on_saved=LiveReport(quiet()))
    written_by_the_run = (out / "report.md").read_text()
    assert without_timing(written_by_the_run) == without_timing((finished / "report.md").read_text())
    write_report(out)
    assert (out / "report.md").read_text() == written_by_the_run
    assert "http-equiv" not in (out / "report.html").read_text()


def test_a_summary_older_than_the_runs_on_disk_is_not_trusted(finished, tmp_path):
    copy = tmp_path / "redoing"
    shutil.copytree(finished, copy)
    (copy / "runs" / "00_lr=0.05_mom=0_s1_torch.json").unlink()
    result = load_study(copy)
    assert not result.finished and result.progress == "unfinished: 23 of 24 runs"
    write_report(copy)
    report = (copy / "report.md").read_text()
    assert "summary.json describes other runs than those on disk" in report
    assert "selected on validation" not in report


def test_without_its_study_file_an_unfinished_study_says_its_total_is_unknown(finished, tmp_path):
    copy = tmp_path / "bare"
    shutil.copytree(finished, copy)
    (copy / "summary.json").unlink()
    (copy / "study.toml").unlink()
    result = load_study(copy)
    assert result.progress == ("unfinished: 24 runs finished "
                               "(the planned total is unknown: the folder has no study.toml)")
    assert len(result.configurations()) == 6 and result.name == "bare"  # the folder names it


def test_the_live_report_waits_between_rebuilds_but_always_writes_the_last(finished, tmp_path):
    copy = tmp_path / "live"
    shutil.copytree(finished, copy)
    (copy / "report.md").unlink()
    live = LiveReport(quiet(), min_interval=3600)
    live(copy, False)  # a job saved: too soon to rebuild
    assert not (copy / "report.md").exists()
    live(copy, True)  # the summary is written: always
    assert (copy / "report.md").read_text() == (finished / "report.md").read_text()
    printed = Console(record=True, width=200, file=open(os.devnull, "w"))
    LiveReport(printed, min_interval=0)(tmp_path / "gone", False)  # a failure mid-study is said, not raised
    said = printed.export_text()
    assert "report not rebuilt" in said and "the study goes on" in said
    with pytest.raises(GdlabError, match="not found"):
        LiveReport(quiet())(tmp_path / "gone", True)
    with pytest.raises(GdlabError, match="max_share = 0 must be in"):
        LiveReport(quiet(), max_share=0)


def test_folders_that_hold_no_study_are_refused_by_name(tmp_path):
    with pytest.raises(GdlabError, match="not found"):
        load_study(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GdlabError, match="holds no study: no runs/ folder and no summary.json"):
        write_report(tmp_path / "empty")


def test_the_table_has_a_row_per_run_and_the_hyperparameters_as_columns(finished):
    result = load_study(finished)
    table = result.table()
    summary = json.loads((finished / "summary.json").read_text())
    assert len(table) == PLANNED_RUNS
    for column in ("id", "config_id", "seed", "implementation", "status", "train_accuracy", "val_accuracy",
                   "val_loss", "seconds", "optimizer", "lr", "momentum", "selected"):
        assert column in table.columns
    assert table["id"].tolist() == [run["id"] for run in summary["runs"]]
    assert sorted(table["lr"].unique()) == [0.05, 0.2, 1e6]
    assert (table[table["lr"] == 1e6]["status"] == "diverged").all()
    assert table[table["lr"] == 1e6]["val_accuracy"].isna().all()
    selected_runs = table[table["selected"]]
    assert set(selected_runs["config_id"]) == {summary["selected"]["config_id"]} and len(selected_runs) == 4
    by_configuration = table[(table["implementation"] == "scratch") & (table["status"] == "ok")].groupby(
        "config_id")["val_accuracy"].mean()
    configurations = result.configurations().set_index("config_id")
    assert np.allclose(configurations.loc[by_configuration.index, "val_accuracy"], by_configuration)
    assert configurations.loc[summary["selected"]["config_id"], "selected"]


def test_history_and_every_plot_kind_from_the_folder(finished):
    result = load_study(finished)
    run_id = result.table()["id"][0]
    history = result.history(run_id)
    rows = (finished / "metrics" / f"{run_id}.csv").read_text().splitlines()
    assert len(history.iteration_loss) == len(rows) - 1 and float(rows[1].split(",")[2]) == history.iteration_loss[0]
    assert len(history.epoch_val_accuracy) == 2
    for kind in ("loss", "validation", "sensitivity", "heatmap", "configurations", "pairs"):
        assert isinstance(result.plot(kind), Figure)
    assert result.plot("heatmap")._repr_png_().startswith(b"\x89PNG")  # how a notebook cell shows it
    with pytest.raises(GdlabError, match="needs a finished study with an \\[ablation\\] section"):
        result.plot("ablation")
    with pytest.raises(GdlabError, match="unknown plot kind 'curves'; choose one of loss, validation"):
        result.plot("curves")
    with pytest.raises(GdlabError, match="no finished run 'nope'"):
        result.history("nope")
    html = result._repr_html_()
    assert result.selected["config_id"] in html and "<table>" in html


def test_an_ablation_and_a_rule_comparison_are_in_the_report(tmp_path):
    ablation = write_study(tmp_path, seeds=2, epochs=1, momentum="[0.0, 0.9]", lr="0.1",
                           name="ablation.toml", extra='\n[ablation]\nfactors = ["optimizer.momentum"]\n')
    out = tmp_path / "ablation"
    run_study(ablation, out_dir=out, console=quiet(), on_saved=LiveReport(quiet()))
    report = (out / "report.md").read_text()
    assert "## Ablation" in report and "| momentum: 0.0 - 0.9 |" in report
    figure = load_study(out).plot("ablation")
    effects_axes = figure.axes[0]
    assert len([c for c in effects_axes.containers if isinstance(c, ErrorbarContainer)]) == 1
    assert "ablation.png" in {path.name for path in (out / "plots").iterdir()}

    rules = tmp_path / "rules.toml"
    rules.write_text(write_study(tmp_path, seeds=2, epochs=1, lr="0.1", name="base.toml").read_text().replace(
        'name = "sgd"', "").replace("momentum = 0.0", "")
        + '\n[search]\nkind = "list"\nconfigs = [{name = "sgd", momentum = 0.9}, {name = "adamw", lr = 3e-3}]\n')
    out = tmp_path / "rules"
    run_study(rules, out_dir=out, console=quiet(), on_saved=LiveReport(quiet()))
    report = (out / "report.md").read_text()
    assert "## Rules compared" in report and re.search(r"\| (sgd|adamw) \| 0\d_", report)


def test_welch_matches_its_formula_and_says_when_there_are_too_few_seeds():
    first, second = [0.91, 0.93, 0.92, 0.95], [0.89, 0.90, 0.88]
    p_value, _ = welch(first, second)
    from scipy import stats

    m1, m2, v1, v2 = np.mean(first), np.mean(second), np.var(first, ddof=1) / 4, np.var(second, ddof=1) / 3
    t = (m1 - m2) / np.sqrt(v1 + v2)
    dof = (v1 + v2) ** 2 / (v1 ** 2 / 3 + v2 ** 2 / 2)
    assert p_value == pytest.approx(2 * stats.t.sf(abs(t), dof))
    assert welch([0.9], [0.8, 0.85]) == (None, "too few seeds to test (1 and 2; needs 2 or more each)")


def test_compare_sets_studies_side_by_side_with_their_test_results(finished, tmp_path):
    other = tmp_path / "other"
    run_study(write_study(tmp_path, seeds=2, lr="[0.05]", momentum="0.9"), out_dir=other, console=quiet(),
              on_saved=LiveReport(quiet()))
    running = tmp_path / "running" / "study"
    shutil.copytree(finished, running)
    (running / "summary.json").unlink()
    comparison = compare_studies([finished, other, running])
    labels = [study.label for study in comparison.studies]
    assert labels == [f"tiny ({finished})", "tiny (other)", f"tiny ({running})"]  # one name; folders "study" twice
    summaries = [json.loads((folder / "summary.json").read_text())["selected"] for folder in (finished, other)]
    best, worse = sorted(summaries, key=lambda selected: -selected["test_accuracy"])
    (difference,) = comparison.differences
    assert difference.difference == pytest.approx(worse["test_accuracy"] - best["test_accuracy"])
    assert difference.p_value == pytest.approx(welch(worse["test_accuracies"], best["test_accuracies"])[0])
    rows = comparison.table_rows()
    assert rows[2][2] == "none (unfinished: 24 of 24 runs)"  # no summary yet: no selection, left out of the tests
    path = write_comparison(comparison, tmp_path / "compared")
    text = path.read_text()
    assert "Welch" in text and best["config_id"] in text and "![compare_curves](plots/compare_curves.png)" in text


def test_gdlab_report_and_gdlab_compare_commands(finished, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    (copy / "report.md").unlink()
    result = CliRunner().invoke(app, ["report", str(copy)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "tiny: finished: 24 runs" in result.output and (copy / "report.md").is_file()
    result = CliRunner().invoke(app, ["compare", str(finished), str(copy), "--out", str(tmp_path / "cmp")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "+0.0000" in result.output and "not significant at 0.05" in result.output  # the same study twice
    assert (tmp_path / "cmp" / "compare.html").is_file()
    result = CliRunner().invoke(app, ["compare", str(finished)])
    assert result.exit_code != 0 and "two or more study folders" in str(result.exception)


def test_the_study_package_never_imports_the_report():
    # Data flows study -> folder -> report: the runner must not reach for the analyzer.
    for path in (ROOT / "src" / "gdlab" / "study").glob("*.py"):
        assert not re.search(r"^\s*(from|import) gdlab\.report", path.read_text(), re.M), path
