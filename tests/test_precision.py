"""Mixed precision and channels_last, as study options: the forward pass changes, the rule does not.

``[train] precision = "bf16"`` runs the forward pass and the loss under
``torch.autocast`` in bfloat16 (torch's AMP recipe); parameters, gradients and
the update rule stay float32, so gdlab's rule and torch's stay bit-equal.
``memory_format = "channels_last"`` lays out a ConvNet's weights and every
batch as GPU convolution kernels prefer. Both run here on the CPU; the GPU
timings belong to the device benchmark.
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from study_files import write_study

import gdlab.optim
from gdlab.data import TensorLoader
from gdlab.errors import GdlabError
from gdlab.models import ConvNet
from gdlab.study import load_study, run_study
from gdlab.study.backends import plan_jobs
from gdlab.study.search import plan_runs
from gdlab.train import evaluate, fit
from test_study_run import quiet


def images(count=96, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 1, 27, 27, generator=generator), torch.randint(0, 3, (count,), generator=generator)


def small_convnet():
    torch.manual_seed(0)
    return ConvNet(batchnorm=True, num_classes=3, in_channels=1, image_size=27, width=4)


def test_bf16_autocast_runs_the_convolutions_in_bfloat16_and_keeps_parameters_and_gradients_float32():
    x, y = images()
    model = small_convnet()
    seen = []
    model.features[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    optimizer = gdlab.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = fit(model, optimizer, TensorLoader(x, y, batch_size=32, seed=1), epochs=2, autocast=torch.bfloat16,
                  val_loader=TensorLoader(x, y, batch_size=48, shuffle=False))
    assert set(seen) == {torch.bfloat16}
    assert all(param.dtype == torch.float32 and param.grad.dtype == torch.float32 for param in model.parameters())
    assert all(torch.isfinite(torch.tensor(history.iteration_loss)))
    # The same run in full precision: other losses (bfloat16 keeps 8 bits of mantissa), but close ones.
    full = fit(small_convnet(), gdlab.optim.SGD(small_convnet().parameters(), lr=0.05, momentum=0.9),
               TensorLoader(x, y, batch_size=32, seed=1), epochs=1)
    assert history.iteration_loss[0] != full.iteration_loss[0]
    assert history.iteration_loss[0] == pytest.approx(full.iteration_loss[0], rel=0.05)


@pytest.mark.parametrize("rule, reference", [
    (lambda params: gdlab.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3),
     lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3, foreach=False)),
    (lambda params: gdlab.optim.AdamW(params, lr=1e-3), lambda params: torch.optim.AdamW(params, lr=1e-3, foreach=False)),
])
def test_under_autocast_the_rule_stays_bit_equal_to_torchs(rule, reference):
    x, y = images()
    scratch, twin = small_convnet(), small_convnet()
    for model, optimizer in ((scratch, rule(scratch.parameters())), (twin, reference(twin.parameters()))):
        fit(model, optimizer, TensorLoader(x, y, batch_size=32, seed=1), epochs=3, autocast=torch.bfloat16)
    for mine, torchs in zip(scratch.parameters(), twin.parameters()):
        assert torch.equal(mine, torchs)


def test_evaluate_under_autocast_measures_what_the_bfloat16_forward_gives():
    x, y = images()
    model = small_convnet().eval()
    loader = TensorLoader(x, y, batch_size=48, shuffle=False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.cross_entropy(model(x), y).item()
    assert evaluate(model, loader, autocast=torch.bfloat16)["loss"] == pytest.approx(expected, rel=1e-6)
    assert evaluate(model, loader)["loss"] != pytest.approx(expected, rel=1e-6)


CONVNET_STUDY = '''
name = "precision"
[data]
dataset = "mnist-5k"
train_examples = 200
[model]
kind = "convnet"
width = 4
batchnorm = false
[train]
epochs = 1
batch_size = 50
precision = "bf16"
memory_format = "channels_last"
[optimizer]
lr = [0.02, 0.05]
momentum = 0.9
implementation = "both"
'''


def test_a_convnet_study_in_bf16_and_channels_last_trains_its_pairs_equal_and_is_never_stacked(tmp_path):
    path = tmp_path / "precision.toml"
    path.write_text(CONVNET_STUDY)
    spec = load_study(path)
    # A ConvNet without BatchNorm stacks; the stacked passes run in full precision on contiguous
    # tensors, so with either option it does not.
    scratch = CONVNET_STUDY.replace('implementation = "both"', 'implementation = "scratch"')
    for option, default in (('precision = "bf16"', ""), ('memory_format = "channels_last"', "")):
        (tmp_path / "one.toml").write_text(scratch.replace(option, default))
        assert plan_jobs(plan_runs(load_study(tmp_path / "one.toml")), "auto")[0] == "sequential", option
    (tmp_path / "neither.toml").write_text(
        scratch.replace('precision = "bf16"', "").replace('memory_format = "channels_last"', ""))
    assert plan_jobs(plan_runs(load_study(tmp_path / "neither.toml")), "auto")[0] == "vectorized"
    summary = run_study(spec, out_dir=tmp_path / "out", backend="auto", console=quiet())
    assert [pair["max_loss_difference"] for pair in summary["pairs"]] == [0.0, 0.0]
    assert summary["selected"] is not None and 0.0 <= summary["selected"]["test_accuracy"] <= 1.0
    # The settings are part of every run's identity: the same folder refuses a full-precision resume.
    full = tmp_path / "full.toml"
    full.write_text(CONVNET_STUDY.replace('precision = "bf16"', 'precision = "full"'))
    with pytest.raises(GdlabError, match=r"train.precision: 'bf16' -> 'full'"):
        run_study(full, out_dir=tmp_path / "out", resume=True, console=quiet())


def test_channels_last_gives_the_model_and_every_batch_that_layout(tmp_path):
    from gdlab.study.execute import data_for, new_model
    from gdlab.study.problem import eval_loader, train_loader

    path = tmp_path / "precision.toml"
    path.write_text(CONVNET_STUDY)
    plan = plan_runs(load_study(path))[0]
    data = data_for(plan)
    model = new_model(plan, data)
    convolution = next(module for module in model.modules() if isinstance(module, torch.nn.Conv2d))
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
    for loader in (train_loader(data, plan.settings.train, plan.seed),
                   eval_loader(data.val_x, data.val_y, plan.settings.train)):
        x, _ = next(iter(loader))
        assert x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("extra, message", [
    ('precision = "bf16"\ndtype = "float64"', r"precision = 'bf16' .* dtype = 'float64'; set dtype = 'float32'"),
    ('precision = "bf16"\nengine = "fast"', r"precision = 'bf16' needs autograd .* engine = 'fast'"),
    ('memory_format = "channels_last"', r"memory_format = 'channels_last' .* kind = 'mlp' has no convolutions"),
])
def test_settings_that_cannot_go_together_are_refused_naming_both(tmp_path, extra, message):
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace("batch_size = 64", "batch_size = 64\n" + extra))
    with pytest.raises(GdlabError, match=message):
        load_study(path)


def test_an_axis_value_that_cannot_go_with_the_rest_is_refused_too(tmp_path):
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace("batch_size = 64", 'batch_size = 64\nprecision = ["full", "bf16"]\ndtype = "float64"'))
    with pytest.raises(GdlabError, match=r"precision = 'bf16'"):
        load_study(path)


def test_a_researchers_own_optimizer_class_trains_in_bf16_with_its_state_in_float32(tmp_path):
    # examples/lion_optimizer.py is written as a researcher writes one: a torch.optim.Optimizer subclass.
    lion = Path(__file__).resolve().parents[1] / "examples" / "lion_optimizer.py"
    path = write_study(tmp_path, lr="[1e-4, 3e-4]", momentum="0.0", epochs=1)
    text = path.read_text().replace('name = "sgd"', f'name = "{lion}:Lion"').replace("momentum = 0.0\n", "")
    path.write_text(text.replace("batch_size = 64", 'batch_size = 64\nprecision = "bf16"'))
    summary = run_study(load_study(path), out_dir=tmp_path / "out", console=quiet())
    assert [run["status"] for run in summary["runs"]] == ["ok", "ok"]
    state = torch.load(tmp_path / "out" / "models" / f"{summary['runs'][0]['id']}.pt", weights_only=True)
    assert all(tensor.dtype == torch.float32 for tensor in state.values())
