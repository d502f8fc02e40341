"""Sampling under torch.distributed: the ranks share the chunks of chains and all get every image."""

import socket
from pathlib import Path

import pytest
import torch

from conceptlang.compiler import compile as compile_expr
from conceptlang.models.analytic import GaussianRegistry
from conceptlang.sampling import sample

EXPR = "(red & ~blue) | green"


def _drawing_graph():
    """An OR whose branches draw each chain's position (spread draws over each branch's chains)."""
    from tests.sampling.test_spread_draws import _UniformDraws

    return compile_expr("red | blue", _UniformDraws("implicit"), free_families="data", and_mode="joint")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        graph = compile_expr(EXPR, GaussianRegistry(kind="implicit"))
        default = sample(graph, 5, seed=3, steps=12, device="cpu")  # default batch: ceil(5 / 2) = 3
        fixed = sample(graph, 7, seed=4, steps=12, device="cpu", batch_size=2)  # 4 chunks over 2 ranks
        drawn = sample(_drawing_graph(), 9, seed=5, steps=6, sampler="dpmpp_2m", device="cpu", batch_size=2)
        torch.save({"default": default.images, "fixed": fixed.images, "bs": default.settings["batch_size"],
                    "branches": fixed.branches, "drawn": drawn.images}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_draw_the_one_process_images(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    graph = compile_expr(EXPR, GaussianRegistry(kind="implicit"))
    one_default = sample(graph, 5, seed=3, steps=12, device="cpu", batch_size=3)
    one_fixed = sample(graph, 7, seed=4, steps=12, device="cpu", batch_size=2)
    one_drawn = sample(_drawing_graph(), 9, seed=5, steps=6, sampler="dpmpp_2m", device="cpu", batch_size=2)
    assert one_drawn.settings["draws"] == "spread"
    for r in (0, 1):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        assert got["bs"] == 3
        assert torch.equal(got["default"], one_default.images)  # every rank holds all the images
        assert torch.equal(got["fixed"], one_fixed.images)
        assert torch.equal(got["branches"], one_fixed.branches)
        assert torch.equal(got["drawn"], one_drawn.images)  # every rank drew the same positions


@pytest.mark.slow  # torchrun starts two interpreters that import torch
def test_torchrun_sample_cli_writes_the_one_process_grid(tmp_path):
    import json
    import os
    import shutil
    import subprocess

    from click.testing import CliRunner

    from conceptlang.cli import main

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed")
    root = Path(__file__).resolve().parents[2]
    args = ["sample", EXPR, "--models", "analytic:implicit", "-n", "5", "--steps", "12", "--seed", "3", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "conceptlang", *args, "-o", str(tmp_path / "two.png")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("wrote") == 1  # rank 0 alone writes
    res = CliRunner().invoke(main, args + ["--batch-size", "3", "-o", str(tmp_path / "one.png")])
    assert res.exit_code == 0, res.output
    one, two = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("one", "two"))
    assert two["image_sha256"] == one["image_sha256"] and two["sampler"]["batch_size"] == 3
    assert two["sampler"]["nfe"] == one["sampler"]["nfe"]
