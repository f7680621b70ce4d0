"""The network backbone vsremaster's own models share: a three-level residual U-Net.

``unet()`` returns the ``UNet`` class (torch is imported on first use, so the training package
imports without it): a 3×3 head, residual blocks (He et al., 2016) at full, 1/2 and 1/4
resolution, strided convolutions down, pixel shuffle up (Shi et al., 2016) with skip
additions, and a 3×3 tail initialised to zero (an untrained network outputs zeros, so a model
that adds the tail to a base estimate starts as that estimate). Height and width of the input
must be multiples of 4.
"""

from __future__ import annotations

import functools

__all__ = ["unet"]


@functools.cache
def unet():
    """The ``UNet(inputs, outputs, widths=(c1, c2, c3), blocks=(b1, b2, b3))`` class:
    ``(N, inputs, H, W) -> (N, outputs, H, W)``; ``features(x)`` gives the ``c1``-channel map
    before the tail."""
    import torch

    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.a = nn.Conv2d(c, c, 3, padding=1)
            self.b = nn.Conv2d(c, c, 3, padding=1)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            return x + self.b(self.act(self.a(x)))

    class UNet(nn.Module):
        def __init__(self, inputs: int, outputs: int, widths=(32, 64, 96),
                     blocks=(2, 2, 4)) -> None:
            super().__init__()
            c1, c2, c3 = widths
            self.head = nn.Conv2d(inputs, c1, 3, padding=1)
            self.enc1 = nn.Sequential(*[Block(c1) for _ in range(blocks[0])])
            self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
            self.enc2 = nn.Sequential(*[Block(c2) for _ in range(blocks[1])])
            self.down2 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
            self.mid = nn.Sequential(*[Block(c3) for _ in range(blocks[2])])
            self.up2 = nn.Sequential(nn.Conv2d(c3, c2 * 4, 3, padding=1), nn.PixelShuffle(2))
            self.dec2 = nn.Sequential(*[Block(c2) for _ in range(blocks[1])])
            self.up1 = nn.Sequential(nn.Conv2d(c2, c1 * 4, 3, padding=1), nn.PixelShuffle(2))
            self.dec1 = nn.Sequential(*[Block(c1) for _ in range(blocks[0])])
            self.tail = nn.Conv2d(c1, outputs, 3, padding=1)
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

        def features(self, x):
            x = torch.relu(self.head(x))
            s1 = self.enc1(x)
            s2 = self.enc2(torch.relu(self.down1(s1)))
            y = self.mid(torch.relu(self.down2(s2)))
            y = self.dec2(torch.relu(self.up2(y)) + s2)
            return self.dec1(torch.relu(self.up1(y)) + s1)

        def forward(self, x):
            return self.tail(self.features(x))

    return UNet
