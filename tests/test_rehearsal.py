"""The paper profile rehearsed end to end, a ChatIR corpus subset, a researcher's own data through
`dar eval` and the book, and the GPU timing script's CPU mode."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dar_lib import cli, profiles, rehearsal
from dar_lib.benchmarks import load_benchmark
from dar_lib.cachekeys import rehearsal_key
from dar_lib.errors import DataError
from dar_lib.testing import SHAPES, own_dataset

REPO = Path(__file__).resolve().parents[1]
BLIP_KEYS = REPO.parent / "shared" / "data" / "blip"


# -- load_benchmark: a ChatIR set restricted to a subset of its 50k corpus ------------------------------
def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_chatir_subset_keeps_dialogues_whose_target_is_in_it(mirror, tmp_path):
    from dar_lib.benchmarks import chatir

    full, dialogues = chatir.load_corpus(), chatir.load("visdial")
    # Targets of dialogues 1 and 3 (not 0 or 2), two distractors, in an order unlike the 50k list's.
    subset = [full[7], dialogues[3].image, full[11], dialogues[1].image]
    corpus = _write(tmp_path / "subset.json", subset)
    bench = load_benchmark("visdial", image_root=tmp_path, corpus_file=corpus)
    assert bench.corpus_paths == subset  # the list is the corpus; index = corpus id
    assert [d.image for d in bench.dialogues] == [dialogues[1].image, dialogues[3].image]
    assert [d.target_id for d in bench.dialogues] == [3, 1]
    assert bench.dialogues[0].dialog == dialogues[1].dialog and bench.meta["corpus_file"] == str(corpus)
    # Dropped before n_dialogues applies: the first dialogue of the subset, not of the full set.
    one = load_benchmark("visdial", 1, image_root=tmp_path, corpus_file=corpus)
    assert [d.image for d in one.dialogues] == [dialogues[1].image]
    assert bench.fingerprint != load_benchmark("visdial", image_root=tmp_path).fingerprint


def test_chatir_subset_errors_name_the_file(mirror, tmp_path):
    from dar_lib.benchmarks import chatir

    full = chatir.load_corpus()
    targets = {d.image for d in chatir.load("visdial")}
    outside = _write(tmp_path / "outside.json", [next(iter(targets)), "unlabeled2017/999999999999.jpg"])
    with pytest.raises(DataError, match=r"outside\.json: record 1: 'unlabeled2017/999999999999\.jpg' is not in "
                                        r"ChatIR's 50,000-image search space"):
        load_benchmark("visdial", image_root=tmp_path, corpus_file=outside)
    no_target = _write(tmp_path / "distractors.json", [p for p in full[:200] if p not in targets][:5])
    with pytest.raises(DataError, match=r"distractors\.json: none of the 2,064 flan_blip2 dialogues has its target "
                                        r"among the 5 images"):
        load_benchmark("flan_blip2", image_root=tmp_path, corpus_file=no_target)
    for bad, msg in (([], "the corpus list is empty"), ([full[0], full[0]], "duplicate corpus path"),
                     (["../" + full[0]], "contains '..'")):
        with pytest.raises(DataError, match=msg):
            load_benchmark("visdial", image_root=tmp_path, corpus_file=_write(tmp_path / "bad.json", bad))


# -- a researcher's own data through `dar eval` ----------------------------------------------------------
def test_own_data_runs_end_to_end_through_dar_eval(tmp_path, dar_eval):
    data = own_dataset(tmp_path)
    out_csv = tmp_path / "ranks.csv"
    code, out, err = dar_eval("--benchmark", str(data["dialogues"]), "--corpus-file", str(data["corpus"]),
                           "--image-root", str(data["images"]), "--encoder", "toy:clip-zs", "--generator", "toy:sd",
                           "--reformulator", "toy:rules", "-k", "2", "--store", str(tmp_path / "store"),
                           "--out", str(out_csv))
    assert code == 0, err
    import pandas as pd

    table = pd.read_csv(out_csv)
    assert sorted(table.method.unique()) == ["baseline", "dar", "images-only", "reformulated"]
    assert len(table) == 4 * 3 * 3  # methods x dialogues x rounds
    assert table.groupby("method").round_idx.max().eq(2).all()
    assert (table["rank"].between(0, 11)).all() and table.target_id.isin([0, 2, 4]).all()
    assert table.benchmark.eq(str(data["dialogues"])).all()
    # The printed summary is Hits@10 of exactly these ranks, one line per method (3 rounds: round 0 only).
    from dar_lib.metrics import cumulative_hits
    from dar_lib.stats import summary_table

    assert summary_table(table).to_string(index=False) in out
    printed = {line.split()[-2]: float(line.split()[-1]) for line in out.splitlines()
               if line.split() and line.split()[-2:-1] and line.split()[-2] in ("baseline", "reformulated", "dar",
                                                                              "images-only")}
    for method, g in table.groupby("method"):
        ranks = g.pivot(index="dialog_idx", columns="round_idx", values="rank").to_numpy()
        assert printed[method] == pytest.approx(round(float(cumulative_hits(ranks, 10)[0]), 2))

    # The identity reformulator (no rewriting) works the same way.
    code, out, err = dar_eval("--benchmark", str(data["dialogues"]), "--corpus-file", str(data["corpus"]),
                           "--image-root", str(data["images"]), "--encoder", "toy:clip-zs", "--generator", "toy:sd",
                           "--reformulator", "identity", "--methods", "baseline,reformulated", "-k", "1",
                           "--store", str(tmp_path / "store"))
    assert code == 0, err
    assert "reformulated" in out


@pytest.mark.parametrize("case", ["empty dialogues", "empty corpus", "parent path", "missing corpus file",
                                  "no image root", "corpus of 10"])
def test_own_data_mistakes_are_one_line_errors(tmp_path, dar_eval, case):
    data = own_dataset(tmp_path)
    args = {"--benchmark": str(data["dialogues"]), "--corpus-file": str(data["corpus"]),
            "--image-root": str(data["images"])}
    expected = {
        "empty dialogues": r"my_dialogues\.json: the dialogue list is empty",
        "empty corpus": r"corpus\.json: the corpus list is empty",
        "parent path": r"corpus\.json: record 1: corpus path '\.\./secret\.png' contains '\.\.', which would escape",
        "missing corpus file": r"nowhere\.json: file not found",
        "no image root": r"give corpus_file .* and image_root",
        "corpus of 10": r"a corpus of 10 images puts every target in the top 10, so Hits@10 is 100 by construction",
    }[case]
    if case == "empty dialogues":
        _write(data["dialogues"], [])
    elif case == "empty corpus":
        _write(data["corpus"], [])
    elif case == "parent path":
        _write(data["corpus"], ["set/img_00.png", "../secret.png"])
    elif case == "missing corpus file":
        args["--corpus-file"] = str(tmp_path / "nowhere.json")
    elif case == "corpus of 10":
        _write(data["corpus"], [f"set/img_{i:02d}.png" for i in range(10)])
    else:
        del args["--image-root"]
    code, out, err = dar_eval(*[x for kv in args.items() for x in kv], "--encoder", "toy:clip-zs",
                           "--methods", "baseline")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dar: error: "), err
    assert re.search(expected, lines[0]), lines[0]


def four_dialogue_files(data: dict[str, Path]) -> list[str]:
    """Four dialogue sets over the same targets (Figure 3's four panels), like ChatIR's: reworded copies."""
    records = json.loads(data["dialogues"].read_text())
    out = [str(data["dialogues"])]
    for i, style in enumerate(("is it", "do you see", "can you spot"), 1):
        changed = [{"img": r["img"], "dialog": [r["dialog"][0]] + [t.replace("is there", style)
                                                                   for t in r["dialog"][1:]]} for r in records]
        out.append(str(_write(data["dialogues"].with_name(f"my_dialogues_{i}.json"), changed)))
    return out


def test_book_parameters_point_chapters_at_own_data(tmp_path):
    """Four dialogue files, a corpus file and an image root are valid chapter parameters; paths checked."""
    data = own_dataset(tmp_path, n_rounds=11)
    four = four_dialogue_files(data)
    params = profiles.parameters("toy", smoke=True, benchmarks=four, corpus_file=str(data["corpus"]),
                                 image_root=str(data["images"]))
    assert params["benchmarks"] == four
    with pytest.raises(profiles.ParameterError, match=r"'benchmarks'.*'my\.txt' is neither a benchmark name"):
        profiles.parameters("toy", benchmarks=[*four[:3], "my.txt"])
    with pytest.raises(profiles.ParameterError, match=r"'benchmarks'.*must name 4 different benchmarks"):
        profiles.parameters("toy", benchmarks=[four[0]] * 4)


def test_results_chapters_refuse_dialogues_shorter_than_chatirs(tmp_path):
    from dar_lib import chapters

    data = own_dataset(tmp_path, n_rounds=3)
    params = profiles.parameters("toy", smoke=True, benchmarks=four_dialogue_files(data),
                                 corpus_file=str(data["corpus"]), image_root=str(data["images"]))
    with pytest.raises(profiles.ParameterError, match=r"my_dialogues\.json has dialogues of 3 rounds; the results "
                                                      r"chapters report rounds up to 10"):
        chapters.results_grid(params, progress=False)


def test_dar_book_takes_parameter_files_and_overrides(tmp_path, capsys):
    from dar_lib.book import cli as book_cli

    data = own_dataset(tmp_path, n_rounds=11)
    mine = tmp_path / "mine.yaml"
    four = four_dialogue_files(data)
    mine.write_text(f"benchmarks: [{', '.join(four)}]\ncorpus_file: {data['corpus']}\nimage_root: /elsewhere\n")
    over = book_cli.parse_overrides([mine], [f"image_root={data['images']}", "n_dialogues=2", "k_values=[1, 3]"])
    assert over["image_root"] == str(data["images"]) and over["n_dialogues"] == 2 and over["k_values"] == [1, 3]
    assert profiles.parameters("paper", smoke=True, **over)["benchmarks"] == four
    for argv, msg in ((["--set", "n_dialogues=five"], "parameter 'n_dialogues' = 'five'"),
                      (["--set", "smoke=true"], "smoke are set by dar book's own options"),
                      (["--set", "oops"], "expected NAME=VALUE"),
                      (["--params", str(tmp_path / "none.yaml")], "none.yaml: cannot read parameter overrides"),
                      (["--profile", "toy", "--rehearsal"], "--rehearsal rehearses the paper profile")):
        code = cli.main(["book", *argv, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("dar: error: ") and msg in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.slow
def test_a_results_chapter_runs_on_own_data(tmp_path, monkeypatch):
    """Chapter 05 (Figure 3, claims, controls) on a researcher's own dialogues with the toy models."""
    from dar_lib.book import run as book_run

    monkeypatch.setenv("DAR_CACHE_DIR", str(tmp_path / "cache"))
    data = own_dataset(tmp_path, n_rounds=11, n_images=16, n_dialogues=4)
    params = profiles.parameters("toy", smoke=True, benchmarks=four_dialogue_files(data),
                                 corpus_file=str(data["corpus"]), image_root=str(data["images"]))
    source = REPO / "notebooks" / "05_results_zero_shot.ipynb"
    declared = book_run.notebook_parameters(source)
    path, _, error = book_run.execute_chapter(book_run.Chapter("notebooks/05_results_zero_shot", source),
                                          {k: params[k] for k in declared if k in params}, tmp_path / "executed",
                                          book_run.write_kernelspec(tmp_path / "jupyter"), progress=False)
    assert error is None, error
    text = path.read_text()
    assert "my_dialogues.json" in text and "image/png" in text


# -- the stand-ins --------------------------------------------------------------------------------------
def test_standin_ids_follow_the_paper_profile(tmp_path):
    paper = profiles.PROFILES["paper"]
    params = rehearsal.parameters(tmp_path)
    models = tmp_path / "models"
    assert params["encoders"]["zero-shot"] == (f"blip-original:{models}/model_base.pth+"
                                               f"{models}/Salesforce/blip-itm-base-coco")
    assert params["encoders"]["dialogue-ft"].endswith("/chatir_weights.ckpt+" f"{models}/Salesforce/blip-itm-base-coco"
                                                      "?max_length=200")
    assert params["encoders"]["beit3"] == (f"beit3:{models}/beit3_base_patch16_384_coco_retrieval.pth+"
                                           f"{models}/beit3.spm")
    assert params["generator"] == f"sd3:{models}/stabilityai/stable-diffusion-3-medium-diffusers"
    assert params["weak_generator"] == f"sd:{models}/stabilityai/stable-diffusion-2-1?scheduler=dpm-multistep"
    assert params["reformulator"] == f"hf-llm:{models}/Qwen/Qwen2.5-1.5B-Instruct?fallback=true"
    # The released protocol's section: ChatIR's BLIP stand-in at the release's 256 tokens, the real rewrites.
    assert params["released_encoder"] == (f"blip-original:{models}/chatir_weights.ckpt+"
                                          f"{models}/Salesforce/blip-itm-base-coco?max_length=256")
    assert params["released_reformulator"] == "replay:dar-released"
    # Same backends and roles as the paper profile, and a valid parameter table.
    assert {r: s.partition(":")[0] for r, s in params["encoders"].items()} == \
        {r: s.partition(":")[0] for r, s in paper["encoders"].items()}
    table = profiles.parameters("paper", smoke=True, **params)
    assert table["rehearsal"] is True and table["profile"] == "paper"
    with pytest.raises(ValueError, match=r"no stand-in for 'openai/clip-vit-large-patch14'"):
        rehearsal.standin_id("clip:openai/clip-vit-large-patch14", "encoder", tmp_path)


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    import os

    if not os.environ.get("DAR_DATA_MIRROR"):
        pytest.skip("the stand-ins' vocabularies and corpus come from ChatIR's files (set DAR_DATA_MIRROR)")
    root = tmp_path_factory.mktemp("rehearsal")
    lines: list[str] = []
    rehearsal.build(root, log=lines.append)
    again: list[str] = []
    rehearsal.build(root, log=again.append)
    assert lines and not again  # built once, then reused
    return root


def _layout(keys) -> set[str]:
    """Key names with layer numbers folded (a 1-layer stand-in and a 12-layer original compare equal)."""
    return {re.sub(r"\.\d+\.", ".N.", k) for k in keys}


def test_blip_standins_have_the_original_layouts(standins):
    import torch

    from dar_lib.models import blip_import as bi

    pre = torch.load(standins / "models" / "model_base.pth", weights_only=True)["model"]
    itm = torch.load(standins / "models" / "chatir_weights.ckpt", weights_only=True)["model"]
    assert any(k.startswith("text_decoder.") for k in pre) and not any(k.startswith("text_decoder.") for k in itm)
    # BLIP ties the decoder to the encoder (all but its self-attention), and its LM head to the embeddings.
    assert pre["text_decoder.cls.predictions.decoder.weight"] is pre["text_encoder.embeddings.word_embeddings.weight"]
    for name, sd in (("blip_pretrain_base_224_keys.tsv", pre), ("blip_itm_base_224_keys.tsv", itm)):
        tsv = BLIP_KEYS / name
        if tsv.is_file():
            original = [line.split("\t")[0] for line in tsv.read_text().splitlines() if line.strip()]
            assert _layout(sd) == _layout(original), _layout(sd) ^ _layout(original)
    for sd in (pre, itm):  # every key maps or is dropped by name, through the real importer
        bi.convert_state_dict(sd, source="stand-in")


def test_every_standin_loads_through_the_factory(standins):
    from dar_lib.models import load_encoder, load_generator, load_reformulator

    params = rehearsal.parameters(standins)
    image = rehearsal.fake_image("unlabeled2017/000000000001.jpg")
    for role, spec in params["encoders"].items():
        enc = load_encoder(spec, device="cpu")
        img, txt = enc.encode_images([image]), enc.encode_text(["a man riding a horse, is it sunny? yes"])
        assert img.shape == txt.shape and np.isfinite(img.numpy()).all(), role
    assert load_encoder(params["encoders"]["dialogue-ft"], device="cpu").max_length == 200
    assert load_encoder(params["released_encoder"], device="cpu").max_length == 256
    for spec in (params["generator"], params["weak_generator"]):
        gen = load_generator(spec, device="cpu")
        out = gen.generate(["a red bus. Style: photorealistic.", "a dog"], [0, 1], steps=2, size=32)
        assert [im.size for im in out] == [(32, 32)] * 2
    ref = load_reformulator(params["reformulator"], device="cpu")
    turns = ["a man riding a horse", "is it sunny? yes"]
    assert ref.rewrite(turns) == ", ".join(turns) and ref.fallbacks == 1  # junk reply: the recorded fallback
    assert len(ref.prompts("a man riding a horse", 2)) == 2 and ref.fallbacks == 2


def test_standin_corpus_is_a_decodable_subset(standins):
    from dar_lib.benchmarks import CHATIR

    params = rehearsal.parameters(standins)
    paths = json.loads(Path(params["corpus_file"]).read_text())
    assert len(paths) == rehearsal.N_TARGETS + rehearsal.N_DISTRACTORS
    assert all(re.fullmatch(r"unlabeled2017/\d{12}\.jpg", p) for p in paths)
    for name in CHATIR:
        bench = load_benchmark(name, image_root=params["image_root"], corpus_file=params["corpus_file"])
        assert len(bench.dialogues) >= rehearsal.N_TARGETS and bench.corpus_paths == paths
        img = bench.corpus_images([bench.dialogues[0].target_id])[0]
        assert img.mode == "RGB" and img.size == (rehearsal.IMAGE_SIDE,) * 2
    assert Image.open(Path(params["image_root"]) / paths[0]).format == "JPEG"


# -- the book under the rehearsal ------------------------------------------------------------------------
#: Chapters rehearsed in the test run: the data chapter, a results chapter (the REHEARSAL banner over
#: Figure 3 and the claims), chapter 08 (both protocols, the released one on ChatIR's BLIP stand-in) and
#: the status page. The toy chapters run once per test run, in the smoke book (tests/conftest.py); every
#: chapter under the rehearsal is `dar book --profile paper --rehearsal`.
REHEARSED = ("01_data", "05_results_zero_shot", "08_results_compat", "99_status")


@pytest.mark.slow
def test_paper_profile_rehearsal_runs_the_chapters(tmp_path, monkeypatch, capsys, read_executed):
    """`dar book --profile paper --rehearsal --only ... --no-book`: the chapters run on the stand-ins, quote
    only values they computed, and say on their pages that this is a rehearsal."""
    from dar_lib.book import run as book_run

    monkeypatch.setenv("DAR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "book"
    code = cli.main(["book", "--profile", "paper", "--rehearsal", "--out", str(out), "--no-book",
                     "--only", *REHEARSED])
    log = capsys.readouterr().out
    assert code == 0, log[-3000:]
    assert "failed 0 chapters" in log and f"executed {len(REHEARSED)}," in log
    chapters = [c.name for c in book_run.find_chapters(REPO / "book", REPO / "notebooks")]
    assert set(REHEARSED) <= set(chapters)
    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}
    assert set(records) == set(REHEARSED) and all(r["status"] == "ok" for r in records.values())
    assert all(r["parameters"].get("rehearsal", True) for r in records.values())
    assert any(f"rehearsal-{rehearsal_key()}" in m for r in records.values() for m in r["model_ids"])

    def page(name: str) -> tuple[str, dict]:
        """An executed chapter's outputs as text, and its glued values (every one its prose quotes)."""
        chapter = read_executed(out / "executed" / f"{name}.ipynb")
        assert not chapter.unglued, f"{name}: prose quotes unglued {chapter.unglued}"
        return chapter.outputs_text(), chapter.values

    status, values = page("99_status")
    assert "REHEARSAL, NOT RESULTS" in status and "fallback" in status and "REHEARSAL" in values["run_kind"]
    assert values["n_chapters"] == str(len(REHEARSED) - 1) and values["n_failed"] == "0"
    assert "REHEARSAL" in page("05_results_zero_shot")[0]
    # Both protocols ran: chapter 08's released-protocol section, right truncation and keep-newest.
    compat = page("08_results_compat")[0]
    assert "released (right)" in compat and "keep newest (left)" in compat and "pct_newest_lost" in compat
    page("01_data")


# -- measure/gpu_turn.py's CPU mode ------------------------------------------------------------------------
def test_gpu_turn_script_tiny_cpu_mode_prints_json():
    proc = subprocess.run([sys.executable, str(REPO / "measure" / "gpu_turn.py"), "--tiny", "--device", "cpu",
                           "--turns", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["tiny"] is True and result["device"] == "cpu" and result["timed_turns"] == 1
    gens = result["generators"]
    assert list(gens) == ["sd3", "sd21", "turbo"]  # SD3-medium, SD 2.1 and the few-step generator
    assert gens["sd21"]["scheduler"] == "DPMSolverMultistepScheduler" and gens["turbo"]["steps"] == 1
    assert gens["turbo"]["guidance"] == 0.0 and gens["sd3"]["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    for g in gens.values():
        stages = g["stages"]
        assert set(stages) == {"R1 reformulation", "R2 prompts", "generation", "encoding", "fusion + ranking", "total"}
        assert all(v["median_s"] >= 0 for v in stages.values())
    assert result["n_corpus"] == 50_000 and result["k_images"] == 3
    assert result["corpus_dim"] == SHAPES["tiny"]["blip"]["proj"]  # the encoder's projection width
    assert result["llm_tokens"]["r1_reply"] == 48 and result["llm_tokens"]["r2_reply"] == 160


def test_each_standin_is_built_as_a_file_or_a_folder_by_its_kind():
    """A hub id with dots in its name (Qwen2.5-1.5B-Instruct) is a folder, not a file with suffix '.5B-Instruct'."""
    from dar_lib import rehearsal

    files = {n for n in rehearsal.STANDINS if Path(n).suffix in rehearsal.STANDIN_FILE_SUFFIXES}
    assert files == {"beit3.spm", "model_base.pth", "chatir_weights.ckpt", "beit3_base_patch16_384_coco_retrieval.pth"}
