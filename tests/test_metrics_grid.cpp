// The reference's threshold-grid OOD metrics (nn/metrics_grid.hpp): hand-computed small cases, and
// agreement with the exact rank / average-precision versions of nn/metrics.hpp on the same scores within
// what the grid's resolution (and, for AUPR and TNR, the documented definitional differences) allows.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "nn/data.hpp"
#include "nn/metrics.hpp"
#include "nn/metrics_grid.hpp"

namespace m = sdeuq::metrics;

TEST_CASE("grid OOD metrics on a hand-computed case", "[metrics][grid]") {
    // in {1, 3}, out {0, 2}, 3 steps: grid {0, 1, 2} (gap 1).
    //   d:                 0     1     2
    //   TPR #{in >= d}/2:  1     1     0.5
    //   FPR #{out > d}/2:  0.5   0.5   0
    //   FNR #{in < d}/2:   0     0     0.5
    // AUROC = (1 - .5) 1 + (.5 - .5) 1 + (.5 - 0) .5 = 0.75 (= the exact Mann-Whitney value here).
    // det err = min (FNR + FPR) / 2 = 0.25.
    // AUPR in: d=0 tp 2 fp 2 P .5 R 1; d=1 tp 2 fp 1 P 2/3 R 1; d=2 tp 1 fp 1 P .5 R .5 -> (1 - .5) .5 + .5
    // .5 = .5 AUPR out: d = 3, 2, 1: tp #{out < d} 2, 1, 1; fp #{in < d} 1, 1, 0 -> P 2/3, .5, 1; R 1, .5, .5
    //   -> 0 + (1 - .5) .5 + 0 + .5 * 1 = .75.
    const std::vector<double> in = {1, 3}, out = {0, 2};
    auto g = m::grid_ood_metrics(in, out, 3, 0.9, 1.0);
    CHECK(g.thresholds == 3);
    CHECK(g.resolution == 1.0);
    CHECK(g.tnr_at_95_tpr == 0.5);  // TPR in [0.9, 1] at d = 0, 1: mean FPR 0.5
    CHECK(g.auroc == 0.75);
    CHECK(g.detection_accuracy == 0.75);
    CHECK(g.aupr_in == Approx(0.5).epsilon(1e-15));
    CHECK(g.aupr_out == Approx(0.75).epsilon(1e-15));
    // The default window [0.94, 0.96] contains no grid point here: the reference's corner case, FPR 1.
    CHECK(m::grid_ood_metrics(in, out, 3).tnr_at_95_tpr == 0.0);
}

TEST_CASE("grid OOD metrics: perfect separation, all equal scores, bad input", "[metrics][grid]") {
    const std::vector<double> in = {5, 6, 7, 8}, out = {1, 2, 3};
    auto g = m::grid_ood_metrics(in, out);
    // numpy.arange's length ceil(7 / (7 / 200000)) rounds up to 200,001 here, as it does in numpy.
    CHECK((g.thresholds == 200000 || g.thresholds == 200001));
    CHECK(g.auroc == 1.0);
    CHECK(g.detection_accuracy == 1.0);
    CHECK(g.aupr_in == Approx(1.0).epsilon(1e-12));
    CHECK(g.aupr_out == Approx(1.0).epsilon(1e-12));
    // TPR is 1, 0.75, 0.5, ... on this grid: no point in [0.94, 0.96] -> corner case.
    CHECK(g.tnr_at_95_tpr == 0.0);
    // With the window [0.9, 1]: TPR is 1 for every d <= 5, where FPR = #{out > d} / 3 is 2/3 on [1, 2), 1/3
    // on [2, 3) and 0 on [3, 5]: mean FPR 1/4, TNR 0.75 (the grid's average, not the best threshold).
    CHECK(m::grid_ood_metrics(in, out, 200000, 0.9, 1.0).tnr_at_95_tpr == Approx(0.75).margin(1e-4));
    const std::vector<double> same = {2, 2};
    auto e = m::grid_ood_metrics(same, same);
    CHECK(e.thresholds == 1);
    // One grid point d = 2 with TPR #{in >= 2} = 1 and FPR #{out > 2} = 0: the reference's >= / > asymmetry
    // scores identical sets as perfectly separated (the exact AUROC is 0.5).
    CHECK(e.auroc == 1.0);
    CHECK(m::ood_metrics(same, same).auroc == 0.5);
    CHECK_THROWS_AS(m::grid_ood_metrics({}, out), std::invalid_argument);
    const std::vector<double> bad = {1, std::nan("")};
    CHECK_THROWS_AS(m::grid_ood_metrics(bad, out), std::invalid_argument);
    CHECK_THROWS_AS(m::grid_ood_metrics(in, out, 0), std::invalid_argument);
}

TEST_CASE("grid OOD metrics agree with the exact versions within the grid's resolution", "[metrics][grid]") {
    sdeuq::data::Rng rng(2024, sdeuq::data::Stream::user, 7);
    for (double shift : {0.5, 1.5, 3.0}) {
        std::vector<double> in(3000), out(2000);
        for (auto& v : in) v = rng.normal() + shift;
        for (auto& v : out) v = rng.normal();
        const auto g = m::grid_ood_metrics(in, out);
        const auto e = m::ood_metrics(in, out);
        const double nx = double(in.size()), ny = double(out.size());
        // AUROC: the grid only mis-orders (in, out) pairs that fall into one grid cell, and drops the area
        // beyond its last point (at most one cell of scores): bound by those pairs / (nx ny).
        std::vector<double> ys = out;
        std::sort(ys.begin(), ys.end());
        double close = 0;
        for (double x : in)
            close += double(std::upper_bound(ys.begin(), ys.end(), x + g.resolution) -
                            std::lower_bound(ys.begin(), ys.end(), x - g.resolution));
        const double top =
            double(std::count_if(
                in.begin(), in.end(),
                [&](double x) { return x >= *std::max_element(in.begin(), in.end()) - 2 * g.resolution; })) *
            double(std::count_if(out.begin(), out.end(), [&](double y) {
                return y >= *std::max_element(in.begin(), in.end()) - 2 * g.resolution;
            }));
        INFO("shift " << shift << " grid auroc " << g.auroc << " exact " << e.auroc);
        CHECK(std::abs(g.auroc - e.auroc) <= (close + top + 1) / (nx * ny) + 1e-12);
        // Detection accuracy: both are min (FNR + FPR) / 2; the grid's thresholds miss at most one sample
        // per set at the optimum.
        CHECK(std::abs(g.detection_accuracy - e.detection_accuracy) <= 0.5 * (1 / nx + 1 / ny) + 1e-12);
        // AUPR: the grid credits each positive with the precision just above its score (the sample itself
        // has left), average precision at it: the difference is at most (1/nx) sum_k 1/k <= (1 + ln nx)/nx.
        const double aupr_tol = (1.0 + std::log(nx)) / nx;
        INFO("aupr in grid " << g.aupr_in << " exact " << e.aupr_in << " out " << g.aupr_out << " "
                             << e.aupr_out);
        CHECK(std::abs(g.aupr_in - e.aupr_in) <= aupr_tol);
        CHECK(std::abs(g.aupr_out - e.aupr_out) <= (1.0 + std::log(ny)) / ny);
        // TNR: the grid averages FPR over TPR in [0.94, 0.96]; the exact value is the FPR at TPR >= 0.95.
        // Both lie between the exact FPRs at TPR 0.94 and 0.96 (ROC curve), up to one sample.
        const auto roc = m::roc_curve(
            [&] {
                std::vector<double> s = in;
                s.insert(s.end(), out.begin(), out.end());
                return s;
            }(),
            [&] {
                std::vector<std::int32_t> l(in.size(), 1);
                l.resize(in.size() + out.size(), 0);
                return l;
            }());
        double fpr_lo = 1, fpr_hi = 0;
        for (std::size_t k = 0; k < roc.tpr.size(); ++k)
            if (roc.tpr[k] >= 0.94 - 1 / nx && roc.tpr[k] <= 0.96 + 1 / nx) {
                fpr_lo = std::min(fpr_lo, roc.fpr[k]);
                fpr_hi = std::max(fpr_hi, roc.fpr[k]);
            }
        INFO("tnr grid " << g.tnr_at_95_tpr << " exact " << e.tnr_at_95_tpr << " window " << 1 - fpr_hi << " "
                         << 1 - fpr_lo);
        CHECK(1 - g.tnr_at_95_tpr >= fpr_lo - 1 / ny);
        CHECK(1 - g.tnr_at_95_tpr <= fpr_hi + 1 / ny);
        CHECK(1 - e.tnr_at_95_tpr >= fpr_lo - 1 / ny);
        CHECK(1 - e.tnr_at_95_tpr <= fpr_hi + 1 / ny);
    }
}
