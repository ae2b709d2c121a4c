"""Report of the full-mode sdenet_mnist run with MNIST in (`sdenet_mnist --full --dataset mnist`, results in
reports/results/sdenet_mnist_full): the same tables as sdenet_mnist's report, and issue 12's full-mode
targets."""
from render_sdenet_mnist import render as _render


def render(res_dir, out_dir, rel):
    return _render(res_dir, out_dir, rel, name="sdenet_mnist_full")
