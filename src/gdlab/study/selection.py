"""Choosing on validation, testing once.

Runs are grouped into configurations and summarized over seeds (mean and 95%
interval). The selected configuration has the highest mean validation
accuracy among those whose every seed trained without diverging: a setting
that turns to NaN on some seeds is not a candidate, whatever its other seeds
scored. Only the selected configuration's runs are evaluated on the test set.

An ablation compares *arms* (the combinations of its factors' two values).
Arms are fixed before training, so each arm's best configuration (on
validation, when other axes vary too) is tested; a factor's effect is the
per-seed paired difference of test accuracy between its two values.
"""

from collections.abc import Callable
from dataclasses import dataclass

from gdlab.study.search import Configuration, RunPlan
from gdlab.study.spec import Study
from gdlab.study.stats import MeanCI, mean_ci, paired_effect


@dataclass
class ConfigurationResult:
    configuration: Configuration
    plans: list[RunPlan]  # the runs this configuration is judged by, one per seed
    records: list[dict]

    @property
    def n_diverged(self) -> int:
        return sum(record["status"] == "diverged" for record in self.records)

    @property
    def status(self) -> str:
        if self.n_diverged == 0:
            return "ok"
        return "diverged" if self.n_diverged == len(self.records) else "partly diverged"

    def metric(self, name: str) -> MeanCI:
        return mean_ci([record[name] for record in self.records if record["status"] == "ok"])

    def to_dict(self) -> dict:
        return {
            "id": self.configuration.id,
            "config": self.plans[0].config(),
            "run_ids": [plan.id for plan in self.plans],
            "status": self.status,
            "n_runs": len(self.records),
            "n_diverged": self.n_diverged,
            "val_accuracy": self.metric("val_accuracy").to_dict(),
            "val_loss": self.metric("val_loss").to_dict(),
            "train_accuracy": self.metric("train_accuracy").to_dict(),
            "seconds": sum(record["seconds"] for record in self.records),
        }


def summarize_configurations(plans: list[RunPlan], records: dict[str, dict]) -> list[ConfigurationResult]:
    """Group runs by configuration; with scratch/torch pairs the scratch runs stand for it."""
    grouped: dict[str, ConfigurationResult] = {}
    for plan in plans:
        paired = plan.settings.optimizer.implementation == "both"
        if paired and plan.implementation != "scratch":
            continue
        result = grouped.setdefault(plan.configuration.id, ConfigurationResult(plan.configuration, [], []))
        result.plans.append(plan)
        result.records.append(records[plan.id])
    return list(grouped.values())


def select_best(results: list[ConfigurationResult]) -> ConfigurationResult | None:
    candidates = [result for result in results if result.status == "ok"]
    if not candidates:
        return None
    return max(candidates, key=lambda result: (result.metric("val_accuracy").mean, -result.configuration.index))


RunOnTest = Callable[[RunPlan], dict]  # a run's plan -> {"loss", "accuracy"} on the test set


def evaluate_on_test(result: ConfigurationResult, test_run: RunOnTest) -> dict:
    """Evaluate every seed of one configuration on the test set: per-seed figures and mean ± CI."""
    figures = [test_run(plan) for plan in result.plans]
    accuracies = [figure["accuracy"] for figure in figures]
    losses = [figure["loss"] for figure in figures]
    accuracy, loss = mean_ci(accuracies), mean_ci(losses)
    return {
        "id": result.plans[0].id,
        "config_id": result.configuration.id,
        "config": result.plans[0].config(),
        "run_ids": [plan.id for plan in result.plans],
        "seeds": [plan.seed for plan in result.plans],
        "val_accuracy": result.metric("val_accuracy").mean,
        "test_accuracy": accuracy.mean,
        "test_loss": loss.mean,
        "test_accuracy_ci": [accuracy.ci_low, accuracy.ci_high],
        "test_loss_ci": [loss.ci_low, loss.ci_high],
        "test_accuracies": accuracies,
        "test_losses": losses,
    }


def _factor_levels(values: list) -> list:
    """Switches compare on against off, whatever order the file lists them in."""
    if all(isinstance(value, bool) for value in values):
        return sorted(values, reverse=True)
    return list(values)


def ablation(study: Study, results: list[ConfigurationResult], tested: dict[str, dict], test_result) -> dict:
    """Test every arm's best configuration and estimate each factor's effect, paired by seed.

    ``tested`` caches test figures by configuration id (the selected one may
    already be there); ``test_result(result)`` evaluates one configuration.
    """
    factors = study.ablation.factors
    arms: dict[tuple, list[ConfigurationResult]] = {}
    for result in results:
        key = tuple(result.configuration.settings.get(factor) for factor in factors)
        arms.setdefault(key, []).append(result)
    arm_rows, arm_tests = [], {}
    for key, members in arms.items():
        best = select_best(members)
        row = {"levels": dict(zip(factors, key)), "config_id": best.configuration.id if best else None}
        if best is not None:
            if best.configuration.id not in tested:
                tested[best.configuration.id] = test_result(best)
            test = tested[best.configuration.id]
            arm_tests[key] = test
            row.update(
                test_accuracy=test["test_accuracy"],
                test_accuracy_ci=test["test_accuracy_ci"],
                val_accuracy=test["val_accuracy"],
            )
        else:
            row["status"] = "diverged"
        arm_rows.append(row)

    effects = []
    for position, factor in enumerate(factors):
        first, second = _factor_levels(study.axes[factor])
        with_first, with_second = [], []
        for key, test in arm_tests.items():
            if key[position] != first:
                continue
            twin = key[:position] + (second,) + key[position + 1 :]
            if twin not in arm_tests:
                continue
            by_seed = dict(zip(arm_tests[twin]["seeds"], arm_tests[twin]["test_accuracies"]))
            for seed, accuracy in zip(test["seeds"], test["test_accuracies"]):
                if seed in by_seed:
                    with_first.append(accuracy)
                    with_second.append(by_seed[seed])
        effect = paired_effect(with_first, with_second)
        effects.append({"factor": factor, "first": first, "second": second, **effect.to_dict()})
    return {"factors": factors, "arms": arm_rows, "effects": effects}


def compare_rules(results: list[ConfigurationResult]) -> list[dict] | None:
    """With more than one rule in the study: each rule's best configuration on validation, its
    validation accuracy with its interval, and its difference from the winning rule's best,
    paired by seed (the seeds share initialization and batch order). None for a one-rule study.

    Judged on validation only, as selection is: the test set stays for the selected configuration.
    """
    by_rule: dict[str, list[ConfigurationResult]] = {}
    for result in results:
        by_rule.setdefault(result.configuration.settings.optimizer.name, []).append(result)
    if len(by_rule) < 2:
        return None
    best = {rule: select_best(members) for rule, members in by_rule.items()}
    ranked = sorted(
        (rule for rule in best if best[rule] is not None),
        key=lambda rule: -best[rule].metric("val_accuracy").mean,
    )
    winner = best[ranked[0]] if ranked else None
    rows = []
    for rule in ranked + [rule for rule in best if best[rule] is None]:
        result = best[rule]
        row: dict = {"rule": rule, "config_id": result.configuration.id if result else None}
        if result is None:
            row["status"] = "every configuration diverged"
        else:
            row["val_accuracy"] = result.metric("val_accuracy").to_dict()
            if result is not winner:
                row["difference_from_best"] = _paired_by_seed(winner, result).to_dict()
        rows.append(row)
    return rows


def _paired_by_seed(first: ConfigurationResult, second: ConfigurationResult):
    second_by_seed = {plan.seed: record for plan, record in zip(second.plans, second.records)}
    pairs = [
        (record["val_accuracy"], second_by_seed[plan.seed]["val_accuracy"])
        for plan, record in zip(first.plans, first.records)
        if plan.seed in second_by_seed and record["status"] == second_by_seed[plan.seed]["status"] == "ok"
    ]
    return paired_effect([a for a, _ in pairs], [b for _, b in pairs])
