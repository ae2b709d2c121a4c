#include "nn/metrics_confidence.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>
#include <vector>

namespace sdeuq::metrics {

namespace {

void check(std::span<const double> s, const char* what) {
    if (s.empty()) throw std::invalid_argument(fmt::format("confidence_ood_metrics: no {} scores", what));
    for (std::size_t i = 0; i < s.size(); ++i)
        if (!std::isfinite(s[i]))
            throw std::invalid_argument(
                fmt::format("confidence_ood_metrics: {} score {} is {}", what, i, s[i]));
}

// Counts of sorted values >= d, > d, < d.
double frac_ge(const std::vector<double>& v, double d) {
    return double(v.end() - std::lower_bound(v.begin(), v.end(), d)) / double(v.size());
}
double frac_gt(const std::vector<double>& v, double d) {
    return double(v.end() - std::upper_bound(v.begin(), v.end(), d)) / double(v.size());
}
double frac_lt(const std::vector<double>& v, double d) {
    return double(std::lower_bound(v.begin(), v.end(), d) - v.begin()) / double(v.size());
}

}  // namespace

double average_precision(std::span<const double> pos, std::span<const double> neg) {
    std::vector<std::pair<double, int>> all;
    all.reserve(pos.size() + neg.size());
    for (double s : pos) all.emplace_back(s, 1);
    for (double s : neg) all.emplace_back(s, 0);
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    double tp = 0, fp = 0, prev_recall = 0, ap = 0;
    const double p = double(pos.size());
    for (std::size_t i = 0; i < all.size();) {
        std::size_t j = i;
        for (; j < all.size() && all[j].first == all[i].first; ++j) (all[j].second ? tp : fp) += 1;
        const double recall = tp / p;
        ap += (recall - prev_recall) * tp / (tp + fp);
        prev_recall = recall;
        i = j;
    }
    return ap;
}

ConfidenceOodMetrics confidence_ood_metrics(std::span<const double> in_scores,
                                            std::span<const double> out_scores,
                                            const ConfidenceOodOptions& opt) {
    check(in_scores, "in-distribution");
    check(out_scores, "out-of-distribution");
    if (opt.grid < 1)
        throw std::invalid_argument(fmt::format("confidence_ood_metrics: grid {} < 1", opt.grid));
    std::vector<double> in(in_scores.begin(), in_scores.end()), out(out_scores.begin(), out_scores.end());
    std::sort(in.begin(), in.end());
    std::sort(out.begin(), out.end());
    ConfidenceOodMetrics m;
    const double lo = std::min(in.front(), out.front()), hi = std::max(in.back(), out.back());
    const double gap = (hi - lo) / double(opt.grid);
    // numpy.arange(lo, hi, gap): ceil((hi - lo) / gap) points lo + i gap (none when all scores are equal).
    const long points = gap > 0 ? static_cast<long>(std::ceil((hi - lo) / gap)) : 0;
    double fpr_sum = 0;
    long fpr_n = 0;
    m.detection_error = 1.0;
    for (long i = 0; i < points; ++i) {
        const double d = lo + double(i) * gap;
        const double tpr = frac_ge(in, d), fpr = frac_gt(out, d);
        if (tpr <= opt.tpr_hi && tpr >= opt.tpr_lo) {
            fpr_sum += fpr;
            ++fpr_n;
        }
        m.detection_error = std::min(m.detection_error, (frac_lt(in, d) + fpr) / 2.0);
    }
    m.fpr_at_95_tpr = fpr_n == 0 ? 1.0 : fpr_sum / double(fpr_n);
    // AUROC as the Mann-Whitney statistic: P(s_in > s_out) + 1/2 P(s_in = s_out).
    double wins = 0;
    for (double s : in) {
        const auto lo_it = std::lower_bound(out.begin(), out.end(), s);
        const auto hi_it = std::upper_bound(out.begin(), out.end(), s);
        wins += double(lo_it - out.begin()) + 0.5 * double(hi_it - lo_it);
    }
    m.auroc = wins / (double(in.size()) * double(out.size()));
    m.aupr_in = average_precision(in, out);
    std::vector<double> nin(in.size()), nout(out.size());
    std::transform(in.begin(), in.end(), nin.begin(), [](double v) { return -v; });
    std::transform(out.begin(), out.end(), nout.begin(), [](double v) { return -v; });
    m.aupr_out = average_precision(nout, nin);
    return m;
}

}  // namespace sdeuq::metrics
