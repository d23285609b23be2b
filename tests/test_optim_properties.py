"""Property tests: for hyperparameters and step counts drawn by hypothesis, gdlab's
optimizers give torch.equal parameters to torch.optim's foreach=False.

Gradients are random (of a drawn scale, so eps matters in some draws and not in
others) and fed identically to both optimizers; several parameter shapes,
including a scalar. The lr (and Adam's betas) is drawn as a number or as a
1-element float32 tensor, which torch's classes take too.
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gdlab.optim



SHAPES = [(4, 3), (3,), (2, 2, 2), ()]
PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)

steps = st.integers(min_value=1, max_value=80)
dtypes = st.sampled_from([torch.float32, torch.float64])
seeds = st.integers(min_value=0, max_value=2**31 - 1)
grad_scales = st.sampled_from([1e-4, 1.0, 1e3])
learning_rates = st.floats(min_value=0.0, max_value=0.5)
weight_decays = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=0.1))
decays = st.floats(min_value=0.0, max_value=0.999)
epsilons = st.sampled_from([0.0, 1e-10, 1e-8, 1e-3])
as_tensors = st.booleans()


def with_tensors(hyperparameters, draw, keys=("lr",)):
    """Maybe (a drawn choice) the hyperparameters ``keys`` as 1-element float32 tensors."""
    if not draw(as_tensors):
        return hyperparameters
    tensor = lambda value: torch.tensor(value, dtype=torch.float32).reshape(draw(st.sampled_from([(), (1,)])))
    return {
        key: (tuple(tensor(item) for item in value) if key == "betas" else tensor(value)) if key in keys else value
        for key, value in hyperparameters.items()
    }


def bit_equal(a, b):
    """Equal bit for bit: like torch.equal, but a NaN or infinity (which some draws
    reach, e.g. centered RMSprop with alpha = 0 divides by eps) must match too."""
    as_int = {torch.float32: torch.int32, torch.float64: torch.int64}[a.dtype]
    return a.dtype == b.dtype and torch.equal(a.detach().view(as_int), b.detach().view(as_int))


def assert_exact_for(gdlab_class, torch_class, hyperparameters, n_steps, dtype, seed, grad_scale):
    generator = torch.Generator().manual_seed(seed)
    initial = [torch.randn(shape, generator=generator, dtype=dtype) for shape in SHAPES]
    params = [p.clone().requires_grad_() for p in initial]
    reference_params = [p.clone().requires_grad_() for p in initial]
    optimizer = gdlab_class(params, **hyperparameters)
    reference_optimizer = torch_class(reference_params, foreach=False, **hyperparameters)
    for step in range(n_steps):
        for param, reference in zip(params, reference_params):
            grad = torch.randn(param.shape, generator=generator, dtype=dtype) * grad_scale
            param.grad, reference.grad = grad.clone(), grad.clone()
        optimizer.step()
        reference_optimizer.step()
        for index, (param, reference) in enumerate(zip(params, reference_params)):
            assert bit_equal(param, reference), (
                f"{gdlab_class.__name__}{hyperparameters}, {dtype}: parameter {index} "
                f"differs after step {step + 1}"
            )


@st.composite
def sgd_hyperparameters(draw):
    momentum = draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=0.99)))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0)))
    return with_tensors({
        "lr": draw(learning_rates),
        "momentum": momentum,
        "dampening": dampening,
        "nesterov": nesterov,
        "weight_decay": draw(weight_decays),
        "maximize": draw(st.booleans()),
    }, draw)


@st.composite
def adam_hyperparameters(draw):
    return with_tensors({
        "lr": draw(st.floats(min_value=0.0, max_value=0.1)),
        "betas": (draw(decays), draw(decays)),
        "eps": draw(epsilons),
        "weight_decay": draw(weight_decays),
        "amsgrad": draw(st.booleans()),
        "maximize": draw(st.booleans()),
    }, draw, keys=draw(st.sampled_from([("lr",), ("betas",), ("lr", "betas")])))


@st.composite
def rmsprop_hyperparameters(draw):
    return with_tensors({
        "lr": draw(st.floats(min_value=0.0, max_value=0.1)),
        "alpha": draw(decays),
        "eps": draw(epsilons.filter(lambda eps: eps > 0)),
        "weight_decay": draw(weight_decays),
        "momentum": draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=0.99))),
        "centered": draw(st.booleans()),
        "maximize": draw(st.booleans()),
    }, draw)


@st.composite
def adagrad_hyperparameters(draw):
    return with_tensors({
        "lr": draw(st.floats(min_value=0.0, max_value=0.5)),
        "lr_decay": draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1.0))),
        "weight_decay": draw(weight_decays),
        "initial_accumulator_value": draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1.0))),
        "eps": draw(epsilons.filter(lambda eps: eps > 0)),
        "maximize": draw(st.booleans()),
    }, draw)


@PROPERTY_SETTINGS
@given(sgd_hyperparameters(), steps, dtypes, seeds, grad_scales)
def test_sgd_matches_torch(hyperparameters, n_steps, dtype, seed, grad_scale):
    assert_exact_for(gdlab.optim.SGD, torch.optim.SGD, hyperparameters, n_steps, dtype, seed, grad_scale)


@PROPERTY_SETTINGS
@given(adam_hyperparameters(), steps, dtypes, seeds, grad_scales)
def test_adam_matches_torch(hyperparameters, n_steps, dtype, seed, grad_scale):
    assert_exact_for(gdlab.optim.Adam, torch.optim.Adam, hyperparameters, n_steps, dtype, seed, grad_scale)


@PROPERTY_SETTINGS
@given(adam_hyperparameters(), steps, dtypes, seeds, grad_scales)
def test_adamw_matches_torch(hyperparameters, n_steps, dtype, seed, grad_scale):
    assert_exact_for(gdlab.optim.AdamW, torch.optim.AdamW, hyperparameters, n_steps, dtype, seed, grad_scale)


@PROPERTY_SETTINGS
@given(rmsprop_hyperparameters(), steps, dtypes, seeds, grad_scales)
def test_rmsprop_matches_torch(hyperparameters, n_steps, dtype, seed, grad_scale):
    assert_exact_for(gdlab.optim.RMSprop, torch.optim.RMSprop, hyperparameters, n_steps, dtype, seed, grad_scale)


@PROPERTY_SETTINGS
@given(adagrad_hyperparameters(), steps, dtypes, seeds, grad_scales)
def test_adagrad_matches_torch(hyperparameters, n_steps, dtype, seed, grad_scale):
    assert_exact_for(gdlab.optim.Adagrad, torch.optim.Adagrad, hyperparameters, n_steps, dtype, seed, grad_scale)
