"""Report of the full-mode active-learning study (`sdenet_active_learning --full`, results in
reports/results/sdenet_active_learning_full), with the tables and figure of the quick report."""
from render_sdenet_active_learning import render as _render


def render(res_dir, out_dir, rel):
    return _render(res_dir, out_dir, rel, report="sdenet_active_learning_full")
