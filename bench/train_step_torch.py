#!/usr/bin/env python3
"""The PyTorch peer of bench/train_step.cpp: the SNGP tutorial's deterministic ResNet (frozen input
Dense 2->128, 6 residual Dense 128->128 with ReLU and dropout 0.1, Dense 128->2), batch 128, Adam,
softmax cross-entropy; microseconds per training step (forward, backward, optimizer) with 1 and 2 threads,
best of several timed blocks after warm-up. Run by scripts/run-benchmarks with Debian's python3-torch."""
import sys

from torch_peer import adam_step, check_flags, import_torch, report, us_per_step

torch = import_torch("torch_us_per_step")


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


def train_us_per_step(threads, steps=300, blocks=5):
    torch.manual_seed(0)
    model = ResNet()
    x = torch.randn(128, 2)
    y = torch.randint(0, 2, (128,))
    loss_fn = torch.nn.CrossEntropyLoss()
    step = adam_step(model, lambda: loss_fn(model(x), y), [p for p in model.parameters() if p.requires_grad])
    return us_per_step(torch, threads, step, warmup=50, blocks=blocks, steps=steps)


def main():
    check_flags("train_step_torch.py", sys.argv[1:], ("--json", "--quick"))
    steps = 100 if "--quick" in sys.argv else 300
    r1 = train_us_per_step(1, steps)
    r2 = train_us_per_step(2, steps)
    res = {"torch_version": torch.__version__, "torch_us_per_step_1t": r1, "torch_us_per_step_2t": r2,
           "torch_us_per_step": min(r1, r2)}
    report(res, sys.argv, f"PyTorch {torch.__version__} train step (SNGP tutorial ResNet, batch 128, Adam):",
           r1, r2)


if __name__ == "__main__":
    main()
