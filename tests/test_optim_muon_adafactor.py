"""Muon and Adafactor from scratch are bit-for-bit torch.optim's (torch 2.13).

The reference is torch's single-tensor implementation: Adafactor with
``foreach=False``, Muon as it is (it has no other implementation and takes no
``foreach``). Two copies of one small MLP train side by side, each from its
own forward and backward pass, so one ulp of difference anywhere would grow
and show. Muon takes matrices only: its runs train the MLP's weights and
leave the biases where they start.
"""

import copy
import functools
import io
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import _get_scalar_dtype
from torch.testing._internal.common_optimizers import OptimizerErrorEnum, optim_db

from gdlab.models import MLP
from gdlab.optim import registry
from gdlab.optim.rules import adafactor as adafactor_rule
from gdlab.optim.rules import muon as muon_rule
from gdlab.optim.rules.adafactor import Adafactor
from gdlab.optim.rules.muon import Muon

STEPS = 40
DTYPES = [torch.float32, torch.float64]


def combinations(**axes):
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


MUON_FLAGS = combinations(
    nesterov=[True, False], weight_decay=[0.0, 0.1], adjust_lr_fn=[None, "original", "match_rms_adamw"]
)
ADAFACTOR_FLAGS = combinations(weight_decay=[0.0, 0.1], maximize=[False, True], eps=[(None, 1e-3), (1e-30, 1e-2)])


def muon_first_group(config):
    return {"lr": config["lr"] * 0.3, "momentum": 0.8, "ns_steps": 4,
            "weight_decay": 0.05 if config["weight_decay"] else 0.0}


def adafactor_first_group(config):
    return {"lr": config["lr"] * 0.3, "beta2_decay": -0.6, "d": 1.5,
            "weight_decay": 0.05 if config["weight_decay"] else 0.0}


# name: (gdlab class, torch class, base lr, flag combinations, the first group's own hyperparameters)
RULES = {
    "Muon": (Muon, torch.optim.Muon, 0.02, MUON_FLAGS, muon_first_group),
    "Adafactor": (Adafactor, torch.optim.Adafactor, 0.01, ADAFACTOR_FLAGS, adafactor_first_group),
}
MODULES = {"Muon": muon_rule, "Adafactor": adafactor_rule}


def reference_class(torch_class):
    """torch's single-tensor implementation (torch's Muon has only that one, and no foreach argument)."""
    return torch_class if torch_class is torch.optim.Muon else functools.partial(torch_class, foreach=False)


def optim_info(torch_class):
    return next(info for info in optim_db if info.optim_cls is torch_class)


def make_model(name, dtype):
    torch.manual_seed(0)
    model = MLP([8, 12, 12, 3], activation="tanh").to(dtype)
    if name == "Muon":
        for layer in model.layers:
            layer.bias.requires_grad_(False)
    return model


def make_spare(name, dtype):
    """A parameter that never gets a gradient (a matrix, for Muon)."""
    return nn.Parameter(torch.ones((4, 5) if name == "Muon" else (5,), dtype=dtype))


def trainable(module):
    return [param for param in module.parameters() if param.requires_grad]


def make_run(optimizer_class, config, first_group, model, spare):
    """Two param groups: the first layer with its own hyperparameters; the rest and the spare."""
    first, *rest = model.layers
    groups = [
        {"params": trainable(first), **first_group},
        {"params": [param for layer in rest for param in trainable(layer)] + [spare]},
    ]
    optimizer = optimizer_class(groups, **config)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)


def data(dtype):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(96, 8, dtype=dtype, generator=generator), torch.randint(0, 3, (96,), generator=generator)


def train_side_by_side(name, flags, dtype, steps=STEPS, gdlab_lr_factor=1.0):
    gdlab_class, torch_class, lr, _, first_group = RULES[name]
    config = {"lr": lr, **flags}
    model = make_model(name, dtype)
    reference_model = copy.deepcopy(model)
    spare, reference_spare = make_spare(name, dtype), make_spare(name, dtype)
    gdlab_config = {**config, "lr": lr * gdlab_lr_factor}
    optimizer, scheduler = make_run(gdlab_class, gdlab_config, first_group(config), model, spare)
    reference_optimizer, reference_scheduler = make_run(
        reference_class(torch_class), config, first_group(config), reference_model, reference_spare
    )
    inputs, labels = data(dtype)
    for step in range(steps):
        batch = slice(step * 16 % 96, step * 16 % 96 + 16)
        sides = ((model, optimizer, scheduler), (reference_model, reference_optimizer, reference_scheduler))
        for net, opt, sched in sides:
            opt.zero_grad()
            F.cross_entropy(net(inputs[batch]), labels[batch]).backward()
            opt.step()
            sched.step()
        for (param_name, param), reference in zip(model.named_parameters(), reference_model.parameters()):
            assert torch.equal(param, reference), (
                f"{name} {flags} {dtype}: {param_name} differs after step {step + 1} "
                f"by up to {(param - reference).abs().max().item():.3g}"
            )
    assert torch.equal(spare, torch.ones_like(spare)) and spare not in optimizer.state
    return optimizer, reference_optimizer, model


CASES = [
    pytest.param(name, flags, dtype, id=f"{name}-{'-'.join(f'{k}={v}' for k, v in flags.items())}-{dtype}")
    for name, (_, _, _, all_flags, _) in RULES.items()
    for flags in all_flags
    for dtype in DTYPES
]


@pytest.mark.parametrize("name, flags, dtype", CASES)
def test_bit_exact_with_torch_for_every_flag_combination(name, flags, dtype):
    optimizer, reference_optimizer, model = train_side_by_side(name, flags, dtype)
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs[0] != lrs[1] and lrs == [group["lr"] for group in reference_optimizer.param_groups]
    assert lrs[1] == RULES[name][2] * 0.5 ** (STEPS // 10)
    if name == "Muon":  # the biases were not Muon's to train
        assert torch.equal(model.layers[0].bias, make_model(name, dtype).layers[0].bias)


@pytest.mark.parametrize("name", RULES)
def test_the_exactness_check_can_fail(name):
    """gdlab's second group one ulp off in lr is caught at the first step."""
    with pytest.raises(AssertionError, match="differs after step 1"):
        train_side_by_side(name, RULES[name][3][0], torch.float64, steps=2, gdlab_lr_factor=1 + 2**-52)


def assert_same_state(state_dict, reference_state_dict):
    """gdlab keeps the state torch keeps, under the same names, dtypes and values."""
    state, reference_state = state_dict["state"], reference_state_dict["state"]
    assert state.keys() == reference_state.keys()
    for index in reference_state:
        assert list(state[index]) == list(reference_state[index])
        for key, value in reference_state[index].items():
            assert state[index][key].dtype == value.dtype, (index, key)
            assert state[index][key].shape == value.shape, (index, key)
            assert torch.equal(state[index][key], value), (index, key)
    groups, reference_groups = state_dict["param_groups"], reference_state_dict["param_groups"]
    for group, reference_group in zip(groups, reference_groups, strict=True):
        # foreach: False on torch's side (asked for), None on gdlab's (gdlab has one implementation).
        assert {**group, "foreach": None} == {**reference_group, "foreach": None}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", RULES)
def test_state_matches_torch_names_layout_and_values(name, dtype):
    optimizer, reference_optimizer, _ = train_side_by_side(name, RULES[name][3][-1], dtype, steps=12)
    assert_same_state(optimizer.state_dict(), reference_optimizer.state_dict())
    if name == "Adafactor":
        keys = {tuple(state) for state in optimizer.state.values()}
        assert keys == {("step", "row_var", "col_var"), ("step", "variance")}
        assert all(state["step"].dtype == _get_scalar_dtype() for state in optimizer.state.values())


@pytest.mark.parametrize("name", RULES)
def test_step_with_closure_returns_its_loss_and_matches_torch(name):
    gdlab_class, torch_class, lr, _, _ = RULES[name]
    model = make_model(name, torch.float64)
    reference = copy.deepcopy(model)
    inputs, labels = data(torch.float64)
    optimizer = gdlab_class(trainable(model), lr=lr)
    reference_optimizer = reference_class(torch_class)(trainable(reference), lr=lr)

    def closure_for(net, opt):
        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(net(inputs), labels)
            loss.backward()
            return loss
        return closure

    for _ in range(5):
        loss = optimizer.step(closure_for(model, optimizer))
        reference_loss = reference_optimizer.step(closure_for(reference, reference_optimizer))
        assert torch.equal(loss, reference_loss)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert optimizer.step() is None


# state_dict: gdlab -> torch and torch -> gdlab, through bytes as a checkpoint would go.

HALF = 15


def saved_and_loaded(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def train(model, optimizer, inputs, labels, steps, start):
    for step in range(start, start + steps):
        batch = slice(step * 16 % 96, step * 16 % 96 + 16)
        optimizer.zero_grad()
        F.cross_entropy(model(inputs[batch]), labels[batch]).backward()
        optimizer.step()


def groups(model, lr):
    first, *rest = model.layers
    return [{"params": trainable(first), "lr": lr / 3},
            {"params": [param for layer in rest for param in trainable(layer)]}]


def run_with_a_stop(name, first_class, second_class, config, checkpoint_edit=lambda checkpoint: checkpoint):
    model = make_model(name, torch.float32)
    inputs, labels = data(torch.float32)
    optimizer = first_class(groups(model, config["lr"]), **config)
    train(model, optimizer, inputs, labels, HALF, start=0)
    checkpoint = checkpoint_edit(saved_and_loaded(optimizer.state_dict()))
    resumed = second_class(groups(model, config["lr"]), **config)
    resumed.load_state_dict(checkpoint)
    train(model, resumed, inputs, labels, HALF, start=HALF)
    return model, resumed


def run_without_stop(name, optimizer_class, config):
    model = make_model(name, torch.float32)
    inputs, labels = data(torch.float32)
    train(model, optimizer_class(groups(model, config["lr"]), **config), inputs, labels, 2 * HALF, start=0)
    return model


STATE_CONFIGS = {
    "Muon": {"lr": 0.02, "nesterov": False, "adjust_lr_fn": "match_rms_adamw",
             "ns_coefficients": (3.4, -4.7, 2.0)},
    "Adafactor": {"lr": 0.02, "weight_decay": 0.1, "eps": (1e-30, 1e-3), "maximize": True},
}


def assert_same_parameters(model, reference):
    for (name, param), other in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(param, other), f"{name} differs by {(param - other).abs().max().item():.3g}"


@pytest.mark.parametrize("name", RULES)
def test_gdlab_state_continues_in_torch_and_torch_state_in_gdlab(name):
    gdlab_class, torch_class = RULES[name][:2]
    config, reference = STATE_CONFIGS[name], reference_class(torch_class)
    uninterrupted = run_without_stop(name, reference, config)
    for first, second in ((gdlab_class, reference), (reference, gdlab_class), (gdlab_class, gdlab_class)):
        assert_same_parameters(run_with_a_stop(name, first, second, config)[0], uninterrupted)


def test_an_adafactor_restart_without_its_state_would_differ():
    """The check above can fail: a fresh optimizer mid-way (step count back at 0) changes the result."""
    config = STATE_CONFIGS["Adafactor"]
    uninterrupted = run_without_stop("Adafactor", Adafactor, config)
    restarted, _ = run_with_a_stop(
        "Adafactor", Adafactor, Adafactor, config, lambda checkpoint: {**checkpoint, "state": {}}
    )
    assert not all(torch.equal(a, b) for a, b in zip(restarted.parameters(), uninterrupted.parameters()))


def older(checkpoint, *removed_group_keys):
    """A state_dict as an older torch wrote it: group keys missing, ``step`` a Python float."""
    checkpoint = copy.deepcopy(checkpoint)
    for group in checkpoint["param_groups"]:
        for key in removed_group_keys:
            del group[key]
    for state in checkpoint["state"].values():
        if "step" in state:
            state["step"] = float(state["step"].item())
    return checkpoint


def test_an_older_adafactor_state_dict_loads_and_steps_like_torch():
    config = STATE_CONFIGS["Adafactor"]
    reference = reference_class(torch.optim.Adafactor)
    uninterrupted = run_without_stop("Adafactor", reference, config)
    for first, second in ((reference, Adafactor), (Adafactor, Adafactor), (Adafactor, reference)):
        model, resumed = run_with_a_stop("Adafactor", first, second, config, lambda c: older(c, "foreach"))
        assert_same_parameters(model, uninterrupted)
        assert all(group["foreach"] is None for group in resumed.param_groups)
        assert all(torch.is_tensor(state["step"]) and state["step"].dtype == _get_scalar_dtype()
                   for state in resumed.state.values())


@pytest.mark.parametrize("optimizer_class", [Adafactor, reference_class(torch.optim.Adafactor)])
def test_an_adafactor_state_dict_without_maximize_fails_at_the_step_as_in_torch(optimizer_class):
    """torch's __setstate__ fills in foreach only; gdlab's does the same, so both stop at the step."""
    with pytest.raises(KeyError, match="maximize"):
        run_with_a_stop("Adafactor", Adafactor, optimizer_class, STATE_CONFIGS["Adafactor"],
                        lambda checkpoint: older(checkpoint, "foreach", "maximize"))


# torch's own test inputs (optim_db), tensor lr included.


def db_params(name, dtype):
    """Matrices of both orientations for Muon; a matrix, a vector, a 3-D tensor and a scalar for Adafactor."""
    generator = torch.Generator().manual_seed(3)
    shapes = [(6, 4), (4, 6), (5, 5)] if name == "Muon" else [(6, 4), (6,), (2, 3, 4), ()]
    return [nn.Parameter(torch.randn(shape, dtype=dtype, generator=generator)) for shape in shapes]


def db_loss(params):
    """A smooth objective whose gradients keep changing (targets fixed per parameter)."""
    total = 0
    for index, param in enumerate(params):
        target = torch.linspace(-1, 1, param.numel(), dtype=param.dtype).reshape(param.shape)
        total = total + (param.sin() * target).sum() + 0.1 * (param - index).pow(2).sum()
    return total


def run_on_lists(optimizer, params, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        db_loss(params).backward()
        optimizer.step()


# Cases torch's database lacks: a tensor lr for Adafactor, and Muon's flags with a tensor lr.
EXTRA_INPUTS = {
    "Muon": [{"lr": torch.tensor([0.01]), "nesterov": False, "adjust_lr_fn": "match_rms_adamw"},
             {"ns_steps": 0, "eps": 1e-3}],
    "Adafactor": [{"lr": torch.tensor(0.02), "weight_decay": 0.1, "eps": (1e-30, 1e-3)}],
}


def db_inputs(name):
    """(description, kwargs) of every CPU input torch's database lists for the rule, then the extra ones."""
    listed = optim_info(RULES[name][1]).optim_inputs_func("cpu")
    extra = [(f"extra{index}", kwargs) for index, kwargs in enumerate(EXTRA_INPUTS[name])]
    return [(optimizer_input.desc, optimizer_input.kwargs) for optimizer_input in listed] + extra


DB_CASES = [
    pytest.param(name, kwargs, dtype, id=f"{name}-{description}-{dtype}")
    for name in RULES
    for description, kwargs in db_inputs(name)
    for dtype in DTYPES
]


@pytest.mark.parametrize("name, kwargs, dtype", DB_CASES)
def test_torch_optim_db_inputs_are_bit_exact(name, kwargs, dtype):
    gdlab_class, torch_class = RULES[name][:2]
    params, reference_params = db_params(name, dtype), db_params(name, dtype)
    optimizer = gdlab_class(params, **copy.deepcopy(kwargs))
    reference = reference_class(torch_class)(reference_params, **copy.deepcopy(kwargs))
    run_on_lists(optimizer, params, 12)
    run_on_lists(reference, reference_params, 12)
    for param, reference_param in zip(params, reference_params, strict=True):
        assert torch.equal(param, reference_param), f"{kwargs}: differs by {(param - reference_param).abs().max()}"
    assert not torch.equal(params[0], db_params(name, dtype)[0])


@pytest.mark.parametrize("name", RULES)
def test_torch_marks_these_rules_real_only_and_so_does_gdlab(name):
    """Neither supports complex parameters (info.supports_complex is False): both refuse them at the step."""
    gdlab_class, torch_class = RULES[name][:2]
    assert optim_info(torch_class).supports_complex is False
    for optimizer_class in (gdlab_class, reference_class(torch_class)):
        param = nn.Parameter(torch.randn(3, 2, dtype=torch.complex64))
        param.grad = torch.randn_like(param)
        with pytest.raises(RuntimeError, match=f"{name} does not support complex parameters"):
            optimizer_class([param]).step()


def error_inputs(name):
    return optim_info(RULES[name][1]).optim_error_inputs_func("cpu", torch.float32)


ERROR_CASES = [
    pytest.param(name, index, id=f"{name}-{error.optimizer_error_input.desc}")
    for name in RULES
    for index, error in enumerate(error_inputs(name))
]


def raises_as_torch_says(optimizer_class, error_input):
    """Construct (and step, for a STEP_ERROR) as the error input says; it must raise/warn as torch does."""
    optimizer_input = error_input.optimizer_error_input
    params = optimizer_input.params
    if params is None:
        params = [nn.Parameter(torch.randn(2, 2))]
    expect = pytest.warns if issubclass(error_input.error_type, Warning) else pytest.raises
    if error_input.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
        with expect(error_input.error_type, match=error_input.error_regex):
            optimizer_class(params, **optimizer_input.kwargs)
    else:
        optimizer = optimizer_class(params, **optimizer_input.kwargs)
        with expect(error_input.error_type, match=error_input.error_regex):
            optimizer.step()


@pytest.mark.parametrize("name, index", ERROR_CASES)
def test_torch_optim_db_error_inputs_raise_as_in_torch(name, index):
    gdlab_class, torch_class = RULES[name][:2]
    raises_as_torch_says(reference_class(torch_class), error_inputs(name)[index])  # the case is what torch does
    raises_as_torch_says(gdlab_class, error_inputs(name)[index])


INVALID = [
    ("Muon", {"lr": -0.1}, "Learning rate should be >= 0 but is: -0.1"),
    ("Muon", {"momentum": -0.5}, "momentum should be >= 0 but is: -0.5"),
    ("Muon", {"weight_decay": -1.0}, "weight decay should be >= 0 but is: -1.0"),
    ("Muon", {"adjust_lr_fn": "sqrt"}, "Adjust learning rate function sqrt is not supported"),
    ("Adafactor", {"lr": float("nan")}, "Learning rate should be >= 0 but is: nan"),
    ("Adafactor", {"eps": (None, -1.0)}, "epsilon2 should be >= 0 but is: -1.0"),
    ("Adafactor", {"weight_decay": -0.1}, "weight_decay should be >= 0 but is: -0.1"),
    ("Adafactor", {"d": 0.5}, "Clipping threshold d should be >= 1 but is: 0.5"),
]


@pytest.mark.parametrize("name, arguments, message", INVALID)
def test_invalid_hyperparameters_are_refused_as_torch_does_in_added_groups_too(name, arguments, message):
    gdlab_class, torch_class = RULES[name][:2]
    for optimizer_class in (gdlab_class, reference_class(torch_class)):
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            optimizer_class([nn.Parameter(torch.randn(2, 2))], **arguments)
    optimizer = gdlab_class([nn.Parameter(torch.randn(2, 2))])
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        optimizer.add_param_group({"params": [nn.Parameter(torch.randn(2, 2))], **arguments})
    assert len(optimizer.param_groups) == 1


def test_muon_refuses_a_vector_added_later_and_keeps_its_groups():
    optimizer = Muon([nn.Parameter(torch.randn(2, 2))])
    with pytest.raises(ValueError, match=r"Muon only supports 2D parameters .* torch.Size\(\[3\]\)"):
        optimizer.add_param_group({"params": [nn.Parameter(torch.randn(3))]})
    assert len(optimizer.param_groups) == 1


@pytest.mark.parametrize(
    "arguments, message",
    [({"ns_steps": 100}, "Number of steps must be less than 100"),
     ({"ns_coefficients": (3.4, -4.7)}, "Coefficients must be a tuple of exactly 3 values")],
)
def test_muon_refuses_newton_schulz_settings_at_the_step_as_torch_does(arguments, message):
    for optimizer_class in (Muon, torch.optim.Muon):
        param = nn.Parameter(torch.randn(3, 2))
        param.grad = torch.randn_like(param)
        optimizer = optimizer_class([param], **arguments)
        with pytest.raises(ValueError, match=message):
            optimizer.step()


@pytest.mark.parametrize("name", RULES)
def test_sparse_gradients_are_refused_as_torch_does(name):
    gdlab_class, torch_class = RULES[name][:2]
    for optimizer_class in (gdlab_class, reference_class(torch_class)):
        param = nn.Parameter(torch.randn(3, 3))
        param.grad = torch.randn(3, 3).to_sparse()
        with pytest.raises(RuntimeError, match=f"{name} does not support sparse gradients"):
            optimizer_class([param]).step()


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_in_bfloat16_matches_torch_where_the_buffer_itself_is_orthogonalized(nesterov):
    """With bfloat16 parameters and no Nesterov term, torch orthogonalizes the momentum buffer in place
    (``.bfloat16()`` of a bfloat16 tensor is the tensor); the rule from scratch does the same."""
    params, reference_params = db_params("Muon", torch.bfloat16), db_params("Muon", torch.bfloat16)
    run_on_lists(Muon(params, lr=0.02, nesterov=nesterov), params, 10)
    run_on_lists(torch.optim.Muon(reference_params, lr=0.02, nesterov=nesterov), reference_params, 10)
    assert all(torch.equal(a, b) for a, b in zip(params, reference_params, strict=True))


# The declaration: init/update on lists of tensors, the schema, the variants.

UPDATE_HPARAMS = {
    "Muon": {"lr": 0.02, "weight_decay": 0.05, "momentum": 0.9, "nesterov": False,
             "ns_coefficients": (3.4, -4.7, 2.0), "eps": 1e-6, "ns_steps": 6, "adjust_lr_fn": "match_rms_adamw"},
    "Adafactor": {"lr": 0.02, "beta2_decay": -0.7, "eps": (1e-30, 1e-3), "d": 1.5, "weight_decay": 0.1,
                  "foreach": None, "maximize": True},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", ["declared defaults", "every class argument"])
@pytest.mark.parametrize("name", RULES)
def test_rule_init_and_update_on_lists_equal_the_class(name, which, dtype):
    rule = MODULES[name].RULE
    hparams = rule.defaults() if which == "declared defaults" else UPDATE_HPARAMS[name]
    params, list_params = db_params(name, dtype), db_params(name, dtype)
    optimizer = RULES[name][0](params, **hparams)
    state = rule.init(list_params, hparams)
    for _ in range(20):
        optimizer.zero_grad()
        db_loss(params).backward()
        optimizer.step()
        grads = torch.autograd.grad(db_loss(list_params), list_params)
        with torch.no_grad():
            rule.update(list_params, list(grads), state, **hparams)
    for index, (param, list_param) in enumerate(zip(params, list_params, strict=True)):
        assert torch.equal(param, list_param)
        class_state = optimizer.state[param]
        for key in state._fields:
            value = getattr(state, key)[index]
            assert (key in class_state) == (value is not None), key
            if value is not None:
                assert torch.equal(value, class_state[key]) and value.dtype == class_state[key].dtype, key


@pytest.mark.parametrize("name", RULES)
def test_declaration_matches_the_class_signature_and_is_registered(name):
    import inspect

    gdlab_class, torch_class = RULES[name][:2]
    rule = MODULES[name].RULE
    assert registry.get(rule.name) is rule and registry.by_optimizer(torch_class) is rule
    assert rule.optimizer is gdlab_class and rule.reference is torch_class
    signature = inspect.signature(gdlab_class.__init__).parameters
    assert list(signature) == list(inspect.signature(torch_class.__init__).parameters)
    for argument, parameter in signature.items():
        assert parameter.default == inspect.signature(torch_class.__init__).parameters[argument].default
    for hyperparameter in rule.hyperparameters:
        assert signature[hyperparameter.name].default == hyperparameter.default
    assert rule.stackable is False
    rule.reference([nn.Parameter(torch.randn(2, 2))], **rule.reference_kwargs)
    for settings in rule.verify_grid:
        rule.optimizer([nn.Parameter(torch.randn(2, 2))], **settings)


def test_muon_unadjusted_lr_variant_differs_only_for_tall_matrices():
    rule = muon_rule.RULE
    (variant,) = rule.variants
    hparams = rule.defaults()
    for shape, differs in (((4, 6), False), ((6, 4), True)):
        reference = torch.randn(shape, dtype=torch.float64)
        candidate = reference.clone()
        grad = torch.randn(shape, dtype=torch.float64)
        rule.update([reference], [grad], rule.init([reference], hparams), **hparams)
        variant.update([candidate], [grad], rule.init([candidate], hparams), **hparams)
        assert torch.equal(reference, candidate) is not differs, shape


def test_adafactor_paper_epsilon_variant_is_close_with_a_tiny_epsilon_and_not_with_a_large_one():
    rule = adafactor_rule.RULE
    (variant,) = rule.variants
    for eps1, close in ((1e-30, True), (1e-2, False)):
        hparams = {**rule.defaults(), "eps": (eps1, 1e-3)}
        reference, candidate = db_params("Adafactor", torch.float64), db_params("Adafactor", torch.float64)
        states = rule.init(reference, hparams), rule.init(candidate, hparams)
        for _ in range(5):
            runs = ((reference, rule.update, states[0]), (candidate, variant.update, states[1]))
            for params, update, state in runs:
                grads = [grad * 0.1 for grad in torch.autograd.grad(db_loss(params), params)]
                with torch.no_grad():
                    update(params, grads, state, **hparams)
        assert not all(torch.equal(a, b) for a, b in zip(reference, candidate))
        assert all(torch.allclose(a, b, rtol=1e-9, atol=0) for a, b in zip(reference, candidate)) is close


@pytest.mark.parametrize(
    "dtypes", [(torch.float64,), (torch.float32,), (torch.float64, torch.float32), (torch.float32, torch.float64)]
)
def test_adafactor_default_epsilon1_is_the_first_parameters_machine_epsilon_as_in_torch(dtypes):
    """With eps1 None and gradients near machine precision the bound on the variance decides the step;
    torch takes eps1 from the group's first parameter's dtype and keeps it for the rest of the group."""

    def run(optimizer_class):
        generator = torch.Generator().manual_seed(5)
        params = [nn.Parameter(torch.randn(3, 4, dtype=dtype, generator=generator)) for dtype in dtypes]
        params += [nn.Parameter(torch.randn(4, dtype=dtype, generator=generator)) for dtype in dtypes]
        optimizer = optimizer_class(params, lr=0.05)
        for _ in range(6):
            for param in params:
                param.grad = torch.randn(param.shape, generator=generator).to(param.dtype) * 1e-9
            optimizer.step()
        return params

    ours, theirs = run(Adafactor), run(reference_class(torch.optim.Adafactor))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
