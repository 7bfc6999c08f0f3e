"""Toy image generation throughput: one process, and a local Ray pool of 1 and 2 CPU workers.

Each configuration generates the same unique (prompt, seed) pairs of a toy evaluation into a
fresh artefact store, through the code path a user runs (``evaluate.generate`` locally,
``distributed.generate`` on Ray), and reports images per second of wall time: with Ray, the
figure includes starting the actors and loading one model replica in each (``ray_init_s``, the
start of Ray itself, is reported apart).
Without trained toy weights the generator is freshly initialised (same shapes, same speed).
The last printed line is a JSON object of the figures.

On a machine whose cores are busy with other work, torch's default of one thread per core can
be many times slower than one thread (threads wait on each other); both local figures are printed.

Usage: ``python measure/scale.py --images 256 --workers 1,2``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def toy_generator(tmp: Path) -> str:
    """``toy:sd`` when its weights exist, else a freshly initialised toy pipeline saved under ``tmp``."""
    from dar_lib.toymodels import ASSETS

    if (ASSETS / "sd" / "model_index.json").exists():
        return "toy:sd"
    from dar_lib.toymodels.diffusion_train import new_pipeline, save_pipeline
    from dar_lib.toymodels.tokenizer import world_tokenizer

    save_pipeline(new_pipeline(world_tokenizer(), seed=0), tmp / "sd")
    return f"toy:{tmp / 'sd'}"


def main() -> None:
    import torch

    from dar_lib import distributed
    from dar_lib.evaluate import EvalConfig, build_pipeline, generate
    from dar_lib.models import load_model
    from dar_lib.store import ArtefactStore

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=256, help="unique (prompt, seed) pairs per configuration")
    ap.add_argument("--workers", default="1,2", help="comma-separated Ray pool sizes")
    ap.add_argument("--batch-size", type=int, default=32, help="images per batch (cfg.batch_size)")
    ap.add_argument("--local-threads", default="1",
                    help="comma-separated torch threads of the single-process runs (0: torch's default, one "
                         "per core; default: 1, as in a Ray CPU actor)")
    ap.add_argument("--ray-address", default=None, help="an existing cluster (default: start a local Ray)")
    args = ap.parse_args()
    pool_sizes = [int(w) for w in args.workers.split(",")]
    colours, shapes = ["red", "blue", "green", "yellow", "purple"], ["circle", "square", "triangle", "star"]
    pairs = [(f"a {colours[i % 5]} {shapes[(i // 5) % 4]} on a white background, item {i}", i)
             for i in range(args.images)]
    result = {"images": args.images, "batch_size": args.batch_size, "cpu_count": os.cpu_count(),
              "load_avg_1min": round(os.getloadavg()[0], 2), "machine": platform.machine()}

    with tempfile.TemporaryDirectory(prefix="dar-scale-") as tmp:
        tmp = Path(tmp)
        generator = toy_generator(tmp)
        cfg = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", generator=generator, batch_size=args.batch_size)
        result["generator"] = generator if generator == "toy:sd" else "toy (freshly initialised)"
        load_model("generator", generator, None)  # load once, outside the timings (each actor loads its own)

        default_threads = torch.get_num_threads()
        for threads in [int(x) for x in args.local_threads.split(",")]:
            # A Ray CPU actor runs one torch thread; on a busy machine one thread per core can be far slower.
            torch.set_num_threads(threads or default_threads)
            t = time.perf_counter()
            generate(build_pipeline(cfg, ArtefactStore(tmp / f"local{threads}")), pairs, cfg.batch_size, progress=False)
            local_s = time.perf_counter() - t
            name = f"single_process_{threads or default_threads}_threads"
            result[name] = {"seconds": round(local_s, 2), "images_per_s": round(args.images / local_s, 1)}
            print(name, result[name], flush=True)
        torch.set_num_threads(default_threads)

        t = time.perf_counter()
        ray = distributed.connect(args.ray_address, num_workers=max(pool_sizes))
        result["ray_init_s"] = round(time.perf_counter() - t, 2)
        try:
            for n in pool_sizes:
                s = distributed.generate(cfg, pairs, ArtefactStore(tmp / f"ray{n}"), progress=False, num_workers=n)
                assert s.generated == args.images and s.failures == 0, s
                result[f"ray_{n}_workers"] = {"seconds": round(s.seconds, 2), "images_per_s": round(s.per_second, 1),
                                              "retries": s.retries}
                print(f"ray, {n} workers:", result[f"ray_{n}_workers"], flush=True)
        finally:
            if not args.ray_address:
                ray.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
