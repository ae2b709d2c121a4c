// Metrics against independently computed references (scikit-learn 1.2.1, numpy 1.24.2, Debian bookworm's
// /usr/bin/python3). Every expected number below was printed by the Python snippet in the comment above it
// with repr(), i.e. to 17 significant digits, and pasted here unchanged.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/metrics.hpp"

namespace m = sdeuq::metrics;

namespace {

constexpr double tol = 1e-12;

Approx near(double v) { return Approx(v).epsilon(tol).margin(tol); }

// Message of the std::invalid_argument thrown by f, or "" (and a test failure) if none is thrown.
template <typename F>
std::string invalid_argument_message(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    FAIL("expected std::invalid_argument");
    return "";
}

// ---- OOD score sets ----
// Small hand-made set with ties inside and across the two groups (0.8, 0.7, 0.6, 0.5).
const std::vector<double> small_in{0.9, 0.8, 0.8, 0.7, 0.6, 0.6, 0.95, 0.5, 0.3, 0.85};
const std::vector<double> small_ood{0.8, 0.6, 0.4, 0.6, 0.2, 0.1, 0.7, 0.5, 0.65};

// Larger formula-generated set (60 in-dist, 45 OOD) with many ties: the values are integers / 20, so C++
// and Python produce bit-identical doubles.
std::vector<double> formula_in() {
    std::vector<double> v;
    for (int i = 0; i < 60; ++i) v.push_back((i * 7919 % 23) / 20.0);
    return v;
}
std::vector<double> formula_ood() {
    std::vector<double> v;
    for (int j = 0; j < 45; ++j) v.push_back((j * 104729 % 19) / 20.0 - 0.25);
    return v;
}

/* Reference values for both sets:

import numpy as np
from sklearn.metrics import roc_auc_score, average_precision_score, roc_curve
def ood(ins, outs):
    s = np.concatenate([ins, outs]); y = np.r_[np.ones(len(ins)), np.zeros(len(outs))]
    auroc = roc_auc_score(y, s)
    ap_in = average_precision_score(y, s)
    ap_out = average_precision_score(1 - y, -s)
    # FPR@95: smallest FPR over all thresholds (no points dropped) whose TPR >= 0.95, in-dist positive.
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    fpr95 = fpr[tpr >= 0.95].min()
    # detection error: min over thresholds of (FNR + FPR) / 2 = min (1 - TPR + FPR) / 2.
    det = (0.5 * (1 - tpr) + 0.5 * fpr).min()
    for k, v in [("auroc", auroc), ("aupr_in", ap_in), ("aupr_out", ap_out), ("fpr95", fpr95),
                 ("tnr95", 1 - fpr95), ("det_err", det), ("det_acc", 1 - det)]:
        print(f"{k} = {v!r}")
ood(np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.6, 0.95, 0.5, 0.3, 0.85]),
    np.array([0.8, 0.6, 0.4, 0.6, 0.2, 0.1, 0.7, 0.5, 0.65]))
ood(np.array([(i * 7919 % 23) / 20.0 for i in range(60)]),
    np.array([(j * 104729 % 19) / 20.0 - 0.25 for j in range(45)]))
*/
struct OodExpected {
    double auroc, aupr_in, aupr_out, fpr95, tnr95, det_err, det_acc;
};
constexpr OodExpected small_expected{0.7444444444444446, 0.7835671191553544, 0.7145461020461019,
                                     0.7777777777777778, 0.2222222222222222, 0.3055555555555556,
                                     0.6944444444444444};
constexpr OodExpected formula_expected{0.807962962962963,  0.8579115670490687, 0.782476421397917,
                                       0.5333333333333333, 0.4666666666666667, 0.2888888888888889,
                                       0.711111111111111};

void check_ood(const std::vector<double>& in, const std::vector<double>& ood, const OodExpected& e) {
    const m::OodMetrics r = m::ood_metrics(in, ood);
    CHECK(r.auroc == near(e.auroc));
    CHECK(r.aupr_in == near(e.aupr_in));
    CHECK(r.aupr_out == near(e.aupr_out));
    CHECK(r.fpr_at_95_tpr == near(e.fpr95));
    CHECK(r.tnr_at_95_tpr == near(e.tnr95));
    CHECK(r.detection_error == near(e.det_err));
    CHECK(r.detection_accuracy == near(e.det_acc));

    // The generic binary functions agree, whatever the order of the samples: interleave the two groups.
    std::vector<double> scores;
    std::vector<std::int32_t> labels;
    for (std::size_t k = 0; k < std::max(in.size(), ood.size()); ++k) {
        if (k < ood.size()) {
            scores.push_back(ood[k]);
            labels.push_back(0);
        }
        if (k < in.size()) {
            scores.push_back(in[k]);
            labels.push_back(1);
        }
    }
    CHECK(m::roc_auc(scores, labels) == near(e.auroc));
    CHECK(m::average_precision(scores, labels) == near(e.aupr_in));
    std::vector<double> neg(scores.size());
    std::vector<std::int32_t> flipped(labels.size());
    for (std::size_t k = 0; k < scores.size(); ++k) {
        neg[k] = -scores[k];
        flipped[k] = 1 - labels[k];
    }
    CHECK(m::average_precision(neg, flipped) == near(e.aupr_out));
    // AUROC is symmetric under swapping the positive class and negating the score.
    CHECK(m::roc_auc(neg, flipped) == near(e.auroc));
}

// ---- multi-class probability sets ----
// 8 x 3, with a tied maximum ([0.4, 0.4, 0.2] and the uniform row: argmax is the first index) and
// confidences on ECE bin edges (0.5, 0.6, 0.7 for 10 bins).
const std::vector<double> small_probs{
    0.7,  0.2,  0.1,  //
    0.5,  0.3,  0.2,  //
    0.1,  0.6,  0.3,  //
    0.25, 0.25, 0.5,  //
    0.4,  0.4,  0.2,  //
    0.05, 0.15, 0.8,  //
    1.0 / 3, 1.0 / 3, 1.0 / 3, //
    0.3,  0.6,  0.1,
};
const std::vector<std::int32_t> small_labels{0, 1, 1, 2, 1, 2, 0, 0};

// 200 x 4 softmax of integer / 4 logits (many tied logits, hence tied probabilities).
constexpr std::size_t formula_n = 200;
constexpr std::size_t formula_c = 4;
std::vector<double> formula_probs() {
    std::vector<double> p(formula_n * formula_c);
    for (std::size_t i = 0; i < formula_n; ++i) {
        double l[formula_c];
        double mx = -1e300;
        for (std::size_t c = 0; c < formula_c; ++c) {
            l[c] = static_cast<double>((i * 31 + c * 17) % 13) / 4.0;
            mx = std::max(mx, l[c]);
        }
        double sum = 0.0;
        for (std::size_t c = 0; c < formula_c; ++c) sum += (p[i * formula_c + c] = std::exp(l[c] - mx));
        for (std::size_t c = 0; c < formula_c; ++c) p[i * formula_c + c] /= sum;
    }
    return p;
}
std::vector<std::int32_t> formula_labels() {
    std::vector<std::int32_t> y(formula_n);
    for (std::size_t i = 0; i < formula_n; ++i) y[i] = static_cast<std::int32_t>((i * 7) % formula_c);
    return y;
}

/* Reference values:

import numpy as np
from sklearn.metrics import log_loss, accuracy_score
def ece(p, y, M):  # Guo et al. 2017 / uncertainty-baselines binning: bins (lo, hi], edges linspace(0, 1, M+1)
    conf = p.max(1); acc = (p.argmax(1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, M + 1); e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any(): e += m.mean() * abs(acc[m].mean() - conf[m].mean())
    return e
def report(p, y):
    C = p.shape[1]
    print("accuracy =", repr(accuracy_score(y, p.argmax(1))))
    print("nll =", repr(log_loss(y, p, labels=list(range(C)))))
    print("brier =", repr(((p - np.eye(C)[y]) ** 2).sum(1).mean()))
    print("ece15 =", repr(ece(p, y, 15)))
    print("ece10 =", repr(ece(p, y, 10)))
    ent = -(p * np.log(p)).sum(1)
    print("entropy[0], mean =", repr(ent[0]), repr(ent.mean()))
p = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5],
              [0.4, 0.4, 0.2], [0.05, 0.15, 0.8], [1/3, 1/3, 1/3], [0.3, 0.6, 0.1]])
y = np.array([0, 1, 1, 2, 1, 2, 0, 0])
report(p, y)
n, C = 200, 4
l = np.array([[((i * 31 + c * 17) % 13) / 4.0 for c in range(C)] for i in range(n)])
p = np.exp(l - l.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
y = np.array([(i * 7) % C for i in range(n)])
report(p, y)
*/
struct ClassExpected {
    double accuracy, nll, brier, ece15, ece10, entropy0, entropy_mean;
};
constexpr ClassExpected small_class{0.625, 0.7758299910966269, 0.4633333333333333, 0.22083333333333335,
                                    0.12083333333333332, 0.8018185525433372, 0.9291857120346989};
constexpr ClassExpected formula_class{0.245, 1.763053883253695, 0.9150827087197132, 0.3127827612627718,
                                      0.3127827612627718, 0.9475369639754254, 1.0790938248210622};

void check_class(const std::vector<double>& p, const std::vector<std::int32_t>& y, std::size_t c,
                 const ClassExpected& e) {
    CHECK(m::accuracy(p, y, c) == near(e.accuracy));
    CHECK(m::nll(p, y, c) == near(e.nll));
    CHECK(m::brier(p, y, c) == near(e.brier));
    CHECK(m::ece(p, y, c, 15) == near(e.ece15));
    CHECK(m::ece(p, y, c) == near(e.ece15)); // 15 bins is the default
    CHECK(m::ece(p, y, c, 10) == near(e.ece10));
    const auto h = m::predictive_entropy(p, c);
    REQUIRE(h.size() == y.size());
    CHECK(h[0] == near(e.entropy0));
    CHECK(m::mean(h) == near(e.entropy_mean));
}

} // namespace

TEST_CASE("ood_metrics matches sklearn on a small set with ties", "[metrics]") {
    check_ood(small_in, small_ood, small_expected);
}

TEST_CASE("ood_metrics matches sklearn on a larger tie-heavy set", "[metrics]") {
    check_ood(formula_in(), formula_ood(), formula_expected);
}

TEST_CASE("ood_metrics edge cases", "[metrics]") {
    SECTION("perfect separation") {
        const auto r = m::ood_metrics(std::vector<double>{0.9, 0.8}, std::vector<double>{0.1, 0.2, 0.3});
        CHECK(r.auroc == 1.0);
        CHECK(r.aupr_in == 1.0);
        CHECK(r.aupr_out == 1.0);
        CHECK(r.fpr_at_95_tpr == 0.0);
        CHECK(r.tnr_at_95_tpr == 1.0);
        CHECK(r.detection_error == 0.0);
        CHECK(r.detection_accuracy == 1.0);
    }
    SECTION("all scores equal: chance level") {
        const auto r = m::ood_metrics(std::vector<double>{0.5, 0.5}, std::vector<double>{0.5, 0.5, 0.5});
        CHECK(r.auroc == 0.5);
        CHECK(r.aupr_in == near(2.0 / 5.0));  // one threshold: precision = base rate
        CHECK(r.aupr_out == near(3.0 / 5.0));
        CHECK(r.fpr_at_95_tpr == 1.0);
        CHECK(r.detection_error == 0.5);
    }
    SECTION("inverted detector") {
        const auto r = m::ood_metrics(std::vector<double>{0.1, 0.2}, std::vector<double>{0.8, 0.9});
        CHECK(r.auroc == 0.0);
        CHECK(r.fpr_at_95_tpr == 1.0);
        // The "+inf" threshold (TPR = FPR = 0) caps the detection error at 1/2.
        CHECK(r.detection_error == 0.5);
    }
}

TEST_CASE("roc_curve has one point per distinct score plus the origin", "[metrics]") {
    const std::vector<double> s{0.1, 0.4, 0.35, 0.8, 0.4};
    const std::vector<std::int32_t> y{0, 0, 1, 1, 1};
    const auto roc = m::roc_curve(s, y);
    // sklearn.metrics.roc_curve([0,0,1,1,1], [0.1,0.4,0.35,0.8,0.4], drop_intermediate=False):
    // fpr = [0, 0, .5, .5, 1], tpr = [0, 1/3, 2/3, 1, 1], thresholds = [1.8, .8, .4, .35, .1]
    REQUIRE(roc.fpr.size() == 5);
    const std::vector<double> fpr{0.0, 0.0, 0.5, 0.5, 1.0};
    const std::vector<double> tpr{0.0, 1.0 / 3, 2.0 / 3, 1.0, 1.0};
    for (std::size_t k = 0; k < 5; ++k) {
        CHECK(roc.fpr[k] == near(fpr[k]));
        CHECK(roc.tpr[k] == near(tpr[k]));
    }
    CHECK(std::isinf(roc.thresholds[0]));
    CHECK(roc.thresholds[2] == 0.4);
}

TEST_CASE("classification metrics match sklearn / numpy", "[metrics]") {
    SECTION("small set with tied maxima and confidences on bin edges") {
        check_class(small_probs, small_labels, 3, small_class);
    }
    SECTION("formula set") { check_class(formula_probs(), formula_labels(), formula_c, formula_class); }
    SECTION("float overloads agree with double to float precision") {
        std::vector<float> pf(small_probs.begin(), small_probs.end());
        CHECK(m::accuracy(pf, small_labels, 3) == small_class.accuracy);
        CHECK(m::nll(pf, small_labels, 3) == Approx(small_class.nll).epsilon(1e-6));
        CHECK(m::brier(pf, small_labels, 3) == Approx(small_class.brier).epsilon(1e-6));
        CHECK(m::ece(pf, small_labels, 3, 15) == Approx(small_class.ece15).epsilon(1e-6));
        CHECK(m::predictive_entropy(pf, 3)[0] == Approx(small_class.entropy0).epsilon(1e-6));
    }
}

TEST_CASE("argmax and max_prob use numpy's first-maximum rule", "[metrics]") {
    const auto am = m::argmax(small_probs, 3);
    CHECK(am == std::vector<std::int32_t>{0, 0, 1, 2, 0, 2, 0, 1});
    const auto mp = m::max_prob(small_probs, 3);
    CHECK(mp[0] == 0.7);
    CHECK(mp[4] == 0.4);
    CHECK(mp[6] == 1.0 / 3);
}

TEST_CASE("ece bins are (lo, hi] on numpy.linspace edges", "[metrics]") {
    // conf 0.7 lies on the 10-bin edge 7 * 0.1 = 0.7000000000000001, so (0.6, 0.70..01] holds both rows:
    // ECE = |acc - conf| of that one bin = |1/2 - (0.7 + 0.65)/2| = 0.175. Had 0.7 fallen in (0.7, 0.8]
    // the value would be 0.5 * 0.3 + 0.5 * 0.65 = 0.475.
    const std::vector<double> p{0.7, 0.3, 0.65, 0.35};
    const std::vector<std::int32_t> y{0, 1};
    CHECK(m::ece(p, y, 2, 10) == near(0.175));
    // A perfectly calibrated bin contributes 0.
    const std::vector<double> q{0.5, 0.5, 0.5, 0.5};
    CHECK(m::ece(q, std::vector<std::int32_t>{0, 1}, 2, 10) == near(0.0));
    // Confidence 1.0 lands in the last bin (edge exactly 1).
    CHECK(m::ece(std::vector<double>{1.0, 0.0}, std::vector<std::int32_t>{0}, 2, 15) == 0.0);
}

TEST_CASE("nll clamps probabilities at 1e-12", "[metrics]") {
    // p[label] = 0 would be +inf; the floor gives -log(1e-12) = 27.631021115928547.
    const std::vector<double> p{0.0, 1.0, 0.5, 0.5};
    const std::vector<std::int32_t> y{0, 0};
    CHECK(m::nll(p, y, 2) == near((-std::log(1e-12) - std::log(0.5)) / 2));
    CHECK(-std::log(m::nll_probability_floor) == near(27.631021115928547));
}

TEST_CASE("brier convention: sum over classes, range [0, 2]", "[metrics]") {
    CHECK(m::brier(std::vector<double>{0.0, 1.0}, std::vector<std::int32_t>{0}, 2) == 2.0);
    CHECK(m::brier(std::vector<double>{1.0, 0.0}, std::vector<std::int32_t>{0}, 2) == 0.0);
    // Binary: twice sklearn.metrics.brier_score_loss([1], [0.8]) = 2 * 0.04.
    CHECK(m::brier(std::vector<double>{0.2, 0.8}, std::vector<std::int32_t>{1}, 2) == near(0.08));
}

TEST_CASE("mean and stddev follow numpy", "[metrics]") {
    // np.mean([1, 2, 4, 7]) = 3.5; np.std(...) = 2.29128784747792; np.std(..., ddof=1) = 2.6457513110645907
    const std::vector<double> v{1.0, 2.0, 4.0, 7.0};
    CHECK(m::mean(v) == 3.5);
    CHECK(m::stddev(v) == near(2.29128784747792));
    CHECK(m::stddev(v, 1) == near(2.6457513110645907));
    const auto ms = m::mean_std(v, 1);
    CHECK(ms.mean == 3.5);
    CHECK(ms.std == near(2.6457513110645907));
    CHECK_THROWS_AS(m::stddev(std::vector<double>{1.0}, 1), std::invalid_argument);
    CHECK_THROWS_AS(m::mean(std::vector<double>{}), std::invalid_argument);
}

TEST_CASE("bad input throws std::invalid_argument naming the metric and sizes", "[metrics]") {
    using Catch::Matchers::Contains;
    const std::vector<double> p(12, 0.25); // 4 x 3
    const std::vector<std::int32_t> y3{0, 1, 2};
    const std::vector<std::int32_t> y4{0, 1, 2, 3};
    const double nan = std::numeric_limits<double>::quiet_NaN();

    auto msg = invalid_argument_message([&] { m::nll(p, y3, 3); });
    CHECK_THAT(msg, Contains("nll") && Contains("12") && Contains("3"));
    msg = invalid_argument_message([&] { m::accuracy(p, y4, 3); });
    CHECK_THAT(msg, Contains("accuracy") && Contains("labels[3] = 3") && Contains("out of range"));
    msg = invalid_argument_message([&] { m::brier(std::vector<double>{}, std::vector<std::int32_t>{}, 3); });
    CHECK_THAT(msg, Contains("brier") && Contains("empty"));
    msg = invalid_argument_message([&] { m::ece(p, std::vector<std::int32_t>{0, 0, 0, -1}, 3, 15); });
    CHECK_THAT(msg, Contains("ece") && Contains("-1"));
    msg = invalid_argument_message([&] { m::ece(p, y4, 4, 0); });
    CHECK_THAT(msg, Contains("ece") && Contains("num_bins"));
    std::vector<double> bad = p;
    bad[5] = nan;
    msg = invalid_argument_message([&] { m::max_prob(bad, 3); });
    CHECK_THAT(msg, Contains("max_prob") && Contains("probs[5]"));
    bad[5] = 1.5;
    msg = invalid_argument_message([&] { m::predictive_entropy(bad, 3); });
    CHECK_THAT(msg, Contains("predictive_entropy") && Contains("[0, 1]"));

    msg = invalid_argument_message([&] {
        m::roc_auc(std::vector<double>{0.1, 0.2}, std::vector<std::int32_t>{0, 1, 1});
    });
    CHECK_THAT(msg, Contains("roc_auc") && Contains("2") && Contains("3"));
    msg = invalid_argument_message([&] {
        m::average_precision(std::vector<double>{0.1, 0.2}, std::vector<std::int32_t>{1, 1});
    });
    CHECK_THAT(msg, Contains("average_precision") && Contains("both classes"));
    msg = invalid_argument_message([&] {
        m::roc_auc(std::vector<double>{0.1, 0.2}, std::vector<std::int32_t>{0, 2});
    });
    CHECK_THAT(msg, Contains("not 0 or 1"));
    msg = invalid_argument_message([&] {
        m::ood_metrics(std::vector<double>{0.1, std::numeric_limits<double>::infinity()},
                       std::vector<double>{0.3});
    });
    CHECK_THAT(msg, Contains("ood_metrics") && Contains("in_dist_scores[1]") && Contains("not finite"));
    msg = invalid_argument_message([&] { m::ood_metrics(std::vector<double>{0.1}, std::vector<double>{}); });
    CHECK_THAT(msg, Contains("ood_metrics") && Contains("1 in-distribution") && Contains("0 OOD"));
    msg = invalid_argument_message([&] {
        m::ood_metrics(std::vector<double>{0.1}, std::vector<double>{nan});
    });
    CHECK_THAT(msg, Contains("ood_scores[0]"));
}
