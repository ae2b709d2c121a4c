#!/usr/bin/env python3
"""The PyTorch peer of bench/train_step.cpp: the SNGP tutorial's deterministic ResNet (frozen input
Dense 2->128, 6 residual Dense 128->128 with ReLU and dropout 0.1, Dense 128->2), batch 128, Adam,
softmax cross-entropy; microseconds per training step (forward, backward, optimizer) with 1 and 2 threads,
best of several timed blocks after warm-up. Run by scripts/run-benchmarks with Debian's python3-torch."""
import json
import sys
import time

try:
    import torch
except ImportError:  # the benchmark is optional; say so instead of failing
    print(json.dumps({"torch_us_per_step": None, "error": "python3-torch not installed"}) if "--json" in sys.argv
          else "PyTorch not installed (apt-get install python3-torch)")
    sys.exit(0)


class ResNet(torch.nn.Module):
    def __init__(self, width=128, layers=6, dropout=0.1):
        super().__init__()
        self.input = torch.nn.Linear(2, width)
        self.input.requires_grad_(False)
        self.dense = torch.nn.ModuleList([torch.nn.Linear(width, width) for _ in range(layers)])
        self.drop = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(width, 2)

    def forward(self, x):
        h = self.input(x)
        for d in self.dense:
            h = h + self.drop(torch.relu(d(h)))
        return self.out(h)


def us_per_step(threads, steps=300, blocks=5):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ResNet()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(128, 2)
    y = torch.randint(0, 2, (128,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(50):
        step()
    best = float("inf")
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best * 1e6


def main():
    for a in sys.argv[1:]:
        if a not in ("--json", "--quick"):
            print(f"train_step_torch.py: unknown flag '{a}' (allowed: --json, --quick)", file=sys.stderr)
            sys.exit(2)
    steps = 100 if "--quick" in sys.argv else 300
    r1 = us_per_step(1, steps)
    r2 = us_per_step(2, steps)
    res = {"torch_version": torch.__version__, "torch_us_per_step_1t": r1, "torch_us_per_step_2t": r2,
           "torch_us_per_step": min(r1, r2)}
    if "--json" in sys.argv:
        print(json.dumps(res))
    else:
        print(f"PyTorch {torch.__version__} train step (SNGP tutorial ResNet, batch 128, Adam):")
        print(f"  1 thread  {r1:9.1f} us/step\n  2 threads {r2:9.1f} us/step")


if __name__ == "__main__":
    main()
