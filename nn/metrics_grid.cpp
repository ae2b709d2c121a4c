#include "nn/metrics_grid.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace sdeuq::metrics {

namespace {

std::vector<double> sorted_finite(std::span<const double> v, const char* which) {
    if (v.empty())
        throw std::invalid_argument(fmt::format("grid_ood_metrics: the {} scores are empty", which));
    std::vector<double> s(v.begin(), v.end());
    for (std::size_t i = 0; i < s.size(); ++i)
        if (!std::isfinite(s[i]))
            throw std::invalid_argument(
                fmt::format("grid_ood_metrics: {} score {} is not finite ({})", which, i, s[i]));
    std::sort(s.begin(), s.end());
    return s;
}

// #{x < d} and #{x <= d} in a sorted vector.
double count_less(const std::vector<double>& s, double d) {
    return double(std::lower_bound(s.begin(), s.end(), d) - s.begin());
}
double count_less_equal(const std::vector<double>& s, double d) {
    return double(std::upper_bound(s.begin(), s.end(), d) - s.begin());
}

}  // namespace

GridOodMetrics grid_ood_metrics(std::span<const double> in_scores, std::span<const double> out_scores,
                                std::size_t steps, double tpr_lo, double tpr_hi) {
    if (steps == 0) throw std::invalid_argument("grid_ood_metrics: steps must be >= 1");
    if (!(tpr_lo <= tpr_hi))
        throw std::invalid_argument(fmt::format("grid_ood_metrics: tpr_lo {} > tpr_hi {}", tpr_lo, tpr_hi));
    const std::vector<double> x = sorted_finite(in_scores, "in-distribution");
    const std::vector<double> y = sorted_finite(out_scores, "out-of-distribution");
    const double nx = double(x.size()), ny = double(y.size());
    const double start = std::min(x.front(), y.front()), end = std::max(x.back(), y.back());
    const double gap = (end - start) / double(steps);

    // numpy.arange(a, b, s): length ceil((b - a) / s), element i = a + i * ((a + s) - a).
    auto grid = [](double a, double b, double s, std::vector<double>& out) {
        out.clear();
        if (s == 0.0) {
            out.push_back(a);
            return;
        }
        const auto len = static_cast<std::size_t>(std::max(0.0, std::ceil((b - a) / s)));
        const double d = (a + s) - a;
        out.reserve(len);
        for (std::size_t i = 0; i < len; ++i) out.push_back(a + double(i) * d);
    };
    std::vector<double> up, down;
    grid(start, end, gap, up);
    grid(end, start, -gap, down);

    GridOodMetrics m;
    m.thresholds = up.size();
    m.resolution = gap;
    double fpr_sum = 0, fpr_count = 0, auroc = 0, fpr_prev = 1.0, err = 1.0;
    double aupr_in = 0, recall_prev = 1.0, recall = 0, precision = 0;
    for (double d : up) {
        const double tpr = (nx - count_less(x, d)) / nx;        // #{in >= d}
        const double fpr = (ny - count_less_equal(y, d)) / ny;  // #{out > d}
        if (tpr <= tpr_hi && tpr >= tpr_lo) {
            fpr_sum += fpr;
            fpr_count += 1;
        }
        auroc += (fpr_prev - fpr) * tpr;
        fpr_prev = fpr;
        err = std::min(err, (count_less(x, d) / nx + fpr) / 2.0);
        const double tp = nx - count_less(x, d), fp = ny - count_less(y, d);  // >= for both
        if (tp + fp == 0) continue;
        precision = tp / (tp + fp);
        recall = tp / nx;
        aupr_in += (recall_prev - recall) * precision;
        recall_prev = recall;
    }
    aupr_in += recall * precision;
    m.tnr_at_95_tpr = 1.0 - (fpr_count == 0 ? 1.0 : fpr_sum / fpr_count);
    m.auroc = auroc;
    m.detection_accuracy = 1.0 - err;
    m.aupr_in = aupr_in;

    double aupr_out = 0;
    recall_prev = 1.0;
    recall = 0;
    precision = 0;
    for (double d : down) {
        const double fp = count_less(x, d), tp = count_less(y, d);
        if (tp + fp == 0) break;
        precision = tp / (tp + fp);
        recall = tp / ny;
        aupr_out += (recall_prev - recall) * precision;
        recall_prev = recall;
    }
    m.aupr_out = aupr_out + recall * precision;
    return m;
}

}  // namespace sdeuq::metrics
