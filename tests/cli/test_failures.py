"""Every failure path of the command line: a clear message, exit 2 (usage/parse) or 1 (other), no
traceback, nothing half-written. Signals and concurrent runs go through subprocesses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conceptlang.cli import main

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}  # subprocesses import this checkout's conceptlang


def invoke(*args, input=None):
    """Run the CLI in-process; a Python exception escaping it (a traceback) fails the test."""
    res = CliRunner().invoke(main, [str(a) for a in args], input=input)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"traceback for {args}: {res.exception!r}\n{res.output}") from res.exception
    assert "Traceback" not in res.output
    return res


# ---- source text: byte order mark -----------------------------------------------------------


def test_a_utf8_bom_is_skipped_in_files_and_stdin(tmp_path):
    f = tmp_path / "bom.cl"
    f.write_bytes(b"\xef\xbb\xbfmale & smiling\n")
    res = invoke("check", f)
    assert res.exit_code == 0 and res.output == f"{f}: ok\n"
    res = invoke("parse", "-", input=b"\xef\xbb\xbfa & (")
    assert res.exit_code == 2
    # The error points into the text after the BOM: column 6 is just after "(".
    assert "at line 1, column 6:\n  a & (\n       ^" in res.output
    res = invoke("parse", "--json", "-f", f)
    body = json.loads(res.output)["body"]
    assert res.exit_code == 0 and body["type"] == "And" and body["span"] == {"line": 1, "column": 1, "start": 0, "end": 14}
    # Only a leading BOM is skipped: one inside the text is a syntax error.
    res = invoke("parse", "-", input="a &\ufeff b".encode())
    assert res.exit_code == 2 and "unexpected character '\\ufeff'" in res.output


def test_stdin_that_is_not_utf8_is_a_usage_error():
    res = invoke("parse", "-", input=b"a & \xff")
    assert res.exit_code == 2 and "Error: -: not UTF-8 text (invalid start byte at byte 4)" in res.output


def test_caret_for_carriage_return_input():
    res = invoke("parse", "-", input=b"a &\r(")
    assert res.exit_code == 2
    assert res.output.endswith("at line 1, column 6:\n  a & (\n       ^\n")


def test_underflowing_weight_is_a_parse_error():
    res = invoke("parse", "1e-400 * a")
    assert res.exit_code == 2 and "the number 1e-400 is too small: it would be rounded to 0" in res.output


# ---- errors in the expression beyond its syntax: exit 2 with the place ------------------------


@pytest.mark.parametrize("expr,message", [
    ("red & position(0.5)", "error: position takes 2 argument(s) (x, y), got 1\n at line 1, column 7:\n"
                            "  red & position(0.5)\n        ^\n"),
    ("position(2, 0.5)", "error: position argument x=2 is outside [0, 1]\n at line 1, column 1:\n"
                         "  position(2, 0.5)\n  ^\n"),
    ("circle & red(1)", "error: red takes no arguments (it is not a parameterised concept)\n at line 1, column 10:\n"
                        "  circle & red(1)\n           ^\n"),
    ("circle & smiling", "error: the concepts come from different domains and cannot be composed: "
                         "circle (scenes), smiling (faces)\n"),
])
def test_expression_errors_beyond_the_syntax_exit_2(tmp_path, expr, message):
    from conceptlang import CompileError, ExpressionError, compile
    from conceptlang.models.registry import load_registry

    with pytest.raises(ExpressionError) as err:
        compile(expr, load_registry())
    assert isinstance(err.value, CompileError) and err.value.exit_code == 2
    for args in (["sample", expr, "-n", "2", "-o", tmp_path / "x.png"], ["explain", expr]):
        res = invoke(*args)
        assert (res.exit_code, res.output) == (2, message), args
    assert not any(tmp_path.iterdir())


@pytest.fixture()
def nothing_sampled(monkeypatch):
    """Fail the test if an expression of eval or a figure gets sampled."""
    from conceptlang.evaluation import figures, run

    def refuse(*a, **k):
        raise AssertionError("an expression was sampled before every expression was checked")

    monkeypatch.setattr(run, "evaluate_entry", refuse)
    monkeypatch.setattr(figures, "evaluate_entry", refuse)


def test_eval_and_figures_check_every_expression_before_sampling(tmp_path, nothing_sampled):
    suite = tmp_path / "s.txt"
    suite.write_text("@domain scenes\nred\n# a comment\nfoo & red\n")
    res = invoke("eval", suite, "-n", "2", "-o", tmp_path / "r.json")
    assert (res.exit_code, res.output) == (2, f"error: {suite}, line 4: unknown concept 'foo'\n at line 1, column 1:\n"
                                              "  foo & red\n  ^\n")
    res = invoke("figure", "venn", "red", "position", "-o", tmp_path / "v.png")
    assert res.exit_code == 2 and res.output.startswith(
        "error: region B: position is a parameterised concept: write position(x, y)\n at line 1, column 1:\n")
    res = invoke("figure", "venn", "red", "smiling", "-o", tmp_path / "v.png")
    assert (res.exit_code, res.output) == (2, "error: region A & B: the concepts come from different domains and cannot "
                                              "be composed: red (scenes), smiling (faces)\n")
    res = invoke("figure", "compare", "red", "circle & position(0.5)", "-o", tmp_path / "c.png")
    assert (res.exit_code, res.output) == (2, "error: expression 2: position takes 2 argument(s) (x, y), got 1\n"
                                              " at line 1, column 10:\n  circle & position(0.5)\n           ^\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.txt"]


def test_check_entries_leaves_other_compile_failures_to_the_measurement():
    from conceptlang.errors import CompileError
    from conceptlang.evaluation.run import check_entries
    from conceptlang.evaluation.suites import parse_suite
    from conceptlang.models.registry import load_registry

    registry = load_registry()
    entries = parse_suite("red & green\ncircle\n").entries  # unsatisfiable: a warning, measured as such
    assert check_entries((("x", e) for e in entries), registry) is None

    class Broken:
        def __getattr__(self, name):
            raise CompileError("the registry cannot answer")

    assert check_entries((("x", e) for e in entries), Broken()) is None


def test_train_with_a_family_the_domain_lacks_is_a_usage_error(tmp_path):
    res = invoke("train", "scenes", "hue", "--iters", "1", "--out", tmp_path / "run")
    assert res.exit_code == 2 and res.output.endswith(
        "Error: Invalid value for FAMILY: domain 'scenes' has no family 'hue' (families: shape, color, size, position)\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,message", [
    (["--split", "nosuch"], "Invalid value for '--split': scenes has no split 'nosuch' (splits: train, heldout, "
                            "continual1, continual2, continual3, two_objects)"),
    (["--split", "train:0.5,heldout:0"], "Invalid value for '--split': split weights must be finite and > 0, got 'heldout:0'"),
    (["--split", "train:x"], "Invalid value for '--split': bad split weight in 'train:x' (use NAME or NAME:WEIGHT)"),
    (["--lr", "-1"], "Invalid value for '--lr': -1.0 is not in the range x>0."),
    (["--lr", "1e-4", "--lr-min", "1e-3"], "Invalid value for '--lr-min': the final learning rate must not exceed --lr "
                                           "(0.0001), got 0.001"),
    (["--batch-size", "0"], "Invalid value for '--batch-size': 0 is not in the range x>=1."),
    (["--cond-dropout", "1"], "Invalid value for '--cond-dropout': 1.0 is not in the range 0<=x<1."),
])
def test_train_settings_out_of_range_are_usage_errors_before_anything_is_written(tmp_path, args, message):
    res = invoke("train", "scenes", *args, "--iters", "1", "--out", tmp_path / "run", "--quiet")
    assert res.exit_code == 2 and res.output.endswith(f"Error: {message}\n"), res.output
    assert not (tmp_path / "run").exists()


# ---- outputs that cannot be written: refused before any work -------------------------------

SAMPLE = ("sample", "red", "--models", "analytic", "-n", "2", "--steps", "2", "--device", "cpu")


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the sample command gets as far as loading models (i.e. past its checks)."""
    from conceptlang.cli import sample_cmds

    def refuse(*a, **k):
        raise AssertionError("the outputs should have been refused before any work")

    monkeypatch.setattr(sample_cmds, "load_registry_for", refuse)


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (("-o", "{file}/x.png"), "error: -o/--output {file}/x.png: {file} is a file, not a folder"),
        (("-o", "{file}/sub/x.png"), "error: -o/--output {file}/sub/x.png: {file} is a file, not a folder"),
        (("-o", "{dir}.png"), "error: -o/--output {dir}.png is a folder, not a file"),
        (("-o", "{tmp}/ok.png", "--per-image", "{file}"), "error: --per-image {file} is a file, not a folder"),
        (("-o", "{tmp}/ok.png", "--per-image", "{file}/imgs"), "error: --per-image {file}/imgs: {file} is a file, not a folder"),
        (("-o", "{tmp}/ok.png", "--gif", "{file}/c.gif"), "error: --gif {file}/c.gif: {file} is a file, not a folder"),
        (("-o", "{tmp}/ok.png", "--gif", "{tmp}/g.gif"), "error: --gif {tmp}/g.gif is a folder, not a file"),
        (("-o", "{tmp}/s.png"), "error: the JSON sidecar {tmp}/s.json is a folder, not a file"),
    ],
)
def test_unwritable_sample_outputs_are_refused_up_front(tmp_path, no_work, extra, message):
    (tmp_path / "file").write_text("x")
    for folder in ("d.png", "g.gif", "s.json"):
        (tmp_path / folder).mkdir()
    fill = {"file": tmp_path / "file", "dir": tmp_path / "d", "tmp": tmp_path}
    before = _files(tmp_path)
    res = invoke(*SAMPLE, *(e.format(**fill) for e in extra))
    assert res.exit_code == 1 and res.output.startswith(message.format(**fill)), res.output
    assert _files(tmp_path) == before


def test_a_nul_character_in_an_argument_or_path_is_refused(tmp_path, no_work):
    from conceptlang.errors import OutputError
    from conceptlang.io import check_dir_output, check_file_output

    res = invoke(*SAMPLE, "-o", f"{tmp_path}/a\x00b.png")
    assert res.exit_code == 2 and f"Error: the argument '{tmp_path}/a\\x00b.png' contains a NUL character" in res.output
    with pytest.raises(OutputError, match="a path cannot contain a NUL character"):
        check_file_output(f"{tmp_path}/a\x00b.png")
    with pytest.raises(OutputError, match="a path cannot contain a NUL character"):
        check_dir_output(f"{tmp_path}/a\x00b")
    assert _files(tmp_path) == []


def test_a_folder_that_cannot_be_written_is_refused(tmp_path, no_work, monkeypatch):
    """A folder the process may not write in (simulated: the tests may run as root)."""
    from pathlib import Path

    from conceptlang import io as cio

    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkstemp, real_mkdtemp = cio.tempfile.mkstemp, cio.tempfile.mkdtemp

    def guard(real):
        def make(*a, dir=None, **k):
            if dir is not None and Path(dir) == locked:
                raise PermissionError(13, "Permission denied")
            return real(*a, dir=dir, **k)
        return make

    monkeypatch.setattr(cio.tempfile, "mkstemp", guard(real_mkstemp))
    monkeypatch.setattr(cio.tempfile, "mkdtemp", guard(real_mkdtemp))
    res = invoke(*SAMPLE, "-o", locked / "x.png")
    assert res.exit_code == 1 and res.output == f"error: -o/--output {locked / 'x.png'}: cannot write in {locked} (Permission denied)\n"
    res = invoke(*SAMPLE, "-o", locked / "new" / "x.png")
    assert res.exit_code == 1 and res.output == (f"error: -o/--output {locked / 'new' / 'x.png'}: cannot create "
                                                 f"{locked / 'new'} in {locked} (Permission denied)\n")
    res = invoke(*SAMPLE, "-o", tmp_path / "ok.png", "--per-image", locked)
    assert res.exit_code == 1 and res.output == f"error: --per-image {locked}: cannot write in {locked} (Permission denied)\n"
    res = invoke(*SAMPLE, "-o", tmp_path / "ok.png", "--gif", locked / "c.gif")
    assert res.exit_code == 1 and res.output == f"error: --gif {locked / 'c.gif'}: cannot write in {locked} (Permission denied)\n"
    res = invoke("data", "scenes", "-n", "2", "-o", locked / "ds", "--quiet")
    assert res.exit_code == 1
    assert res.output == f"error: -o/--out {locked / 'ds'}: cannot create {locked / 'ds'} in {locked} (Permission denied)\n"
    assert _files(tmp_path) == ["locked"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path, no_work):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = invoke(*SAMPLE, "-o", ro / "x.png")
        assert res.exit_code == 1 and f"cannot write in {ro}" in res.output
        res = invoke("data", "scenes", "-n", "2", "-o", ro / "ds", "--quiet")
        assert res.exit_code == 1 and "cannot" in res.output
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_unwritable_data_output_is_refused_before_generating(tmp_path, monkeypatch):

    (tmp_path / "file").write_text("x")
    before = _files(tmp_path)
    res = invoke("data", "scenes", "-n", "3", "-o", tmp_path / "file" / "ds", "--quiet")
    assert res.exit_code == 1 and res.output == f"error: -o/--out {tmp_path / 'file' / 'ds'}: {tmp_path / 'file'} is a file, not a folder\n"
    res = invoke("data", "scenes", "-n", "3", "-o", tmp_path / "file", "--quiet")
    assert res.exit_code == 2 and "is a file" in res.output
    assert _files(tmp_path) == before


# ---- a huge -n -------------------------------------------------------------------------------


def test_huge_n_grid_is_refused_pointing_to_per_image(tmp_path, monkeypatch):
    from conceptlang.sampling import api

    monkeypatch.setattr(api, "sample", lambda *a, **k: pytest.fail("sampling should not start"))
    res = invoke("sample", "smiling", "-n", "1000000000", "--steps", "1", "--device", "cpu", "-o", tmp_path / "b.png")
    assert res.exit_code == 2
    assert ("-n 1000000000: the grid of 1000000000 samples would be 4300736×4300736 pixels, more than the "
            "89,478,485 that Pillow (and `conceptlang judge`) will read back") in res.output
    assert "--per-image DIR" in res.output
    res = invoke("sample", "red", "--models", "analytic", "-n", "10000", "-o", tmp_path / "b.png")
    assert res.exit_code == 2 and "use a smaller -n, or --scale 1, or write one PNG per sample" in res.output
    assert _files(tmp_path) == []


def test_huge_n_that_does_not_fit_in_memory_is_refused(tmp_path, monkeypatch):
    from conceptlang.cli import sample_cmds

    monkeypatch.setattr(sample_cmds, "_available_memory", lambda: 8 * 2**30)
    res = invoke("sample", "smiling", "-n", "1000000000", "--per-image", tmp_path / "imgs", "-o", tmp_path / "b.png")
    assert res.exit_code == 1
    # 1e9 × (3·32·32 float32 + 128·128... no: 32·32·3 RGB bytes) = 1e9 × 15,360 bytes
    assert res.output == ("error: -n 1000000000: the samples need about 14,305.1 GiB of memory (all 1000000000 are "
                          "kept until the end), more than the 8.0 GiB available; sample fewer per run (runs with "
                          "different --seed values draw different samples)\n")
    assert _files(tmp_path) == []


def test_a_grid_too_large_with_per_image_writes_the_samples_alone(tmp_path):
    # Scale 40: a 34·40 = 1360 px cell, so 48 cells fit in Pillow's limit and 50 do not.
    res = invoke("sample", "red", "--models", "analytic", "-n", "50", "--steps", "2", "--scale", "40",
                 "--per-image", tmp_path / "imgs", "-o", tmp_path / "g.png")
    assert res.exit_code == 0, res.output
    assert "warning: the grid of 50 samples would be too large" in res.output
    assert not (tmp_path / "g.png").exists()
    rec = json.loads((tmp_path / "g.json").read_text())
    assert rec["outputs"]["grid"] is None and len(rec["outputs"]["per_image"]) == 50
    assert sorted(p.name for p in (tmp_path / "imgs").iterdir()) == [f"sample_{i:04d}.png" for i in range(50)]


def test_default_batch_size_is_bounded(tmp_path):
    from conceptlang.cli.sample_cmds import DEFAULT_BATCH_SIZE

    res = invoke("sample", "red", "--models", "analytic", "-n", "300", "--steps", "1", "--json", "-o", tmp_path / "g.png")
    assert res.exit_code == 0
    assert DEFAULT_BATCH_SIZE == 256 and json.loads(res.stdout)["sampler"]["batch_size"] == 256
    res = invoke("sample", "red", "--models", "analytic", "-n", "3", "--steps", "1", "--json", "-o", tmp_path / "g.png")
    assert json.loads(res.stdout)["sampler"]["batch_size"] == 3


def test_huge_data_set_is_refused_for_lack_of_space(tmp_path, monkeypatch):
    from conceptlang.cli import data_cmds

    res = invoke("data", "scenes", "-n", "1000000000000", "-o", tmp_path / "ds")
    assert res.exit_code == 1 and res.output.startswith("error: -n 1000000000000: the data set needs about ")
    fake = os.statvfs_result((4096, 4096, 10**6, 1000, 1000, 10**6, 50, 50, 0, 255))  # 1000 blocks, 50 inodes free
    monkeypatch.setattr(data_cmds.os, "statvfs", lambda p: fake)
    res = invoke("data", "scenes", "-n", "900", "-o", tmp_path / "ds", "--quiet")
    assert res.exit_code == 1 and "but " in res.output and "has 0.0 GiB free" in res.output
    res = invoke("data", "scenes", "-n", "60", "-o", tmp_path / "ds", "--quiet")
    assert res.exit_code == 1 and "the data set needs 64 files (one PNG per image), but the file system of" in res.output
    assert "has room for 50 more" in res.output
    assert _files(tmp_path) == []


def test_data_streams_in_blocks(tmp_path, monkeypatch):
    """Labels are drawn BLOCK images at a time: block 0 from the seed, block j from block_seed."""
    import numpy as np
    from PIL import Image

    from conceptlang.cli import data_cmds
    from conceptlang.data import generate, scenes

    sizes = []
    real = scenes.sample_scene_arrays

    def spy(n, seed, split="train"):
        sizes.append(n)
        return real(n, seed, split)

    monkeypatch.setattr(scenes, "sample_scene_arrays", spy)
    monkeypatch.setattr(data_cmds, "BLOCK", 5)
    out = data_cmds.write_dataset("scenes", 12, tmp_path / "ds", seed=9, chunk=2, progress=False)
    assert max(sizes) <= 8 and sizes[-3:] == [5, 5, 2]  # the first call (8) measures a PNG's size
    recs = [json.loads(l) for l in (out / "labels.jsonl").read_text().splitlines()]
    assert [r["file"] for r in recs] == [f"images/{i:06d}.png" for i in range(12)]
    expect = [generate("scenes", 5, seed=9)[0], generate("scenes", 5, seed=data_cmds.block_seed(9, 1))[0],
              generate("scenes", 2, seed=data_cmds.block_seed(9, 2))[0]]
    for i, img in enumerate(np.concatenate(expect)):
        assert np.array_equal(np.asarray(Image.open(out / recs[i]["file"])), img)
    assert data_cmds.block_seed(9, 0) == 9 and len({data_cmds.block_seed(9, j) for j in range(100)}) == 100


# ---- seeds -----------------------------------------------------------------------------------


def test_seeds_of_2_64_and_above_are_refused_and_large_ones_do_not_alias(tmp_path):
    res = invoke(*SAMPLE, "--seed", str(2**64), "-o", tmp_path / "a.png")
    assert res.exit_code == 2 and "18446744073709551616 is not in the range 0<=x<=18446744073709551615" in res.output
    shas = {}
    for seed in (0, 2**32, 2**64 - 1):
        res = invoke(*SAMPLE, "--seed", str(seed), "-o", tmp_path / f"{seed}.png")
        assert res.exit_code == 0
        shas[seed] = json.loads((tmp_path / f"{seed}.json").read_text())["image_sha256"]
    assert len(set(shas.values())) == 3


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_data_seed_out_of_range_is_refused(tmp_path, seed):
    res = invoke("data", "scenes", "-n", "2", "--seed", seed, "-o", tmp_path / "ds")
    assert res.exit_code == 2 and f"Invalid value for '--seed': {seed} is not in the range 0<=x<=4294967295" in res.output
    assert not (tmp_path / "ds").exists()


def test_gif_must_be_a_gif(tmp_path, no_work):
    res = invoke(*SAMPLE, "-o", tmp_path / "a.png", "--gif", tmp_path / "x.png")
    assert res.exit_code == 2 and f"--gif must name a .gif file, got '{tmp_path / 'x.png'}'" in res.output
    assert _files(tmp_path) == []


# ---- judge on a decompression bomb ---------------------------------------------------------------


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that claims width × height pixels (greyscale) in a few dozen bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [60000, 9500])  # over twice Pillow's limit (its error), and just over it (its warning)
def test_judge_refuses_a_decompression_bomb(tmp_path, side):
    img = tmp_path / "bomb.png"
    _png_header_only(img, side, side)
    res = invoke("judge", img, "--domain", "scenes")
    assert res.exit_code == 2
    assert f"{img}: the image is too large to judge (more than 89,478,485 pixels" in res.output


# ---- output pairs: PNG + JSON sidecar ---------------------------------------------------------------


def test_the_sidecar_names_the_grid_png_sha256(tmp_path):
    import hashlib

    from conceptlang.io import read_output_pair

    res = invoke(*SAMPLE, "-o", tmp_path / "a.png")
    assert res.exit_code == 0
    rec = json.loads((tmp_path / "a.json").read_text())
    assert rec["outputs"]["grid_sha256"] == hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()
    png, rec2 = read_output_pair(tmp_path / "a.png")
    assert rec2 == rec and png == (tmp_path / "a.png").read_bytes()
    assert _files(tmp_path) == ["a.json", "a.png"]


def test_read_output_pair_detects_a_mismatched_pair(tmp_path):
    from conceptlang.errors import OutputError
    from conceptlang.io import read_output_pair, write_output_pair

    write_output_pair(tmp_path / "a.png", b"one", tmp_path / "a.json", {"run": 1})
    write_output_pair(tmp_path / "b.png", b"two", tmp_path / "b.json", {"run": 2})
    digest = __import__("hashlib").sha256(b"one").hexdigest()
    assert read_output_pair(tmp_path / "a.png") == (b"one", {"run": 1, "outputs": {"grid_sha256": digest}})
    os.replace(tmp_path / "b.png", tmp_path / "a.png")
    with pytest.raises(OutputError, match="a.json does not describe .*a.png"):
        read_output_pair(tmp_path / "a.png")


WRITER = r"""
import sys
from conceptlang.io import write_output_pair
target, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(count):
    png = (tag * 1000 + str(i)).encode()
    write_output_pair(target + ".png", png, target + ".json", {"writer": tag, "i": i})
"""


def test_concurrent_writers_never_show_a_locking_reader_a_mismatched_pair(tmp_path):
    import subprocess
    import sys

    from conceptlang.io import read_output_pair, write_output_pair

    target = str(tmp_path / "pair")
    write_output_pair(target + ".png", b"start", target + ".json", {"writer": "start"})
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, target, tag, "300"]) for tag in "AB"]
    seen = set()
    while any(p.poll() is None for p in procs):
        _, rec = read_output_pair(target + ".png")  # raises OutputError on a mismatched pair
        seen.add(rec["writer"])
    assert [p.wait() for p in procs] == [0, 0]
    _, rec = read_output_pair(target + ".png")
    assert rec["writer"] in "AB" and rec["i"] == 299
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair.json", "pair.png"]


def test_two_sample_runs_writing_the_same_output_leave_one_runs_pair(tmp_path):
    import subprocess
    import sys

    from conceptlang.io import read_output_pair

    out = tmp_path / "same.png"
    cmd = [sys.executable, "-m", "conceptlang", *SAMPLE, "-n", "64", "-o", str(out)]
    procs = [subprocess.Popen(cmd + ["--seed", str(s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=ENV) for s in (1, 2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    png, rec = read_output_pair(out)
    assert rec["seed"] in (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.json", "same.png"]


def _default_sigint() -> None:
    """In the child: SIGINT back to its default, so Python installs its KeyboardInterrupt handler even
    where the test run itself ignores SIGINT (a shell's background job, `cmd &`, starts that way)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


INTERRUPTED_BETWEEN_RENAMES = r"""
import os, signal, sys
from conceptlang import io as cio
real, done = os.replace, []
def replace(src, dst):
    real(src, dst)
    done.append(os.path.basename(dst))
    if len(done) == 1:
        os.kill(os.getpid(), signal.SIGINT)  # between the PNG's rename and the JSON's
cio.os.replace = replace
try:
    cio.write_output_pair(sys.argv[1] + ".png", b"new", sys.argv[1] + ".json", {"run": "new"})
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted after", ",".join(done))
"""


def test_sigint_between_the_two_renames_is_held_until_both_are_done(tmp_path):
    import subprocess
    import sys

    from conceptlang.io import read_output_pair, write_output_pair

    target = str(tmp_path / "p")
    write_output_pair(target + ".png", b"old", target + ".json", {"run": "old"})
    res = subprocess.run([sys.executable, "-c", INTERRUPTED_BETWEEN_RENAMES, target], capture_output=True, text=True,
                         timeout=60, env=ENV, preexec_fn=_default_sigint)
    assert res.stdout == "interrupted after p.png,p.json\n", res.stderr
    png, rec = read_output_pair(target + ".png")
    assert png == b"new" and rec["run"] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.png"]


def test_sigint_while_sampling_leaves_the_old_pair_and_no_temp_files(tmp_path):
    import signal
    import subprocess
    import sys

    from conceptlang.io import read_output_pair, write_output_pair

    out = tmp_path / "s.png"
    write_output_pair(out, b"old", tmp_path / "s.json", {"run": "old"})
    cmd = [sys.executable, "-m", "conceptlang", "sample", "red", "--models", "analytic", "-n", "4",
           "--steps", "10000000", "--progress", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ENV, preexec_fn=_default_sigint)
    err = b""
    while b"%|" not in err:  # the progress bar: sampling has started
        chunk = proc.stderr.read1(4096)
        assert chunk, err
        err += chunk
    proc.send_signal(signal.SIGINT)
    rest_out, rest_err = proc.communicate(timeout=60)
    err += rest_err
    assert proc.returncode == 130 and b"interrupted" in err and b"Traceback" not in err
    assert read_output_pair(out) == (b"old", {"run": "old", "outputs": {"grid_sha256": __import__("hashlib").sha256(b"old").hexdigest()}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.png"]


def test_a_file_system_error_mid_run_is_reported_without_a_traceback(tmp_path, monkeypatch):
    from conceptlang import io as cio

    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "a.png"))

    monkeypatch.setattr(cio, "write_output_pair", full)
    res = invoke(*SAMPLE, "-o", tmp_path / "a.png")
    assert res.exit_code == 1 and res.output.endswith(f"error: No space left on device ({tmp_path / 'a.png'})\n")


# ---- fuzz: random argument vectors never give a traceback ------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Value pools: (good, bad). A value is drawn from the good ones three times in four, so that most
# command lines get past option parsing and into the commands themselves.
INTS = (["0", "1", "2", "3"], ["-1", "x", "1e400", "", str(2**64), str(2**63), "9" * 30])
FLOATS = (["0.5", "1", "0.1", "2"], ["-1", "0", "nan", "inf", "-inf", "1e-400", "1e400", "x", ""])
EXPRS = (["red", "red & ~blue", "\ufeffred", "position(0.5, 0.5)", "2 * red | circle", "x = red; x", "~red", "-"],
         ["(", "1e-400 * a", "", "a &\r(", "smiling", "~~~", "\u2028", "1e400 * red", "red" * 200, "mauve"])


def _paths(root) -> tuple[list[str], list[str]]:
    good = [str(root / "ok.png"), str(root / "new" / "deep" / "x.png"), str(root / "x.gif"), str(root / "bom.cl"),
            str(root / "img.png"), str(root / "out")]
    bad = [str(root / "file"), str(root / "file" / "x.png"), str(root / "dir"), str(root / "latin1.cl"),
           str(root / "bomb.png"), str(root / "missing"), "", "-", "/"]
    return good, bad


def _options(root) -> dict[str, dict[str, tuple[list[str], list[str]] | None]]:
    paths = _paths(root)
    models = (["analytic", "analytic:implicit", "analytic:noise_conditional"],
              ["analytic:bogus", str(root / "missing"), str(root / "file"), str(root / "dir"), ""])
    compile_opts = {"--alpha": FLOATS, "--temperature": FLOATS, "--and-mode": (["sum", "product", "joint"], ["x"]),
                    "--or-mode": (["auto", "dnf", "lse"], ["x"]), "--strict": None, "--no-concept-weights": None,
                    "-f": paths, "--models": models}
    return {
        "parse": {"-f": paths, "--json": None, "--text": None, "--expand": None, "--max-depth": INTS},
        "check": {"--json": None},
        "explain": {**compile_opts, "--dot": None, "--json": None},
        "sample": {**compile_opts, "-n": INTS, "-o": paths, "--steps": (["1", "2"], ["-1", "0", "x"]),
                   "--seed": INTS, "--sampler": (["langevin", "annealed", "mala"], ["x"]),
                   "--device": (["cpu"], ["cuda", "x"]), "--step-size": FLOATS, "--noise-scale": FLOATS,
                   "--restarts": (["0", "1"], ["-1", "x"]), "--restart-sigma": FLOATS, "--batch-size": INTS,
                   "--per-image": paths, "--gif": paths, "--scale": (["1", "2"], ["-1", "0", "x", "100000"]), "--json": None,
                   "--estimate-log-z": None, "--clip-denoised": None},
        "data": {"-n": (["1", "2"], ["-1", "0", "x", str(10**12)]),
                 "-o": ([str(root / "ds"), str(root / "new" / "ds")], paths[0] + paths[1]), "--seed": INTS,
                 "--split": (["train", "heldout", "two_objects"], ["x"]), "--size": (["8", "16"], ["7", "2000", "x"]),
                 "--force": None, "--quiet": None},
        "judge": {"--domain": (["scenes", "faces"], ["x"]), "--grid-cell": (["8", "32"], ["-1", "x"]),
                  "--objects": (["1", "2"], ["0", "3"]), "--json": None},
        "models": {"--models": ([str(REPO / "models")], models[1]), "--verify": None, "--json": None},
    }


def _fixtures(root) -> None:
    """The files the argument pools name."""
    import numpy as np
    from PIL import Image

    (root / "file").write_text("x")
    (root / "dir").mkdir(exist_ok=True)
    (root / "bom.cl").write_bytes(b"\xef\xbb\xbfred & ~blue\n")
    (root / "latin1.cl").write_bytes(b"caf\xe9")
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "img.png")
    _png_header_only(root / "bomb.png", 60000, 60000)


@st.composite
def argv(draw, root):
    def pick(pool):
        good, bad = pool
        return draw(st.sampled_from(good if draw(st.integers(0, 3)) else bad))

    options = _options(root)
    command = draw(st.sampled_from(sorted(options)))
    table = options[command]
    args = [command]
    if command in ("parse", "explain", "sample"):
        args.append(pick(EXPRS))
    elif command == "check":
        args.append(pick(_paths(root)))
    elif command == "judge":
        args.append(pick(([str(root / "img.png")], _paths(root)[1])))
    elif command == "data":
        args += [pick((["scenes", "faces"], ["x"])), "-n", pick(table["-n"]), "-o", pick(table["-o"])]
    if command == "judge" and draw(st.booleans()):
        args += ["--domain", pick(table["--domain"])]
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 9)) == 0:  # now and then a stray token
            args.append(draw(st.sampled_from(["--nope", "-", "--", "-n", "", "\x00", "--json=1", "extra"])))
            continue
        opt = draw(st.sampled_from(sorted(table)))
        args.append(opt)
        if table[opt] is not None:
            args.append(pick(table[opt]))
    if command in ("explain", "sample"):
        # Never the shipped models (slow to sample) and never an unbounded run: small n and steps.
        args += ["--models", draw(st.sampled_from(["analytic", "analytic:implicit"]))]
        if command == "sample":
            args += ["-n", draw(st.sampled_from(["1", "2", "3"])), "--steps", "2", "--device", "cpu"]
    return args


def _run_one(root, args) -> None:
    res = CliRunner().invoke(main, args, input=b"red & (")
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(res.exception))
        raise AssertionError(f"traceback for {args!r}:\n{tb}")
    assert res.exit_code in (0, 1, 2), (args, res.exit_code, res.output)
    assert "Traceback" not in res.output, (args, res.output)
    assert not [p for p in root.rglob("*.tmp")], args  # nothing half-written left behind


def _fuzz(tmp_path_factory, examples: int) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    _fixtures(root)

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def run(data):
        _run_one(root, data.draw(argv(root)))

    run()


def test_fuzzed_command_lines_never_give_a_traceback(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # the default -o samples.png lands here
    _fuzz(tmp_path_factory, examples=60)


@pytest.mark.slow
def test_fuzzed_command_lines_never_give_a_traceback_many(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    _fuzz(tmp_path_factory, examples=1500)


# ---- the other commands: outputs checked and seeds bounded before any work ---------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "scenes", "--iters", "1", "--quiet", "--out", "{file}/run"], "error: --out {file}/run: {file} is a file, not a folder"),
        (["train", "scenes", "--iters", "1", "--quiet", "--out", "{file}"], "error: --out {file} is a file, not a folder"),
        (["eval", "{suite}", "-n", "1", "-o", "{file}/r.json"], "error: -o/--output {file}/r.json: {file} is a file, not a folder"),
        (["eval", "{suite}", "-n", "1", "--markdown", "{file}/r.md"], "error: --markdown {file}/r.md: {file} is a file, not a folder"),
        (["eval", "{suite}", "-n", "1", "--grids", "{file}/g"], "error: --grids {file}/g: {file} is a file, not a folder"),
        (["eval-merge", "{suite}", "-o", "{file}/m.json"], "error: -o/--output {file}/m.json: {file} is a file, not a folder"),
        (["figure", "venn", "red", "blue", "-o", "{file}/v.png"], "error: -o/--output {file}/v.png: {file} is a file, not a folder"),
        (["figure", "compare", "red", "-o", "{file}/c.png", "--json"],
         "error: -o/--output {file}/c.png: {file} is a file, not a folder"),
        (["judge", "train", "scenes", "-o", "{file}/j"], "error: -o/--out {file}/j: {file} is a file, not a folder"),
    ],
)
def test_other_commands_check_their_outputs_first(tmp_path, args, message):
    import time

    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "suite.txt").write_text("red\n")
    fill = {"file": tmp_path / "file", "dir": tmp_path / "dir", "tmp": tmp_path, "suite": tmp_path / "suite.txt"}
    before = _files(tmp_path)
    t0 = time.perf_counter()
    res = invoke(*(a.format(**fill) for a in args))
    assert res.exit_code == 1 and res.output == message.format(**fill) + "\n"
    assert time.perf_counter() - t0 < 10  # refused at once: nothing was trained, sampled or judged
    assert _files(tmp_path) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "scenes", "--seed", "-1"], "Invalid value for '--seed': -1 is not in the range x>=0"),
        (["train", "scenes", "--data-seed", "-1"], "Invalid value for '--data-seed': -1 is not in the range x>=0"),
        (["train", "scenes", "--widths", "32,0"], "Invalid value for '--widths': must be positive integers, got '32,0'"),
        (["train", "scenes", "--checkpoint-every", "0"], "Invalid value for '--checkpoint-every': 0 is not in the range x>=1"),
        (["judge", "train", "scenes", "-o", "j", "--seed", "-1"], "Invalid value for '--seed': -1 is not in the range x>=0"),
    ],
)
def test_other_commands_refuse_bad_numbers(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    res = invoke(*args)
    assert res.exit_code == 2 and message in res.output
    assert _files(tmp_path) == []


def test_infer_refuses_a_decompression_bomb(tmp_path):
    img = tmp_path / "bomb.png"
    _png_header_only(img, 60000, 60000)
    res = invoke("infer", img)
    assert res.exit_code == 1
    assert res.output == (f"error: cannot read image {img}: it is too large (more than 89,478,485 pixels; "
                          "a possible decompression bomb)\n")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-n", "1", "--scale", "100000", "--per-image", "{tmp}/imgs"],
         "--per-image at --scale 100000: one sample would be 3200000×3200000 pixels, more than the 89,478,485"),
        (["-n", "1", "--scale", "300", "--gif", "{tmp}/c.gif"], "--gif at --scale 300: a frame would be 10800×10800 pixels"),
        (["-n", "20", "--scale", "100", "--gif", "{tmp}/c.gif", "--per-image", "{tmp}/imgs"],
         "--gif at --scale 100: a frame would be 13800×13800 pixels"),
    ],
)
def test_a_scale_too_large_for_one_image_or_gif_frame_is_refused(tmp_path, extra, message):
    res = invoke("sample", "red", "--models", "analytic", "--steps", "1", "-o", tmp_path / "s.png",
                 *(e.format(tmp=tmp_path) for e in extra))
    assert res.exit_code == 2 and message in res.output and "use a smaller --scale" in res.output
    assert _files(tmp_path) == []


@pytest.mark.parametrize("args", [["sample", "-1 * red & circle"], ["explain", "-.5 * smiling"], ["parse", "-2 * a"]])
def test_an_expression_that_starts_with_a_negative_weight_gets_a_hint(args):
    """Click reads a word that starts with '-' as an option; the message says how to pass it."""
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    option = {"-1 * red & circle": "-1", "-.5 * smiling": "-.", "-2 * a": "-2"}[args[1]]  # as click splits it
    assert last.startswith(f"Error: no such option '{option}': an argument that starts with '-' is read as an option")
    assert '("(-1 * red) & circle")' in last and 'conceptlang sample -n 4 -- "-1 * red & circle"' in last


def test_an_expression_after_double_dash_or_in_parentheses_is_read():
    for args in (["parse", "--", "-2 * a & b"], ["parse", "(-2 * a) & b"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0 and "Weighted" in res.output, args
    res = CliRunner().invoke(main, ["sample", "--nmu", "3", "red"])  # other unknown options keep click's message
    assert res.exit_code == 2 and "No such option '--nmu'. Did you mean '--num'?" in res.output
