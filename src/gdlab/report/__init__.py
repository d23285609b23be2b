"""Results people can read: plots, tables and a report.md in the study folder."""

from pathlib import Path

from gdlab.report import plots
from gdlab.report.tables import (
    CONFIGURATION_HEADER,
    EFFECT_HEADER,
    RULE_HEADER,
    configuration_rows,
    effect_rows,
    rule_rows,
    markdown_table,
    rich_tables,
    selected_lines,
)


def write_report(out_dir: str | Path, summary: dict, histories: dict) -> Path:
    """Plots under ``plots/`` and ``report.md``; returns the report's path."""
    out_dir = Path(out_dir)
    figures = [
        plots.plot_training_loss(histories, out_dir / "plots" / "training_loss.png"),
        plots.plot_validation(histories, out_dir / "plots" / "validation_accuracy.png"),
        plots.plot_configurations(
            summary["configurations"],
            out_dir / "plots" / "configurations.png",
            (summary.get("selected") or {}).get("config_id"),
        ),
    ]
    run_ids = {(run["config_id"], run["seed"], run["implementation"]): run["id"] for run in summary["runs"]}
    for pair in summary.get("pairs", []):
        scratch = run_ids[(pair["config_id"], pair["seed"], "scratch")]
        reference = run_ids[(pair["config_id"], pair["seed"], "torch")]
        figures.append(
            plots.plot_pair(
                histories[scratch], histories[reference], out_dir / "plots" / f"pair_{scratch}.png", pair["config_id"]
            )
        )
    lines = [f"# {summary['experiment']}", ""]
    if summary.get("description"):
        lines += [summary["description"], ""]
    data = summary["data"]
    lines += [
        f"Data: {data['dataset']} ({', '.join(data['classes'])}), {data['train_examples']} train / "
        f"{data['val_examples']} validation / {data['test_examples']} test examples, from {data['source']}.",
        f"{len(summary['runs'])} runs, {summary['seeds']} seed(s) per configuration, backend {summary['backend']}.",
        "",
        "## Configurations",
        "",
        markdown_table(CONFIGURATION_HEADER, configuration_rows(summary)),
        "",
        "Mean over seeds with the 95% Student-t interval; a diverged run has no accuracy and its "
        "configuration cannot be selected.",
        "",
        "## Selection and test",
        "",
        *[f"- {line}" for line in selected_lines(summary)],
        f"- rule: {summary['selection']}",
        "",
    ]
    if summary.get("pairs"):
        worst = max(pair["max_loss_difference"] for pair in summary["pairs"])
        lines += [
            "## Scratch rule vs torch.optim",
            "",
            f"Largest per-iteration training-loss difference over {len(summary['pairs'])} pair(s): {worst:.3g}.",
            "",
        ]
    if summary.get("rules"):
        lines += [
            "## Rules compared",
            "",
            "Each rule's best configuration on validation; its difference from the best rule's, paired by seed.",
            "",
            markdown_table(RULE_HEADER, rule_rows(summary)),
            "",
        ]
    if summary.get("ablation"):
        lines += [
            "## Ablation",
            "",
            markdown_table(EFFECT_HEADER, effect_rows(summary)),
            "",
        ]
    lines += ["## Figures", ""] + [f"![{figure.stem}](plots/{figure.name})" for figure in figures] + [""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


__all__ = ["plots", "rich_tables", "write_report"]
