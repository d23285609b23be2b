"""Issue 8, items 4 and 5: constants the code fixes, and known variants named as variant or bug with evidence.

The code is in tests/check_corpus/ (Neuromatch, d2l, Optimizer classes,
variants_as_written.py) and tests/check_examples/. Each expectation follows
from the math of the variant: eps inside the square root changes the step
where the second moment is small, so it shows at step 1; a momentum buffer
never carried over gives plain SGD, which torch's buffer (started as the
first gradient) equals at step 1 and not from step 2 on.
"""

from pathlib import Path

import pytest
import torch

from gdlab.check import check, load_function
from gdlab.check.rules import get_rule
from gdlab.optim import registry
from gdlab.optim.declaration import Variant

CORPUS = Path(__file__).parent / "check_corpus"
EXAMPLES = Path(__file__).parent / "check_examples"


def corpus(target: str):
    return load_function(str(CORPUS / target))


# --- item 4: constants and hyperparameters the code has no parameter for ---------------------------


def test_a_constant_fixed_in_the_code_is_estimated():
    report = check(corpus("d2l_optimizers.py:adam"), hparams={"lr": 0.01})
    assert not report.passed
    assert report.cause == (
        "your steps match torch.optim.Adam with eps=1e-06: your code has no parameter for eps and uses eps=1e-06, "
        "not the 1e-08 checked against"
    )
    assert (report.kind, report.evidence) == ("variant", "this matches all 20 of your steps from step 1 on")
    assert "adam takes no betas, eps: checked at torch.optim.Adam's betas=(0.9, 0.999), eps=1e-08" in report.notes


def test_a_learning_rate_fixed_in_the_code_is_estimated():
    def step(params):
        with torch.no_grad():
            for p in params:
                p -= 0.05 * p.grad

    sgd = check(step, "sgd")
    # SGD's update is linear in lr: a fixed rate is a constant multiple of torch's at its default 1e-3.
    assert sgd.cause.startswith("your steps match torch.optim.SGD with lr=0.05: your code has no parameter for lr")
    assert sgd.kind == "variant"
    assert "step takes no lr: checked at torch.optim.SGD's lr=0.001" in sgd.notes


def test_a_function_without_momentum_checked_with_momentum_fails_that_momentum_is_never_applied():
    report = check(load_function(str(EXAMPLES / "course_train_manual.py") + ":train_manual"), "sgd",
                   {"lr": 0.01, "momentum": 0.9})
    assert report.first_divergence.step == 2
    assert report.cause.startswith("momentum is never applied")
    assert report.evidence == "this matches all 19 of your steps from step 2 on"


# --- item 5: variants and bugs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, against, hparams, step, cause, kind",
    [
        ("nma_optimization.py:rmsprop_update", None, {"lr": 1e-3}, 1, "eps is inside the square root", "variant"),
        ("d2l_optimizers.py:adagrad", None, {"lr": 0.1}, 1, "eps is inside the square root", "variant"),
        ("d2l_optimizers.py:rmsprop", None, {"lr": 0.01, "alpha": 0.9}, 1, "eps is inside the square root",
         "variant"),
        ("variants_as_written.py:train_adam_eps_inside_sqrt", "adam", {"lr": 0.01}, 1,
         "eps is inside the square root", "variant"),
        ("my_rules.py:MyAdamOld", None, {"lr": 0.01}, 1, "eps is added before the bias correction, Adam's older form",
         "variant"),
        ("variants_as_written.py:train_decay_twice", "sgd", {"weight_decay": 0.01}, 1,
         "weight decay is applied twice", "bug"),
        ("my_rules.py:SGDWithMomentum", None, {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}, 2,
         "weight decay is kept outside the momentum buffer", "variant"),
        ("variants_as_written.py:train_buffer_reset_every_step", "sgd", {"momentum": 0.9}, 2,
         "momentum is never applied", "bug"),
        ("variants_as_written.py:train_buffer_rebound", "sgd", {"momentum": 0.9}, 2, "momentum is never applied",
         "bug"),
        ("variants_as_written.py:train_nesterov", "sgd", {"momentum": 0.9}, 1, "Nesterov momentum is used", "bug"),
        ("variants_as_written.py:adam_step_moments_not_stored", "adam", {"lr": 0.01}, 2,
         "the moment estimates are never stored", "bug"),
    ],
)
def test_known_variants_are_named_as_variant_or_bug_with_evidence(target, against, hparams, step, cause, kind):
    report = check(corpus(target), against, hparams)
    assert not report.passed
    assert report.first_divergence.step == step
    assert report.cause.startswith(cause), report.cause
    assert report.kind == kind
    assert report.evidence == f"this matches all {21 - step} of your steps from step {step} on"
    if kind == "variant":
        assert "This is a known variant: " in report.likely_cause


def test_the_buffer_hint_names_a_buffer_reset_or_rebound():
    report = check(corpus("variants_as_written.py:train_buffer_rebound"), "sgd", {"momentum": 0.9})
    assert "rebound to a new tensor inside the loop" in report.hint
    assert "reset at every step" in report.hint


def test_the_same_code_with_its_buffers_updated_in_place_passes():
    assert check(corpus("variants_as_written.py:adam_step"), "adam", {"lr": 0.01}).passed


def test_dampening_the_way_lecture_notes_write_momentum_is_a_variant():
    report = check(load_function(str(EXAMPLES / "sgd_more_mistakes.py") + ":train_dampened_momentum"), "sgd",
                   {"momentum": 0.9})
    assert report.cause.startswith("momentum is dampened")
    assert report.kind == "variant"
    assert "dampening set to the momentum" in report.likely_cause


def test_the_heavy_ball_form_passes_at_a_constant_rate_and_is_named_when_it_changes():
    report = check(corpus("nma_optimization.py:momentum_update"), hparams={"lr": 0.01, "momentum": 0.9})
    assert report.passed
    assert report.kind == "variant"
    assert "equal to torch's while the learning rate is constant" in report.notes[-1]


# --- the variants themselves ----------------------------------------------------------------------


# Settings under which each rule's variants apply; a rule not named here is tried at its defaults.
def _settings(rule_name: str) -> list[dict]:
    return {
        "sgd": [{"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}, {"lr": 0.1, "momentum": 0.9, "dampening": 0.5},
                {"lr": 0.1, "momentum": 0.9, "nesterov": True}],
        "adam": [{"lr": 0.01}, {"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.01, "amsgrad": True}],
        "adamw": [{"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.01, "amsgrad": True}],
        "rmsprop": [{"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.01, "centered": True, "momentum": 0.9}],
        "adagrad": [{"lr": 0.1, "weight_decay": 0.1, "lr_decay": 0.5}],
        # eps comparable to the gradients (1e-3), where eps's place shows.
        "adamax": [{"lr": 0.01, "eps": 1e-3}],
    }.get(rule_name, [{}])


# Keywords a rule's update takes that its declaration does not list (so `resolve` refuses them):
# Adafactor's eps, whose default epsilon1 (the machine epsilon) puts paper_epsilon within 1e-10 of the rule.
_UPDATE_KEYWORDS = {"adafactor": {"eps": (1e-2, 1e-3)}}


_rules_with_variants = [declaration.name for declaration in registry.declarations() if declaration.variants]


def test_the_rules_whose_variants_moved_into_their_declarations_declare_them():
    assert {"sgd", "adam", "adamw", "rmsprop", "adagrad"} <= set(_rules_with_variants)


@pytest.mark.parametrize("rule_name", _rules_with_variants)
def test_every_variant_is_a_declaration_variant_that_steps_apart_from_its_rule(rule_name):
    """Replayed for three steps on the same gradients, each variant differs from the rule under some
    setting where it applies.

    The third step has smaller gradients (so a running maximum of the second moment departs from it)
    and half the learning rate (so a rate kept inside the state departs from the rule's).
    """
    rule = get_rule(rule_name)
    declaration = rule.declaration
    variants = declaration.variants
    assert all(isinstance(variant, Variant) for variant in variants)
    assert len({variant.name for variant in variants}) == len(variants)
    tried, differed = set(), set()
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(4, 3, generator=generator, dtype=torch.float64) for _ in range(2)]
    gradients = [[scale * torch.randn(4, 3, generator=generator, dtype=torch.float64) for _ in range(2)]
                 for scale in (1e-3, 1e-3, 1e-5)]
    for setting in _settings(rule_name):
        hparams = {**rule.resolve(setting), **_UPDATE_KEYWORDS.get(rule_name, {})}
        for variant in variants:
            if not variant.applies(hparams):
                continue
            tried.add(variant.name)
            results = []
            for update, init in ((declaration.update, declaration.init), (variant.update, variant.init or declaration.init)):
                params = [tensor.clone() for tensor in start]
                state = init(params, hparams)
                for step, step_gradients in enumerate(gradients):
                    lr = hparams["lr"] * (0.5 if step == 2 else 1.0)
                    update(params, [g.clone() for g in step_gradients], state, **{**hparams, "lr": lr})
                results.append(params)
            if any(not torch.allclose(a, b, rtol=1e-9, atol=0) for a, b in zip(*results)):
                differed.add(variant.name)
    assert tried == differed == {variant.name for variant in variants}
