"""Power of the book's claims and the images prompt-derived seeds save (toy profile); last line is JSON.

Usage:
    python measure/power.py [--n-dialogues 150] [--unique-only]

Counts the unique (prompt, k) generations of the four toy styles under prompt-derived seeds against
n_dialogues x 11 rounds x K under fresh seeds (rule-based R1/R2 only, seconds), then (unless
--unique-only) runs the FLAN twin with the zero-shot encoder, baseline and DAR, in the cache of
DAR_CACHE_DIR, and reports the headline claim judged in the book's family, its per-dialogue sd,
the smallest effect detectable at 80% power, and the dialogues the paper's 7.61 pp would need.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dar_lib import chapters as C  # noqa: E402
from dar_lib import claims, profiles, stats  # noqa: E402


def unique_generations(P: dict) -> tuple[int, int]:
    """(unique (prompt, k) pairs, images with fresh seeds every round) over the profile's benchmarks."""
    from dar_lib.models import load_reformulator

    ref = load_reformulator(P["reformulator"])
    unique = total = 0
    for name in P["benchmarks"]:
        pairs = set()
        for d in C.benchmark(P, name).dialogues:
            for r in range(d.n_rounds):
                prompts = ref.prompts(ref.rewrite(list(d.dialog[: r + 1]), ref=(d.image, r)), P["k_images"])
                pairs.update((p, k) for k, p in enumerate(prompts))
                total += len(prompts)
        unique += len(pairs)
    return unique, total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-dialogues", type=int, default=None, help="dialogues per style (default: the toy profile's)")
    p.add_argument("--unique-only", action="store_true", help="count generations only, run nothing")
    args = p.parse_args()
    P = profiles.parameters("toy")
    if args.n_dialogues:
        P["n_dialogues"] = args.n_dialogues
    unique, total = unique_generations(P)
    out = {"n_dialogues": P["n_dialogues"], "unique_generations": unique, "fresh_seed_generations": total,
           "share": round(unique / total, 3)}
    if not args.unique_only:
        flan = P["benchmarks"][3]
        t0 = time.perf_counter()
        df = C.results_grid(P, {"zero-shot": P["encoders"]["zero-shot"]}, [flan], methods=("baseline", "dar"),
                            progress=False)
        out["run_s"] = round(time.perf_counter() - t0, 1)
        claim = {"claim": "headline", "a": {"method": "dar"}, "b": {"method": "baseline"}, "paper_value": 7.61}
        m = claims.family_size(P)
        row = stats.claims_table(df, [claim], n_boot=P["n_boot"], family_size=m).iloc[0]
        d = stats.claim_values(df, claim)[2]
        sd = float(d.std(ddof=1))
        needed = (row["detectable"] * len(d) ** 0.5 / 7.61) ** 2
        out.update({"family_size": m, "ours": row["ours"], "corrected": row["corrected"], "size": row["size"],
                    "sd_pp": round(sd, 1), "detectable_pp": round(float(row["detectable"]), 2),
                    "dialogues_for_7.61": int(round(needed))})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
