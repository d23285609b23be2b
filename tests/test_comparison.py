"""One vocabulary for the three comparisons: `gdlab check`, `gdlab.gradcheck` and `gdlab verify`.

Each report states its result as a `gdlab.comparison.Comparison`, and its JSON holds the shared
keys with the same meaning: ``tolerance`` is the largest ``measured`` value that passes, so a
pass measures at most its tolerance and a failure beyond it measures more. The reports here come
from code as users write it (a notebook update step, a subclassed backward pass, an optimizer
class), run through the real comparisons.
"""

import functools
import json

import pytest
import torch
from typer.testing import CliRunner

from gdlab import optim
from gdlab.backprop import MLP as ScratchBackpropMLP
from gdlab.check import check
from gdlab.check.report import cannot_check_json
from gdlab.cli import app
from gdlab.comparison import Comparison, Kind, Tolerance, Verdict
from gdlab.errors import GdlabError
from gdlab.gradcheck import check_mlp_backward
from gdlab.optim import functional
from gdlab.verify import BACKPROP_RTOL, RULE_CRITERION, VerifyRow, compare_backward, compare_rule, run_verify, to_json

SHARED_KEYS = ("verdict", "kind", "cause", "evidence", "criterion", "tolerance", "measured")
TORCH_SGD = functools.partial(torch.optim.SGD, foreach=False)


def read_alike(document: dict, passed: bool) -> dict:
    """The shared keys of one report's JSON, checked for what they mean in every report."""
    json.dumps(document, allow_nan=False)  # plain JSON: no NaN or infinity anywhere
    assert set(SHARED_KEYS) <= set(document)
    assert document["verdict"] == ("pass" if passed else "fail")
    assert document["kind"] in {"none", "variant", "bug"}
    assert isinstance(document["criterion"], str) and document["criterion"]
    if passed:
        assert document["measured"] <= document["tolerance"]
    else:
        assert document["cause"]
        assert document["measured"] is None or document["measured"] > document["tolerance"]
    return {key: document[key] for key in SHARED_KEYS}


# --- the vocabulary itself ---------------------------------------------------------------------


def test_verdicts_and_kinds_are_the_documented_words_and_anything_else_is_refused_by_name():
    assert [verdict.value for verdict in Verdict] == ["pass", "fail", "cannot_check"]
    assert [kind.value for kind in Kind] == ["none", "variant", "bug"]
    assert [Verdict(word).exit_code for word in ("pass", "fail", "cannot_check")] == [0, 1, 2]
    assert Comparison("fail", "variant").kind is Kind.VARIANT
    with pytest.raises(ValueError, match="Comparison verdict 'ok' is not one of pass, fail, cannot_check"):
        Comparison("ok")
    with pytest.raises(ValueError, match="Comparison kind 'mistake' is not one of none, variant, bug"):
        Comparison("fail", "mistake")


def test_a_tolerance_admits_up_to_its_limit_and_never_nan():
    exact = Tolerance("torch.equal")
    assert exact.admits(0.0) and not exact.admits(1e-300)
    relative = Tolerance("relative difference <= 1e-09", 1e-9)
    assert relative.admits(1e-9) and not relative.admits(1.1e-9) and not relative.admits(float("nan"))
    with pytest.raises(ValueError, match="limit must be a number >= 0.*got -1"):
        Tolerance("relative difference", -1)


def test_a_measured_value_json_cannot_hold_is_null():
    document = Comparison("fail", "bug", "shapes differ", tolerance=Tolerance("torch.equal"),
                          measured=float("inf")).to_json()
    assert document["measured"] is None
    json.dumps(document, allow_nan=False)


# --- gdlab check -------------------------------------------------------------------------------


def sgd_step(model, lr=0.05):
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def sgd_step_uphill(model, lr=0.05):
    with torch.no_grad():
        for p in model.parameters():
            p += lr * p.grad


def test_check_states_its_result_in_the_shared_words():
    passed = check(sgd_step)
    shared = read_alike(passed.to_json(), passed=True)
    assert shared["tolerance"] == passed.tolerance == 8 * torch.finfo(torch.float32).eps
    assert shared["measured"] == passed.max_relative_difference
    assert "8 eps" in shared["criterion"] and "float32" in shared["criterion"]
    assert passed.comparison.exit_code == passed.exit_code == 0

    failed = check(sgd_step_uphill)
    shared = read_alike(failed.to_json(), passed=False)
    assert (shared["kind"], shared["cause"], shared["evidence"]) == (failed.kind, failed.cause, failed.evidence)
    assert failed.to_json()["parameter"] == failed.first_divergence.parameter
    assert failed.comparison.exit_code == failed.exit_code == 1


def test_code_that_cannot_be_checked_has_the_shared_keys_and_nothing_measured():
    document = cannot_check_json("my_rules.py has no function 'train_sgdd'")
    assert {key: document[key] for key in SHARED_KEYS} == {
        "verdict": "cannot_check", "kind": "none", "cause": "my_rules.py has no function 'train_sgdd'",
        "evidence": None, "criterion": None, "tolerance": None, "measured": None,
    }
    assert document["exit_code"] == 2


# --- gdlab.gradcheck ---------------------------------------------------------------------------


class SummedMSE(ScratchBackpropMLP):
    """Written for the squared error summed over the batch: right, for another loss."""

    def backward(self, y_true, y_pred, loss="mse"):
        return [(dW * len(y_pred), db * len(y_pred)) for dW, db in super().backward(y_true, y_pred, loss=loss)]


class FirstLayerUphill(ScratchBackpropMLP):
    """The first layer's weight gradient with its sign flipped: a bug."""

    def backward(self, y_true, y_pred, loss="mse"):
        (dW, db), *rest = super().backward(y_true, y_pred, loss=loss)
        return [(-dW, db), *rest]


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=generator), torch.randn(8, 3, generator=generator)


def test_gradcheck_states_its_result_in_the_shared_words(batch):
    x, y = batch
    right = check_mlp_backward(ScratchBackpropMLP([5, 4, 3], activation="tanh"), x, y, loss="mse")
    document = right.to_json()
    shared = read_alike(document, passed=True)
    assert right.ok and (document["outcome"], shared["kind"]) == ("ok", "none")
    assert shared["tolerance"] == right.rtol
    every_error = [row.max_rel_error for report in (right, right.finite_differences) for row in report.comparisons]
    assert shared["measured"] == max(every_error)
    assert [row["name"] for row in document["tensors"]] == [row.name for row in right.comparisons]
    assert document["finite_differences"]["reference"] == "finite differences"
    assert document["parameter"] is None and document["exit_code"] == 0


def test_gradcheck_calls_another_reduction_a_variant_and_a_sign_error_a_bug(batch):
    x, y = batch
    summed = check_mlp_backward(SummedMSE([5, 4, 3], activation="tanh"), x, y, loss="mse")
    document = summed.to_json()
    # Right for the summed loss: nothing measured is beyond the tolerance, and still not a pass.
    assert (document["verdict"], document["kind"], document["outcome"]) == ("fail", "variant", "other_reduction")
    assert document["measured"] <= document["tolerance"]
    assert document["cause"] == summed.reduction.message
    assert document["reduction"]["factor"] == pytest.approx(len(x))

    flipped = check_mlp_backward(FirstLayerUphill([5, 4, 3], activation="tanh"), x, y, loss="mse")
    document = flipped.to_json()
    shared = read_alike(document, passed=False)
    assert (shared["kind"], document["outcome"], document["parameter"]) == ("bug", "mismatch", "layers.0.weight")
    assert "sign" in shared["cause"]
    assert shared["evidence"].startswith("1 of 4 tensors beyond the tolerance against autograd: layers.0.weight")
    assert document["exit_code"] == 1


# --- gdlab verify ------------------------------------------------------------------------------


class MomentumNeverAppliedSGD(optim.SGD):
    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = self.params_with_grad(group)
            functional.sgd(params, [p.grad for p in params], [], lr=group["lr"], weight_decay=group["weight_decay"],
                           momentum=0.0, dampening=0.0, nesterov=False, maximize=group["maximize"])


def test_verify_rows_state_their_result_in_the_shared_words():
    settings = [{"lr": 0.05, "momentum": 0.9}]
    exact = compare_rule("SGD", optim.SGD, TORCH_SGD, settings, steps=5)
    shared = read_alike(exact.to_json(), passed=True)
    assert (shared["criterion"], shared["tolerance"], shared["measured"]) == (RULE_CRITERION, 0.0, 0.0)

    broken = compare_rule("momentum never applied", MomentumNeverAppliedSGD, TORCH_SGD, settings, steps=5)
    shared = read_alike(broken.to_json(), passed=False)
    assert (shared["kind"], shared["cause"]) == ("bug", broken.first_mismatch)
    assert shared["measured"] == broken.max_difference

    backward = compare_backward(lambda sizes, activation: SummedMSE(sizes, activation=activation),
                                activations=("relu",), losses=("mse",))
    shared = read_alike(backward.to_json(), passed=False)
    assert shared["tolerance"] == BACKPROP_RTOL and shared["criterion"] == backward.criterion

    whole = to_json([exact, broken])
    assert (whole["verdict"], whole["kind"], whole["exit_code"]) == ("fail", "bug", 1)
    assert whole["cause"].startswith("momentum never applied: lr=0.05, momentum=0.9, float32: step 2,")
    assert [row["rule"] for row in whole["rows"]] == ["SGD", "momentum never applied"]


def test_a_row_that_compared_nothing_cannot_check():
    row = VerifyRow("backprop.MLP", 0, "relative difference <= 1e-09", False, float("nan"), 0.0,
                    "gdlab.backprop.MLP could not be imported: No module named 'gdlab.backprop'")
    document = row.to_json()
    assert (document["verdict"], document["criterion"], document["measured"]) == ("cannot_check", None, None)
    assert document["cause"] == row.first_mismatch


def test_gdlab_verify_json_prints_one_object_per_chosen_rule():
    result = CliRunner().invoke(app, ["verify", "--json", "--rule", "lion", "--rule", "backprop.MLP"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    # The whole run passes when every row passes, each by its own criterion: the whole has none.
    assert {key: document[key] for key in SHARED_KEYS} == {
        "verdict": "pass", "kind": "none", "cause": None,
        "evidence": "2 of 2 rules agree with their reference, each by its own criterion",
        "criterion": None, "tolerance": None, "measured": None,
    }
    assert document["exit_code"] == 0
    assert [row["rule"] for row in document["rows"]] == ["Lion", "backprop.MLP"]
    for row in document["rows"]:
        read_alike(row, passed=True)
    assert document["rows"][1]["tolerance"] == BACKPROP_RTOL


def test_an_unknown_rule_is_refused_with_the_names_to_choose_from():
    with pytest.raises(GdlabError, match=r"--rule 'sgdd': no such rule; choose from .*\bSGD\b.*backprop\.MLP"):
        run_verify(rules=["sgdd"])
