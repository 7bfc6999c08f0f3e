"""The fusion weights of eq. 4: which share of the fused query the text gets at each round (no torch).

``F_t = alpha_t * E(S_t) + beta_t * SUM_k E(I_t,k)`` with ``alpha_t + beta_t = 1``; the schedules:

- ``paper``: (0.7, 0.3) for rounds 0-1, then (0.5, 0.5): the paper's "first two turns" read as the
  released code switches (``dl < 2``);
- ``paper-rounds-0-2``: (0.7, 0.3) for rounds 0-2, then (0.5, 0.5): the other reading of the paper's
  text (turn 0 is the caption, so "the first two dialogue turns" can mean rounds 1 and 2 as well);
- ``released``: (0.8, 0.2) for rounds 0-1, then (0.5, 0.5) (the official evaluation code);
- ``const:A``: alpha = A at every round.

Kept apart from :mod:`dar_lib.fuse` (which applies them to tensors) so the settings and the command
line read them without importing torch.

Examples:
    >>> weights(0, "paper"), weights(5, "released"), weights(3, "const:0.6")
    ((0.7, 0.3), (0.5, 0.5), (0.6, 0.4))
"""

from __future__ import annotations

#: How the K image embeddings are combined (the values of the ``image_reduce`` setting, :mod:`dar_lib.evalsettings`).
IMAGE_REDUCES = ("mean", "sum")

#: The schedule names (``const:<alpha>`` stands for any alpha in [0, 1]).
SCHEDULES = ("paper", "paper-rounds-0-2", "released", "const:<alpha>")


def weights(round_idx: int, schedule: str = "paper") -> tuple[float, float]:
    """(alpha, beta) for a round under a named schedule (eq. 4; the schedules in the module docstring).

    Raises:
        ValueError: a negative round, an unknown schedule, or a constant outside [0, 1] (named).
    """
    if round_idx < 0:
        raise ValueError(f"round_idx must be >= 0, got {round_idx}")
    if schedule == "paper":
        alpha = 0.7 if round_idx <= 1 else 0.5
    elif schedule == "paper-rounds-0-2":
        alpha = 0.7 if round_idx <= 2 else 0.5
    elif schedule == "released":
        alpha = 0.8 if round_idx <= 1 else 0.5
    elif schedule.startswith("const:"):
        try:
            alpha = float(schedule.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad constant schedule {schedule!r}; expected e.g. 'const:0.6'") from None
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    return alpha, round(1.0 - alpha, 10)
