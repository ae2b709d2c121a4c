"""Report of the full-mode adversarial study (`sdenet_adversarial --full --models-from
reports/results/sdenet_mnist_full/checkpoints`, results in reports/results/sdenet_adversarial_full): the
attacks on the models of sdenet_mnist's full MNIST-in study, with the tables and figure of the quick report."""
from render_sdenet_adversarial import render as _render


def render(res_dir, out_dir, rel):
    return _render(res_dir, out_dir, rel, report="sdenet_adversarial_full")
