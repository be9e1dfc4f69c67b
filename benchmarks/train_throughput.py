"""Training throughput of the seed recipe (FP32) against --amp bf16 --channels-last, in one run.

    python benchmarks/train_throughput.py                      # coresse, batch 32, 224 px, CUDA if present
    python benchmarks/train_throughput.py --model coresse-lite --img-size 64 --steps 10 --device cpu

Synthetic tensors, a fixed number of optimizer steps after warm-up; prints img/s per setting and
the speed-up as a ratio measured in the same process.  The machine is printed first.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from corese_edge.model import CoResSE
from corese_edge.train.trainer import SoftTargetCE, _autocast


def machine() -> str:
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"{p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def run(model_name: str, batch: int, size: int, steps: int, warmup: int, device: torch.device, amp: torch.dtype | None,
        channels_last: bool) -> float:
    torch.manual_seed(0)
    model = CoResSE(model_name, 7).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    loss_fn = SoftTargetCE()
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.softmax(torch.randn(batch, 7, device=device), dim=1)

    def step() -> None:
        with _autocast(device, amp):
            loss = loss_fn(model(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="coresse")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else ("cpu" if a.device == "auto" else a.device))
    print(f"machine: {machine()}")
    print(f"model {a.model}, batch {a.batch}, {a.img_size} px, {a.steps} timed steps after {a.warmup} warm-up steps")
    fp32 = run(a.model, a.batch, a.img_size, a.steps, a.warmup, device, None, False)
    bf16 = run(a.model, a.batch, a.img_size, a.steps, a.warmup, device, torch.bfloat16, True)
    print(f"| setting | img/s |\n|---|---|\n| FP32 (seed recipe) | {fp32:.1f} |\n| --amp bf16 --channels-last | {bf16:.1f} |")
    print(f"speed-up bf16+channels_last / fp32: {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    main()
