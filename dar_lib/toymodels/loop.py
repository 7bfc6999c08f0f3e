"""The optimisation loop pieces shared by the toy trainers: warm-up + cosine schedule, one step, resumable checkpoints."""

from __future__ import annotations

import math

import torch


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int, floor: float = 0.0):
    """Linear warm-up over ``warmup`` steps (capped at ``max(1, steps // 5)``), then cosine decay to ``floor`` x the peak rate."""
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


class TrainingStopped(Exception):
    """Raised by a trainer asked to stop early (``stop_at``): the checkpoint is written, resume continues."""


class Checkpointer:
    """Save a trainer's whole state every ``every_s`` seconds, so ``dar train-toy --resume`` continues.

    The state holds the model, optimiser and schedule, the step, the losses so far and every random
    generator the loop draws from, so a resumed run takes the same batches, noise and dropout as an
    uninterrupted one would have.

    Args:
        path: the checkpoint file (``None``: never save, e.g. in quick tests).
        every_s: seconds between saves.
    """

    def __init__(self, path, every_s: float = 180.0):
        import time
        from pathlib import Path

        self.path = Path(path) if path is not None else None
        self.every_s = float(every_s)
        self._last = time.monotonic()
        #: ``() -> dict`` merged into every saved state (e.g. the stage's elapsed seconds).
        self.extra = None

    def load(self) -> dict | None:
        """The saved state, or ``None`` when there is none."""
        if self.path is None or not self.path.is_file():
            return None
        # Our own file, written by save(): plain tensors, numbers and RNG states (numpy's is a dict).
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def due(self) -> bool:
        """Whether to save now: a ``path`` is set and ``every_s`` seconds (monotonic clock) passed since the last save or construction."""
        import time

        return self.path is not None and time.monotonic() - self._last >= self.every_s

    def save(self, state: dict) -> None:
        """Write ``state`` atomically (a killed process leaves the previous checkpoint intact)."""
        import io
        import time

        from dar_lib.store import atomic_write_bytes

        if self.path is None:
            return
        if self.extra is not None:
            state = {**state, **self.extra()}
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.path, buf.getvalue())
        self._last = time.monotonic()

    def clear(self) -> None:
        """Remove the checkpoint (the stage finished and saved its model)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def rng_state(rng, gen) -> dict:
    """The states of a ``random.Random``, a numpy ``Generator`` and torch's global generator."""
    return {"python": rng.getstate(), "numpy": gen.bit_generator.state, "torch": torch.get_rng_state()}


def set_rng_state(state: dict, rng, gen) -> None:
    """Restore what :func:`rng_state` saved."""
    rng.setstate(state["python"])
    gen.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
