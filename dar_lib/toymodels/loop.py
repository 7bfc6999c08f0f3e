"""The optimisation loop pieces shared by the toy trainers: warm-up + cosine schedule, one step, resumable
checkpoints."""

from __future__ import annotations

import logging
import math
import time

import torch

from dar_lib.atomic import atomic_write_bytes

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed every generator a stage may draw from (torch, numpy's global one, Python's ``random``).

    ``dar train-toy`` calls it at the start of each stage, before the stage builds its model, so two
    runs of one recipe give byte-identical weights whatever ran before (a model's random
    initialisation draws from torch's global generator).
    """
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int, floor: float = 0.0):
    """Linear warm-up over ``warmup`` steps (capped at ``max(1, steps // 5)``), then cosine decay to ``floor`` x the
    peak rate."""
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


def report_loss(bar, losses: list[float], step: int, steps: int, every: int, label: str, t0: float,
                logger: logging.Logger, digits: int = 3) -> None:
    """Every ``every`` steps, show the mean of the last ``every`` losses on the tqdm ``bar`` (``digits``
    decimals) and log it as ``"<label> step i/steps loss x (s s)"``; ``every`` 0 never reports."""
    if every and (step + 1) % every == 0:
        recent = sum(losses[-every:]) / len(losses[-every:])
        bar.set_postfix(loss=f"{recent:.{digits}f}")
        logger.info("%s step %d/%d loss %.4f (%.0f s)", label, step + 1, steps, recent, time.time() - t0)


class TrainingStopped(Exception):
    """Raised by a trainer asked to stop early (``stop_at``): the checkpoint is written, resume continues."""


class Checkpointer:
    """Save a trainer's whole state every ``every_s`` seconds, so ``dar train-toy --resume`` continues.

    The state holds the model, optimiser and schedule, the step, the losses so far and every random
    generator the loop draws from, so a resumed run takes the same batches, noise and dropout as an
    uninterrupted one would have.

    The file is a ``.safetensors`` file: the tensors, and in its header the rest of the state as
    JSON (numbers, strings, lists, dicts; :func:`pack_state`) beside the run id. Nothing is ever
    unpickled, so a crafted checkpoint cannot run code, and the run id is read from the header
    before a single tensor is loaded.

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
        """The saved state, or ``None`` when there is none or it belongs to another run (logged).

        Raises:
            ValueError: the file is not a checkpoint written by :meth:`save` (for example a pickle
                from an older version, or a crafted file); it is not loaded, and the message names it.
        """
        import json

        from safetensors import SafetensorError, safe_open

        if self.path is None or not self.path.is_file():
            return None
        refused = (f"{self.path}: not a training checkpoint of this version (a safetensors file written by "
                   f"dar train-toy); it is not loaded (pickled checkpoints are never unpickled): delete it, "
                   f"or run without --resume")
        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("format") != CHECKPOINT_FORMAT:
                    raise ValueError(refused)
                run = json.loads(meta["run"])
                if self.run is not None and run != self.run:
                    log.warning("%s is from another run (%s, this one is %s: recipe, data or base weights differ); "
                                "starting afresh", self.path, run, self.run)
                    return None
                skeleton = json.loads(meta["state"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(refused) from exc
        return unpack_state(skeleton, tensors)

    def due(self) -> bool:
        """Whether to save now: a ``path`` is set and ``every_s`` seconds (monotonic clock) passed since the last
        save or construction."""
        import time

        return self.path is not None and time.monotonic() - self._last >= self.every_s

    def save(self, state: dict) -> None:
        """Write ``state`` atomically (a killed process leaves the previous checkpoint intact).

        Raises:
            TypeError: the state holds something other than tensors, numbers, strings, ``None``,
                lists, tuples and dicts (see :func:`pack_state`).
        """
        import json
        import time

        from safetensors.torch import save

        if self.path is None:
            return
        if self.extra is not None:
            state = {**state, **self.extra()}
        skeleton, tensors = pack_state({**state, "run": self.run})
        meta = {"format": CHECKPOINT_FORMAT, "run": json.dumps(self.run), "state": json.dumps(skeleton)}
        atomic_write_bytes(self.path, save(tensors, metadata=meta))
        self._last = time.monotonic()

    def clear(self) -> None:
        """Remove the checkpoint (the stage finished and saved its model)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


#: The ``format`` entry of a checkpoint's safetensors header (a file without it is refused, unread).
CHECKPOINT_FORMAT = "dar-checkpoint-1"


def pack_state(state) -> tuple[object, dict[str, torch.Tensor]]:
    """Split a trainer state into a JSON-able skeleton and its tensors (for a safetensors file).

    Tensors become ``{"__tensor__": key}`` (copied to contiguous CPU memory, so tied weights are
    saved twice rather than refused); tuples ``{"__tuple__": [...]}``; dicts ``{"__dict__": [[key,
    value], ...]}``, which keeps an optimiser's integer keys. Numbers, strings, booleans and ``None``
    stay as they are. :func:`unpack_state` inverts it.

    Raises:
        TypeError: any other object (it would need pickling), named by its type.
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(x):
        if isinstance(x, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = x.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if isinstance(x, dict):
            return {"__dict__": [[enc(k), enc(v)] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {"__tuple__": [enc(v) for v in x]}
        if isinstance(x, list):
            return [enc(v) for v in x]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"a training checkpoint holds tensors and plain values only, not {type(x).__name__}")

    return enc(state), tensors


def unpack_state(skeleton, tensors: dict[str, torch.Tensor]):
    """Rebuild what :func:`pack_state` split."""
    def dec(x):
        if isinstance(x, list):
            return [dec(v) for v in x]
        if isinstance(x, dict):
            if "__tensor__" in x:
                return tensors[x["__tensor__"]]
            if "__tuple__" in x:
                return tuple(dec(v) for v in x["__tuple__"])
            return {dec(k): dec(v) for k, v in x["__dict__"]}
        return x

    return dec(skeleton)


def rng_state(rng, gen) -> dict:
    """The states of a ``random.Random``, a numpy ``Generator`` and torch's global generator."""
    return {"python": rng.getstate(), "numpy": gen.bit_generator.state, "torch": torch.get_rng_state()}


def set_rng_state(state: dict, rng, gen) -> None:
    """Restore what :func:`rng_state` saved."""
    rng.setstate(state["python"])
    gen.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


class TensorList:
    """A list of tensors (an EMA of weights) with ``state_dict``/``load_state_dict``, to sit among
    :class:`Resumable` parts."""

    def __init__(self, tensors: list[torch.Tensor]):
        self.tensors = tensors

    def state_dict(self) -> list[torch.Tensor]:
        """The tensors themselves (saved as they are)."""
        return self.tensors

    def load_state_dict(self, saved: list[torch.Tensor]) -> None:
        """Copy ``saved`` into the tensors in place."""
        for t, v in zip(self.tensors, saved):
            t.copy_(v)


class RunningMax:
    """A running maximum kept in a trainer's checkpoint (e.g. the longest training text read so far), so a
    resumed run reports the maximum over every segment, not only its last."""

    def __init__(self, value: int = 0):
        self.value = int(value)

    def update(self, value: int) -> None:
        """Keep the larger of the current maximum and ``value``."""
        self.value = max(self.value, int(value))

    def state_dict(self) -> dict:
        """``{"value": int}``."""
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s value."""
        self.value = int(state["value"])


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
