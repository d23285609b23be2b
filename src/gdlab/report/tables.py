"""Result tables of a study, for the terminal (rich) and for report.md (markdown)."""

from rich import box
from rich.table import Table


def _mean_ci(figures: dict | None, digits: int = 3) -> str:
    if not figures or figures.get("mean") is None:
        return "-"
    if figures.get("ci_low") is None:
        return f"{figures['mean']:.{digits}f}"
    half_width = (figures["ci_high"] - figures["ci_low"]) / 2
    return f"{figures['mean']:.{digits}f} ± {half_width:.{digits}f}"


def _number(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mean(figures: dict | None, digits: int = 3) -> str:
    return "-" if not figures or figures.get("mean") is None else f"{figures['mean']:.{digits}f}"


def configuration_rows(summary: dict, intervals_for_all: bool = True) -> list[list[str]]:
    """One row per configuration; the terminal shows the interval of validation accuracy only."""
    secondary = _mean_ci if intervals_for_all else _mean
    selected = (summary.get("selected") or {}).get("config_id")
    rows = []
    for configuration in summary["configurations"]:
        status = configuration["status"]
        if configuration["n_diverged"]:
            status = f"{status} ({configuration['n_diverged']}/{configuration['n_runs']})"
        planned = configuration.get("runs_planned")  # an unfinished study: seeds finished so far
        if planned and 0 < configuration["n_runs"] < planned:
            status = f"{status}, {configuration['n_runs']} of {planned} seeds"
        rows.append(
            [
                ("* " if configuration["id"] == selected else "  ") + configuration["id"],
                status,
                secondary(configuration["train_accuracy"]),
                _mean_ci(configuration["val_accuracy"]),
                secondary(configuration["val_loss"]),
                f"{configuration['seconds']:.1f}",
            ]
        )
    return rows


CONFIGURATION_HEADER = ["configuration", "status", "train acc", "val acc ± 95% CI", "val loss", "seconds"]


def pair_rows(pairs: list[dict]) -> list[list[str]]:
    """One row per paired configuration: how many seed pairs, and the largest per-iteration loss
    difference between the scratch rule and torch.optim over them (``-``: one of a pair diverged)."""
    by_configuration: dict[str, list] = {}
    for pair in pairs:
        by_configuration.setdefault(pair["config_id"], []).append(pair["max_loss_difference"])
    rows = []
    for config_id, differences in by_configuration.items():
        largest = "-" if None in differences else f"{max(differences):.3g}"
        rows.append([config_id, str(len(differences)), largest])
    return rows


PAIR_HEADER = ["configuration", "seed pairs", "max |Δloss| per iteration"]


def run_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for record in records:
        status = record["status"]
        if status == "diverged" and record.get("diverged_at_iteration") is not None:
            status = f"diverged at iteration {record['diverged_at_iteration']}"
        rows.append([record["id"], str(record["seed"]), record["implementation"], status,
                     _number(record["train_accuracy"]), _number(record["val_accuracy"]),
                     _number(record["val_loss"]), f"{record['seconds']:.1f}"])
    return rows


RUN_HEADER = ["run", "seed", "implementation", "status", "train acc", "val acc", "val loss", "seconds"]


def selected_lines(summary: dict) -> list[str]:
    selected = summary.get("selected")
    if not selected:
        return [f"nothing selected: {summary.get('selected_reason', 'no configuration finished')}"]
    ci = selected["test_accuracy_ci"]
    interval = f" (95% CI {ci[0]:.4f} to {ci[1]:.4f})" if ci[0] is not None else ""
    return [
        f"selected on validation: {selected['config_id']} (val acc {_number(selected['val_accuracy'])})",
        f"test accuracy {_number(selected['test_accuracy'])}{interval}, test loss {_number(selected['test_loss'])}"
        f" over {len(selected['run_ids'])} seed(s)",
    ]


def _level(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def effect_rows(summary: dict) -> list[list[str]]:
    rows = []
    for effect in summary.get("ablation", {}).get("effects", []):
        interval = "-" if effect["ci_low"] is None else f"{effect['ci_low']:+.3f} to {effect['ci_high']:+.3f}"
        rows.append(
            [
                f"{effect['factor'].split('.')[-1]}: {_level(effect['first'])} - {_level(effect['second'])}",
                "-" if effect["effect"] is None else f"{effect['effect']:+.3f}",
                interval,
                "-" if effect["p_value"] is None else f"{effect['p_value']:.2g}",
                str(effect["n_pairs"]),
            ]
        )
    return rows


EFFECT_HEADER = ["factor: levels compared", "effect", "95% CI", "p (paired t)", "pairs"]


def _rule_label(rule: str) -> str:
    return rule.rpartition(":")[2] if ":" in rule else rule  # a user's file.py:Class by its class


def rule_rows(summary: dict, short_ids: bool = False) -> list[list[str]]:
    """One row per rule of a multi-rule study, best first: its best configuration on validation,
    that configuration's validation accuracy, and how far below the winner it is, paired by seed
    (with the interval of that gap and the paired t-test's p). ``short_ids``: the configuration's
    number only, for an 80-column terminal (the configurations table above gives the whole id)."""
    rows = []
    for row in summary.get("rules") or []:
        difference = row.get("difference_from_best")
        if difference is None or difference["effect"] is None:
            behind, p_value = ("best" if "val_accuracy" in row else "-"), "-"
        else:
            behind = f"{-difference['effect']:+.3f}"
            if difference["ci_low"] is not None:
                behind += f" ({-difference['ci_high']:+.3f} to {-difference['ci_low']:+.3f})"
            p_value = "-" if difference["p_value"] is None else f"{difference['p_value']:.2g}"
        config_id = row.get("config_id")
        if config_id and short_ids:
            config_id = config_id.split("_", 1)[0]
        rows.append([_rule_label(row["rule"]), config_id or row.get("status", "-"),
                     _mean_ci(row.get("val_accuracy")), behind, p_value])
    return rows


RULE_HEADER = ["rule", "best configuration", "val acc ± 95% CI", "vs best (95% CI)", "p (paired t)"]


def rich_tables(summary: dict) -> list[Table]:
    # A light box leaves room for long configuration ids in an 80-column terminal.
    table = Table(title=f"{summary['experiment']}: configurations (* = selected)", box=box.SIMPLE_HEAD)
    # Seconds are left to report.md: every column counts in an 80-column terminal.
    for column in ("configuration", "status", "train acc", "val acc ± CI", "val loss"):
        table.add_column(column, justify="left" if column in ("configuration", "status") else "right",
                         no_wrap=column != "status", min_width=6 if column == "status" else None)
    for row in configuration_rows(summary, intervals_for_all=False):
        style = "red" if row[1].startswith(("diverged", "partly")) else None
        table.add_row(*row[:5], style=style)
    tables = [table]
    if summary.get("rules"):
        rules = Table(title="rules compared: each rule's best on validation, paired by seed", box=box.SIMPLE_HEAD)
        # Short headers: five columns in 80 (the markdown report has the long ones).
        for column in ("rule", "cfg", "val acc ± CI", "vs best (95% CI)", "p"):
            rules.add_column(column, no_wrap=True)
        for row in rule_rows(summary, short_ids=True):
            rules.add_row(*row)
        tables.append(rules)
    if summary.get("ablation"):
        effects = Table(title="ablation: each factor's effect on test accuracy, paired by seed", box=box.SIMPLE_HEAD)
        for column in EFFECT_HEADER:
            effects.add_column(column, no_wrap=True)
        for row in effect_rows(summary):
            effects.add_row(*row)
        tables.append(effects)
    return tables


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)
