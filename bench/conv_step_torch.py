#!/usr/bin/env python3
"""The PyTorch peer of bench/conv_step.cpp: training steps (forward, loss, backward, Adam) of the same
networks, batch 128, float32, best of several timed blocks after warm-up, 1 and 2 threads:
  quick      mnist_baselines --quick's network (width 32, 1 residual block, GroupNorm 8 groups)
  full       its full-size network (width 64, 2 residual blocks, GroupNorm 32 groups)
  sde_drift  6 Euler steps of an SDE-Net-style concat-time drift (64 channels on 6 x 6, GroupNorm 32,
             concat-time convolutions 65 -> 64, kernel 3, padding 1), loss mean(x_T^2)
Run by bench_conv_step (and scripts/run-benchmarks) with Debian's python3-torch."""
import sys

from torch_peer import adam_step, check_flags, import_torch, report, us_per_step

torch = import_torch("torch_us_per_step_1t")
nn = torch.nn

BATCH = 128


class ResBlock(nn.Module):
    def __init__(self, w, groups):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(groups, w), nn.Conv2d(w, w, 3, 1, 1)
        self.n2, self.c2 = nn.GroupNorm(groups, w), nn.Conv2d(w, w, 3, 1, 1)

    def forward(self, x):
        h = self.c1(torch.relu(self.n1(x)))
        return x + self.c2(torch.relu(self.n2(h)))


def mnist_net(w, blocks, groups):
    return nn.Sequential(
        nn.Conv2d(1, w, 3, 1, 0), nn.GroupNorm(groups, w), nn.ReLU(),
        nn.Conv2d(w, w, 4, 2, 1), nn.GroupNorm(groups, w), nn.ReLU(),
        nn.Conv2d(w, w, 4, 2, 1),
        *[ResBlock(w, groups) for _ in range(blocks)],
        nn.GroupNorm(groups, w), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, 10))


class ConcatConv2d(nn.Module):
    def __init__(self, c, o):
        super().__init__()
        self.conv = nn.Conv2d(c + 1, o, 3, 1, 1)

    def forward(self, t, x):
        tt = torch.full_like(x[:, :1], t)
        return self.conv(torch.cat([tt, x], 1))


class SdeDrift(nn.Module):
    def __init__(self, c=64):
        super().__init__()
        self.n1, self.n2, self.n3 = nn.GroupNorm(32, c), nn.GroupNorm(32, c), nn.GroupNorm(32, c)
        self.c1, self.c2 = ConcatConv2d(c, c), ConcatConv2d(c, c)

    def forward(self, x, steps=6):
        dt = 1.0 / steps
        for i in range(steps):
            t = i * dt
            h = torch.relu(self.n1(x))
            h = torch.relu(self.n2(self.c1(t, h)))
            x = x + self.n3(self.c2(t, h)) * dt
        return x


def make(net):
    torch.manual_seed(0)
    if net == "sde_drift":
        model = SdeDrift()
        x = torch.randn(BATCH, 64, 6, 6)
        return model, (lambda: model(x).square().mean())
    w, blocks, groups = (32, 1, 8) if net == "quick" else (64, 2, 32)
    model = mnist_net(w, blocks, groups)
    x = torch.randn(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    loss_fn = nn.CrossEntropyLoss()
    return model, (lambda: loss_fn(model(x), y))


def train_us_per_step(net, threads, blocks, steps):
    torch.set_num_threads(threads)  # before the model is made, as the peer always did
    model, loss = make(net)
    return us_per_step(torch, threads, adam_step(model, loss), warmup=2, blocks=blocks, steps=steps)


def main():
    args = sys.argv[1:]
    net = "quick"
    if "--net" in args:
        i = args.index("--net")
        if i + 1 >= len(args) or args[i + 1] not in ("quick", "full", "sde_drift"):
            print("conv_step_torch.py: --net takes quick, full or sde_drift", file=sys.stderr)
            sys.exit(2)
        net = args[i + 1]
        del args[i:i + 2]
    check_flags("conv_step_torch.py", args, ("--json", "--quick"))
    blocks = 2 if "--quick" in args else 5
    steps = 2 if net == "full" else 4
    r1 = train_us_per_step(net, 1, blocks, steps)
    r2 = train_us_per_step(net, 2, blocks, steps)
    res = {"torch_version": torch.__version__, "net": net, "torch_us_per_step_1t": r1, "torch_us_per_step_2t": r2}
    report(res, args, f"PyTorch {torch.__version__} conv train step ({net}, batch {BATCH}, Adam):", r1, r2)


if __name__ == "__main__":
    main()
