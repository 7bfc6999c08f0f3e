"""The optimisation loop pieces shared by the toy trainers: warm-up + cosine schedule, one step, resumable checkpoints."""

from __future__ import annotations

import logging
import math

import torch

log = logging.getLogger(__name__)


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
        run: names the run (recipe, data, base weights); a saved state from another run is not loaded.
    """

    def __init__(self, path, every_s: float = 180.0, run: str | None = None):
        import time
        from pathlib import Path

        self.path = Path(path) if path is not None else None
        self.every_s = float(every_s)
        self.run = run
        self._last = time.monotonic()
        #: ``() -> dict`` merged into every saved state (e.g. the stage's elapsed seconds).
        self.extra = None

    def load(self) -> dict | None:
        """The saved state, or ``None`` when there is none or it belongs to another run (logged)."""
        if self.path is None or not self.path.is_file():
            return None
        # Our own file, written by save(): plain tensors, numbers and RNG states (numpy's is a dict).
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if self.run is not None and state.get("run") != self.run:
            log.warning("%s is from another run (%s, this one is %s: recipe, data or base weights differ); "
                        "starting afresh", self.path, state.get("run"), self.run)
            return None
        return state

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
        state = {**state, "run": self.run}
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


class TensorList:
    """A list of tensors (an EMA of weights) with ``state_dict``/``load_state_dict``, to sit among :class:`Resumable` parts."""

    def __init__(self, tensors: list[torch.Tensor]):
        self.tensors = tensors

    def state_dict(self) -> list[torch.Tensor]:
        """The tensors themselves (saved as they are)."""
        return self.tensors

    def load_state_dict(self, saved: list[torch.Tensor]) -> None:
        """Copy ``saved`` into the tensors in place."""
        for t, v in zip(self.tensors, saved):
            t.copy_(v)


class Resumable:
    """One trainer's whole state, checkpointed every few minutes and restored on resume.

    Every toy trainer (probe, CLIP, diffusion) keeps the same things: some parts with
    ``state_dict``/``load_state_dict`` (models, optimiser, schedule, an EMA), its random generators,
    the losses so far and the step. A resumed run restores all of them, so it takes the same batches,
    noise and dropout as an uninterrupted run would have.

    Args:
        checkpoint: where to save (``None``: never).
        rng: the loop's ``random.Random``; gen: its numpy ``Generator``.
        **parts: name -> an object with ``state_dict()`` and ``load_state_dict()``.
    """

    def __init__(self, checkpoint: "Checkpointer | None", rng, gen, **parts):
        self.checkpoint = checkpoint or Checkpointer(None)
        self.rng, self.gen, self.parts = rng, gen, parts
        self.losses: list[float] = []

    def restore(self, resume: bool, label: str = "training") -> int:
        """Load the saved state when ``resume`` and a checkpoint exists; returns the step to start from."""
        state = self.checkpoint.load() if resume else None
        if state is None:
            return 0
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
        set_rng_state(state["rng"], self.rng, self.gen)
        self.losses = list(state["losses"])
        log.info("%s: resumed at step %d", label, int(state["step"]))
        return int(state["step"])

    def snapshot(self, step: int) -> dict:
        """Everything :meth:`restore` needs, after ``step`` steps."""
        return {**{name: part.state_dict() for name, part in self.parts.items()},
                "rng": rng_state(self.rng, self.gen), "losses": self.losses, "step": step}

    def after_step(self, step: int, steps: int, stop_at: int | None, label: str) -> None:
        """Call after each step (``step`` 0-based): saves when due, stops with a checkpoint at ``stop_at``.

        Raises:
            TrainingStopped: ``stop_at`` reached before the last step (the checkpoint is written first).
        """
        if stop_at is not None and step + 1 >= stop_at and step + 1 < steps:
            self.checkpoint.save(self.snapshot(step + 1))
            raise TrainingStopped(f"{label} stopped at step {step + 1} of {steps}")
        if self.checkpoint.due():
            self.checkpoint.save(self.snapshot(step + 1))
