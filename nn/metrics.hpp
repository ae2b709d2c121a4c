// Evaluation metrics shared by every experiment: classification quality (accuracy, NLL, Brier),
// calibration (ECE) and out-of-distribution detection (AUROC, AUPR, FPR@95%TPR, detection error).
//
// Deliberately independent of the autodiff engine: everything takes plain spans so the same code scores
// a network's softmax output, an MC-averaged ensemble or a hand-written test vector.
//
// Conventions (all checked against scikit-learn 1.2.1 / numpy in tests/test_metrics.cpp):
//  * Probabilities are an [n x C] row-major matrix `probs` with `probs.size() == n * C`, labels are class
//    indices in [0, C). Rows are NOT required to sum to exactly 1 (float softmax rarely does, and MC
//    averages add more rounding); every entry must be finite and in [0, 1].
//  * The predicted class is the first index of the row maximum (numpy.argmax tie rule).
//  * All accumulation is in double, whatever the input precision.
//  * Bad input (size mismatch, empty input, label out of range, non-finite value) throws
//    std::invalid_argument whose message names the metric and the offending sizes/values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sdeuq::metrics {

// ---- classification ------------------------------------------------------------------------------------

// Fraction of rows whose argmax equals the label (sklearn.metrics.accuracy_score on argmax predictions).
double accuracy(std::span<const float> probs, std::span<const std::int32_t> labels, std::size_t num_classes);
double accuracy(std::span<const double> probs, std::span<const std::int32_t> labels, std::size_t num_classes);

// Probability floor used by nll(): p[label] is clamped to at least this before taking the log, so a
// confidently wrong prediction costs at most -log(1e-12) ~= 27.63 nats instead of +inf. (sklearn's
// log_loss clips at machine epsilon and also renormalises rows; for well-formed rows with p >= 1e-12 the
// two agree.)
inline constexpr double nll_probability_floor = 1e-12;

// Mean negative log-likelihood in nats: (1/n) sum_i -log(max(p[i, y_i], 1e-12)).
double nll(std::span<const float> probs, std::span<const std::int32_t> labels, std::size_t num_classes);
double nll(std::span<const double> probs, std::span<const std::int32_t> labels, std::size_t num_classes);

// Multi-class Brier score, the original definition of Brier (1950) as used by uncertainty-baselines:
// (1/n) sum_i sum_c (p[i, c] - [c == y_i])^2, range [0, 2]. NOTE: this is NOT
// sklearn.metrics.brier_score_loss (binary, positive-class only); for C = 2 ours is exactly twice that.
double brier(std::span<const float> probs, std::span<const std::int32_t> labels, std::size_t num_classes);
double brier(std::span<const double> probs, std::span<const std::int32_t> labels, std::size_t num_classes);

// Expected calibration error (Naeini et al. 2015; Guo et al. 2017, eq. 3) on the max-probability
// confidence with `num_bins` equal-width bins:
//     ECE = sum_b (|B_b| / n) * |acc(B_b) - conf(B_b)|.
// Bin b is the half-open interval (e_b, e_{b+1}] with edges e = numpy.linspace(0, 1, num_bins + 1)
// reproduced bit-for-bit (e_k = k * (1/num_bins), last edge exactly 1), so a confidence that lies on an
// edge lands in the same bin as in Guo et al.'s and uncertainty-baselines' code. A confidence of exactly
// 0 (only possible for an all-zero row) is put in the first bin. Experiments report 15 and 10 bins.
double ece(std::span<const float> probs, std::span<const std::int32_t> labels, std::size_t num_classes,
           std::size_t num_bins = 15);
double ece(std::span<const double> probs, std::span<const std::int32_t> labels, std::size_t num_classes,
           std::size_t num_bins = 15);

// Per-row max probability (the "confidence" used by ECE and as the default OOD score).
std::vector<double> max_prob(std::span<const float> probs, std::size_t num_classes);
std::vector<double> max_prob(std::span<const double> probs, std::size_t num_classes);

// Per-row predictive entropy in nats, H(p) = -sum_c p_c log p_c with 0 log 0 := 0 (the limit).
std::vector<double> predictive_entropy(std::span<const float> probs, std::size_t num_classes);
std::vector<double> predictive_entropy(std::span<const double> probs, std::size_t num_classes);

// Per-row argmax (first index of the maximum, as numpy.argmax).
std::vector<std::int32_t> argmax(std::span<const float> probs, std::size_t num_classes);
std::vector<std::int32_t> argmax(std::span<const double> probs, std::size_t num_classes);

// ---- ranking / OOD detection ---------------------------------------------------------------------------

// Binary AUROC of `scores` (higher = more positive) against 0/1 `labels` (1 = positive). Computed as the
// normalised Mann-Whitney U statistic with tied scores counted 1/2, which equals the trapezoidal area under
// the ROC curve, i.e. sklearn.metrics.roc_auc_score. Needs at least one positive and one negative.
double roc_auc(std::span<const double> scores, std::span<const std::int32_t> labels);

// Average precision AP = sum_k (R_k - R_{k-1}) P_k over thresholds at the distinct score values in
// decreasing order (R_0 = 0), i.e. the step-wise, non-interpolated area of sklearn.metrics.
// average_precision_score. Samples with tied scores enter at the same threshold, as in sklearn.
double average_precision(std::span<const double> scores, std::span<const std::int32_t> labels);

// OOD detection summary. Scores follow "higher = more in-distribution" (e.g. max-prob confidence, or
// minus the entropy / minus a GP variance).
struct OodMetrics {
    double auroc = 0;              // in-distribution as positive (symmetric: same value with OOD positive)
    double aupr_in = 0;            // average precision, in-distribution positive, score as given
    double aupr_out = 0;           // average precision, OOD positive, score negated
    double fpr_at_95_tpr = 0;      // smallest FPR over thresholds whose TPR >= 0.95 (in-dist positive)
    double tnr_at_95_tpr = 0;      // 1 - fpr_at_95_tpr
    double detection_error = 0;    // min over thresholds of (FNR + FPR) / 2 = min (1 - TPR + FPR) / 2
    double detection_accuracy = 0; // 1 - detection_error
};

// Thresholds range over every distinct score plus "+inf" (everything classified OOD: TPR = FPR = 0), the
// same set as sklearn.metrics.roc_curve(..., drop_intermediate=False). Predict "in-distribution" when
// score >= threshold. Both inputs must be non-empty and finite.
OodMetrics ood_metrics(std::span<const double> in_dist_scores, std::span<const double> ood_scores);

// ROC curve points (fpr[k], tpr[k]) for thresholds[k] in decreasing order, starting at (0, 0) with
// threshold +inf, one point per distinct score (sklearn.metrics.roc_curve with drop_intermediate=False,
// except that sklearn 1.2 reports the first threshold as max+1 rather than +inf).
struct RocCurve {
    std::vector<double> fpr;
    std::vector<double> tpr;
    std::vector<double> thresholds;
};
RocCurve roc_curve(std::span<const double> scores, std::span<const std::int32_t> labels);

// ---- summary statistics ----------------------------------------------------------------------------------

// Arithmetic mean; throws std::invalid_argument on empty or non-finite input.
double mean(std::span<const double> values);

// Standard deviation sqrt(sum (x - mean)^2 / (n - ddof)), numpy.std semantics: ddof = 0 is the population
// value (numpy default), ddof = 1 the unbiased-variance sample value (use it for "mean +- std over seeds").
// Needs n > ddof.
double stddev(std::span<const double> values, std::size_t ddof = 0);

struct MeanStd {
    double mean = 0;
    double std = 0;
};
MeanStd mean_std(std::span<const double> values, std::size_t ddof = 0);

} // namespace sdeuq::metrics
