"""Report of experiments/sdebnn_estimators.cpp: SDE-BNN trained by backprop, the stochastic adjoint and
reversible
Heun (loss against iteration and wall time, memory against steps). Loaded by reports/render.py as a plugin."""
import os

import matplotlib.pyplot as plt

from render import fmt, provenance_block, read_json, read_run, save, table, timing_block

ORDER = ["backprop", "adjoint", "reversible_heun"]


def render(res_dir, out_dir, rel):
    r = read_json(os.path.join(res_dir, "results.json"))
    run = read_run(res_dir)
    cfg = r["provenance"]["config"]
    tim = run.get("timings", {})
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for est in ORDER:
        loss = r["curves"][est]["loss"]
        axes[0].plot(range(1, len(loss) + 1), loss, label=est)
        if est in tim:
            axes[1].plot(tim[est]["cumulative_seconds"], loss, label=est)
        mem = r["memory"][est]
        axes[2].plot([m["steps"] for m in mem], [m["root_tape_mib"] for m in mem], marker="o", label=est)
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("wall time (s)")
    axes[2].set_xlabel("solver steps")
    axes[0].set_ylabel("training loss")
    axes[2].set_ylabel("root-tape memory after backward (MiB)")
    for a in axes:
        a.legend(fontsize=8)
        a.grid(True, alpha=0.3)
    fig_path = save(fig, out_dir, "sdebnn_estimators")
    base = tim.get("backprop", {}).get("seconds_per_iteration")
    rows = []
    for est in ORDER:
        loss = r["curves"][est]["loss"]
        spi = tim.get(est, {}).get("seconds_per_iteration")
        mem = r["memory"][est]
        tail = loss[-max(1, len(loss) // 10):]  # the last tenth: one minibatch's loss is noisy
        rows.append([est, r["curves"][est]["solver"], loss[0], loss[-1], sum(tail) / len(tail), spi,
                     spi / base if spi and base else None] + [m["root_tape_mib"] for m in mem])
    tab = table(["estimator", "solver", "first loss", "final loss", "mean loss, last tenth", "s / iteration",
                 "time vs backprop"] +
                [f"MiB at {m['steps']} steps" for m in r["memory"]["backprop"]], rows)
    md = f"""# SDE-BNN gradient estimators: backprop, stochastic adjoint, reversible Heun

The comparison of Xu et al. 2022 (Figure 5) on SDE-BNN itself: the same SDE-BNN classifier (mnist_baselines'
conv downsampler, one SDE-BNN block of concat-time 3x3 convolutions {cfg['width']} -> {cfg['hidden']} ->
{cfg['width']} with the weights following the OU-prior posterior SDE, sigma {cfg['sigma']},
GN-ReLU-pool-Linear
head) trained on the first {cfg['train_subset']} MNIST training images from the same initialisation, on
the same
minibatches (batch {cfg['batch']}) and the same Brownian paths, {cfg['steps']} steps over [0, 1], Adam
{cfg['lr']}, loss = cross-entropy + {cfg['kl_coef']} KL / N. Every estimator uses the **plain** KL
estimator (the
KL as one more state coordinate), the one that the adjoints support today; backprop and the adjoint solve with
the midpoint method, reversible Heun with its own. The losses of the three agree up to the discretisation of
the gradient (the adjoint computes the gradient of the continuous solution; reversible Heun the exact
gradient of its own solver).

Memory: bytes in use in the root tape's arena after one forward + backward at batch 64, for several step
counts: backprop keeps every step there; the adjoints keep their one node and run each backward step in a
nested tape that is reused (so their number does not grow with the steps). It includes the downsampler and
head (the same for all).

{provenance_block(r['provenance'], f'{rel}/results.json')}

{tab}

![training and memory]({fig_path})
{timing_block(run, f'{rel}/run.json')}
The three trajectories start together and then part: each estimator's gradient differs from the others'
(the adjoint's by the O(dt) discretisation of the gradient, reversible Heun's by its solver), and 300 Adam steps
amplify the difference, so after {len(r["curves"]["backprop"]["loss"])} iterations their losses differ (the
table's last-tenth means); one seed does not say which differences would persist.
Training wall time of this run: {", ".join(f"{e} {fmt(tim.get(e, {}).get('cumulative_seconds', [0])[-1])} s"
                                       for e in ORDER)}.

Wall times were taken on a machine shared with other jobs: compare the ratios within this run.
"""
    return md, f"### SDE-BNN gradient estimators ([report](sdebnn_estimators.md))\n\n{tab}\n"
