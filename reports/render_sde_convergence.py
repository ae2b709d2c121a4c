"""Report of experiments/sde_convergence.cpp: strong convergence of every solver on the test SDEs, measured
as the least-squares slope of log error on log dt. Loaded by reports/render.py as a plugin:
render(res_dir, out_dir, rel)."""
import math
import os

import matplotlib.pyplot as plt

from render import fmt, provenance_block, read_json, save, table

# Fixed colours and markers per solver, the same in every figure.
SOLVER_STYLE = {"euler": ("C0", "o"), "milstein": ("C1", "s"), "heun": ("C2", "^"), "midpoint": ("C3", "v"),
                "reversible_heun": ("C4", "D"), "srk": ("C5", "P")}


# A slope with a larger standard error is flagged in the table: the errors are not in the asymptotic regime.
UNRELIABLE_SE = 0.2


def provenance(r):
    """The provenance in render.provenance_block's terms. sde_convergence writes its own keys (git_commit,
    git_dirty; seed and mode in config); the shared experiment::provenance format is accepted too."""
    p = dict(r.get("provenance", {}))
    cfg = r.get("config") or p.get("config") or {}
    p.setdefault("commit", p.get("git_commit", "unknown"))
    p.setdefault("dirty", p.get("git_dirty", False))
    p.setdefault("mode", cfg.get("mode", "?"))
    p.setdefault("seed", cfg.get("seed", "?"))
    return p, cfg


def order(v):
    return "–" if v is None else f"{v:.1f}"


def pm(v, se):
    if v is None:
        return "–"
    return f"{v:.3f} ± {se:.3f}" if se is not None else f"{v:.3f}"


def finite_points(run):
    # Diverged solves are written as null (or inf): left out, as the slope fit leaves them out.
    return [(d, e) for d, e in zip(run["dts"], run["errors"]) if e is not None and e > 0 and math.isfinite(e)]


def sde_figure(name, runs, out_dir):
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    # A solver that is unstable at the coarse steps (reversible Heun on the stiff double well) can reach
    # 1e40 and flatten every other line. Errors above what order-3 growth from the smallest errors would
    # give, max over solvers of min(error) x (dt_max / dt_min)^3, are drawn off scale (the legend says how
    # many); no convergent solver in the study comes near that.
    mins = [min(e for _, e in finite_points(run)) for run in runs if finite_points(run)]
    dts = [d for run in runs for d in run["dts"]]
    cutoff = max(mins) * (max(dts) / min(dts)) ** 3 if mins else math.inf
    for run in runs:
        colour, marker = SOLVER_STYLE.get(run["solver"], (None, "o"))
        pts = finite_points(run)
        off = len(run["dts"]) - len([p for p in pts if p[1] <= cutoff])
        # NaN for the points left out, so that the line breaks there instead of bridging the gap.
        pts = [(d, e if e <= cutoff else math.nan) for d, e in pts]
        if all(math.isnan(e) for _, e in pts):
            continue
        s, se = run.get("slope"), run.get("slope_se")
        label = f"{run['solver']}: slope {pm(s, se)} (order {order(run['theory_order'])}"
        if run.get("expected_order") is not None and run["expected_order"] != run["theory_order"]:
            label += f", {order(run['expected_order'])} here"
        label += ")"
        if off:
            label += f", {off} dt off scale"
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=colour, linewidth=1,
                  markersize=4, label=label)
    ax.set_xlabel("dt")
    ax.set_ylabel("mean |Y_T - reference|")
    noise, calc = runs[0].get("noise", ""), runs[0].get("calculus", "")
    ax.set_title(f"{name} ({noise} noise, {calc})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    # Errors fall towards small dt (left), so the lower right corner is free.
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save(fig, out_dir, f"sde_convergence_{name}")


def render(res_dir, out_dir, rel):
    r = read_json(os.path.join(res_dir, "results.json"))
    prov, cfg = provenance(r)
    src = f"{rel}/results.json"
    by_sde = {}
    for run in r["runs"]:
        by_sde.setdefault(run["sde"], []).append(run)

    rows, sections = [], []
    for name, runs in by_sde.items():
        fig = sde_figure(name, runs, out_dir)
        note = runs[0].get("note", "")
        reference = runs[0].get("reference", "")
        sections.append(f"### {name}\n\n{note}. Reference: {reference}.\n\n![{name}]({fig})\n")
        for run in runs:
            se = run.get("slope_se")
            flag = " †" if se is not None and se > UNRELIABLE_SE else ""
            rows.append([name, run.get("noise"), run.get("calculus"), run["solver"],
                         order(run["theory_order"]), order(run.get("expected_order")),
                         pm(run.get("slope"), se) + flag,
                         pm(run.get("slope_fine"), run.get("slope_fine_se"))])
    tab = table(["SDE", "noise", "calculus", "solver", "theoretical order", "expected here",
                 "measured slope ± s.e.", "4 finest dt ± s.e."], rows)

    timing = ""
    tpath = os.path.join(res_dir, "run.json")
    if os.path.exists(tpath):
        t = read_json(tpath).get("timings", {})
        timing = (f"\nTimings (not part of the reproducible results; `{rel}/run.json`): "
                  f"{fmt(t.get('total_seconds'))} s in all with {t.get('workers', '?')} worker threads.\n")
    dt = cfg.get("dt", {})
    dt_text = ""
    if dt:
        dt_text = f"dt = 2^-{dt.get('k_min')} .. 2^-{dt.get('k_max')}, "
    md = f"""# Strong convergence of the SDE solvers

For each test SDE of `sde/test_sdes.hpp`, {cfg.get('paths', '?')} independent Brownian paths, {dt_text}
T = {cfg.get('T', 1)}; the error is the {cfg.get('error', 'mean absolute error at T')}, against the
closed form where there is one, else srk at dt = {fmt(cfg.get('reference_dt'))} on the same path. The
measured order is the least-squares slope of log error on log dt with its standard error (and the same over
the 4 smallest dt), next to the solver's theoretical strong order for the noise type and the order expected
for this particular SDE (higher for commutative noise or where the Levy-area terms cancel).

{provenance_block(prov, src)}

{tab}

† Standard error above {UNRELIABLE_SE}: the errors are not on a line (the solver is unstable at the coarser
steps), so the slope is not an order; see the SDE's figure and note below.
{timing}
""" + "\n".join(sections)
    summary = f"### SDE solver convergence ([report](sde_convergence.md))\n\n{tab}\n"
    return md, summary
