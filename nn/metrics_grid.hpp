// The threshold-grid OOD metrics of the SDE-Net reference (calculate_log.py, after ODIN's calMetric.py as
// modified by Kimin Lee), reproduced definition for definition so that our numbers can be put next to the
// paper's. They differ from the exact rank / average-precision versions in nn/metrics.hpp:
//
//   grid      delta_k = start + k * d, k = 0 .. K-1, the values of numpy.arange(start, end, gap) with
//             start / end the min / max of the pooled scores and gap = (end - start) / steps (steps 200,000):
//             K = ceil((end - start) / gap) and d = (start + gap) - start, as numpy fills an arange.
//   TPR(d) = #{in >= d} / n_in, FPR(d) = #{out > d} / n_out ("in" are the positives, higher = more in).
//   TNR@95   1 - mean of FPR over the grid points with tpr_lo <= TPR <= tpr_hi ([0.94, 0.96]);
//            FPR := 1 (TNR 0) when no grid point qualifies (the reference's "corner case").
//   AUROC    sum_k (FPR_{k-1} - FPR_k) TPR_k with FPR_{-1} = 1 (nothing is added beyond the last point).
//   det acc  1 - min(1, min_k (#{in < d_k} / n_in + FPR_k) / 2).
//   AUPR in  ascending grid, tp = #{in >= d}, fp = #{out >= d} (>= for both), points with tp + fp = 0
//            skipped; sum (R_prev - R) P with R_prev starting at 1, plus R_last * P_last.
//   AUPR out descending grid d = end - k * d' (numpy.arange(end, start, -gap)), tp = #{out < d},
//            fp = #{in < d}, stopping at the first point with tp + fp = 0; the same sums with R = tp / n_out.
//
// All scores must be finite and both sets non-empty. When every score is equal (gap 0, where numpy's
// arange would fail) the grid is the single point start; note that the >= / > asymmetry then gives AUROC 1
// for identical sets (tested). Counting uses sorted copies and binary search, so
// a 200,000-point grid over 20,000 scores costs milliseconds.
#pragma once

#include <cstddef>
#include <span>

namespace sdeuq::metrics {

struct GridOodMetrics {
    double tnr_at_95_tpr = 0;
    double auroc = 0;
    double detection_accuracy = 0;
    double aupr_in = 0;
    double aupr_out = 0;
    std::size_t thresholds = 0;  // grid points K
    double resolution = 0;       // gap (end - start) / steps
};

GridOodMetrics grid_ood_metrics(std::span<const double> in_scores, std::span<const double> out_scores,
                                std::size_t steps = 200000, double tpr_lo = 0.94, double tpr_hi = 0.96);

}  // namespace sdeuq::metrics
