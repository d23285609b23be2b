"""The 7-convolution network of the CIFAR-10 ablation notebook.

conv 3->w k3, five conv w->w k5, conv w->10 k5, each but the last followed by
BatchNorm (when ``batchnorm``) and every one by ReLU; then flatten and
fully connected 10*s*s -> 128 -> 64 -> classes. With the notebook's w = 100 and
32x32 inputs, s = 6 and the first FC layer is 360 -> 128. The last convolution
has no BatchNorm because the notebook's network has none there.
``width`` shrinks the network for CPU-sized studies; ``in_channels`` and
``image_size`` let it run on 1-channel 28x28 images (s = 2).
"""

import torch
from torch import nn

from gdlab.errors import GdlabError
from gdlab.models.init import init_parameters


class ConvNet(nn.Module):
    def __init__(
        self,
        batchnorm: bool = True,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        width: int = 100,
        init: str = "torch",
    ):
        super().__init__()
        kernels = [3, 5, 5, 5, 5, 5, 5]
        final_size = image_size - sum(k - 1 for k in kernels)
        if final_size < 1:
            raise GdlabError(
                f"ConvNet needs images of at least {sum(k - 1 for k in kernels) + 1} pixels a side, "
                f"got image_size={image_size}"
            )
        channels = [in_channels] + [width] * 6 + [10]
        blocks = []
        for index, kernel in enumerate(kernels):
            blocks.append(nn.Conv2d(channels[index], channels[index + 1], kernel))
            if batchnorm and index < len(kernels) - 1:
                blocks.append(nn.BatchNorm2d(channels[index + 1]))
            blocks.append(nn.ReLU())
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(10 * final_size * final_size, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )
        self.batchnorm = batchnorm
        init_parameters(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
