"""Diagnostics of the toy models: the encoders' image/text asymmetry and the generator's fidelity.

The generator is judged by an independent attribute probe (a CNN trained on rendered scenes only,
:mod:`dar_lib.toymodels.probe`); the probe's own accuracy on rendered scenes is reported beside every
figure it reads, because a figure read by an unreliable probe means nothing.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch

from dar_lib.benchmarks import toyworld as tw
from dar_lib.toymodels import ASSETS
from dar_lib.toymodels.probe import AttributeProbe, accuracy

#: Attributes the generator and the probe are scored on.
GEN_ATTRIBUTES = ("background", "color", "shape", "position", "size", "count")
#: Key of :func:`asymmetry_table`'s ``attrs`` holding :func:`background_null_read_as_colour`.
BLIND_NULL = "background null read as colour (%)"
#: Single-attribute text queries for the text side of the asymmetry table.
QUERY_TEMPLATES = {
    "background": "a {v} background",
    "color": "a {v} object",
    "shape": "a {v}",
    "size": "a {v} object",
    "position": "an object in the {v}",
}


def asymmetry(enc, corpus_emb: torch.Tensor, attrs: list[dict], n_probe: int = 1000) -> dict[str, dict[str, float]]:
    """Image side: % of an image's 10 nearest neighbours sharing each attribute. Text side: % of the
    top 10 images for a query naming one attribute value that have it (mean over values).

    Args:
        enc: the encoder (its ``encode_text`` embeds the queries).
        corpus_emb: ``(n, dim)`` the corpus embedded by ``enc``.
        attrs: per corpus image, :func:`~dar_lib.benchmarks.toyworld.attributes`.
        n_probe: images whose neighbours are counted.

    Returns:
        attribute -> ``{"image_nn", "text_top10", "chance"}`` in percent.
    """
    idx = np.arange(min(n_probe, len(attrs)))
    sims = corpus_emb[idx] @ corpus_emb.T
    sims[torch.arange(len(idx)), torch.as_tensor(idx)] = -2  # not its own neighbour
    nn = sims.topk(10, dim=1).indices.numpy()
    out: dict[str, dict[str, float]] = {}
    for attr, template in QUERY_TEMPLATES.items():
        image_side = np.mean([[attrs[j][attr] == attrs[i][attr] for j in nn[row]] for row, i in enumerate(idx)])
        values = list(tw.ATTRIBUTES[attr])
        q = enc.encode_text([template.format(v=v) for v in values])
        top = (q @ corpus_emb.T).topk(10, dim=1).indices.numpy()
        text_side = np.mean([[attrs[j][attr] == v for j in top[row]] for row, v in enumerate(values)])
        # chance: the share of the corpus that has the value, averaged over values
        chance = np.mean([np.mean([a[attr] == v for a in attrs]) for v in values])
        out[attr] = {"image_nn": round(100 * float(image_side), 1), "text_top10": round(100 * float(text_side), 1),
                     "chance": round(100 * float(chance), 1)}
    return out


def background_null_read_as_colour(scenes) -> float:
    """Text-side null for the background of a reader that takes the colour word for an object's colour.

    A text tower that never learned the word *background* ("a red background") still reads the
    colour, as an object's; it then retrieves images holding a red object. The world never puts an
    object on a background of its own colour (:func:`~dar_lib.benchmarks.toyworld.make_scenes` draws
    objects from the other colours), so those images never have the named background: such a blind
    reader scores this share, not the corpus share (``chance`` in :func:`asymmetry`), which is the
    null of a reader that ignores the query. Either way a blind text side is at or below chance; a
    text side that reads the background is far above both.

    Args:
        scenes: the corpus scenes.

    Returns:
        percent: over background values ``v`` with an object of colour ``v`` somewhere in the corpus,
        the mean share of background ``v`` among the images that hold an object of colour ``v``.
    """
    shares = []
    for v in tw.ATTRIBUTES["background"]:
        holding = [s.background == v for s in scenes if any(o.color == v for o in s.objects)]
        if holding:
            shares.append(np.mean(holding))
    return round(100 * float(np.mean(shares)), 1) if shares else float("nan")


def asymmetry_table(encoders: Mapping[str, object], bench) -> pd.DataFrame:
    """:func:`asymmetry` for several encoders on a toy benchmark's corpus, as one table.

    Args:
        encoders: role -> loaded encoder.
        bench: a toy :class:`~dar_lib.benchmarks.Benchmark` (``bench.meta["scenes"]`` holds its scenes).

    Returns:
        One row per encoder and attribute: the image side's 10-NN share, the text side's top-10 share
        and the corpus share (``chance``), in percent; ``table.attrs["background null read as colour
        (%)"]`` holds :func:`background_null_read_as_colour` of the corpus.

    Raises:
        ValueError: a benchmark without toy scenes (the asymmetry needs the facts of every image).
    """
    scenes = bench.meta.get("scenes")
    if scenes is None:
        raise ValueError(f"{bench.name}: the asymmetry table needs a toy benchmark (facts of every image)")
    attrs = [tw.attributes(s) for s in scenes]
    images = [tw.render(s) for s in scenes]
    rows = []
    for role, enc in encoders.items():
        corpus = enc.encode_images(images)
        for attr, v in asymmetry(enc, corpus, attrs).items():
            rows.append({"encoder": role, "attribute": attr, "image side: 10-NN share it (%)": v["image_nn"],
                         "text side: top-10 for a query naming it (%)": v["text_top10"], "chance (%)": v["chance"]})
    table = pd.DataFrame(rows)
    table.attrs[BLIND_NULL] = background_null_read_as_colour(scenes)
    return table


def probe_accuracy(n: int = 1000, seed: int = 0) -> dict[str, float]:
    """The shipped probe's accuracy (percent) per attribute on rendered scenes no model trained on."""
    probe = AttributeProbe.load(ASSETS / "probe")
    scenes = tw.make_scenes(n, seed=seed + 424242)
    return accuracy(probe, tw.render_batch(scenes), [tw.attributes(s) for s in scenes])


def generator_agreement(generator, n: int = 200, seed: int = 0, steps: int | None = None,
                        guidance: float | None = None) -> pd.DataFrame:
    """How often generated images show each fact of their prompt, read by the shipped probe.

    Prompts are full captions of fresh scenes (in no training set); the probe's own accuracy on
    real renders of the same scenes is shown beside it. Only the toy world has a probe: for another
    generator the table says so instead of holding numbers.

    Args:
        generator: a generator (``toy:`` ids are probed).
        n: prompts (one image each).
        seed: scenes and image seeds.
        steps, guidance: sampling settings (default: the generator's).

    Returns:
        One row per attribute: ``agreement`` and ``probe on real renders`` (percent; NaN without a
        probe) and ``note``.
    """
    if not str(getattr(generator, "id", "")).startswith("toy:"):
        return pd.DataFrame([{"attribute": a, "agreement": float("nan"), "probe on real renders": float("nan"),
                              "note": f"no attribute probe for {generator.id} (the toy world's probe reads toy scenes)"}
                             for a in GEN_ATTRIBUTES])
    probe = AttributeProbe.load(ASSETS / "probe")
    scenes = tw.make_scenes(n, seed=seed + 424242)
    truth = [tw.attributes(s) for s in scenes]
    real = accuracy(probe, tw.render_batch(scenes), truth)
    images = generator.generate([tw.full_caption(s) for s in scenes], list(range(n)), steps=steps, guidance=guidance)
    fake = accuracy(probe, images, truth)
    return pd.DataFrame([{"attribute": a, "agreement": fake[a], "probe on real renders": real[a], "note": ""}
                         for a in GEN_ATTRIBUTES])


#: Scenes for the image tower's linear probe come from their own seed (no training set draws from it).
PROBE_SCENES_SEED = 271828


def independent_scenes(n: int, seed: int = PROBE_SCENES_SEED):
    """``n`` independent random scenes (families of one: no look-alikes to inflate a probe's accuracy)."""
    return tw.make_scenes(n, seed=seed, family_sizes=(1,))


def linear_probe(fit_x: torch.Tensor, fit_labels: list[dict], test_x: torch.Tensor, test_labels: list[dict],
                 attributes: Mapping[str, list] | None = None, iters: int = 200, l2: float = 1e-4) -> dict[str, float]:
    """Held-out accuracy (percent) of a multinomial logistic regression per attribute on fixed features.

    The standard linear-probe protocol (CLIP, Radford et al. 2021, sec. 3.2): features are frozen, one
    L2-regularised softmax classifier per attribute is fitted with L-BFGS on ``fit_x`` and scored on
    ``test_x``. Features are standardised with the fit set's mean and spread.

    Args:
        fit_x, test_x: ``(n, dim)`` features (e.g. an image tower's embeddings).
        fit_labels, test_labels: per row, attribute -> value (:func:`~dar_lib.benchmarks.toyworld.attributes`).
        attributes: attribute -> its values (default: the toy world's :data:`ATTRIBUTES`).
        iters: L-BFGS iterations.
        l2: weight of the L2 penalty (mean over weights).

    Returns:
        attribute -> held-out accuracy in percent.

    Raises:
        ValueError: features and labels differ in length.
    """
    attributes = attributes or tw.ATTRIBUTES
    if len(fit_x) != len(fit_labels) or len(test_x) != len(test_labels):
        raise ValueError(f"linear_probe: {len(fit_x)}/{len(test_x)} feature rows for "
                         f"{len(fit_labels)}/{len(test_labels)} labels")
    fit_x, test_x = fit_x.detach().float(), test_x.detach().float()
    mean, std = fit_x.mean(0), fit_x.std(0).clamp_min(1e-6)
    xf, xt = (fit_x - mean) / std, (test_x - mean) / std
    out = {}
    for attr, values in attributes.items():
        index = {v: i for i, v in enumerate(values)}
        yf = torch.tensor([index[lab[attr]] for lab in fit_labels])
        yt = torch.tensor([index[lab[attr]] for lab in test_labels])
        w = torch.zeros(xf.shape[1], len(values), requires_grad=True)
        b = torch.zeros(len(values), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xf @ w + b, yf) + l2 * (w ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            out[attr] = round(100 * float(((xt @ w + b).argmax(1) == yt).float().mean()), 1)
    return out


def image_tower_probe(embed, n_fit: int = 5000, n_test: int = 2000, seed: int = PROBE_SCENES_SEED) -> dict[str, float]:
    """Linear-probe accuracy (percent, held out) of an image tower's frozen embeddings per attribute.

    Scenes are independent (:func:`independent_scenes`) and drawn from their own seed, so the probe
    reads what the tower encodes about any scene, not which look-alike family it belongs to.

    Args:
        embed: ``embed(uint8 (n, 32, 32, 3) array) -> (n, dim)`` tensor, e.g. an encoder's image side.
        n_fit, n_test: scenes to fit the probe on and to score it on (disjoint).
        seed: seeds the scenes.

    Returns:
        attribute -> held-out accuracy in percent (:func:`linear_probe`).
    """
    scenes = independent_scenes(n_fit + n_test, seed)
    labels = [tw.attributes(s) for s in scenes]
    with torch.no_grad():
        emb = torch.as_tensor(embed(tw.render_batch(scenes, size=32)))
    return linear_probe(emb[:n_fit], labels[:n_fit], emb[n_fit:], labels[n_fit:])
