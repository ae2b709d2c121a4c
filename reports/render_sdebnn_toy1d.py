"""Report of experiments/sdebnn_toy1d.cpp: SDE-BNN's prior and posterior predictive on the paper's
two-cluster 1D regression, next to MC dropout and a deep ensemble. Loaded by reports/render.py as a plugin."""
import os

import matplotlib.pyplot as plt

from render import fmt, provenance_block, read_csv, read_json, read_run, save, table, timing_block

METHODS = [("sdebnn_prior", "SDE-BNN prior (untrained)"), ("sdebnn", "SDE-BNN posterior"),
           ("mc_dropout", "MC dropout"), ("deep_ensemble", "Deep ensemble")]


# The knobs of the settings study (scripts/sdebnn-toy1d-study) as they appear in the config.
KNOBS = [("iterations", "iterations"), ("kl_coef", "KL weight"), ("sigma", "sigma"), ("steps", "steps"),
         ("paths", "paths"), ("layout", "layout"), ("likelihood", "likelihood")]
BASE = {"iterations": 2000, "kl_coef": 1.0, "sigma": 0.2, "steps": 19, "paths": 10, "layout": "shared",
        "likelihood": "Gaussian, std 0.1"}


def render_study(study_dir, main_cfg, rel):
    """The settings study: one row per run of scripts/sdebnn-toy1d-study; the default is the setting of lowest
    SDE-BNN validation NLL (validation points: the clusters, their own noise; never the held-out points)."""
    if not os.path.isdir(study_dir):
        return ""
    runs = []
    for name in sorted(os.listdir(study_dir)):
        path = os.path.join(study_dir, name, "results.json")
        if os.path.exists(path):
            runs.append((name, read_json(path)))
    if not runs:
        return ""
    rows = []
    for name, r in runs:
        c, m = r["provenance"]["config"], r["metrics"]
        changed = ", ".join(f"{lab} {c.get(k)}" for k, lab in KNOBS if c.get(k) != BASE[k]) or "(base)"
        s, d, e = m["sdebnn"], m["mc_dropout"], m["deep_ensemble"]
        rows.append([name, changed, s["val_nll"], s["heldout_nll"], s["train_nll"], s["gap_std"],
                     s["cluster_std"], s["std_ratio_epistemic"], d["std_ratio_epistemic"],
                     e["std_ratio_epistemic"], d["heldout_nll"], e["heldout_nll"]])
    best = min(rows, key=lambda row: row[2])
    best_cfg = dict(runs[[row[0] for row in rows].index(best[0])][1]["provenance"]["config"])
    same = all(best_cfg.get(k) == main_cfg.get(k) for k, _ in KNOBS)
    above = ("The run above uses it." if same else
             "**The run above does not use it** (its settings differ from the chosen one).")
    ratios = [row[7] for row in rows]
    near = [row for row in rows if row[2] - best[2] < 0.01]
    above_one = [row for row in rows if row[7] > 1]
    near_txt = "; ".join(f"{row[0]} ({fmt(row[2])}, ratio {fmt(row[7])})" for row in near)
    above_txt = ", ".join(f"{row[0]} ({fmt(row[7])})" for row in above_one) or "none"
    tab = table(["setting", "changed from the base", "SDE-BNN validation NLL", "held-out NLL", "train NLL",
                 "gap std", "cluster std", "gap / cluster (epistemic)", "MC dropout gap / cluster",
                 "ensemble gap / cluster", "MC dropout held-out NLL", "ensemble held-out NLL"], rows)
    return f"""
## Settings study

Does any reasonable setting make SDE-BNN's predictive std grow in the gap? One full-mode run per setting
(`scripts/sdebnn-toy1d-study`, seed 0), each changing one thing from the base (2000 iterations, KL weight 1,
sigma 0.2 for the prior's and the posterior's weight diffusion, 19 Euler-Maruyama steps, 10 weight paths per
iteration each carrying all 40 points, Gaussian likelihood); MC dropout and the ensemble are retrained in
every run with the same data and iterations (they change only with the iteration count). Per-sample weight
paths (`per_sample`): every point on its own weight path (40 paths per iteration). `kl_ref` is the
reference's weighting in our terms: its loss, mean |y - f| + KL with kl_scale 1 and no division by N, is
(times 1 / b, b = 0.1 / sqrt 2 our Laplace scale) the Laplace NLL per point plus 566 KL / 40 (twice that
counting its KL integrand u^2 without the 1/2). Results: `{rel}/NAME/results.json`.

Criterion for the default, fixed before the runs: the lowest SDE-BNN NLL on the validation set (200 points
drawn from the two clusters like the held-out ones, from their own random stream). It looks neither at the
held-out test points nor at the std ratio (choosing by the ratio would select for the figure we hope to
see). Chosen: **{best[0]}** ({best[1]}). {above} Settings within 0.01 nats of the best validation NLL (one seed:
differences this small are within the seed-to-seed noise, which this study did not measure): {near_txt}.

{tab}

Over these {len(rows)} settings SDE-BNN's epistemic gap / cluster std ratio ranges from {fmt(min(ratios))} to
{fmt(max(ratios))}; above 1 (the sample functions spread more between the clusters than on them, the figure's
point) only for: {above_txt}. MC dropout's ratio is about 1.2 and the deep ensemble's about 12 (its members
agree on the data and part in the gap) in the same runs. So SDE-BNN's uncertainty does not grow in the gap
at the ELBO's KL weight: its sample functions spread about as much on the clusters as between them (the
weight diffusion sets a floor of spread everywhere). With a weaker KL the spread becomes input-dependent,
and at KL weight 0.01 it is larger in the gap, at nearly the base's validation NLL. The chosen setting's
ratio is {fmt(best[7])}: the criterion rewards fitting the clusters, and a smaller weight diffusion fits them
better while shrinking the spread most between them.
Why the reference's figure may look different: its training loop (examples/jax/sdebnn_toy1d.py with
brax/utils/datasets.py's `cos` data) does not train on the 40 cluster points at all by default: each step
draws a fresh batch of x uniform on [0, 6] (the gap included, the cluster [6, 8] excluded) with noiseless
targets cos applied to the already standardised x, and its KL weight (above) holds the posterior near the
prior; the figure's spread is then the prior's, not a posterior's growth away from data.
"""


def render(res_dir, out_dir, rel):
    r = read_json(os.path.join(res_dir, "results.json"))
    run = read_run(res_dir)
    cfg = r["provenance"]["config"]
    m = r["metrics"]
    grid = read_csv(os.path.join(res_dir, "grid.csv"))
    data = read_csv(os.path.join(res_dir, "data.csv"))
    xs = [float(g["x"]) for g in grid]
    fig, axes = plt.subplots(1, len(METHODS), figsize=(4.3 * len(METHODS), 3.6), sharey=True)
    for ax, (key, title) in zip(axes, METHODS):
        mu = [float(g[f"{key}_mean"]) for g in grid]
        sd = [float(g[f"{key}_std"]) for g in grid]
        for k, a in [(3, 0.12), (2, 0.18), (1, 0.25)]:
            ax.fill_between(xs, [u - k * s for u, s in zip(mu, sd)], [u + k * s for u, s in zip(mu, sd)],
                            color="tab:blue", alpha=a, linewidth=0)
        for j in range(5):
            col = f"{key}_sample{j}"
            if col in grid[0]:
                ax.plot(xs, [float(g[col]) for g in grid], color="tab:gray", linewidth=0.7, alpha=0.8)
        ax.plot(xs, mu, color="tab:blue", linewidth=1.5)
        tr = [d for d in data if d["split"] == "train"]
        ax.scatter([float(d["x"]) for d in tr], [float(d["y"]) for d in tr], color="black", s=8, zorder=3)
        ax.axvspan(2, 6, color="tab:orange", alpha=0.06)
        ax.set_ylim(-3, 3)
        ax.set_title(title)
        ax.set_xlabel("x")
    fig_path = save(fig, out_dir, "sdebnn_toy1d")
    def outside_ratio(key):  # epistemic std beyond the data (x < 0 or x > 8) over that on the clusters
        out = [float(g[f"{key}_std"]) for g in grid if float(g["x"]) < 0 or float(g["x"]) > 8]
        clu = [float(g[f"{key}_std"]) for g in grid if 0 <= float(g["x"]) <= 2 or 6 <= float(g["x"]) <= 8]
        return (sum(out) / len(out)) / (sum(clu) / len(clu))

    rows = [[t, m[k]["heldout_nll"], m[k].get("val_nll"), m[k]["train_nll"], m[k]["gap_std"],
             m[k]["cluster_std"], m[k]["std_ratio_epistemic"], m[k]["std_ratio_total"], outside_ratio(k)]
            for k, t in METHODS if k in m]
    tab = table(["method", "held-out NLL", "validation NLL", "train NLL", "gap std", "cluster std",
                 "gap / cluster std (epistemic)",
                 "gap / cluster std (total)", "outside / cluster std (epistemic)"], rows)
    study_md = render_study(os.path.join(os.path.dirname(res_dir), "sdebnn_toy1d_study"), cfg,
                            os.path.join(os.path.dirname(rel), "sdebnn_toy1d_study"))
    paths_text = (f"every point of {cfg['paths']} repetition(s) on its own weight path per iteration"
                  if cfg.get("layout") == "per_sample" else
                  f"{cfg['paths']} weight paths per iteration each carrying all 40 points")
    t = run.get("timings", {}).get("train_seconds", {})
    md = f"""# SDE-BNN 1D regression: prior and posterior predictive against MC dropout and a deep ensemble

The 1D regression of Xu et al. 2022 (SDE-BNN, Figure 1). Data: x = linspace(0, 2, 20) U linspace(6, 8, 20),
y = cos x + 0.1 N(0, 1), inputs standardised as (x - 4) / 4; 200 held-out points drawn uniformly from the two
clusters with fresh noise. The figure shows the predictive mean, 1/2/3-sigma bands of the sample functions
(epistemic) and 5 sample functions on x in [-2, 10]; the gap 2 < x < 6 is shaded.

Modelling choices (each one ours where the paper or reference is silent or differs):
- SDE-BNN: one block over t in [0, 1] on the hidden state (x, 0, 0) (the reference's two augmented zero
  dimensions); f_x = {cfg['drift']} with the weights w(t) (P = {m['sdebnn'].get('weights')}); posterior weight
  drift -w + r_phi(t, w) with r_phi = {cfg['hypernet']}; OU prior dw = -w dt + {cfg['sigma']} dB; w(0) a
learned
  point estimate; Euler-Maruyama with {cfg['steps']} steps (the reference's grid linspace(0, 1, 20)), which
  reaches t = 1 (the reference's solver stops near 0.53); KL estimator `{cfg['kl']}`, gradients by
  `{cfg['estimator']}`. The prediction is the first coordinate of h(1) (no head).
- Likelihood: {cfg.get('likelihood')} for every method (the reference trains SDE-BNN with a
  Laplace likelihood); loss per point = mean NLL + {cfg['kl_coef']} * KL / 40 (kl_coef 1: the ELBO),
  {paths_text}; Adam {cfg['lr']}, {cfg['iterations']} iterations, full batch, for every model.
- MC dropout: MLP 1 -> {cfg['mlp_hidden']} -> {cfg['mlp_hidden']} -> 1 (ReLU), dropout {cfg['dropout']}
after each
  hidden layer, {cfg['samples']} masks at test time. Deep ensemble: {cfg['ensemble']} such MLPs without
dropout.
- Predictive density of every method: the equal mixture of N(mu_s(x), 0.1^2) over its sample functions
  ({cfg['samples']} weight paths / masks; the ensemble's members). NLL is its mean negative log density on
  the held-out points. Std ratio: the mean predictive std over grid points in the gap (2 < x < 6) divided by
  that over grid points on the clusters; "epistemic" is the std of the sample functions, "total" adds the
  noise variance 0.01.
- "outside / cluster" (computed here from `grid.csv`): the same ratio for x < 0 or x > 8 (extrapolation).
- The prior predictive is the untrained SDE-BNN (r_phi = 0: the OU prior around the initial w(0)).

{provenance_block(r['provenance'], f'{rel}/results.json')}

{tab}

![predictive]({fig_path})
{study_md}
{timing_block(run, f'{rel}/run.json')}
Training wall time (s): {", ".join(f"{k} {fmt(v)}" for k, v in sorted(t.items()))}.
"""
    summary = f"### SDE-BNN 1D regression ([report](sdebnn_toy1d.md))\n\n{tab}\n"
    return md, summary
