// Implementation notes: every metric validates its input first (throwing std::invalid_argument with the
// metric's name and the sizes involved), then accumulates in double. The ranking metrics sort once and walk
// groups of tied scores, so ties are handled exactly like scikit-learn, which puts a threshold at each
// distinct score value only.
#include "nn/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace sdeuq::metrics {
namespace {

[[noreturn]] void fail(std::string_view metric, const std::string& what) {
    throw std::invalid_argument(fmt::format("metrics::{}: {}", metric, what));
}

// Shape check for an [n x C] row-major matrix; returns n.
template <typename T>
std::size_t check_matrix(std::string_view metric, std::span<const T> probs, std::size_t num_classes) {
    if (num_classes == 0) {
        fail(metric, fmt::format("num_classes must be > 0 (probs has {} elements)", probs.size()));
    }
    if (probs.empty()) {
        fail(metric, fmt::format("empty input (probs has 0 elements, num_classes = {})", num_classes));
    }
    if (probs.size() % num_classes != 0) {
        fail(metric, fmt::format("probs has {} elements, not a multiple of num_classes = {}", probs.size(),
                                 num_classes));
    }
    for (std::size_t k = 0; k < probs.size(); ++k) {
        const double p = static_cast<double>(probs[k]);
        // !(p >= 0 && p <= 1) also catches NaN.
        if (!(p >= 0.0 && p <= 1.0)) {
            fail(metric, fmt::format("probs[{}] (row {}, class {}) = {} is not a finite value in [0, 1] "
                                     "(probs has {} elements = {} rows x {} classes)",
                                     k, k / num_classes, k % num_classes, p, probs.size(),
                                     probs.size() / num_classes, num_classes));
        }
    }
    return probs.size() / num_classes;
}

template <typename T>
std::size_t check_probs_labels(std::string_view metric, std::span<const T> probs,
                               std::span<const std::int32_t> labels, std::size_t num_classes) {
    if (labels.empty()) {
        fail(metric, fmt::format("empty input (labels has 0 elements, probs has {})", probs.size()));
    }
    if (num_classes != 0 &&
        (probs.size() % num_classes != 0 || probs.size() / num_classes != labels.size())) {
        fail(metric, fmt::format("size mismatch: probs has {} elements but labels.size() * num_classes = "
                                 "{} * {} = {}",
                                 probs.size(), labels.size(), num_classes, labels.size() * num_classes));
    }
    const std::size_t n = check_matrix(metric, probs, num_classes);
    for (std::size_t i = 0; i < n; ++i) {
        if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= num_classes) {
            fail(metric, fmt::format("labels[{}] = {} is out of range [0, {}) (n = {})", i, labels[i],
                                     num_classes, n));
        }
    }
    return n;
}

template <typename T>
std::size_t row_argmax(std::span<const T> row) {
    // Strict '>' keeps the first maximum, matching numpy.argmax.
    std::size_t best = 0;
    for (std::size_t c = 1; c < row.size(); ++c) {
        if (row[c] > row[best]) best = c;
    }
    return best;
}

template <typename T>
double accuracy_impl(std::span<const T> probs, std::span<const std::int32_t> labels,
                     std::size_t num_classes) {
    const std::size_t n = check_probs_labels("accuracy", probs, labels, num_classes);
    std::size_t correct = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto pred = row_argmax(probs.subspan(i * num_classes, num_classes));
        if (pred == static_cast<std::size_t>(labels[i])) ++correct;
    }
    return static_cast<double>(correct) / static_cast<double>(n);
}

template <typename T>
double nll_impl(std::span<const T> probs, std::span<const std::int32_t> labels, std::size_t num_classes) {
    const std::size_t n = check_probs_labels("nll", probs, labels, num_classes);
    double sum = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const double p = static_cast<double>(probs[i * num_classes + static_cast<std::size_t>(labels[i])]);
        sum -= std::log(std::max(p, nll_probability_floor));
    }
    return sum / static_cast<double>(n);
}

template <typename T>
double brier_impl(std::span<const T> probs, std::span<const std::int32_t> labels, std::size_t num_classes) {
    const std::size_t n = check_probs_labels("brier", probs, labels, num_classes);
    double sum = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t c = 0; c < num_classes; ++c) {
            const double target = (c == static_cast<std::size_t>(labels[i])) ? 1.0 : 0.0;
            const double d = static_cast<double>(probs[i * num_classes + c]) - target;
            sum += d * d;
        }
    }
    return sum / static_cast<double>(n);
}

// Bin edges exactly as numpy.linspace(0, 1, m + 1) computes them: arange(m + 1) * (1 / m) + 0, with the
// last edge overwritten by the stop value. Matching this bit-for-bit matters only for confidences that
// sit on an edge, but those are common (0.5, 0.7, ...).
std::vector<double> ece_edges(std::size_t m) {
    std::vector<double> edges(m + 1);
    const double step = 1.0 / static_cast<double>(m);
    for (std::size_t k = 0; k <= m; ++k) edges[k] = static_cast<double>(k) * step + 0.0;
    edges[m] = 1.0;
    return edges;
}

// Index b with edges[b] < c <= edges[b + 1]; c == 0 goes to bin 0 (documented in the header).
std::size_t ece_bin(double c, const std::vector<double>& edges) {
    const std::size_t m = edges.size() - 1;
    double guess = std::ceil(c * static_cast<double>(m)) - 1.0;
    std::size_t b = guess <= 0.0 ? 0 : std::min(static_cast<std::size_t>(guess), m - 1);
    // The guess can be off by one where c * m rounds across an integer; fix it against the real edges.
    while (b > 0 && c <= edges[b]) --b;
    while (b + 1 < m && c > edges[b + 1]) ++b;
    return b;
}

template <typename T>
double ece_impl(std::span<const T> probs, std::span<const std::int32_t> labels, std::size_t num_classes,
                std::size_t num_bins) {
    if (num_bins == 0) fail("ece", fmt::format("num_bins must be > 0 (n = {})", labels.size()));
    const std::size_t n = check_probs_labels("ece", probs, labels, num_classes);
    const auto edges = ece_edges(num_bins);
    std::vector<std::size_t> count(num_bins, 0);
    std::vector<double> conf_sum(num_bins, 0.0);
    std::vector<double> correct_sum(num_bins, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        const auto row = probs.subspan(i * num_classes, num_classes);
        const std::size_t pred = row_argmax(row);
        const double conf = static_cast<double>(row[pred]);
        const std::size_t b = ece_bin(conf, edges);
        ++count[b];
        conf_sum[b] += conf;
        if (pred == static_cast<std::size_t>(labels[i])) correct_sum[b] += 1.0;
    }
    double ece_value = 0.0;
    for (std::size_t b = 0; b < num_bins; ++b) {
        if (count[b] == 0) continue;
        const double nb = static_cast<double>(count[b]);
        ece_value += (nb / static_cast<double>(n)) * std::abs(correct_sum[b] / nb - conf_sum[b] / nb);
    }
    return ece_value;
}

template <typename T>
std::vector<double> max_prob_impl(std::span<const T> probs, std::size_t num_classes) {
    const std::size_t n = check_matrix("max_prob", probs, num_classes);
    std::vector<double> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto row = probs.subspan(i * num_classes, num_classes);
        out[i] = static_cast<double>(row[row_argmax(row)]);
    }
    return out;
}

template <typename T>
std::vector<double> entropy_impl(std::span<const T> probs, std::size_t num_classes) {
    const std::size_t n = check_matrix("predictive_entropy", probs, num_classes);
    std::vector<double> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        double h = 0.0;
        for (std::size_t c = 0; c < num_classes; ++c) {
            const double p = static_cast<double>(probs[i * num_classes + c]);
            if (p > 0.0) h -= p * std::log(p); // lim_{p->0} p log p = 0
        }
        out[i] = h;
    }
    return out;
}

template <typename T>
std::vector<std::int32_t> argmax_impl(std::span<const T> probs, std::size_t num_classes) {
    const std::size_t n = check_matrix("argmax", probs, num_classes);
    std::vector<std::int32_t> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = static_cast<std::int32_t>(row_argmax(probs.subspan(i * num_classes, num_classes)));
    }
    return out;
}

// ---- ranking helpers ----

void check_scores(std::string_view metric, std::string_view what, std::span<const double> scores) {
    for (std::size_t i = 0; i < scores.size(); ++i) {
        if (!std::isfinite(scores[i])) {
            fail(metric, fmt::format("{}[{}] = {} is not finite ({} has {} elements)", what, i, scores[i],
                                     what, scores.size()));
        }
    }
}

// Validates a binary problem and returns (num_positive, num_negative).
std::pair<std::size_t, std::size_t> check_binary(std::string_view metric, std::span<const double> scores,
                                                 std::span<const std::int32_t> labels) {
    if (scores.size() != labels.size()) {
        fail(metric, fmt::format("size mismatch: scores has {} elements, labels has {}", scores.size(),
                                 labels.size()));
    }
    if (scores.empty()) fail(metric, "empty input (scores and labels have 0 elements)");
    check_scores(metric, "scores", scores);
    std::size_t pos = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (labels[i] != 0 && labels[i] != 1) {
            fail(metric, fmt::format("labels[{}] = {} is not 0 or 1 (n = {})", i, labels[i], labels.size()));
        }
        pos += static_cast<std::size_t>(labels[i]);
    }
    const std::size_t neg = labels.size() - pos;
    if (pos == 0 || neg == 0) {
        fail(metric, fmt::format("needs both classes: {} positives and {} negatives among {} samples", pos,
                                 neg, labels.size()));
    }
    return {pos, neg};
}

// One group of tied scores, in decreasing score order.
struct TieGroup {
    double score;
    std::size_t pos;
    std::size_t neg;
};

std::vector<TieGroup> tie_groups_descending(std::span<const double> scores,
                                            std::span<const std::int32_t> labels) {
    std::vector<std::size_t> order(scores.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
    std::vector<TieGroup> groups;
    for (std::size_t k = 0; k < order.size();) {
        TieGroup g{scores[order[k]], 0, 0};
        // Scores are finite, so == is a proper equivalence here (no NaN); -0.0 == 0.0 ties like numpy.
        while (k < order.size() && scores[order[k]] == g.score) {
            (labels[order[k]] == 1 ? g.pos : g.neg) += 1;
            ++k;
        }
        groups.push_back(g);
    }
    return groups;
}

double auroc_from_groups(const std::vector<TieGroup>& groups, std::size_t pos, std::size_t neg) {
    // Mann-Whitney: U = #{(p, q): s_p > s_q} + 1/2 #{(p, q): s_p == s_q} over positive p, negative q,
    // AUROC = U / (P N). Walking groups from the lowest score up, every positive in a group beats the
    // negatives below it and ties with those in its group. Doubling keeps everything in exact integers.
    std::uint64_t twice_u = 0;
    std::uint64_t neg_below = 0;
    for (auto it = groups.rbegin(); it != groups.rend(); ++it) {
        twice_u += static_cast<std::uint64_t>(it->pos) * (2 * neg_below + it->neg);
        neg_below += it->neg;
    }
    return static_cast<double>(twice_u) / (2.0 * static_cast<double>(pos) * static_cast<double>(neg));
}

double ap_from_groups(const std::vector<TieGroup>& groups, std::size_t pos) {
    // AP = sum_k (R_k - R_{k-1}) P_k with one threshold per distinct score (sklearn's definition).
    std::size_t tp = 0;
    std::size_t fp = 0;
    double prev_recall = 0.0;
    double ap = 0.0;
    for (const auto& g : groups) {
        tp += g.pos;
        fp += g.neg;
        const double recall = static_cast<double>(tp) / static_cast<double>(pos);
        const double precision = static_cast<double>(tp) / static_cast<double>(tp + fp);
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    return ap;
}

RocCurve roc_from_groups(const std::vector<TieGroup>& groups, std::size_t pos, std::size_t neg) {
    RocCurve roc;
    roc.fpr.reserve(groups.size() + 1);
    roc.tpr.reserve(groups.size() + 1);
    roc.thresholds.reserve(groups.size() + 1);
    roc.fpr.push_back(0.0);
    roc.tpr.push_back(0.0);
    roc.thresholds.push_back(std::numeric_limits<double>::infinity());
    std::size_t tp = 0;
    std::size_t fp = 0;
    for (const auto& g : groups) {
        tp += g.pos;
        fp += g.neg;
        roc.fpr.push_back(static_cast<double>(fp) / static_cast<double>(neg));
        roc.tpr.push_back(static_cast<double>(tp) / static_cast<double>(pos));
        roc.thresholds.push_back(g.score);
    }
    return roc;
}

} // namespace

double accuracy(std::span<const float> p, std::span<const std::int32_t> y, std::size_t c) {
    return accuracy_impl(p, y, c);
}
double accuracy(std::span<const double> p, std::span<const std::int32_t> y, std::size_t c) {
    return accuracy_impl(p, y, c);
}
double nll(std::span<const float> p, std::span<const std::int32_t> y, std::size_t c) {
    return nll_impl(p, y, c);
}
double nll(std::span<const double> p, std::span<const std::int32_t> y, std::size_t c) {
    return nll_impl(p, y, c);
}
double brier(std::span<const float> p, std::span<const std::int32_t> y, std::size_t c) {
    return brier_impl(p, y, c);
}
double brier(std::span<const double> p, std::span<const std::int32_t> y, std::size_t c) {
    return brier_impl(p, y, c);
}
double ece(std::span<const float> p, std::span<const std::int32_t> y, std::size_t c, std::size_t bins) {
    return ece_impl(p, y, c, bins);
}
double ece(std::span<const double> p, std::span<const std::int32_t> y, std::size_t c, std::size_t bins) {
    return ece_impl(p, y, c, bins);
}
std::vector<double> max_prob(std::span<const float> p, std::size_t c) { return max_prob_impl(p, c); }
std::vector<double> max_prob(std::span<const double> p, std::size_t c) { return max_prob_impl(p, c); }
std::vector<double> predictive_entropy(std::span<const float> p, std::size_t c) { return entropy_impl(p, c); }
std::vector<double> predictive_entropy(std::span<const double> p, std::size_t c) {
    return entropy_impl(p, c);
}
std::vector<std::int32_t> argmax(std::span<const float> p, std::size_t c) { return argmax_impl(p, c); }
std::vector<std::int32_t> argmax(std::span<const double> p, std::size_t c) { return argmax_impl(p, c); }

double roc_auc(std::span<const double> scores, std::span<const std::int32_t> labels) {
    const auto [pos, neg] = check_binary("roc_auc", scores, labels);
    return auroc_from_groups(tie_groups_descending(scores, labels), pos, neg);
}

double average_precision(std::span<const double> scores, std::span<const std::int32_t> labels) {
    const auto [pos, neg] = check_binary("average_precision", scores, labels);
    (void)neg;
    return ap_from_groups(tie_groups_descending(scores, labels), pos);
}

RocCurve roc_curve(std::span<const double> scores, std::span<const std::int32_t> labels) {
    const auto [pos, neg] = check_binary("roc_curve", scores, labels);
    return roc_from_groups(tie_groups_descending(scores, labels), pos, neg);
}

OodMetrics ood_metrics(std::span<const double> in_dist_scores, std::span<const double> ood_scores) {
    if (in_dist_scores.empty() || ood_scores.empty()) {
        fail("ood_metrics", fmt::format("empty input: {} in-distribution scores, {} OOD scores",
                                        in_dist_scores.size(), ood_scores.size()));
    }
    check_scores("ood_metrics", "in_dist_scores", in_dist_scores);
    check_scores("ood_metrics", "ood_scores", ood_scores);

    const std::size_t n_in = in_dist_scores.size();
    const std::size_t n_ood = ood_scores.size();
    std::vector<double> scores(in_dist_scores.begin(), in_dist_scores.end());
    scores.insert(scores.end(), ood_scores.begin(), ood_scores.end());
    std::vector<std::int32_t> in_positive(n_in + n_ood, 0);
    std::fill_n(in_positive.begin(), n_in, 1);

    OodMetrics m;
    const auto groups = tie_groups_descending(scores, in_positive);
    m.auroc = auroc_from_groups(groups, n_in, n_ood);
    m.aupr_in = ap_from_groups(groups, n_in);

    // AUPR-out: OOD is the positive class and the detector score is -score (higher = more OOD).
    std::vector<double> negated(scores.size());
    std::transform(scores.begin(), scores.end(), negated.begin(), [](double s) { return -s; });
    std::vector<std::int32_t> ood_positive(in_positive.size());
    std::transform(in_positive.begin(), in_positive.end(), ood_positive.begin(),
                   [](std::int32_t y) { return 1 - y; });
    m.aupr_out = ap_from_groups(tie_groups_descending(negated, ood_positive), n_ood);

    const RocCurve roc = roc_from_groups(groups, n_in, n_ood);
    // The last point has TPR = 1, so the minimum always exists.
    m.fpr_at_95_tpr = 1.0;
    m.detection_error = 0.5;
    for (std::size_t k = 0; k < roc.fpr.size(); ++k) {
        if (roc.tpr[k] >= 0.95) m.fpr_at_95_tpr = std::min(m.fpr_at_95_tpr, roc.fpr[k]);
        // (FNR + FPR) / 2 with FNR = 1 - TPR, minimised over thresholds (Liang et al. 2018, ODIN).
        m.detection_error = std::min(m.detection_error, 0.5 * (1.0 - roc.tpr[k]) + 0.5 * roc.fpr[k]);
    }
    m.tnr_at_95_tpr = 1.0 - m.fpr_at_95_tpr;
    m.detection_accuracy = 1.0 - m.detection_error;
    return m;
}

double mean(std::span<const double> values) {
    if (values.empty()) fail("mean", "empty input (0 values)");
    check_scores("mean", "values", values);
    double sum = 0.0;
    for (double v : values) sum += v;
    return sum / static_cast<double>(values.size());
}

double stddev(std::span<const double> values, std::size_t ddof) {
    if (values.size() <= ddof) {
        fail("stddev", fmt::format("needs more than ddof = {} values, got {}", ddof, values.size()));
    }
    const double mu = mean(values);
    double ss = 0.0;
    for (double v : values) ss += (v - mu) * (v - mu);
    return std::sqrt(ss / static_cast<double>(values.size() - ddof));
}

MeanStd mean_std(std::span<const double> values, std::size_t ddof) {
    return MeanStd{mean(values), stddev(values, ddof)};
}

} // namespace sdeuq::metrics
