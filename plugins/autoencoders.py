"""Auto-encoders of seed 002: the fully connected AE and the VAE of pytorch/examples,
both on flattened 28x28 (MNIST-sized) inputs with a 400-unit hidden layer and 20 latents.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import harness
from harness import Dim, Input

HIDDEN = 400
LATENT = 20


@harness.register(
    "autoencoder",
    inputs=[Input("x", "(B, NIN)")],
    outputs=["(B, NIN)"],
    description="Fully connected auto-encoder NIN-400-400-20-400-400-NIN",
    family="autoencoder",
    tags=("autoencoder", "mlp", "unsupervised"),
    source="seed 002 (Auto-Encoder Neural Network slide)",
    dims={"NIN": Dim(784, kwarg="num_inputs")},
    batch_sizes=(1, 128),
)
class AE(nn.Module):
    """The slides' auto-encoder: squeeze the input through a 20-unit code and rebuild
    it, so it learns without labels."""

    def __init__(self, num_inputs: int = 784) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(num_inputs, HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, LATENT),
        )
        self.decoder = nn.Sequential(
            nn.Linear(LATENT, HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, num_inputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@harness.register(
    inputs=[Input("x", "(B, 784)")],
    outputs=["(B, 784)", "(B, 20)", "(B, 20)"],
    description="Variational auto-encoder 784-400-(20, 20)-400-784 (pytorch/examples)",
    family="autoencoder",
    tags=("autoencoder", "vae", "generative", "unsupervised"),
    source="seed 002 (Variational Auto-Encoder slide, pytorch/examples vae)",
    # No loss=: the VAE loss needs the input as reconstruction target, which a
    # loss over the outputs alone cannot see; the default mean of the three
    # outputs still back-propagates through every layer.
    batch_sizes=(1, 128),
)
class VAE(nn.Module):
    """The slides' VAE (pytorch/examples/vae): the encoder gives a Gaussian's mean and
    log-variance, a sample drawn with the reparameterisation trick is decoded.

    It samples in eval mode too, as the original does, so its output is random.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, HIDDEN)
        self.fc21 = nn.Linear(HIDDEN, LATENT)
        self.fc22 = nn.Linear(HIDDEN, LATENT)
        self.fc3 = nn.Linear(LATENT, HIDDEN)
        self.fc4 = nn.Linear(HIDDEN, 784)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``mu + sigma * eps``: the sample stays differentiable in ``mu`` and ``logvar``."""
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar
