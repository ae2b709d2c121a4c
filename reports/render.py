#!/usr/bin/env python3
"""Renders sdeuq's reports from the experiments' result files.

    python3 reports/render.py [--results reports/results] [--out reports]

For every experiment directory under --results that has a results.json, writes <out>/<experiment>.md
(its tables, figures and provenance: mode, seed, commit) and figures in <out>/figures/ (PNG and SVG),
and writes <out>/README.md with every table. Every number in a report is read from the result file the
report names; nothing is typed in by hand. Figures are deterministic (fixed SVG hash salt, no dates in
metadata), so the same result files give the same bytes.
"""
import argparse
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "sdeuq"
matplotlib.rcParams["path.simplify"] = False
import matplotlib.pyplot as plt  # noqa: E402

FIG_META_SVG = {"Date": None, "Creator": None}
FIG_META_PNG = {"Software": None}


def _decimals(x, digits):
    """Decimals that give a magnitude x (>= 0, in [1e-3, 1e5)) about `digits` significant figures, at most
    `digits` decimals and at least 1 from 10 on: 0.98765 -> 4, 12.35 -> 2, 208.3 -> 1, 1067.3 -> 1."""
    return digits if x < 10 else max(1, min(digits, digits - len(str(int(x)))))


def _fixed(v, decimals):
    """A finite float with exactly `decimals` decimals; a tiny negative round-off reads 0.00, not -0.00."""
    s = f"{v:.{decimals}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def fmt(v, digits=4):
    """A number as a table shows it: integers (also integer-valued floats such as step counts, and floats
    within rounding error of a nonzero integer such as 2.0000000000000004 = 100 * 10 / 500; never a tiny
    nonzero value such as a round-off error 1.4e-16, which is no 0) without decimals,
    otherwise about `digits` significant figures (at most `digits` decimals; 1067.31 -> 1067.3, 40.0 -> 40,
    0.98765 -> 0.9877), scientific notation below 1e-3 and from 1e5 on. For counts and quantities of
    varying scale (NLL, losses, seconds); columns of percentages or fractions, where 86.0 must not print as
    "86" beside "82.20", use pct / fixed. Tested by tests/render_format.py."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        if v == 0 or (abs(v) >= 0.5 and abs(v) < 1e5 and abs(v - round(v)) <= 1e-9 * abs(v)):
            return str(int(round(v)))
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{_decimals(abs(v), digits)}f}"
    return str(v)


# The result keys of per-method metrics that are fractions in [0, 1] (fixed decimals in every cell, see fixed);
# NLL, Brier and times keep fmt's rule.
FRACTIONS = {"accuracy", "ece_15", "ece_10", "ood_auroc", "ood_aupr_in", "ood_aupr_out", "ood_tnr_at_95_tpr",
             "ood_detection_accuracy"}


def fixed(v, decimals=4):
    """A number with exactly `decimals` decimals, whatever its value, so that a column lines up: for
    fractions such as an accuracy or an AUROC in [0, 1] (1.0 -> "1.0000", 0.93 -> "0.9300", 0 -> "0.0000").
    None -> "–"; nan and inf as they are; a tiny negative round-off prints as 0 ("0.0000")."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    return _fixed(v, decimals)


def pct(v, decimals=2, scale=1.0):
    """A percentage with a fixed number of decimals (default 2): 86.0 -> "86.00", 82.2 -> "82.20", 9.2 ->
    "9.20", so that every cell of a percent column has the same decimals. v is in percent, or a fraction
    with scale=100 (pct(0.822, scale=100) -> "82.20"). None -> "–"."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return fixed(float(v) * scale, decimals)


def pm(mean, std, digits=4, decimals=None):
    """mean ± std, both with the same number of decimals: `decimals` if given, otherwise the decimals of
    about `digits` significant figures at the mean's magnitude (the std's when the mean is 0), as fmt gives
    a non-integer of that magnitude: an integer-valued mean keeps them (57.0 ± 4.1 -> "57.00 ± 4.10",
    never "57 ± 4.10"; 40.0 ± 0.0 -> "40.00 ± 0.00"). Below 1e-3 and from 1e5 on both in scientific
    notation. Without a std (a single run): the mean alone, as fmt (or fixed, with `decimals`) prints it."""
    if mean is None:
        return "–"
    if std is None:
        return fmt(mean, digits) if decimals is None else fixed(mean, decimals)
    mean, std = float(mean), float(std)
    if any(x != x or x in (float("inf"), float("-inf")) for x in (mean, std)):
        return f"{fmt(mean, digits)} ± {fmt(std, digits)}"
    if decimals is None:
        x = abs(mean) if mean != 0 else abs(std)
        if x != 0 and (x < 1e-3 or x >= 1e5):
            return f"{mean:.{digits - 1}e} ± {std:.{digits - 1}e}"
        decimals = _decimals(x, digits)
    return f"{_fixed(mean, decimals)} ± {_fixed(std, decimals)}"


def pct_pm(mean, std, decimals=1, scale=1.0):
    """mean ± std of a percentage, both with `decimals` decimals (default 1): "57.0 ± 4.1", "11.0 ± 0.0",
    "9.5 ± 0.0". In percent, or fractions with scale=100. None mean -> "–"; None std -> the mean alone."""
    if mean is None:
        return "–"
    return pm(float(mean) * scale, float(std) * scale if std is not None else None, decimals=decimals)


def cite_block(prov, src, experiment):
    """How to cite a report: the software (CITATION.cff) and the commit, command, seed and mode of its
    results. Results without a provenance commit cannot be cited by one: the block says so and how to
    regenerate them (scripts/regenerate, which knows each experiment's committed mode) instead of printing
    placeholders."""
    regenerate = f"scripts/regenerate {experiment}"
    if not prov.get("commit") or prov.get("commit") == "unknown":
        return (f"\n## How to cite\n\nsdeuq (see `CITATION.cff` at the repository root). The results `{src}` "
                f"carry no provenance (no commit, command, seed or mode recorded): regenerate them with "
                f"`{regenerate}` from a clean commit and render the report with `python3 reports/render.py` "
                f"before citing it.\n")
    commit = prov["commit"]
    command = prov.get("command") or f"build/experiments/{experiment} --{prov.get('mode', 'quick')} " \
        f"--seed {prov.get('seed', 0)}"
    seeds = prov.get("seeds")
    seed_text = f"seeds {seeds}" if seeds is not None else f"seed {prov.get('seed', '?')}"
    dirty = ", with uncommitted changes" if prov.get("dirty") else ""
    return (f"\n## How to cite\n\nsdeuq (see `CITATION.cff` at the repository root), commit `{commit}`{dirty}; "
            f"results `{src}` from `{command}` ({seed_text}, mode {prov.get('mode', '?')}); regenerate the "
            f"report with `python3 reports/render.py`.\n")


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(fmt(c) for c in r) + " |")
    return "\n".join(out)


def save(fig, out_dir, name):
    os.makedirs(os.path.join(out_dir, "figures"), exist_ok=True)
    png = os.path.join("figures", name + ".png")
    fig.savefig(os.path.join(out_dir, png), dpi=110, bbox_inches="tight", metadata=FIG_META_PNG)
    fig.savefig(os.path.join(out_dir, "figures", name + ".svg"), bbox_inches="tight", metadata=FIG_META_SVG)
    plt.close(fig)
    return png


def provenance_block(prov, src):
    commit = prov.get("commit", "unknown")
    dirty = " (with uncommitted changes)" if prov.get("dirty") else ""
    return (f"Mode **{prov.get('mode', '?')}**, seed **{prov.get('seed', '?')}**, commit `{commit}`{dirty}, "
            f"compiler {prov.get('compiler', '?')}. Numbers from `{src}`.")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_run(res_dir):
    """The run.json beside a results.json (wall times, CPU, threads: what is not reproducible), or {}."""
    path = os.path.join(res_dir, "run.json")
    return read_json(path) if os.path.exists(path) else {}


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def timing_block(run, src):
    if not run:
        return ""
    n = run.get("threads", "?")
    return (f"\nTimings (not part of the reproducible results; `{src}`): {n} thread{'' if n == 1 else 's'} on "
            f"{run.get('cpu', '?')}, {run.get('date', '?')}.\n")


# ---------------------------------------------------------------------------------------------- two_moons
def render_two_moons(res_dir, out_dir, rel):
    r = read_json(os.path.join(res_dir, "results.json"))
    run = read_json(os.path.join(res_dir, "run.json")) if os.path.exists(os.path.join(res_dir, "run.json")) else {}
    methods = ["deterministic", "mc_dropout", "deep_ensemble", "sngp"]
    methods = [m for m in methods if m in r["methods"]]
    titles = {"deterministic": "Deterministic ResNet", "mc_dropout": "MC dropout", "deep_ensemble": "Deep ensemble",
              "sngp": "SNGP"}
    grid = read_csv(os.path.join(res_dir, "grid.csv"))
    pts = read_csv(os.path.join(res_dir, "points.csv"))
    xs = sorted({float(g["x"]) for g in grid})
    ys = sorted({float(g["y"]) for g in grid})
    nx, ny = len(xs), len(ys)
    figs = []
    for kind, cmap, label in [("p1", "bwr", "class probability p(class 1)"),
                              ("uncertainty", "plasma", "predictive uncertainty p(1-p)")]:
        fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.4), squeeze=False)
        for ax, m in zip(axes[0], methods):
            z = [[0.0] * nx for _ in range(ny)]
            for k, g in enumerate(grid):
                z[k // nx][k % nx] = float(g[f"{m}_{kind}"])
            vmax = 1.0 if kind == "p1" else 0.25
            im = ax.imshow(z, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap=cmap, vmin=0,
                           vmax=vmax, aspect="auto")
            tr = [p for p in pts if p["set"] == "train"]
            ax.scatter([float(p["x"]) for p in tr], [float(p["y"]) for p in tr],
                       c=["#ff8000" if p["label"] == "1" else "#0040ff" for p in tr], s=3, alpha=0.5)
            od = [p for p in pts if p["set"] == "ood"]
            ax.scatter([float(p["x"]) for p in od], [float(p["y"]) for p in od], c="red", s=3, alpha=0.5)
            ax.set_title(titles[m])
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle(label, y=1.04)
        figs.append(save(fig, out_dir, f"two_moons_{kind}"))
    src = f"{rel}/results.json"
    rows = []
    for m in methods:
        v = r["methods"][m]
        t = run.get("timings", {}).get(m, {})
        # Accuracies, AUROC and AUPR are fractions: 4 decimals in every cell (1.0 -> "1.0000", not "1").
        rows.append([titles[m], fixed(v["train_accuracy"]), fixed(v["test_accuracy"]), v["test_nll"],
                     fixed(v["ood_auroc"]), fixed(v["ood_aupr_in"]), t.get("train_seconds"),
                     t.get("inference_seconds")])
    tab = table(["method", "train acc", "test acc", "test NLL", "OOD AUROC", "OOD AUPR (in)", "train s",
                 "inference s"], rows)
    cfg = r["provenance"]["config"]
    md = f"""# Two moons: SNGP against the deterministic ResNet, MC dropout and a deep ensemble

The TensorFlow tutorial "Uncertainty-aware Deep Learning with SNGP", reproduced with sdeuq: 2 x
{cfg['n_per_class']} training points, a residual MLP ({cfg['residual_layers']} residual Dense layers of
{cfg['hidden']}, dropout {cfg['dropout']}), Adam {cfg['lr']}, {cfg['epochs']} epochs, batch {cfg['batch']}.
MC dropout averages {cfg['mc_samples']} dropout masks of the deterministic network; the ensemble has
{cfg['ensemble']} members. OOD AUROC scores each method's uncertainty p(1-p) on {cfg['n_ood']} points of the
OOD cluster against fresh in-domain test points (1.0: every OOD point is more uncertain than every test
point; 0.5: no separation; 0.0: the OOD points are the *most* confident).

{provenance_block(r['provenance'], src)}

{tab}
{timing_block(run, f'{rel}/run.json')}
![class probability]({figs[0]})

![uncertainty]({figs[1]})

Training points are shown in blue/orange, OOD points in red.
"""
    summary = f"### Two moons ([report](two_moons.md))\n\n{tab}\n"
    return md, summary


# ------------------------------------------------------------------------------------------------ generic
def flatten(prefix, v, out):
    if isinstance(v, dict):
        for k in sorted(v):
            flatten(f"{prefix}.{k}" if prefix else k, v[k], out)
    elif isinstance(v, (int, float, str, bool)) or v is None:
        out.append((prefix, v))


def render_generic(name, res_dir, out_dir, rel):
    agg_path = os.path.join(res_dir, "aggregate.json")
    if os.path.exists(agg_path):  # a sweep: mean ± std (n) per grid point
        agg = read_json(agg_path)
        parts = []
        for point in agg["points"]:
            rows = [[k, pm(v["mean"], v["std"]), v["n"]] for k, v in sorted(point["metrics"].items())]
            setting = ", ".join(f"{k} = {v}" for k, v in point["set"].items()) or "(no --set)"
            parts.append(f"#### {setting}\n\n" + table(["quantity", "mean ± std", "n"], rows[:400]))
        prov = agg["provenance"]
        head = (f"Mode **{prov.get('mode')}**, seeds **{prov.get('seeds')}**, commit `{prov.get('commit')}`"
                f"{' (with uncommitted changes)' if prov.get('dirty') else ''}. Numbers from "
                f"`{rel}/aggregate.json`.")
        tab = "\n\n".join(parts)
        return f"# {name}\n\n{head}\n\n{tab}\n", f"### {name} ([report]({name}.md))\n\n{tab}\n"
    r = read_json(os.path.join(res_dir, "results.json"))
    prov = r.get("provenance", {})
    rows = []
    for k, v in sorted(r.items()):
        if k == "provenance":
            continue
        flat = []
        flatten(k, v, flat)
        rows.extend(flat)
    tab = table(["quantity", "value"], rows[:400])
    md = f"# {name}\n\n{provenance_block(prov, rel + '/results.json')}\n\n{tab}\n"
    return md, f"### {name} ([report]({name}.md))\n\n{tab}\n"


RENDERERS = {"two_moons": render_two_moons}


def load_plugins():
    """Per-experiment renderers living next to this file as render_<experiment>.py with a
    render(res_dir, out_dir, rel) -> (markdown, summary) function."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    for f in sorted(os.listdir(here)):
        if f.startswith("render_") and f.endswith(".py"):
            mod = __import__(f[:-3])
            RENDERERS[f[len("render_"):-3]] = mod.render


def render_bench(res_dir, rel):
    parts = []
    g = os.path.join(res_dir, "gemm.json")
    if os.path.exists(g):
        b = read_json(g)
        rows = [[x["n"], x["threads"], x["gflops"], x["gflops"] / b["peak_gflops"],
                 x.get("openblas_gflops"),
                 x["gflops"] / x["openblas_gflops"] if x.get("openblas_gflops") else None] for x in b["results"]]
        parts.append(f"GEMM (float32), single-core FMA peak measured in the same run: {fmt(b['peak_gflops'])} "
                     f"GFLOP/s (`{rel}/gemm.json`)\n\n" +
                     table(["n", "threads", "GFLOP/s", "fraction of peak", "OpenBLAS GFLOP/s", "ratio"], rows))
    t = os.path.join(res_dir, "tape_overhead.json")
    if os.path.exists(t):
        b = read_json(t)
        parts.append(f"Tape overhead (`{rel}/tape_overhead.json`): {fmt(b['ns_per_node'], 1)} ns per node "
                     f"(forward {fmt(b.get('ns_forward'), 1)}, backward {fmt(b.get('ns_backward'), 1)}).")
    ts = os.path.join(res_dir, "train_step.json")
    if os.path.exists(ts):
        b = read_json(ts)
        tt = os.path.join(res_dir, "train_step_torch.json")
        torch = read_json(tt) if os.path.exists(tt) else {}
        rows = [["sdeuq", b.get("us_per_step_1t"), b.get("us_per_step_2t")],
                ["PyTorch " + str(torch.get("torch_version", "")), torch.get("torch_us_per_step_1t"),
                 torch.get("torch_us_per_step_2t")]]
        ratio = ""
        if torch.get("torch_us_per_step") and b.get("us_per_step_1t"):
            best = min(b["us_per_step_1t"], b.get("us_per_step_2t") or b["us_per_step_1t"])
            ratio = f" PyTorch / sdeuq (best of each): {fmt(torch['torch_us_per_step'] / best, 2)}x."
        text = (f"Training step, SNGP tutorial ResNet, batch 128, Adam (`{rel}/train_step.json`, "
                f"`{rel}/train_step_torch.json`):{ratio}\n\n" + table(["", "us/step 1 thread", "us/step 2 threads"], rows))
        if b.get("phases_1t") and b.get("phases_2t"):
            keys = ["zero_grad", "forward", "backward", "optimizer"]
            prow = [[f"sdeuq {n} thread{'s' if n == 2 else ''}"] + [b[f"phases_{n}t"].get(k) for k in keys] for n in (1, 2)]
            text += ("\n\nWhere the time goes (us per step, the same fastest block; forward includes the loss, "
                     "optimizer includes the tape reset):\n\n" + table([""] + keys, prow))
        parts.append(text)
    s = os.path.join(res_dir, "sde_grad.json")
    if os.path.exists(s):
        b = read_json(s)
        rows = [[x["method"], x.get("kl", "none") + (" adaptive" if x.get("adaptive") else ""),
                 x.get("accepted_steps", x["steps"]), x["us_per_step"], x.get("cpu_us_per_step"), x["peak_mib"],
                 x.get("floor_fraction")] for x in b["results"]]
        parts.append(f"Neural SDE gradients, 1 thread (`{rel}/sde_grad.json`); torchsde 0.2.6 on PyTorch 1.13 "
                     "needs 1.1-1.9 ms per step with backprop, 2.5-4.4 ms with the adjoint, 2.0-2.9 ms with "
                     "reversible Heun on this machine (figures quoted by the project brief, not measured here: "
                     "torchsde is not installable offline)\n\n" +
                     table(["method", "kl", "steps", "us/step (wall)", "us/step (thread CPU)", "peak MiB",
                            "GEMM floor / CPU time"], rows))
    cs = os.path.join(res_dir, "conv_step.json")
    if os.path.exists(cs):
        b = read_json(cs)
        rows = [[x["net"], x["threads"], x["us_per_step"], x["gflop"], x["floor_fraction"], x["peak_fraction"],
                 x.get("conv_peak_fraction"), x.get("torch_us_per_step"), x.get("torch_ratio"), x.get("peak_step_mib")]
                for x in b["results"]]
        ev = {e["passes"]: e["peak_rss_mib"] for e in b.get("eval_memory", [])}
        parts.append(f"Conv-net training steps, batch 128, Adam (`{rel}/conv_step.json`; PyTorch "
                     f"{b.get('torch_version')} timed in the same run; single-core FMA peak "
                     f"{fmt(b['peak_gflops'])} GFLOP/s; floor = FLOPs / (peak x threads); torch ratio = PyTorch "
                     "us / sdeuq us)\n\n" +
                     table(["net", "threads", "us/step", "GFLOP", "fraction of floor", "fraction of peak",
                            "conv2d fraction of peak", "PyTorch us/step", "PyTorch / sdeuq", "step peak MiB"], rows) +
                     f"\n\nNo-grad evaluation (quick net, batch 500, MC dropout) peak RSS growth: "
                     f"{fmt(ev.get(1), 1)} MiB for 1 pass, {fmt(ev.get(10), 1)} MiB for 10 passes.")
    br = os.path.join(res_dir, "brownian.json")
    if os.path.exists(br):
        parts.append(f"Brownian path queries: see `{rel}/brownian.json`.")
    if not parts:
        return None
    md = "# Benchmarks\n\nMeasured on the machine that ran `scripts/run-all`; speed is never asserted by tests.\n\n" + \
        "\n\n".join(parts) + "\n"
    return md, "### Benchmarks ([report](bench.md))\n\n" + "\n\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="reports/results")
    ap.add_argument("--out", default="reports")
    a = ap.parse_args()
    if not os.path.isdir(a.results):
        sys.exit(f"render.py: no results directory '{a.results}' (run scripts/run-all first)")
    load_plugins()
    summaries = []
    rel_root = os.path.relpath(a.results, a.out)
    for name in sorted(os.listdir(a.results)):
        d = os.path.join(a.results, name)
        rel = f"{rel_root}/{name}"
        if name == "bench":
            r = render_bench(d, rel)
            if r:
                md, summ = r
                pp = os.path.join(d, "provenance.json")
                md += cite_block(read_json(pp) if os.path.exists(pp) else {}, f"{rel}/",
                                 "bench")
                with open(os.path.join(a.out, "bench.md"), "w") as f:
                    f.write(md)
                summaries.append(summ)
            continue
        # A sweep (scripts/sweep) leaves aggregate.json; a single run results.json.
        main_file = next((f for f in ("aggregate.json", "results.json")
                          if os.path.exists(os.path.join(d, f))), None)
        if main_file is None:
            continue
        fn = RENDERERS.get(name)
        md, summ = fn(d, a.out, rel) if fn else render_generic(name, d, a.out, rel)
        md += cite_block(read_json(os.path.join(d, main_file)).get("provenance", {}), f"{rel}/{main_file}",
                         name)
        with open(os.path.join(a.out, f"{name}.md"), "w") as f:
            f.write(md)
        summaries.append(summ)
        print(f"render.py: wrote {a.out}/{name}.md")
    readme = ("# sdeuq reports\n\nGenerated by `scripts/run-all` (`reports/render.py`) from the result files in "
              "`reports/results/`; each report names its mode, seed and commit, and each table its source file. "
              "`scripts/regenerate` reruns every committed result in its committed mode (`--list`: the "
              "commands and their times).\n\n"
              + "\n".join(summaries))
    with open(os.path.join(a.out, "README.md"), "w") as f:
        f.write(readme)
    print(f"render.py: wrote {a.out}/README.md ({len(summaries)} sections)")


if __name__ == "__main__":
    main()
