"""Report of experiments/adjoint_vs_backprop.cpp: gradient error against dt of the stochastic adjoint and the
reversible Heun adjoint relative to backprop, and training curves of a neural SDE with each gradient method
(fixed and adaptive steps). Loaded by reports/render.py as a plugin: render(res_dir, out_dir, rel)."""
import math
import os

import matplotlib.pyplot as plt

from render import fmt, provenance_block, read_json, read_run, save, table, timing_block

TITLES = {
    "backprop_midpoint": "backprop (midpoint)",
    "adjoint": "stochastic adjoint (midpoint)",
    "reversible_heun": "reversible Heun adjoint",
    "backprop_reversible_heun": "backprop (reversible Heun solver)",
    "backprop_fixed": "backprop, fixed dt",
    "adjoint_fixed": "adjoint, fixed dt",
    "reversible_heun_fixed": "reversible Heun, fixed dt",
    "backprop_adaptive": "backprop, adaptive",
    "adjoint_adaptive": "adjoint, adaptive",
}
# Estimator against backprop at the same dt: (key in results.json, label).
PAIRS = [
    ("adjoint_vs_backprop_midpoint", "adjoint vs backprop (midpoint)"),
    ("reversible_heun_vs_backprop_reversible_heun", "reversible Heun adjoint vs backprop (same solver)"),
    ("reversible_heun_vs_backprop_midpoint", "reversible Heun adjoint vs backprop (midpoint)"),
]


def slope(dts, errs, floor=1e-13):
    """Least-squares slope of log error on log dt over the finite errors above round-off (None if < 2)."""
    pts = [(math.log(d), math.log(e)) for d, e in zip(dts, errs) if e is not None and e > floor]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def with_slope(label, dts, errs):
    s = slope(dts, errs)
    return f"{label} (slope {s:.2f})" if s is not None else f"{label} (round-off)"


def positive(errs):
    # A relative error of exactly 0 (bit-identical gradients) cannot sit on a log axis: NaN leaves a gap.
    return [e if e is not None and e > 0 else float("nan") for e in errs]


def gradient_figure(g, out_dir):
    dts, err = g["dts"], g["relative_error"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    for name, colour in [("backprop_midpoint", "C0"), ("adjoint", "C1"), ("reversible_heun", "C2"),
                         ("backprop_reversible_heun", "C3")]:
        e = err[f"{name}_vs_reference"]
        ax.loglog(dts, positive(e), "o-" if name != "backprop_reversible_heun" else "x--", color=colour,
                  label=with_slope(TITLES[name], dts, e))
    ax.set_title(f"against backprop (midpoint) at dt = 2^{round(math.log2(g['reference_dt']))}")
    ax.set_xlabel("dt")
    ax.set_ylabel("relative gradient error")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1]
    for (key, label), colour, style in zip(PAIRS, ["C1", "C2", "C2"], ["o-", "s-", "o--"]):
        ax.loglog(dts, positive(err[key]), style, color=colour, label=with_slope(label, dts, err[key]))
    ax.set_title("estimator against backprop at the same dt")
    ax.set_xlabel("dt")
    ax.set_ylabel("relative gradient error")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return save(fig, out_dir, "adjoint_vs_backprop_gradient_error")


TRAIN_ORDER = ["backprop_fixed", "adjoint_fixed", "reversible_heun_fixed", "backprop_adaptive",
               "adjoint_adaptive"]
# Colour: gradient method; dashes: adaptive steps.
TRAIN_STYLE = {"backprop_fixed": ("C0", "-"), "adjoint_fixed": ("C1", "-"),
               "reversible_heun_fixed": ("C2", "-"), "backprop_adaptive": ("C0", "--"),
               "adjoint_adaptive": ("C1", "--")}


def train_methods(t):
    known = [m for m in TRAIN_ORDER if m in t["methods"]]
    return known + sorted(m for m in t["methods"] if m not in TRAIN_ORDER)


def running_mean(v, w):
    # Trailing mean over w iterations: each iteration's loss is on a fresh Brownian path, so the raw curves
    # are noisy.
    out, acc = [], 0.0
    for i, x in enumerate(v):
        acc += x
        if i >= w:
            acc -= v[i - w]
        out.append(acc / min(i + 1, w))
    return out


def training_figure(t, timings, out_dir):
    methods = train_methods(t)
    has_time = all(m in timings for m in methods)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    axes = axes.ravel()
    w = max(1, min(10, len(t["methods"][methods[0]]["loss"]) // 10))
    base = t["methods"].get("backprop_fixed", {}).get("loss")
    for m in methods:
        c, ls = TRAIN_STYLE.get(m, (None, "-"))
        loss = t["methods"][m]["loss"]
        label = TITLES.get(m, m)
        axes[0].semilogy(range(len(loss)), running_mean(loss, w), color=c, linestyle=ls, linewidth=1.2,
                         label=label)
        if has_time:
            cum, acc = [], 0.0
            for s in timings[m]["seconds_per_iteration"]:
                acc += s
                cum.append(acc)
            axes[1].semilogy(cum, running_mean(loss, w), color=c, linestyle=ls, linewidth=1.2, label=label)
        if base is not None and m != "backprop_fixed":
            diff = [abs(a - b) / b if abs(a - b) > 0 else float("nan") for a, b in zip(loss, base)]
            axes[2].semilogy(range(len(loss)), diff, color=c, linestyle=ls, linewidth=0.8, label=label)
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel(f"training loss (trailing mean of {w})")
    axes[0].set_title("loss against iteration")
    axes[0].legend(fontsize=8)
    if has_time:
        axes[1].set_xlabel("wall-clock seconds (run.json)")
        axes[1].set_ylabel(f"training loss (trailing mean of {w})")
        axes[1].set_title("loss against time")
        axes[1].legend(fontsize=8)
    else:
        axes[1].set_axis_off()
    axes[2].set_xlabel("iteration")
    axes[2].set_ylabel("|loss - loss of backprop, fixed dt| / loss of backprop")
    axes[2].set_title("departure from backprop's trajectory (same paths)")
    axes[2].legend(fontsize=8)
    ax = axes[3]
    ts = t["observation_times"]
    ax.errorbar(ts, t["data_mean"], yerr=t["data_std"], fmt="ko", markersize=3, capsize=2,
                label="data: mean ± std")
    for m in methods:
        c, ls = TRAIN_STYLE.get(m, (None, "-"))
        fm, fs = t["methods"][m]["fit_mean"], t["methods"][m]["fit_std"]
        ax.plot(ts, fm, color=c, linestyle=ls, linewidth=1, label=TITLES.get(m, m))
        ax.plot(ts, [a + b for a, b in zip(fm, fs)], color=c, linestyle=ls, linewidth=0.6, alpha=0.6)
        ax.plot(ts, [a - b for a, b in zip(fm, fs)], color=c, linestyle=ls, linewidth=0.6, alpha=0.6)
    ax.set_xlabel("t")
    ax.set_ylabel("X(t)")
    ax.set_title("fitted marginals: mean ± std on held-out paths")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out_dir, "adjoint_vs_backprop_training")


def render(res_dir, out_dir, rel):
    r = read_json(os.path.join(res_dir, "results.json"))
    run = read_run(res_dir)
    timings = run.get("timings", {})
    g, t = r["gradient_error"], r["training"]
    cfg = r["provenance"]["config"]
    gc, tc = cfg["gradient_error"], cfg["training"]
    src = f"{rel}/results.json"

    fig_g = gradient_figure(g, out_dir)
    fig_t = training_figure(t, timings.get("training", {}), out_dir)

    err = g["relative_error"]
    cols = [("adjoint_vs_backprop_midpoint", "adjoint / backprop"),
            ("reversible_heun_vs_backprop_reversible_heun", "rev. Heun / backprop (rev. Heun)"),
            ("reversible_heun_vs_backprop_midpoint", "rev. Heun / backprop"),
            ("backprop_midpoint_vs_reference", "backprop / ref"),
            ("adjoint_vs_reference", "adjoint / ref"),
            ("reversible_heun_vs_reference", "rev. Heun / ref")]
    rows = []
    for i, dt in enumerate(g["dts"]):
        rows.append([f"2^{round(math.log2(dt))}"] + [err[k][i] for k, _ in cols])
    grad_tab = table(["dt"] + [c[1] for c in cols], rows)
    slope_rows = [[label, slope(g["dts"], err[key])] for key, label in
                  PAIRS + [(f"{m}_vs_reference", f"{TITLES[m]} vs reference") for m in
                           ["backprop_midpoint", "adjoint", "reversible_heun", "backprop_reversible_heun"]]]
    slope_tab = table(["relative error", "slope of log error on log dt"],
                      [[a, b if b is not None else "round-off"] for a, b in slope_rows])

    train_rows = []
    tt = timings.get("training", {})
    for m in train_methods(t):
        v = t["methods"][m]
        rej = sum(v["rejected"]) / len(v["rejected"]) if v.get("rejected") else 0.0
        train_rows.append([TITLES.get(m, m), v["solver"], "adaptive" if v["adaptive"] else "fixed",
                           v["loss"][0], v["final_loss"], v["eval_loss"], v["mean_steps"], rej,
                           tt.get(m, {}).get("mean_seconds_per_iteration")])
    train_tab = table(["method", "solver", "steps", "first loss", "final loss", "held-out loss", "mean steps",
                       "mean rejected", "s / iteration"], train_rows)
    time_rows = [[TITLES.get(m, m), tt[m].get("total_seconds"), tt[m].get("mean_seconds_per_iteration")]
                 for m in train_methods(t) if m in tt]
    time_tab = table(["method", "training s", "s / iteration"], time_rows)
    if "gradient_error_seconds" in timings:
        time_tab += f"\n\nGradient-error study: {fmt(timings['gradient_error_seconds'])} s."

    ou = tc["ou"]
    md = f"""# Gradients of neural SDEs: adjoints against backprop

How the memory-efficient gradient estimators of `sde/adjoint.hpp` compare with backprop through the solver,
after Figure 5 of Xu et al. 2022 (SDE-BNN). {provenance_block(r['provenance'], src)}

## Gradient error against dt

A neural SDE in float64 (state {gc['state']}, batch {gc['batch']}, drift MLP {gc['drift']} with
{gc['hidden']} hidden units, diagonal diffusion {gc['diffusion']}, Stratonovich, t in [0, 1]) and the loss
{gc['loss']}. On one Brownian path shared by every dt, the gradient with respect to y0 and all
{g['gradient_size'] - gc['state'] * gc['batch']} parameters is computed by backprop through the midpoint
solver, the stochastic adjoint (midpoint forward and backward), the reversible Heun adjoint, and backprop
through the reversible Heun solver. Errors are relative, ||g - g'|| / ||g'||; the reference is backprop
(midpoint) at dt = {fmt(g['reference_dt'])} (gradient norm {fmt(g['reference_gradient_norm'])}).

![gradient error]({fig_g})

{grad_tab}

{slope_tab}

The reversible Heun adjoint reproduces backprop through its own solver to round-off at every dt (its
backward pass inverts each step exactly), while the stochastic adjoint solves a different discretisation of
the adjoint SDE and so differs from backprop by a discretisation error that shrinks with dt.

## Training curves

{tc['data_paths']} sample paths of the Ornstein-Uhlenbeck process dX = {ou['theta']} ({ou['mu']} - X) dt +
{ou['sigma']} dW, X(0) ~ N(0, {ou['x0_std']}^2), observed at {tc['observations']} times in (0, 1]. A neural
SDE with state 1 ({tc['hidden']} hidden units) starts from the observed X(0) and is fitted by matching the
marginal means and standard deviations at the observation times ({tc['loss']}), Adam lr {tc['lr']},
{tc['iterations']} iterations; the model's moments come from {tc['model_paths']} paths (each observed X(0)
repeated), on a fresh Brownian path per iteration (the same for every method). Fixed steps:
dt = {fmt(tc['dt'])}; adaptive steps: rtol {tc['rtol']}, atol {tc['atol']}. The held-out loss averages
{tc['eval_paths']} fresh Brownian paths solved with midpoint at dt = {fmt(tc['eval_dt'])}.

![training]({fig_t})

{train_tab}
{timing_block(run, f'{rel}/run.json')}
{time_tab}
"""
    summary = (f"### Adjoint vs backprop ([report](adjoint_vs_backprop.md))\n\n{grad_tab}\n\n{train_tab}\n")
    return md, summary
