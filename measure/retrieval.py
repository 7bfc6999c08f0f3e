"""Benchmark `target_ranks` against a full-argsort ranking (as the published evaluations do) and FAISS.

Ranks 22,704 queries (2,064 dialogues x 11 rounds) against 50,000 x 256 random normalised float32
embeddings. Each method runs in its own process so its peak memory (max RSS above the process's
RSS after the embeddings are loaded) is its own. Last line: a JSON object of the figures.

    python measure/retrieval.py [--queries 22704] [--corpus 50000] [--dim 256]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time

import numpy as np


def _embeddings(n_queries, n_corpus, dim, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n_corpus, dim), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    q = rng.standard_normal((n_queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t = rng.integers(0, n_corpus, n_queries)
    return q, c, t


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _run(method, n_queries, n_corpus, dim, out):
    import torch

    q, c, t = _embeddings(n_queries, n_corpus, dim)
    base = _rss_mb()
    start = time.perf_counter()
    if method == "target_ranks":
        from dar_lib.retrieve import target_ranks

        ranks = target_ranks(q, c, t)
    elif method == "argsort":
        # As the published evaluations: score matrix, full descending argsort, position of the target.
        ranks = np.empty(n_queries, dtype=np.int64)
        ct = torch.from_numpy(c)
        for s in range(0, n_queries, 1024):
            scores = torch.from_numpy(q[s : s + 1024]) @ ct.T
            order = torch.argsort(scores, dim=1, descending=True)
            ranks[s : s + 1024] = (order == torch.from_numpy(t[s : s + 1024])[:, None]).nonzero()[:, 1].numpy()
    elif method == "faiss":
        import faiss

        index = faiss.IndexFlatIP(dim)
        index.add(c)
        target_scores = np.einsum("ij,ij->i", q, c[t])
        ranks = np.empty(n_queries, dtype=np.int64)
        for s in range(0, n_queries, 1024):
            lims, dist, _ = index.range_search(q[s : s + 1024], 0.0)
            # range_search returns scores >= a threshold: count those strictly above the target's.
            for i in range(len(lims) - 1):
                d = dist[lims[i] : lims[i + 1]]
                ranks[s + i] = int((d > target_scores[s + i]).sum())
    else:
        raise ValueError(method)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put({"method": method, "wall_s": wall, "peak_extra_mb": max(0.0, peak - base), "ranks": ranks})


def measure(method, *args):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_run, args=(method, *args, out))
    p.start()
    result = out.get()
    p.join()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=2064 * 11)
    ap.add_argument("--corpus", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=256)
    args = ap.parse_args()
    sizes = (args.queries, args.corpus, args.dim)
    results = {"target_ranks": measure("target_ranks", *sizes), "argsort": measure("argsort", *sizes)}
    try:
        import faiss  # noqa: F401

        results["faiss"] = measure("faiss", *sizes)
    except ImportError:
        print("faiss not installed: skipped")
    for r in results.values():
        print(f"{r['method']:>13}: {r['wall_s']:8.2f} s  peak extra {r['peak_extra_mb']:8.1f} MB")
    # Different GEMM blockings round scores differently in the last bit, so a corpus item within
    # ~1e-7 of the target's score may land on either side: report how many ranks differ, and by how much.
    ref = results["target_ranks"]["ranks"]
    diffs = {k: np.abs(v["ranks"] - ref) for k, v in results.items() if k != "target_ranks"}
    for k, d in diffs.items():
        print(f"{k} vs target_ranks: {int((d > 0).sum())} of {len(d)} ranks differ, by at most {int(d.max())}")
    figures = {
        "queries": args.queries,
        "corpus": args.corpus,
        "dim": args.dim,
        "machine": f"{platform.machine()} {mp.cpu_count()} cpu",
        **{f"{k}_wall_s": round(v["wall_s"], 3) for k, v in results.items()},
        **{f"{k}_peak_extra_mb": round(v["peak_extra_mb"], 1) for k, v in results.items()},
        "speedup_vs_argsort": round(results["argsort"]["wall_s"] / results["target_ranks"]["wall_s"], 2),
        **{f"{k}_ranks_differing": int((d > 0).sum()) for k, d in diffs.items()},
        **{f"{k}_max_rank_diff": int(d.max()) for k, d in diffs.items()},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
