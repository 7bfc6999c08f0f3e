"""An independent attribute probe: a small CNN that reads a toy image's background and salient object."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dar_lib.toymodels.loop import Resumable
from dar_lib.weightfiles import check_model_files

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class AttributeProbe(nn.Module):
    """A CNN with one classification head per attribute (``toyworld.ATTRIBUTES``).

    It is trained only on rendered scenes, never on generated images or on any encoder, so it
    judges the generator independently.

    Args:
        attributes: attribute name -> its value names (the heads and their classes).
        width: channels of the first convolution.
    """

    def __init__(self, attributes: Mapping[str, Sequence[str]], width: int = 32):
        super().__init__()
        self.attributes = {k: list(v) for k, v in attributes.items()}
        self.width = width
        w = width
        def block(c_in: int, c_out: int) -> list[nn.Module]:
            # batch norm: the probe must converge in a few hundred steps on two CPU cores
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]

        self.features = nn.Sequential(
            *block(3, w), *block(w, w), nn.MaxPool2d(2),
            *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 4 * w), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.GELU(),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(256, len(v)) for k, v in self.attributes.items()})

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute for images in [0, 1], ``(N, 3, 32, 32)``."""
        h = self.features(pixels * 2 - 1)
        return {k: head(h) for k, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: np.ndarray | Sequence, batch_size: int = 512) -> list[dict[str, str]]:
        """Attribute names read from images (uint8 array ``(N, 32, 32, 3)`` or PIL images)."""
        arr = _as_array(images)
        self.eval()
        out: list[dict[str, str]] = []
        for i in range(0, len(arr), batch_size):
            logits = self(_to_tensor(arr[i : i + batch_size]))
            idx = {k: v.argmax(-1).tolist() for k, v in logits.items()}
            for j in range(len(arr[i : i + batch_size])):
                out.append({k: self.attributes[k][idx[k][j]] for k in self.attributes})
        return out

    def save(self, folder: Path, extra: dict | None = None) -> None:
        """Write ``model.safetensors`` and ``config.json``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # half precision for floating tensors (size of the shipped assets); BN counters stay integer
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS))
        cfg = {"attributes": self.attributes, "width": self.width, **({"training": extra} if extra else {})}
        (folder / CONFIG).write_text(json.dumps(cfg, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "AttributeProbe":
        """Load a probe saved with :meth:`save`.

        Raises:
            DataError: a damaged ``model.safetensors`` or ``config.json`` (named).
        """
        from safetensors.torch import load_file

        folder = Path(folder)
        check_model_files(folder, f"attribute probe {str(folder)!r}")
        cfg = json.loads((folder / CONFIG).read_text())
        probe = cls(cfg["attributes"], width=int(cfg.get("width", 32)))
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(folder / WEIGHTS)).items()}
        probe.load_state_dict(state)
        return probe.eval()


def _as_array(images) -> np.ndarray:
    if isinstance(images, np.ndarray):
        return images
    return np.stack([np.asarray(im.convert("RGB").resize((32, 32))) for im in images])


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0


def train_probe(
    probe: AttributeProbe,
    images: np.ndarray,
    labels: Sequence[Mapping[str, str]],
    steps: int,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    log_every: int = 50,
    progress: bool = True,
    checkpoint=None,
    resume: bool = False,
    stop_at: int | None = None,
) -> list[float]:
    """Train the probe with the summed cross-entropy of its heads.

    Args:
        probe: the probe, trained in place.
        images: uint8 ``(N, 32, 32, 3)`` rendered scenes.
        labels: per image, attribute name -> value name.
        steps: optimiser steps.
        batch_size: images per step.
        lr: peak learning rate (AdamW, cosine).
        seed: seeds sampling and initial noise.
        log_every: log the mean loss every this many steps.
        progress: show a tqdm bar.
        checkpoint: a :class:`~dar_lib.toymodels.loop.Checkpointer` (``None``: never save).
        resume: continue from the checkpoint when there is one.
        stop_at: stop after this step, writing a checkpoint (raises ``TrainingStopped``).

    Returns:
        The loss of every step.
    """
    import random

    from tqdm import tqdm

    torch.manual_seed(seed)
    gen = np.random.default_rng(seed)
    rng = random.Random(seed)  # unused by the loop; kept so the shared RNG snapshot has the same shape
    targets = {k: torch.tensor([v.index(lab[k]) for lab in labels]) for k, v in probe.attributes.items()}
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    run = Resumable(checkpoint, rng, gen, model=probe, optimizer=opt, schedule=sched)
    start = run.restore(resume, "probe")
    losses = run.losses
    probe.train()
    t0 = time.time()
    for step in tqdm(range(start, steps), desc="probe", disable=not progress, mininterval=5):
        idx = gen.choice(len(images), size=min(batch_size, len(images)), replace=False)
        x = _to_tensor(images[idx])
        # Generated images are a little blurred and noisy; seeing such images keeps the probe fair.
        if gen.random() < 0.3:
            x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        x = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
        logits = probe(x)
        loss = sum(F.cross_entropy(logits[k], targets[k][idx]) for k in logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            log.info("probe step %d/%d loss %.4f (%.0f s)", step + 1, steps, float(np.mean(losses[-log_every:])),
                     time.time() - t0)
        run.after_step(step, steps, stop_at, "probe")
    probe.eval()
    return losses


def accuracy(probe: AttributeProbe, images: np.ndarray, labels: Sequence[Mapping[str, str]]) -> dict[str, float]:
    """Per-attribute accuracy (percent) of the probe on labelled images."""
    pred = probe.predict(images)
    return {k: 100.0 * float(np.mean([p[k] == lab[k] for p, lab in zip(pred, labels)])) for k in probe.attributes}
