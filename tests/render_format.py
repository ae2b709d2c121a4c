#!/usr/bin/env python3
"""Numbers in the reports are printed with sensible precision (issue 14): step counts and other
integer-valued floats without decimals ("40", not "40.0000"), large values with few decimals ("1067.3", not
"1067.3100"), about 4 significant figures otherwise; percentages and fractions with a fixed number of
decimals per column ("86.00", "82.20", "9.20", never "86" beside "9.2000"); mean ± std with the same decimals
for both, never taken from an integer-valued mean ("57.0 ± 4.1", not "57 ± 4.10"). Checks reports/render.py's
fmt, fixed, pct, pm and pct_pm directly, then renders a generic result file and reads its table.
    tests/render_format.py SOURCE_DIR"""
import json
import os
import re
import subprocess
import sys
import tempfile

src = sys.argv[1]
sys.path.insert(0, os.path.join(src, "reports"))
from render import fixed, fmt, pct, pct_pm, pm  # noqa: E402

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

# Percentages: a fixed number of decimals whatever the value (sdenet_mnist's accuracy column printed "86",
# "82.20", "9.2000"); fractions likewise with fixed.
pct_cases = [
    ((86.0,), "86.00"), ((82.2,), "82.20"), ((9.2,), "9.20"), ((10.0,), "10.00"), ((0.0,), "0.00"),
    ((100.0,), "100.00"), ((2.0000000000000004,), "2.00"), ((99,), "99.00"), ((None,), "–"),
    ((0.86, 2, 100), "86.00"), ((0.092, 2, 100), "9.20"), ((0.5700000000000001, 1, 100), "57.0"),
    ((14.71, 1), "14.7"), ((-1e-17,), "0.00"), ((0.004,), "0.00"), ((float("nan"),), "nan"),
]
for args, want in pct_cases:
    got = pct(*args)
    if got != want:
        print(f"FAILED: pct{args!r} = {got!r}, want {want!r}")
        fails += 1
for args, want in [((1.0,), "1.0000"), ((0,), "0.0000"), ((0.93,), "0.9300"), ((0.98765,), "0.9877"),
                   ((0.0009,), "0.0009"), ((1.0, 2), "1.00"), ((None,), "–")]:
    got = fixed(*args)
    if got != want:
        print(f"FAILED: fixed{args!r} = {got!r}, want {want!r}")
        fails += 1

# mean ± std: the same decimals for both, from the digits at the mean's magnitude or a fixed count, never
# dropped because the mean is integer-valued (uq_benchmark printed "57 ± 4.10", "11 ± 0", "9.50 ± 0.00").
pm_cases = [
    ((0.98765, 0.01234), "0.9877 ± 0.0123"), ((1067.31, 12.5), "1067.3 ± 12.5"),
    ((40.0, 0.0), "40.00 ± 0.00"), ((0.5, None), "0.5000"), ((57.0, 4.1), "57.00 ± 4.10"),
    ((57.00000000000001, 4.1012193308819715, 3), "57.0 ± 4.1"), ((76.4, 2.6, 2), "76.4 ± 2.6"),
    ((57.0, 4.1, 4, 1), "57.0 ± 4.1"), ((11.0, 0.0, 4, 1), "11.0 ± 0.0"), ((9.5, 0.0, 4, 1), "9.5 ± 0.0"),
    ((0.0, 0.0, 4, 1), "0.0 ± 0.0"), ((0.134, 0.0, 4, 3), "0.134 ± 0.000"), ((0.0, 0.25), "0.0000 ± 0.2500"),
    ((1.5e-5, 2e-6), "1.500e-05 ± 2.000e-06"), ((40, 0), "40.00 ± 0.00"), ((None, 1.0), "–"),
    ((12.0, None, 4, 1), "12.0"), ((3.0, -1e-17, 4, 2), "3.00 ± 0.00"),
]
for args, want in pm_cases:
    got = pm(*args)
    if got != want:
        print(f"FAILED: pm{args!r} = {got!r}, want {want!r}")
        fails += 1
    if " ± " in got:
        a, b = got.split(" ± ")
        if "e" not in got and len(a.partition(".")[2]) != len(b.partition(".")[2]):
            print(f"FAILED: pm{args!r} = {got!r}: mean and std with different decimals")
            fails += 1
pct_pm_cases = [
    ((57.0, 4.1), "57.0 ± 4.1"), ((11.0, 0.0), "11.0 ± 0.0"), ((9.5, 0.0), "9.5 ± 0.0"), ((0.0, 0.0), "0.0 ± 0.0"),
    ((0.5700000000000001, 0.041012193308819715, 1, 100), "57.0 ± 4.1"), ((0.11, 0.0, 1, 100), "11.0 ± 0.0"),
    ((0.097, 0.0467, 2, 100), "9.70 ± 4.67"), ((0.86, None, 1, 100), "86.0"), ((None, None), "–"),
]
for args, want in pct_pm_cases:
    got = pct_pm(*args)
    if got != want:
        print(f"FAILED: pct_pm{args!r} = {got!r}, want {want!r}")
        fails += 1
n_pairs = len(pm_cases) + len(pct_pm_cases)

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
print(f"render.py formats {len(cases)} numbers, {len(pct_cases)} percentages and {n_pairs} mean ± std pairs as "
      "expected; the generic table too")
