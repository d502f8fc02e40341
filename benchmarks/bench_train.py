"""Training cost of the --data path per image size: seconds per iteration, per 1,000 iterations, peak memory.

    python benchmarks/bench_train.py                          # table + benchmarks/results/train.json
    python benchmarks/bench_train.py --sizes 64 --batch 32 --steps 6 --threads 1

Each size trains the default U-Net of that size (training.UNET_WIDTHS) on a labelled folder of
procedural faces written at that size (the streamed --data path, one DataLoader worker), for
``--steps`` timed iterations after two untimed ones. Times are CPU seconds of this process
(``time.process_time``; on a shared machine they measure the work far better than wall-clock
time, which is recorded beside them). Peak memory is this process's maximum resident set
(``ru_maxrss``) after the size's run; sizes run in ascending order, so each figure is the peak so
far. On CUDA, add ``--device cuda``: the peak is then ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conceptlang.io import write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train.json")
    args = ap.parse_args()

    import torch

    from conceptlang.cli.data_cmds import write_dataset
    from conceptlang.data.labelled import open_data
    from conceptlang.models.training import UNET_WIDTHS, TrainConfig, Trainer

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sorted(args.sizes):
            folder = Path(tmp) / f"faces{size}"
            write_dataset("faces", 4 * args.batch, folder, seed=1, image_size=size, progress=False)
            data = open_data(folder)
            cfg = TrainConfig(name="bench", domain="faces", image_size=size, batch_size=args.batch, iters=args.steps + 2,
                              net={"widths": list(UNET_WIDTHS[size])}, data=str(folder), data_domain=data.domain.to_json(),
                              checkpoint_every=10**9, log_every=10**9)
            tr = Trainer(cfg, Path(tmp) / f"run{size}", device=args.device, data_workers=1, data=data, export=False)
            tr.step()
            tr.step()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(args.steps):
                tr.step()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            cpu, wall = (time.process_time() - c0) / args.steps, (time.perf_counter() - w0) / args.steps
            tr.stream.close()
            peak = (torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda")
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            row = {"image_size": size, "widths": list(UNET_WIDTHS[size]), "batch": args.batch,
                   "parameters": sum(p.numel() for p in tr.net.parameters()), "cpu_s_per_it": round(cpu, 3),
                   "wall_s_per_it": round(wall, 3), "cpu_min_per_1k": round(cpu * 1000 / 60, 1),
                   "peak_mib": round(peak)}
            rows.append(row)
            print(f"{size:4d} px  widths {','.join(map(str, row['widths'])):<18} batch {args.batch:3d}  "
                  f"{row['parameters']:>9,} params  {cpu:7.3f} CPU s/it ({wall:.3f} wall)  "
                  f"{row['cpu_min_per_1k']:7.1f} min/1k it  peak {row['peak_mib']} MiB", flush=True)
    write_json(args.out, {"device": args.device, "threads": args.threads, "steps": args.steps,
                          "machine": platform.processor() or platform.machine(), "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
