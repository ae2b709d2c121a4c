// The OOD-detection metrics of the learned-confidence reference (uoguelph-mlrg/confidence_estimation,
// out_of_distribution_detection.py), in-distribution = positive, higher score = more in-distribution:
//  * fpr_at_95_tpr: on the grid delta_i = lo + i (hi - lo) / grid, i = 0..grid-1 (numpy.arange(lo, hi, gap),
//    lo/hi the min/max of all scores), the mean of FPR = P_out(s > delta) over the grid points whose
//    TPR = P_in(s >= delta) lies in [tpr_lo, tpr_hi] = [0.9495, 0.9505]; 1 when none does (the reference's
//    "corner case").
//  * detection_error: min over the same grid of 1/2 [P_in(s < delta) + P_out(s > delta)], starting from 1.
//  * auroc: sklearn.metrics.roc_auc_score (ties count 1/2).
//  * aupr_in: sklearn average_precision_score(labels, s); aupr_out: the same with out = positive and -s.
// The grid metrics depend on the grid as the reference's do (100,000 steps there).
#pragma once

#include <span>

namespace sdeuq::metrics {

struct ConfidenceOodOptions {
    long grid = 100000;
    double tpr_lo = 0.9495;
    double tpr_hi = 0.9505;
};

struct ConfidenceOodMetrics {
    double fpr_at_95_tpr = 0;
    double detection_error = 0;
    double auroc = 0;
    double aupr_in = 0;
    double aupr_out = 0;
};

// Throws std::invalid_argument when a set is empty or a score is not finite.
ConfidenceOodMetrics confidence_ood_metrics(std::span<const double> in_scores,
                                            std::span<const double> out_scores,
                                            const ConfidenceOodOptions& opt = {});

// sklearn.metrics.average_precision_score for binary labels (1 = positive): sum over distinct thresholds,
// in decreasing order, of (R_k - R_{k-1}) P_k.
double average_precision(std::span<const double> pos_scores, std::span<const double> neg_scores);

}  // namespace sdeuq::metrics
