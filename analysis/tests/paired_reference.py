"""Prints analysis/tests/paired_reference_values.in: scipy's Wilcoxon signed-rank and paired
t-test on cases that take each of scipy's paths (exact, sign-flip permutation with ties or
zeros, normal approximation with ties, more than 50 pairs).

    python3 analysis/tests/paired_reference.py > analysis/tests/paired_reference_values.in
"""
import numpy as np
import scipy
import scipy.stats as st

rng = np.random.default_rng(12)
cases = [
    ("exact n5", [0.91, 0.93, 0.90, 0.95, 0.92], [0.89, 0.94, 0.86, 0.90, 0.93]),
    ("exact n8 all positive", [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2], [0.4, 0.45, 0.61, 0.62, 0.83, 0.84, 0.85, 0.86]),
    ("exact n12", list(rng.normal(0.3, 1, 12)), list(rng.normal(0, 1, 12))),
    ("ties n6 permutation", [3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [2.0, 3.0, 4.0, 6.5, 6.0, 9.0]),
    ("zero n7 permutation", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.0, 1.5, 2.0, 4.5, 3.0, 4.0, 8.5]),
    ("constant differences", [2.0, 3.0, 4.0], [1.0, 2.0, 3.0]),
    ("ties n20 asymptotic", [round(v, 1) for v in rng.normal(0.2, 1, 20)], [round(v, 1) for v in rng.normal(0, 1, 20)]),
    ("n60 asymptotic", list(rng.normal(0.1, 1, 60)), list(rng.normal(0, 1, 60))),
]

print(f"// Written by analysis/tests/paired_reference.py with scipy {scipy.__version__}, numpy {np.__version__}.")
print("const CASES: &[Case] = &[")
for name, x, y in cases:
    w = st.wilcoxon(x, y)
    t = st.ttest_rel(x, y)
    def fmt(v):
        if np.isnan(v):
            return "f64::NAN"
        if np.isinf(v):
            return "f64::INFINITY" if v > 0 else "f64::NEG_INFINITY"
        return repr(float(v))
    xs = ", ".join(repr(float(v)) for v in x)
    ys = ", ".join(repr(float(v)) for v in y)
    print(f"    Case {{ name: {name!r}, x: &[{xs}], y: &[{ys}],".replace("'", '"'))
    print(f"        wilcoxon: ({fmt(w.statistic)}, {fmt(w.pvalue)}), t: ({fmt(t.statistic)}, {fmt(t.pvalue)}) }},")
print("];")
