"""Diagnostics of the toy models: the encoders' image/text asymmetry and the generator's fidelity."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch

#: Attributes the generator and the probe are scored on.
GEN_ATTRIBUTES = ("background", "color", "shape", "position", "size")
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
    top 10 images for a query naming one attribute value that have it (mean over values)."""
    from dar_lib.benchmarks import toyworld as tw

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
        out[attr] = {"image_nn": round(100 * float(image_side), 1), "text_top10": round(100 * float(text_side), 1),
                     "chance": round(100 / len(values), 1)}
    return out


def asymmetry_table(encoders: Mapping[str, object], toy_size: str = "default", seed: int = 0) -> pd.DataFrame:
    """:func:`asymmetry` for several encoders on the toy corpus, as one table (role, attribute, ...)."""
    from dar_lib.benchmarks import TOY_SIZES
    from dar_lib.benchmarks import toyworld as tw

    world = tw.build(seed=seed, **TOY_SIZES[toy_size])
    attrs = [tw.attributes(s) for s in world.scenes]
    images = [tw.render(s) for s in world.scenes]
    rows = []
    for role, enc in encoders.items():
        corpus = enc.encode_images(images)
        for attr, v in asymmetry(enc, corpus, attrs).items():
            rows.append({"encoder": role, "attribute": attr, "image side: 10-NN share it (%)": v["image_nn"],
                         "text side: top-10 for a query naming it (%)": v["text_top10"], "chance (%)": v["chance"]})
    return pd.DataFrame(rows)


def generator_agreement(generator, bench=None, n: int = 200, seed: int = 0, steps: int | None = None,
                        guidance: float | None = None) -> pd.DataFrame:
    """How often generated images show each fact of their prompt, read by the shipped probe.

    Prompts are full captions of fresh scenes (in no training set); the probe's own accuracy on
    real renders of the same scenes is shown beside it.
    """
    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.models.toy import ASSETS
    from dar_lib.toymodels.probe import AttributeProbe, accuracy

    probe = AttributeProbe.load(ASSETS / "probe")
    scenes = tw.make_scenes(n, seed=seed + 424242)
    truth = [tw.attributes(s) for s in scenes]
    real = accuracy(probe, tw.render_batch(scenes), truth)
    images = generator.generate([tw.full_caption(s) for s in scenes], list(range(n)), steps=steps, guidance=guidance)
    fake = accuracy(probe, images, truth)
    return pd.DataFrame([{"attribute": a, "agreement": fake[a], "probe on real renders": real[a]}
                         for a in GEN_ATTRIBUTES])
