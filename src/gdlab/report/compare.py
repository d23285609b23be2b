"""Studies side by side: each one's configuration selected on validation, with its test result.

Which differences can be told from noise: each study's per-seed test
accuracies against the best study's, by Welch's t-test (unequal variances;
the seeds of two studies are not paired: they share no initialization or
batches unless the studies do). With fewer than two seeds on either side
there is no test, and the table says so instead of a p-value. No correction
for comparing several studies is made; the table says how many tests there are.
"""

from dataclasses import dataclass
from pathlib import Path

from gdlab.errors import GdlabError
from gdlab.report import plots
from gdlab.report.document import Bullets, Document, Image, Paragraph, Section, Table, png
from gdlab.report.folder import StudyRecords, read_study

SIGNIFICANCE = 0.05


@dataclass
class StudyRow:
    label: str
    records: StudyRecords

    @property
    def selected(self) -> dict | None:
        return (self.records.summary or {}).get("selected")

    @property
    def test_accuracies(self) -> list[float]:
        return [value for value in (self.selected or {}).get("test_accuracies", []) if value is not None]


@dataclass
class Difference:
    label: str  # the study set against the best
    difference: float  # its mean test accuracy minus the best study's
    p_value: float | None
    verdict: str


@dataclass
class Comparison:
    studies: list[StudyRow]
    best: StudyRow | None
    differences: list[Difference]

    def table_rows(self) -> list[list[str]]:
        rows = []
        for study in self.studies:
            selected = study.selected
            if selected is None:
                reason = study.records.progress if not study.records.finished else (
                    study.records.summary.get("selected_reason", "nothing selected"))
                rows.append([study.label, study.records.dataset or "-", f"none ({reason})", "-", "-", "-"])
                continue
            low, high = selected["test_accuracy_ci"]
            interval = "-" if low is None else f"{low:.4f} to {high:.4f}"
            rows.append([study.label, study.records.dataset or "-", selected["config_id"],
                         _number(selected["val_accuracy"]), f"{_number(selected['test_accuracy'])} ({interval})",
                         str(len(study.test_accuracies))])
        return rows

    def difference_rows(self) -> list[list[str]]:
        return [[d.label, f"{d.difference:+.4f}", "-" if d.p_value is None else f"{d.p_value:.2g}", d.verdict]
                for d in self.differences]


STUDY_HEADER = ["study", "data", "selected on validation", "val acc", "test acc (95% CI)", "seeds"]
DIFFERENCE_HEADER = ["study", "test acc - best's", "p (Welch t)", "verdict"]


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _labels(records: list[StudyRecords]) -> list[str]:
    """Study names; where two studies share one, with their folder's name, or its path when that too is shared."""
    names = [record.name for record in records]
    folder_names = [record.root.name for record in records]
    labels = []
    for name, record in zip(names, records):
        if names.count(name) == 1:
            labels.append(name)
        else:
            where = record.root.name if folder_names.count(record.root.name) == 1 else str(record.root)
            labels.append(f"{name} ({where})")
    return labels


def welch(first: list[float], second: list[float]) -> tuple[float | None, str]:
    """Welch's two-sided t-test p-value, or None with the reason there is none."""
    if len(first) < 2 or len(second) < 2:
        return None, f"too few seeds to test ({len(first)} and {len(second)}; needs 2 or more each)"
    from scipy import stats

    if max(first) == min(first) and max(second) == min(second):
        if first[0] == second[0]:
            return 1.0, "equal on every seed"
        return None, "every seed scored the same within each study: a t-test is undefined"
    return float(stats.ttest_ind(first, second, equal_var=False).pvalue), ""


def compare_studies(folders: list[str | Path]) -> Comparison:
    if len(folders) < 2:
        raise GdlabError(f"compare needs two or more study folders, got {len(folders)}: gdlab compare DIR DIR ...")
    records = [read_study(folder) for folder in folders]
    studies = [StudyRow(label, record) for label, record in zip(_labels(records), records)]
    tested = [study for study in studies if study.selected and study.selected.get("test_accuracy") is not None]
    best = max(tested, key=lambda study: study.selected["test_accuracy"], default=None)
    differences = []
    for study in tested:
        if study is best:
            continue
        p_value, reason = welch(study.test_accuracies, best.test_accuracies)
        if p_value is None:
            verdict = reason
        elif p_value < SIGNIFICANCE:
            verdict = f"significant at {SIGNIFICANCE:g}"
        else:
            verdict = f"not significant at {SIGNIFICANCE:g}" + (f" ({reason})" if reason else "")
        differences.append(Difference(study.label, study.selected["test_accuracy"] - best.selected["test_accuracy"],
                                      p_value, verdict))
    return Comparison(studies, best, differences)


def _best_curves(study: StudyRow) -> plots.Curves | None:
    selected = study.selected
    if selected is None:
        return None
    runs = study.records.configuration_runs().get(selected["config_id"], [])
    return plots.Curves(
        label=f"{study.label}: {selected['config_id']}",
        losses=[run.iteration_loss for run in runs],
        val_accuracy=[run.epoch_values("val_accuracy") for run in runs],
        diverged=[run.diverged for run in runs],
        score=selected["val_accuracy"],
    )


def comparison_document(comparison: Comparison) -> Document:
    lead = [Paragraph("Each study's configuration selected on its own validation set, and that configuration's "
                      "test accuracy over its seeds.")]
    datasets = {study.records.dataset for study in comparison.studies}
    if len(datasets) > 1:
        lead.append(Paragraph("**The studies use different data** (" + ", ".join(sorted(map(str, datasets)))
                              + "): their test accuracies are on different test sets."))
    sections = [Section("Studies", [Table(STUDY_HEADER, comparison.table_rows())])]
    if comparison.best is not None:
        blocks = [Paragraph(f"Best test accuracy: {comparison.best.label}. Each other study's per-seed test "
                            f"accuracies against it, by Welch's t-test (two-sided, unequal variances); "
                            f"{len(comparison.differences)} test(s), no correction for multiple comparisons.")]
        if comparison.differences:
            blocks.append(Table(DIFFERENCE_HEADER, comparison.difference_rows()))
        sections.append(Section("Differences", blocks))
    curves = [found for found in map(_best_curves, comparison.studies) if found is not None]
    if curves:
        figure = plots.curves_side_by_side(curves, "each study's selected configuration")
        sections.append(Section("Curves", [Image("compare_curves.png", "Training loss (smoothed) and validation "
                                                 "accuracy of each study's selected configuration.", png(figure))]))
    sections.append(Section("Folders", [Bullets([f"{study.label}: {study.records.root} "
                                                 f"({study.records.progress})" for study in comparison.studies])]))
    return Document("studies compared", lead, sections)


def write_comparison(comparison: Comparison, out_dir: str | Path) -> Path:
    """``compare.md``, ``compare.html`` and ``plots/compare_curves.png`` in ``out_dir``; returns compare.md."""
    from gdlab.report.write import write_document

    out_dir = Path(out_dir)
    if (out_dir / "runs").is_dir():
        raise GdlabError(f"{out_dir} is a study folder; give compare another --out, e.g. {out_dir.parent / 'compare'}")
    return write_document(comparison_document(comparison), out_dir, "compare")

