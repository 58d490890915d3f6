"""``ResShiftScheduler``: the residual-shift bridge from the degraded image y to the clean image x.

ResShift (Yue et al., NeurIPS 2023) in pixel units with InDI's continuous time (spire-tiny's design note, §4).
With η(t) = t on (0, 1] and a small κ:

    x_t = x₀ + η_t·(y − x₀) + κ·√η_t·ε,   ε ~ N(0, I);   at t = 1 the start is y + κ·ε

The network predicts x₀ (here: a residual, x̂₀ = x_t + D(x_t)). Sampling with K steps at η_k = t_stop +
(1 − t_stop)·k/K, from k = K down:

* deterministic (DDIM-like): ε̂ = (x_k − x̂₀ − η_k(y − x̂₀)) / (κ√η_k);  x_{k−1} = x̂₀ + η_{k−1}(y − x̂₀) + κ√η_{k−1}·ε̂
* stochastic (the posterior q(x_{k−1} | x_k, x₀) of ResShift's Eq. 7):
  x_{k−1} = (η_{k−1}/η_k)·x_k + (1 − η_{k−1}/η_k)·x̂₀ + κ·√(η_{k−1}(η_k − η_{k−1})/η_k)·ξ

The last step returns the noise-free bridge point x̂₀ + t_stop·(y − x̂₀): the whole restoration x̂₀ when
t_stop = 0, and a partial one otherwise (``strength`` = 1 − t_stop in the pipeline).

The network's timestep input is its Gaussian noise level in thousandths, 1000·κ·√η (``timestep_scale``), the same
convention the prior was trained with (x + σε at timestep 1000·σ), so the frozen prior reads the bridge's noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

__all__ = ["ResShiftScheduler", "ResShiftSchedulerOutput", "noise_timestep"]


def noise_timestep(sigma: torch.Tensor | float, scale: float = 1000.0) -> torch.Tensor:
    """The network's timestep input for Gaussian noise of std ``sigma`` (pixel units, images in [0, 1])."""
    return torch.as_tensor(sigma, dtype=torch.float32) * scale


@dataclass
class ResShiftSchedulerOutput(BaseOutput):
    """prev_sample: x_{k−1}, (B, C, h, w); pred_original_sample: x̂₀ of this step, same shape."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class ResShiftScheduler(SchedulerMixin, ConfigMixin):
    """The residual-shift bridge y -> x₀ with a deterministic or a stochastic step (module docstring).

    Args:
        kappa: κ, the noise scale of the bridge (pixel units; the start is y + κ·ε).
        prediction_type: "residual" (the network gives x̂₀ − x_t, spire-tiny's prior) or "sample" (x̂₀ itself).
        stochastic: the posterior step instead of the deterministic one.
        timestep_scale: network timestep = timestep_scale · κ · √η.
    """

    order = 1
    starts_from_condition = True  # the pipeline starts the loop at y, not at noise

    @register_to_config
    def __init__(
        self,
        kappa: float = 0.05,
        prediction_type: Literal["residual", "sample"] = "residual",
        stochastic: bool = False,
        timestep_scale: float = 1000.0,
    ) -> None:
        if not kappa > 0:
            raise ValueError(f"kappa must be > 0 (the timestep input carries κ√η), got {kappa}")
        if prediction_type not in ("residual", "sample"):
            raise ValueError(f"prediction_type must be 'residual' or 'sample', got {prediction_type!r}")
        self.init_noise_sigma = 1.0
        self.etas = torch.tensor([1.0, 0.0])
        self.timesteps = self.timestep_for(self.etas[:1])
        self.num_inference_steps: int | None = None
        self._step_index = 0

    # -------------------------------------------------------------------------------- schedule

    def timestep_for(self, eta: torch.Tensor | float) -> torch.Tensor:
        """Network timestep(s) for bridge time(s) η in (0, 1]."""
        return noise_timestep(self.config.kappa * torch.as_tensor(eta, dtype=torch.float32).sqrt(),
                              self.config.timestep_scale)  # fmt: skip

    def set_timesteps(
        self, num_inference_steps: int, device: torch.device | str | None = None, t_stop: float = 0.0
    ) -> None:
        """K = num_inference_steps steps from η = 1 to η = t_stop (0: the full restoration)."""
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if not 0.0 <= t_stop < 1.0:
            raise ValueError(
                f"t_stop must be in [0, 1), got {t_stop} (strength = 1 − t_stop must be in (0, 1])"
            )
        self.num_inference_steps = num_inference_steps
        self.etas = torch.linspace(1.0, t_stop, num_inference_steps + 1, dtype=torch.float64).float()
        self.timesteps = self.timestep_for(self.etas[:-1]).to(device)
        self._step_index = 0

    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor | None = None) -> torch.Tensor:
        return sample

    # -------------------------------------------------------------------------------- forward process

    def start(
        self, condition: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None = None
    ) -> torch.Tensor:
        """x at η = 1: y + κ·ε. condition: y, (B, C, h, w) in the model's space."""
        noise = randn_tensor(
            condition.shape, generator=generator, device=condition.device, dtype=condition.dtype
        )
        return condition + self.config.kappa * noise

    def add_noise(
        self, original_samples: torch.Tensor, condition: torch.Tensor, noise: torch.Tensor, etas: torch.Tensor
    ) -> torch.Tensor:
        """x_η = x₀ + η(y − x₀) + κ√η·ε for training. etas: (B,) in [0, 1]."""
        eta = etas.to(original_samples).view(-1, *([1] * (original_samples.dim() - 1)))
        return (
            original_samples + eta * (condition - original_samples) + self.config.kappa * eta.sqrt() * noise
        )

    # -------------------------------------------------------------------------------- reverse step

    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | float,
        sample: torch.Tensor,
        condition: torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> ResShiftSchedulerOutput | tuple:
        """One step from η_k to η_{k−1} (steps are taken in the order of ``timesteps``).

        Args:
            model_output: the network's output at x_k (a residual or x̂₀, per ``prediction_type``).
            timestep: the current network timestep (for the diffusers interface; the step index decides η).
            sample: x_k, (B, C, h, w).
            condition: y in the model's space; needed by the deterministic step and by a partial last step.
            generator: randomness of the stochastic step.
        """
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps before step")
        if self._step_index >= self.num_inference_steps:
            raise ValueError(f"all {self.num_inference_steps} steps are taken; call set_timesteps again")
        eta, eta_prev = float(self.etas[self._step_index]), float(self.etas[self._step_index + 1])
        kappa = self.config.kappa
        x0 = sample + model_output if self.config.prediction_type == "residual" else model_output
        last = self._step_index == self.num_inference_steps - 1
        needs_condition = (last and eta_prev > 0) or (not last and not self.config.stochastic)
        if needs_condition and condition is None:
            raise ValueError("this ResShift step needs condition= (y in the model's space)")
        if last:
            prev = x0 if eta_prev == 0 else x0 + eta_prev * (condition - x0)
        elif self.config.stochastic:
            ratio = eta_prev / eta
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            std = kappa * (eta_prev * (eta - eta_prev) / eta) ** 0.5
            prev = ratio * sample + (1 - ratio) * x0 + std * noise
        else:
            eps = (sample - x0 - eta * (condition - x0)) / (kappa * eta**0.5)
            prev = x0 + eta_prev * (condition - x0) + kappa * eta_prev**0.5 * eps
        self._step_index += 1
        if not return_dict:
            return (prev, x0)
        return ResShiftSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def __len__(self) -> int:
        return self.num_inference_steps or 1
