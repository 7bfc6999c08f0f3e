"""The ceiling: best possible cumulative Hits@k, on tiny corpora where the consistent sets are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dar_lib.benchmarks import toyworld as tw
from dar_lib.benchmarks.dialogue import Dialogue

O = tw.Obj
SCENES = [
    tw.Scene("blue", (O("circle", "red", "large", "top left"),)),
    tw.Scene("blue", (O("circle", "red", "large", "top left"), O("square", "green", "small", "center"))),
    tw.Scene("white", (O("circle", "red", "large", "top left"),)),
    tw.Scene("blue", (O("circle", "red", "medium", "center"),)),
    tw.Scene("white", (O("square", "green", "large", "bottom right"),)),
]


def dialogue(*turns: str, target: int = 1) -> Dialogue:
    return Dialogue(target_id=target, image=tw.corpus_path(target), dialog=tuple(turns))


def test_counts_per_round():
    d = dialogue("a large red circle in the top left", "what color is the background? blue",
                 "is the picture in color? yes", "what else is there? a green square")
    counts, fits = tw.n_consistent(d, SCENES)
    assert counts.tolist() == [3, 2, 2, 1] and fits.all()


def test_ceiling_hand_made():
    d = dialogue("a large red circle in the top left", "what color is the background? blue",
                 "what else is there? a green square")
    np.testing.assert_allclose(tw.ceiling([d], SCENES, k=1), [100 / 3, 50, 100])
    np.testing.assert_allclose(tw.ceiling([d], SCENES, k=2), [200 / 3, 100, 100])
    # Averaged over dialogues; "not sure" and off-target turns change nothing.
    e = dialogue("a red circle", "what color is the background? not sure", "what is the color of the sky? blue", target=3)
    # round 0: scenes 0-3 fit (4); then nothing new.
    np.testing.assert_allclose(tw.ceiling([d, e], SCENES, k=1), [(1 / 3 + 1 / 4) * 50, (1 / 2 + 1 / 4) * 50, (1 + 1 / 4) * 50])


def test_wrong_answer_excludes_the_target_and_cumulative_keeps_the_best():
    d = dialogue("a large red circle in the top left", "what color is the background? white",
                 "what else is there? a green square")
    counts, fits = tw.n_consistent(d, SCENES)
    assert counts.tolist() == [3, 1, 0] and fits.tolist() == [True, False, False]
    np.testing.assert_allclose(tw.ceiling([d], SCENES, k=1), [100 / 3] * 3)
    # k=2 with the target outside the single consistent scene: (2 - 1) / (5 - 1) at round 1.
    np.testing.assert_allclose(tw.expected_hits(np.array([3, 1]), np.array([True, False]), 5, 2), [2 / 3, 2 / 3])
    np.testing.assert_allclose(tw.expected_hits(np.array([3, 1]), np.array([False, False]), 5, 2), [0, 0.25])


def test_ceiling_on_the_default_shape_is_in_range():
    bench = tw.build(n_corpus=3000, n_dialogues=100, seed=0)
    for style in ("chatgpt", "human"):
        c = tw.ceiling(bench.dialogues(style), bench.scenes, k=10)
        assert c.shape == (11,) and np.all(np.diff(c) >= -1e-9)
        assert 50 <= c[0] <= 95 and c[10] >= 95
    with pytest.raises(ValueError, match="at least one"):
        tw.ceiling([], SCENES)
