"""The convolutional autoencoder of the course exercise, as two submodules.

Shapes (channels-first inside PyTorch):
    wafer 3×26×26 → conv1 16×13×13 → conv2 32×7×7 → conv3 64×3×3 (latent)
    latent 64×3×3 → t_conv1 32×7×7 → t_conv2 16×14×14 → t_conv3 3×26×26 → sigmoid

The encoder and decoder are separate modules because they are exported as
two separate ONNX graphs: generation only runs the decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_infer.bundle import LATENT_SHAPE  # noqa: F401  (re-exported: the bundle format owns the latent shape)


class Encoder(nn.Module):
    """Wafer (N,3,26,26) → latent (N,64,3,3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.conv3(x)


class Decoder(nn.Module):
    """Latent (N,64,3,3) → per-die probabilities (N,3,26,26)."""

    def __init__(self) -> None:
        super().__init__()
        self.t_conv1 = nn.ConvTranspose2d(64, 32, kernel_size=5)
        self.t_conv2 = nn.ConvTranspose2d(32, 16, kernel_size=3, stride=2, padding=1, output_padding=1)
        self.t_conv3 = nn.ConvTranspose2d(16, 3, kernel_size=3, stride=2, padding=2, output_padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.t_conv1(z))
        z = torch.relu(self.t_conv2(z))
        return torch.sigmoid(self.t_conv3(z))


class ConvAutoencoder(nn.Module):
    """Encoder then decoder; ``forward`` reconstructs (N,3,26,26) maps."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
