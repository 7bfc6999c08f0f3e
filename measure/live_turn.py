"""Live-session turn latency: where a turn of ``dar explore`` spends its time, and the thread setting's share.

1. Median wall time of one toy generation call (K = 3 images) with torch on 2 intra-op threads and
   on 1 (the live app's setting, :data:`dar_lib.live.LIVE_TORCH_THREADS`), over ``--calls`` calls.
2. Median wall time of one live turn driven through the app's widgets (answer typed, Enter: R1, R2,
   generation, encoding, ranking against the default 10,000-image toy corpus, and the widget
   update with its PNGs), over ``--turns`` turns, with the pipeline's own per-stage medians.

Goal (issue 17): a live toy turn <= 1 s median on a quiet 2-core machine. Last line: a JSON object.

    python measure/live_turn.py [--turns 10] [--calls 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def _find(widget, cls):
    out = [widget] if cls in getattr(widget, "_dom_classes", ()) else []
    for child in getattr(widget, "children", ()):
        out += _find(child, cls)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--benchmark", default="toy-chatgpt")
    args = ap.parse_args()

    import torch

    from dar_lib.benchmarks.toyworld import ToyAnswerer
    from dar_lib.live_server import toy_app

    t0 = time.perf_counter()
    app = toy_app(args.benchmark)  # sets the live thread count
    startup = time.perf_counter() - t0
    pipe, bench = app.search.pipe, app.search.bench
    if pipe.store is not None:
        pipe.generator = pipe.generator.uncached()  # no image cache: every turn generates, as a new search does

    gen = {}
    prompt = ["a red circle in the top left on a blue background"] * pipe.k_images
    for n in (2, 1):
        torch.set_num_threads(n)
        walls = []
        for i in range(args.calls):
            t = time.perf_counter()
            pipe.generator.generate(prompt, seeds=[1000 + i * 7 + j for j in range(len(prompt))])
            walls.append(time.perf_counter() - t)
        gen[n] = statistics.median(walls)
        print(f"generation, K = {len(prompt)}, {n} torch thread(s): median {gen[n]:.3f} s")
    from dar_lib.live import LIVE_TORCH_THREADS

    torch.set_num_threads(LIVE_TORCH_THREADS)

    walls, stages = [], {}
    done = 0
    while done < args.turns:
        d = bench.dialogues[done % len(bench.dialogues)]
        app.search.start_dialogue(done % len(bench.dialogues))
        app.render()
        answerer = ToyAnswerer(bench.meta["scenes"][d.target_id])
        for _ in range(min(3, args.turns - done)):
            question = _find(app, "dar-question")[0].value
            t = time.perf_counter()
            _find(app, "dar-answer")[0].value = answerer.answer(question)  # as Enter does
            walls.append(time.perf_counter() - t)
            for k, v in app.search.result.timings.items():
                stages.setdefault(k, []).append(v)
            done += 1
    turn = statistics.median(walls)
    print(f"live turn through the widgets: median {turn:.3f} s over {len(walls)} turns")
    for k, v in stages.items():
        print(f"  {k}: median {statistics.median(v):.4f} s")
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu, load {os.getloadavg()[0]:.2f}",
        "startup_s": round(startup, 1),
        "generation_2_threads_median_s": round(gen[2], 3),
        "generation_1_thread_median_s": round(gen[1], 3),
        "live_turn_median_s": round(turn, 3),
        **{f"stage_{k.split()[0].lower()}_median_s": round(statistics.median(v), 4) for k, v in stages.items()},
        "turn_goal_s": 1.0,
        "turn_goal_met": bool(turn <= 1.0),
        "turns": len(walls),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
