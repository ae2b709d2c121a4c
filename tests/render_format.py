#!/usr/bin/env python3
"""Numbers in the reports are printed with sensible precision (issue 14): step counts and other
integer-valued floats without decimals ("40", not "40.0000"), large values with few decimals ("1067.3", not
"1067.3100"), about 4 significant figures otherwise; mean ± std with matching decimals. Checks
reports/render.py's fmt and pm directly, then renders a generic result file and reads its table.
    tests/render_format.py SOURCE_DIR"""
import json
import os
import re
import subprocess
import sys
import tempfile

src = sys.argv[1]
sys.path.insert(0, os.path.join(src, "reports"))
from render import fmt, pm  # noqa: E402

cases = [
    (40.0, "40"), (40, "40"), (0.0, "0"), (-3.0, "-3"), (1067.31, "1067.3"), (1067.3100000001, "1067.3"),
    (2.0000000000000004, "2"), (16.000000000000004, "16"), (0.98765, "0.9877"), (0.5, "0.5000"),
    (2.90321, "2.9032"), (12.3456, "12.35"), (208.3328, "208.3"), (1.5e-5, "1.500e-05"),
    (123456.0, "1.235e+05"), (None, "–"), (True, "True"), (float("nan"), "nan"),
    (1.446e-16, "1.446e-16"), (-2.5e-12, "-2.500e-12"), (0.9999999999999998, "1"),
]
fails = 0
for v, want in cases:
    got = fmt(v)
    if got != want:
        print(f"FAILED: fmt({v!r}) = {got!r}, want {want!r}")
        fails += 1
for (m, s), want in [((0.98765, 0.01234), "0.9877 ± 0.0123"), ((1067.31, 12.5), "1067.3 ± 12.5"),
                     ((40.0, 0.0), "40 ± 0"), ((0.5, None), "0.5000")]:
    got = pm(m, s)
    if got != want:
        print(f"FAILED: pm({m!r}, {s!r}) = {got!r}, want {want!r}")
        fails += 1

# The generic renderer on a result file with a step count, a time in microseconds and a noisy percentage.
with tempfile.TemporaryDirectory() as tmp:
    res = os.path.join(tmp, "results", "toy")
    os.makedirs(res)
    with open(os.path.join(res, "results.json"), "w") as f:
        json.dump({"provenance": {"commit": "0" * 40, "mode": "quick", "seed": 0},
                   "steps": 40.0, "us_per_step": 1067.31, "tnr_percent": 2.0000000000000004}, f)
    out = os.path.join(tmp, "out")
    os.makedirs(out)
    subprocess.run([sys.executable, os.path.join(src, "reports", "render.py"), "--results",
                    os.path.join(tmp, "results"), "--out", out], check=True, stdout=subprocess.DEVNULL)
    md = open(os.path.join(out, "toy.md")).read()
    for row in ["| steps | 40 |", "| us_per_step | 1067.3 |", "| tnr_percent | 2 |"]:
        if row not in md:
            print(f"FAILED: toy.md has no row {row!r}")
            fails += 1
    bad = re.findall(r"(?<![\d.])\d+\.0{4}(?!\d)|\d{4,}\.\d{3,}", md)
    if bad:
        print(f"FAILED: toy.md prints {bad}")
        fails += 1
if fails:
    sys.exit(1)
print(f"render.py formats {len(cases)} numbers and 4 mean ± std pairs as expected; the generic table too")
