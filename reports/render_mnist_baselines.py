"""Report of experiments/mnist_baselines: the baselines (deterministic conv net, MC dropout, deep
ensemble) on MNIST and Fashion-MNIST, each with the other data set as OOD."""
import os

from render import FRACTIONS, fixed, provenance_block, read_json, read_run, table, timing_block

METHODS = [("deterministic", "Deterministic"), ("mc_dropout", "MC dropout"), ("deep_ensemble", "Deep ensemble")]
PAIRS = [("mnist_vs_fashion_mnist", "MNIST (in) vs Fashion-MNIST (OOD)"),
         ("fashion_mnist_vs_mnist", "Fashion-MNIST (in) vs MNIST (OOD)")]
COLS = [("accuracy", "acc"), ("nll", "NLL"), ("brier", "Brier"), ("ece_15", "ECE (15)"), ("ece_10", "ECE (10)"),
        ("ood_auroc", "AUROC"), ("ood_aupr_in", "AUPR in"), ("ood_aupr_out", "AUPR out"),
        ("ood_tnr_at_95_tpr", "TNR@95TPR"), ("ood_detection_accuracy", "det. acc")]


def render(res_dir, out_dir, rel):
    r = read_json(os.path.join(res_dir, "results.json"))
    run = read_run(res_dir)
    cfg = r["provenance"]["config"]
    parts = []
    for key, title in PAIRS:
        if key not in r["results"]:
            continue
        rows = []
        for m, name in METHODS:
            v = r["results"][key].get(m)
            if v:
                rows.append([name] + [fixed(v[c]) if c in FRACTIONS else v[c] for c, _ in COLS])
        parts.append(f"#### {title}\n\n" + table(["method"] + [h for _, h in COLS], rows))
    trows = []
    for key, title in PAIRS:
        for m, name in METHODS:
            t = run.get("timings", {}).get(key, {}).get(m)
            if t:
                eps = t.get("seconds_per_epoch", [])
                trows.append([title, name, sum(eps) / len(eps) if eps else None, t.get("inference_seconds")])
    tables = "\n\n".join(parts)
    subset = "all" if not cfg["train_subset"] else cfg["train_subset"]
    md = f"""# MNIST and Fashion-MNIST baselines

A conv net after SDE-Net's MNIST model (downsampling block, {cfg['residual_blocks']} residual conv block(s),
width {cfg['width']}, GroupNorm with {cfg.get('groups', '?')} groups, linear head), trained with Adam
{cfg['lr']} for {cfg['epochs']} epochs (batch {cfg['batch']}) on {subset} training images; MC dropout
(p = {cfg['dropout']}, {cfg['mc_samples']} masks); a deep ensemble of {cfg['ensemble']} members (member 0 is
the deterministic model). Evaluated on {cfg['eval_subset'] or 'all'} test images of each set; OOD score:
{cfg['ood_score']} (in-distribution positive). ECE uses equal-width bins on the max probability.

{provenance_block(r['provenance'], rel + '/results.json')}

{tables}
{timing_block(run, rel + '/run.json')}
{table(['pair', 'method', 'seconds per epoch', 'inference seconds'], trows) if trows else ''}
"""
    return md, f"### MNIST baselines ([report](mnist_baselines.md))\n\n{tables}\n"
