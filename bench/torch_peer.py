"""What the PyTorch peers of the benchmarks share (bench/*_torch.py): importing Debian's python3-torch or
saying it is missing in the peer's own JSON, strict flags, and the timing of a training step (warm-up, then
the best of several timed blocks, microseconds per step), so that every peer measures the same way."""
import json
import sys
import time


def import_torch(missing_key):
    """torch, or (when python3-torch is not installed) print {missing_key: null, "error": ...} with --json
    (the C++ benchmark reads it and says the peer is missing) or a hint, and exit 0: the peer is optional."""
    try:
        import torch
        return torch
    except ImportError:
        print(json.dumps({missing_key: None, "error": "python3-torch not installed"}) if "--json" in sys.argv
              else "PyTorch not installed (apt-get install python3-torch)")
        sys.exit(0)


def check_flags(script, args, allowed):
    """Exit 2 naming the first flag not in `allowed`."""
    for a in args:
        if a not in allowed:
            print(f"{script}: unknown flag '{a}' (allowed: {', '.join(allowed)})", file=sys.stderr)
            sys.exit(2)


def us_per_step(torch, threads, step, warmup, blocks, steps):
    """Microseconds per call of step() with `threads` intra-op threads: `warmup` calls, then the best of
    `blocks` timed blocks of `steps` calls (the minimum is the least disturbed by other load)."""
    torch.set_num_threads(threads)
    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best * 1e6


def adam_step(model, loss, params=None, lr=1e-4):
    """A training step: zero the gradients, loss().backward(), Adam (over `params`, default all)."""
    import torch
    opt = torch.optim.Adam(list(model.parameters()) if params is None else params, lr=lr)

    def step():
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()
    return step


def report(res, args, title, r1, r2):
    """The result as one JSON line (--json) or two lines for a reader."""
    if "--json" in args:
        print(json.dumps(res))
    else:
        print(title)
        print(f"  1 thread  {r1:9.1f} us/step\n  2 threads {r2:9.1f} us/step")
