"""A study's report, from its folder alone: what it found first, then how, then what it ran on.

Finished: the selection and its test result, the configurations, curves,
hyperparameter figures, scratch-vs-torch pairs, rules compared, ablation,
every run, the environment. Unfinished (no current summary.json): how far it
is, and everything the finished runs already show, with no selection.
"""

import datetime

from gdlab.report import tables
from gdlab.report.document import Bullets, Document, Image, Paragraph, Section, Table, png
from gdlab.report.figures import FIGURES
from gdlab.report.folder import StudyRecords

REFRESH_SECONDS = 15
SELECTION_RULE = ("highest mean validation accuracy among configurations with no diverged run; "
                  "test set evaluated for the selected configuration only")


def study_document(records: StudyRecords) -> Document:
    images = _images(records)
    summary = records.summary
    sections = []
    if summary is not None:
        sections.append(Section("Selection and test", [Bullets(
            [*tables.selected_lines(summary), f"rule: {summary['selection']}"])]))
    sections.append(_configurations(records, images))
    sections.append(Section("Training curves", [images[kind] for kind in ("loss", "validation") if kind in images]))
    axes_figures = [images[kind] for kind in ("sensitivity", "heatmap") if kind in images]
    if axes_figures:
        sections.append(Section("Validation accuracy against the hyperparameters", axes_figures))
    pairs = [{"config_id": run.config_id, "seed": run.seed,
              "max_loss_difference": run.record["max_loss_difference"]}
             for run in records.runs if run.implementation == "scratch" and "max_loss_difference" in run.record]
    if pairs:
        sections.append(_pairs(pairs, images))
    if summary is not None and summary.get("rules"):
        sections.append(Section("Rules compared", [
            Paragraph("Each rule's best configuration on validation; its difference from the best rule's, "
                      "paired by seed."),
            Table(tables.RULE_HEADER, tables.rule_rows(summary)),
        ]))
    if summary is not None and summary.get("ablation"):
        sections.append(Section("Ablation", [
            Paragraph("Each factor's effect on test accuracy: the mean of per-seed paired differences between "
                      "its two values, with the 95% t interval and the paired t-test's p."),
            Table(tables.EFFECT_HEADER, tables.effect_rows(summary)),
            *([images["ablation"]] if "ablation" in images else []),
        ]))
    sections.append(Section("Runs", [Table(tables.RUN_HEADER, tables.run_rows([run.record for run in records.runs]),
                                           folded=f"all {len(records.runs)} runs")]))
    if summary is not None and summary.get("environment"):
        environment = summary["environment"]
        sections.append(Section("Environment", [Bullets([f"{key}: {value}" for key, value in environment.items()])]))
    return Document(records.name, _lead(records), sections,
                    refresh_seconds=None if records.finished else REFRESH_SECONDS)


def _images(records: StudyRecords) -> dict[str, Image]:
    images = {}
    for kind, spec in FIGURES.items():
        figure = spec.draw(records)
        if figure is not None:
            images[kind] = Image(spec.file, spec.caption, png(figure))
    return images


def _lead(records: StudyRecords) -> list:
    summary = records.summary
    lead = [Paragraph(records.description)] if records.description else []
    if summary is None:
        lead.append(Paragraph(
            f"**{records.progress}**. Nothing is selected and the test set is not touched until every run "
            f"has finished; the figures and tables below show the runs finished so far. `gdlab run` rewrites "
            f"this report as runs finish (this page reloads itself); `gdlab report DIR` rebuilds it from the "
            f"folder at any time; `gdlab run SPEC --out DIR --resume` continues an interrupted study."))
        lead.append(Paragraph(f"Rebuilt at {datetime.datetime.now().isoformat(timespec='seconds')}."))
        if records.dataset:
            lead.append(Paragraph(f"Data: {records.dataset} (example counts come with the summary)."))
    else:
        data = summary["data"]
        lead.append(Paragraph(
            f"Data: {data['dataset']} ({', '.join(data['classes'])}), {data['train_examples']} train / "
            f"{data['val_examples']} validation / {data['test_examples']} test examples, from {data['source']}."))
        lead.append(Paragraph(
            f"{len(summary['runs'])} runs, {summary['seeds']} seed(s) per configuration, "
            f"backend {summary['backend']}."))
    if records.notes:
        lead.append(Bullets(records.notes))
    return lead


def _configurations(records: StudyRecords, images: dict[str, Image]) -> Section:
    pseudo = {"configurations": records.configurations(), "selected": (records.summary or {}).get("selected")}
    rows = tables.configuration_rows(pseudo)
    selected = records.selected_config_id
    highlight = next((index for index, row in enumerate(pseudo["configurations"]) if row["id"] == selected), None)
    blocks = [
        Table(tables.CONFIGURATION_HEADER, rows, highlight=highlight),
        Paragraph("Mean over seeds with the 95% Student-t interval; a diverged run has no accuracy and its "
                  "configuration cannot be selected."
                  + (" * marks the selected configuration." if selected else "")),
    ]
    if "configurations" in images:
        blocks.append(images["configurations"])
    return Section("Configurations", blocks)


def _pairs(pairs: list[dict], images: dict[str, Image]) -> Section:
    differences = [pair["max_loss_difference"] for pair in pairs]
    finite = [difference for difference in differences if difference is not None]
    worst = f"{max(finite):.3g}" if finite else "-"
    text = f"Largest per-iteration training-loss difference over {len(pairs)} pair(s): {worst}."
    if None in differences:
        text += f" {differences.count(None)} pair(s) diverged, where the difference is not defined."
    blocks = [Paragraph(text), Table(tables.PAIR_HEADER, tables.pair_rows(pairs))]
    if "pairs" in images:
        blocks.append(images["pairs"])
    return Section("Scratch rule vs torch.optim", blocks)
