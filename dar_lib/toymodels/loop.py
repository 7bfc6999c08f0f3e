"""The optimisation loop pieces shared by the toy trainers: a warm-up + cosine schedule and one step."""

from __future__ import annotations

import math

import torch


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int, floor: float = 0.0):
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor`` x the peak rate."""
    warmup = min(warmup, max(1, steps // 5))

    def factor(s: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps))))
        return min(1.0, (s + 1) / warmup) * (floor + (1 - floor) * cosine)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def step(opt: torch.optim.Optimizer, sched, params, loss: torch.Tensor, max_norm: float = 1.0) -> float:
    """Backpropagate ``loss``, clip gradients, step optimiser and schedule; return the loss value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()
    sched.step()
    return float(loss.detach())
