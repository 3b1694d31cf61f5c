"""Where a stacked training step's time goes: the step (the default digits sweep's lora, rank 4, K = 12,
n examples, ``train_stacked``) against its own matrix products replayed alone (the same shapes and
layouts, back to back) and its main elementwise operations replayed alone (ReLU and its gradient, the
cross-entropy), interleaved in rounds, one thread; the step's FLOPs counted by torch's FlopCounterMode
and a ``torch.bmm`` peak of the first layer's shape measured in the same run. What the products alone
reach is the ceiling of the step's rate with every other operation free.

    python benchmarks/bench_step.py [n ...]   (default: 400 700)
"""

import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import infobound.harness.train as T
from infobound.harness.allocator import keep_freed_memory
from infobound.harness.tasks import get_task
from infobound.lora import inject_lora


def main(n: int) -> None:
    K, r, d, C = 12, 4, 64, 10
    task = get_task("digits")
    m = task.base_model(); inject_lora(m, task.default_targets, r, mode="lora", stack=K, seeds=list(range(K)))
    (x, y), _ = task.resplit(n, seed=0)
    x = torch.as_tensor(x).expand(K, -1, -1).contiguous(); y = torch.as_tensor(y).expand(K, -1).contiguous()
    R = lambda *s: torch.randn(*s)
    X, W, Wt, G, Bm, A = R(K, n, d), R(K, d, d), R(K, d, d).transpose(1, 2), R(K, n, d), R(K, d, r), R(K, r, d)
    H, Wh, Gh, bias = R(K * n, d), R(C, d), R(K * n, C), R(C)
    o2 = torch.empty(K, d, d)
    def matmuls():
        for _ in range(2):
            torch.baddbmm(W, Bm, A)                      # merged weight, fc1 and fc2
            torch.baddbmm(bias.new_zeros(d), X, Wt)     # fc1, fc2 forward
        torch.addmm(bias, H, Wh.t())                    # head forward
        torch.mm(Gh, Wh)                                # head input gradient
        torch.bmm(G, W)                                 # fc2 input gradient
        for _ in range(2):
            torch.bmm(G.transpose(1, 2), X)             # fc2, fc1 merged-weight gradient
            torch.bmm(o2, A.transpose(1, 2)); torch.bmm(Bm.transpose(1, 2), o2)  # -> B, A gradients
    Z, L = R(K, n, d), R(K, n, C)
    def elementwise():
        for _ in range(2):
            a = torch.relu(Z); torch.ops.aten.threshold_backward(G, a, 0)
        lse = torch.logsumexp(L, -1); (lse - L.gather(-1, y.unsqueeze(-1)).squeeze(-1)).mean(1)
        torch.exp(L - lse.unsqueeze(-1))
    def step():
        T.train_stacked(m, x, y, steps=20, lr=0.01)
    def timed(f, reps):
        s = time.perf_counter()
        for _ in range(reps): f()
        return (time.perf_counter() - s) / reps
    res = {"step": [], "matmuls": [], "elementwise": []}
    for rnd in range(5):
        res["step"].append(timed(step, 3) / 20)
        res["matmuls"].append(timed(matmuls, 60))
        res["elementwise"].append(timed(elementwise, 60))
    with FlopCounterMode(display=False) as fc:
        T.train_stacked(m, x, y, steps=2, lr=0.01)
    c2 = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        T.train_stacked(m, x, y, steps=1, lr=0.01)
    per_step = c2 - fc.get_total_flops()
    a = torch.randn(K, n, d); b = torch.randn(K, d, d)
    pk = 2 * K * n * d * d / min(timed(lambda: torch.bmm(a, b), 50) for _ in range(5)) / 1e9
    med = {k: statistics.median(v) * 1e3 for k, v in res.items()}
    print(f"lora r{r} n{n} K{K}: step {med['step']:.2f} ms ({per_step / med['step'] / 1e6:.1f} GFLOP/s = {per_step / med['step'] / 1e6 / pk:.0%} of bmm peak {pk:.1f});"
          f" its products replayed alone {med['matmuls']:.2f} ms ({per_step / med['matmuls'] / 1e6:.1f} GFLOP/s = {per_step / med['matmuls'] / 1e6 / pk:.0%});"
          f" its main elementwise ops alone {med['elementwise']:.2f} ms; rest {med['step'] - med['matmuls'] - med['elementwise']:.2f} ms")


if __name__ == "__main__":
    torch.set_num_threads(1)
    keep_freed_memory()
    for size in [int(a) for a in sys.argv[1:]] or [400, 700]:
        main(size)
