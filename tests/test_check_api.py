"""gdlab.check through its Python API: verdicts, the first differing step, and the likely cause.

The example training functions live in tests/check_examples/. Expected steps
follow from the rules' math, not from gdlab's output: torch's momentum
buffer starts as the first gradient, so a missing momentum or an unzeroed
gradient first shows at step 2; a weight decay sign shows at step 1; the
problem has 320 digits in batches of 32, so epoch 2 starts at step 11.
"""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from gdlab.check import CannotCheck, check_training_function, load_function
from gdlab.check.problem import BATCH_SIZE, PER_CLASS
from gdlab.errors import GdlabError

EXAMPLES = Path(__file__).parent / "check_examples"
STEPS_PER_EPOCH = 10 * PER_CLASS // BATCH_SIZE
SGD_MOMENTUM_DECAY = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}
COURSE_RENAMES = {"w_decay": "weight_decay", "c_mom": "momentum"}


def example(target: str):
    return load_function(str(EXAMPLES / target))


def line_number(file: str, text: str) -> int:
    lines = (EXAMPLES / file).read_text().splitlines()
    return next(number for number, line in enumerate(lines, start=1) if text in line)


# --- the acceptance cases of issue 3 -------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_written_sgd_with_momentum_and_weight_decay_passes_despite_rounding(dtype):
    report = check_training_function(
        example("sgd_correct.py:train_sgd"), "sgd", SGD_MOMENTUM_DECAY, dtype=dtype
    )
    assert report.passed, report.render()
    assert report.first_divergence is None and report.likely_cause is None
    assert report.steps_taken == report.steps_expected == 2 * STEPS_PER_EPOCH
    # `p.data = p.data - lr * v` is not torch's fused in-place update: the results really differ,
    # and the check accepts them because the difference is rounding.
    assert 0 < report.max_relative_difference <= report.tolerance
    assert report.tolerance == 8 * torch.finfo(dtype).eps
    assert "PASS" in report.render()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_course_momentum_that_is_never_applied_is_rejected_at_step_2(dtype):
    report = check_training_function(
        example("course_momentum_never_applied.py:train_manual_w_decay_mom"),
        "sgd",
        SGD_MOMENTUM_DECAY,
        renames=COURSE_RENAMES,
        dtype=dtype,
    )
    assert not report.passed
    where = report.first_divergence
    assert (where.step, where.epoch, where.iteration) == (2, 1, 2)
    # Missing momentum changes every parameter's update; the first in model order is named.
    assert where.parameter == "layers.0.weight"
    assert where.relative_difference > report.tolerance
    assert report.likely_cause.startswith("momentum is never applied")
    assert f"this matches all {2 * STEPS_PER_EPOCH - 1} of your steps from step 2 on." in report.likely_cause
    assert "step 2 (epoch 1, iteration 2)" in report.render()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_decay_with_the_wrong_sign_is_rejected_at_step_1(dtype):
    report = check_training_function(
        example("sgd_weight_decay_wrong_sign.py:train_sgd"), "sgd", SGD_MOMENTUM_DECAY, dtype=dtype
    )
    assert not report.passed
    assert report.first_divergence.step == 1
    assert report.likely_cause.startswith("weight decay has the wrong sign")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_never_zeroed_are_rejected_at_step_2(dtype):
    report = check_training_function(
        example("sgd_gradients_never_zeroed.py:train_sgd"), "sgd", SGD_MOMENTUM_DECAY, dtype=dtype
    )
    assert not report.passed
    assert report.first_divergence.step == 2
    assert report.likely_cause.startswith("gradients are never zeroed")


# --- correct functions for every rule pass -------------------------------------------------------


@pytest.mark.parametrize(
    "function, rule, hparams",
    [
        ("train_adam", "adam", {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.01}),
        ("train_adam", "adam", {"lr": 1e-3, "amsgrad": True}),
        ("train_adamw", "adamw", {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.1}),
        ("train_rmsprop", "rmsprop", {"lr": 1e-3, "alpha": 0.9, "momentum": 0.9, "centered": True,
                                      "weight_decay": 0.01}),
        ("train_adagrad", "adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.01,
                                      "initial_accumulator_value": 0.1}),
    ],
)
def test_hand_written_adam_adamw_rmsprop_adagrad_pass(function, rule, hparams):
    report = check_training_function(example(f"other_rules_correct.py:{function}"), rule, hparams, epochs=3)
    assert report.passed, report.render()
    assert 0 < report.max_relative_difference <= report.tolerance


def test_torch_sgd_in_the_standard_loop_equals_the_reference_bit_for_bit():
    hparams = {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True}
    report = check_training_function(example("sgd_more_mistakes.py:train_with_torch_sgd"), "sgd", hparams)
    assert report.passed
    assert report.max_relative_difference == 0.0


def test_the_course_train_manual_passes_with_only_a_learning_rate():
    report = check_training_function(example("course_train_manual.py:train_manual"), "sgd", {"lr": 0.05})
    assert report.passed, report.render()


# --- the diagnosis names the mistake -------------------------------------------------------------


@pytest.mark.parametrize(
    "target, rule, hparams, step, cause",
    [
        ("sgd_more_mistakes.py:train_lr_divided_by_batch_size", "sgd", {}, 1,
         f"every update is 0.03125 times torch's (1/{BATCH_SIZE}, one over the batch size"),
        ("sgd_more_mistakes.py:train_update_never_applied", "sgd", {}, 1, "the parameters did not change"),
        ("sgd_more_mistakes.py:train_gradient_ascent", "sgd", {}, 1, "every update has the wrong sign"),
        ("sgd_more_mistakes.py:train_momentum_as_moving_average", "sgd", {"momentum": 0.9}, 1,
         "momentum is a moving average started at zero"),
        ("sgd_more_mistakes.py:train_velocity_inside_epoch_loop", "sgd", {"momentum": 0.9},
         STEPS_PER_EPOCH + 1, "starts afresh every epoch"),
        ("sgd_more_mistakes.py:train_always_nesterov", "sgd", {"momentum": 0.9}, 1, "Nesterov momentum is used"),
        # torch's dampened buffer starts undamped (v1 = g1), so it first differs at step 2.
        ("sgd_more_mistakes.py:train_dampened_momentum", "sgd", {"momentum": 0.9}, 2, "momentum is dampened"),
        ("sgd_more_mistakes.py:train_decay_once_per_epoch", "sgd", {"weight_decay": 0.01}, 1,
         "weight decay is missing"),
        ("other_rules_mistakes.py:train_adam_without_bias_correction", "adam", {}, 1, "bias correction is missing"),
        ("other_rules_mistakes.py:train_adam_with_adamw_decay", "adam", {"weight_decay": 0.1}, 1,
         "weight decay is decoupled"),
        ("other_rules_mistakes.py:train_rmsprop_ignoring_momentum", "rmsprop", {"momentum": 0.9}, 2,
         "momentum is never applied"),
        ("other_rules_mistakes.py:train_adagrad_ignoring_lr_decay", "adagrad", {"lr_decay": 0.1}, 2,
         "lr_decay is ignored"),
    ],
)
def test_known_mistakes_are_named_at_their_first_step(target, rule, hparams, step, cause):
    report = check_training_function(example(target), rule, hparams)
    assert not report.passed
    assert report.first_divergence.step == step
    assert report.first_divergence.parameter is not None
    assert cause in report.likely_cause, report.likely_cause


def test_an_epoch_too_few_is_a_wrong_step_count():
    report = check_training_function(example("sgd_more_mistakes.py:train_one_epoch_short"), "sgd", {}, epochs=3)
    assert not report.passed
    assert report.steps_taken == 2 * STEPS_PER_EPOCH
    where = report.first_divergence
    assert (where.step, where.epoch, where.iteration, where.parameter) == (2 * STEPS_PER_EPOCH + 1, 3, 1, None)
    assert "range(1, n_epochs) runs one epoch too few" in report.likely_cause


def test_an_unknown_rule_is_reported_with_numbers():
    def train_squared_gradient(n_epochs, model, loss_fn, train_loader, lr):
        for _ in range(n_epochs):
            for x, y in train_loader:
                model.zero_grad()
                loss_fn(model(x), y).backward()
                with torch.no_grad():
                    for p in model.parameters():
                        p -= lr * p.grad * p.grad.abs()

    report = check_training_function(train_squared_gradient, "sgd", {"lr": 0.1})
    assert not report.passed
    assert report.likely_cause.startswith("differs, no known pattern")
    assert "times the size of torch's" in report.likely_cause and "cosine" in report.likely_cause


def test_parameters_changed_outside_the_loop_are_caught_between_steps():
    def train_reinitializing(n_epochs, model, loss_fn, train_loader, lr):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(n_epochs):
            for x, y in train_loader:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()

    report = check_training_function(train_reinitializing, "sgd", {"lr": 0.01})
    assert not report.passed
    assert report.first_divergence.step == 1
    assert "changed before the first batch was drawn" in report.likely_cause
    assert "nan" not in report.render()


# --- observing the user's loop -------------------------------------------------------------------


def test_parameters_replaced_by_new_objects_are_read_by_name_each_step():
    def train_replacing_parameters(n_epochs, model, loss_fn, train_loader, lr):
        for _ in range(n_epochs):
            for x, y in train_loader:
                loss_fn(model(x), y).backward()
                with torch.no_grad():
                    for layer in model.layers:
                        layer.weight = nn.Parameter(layer.weight - lr * layer.weight.grad)
                        layer.bias = nn.Parameter(layer.bias - lr * layer.bias.grad)

    report = check_training_function(train_replacing_parameters, "sgd", {"lr": 0.05})
    assert report.passed, report.render()


def test_gradients_zeroed_before_or_after_the_update_both_pass():
    def zero_before(n_epochs, model, loss_fn, train_loader, lr):
        for _ in range(n_epochs):
            for x, y in train_loader:
                model.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                with torch.no_grad():
                    for p in model.parameters():
                        p -= lr * p.grad

    def zero_after(n_epochs, model, loss_fn, train_loader, lr):
        for _ in range(n_epochs):
            for x, y in train_loader:
                loss_fn(model(x), y).backward()
                with torch.no_grad():
                    for p in model.parameters():
                        p -= lr * p.grad
                        p.grad.zero_()

    for function in (zero_before, zero_after):
        assert check_training_function(function, "sgd", {"lr": 0.05}).passed


def test_batches_changed_in_place_by_the_user_do_not_change_the_reference():
    def train_scaling_inputs_in_place(n_epochs, model, loss_fn, train_loader, lr):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, foreach=False)
        for _ in range(n_epochs):
            for x, y in train_loader:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()
                x.mul_(0.0)

    assert check_training_function(train_scaling_inputs_in_place, "sgd", {"lr": 0.05}).passed


def test_the_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_training_function(example("sgd_more_mistakes.py:train_with_torch_sgd"), "sgd", {"lr": 0.01})
    assert torch.equal(torch.rand(3), expected)


def test_the_check_restores_the_thread_count():
    threads = torch.get_num_threads()
    check_training_function(example("sgd_more_mistakes.py:train_with_torch_sgd"), "sgd", {"lr": 0.01})
    assert torch.get_num_threads() == threads


# --- hyperparameters under the function's own names ----------------------------------------------


def test_the_course_names_w_decay_and_c_mom_are_read_as_weight_decay_and_momentum():
    # Issue 8: the course's own spellings bind by name, so its bug is found without --rename.
    report = check_training_function(
        example("course_momentum_never_applied.py:train_manual_w_decay_mom"), "sgd", SGD_MOMENTUM_DECAY
    )
    assert report.call == "train_manual_w_decay_mom(2, model, loss_fn, train_loader, lr=0.01, c_mom=0.9, w_decay=0.01)"
    assert report.bound == ("w_decay as weight_decay", "c_mom as momentum")
    assert report.first_divergence.step == 2
    assert report.likely_cause.startswith("momentum is never applied")


def test_a_function_without_momentum_checked_with_momentum_fails_instead_of_being_refused():
    report = check_training_function(example("course_train_manual.py:train_manual"), "sgd", {"momentum": 0.9})
    assert not report.passed
    assert report.first_divergence.step == 2
    assert report.likely_cause.startswith("momentum is never applied")
    assert report.kind == "bug"
    assert any("train_manual has no parameter for momentum; the reference uses momentum=0.9" in note
               for note in report.notes)


def test_default_hyperparameters_need_no_parameter_and_unmapped_defaults_are_noted():
    def train(n_epochs, model, loss_fn, train_loader, lr=1e-2, verbose=True):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(n_epochs):
            for x, y in train_loader:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()

    report = check_training_function(train, "sgd", {"lr": 0.02})
    assert report.passed
    assert report.call == "train(2, model, loss_fn, train_loader, lr=0.02)"
    assert any("parameter verbose was left at its default True" in note for note in report.notes)


def test_the_function_own_defaults_are_what_it_is_checked_with():
    report = check_training_function(
        example("course_momentum_never_applied.py:train_manual_w_decay_mom"), "sgd", {}
    )
    assert report.passed, report.render()
    assert report.hparams["lr"] == 1e-2  # train_manual_w_decay_mom's own default, not torch's 1e-3
    assert report.call == "train_manual_w_decay_mom(2, model, loss_fn, train_loader, lr=0.01, c_mom=0, w_decay=0)"


def test_renames_map_the_function_names_onto_gdlab_names():
    calls = []

    def train(n_epochs, model, loss_fn, train_loader, step_size, mu, weight_decay=0.0):
        calls.append((n_epochs, step_size, mu, weight_decay))
        optimizer = torch.optim.SGD(model.parameters(), lr=step_size, momentum=mu, weight_decay=weight_decay)
        for _ in range(n_epochs):
            for x, y in train_loader:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()

    report = check_training_function(
        train, "sgd", SGD_MOMENTUM_DECAY, renames={"step_size": "lr", "mu": "momentum"}, epochs=1
    )
    assert calls == [(1, 0.01, 0.9, 0.01)]
    assert report.passed


def test_keyword_arguments_receive_hyperparameters_under_gdlab_names():
    received = {}

    def train(n_epochs, model, loss_fn, train_loader, **hparams):
        received.update(hparams)
        optimizer = torch.optim.Adam(model.parameters(), **hparams)
        for _ in range(n_epochs):
            for x, y in train_loader:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()

    report = check_training_function(train, "adam", {"lr": 0.01, "betas": (0.8, 0.9)})
    assert received == {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
                        "maximize": False}
    assert report.passed


@pytest.mark.parametrize(
    "renames, message",
    [
        ({"w_decay": "decay"}, r"'decay' is not a hyperparameter of torch\.optim\.SGD"),
        ({"gamma": "momentum"}, r"has no parameter 'gamma'"),
    ],
)
def test_bad_renames_are_refused(renames, message):
    with pytest.raises(CannotCheck, match=message):
        check_training_function(
            example("course_momentum_never_applied.py:train_manual_w_decay_mom"), "sgd", {}, renames=renames
        )


def test_a_required_parameter_nothing_fills_is_refused():
    def train(n_epochs, model, loss_fn, train_loader, lr, schedule):
        pass

    with pytest.raises(CannotCheck, match=r"parameter 'schedule' has no default") as raised:
        check_training_function(train, "sgd", {})
    # The whole parameter list, each with what gdlab took it to be.
    message = str(raised.value)
    for name, taken in (("n_epochs", "n_epochs: the number of epochs"), ("train_loader", "train_loader: the training loader"),
                        ("lr", "hyperparameter lr"), ("schedule", "nothing gdlab knows, and it has no default")):
        assert re.search(rf"\n\s+{name}\s+{re.escape(taken)}", message), message


def test_hyperparameters_torch_refuses_are_refused_with_torch_reason():
    with pytest.raises(GdlabError, match=r"Invalid learning rate: -0\.1"):
        check_training_function(example("course_train_manual.py:train_manual"), "sgd", {"lr": -0.1})
    with pytest.raises(GdlabError, match=r"'betas' is not a hyperparameter of torch\.optim\.SGD"):
        check_training_function(example("course_train_manual.py:train_manual"), "sgd", {"betas": (0.9, 0.9)})
    with pytest.raises(GdlabError, match=r"unknown rule 'adamz'"):
        check_training_function(example("course_train_manual.py:train_manual"), "adamz", {})


# --- functions that cannot be checked ------------------------------------------------------------


def test_missing_file_and_missing_function_are_cannot_check():
    with pytest.raises(CannotCheck, match=r"no file .*no_such_file\.py"):
        load_function(str(EXAMPLES / "no_such_file.py") + ":train")
    with pytest.raises(CannotCheck, match=r"has no function 'train_sgdd'; functions defined there: train_sgd"):
        load_function(str(EXAMPLES / "sgd_correct.py") + ":train_sgdd")
    with pytest.raises(CannotCheck, match=r"must name a file and a function"):
        load_function(str(EXAMPLES / "sgd_correct.py"))


def test_a_function_gdlab_cannot_fill_is_cannot_check_listing_its_parameters():
    with pytest.raises(CannotCheck) as raised:
        check_training_function(example("cannot_check.py:train_on_arrays"), "sgd", {})
    message = str(raised.value)
    assert "train_on_arrays(X_train, Y_train, model, lr=0.01) cannot be called as an update function" in message
    assert "its parameter 'X_train' has no default" in message
    assert re.search(r"\n\s+model\s+model: the model", message), message


def test_a_training_function_without_a_number_of_epochs_is_called_once_per_epoch():
    # It used to be refused for not taking (n_epochs, model, loss_fn, train_loader) by position.
    report = check_training_function(example("cannot_check.py:train_without_epochs"), "sgd", {})
    assert report.call.endswith("once per epoch (2 calls: it takes no number of epochs)")
    assert not report.passed
    assert report.likely_cause.startswith("the parameters did not change")


def test_a_function_that_raises_is_cannot_check_with_its_own_line():
    with pytest.raises(CannotCheck) as raised:
        check_training_function(example("cannot_check.py:train_with_typo"), "sgd", {})
    message = str(raised.value)
    assert "NameError: name 'grad' is not defined" in message
    assert f"at cannot_check.py, line {line_number('cannot_check.py', 'lr * grad')}" in message
    assert "p.data = p.data - lr * grad" in message
    assert "gdlab" not in message.split("NameError")[1]  # none of gdlab's own frames


def test_an_exception_while_importing_is_cannot_check_with_its_own_line():
    with pytest.raises(CannotCheck) as raised:
        example("raises_on_import.py:train_manual")
    message = str(raised.value)
    assert "importing raises_on_import.py failed: FileNotFoundError" in message
    assert f"line {line_number('raises_on_import.py', 'open(')}" in message


def test_a_syntax_error_is_cannot_check(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def train(n_epochs, model, loss_fn, train_loader, lr):\n    p.data = = 1\n")
    with pytest.raises(CannotCheck, match=r"(?s)broken\.py does not parse: SyntaxError.*line 2"):
        load_function(f"{broken}:train")


def test_drawing_batches_ahead_is_cannot_check():
    with pytest.raises(CannotCheck, match=r"asked train_loader for batch 2 before running the model on batch 1"):
        check_training_function(example("cannot_check.py:train_from_a_list"), "sgd", {})


def test_a_function_that_never_stops_drawing_batches_is_stopped_and_fails():
    def train_forever(n_epochs, model, loss_fn, train_loader, lr):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        while True:
            try:
                for x, y in train_loader:
                    optimizer.zero_grad()
                    loss_fn(model(x), y).backward()
                    optimizer.step()
            except Exception:  # even a blanket except cannot keep it going
                pass

    report = check_training_function(train_forever, "sgd", {"lr": 0.01}, epochs=1)
    assert not report.passed
    assert "kept drawing batches" in report.likely_cause
    assert report.first_divergence.step == STEPS_PER_EPOCH + 1


def test_a_device_mismatch_says_the_check_runs_on_the_cpu():
    def train_on_cuda(n_epochs, model, loss_fn, train_loader, lr):
        for _ in range(n_epochs):
            for imgs, labels in train_loader:
                raise RuntimeError("Expected all tensors to be on the same device, but found cuda:0 and cpu")

    with pytest.raises(CannotCheck, match=r"(?s)RuntimeError: Expected all tensors.*CUDA_VISIBLE_DEVICES="):
        check_training_function(train_on_cuda, "sgd", {"lr": 0.01})
