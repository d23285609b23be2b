"""Channel statistics, normalization and the random horizontal flip."""

import pytest
import torch

from gdlab.data import channel_stats, normalize, random_horizontal_flip
from gdlab.errors import GdlabError

CIFAR_MEAN = (0.4915, 0.4823, 0.4468)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _images(n=64, channels=3, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)


def test_channel_stats_match_float64_reductions():
    x = _images(n=50)
    x[:, 1] //= 3  # channels with different statistics
    mean, std = channel_stats(x)
    as_float = x.double() / 255
    expected_mean = as_float.mean(dim=(0, 2, 3))
    expected_std = as_float.std(dim=(0, 2, 3), correction=0)
    assert len(mean) == len(std) == 3 and all(isinstance(value, float) for value in mean + std)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), expected_mean, rtol=0, atol=1e-12)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), expected_std, rtol=0, atol=1e-12)


def test_channel_stats_of_known_values():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    assert channel_stats(x) == ((0.5,), (0.5,))
    constant = torch.full((4, 2, 3, 3), 51, dtype=torch.uint8)
    assert channel_stats(constant) == ((0.2, 0.2), (0.0, 0.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_is_bit_identical_to_totensor_then_normalize(dtype):
    # torchvision: ToTensor() -> img.to(dtype).div(255); Normalize -> tensor.sub_(mean).div_(std)
    x = _images()
    out = normalize(x, CIFAR_MEAN, CIFAR_STD, dtype=dtype)
    for index in (0, 17, 63):
        reference = x[index].to(dtype).div(255)
        mean = torch.as_tensor(CIFAR_MEAN, dtype=dtype).view(-1, 1, 1)
        std = torch.as_tensor(CIFAR_STD, dtype=dtype).view(-1, 1, 1)
        assert torch.equal(out[index], reference.sub_(mean).div_(std))
    assert out.dtype == dtype and out.shape == x.shape


def test_normalize_with_training_stats_gives_zero_mean_unit_std():
    x = _images(n=200)
    mean, std = channel_stats(x)
    out = normalize(x, mean, std, dtype=torch.float64)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), atol=1e-12)


def test_normalize_scalar_stats_for_grayscale_and_leaves_input_alone():
    x = _images(channels=1)
    before = x.clone()
    out = normalize(x, 0.5, 0.25)
    assert torch.equal(out, (x.float() / 255 - 0.5) / 0.25)
    assert torch.equal(x, before) and x.dtype == torch.uint8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mean": (0.5, 0.5), "std": CIFAR_STD}, r"mean has 2 values \(0.5, 0.5\) but the images have 3 channels"),
        ({"mean": CIFAR_MEAN, "std": (0.2, 0.0, 0.2)}, r"std must be positive in every channel, got \(0.2, 0.0, 0.2\)"),
        ({"mean": "abc", "std": CIFAR_STD}, r"mean must be a number or one number per channel, got 'abc'"),
        ({"mean": CIFAR_MEAN, "std": CIFAR_STD, "dtype": torch.int32}, r"dtype must be a floating-point dtype"),
    ],
)
def test_normalize_errors(kwargs, message):
    with pytest.raises(GdlabError, match=message):
        normalize(_images(), **kwargs)


def test_normalize_and_stats_need_uint8_nchw():
    with pytest.raises(GdlabError, match=r"normalize needs uint8 images of shape \(N, C, H, W\), got a torch.float32 tensor"):
        normalize(torch.zeros(2, 3, 4, 4), CIFAR_MEAN, CIFAR_STD)
    with pytest.raises(GdlabError, match=r"channel_stats needs uint8 images .* shape \(2, 784\)"):
        channel_stats(torch.zeros(2, 784, dtype=torch.uint8))


def test_flip_all_none_and_reproducible():
    x = _images(n=32)
    assert torch.equal(random_horizontal_flip(x, torch.Generator().manual_seed(0), p=1.0), x.flip(-1))
    assert torch.equal(random_horizontal_flip(x, torch.Generator().manual_seed(0), p=0.0), x)
    first = random_horizontal_flip(x, torch.Generator().manual_seed(5))
    again = random_horizontal_flip(x, torch.Generator().manual_seed(5))
    other = random_horizontal_flip(x, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_flip_mirrors_whole_images_with_probability_p():
    x = _images(n=4000, size=4)
    out = random_horizontal_flip(x, torch.Generator().manual_seed(1), p=0.3)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all())  # every image is either untouched or mirrored as a whole
    # the mask is the generator's first draws: u_i < p
    draws = torch.rand(4000, generator=torch.Generator().manual_seed(1))
    symmetric = (x == x.flip(-1)).flatten(1).all(1)
    assert torch.equal(flipped & ~symmetric, (draws < 0.3) & ~symmetric)
    assert abs(flipped.float().mean().item() - 0.3) < 0.03


def test_flip_errors():
    with pytest.raises(GdlabError, match=r"p must be a probability in \[0, 1\], got 1.5"):
        random_horizontal_flip(_images(), torch.Generator(), p=1.5)
    with pytest.raises(GdlabError, match=r"needs a torch.Generator .*got None"):
        random_horizontal_flip(_images(), None)
    with pytest.raises(GdlabError, match=r"needs a batch tensor"):
        random_horizontal_flip(torch.zeros(5), torch.Generator())
