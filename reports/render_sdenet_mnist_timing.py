"""Report of `sdenet_mnist --time-steps`: where the CPU time of full-mode SDE-Net training and evaluation goes
(classifier step, diffusion step, evaluation passes), and the full-mode estimate derived from it."""
import os

from render import pct, provenance_block, read_json, read_run, table, timing_block


def render(res_dir, out_dir, rel):
    r = read_json(os.path.join(res_dir, "results.json"))
    run = read_run(res_dir)
    cfg = r["provenance"]["config"]
    t = run.get("timings", {})
    cls, dif = t.get("cpu_seconds_per_classifier_step"), t.get("cpu_seconds_per_diffusion_step")
    ev, sc = t.get("cpu_seconds_per_eval_image"), t.get("cpu_seconds_per_diffusion_score_image")
    nb, ne, ns = cfg["full_batches_per_epoch"], cfg["full_eval_images_per_sigma"], len(cfg["sigma_eval"])
    body = ""
    if None not in (cls, dif, ev, sc):
        step = cls + dif
        epoch, evals = step * nb, ne * (ev * ns + sc)
        total = epoch * cfg["epochs"] + evals
        body = f"""CPU seconds (process CPU time, all threads; {cfg['time_steps']} steps after {cfg['warmup_steps']}
untimed warm-up step, evaluation on {cfg['eval_images']} test images):

{table(["phase", "CPU s", "per", "share of a training step"], [
    ["classifier step: cross-entropy pass at sigma " + f"{cfg['sigma_train']:g}" + ", backward, SGD", cls, "step",
     pct(100 * cls / step, 1) + "%"],
    ["diffusion step: in-batch and pseudo-OOD passes, BCE backward, SGD", dif, "step", pct(100 * dif / step, 1) + "%"],
    [f"evaluation: {cfg['passes']} passes at sigma {cfg['sigma_eval'][0]:g} (h0 and g once)", ev, "image", ""],
    ["diffusion score g(h0(x))", sc, "image", ""]])}

Full-mode estimate per in-distribution data set, one core: training {nb} batches x ({cls:.3f} + {dif:.3f}) s
= {epoch:.0f} s per epoch, x {cfg['epochs']} epochs = {epoch * cfg['epochs'] / 3600:.2f} h; evaluation of
{ne:,.0f} images ({10000:,} test images of each data set and of each noise set) at {ns} sigmas plus the
diffusion score, {ne:,.0f} x ({ns} x {ev:.4f} + {sc:.5f}) s = {evals:.0f} s; together {total / 3600:.2f} h of CPU
(both data sets: {2 * total / 3600:.2f} h, before the baselines). Wall-clock seconds depend on what else the
machine runs: here {t.get('training_wall_seconds', 0):.0f} s of wall time for the
{cfg['time_steps'] + cfg['warmup_steps']} training steps against {step * cfg['time_steps']:.1f} CPU s for the
{cfg['time_steps']} timed ones; the per-epoch seconds in `sdenet_mnist.md` are wall-clock seconds of a shared
machine.
"""
    md = f"""# SDE-Net full-mode cost on MNIST: CPU time by phase

`sdenet_mnist --time-steps {cfg['time_steps']}` at width {cfg['width']} (the reference's is 64),
GroupNorm(min({cfg['max_groups']}, C), C), batch {cfg['batch']}, on {cfg['dataset']} training images in
training order at epoch 0's learning rates. It writes no study results: `results.json` holds the
configuration and two value checksums (mean max probability {r['results']['mean_max_prob']:.6f}, mean
diffusion {r['results']['mean_diffusion']:.6f}), `run.json` the CPU seconds.

{provenance_block(r['provenance'], rel + '/results.json')}
{timing_block(run, rel + '/run.json')}
{body}"""
    summary = "### SDE-Net full-mode cost ([report](sdenet_mnist_timing.md))\n\n"
    if body:
        summary += (f"{cls + dif:.3f} CPU s per training step of {cfg['batch']} at width {cfg['width']}; "
                    f"{total / 3600:.2f} h of CPU per data set for the full study.\n")
    return md, summary
