// Learned confidence (nn/confidence.hpp): the hint interpolation, the budget update, the input
// preprocessing and ODIN steps against hand-computed values; a float64 gradient check through the branch
// and p'; the seeded transforms (nn/transforms.hpp) and the reference's OOD metrics
// (nn/metrics_confidence.hpp) against hand-computed values and a brute-force transcription of the reference.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <set>

#include "autodiff/gradcheck.hpp"
#include "nn/confidence.hpp"
#include "nn/metrics_confidence.hpp"
#include "nn/models.hpp"
#include "nn/transforms.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;

namespace {

// features(x) = x, logits = Linear(x): the smallest FeatureClassifier, for steps computed by hand.
class LinearNet : public FeatureClassifier {
public:
    LinearNet(std::int64_t d, std::int64_t k, Generator& gen, DType dt) : d_(d) {
        LinearOptions lo;
        lo.dtype = dt;
        out_ = register_module("out", std::make_shared<Linear>(d, k, gen, lo));
    }
    std::string describe() const override { return "LinearNet"; }
    Var forward(const Var& x) override { return classify(features(x)); }
    Var features(const Var& x) override { return x; }
    Var classify(const Var& f) override { return out_->forward(f); }
    std::int64_t feature_dim() const override { return d_; }
    Linear& out() { return *out_; }

private:
    std::int64_t d_;
    std::shared_ptr<Linear> out_;
};

void set(Parameter& p, std::vector<double> v) {
    p.value().copy_from(Tensor::from_vector(v, p.value().shape(), DType::f64));
}

}  // namespace

TEST_CASE("confidence loss: hints, p' = c p + (1 - c) y and the losses equal hand-computed values",
          "[confidence]") {
    // Sample 0: p = (1/3, 1/3, 1/3), c = sigmoid(0) = 1/2, label 1, hint kept: p'_1 = 1/2 * 1/3 + 1/2 = 2/3.
    // Sample 1: p = (1/2, 1/4, 1/4), c = sigmoid(log 3) = 3/4, label 0, no hint (c := 1): p'_0 = 1/2.
    Tensor logits = Tensor::from_vector({0, 0, 0, std::log(2.0), 0, 0}, {2, 3}, DType::f64);
    Tensor cl = Tensor::from_vector({0, std::log(3.0)}, {2, 1}, DType::f64);
    const std::vector<std::int32_t> y = {1, 0};
    const std::vector<std::uint8_t> b = {1, 0};
    auto l = confidence_loss(Var(logits), Var(cl), y, b, 0.1);
    const double task = (-std::log(2.0 / 3.0) - std::log(0.5)) / 2;  // = log(3) / 2
    const double conf = (-std::log(0.5) - std::log(0.75)) / 2;       // un-hinted c for both samples
    CHECK(l.task.item() == Approx(task).epsilon(1e-14));
    CHECK(l.task.item() == Approx(std::log(3.0) / 2).epsilon(1e-14));
    CHECK(l.confidence.item() == Approx(conf).epsilon(1e-14));
    CHECK(l.total.item() == Approx(task + 0.1 * conf).epsilon(1e-14));
    // Both hints kept: sample 1 gets p'_0 = 3/4 * 1/2 + 1/4 = 5/8.
    auto l2 = confidence_loss(Var(logits), Var(cl), y, std::vector<std::uint8_t>{1, 1}, 0.1);
    CHECK(l2.task.item() == Approx((-std::log(2.0 / 3.0) - std::log(5.0 / 8.0)) / 2).epsilon(1e-14));
    // Clamping: c = sigmoid(-100) ~ 4e-44 is clamped to 1e-12, so -log c = 12 log 10.
    auto l3 =
        confidence_loss(Var(logits), Var(Tensor::from_vector({-100, -100}, {2, 1}, DType::f64)), y, b, 0.0);
    CHECK(l3.confidence.item() == Approx(12 * std::log(10.0)).epsilon(1e-9));
    CHECK_THROWS_WITH(confidence_loss(Var(logits), Var(cl), y, std::vector<std::uint8_t>{1}, 0.1),
                      Catch::Matchers::Contains("1 hints"));
}

TEST_CASE("confidence budget: lambda / 1.01 under the budget, / 0.99 at or over it", "[confidence]") {
    CHECK(update_budget(0.1, 0.2) == 0.1 / 1.01);
    CHECK(update_budget(0.1, 0.3) == 0.1 / 0.99);  // beta > L_c is false at equality
    CHECK(update_budget(0.1, 0.7) == 0.1 / 0.99);
    BudgetOptions o;
    o.beta = 0.5;
    CHECK(update_budget(2.0, 0.4, o) == 2.0 / 1.01);
    // Hints: Bernoulli(1/2), seeded.
    Generator g1(5), g2(5);
    auto h = draw_hints(20000, 0.5, g1);
    CHECK(h == draw_hints(20000, 0.5, g2));
    const double frac = std::accumulate(h.begin(), h.end(), 0.0) / 20000;
    CHECK(std::abs(frac - 0.5) < 0.015);  // 4 sd of the binomial fraction
}

TEST_CASE("confidence input preprocessing and ODIN steps equal the hand-computed signs", "[confidence]") {
    Generator gen(3);
    auto net = std::make_shared<LinearNet>(3, 2, gen, DType::f64);
    ConfidenceClassifier model(net, gen, DType::f64);
    // c = sigmoid(w.x + b): grad_x mean(-log c) = -(1 - c) w / N, so x' = x - eps sign(-w) = x + eps sign(w).
    set(model.branch().weight(), {0.5, -2.0, 0.0});
    set(*model.branch().bias(), {0.1});
    Tensor x = Tensor::from_vector({0.2, 0.4, 0.6, -1.0, 0.0, 1.0}, {2, 3}, DType::f64);
    auto xp = confidence_perturb(model, x, 0.01).to_vector();
    const std::vector<double> want = {0.21, 0.39, 0.6, -0.99, -0.01, 1.0};
    for (std::size_t i = 0; i < want.size(); ++i) CHECK(xp[i] == Approx(want[i]).epsilon(1e-15));
    // The step raises c.
    auto c0 = confidence_scores(model, x),
         c1 = confidence_scores(model, Tensor::from_vector(xp, {2, 3}, DType::f64));
    CHECK(c1[0] > c0[0]);
    CHECK(c1[1] > c0[1]);
    // ODIN with W = [[1, 0, 0], [0, 1, 0]], b = 0, x = (1, 0, 0): logits (1, 0), predicted class 0;
    // grad_x CE(l / T, 0) = W^T (softmax(l / T) - e_0) / T = (-(1 - p0), p1, 0) / T with p1 = 1 - p0 > 0,
    // so x' = x - eps (-1, 1, 0) = (1 + eps, -eps, 0).
    set(net->out().weight(), {1, 0, 0, 0, 1, 0});
    set(*net->out().bias(), {0, 0});
    Tensor x1 = Tensor::from_vector({1, 0, 0}, {1, 3}, DType::f64);
    auto xo = odin_perturb(*net, x1, 1000.0, 0.002).to_vector();
    CHECK(xo[0] == Approx(1.002).epsilon(1e-15));
    CHECK(xo[1] == Approx(-0.002).epsilon(1e-15));
    CHECK(xo[2] == 0.0);
    auto s = max_softmax_scores(*net, x1, 1000.0);
    CHECK(s[0] == Approx(1 / (1 + std::exp(-1.0 / 1000))).epsilon(1e-14));
    // No parameter gradient was left behind by the preprocessing passes.
    for (auto* p : model.parameters())
        for (double g : p->grad().to_vector()) CHECK(g == 0.0);
}

TEST_CASE("confidence preprocessing moves float32 inputs whose c rounds to 1; logits rank as c",
          "[confidence]") {
    Generator gen(5);
    auto net = std::make_shared<LinearNet>(3, 2, gen, DType::f32);
    ConfidenceClassifier model(net, gen, DType::f32);
    // z = 0.5 x0 - 2 x1 + 30 for x = (0.2, 0.4, 0.6): z = 29.3, sigmoid(z) = 1 - 1.9e-13 rounds to 1 in float32,
    // where the gradient of -log(sigmoid(z)) would be exactly 0 (no step); softplus(-z) keeps the sign:
    // x' = x + eps sign(w) = (0.21, 0.39, 0.6).
    set(model.branch().weight(), {0.5, -2.0, 0.0});
    set(*model.branch().bias(), {30.0});
    Tensor x = Tensor::from_vector({0.2, 0.4, 0.6}, {1, 3}, DType::f32);
    auto xp = confidence_perturb(model, x, 0.01).to_vector();
    CHECK(xp[0] == Approx(0.21).epsilon(1e-6));
    CHECK(xp[1] == Approx(0.39).epsilon(1e-6));
    CHECK(xp[2] == Approx(0.6).epsilon(1e-6));
    CHECK(confidence_logits(model, x)[0] == Approx(29.3).epsilon(1e-6));
    CHECK(confidence_scores(model, x)[0] == Approx(1.0 / (1.0 + std::exp(-29.3))).epsilon(1e-12));
}

TEST_CASE("confidence loss passes the float64 gradient check through the branch and p'",
          "[confidence][grad]") {
    const std::vector<std::int32_t> y = {2, 0, 1, 2};
    const std::vector<std::uint8_t> b = {1, 0, 1, 1};
    auto rnd = [](Shape s, std::uint64_t seed) {
        Generator g(seed);
        std::vector<double> v(static_cast<std::size_t>(s.numel()));
        for (auto& e : v) e = g.uniform() * 2 - 1;
        return Tensor::from_vector(v, s, DType::f64);
    };
    // Inputs: features [4, 5] and the branch weight [1, 5] and bias [1]; logits from a fixed linear map of
    // the features, so the check runs through both heads, the hint mix and the clamps (inside the kinks).
    Tensor wl = rnd({3, 5}, 2);
    auto r = check_gradients("confidence_loss",
                             [&](std::span<const Var> in) {
                                 Var logits = matmul(in[0], Var(wl), false, true);
                                 Var cl = linear(in[0], in[1], &in[2]);
                                 return confidence_loss(logits, cl, y, b, 0.37).total;
                             },
                             {rnd({4, 5}, 1), rnd({1, 5}, 3), rnd({1}, 4)});
    INFO(r.message);
    CHECK(r.ok);
    // And through the wrapper's own parameters.
    Generator gen(9);
    auto net = std::make_shared<LinearNet>(5, 3, gen, DType::f64);
    ConfidenceClassifier model(net, gen, DType::f64);
    GradcheckOptions opt;
    opt.params = model.trainable_parameters();
    auto r2 = check_gradients(
        "ConfidenceClassifier",
        [&](std::span<const Var> in) {
            auto o = model.forward_both(in[0]);
            return confidence_loss(o.logits, o.confidence_logit, y, b, 0.1).total;
        },
        {rnd({4, 5}, 5)}, opt);
    INFO(r2.message);
    CHECK(r2.ok);
}

namespace {

// A feature classifier on a batch of two random 28 x 28 images: features(x) has `feature_dim` columns and
// classify(features(x)) is forward(x), bit for bit.
void check_classify_of_features(FeatureClassifier& net, std::int64_t feature_dim) {
    Generator g(8);
    std::vector<double> v(2 * 784);
    for (auto& e : v) e = g.uniform();
    Var x(Tensor::from_vector(v, {2, 1, 28, 28}, DType::f32));
    NoGradScope ng;
    Var f = net.features(x);
    CHECK(f.shape() == Shape{2, feature_dim});
    CHECK(net.classify(f).value().to_vector() == net.forward(x).value().to_vector());
    reset_tape();
}

}  // namespace

TEST_CASE("MnistConvNet: classify(features(x)) is forward(x), bit for bit", "[confidence]") {
    Generator gen(4);
    ConvNetConfig cfg;
    cfg.width = 8;
    cfg.groups = 2;
    cfg.num_blocks = 1;
    MnistConvNet net(cfg, gen);
    check_classify_of_features(net, 8);
}

TEST_CASE("transforms: random crop with padding and Cutout are seeded and keep shapes and values",
          "[confidence][transforms]") {
    const std::size_t n = 6, c = 2, h = 9, w = 7;
    std::vector<float> img(n * c * h * w);
    for (std::size_t i = 0; i < img.size(); ++i) img[i] = 0.1f + float(i % 97) / 100.0f;  // all != fill
    const std::set<float> values(img.begin(), img.end());
    for (int which = 0; which < 2; ++which) {
        auto run = [&](std::uint64_t seed) {
            std::vector<float> out = img;
            Generator g(seed);
            if (which == 0)
                random_crop_pad(out, n, c, h, w, 2, g);
            else
                cutout(out, n, c, h, w, 4, 0.5, g);
            return out;
        };
        const auto a = run(1);
        CHECK(a == run(1));
        CHECK(a != run(2));
        CHECK(a.size() == img.size());
        for (float v : a) CHECK((v == 0.0f || values.count(v) == 1));
    }
    // Crop: each image is a shift of itself by (dy, dx) in [-2, 2]^2, with zeros shifted in.
    std::vector<float> cr = img;
    Generator g(3);
    random_crop_pad(cr, n, c, h, w, 2, g);
    for (std::size_t i = 0; i < n; ++i) {
        bool found = false;
        for (int dy = -2; dy <= 2 && !found; ++dy)
            for (int dx = -2; dx <= 2 && !found; ++dx) {
                bool ok = true;
                for (std::size_t ch = 0; ch < c; ++ch)
                    for (std::size_t r = 0; r < h; ++r)
                        for (std::size_t q = 0; q < w; ++q) {
                            const long sr = long(r) + dy, sq = long(q) + dx;
                            const bool in = sr >= 0 && sq >= 0 && sr < long(h) && sq < long(w);
                            const float want =
                                in ? img[((i * c + ch) * h + std::size_t(sr)) * w + std::size_t(sq)] : 0.0f;
                            ok = ok && cr[((i * c + ch) * h + r) * w + q] == want;
                        }
                found = ok;
            }
        CHECK(found);
    }
    // Padding 0 and Cutout with p = 0 are the identity; Cutout with p = 1 zeroes a square of at most 4 x 4
    // (clipped at the border) in every channel, and at least 2 x 2 of it.
    std::vector<float> id = img;
    Generator g3(4);
    random_crop_pad(id, n, c, h, w, 0, g3);
    cutout(id, n, c, h, w, 4, 0.0, g3);
    CHECK(id == img);
    cutout(id, n, c, h, w, 4, 1.0, g3);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t ch = 0; ch < c; ++ch) {
            const auto* p = id.data() + (i * c + ch) * h * w;
            const auto zeros = std::count(p, p + h * w, 0.0f);
            CHECK(zeros >= 4);
            CHECK(zeros <= 16);
        }
    CHECK_THROWS_WITH(cutout(id, n, c, h, w + 1, 4, 0.5, g3), Catch::Matchers::Contains("[6, 2, 9, 8]"));
}

TEST_CASE("confidence OOD metrics: hand-computed AUROC and AUPR; grid metrics as the reference's loops",
          "[confidence][metrics]") {
    const std::vector<double> in = {0.9, 0.8, 0.7, 0.6}, out = {0.65, 0.5, 0.3};
    auto m = metrics::confidence_ood_metrics(in, out);
    CHECK(m.auroc == Approx(11.0 / 12).epsilon(1e-15));
    CHECK(m.aupr_in == Approx(0.25 * (1 + 1 + 1 + 0.8)).epsilon(1e-15));
    CHECK(m.aupr_out == Approx((1 + 1 + 0.75) / 3).epsilon(1e-15));
    // Ties count 1/2 (sklearn): in = {1, 0}, out = {1}.
    CHECK(metrics::confidence_ood_metrics(std::vector<double>{1, 0}, std::vector<double>{1}).auroc == 0.25);
    // Brute force: a literal transcription of the reference's loops (tpr95, detection) on 2000 + 1500
    // scores, on a 3000-point grid.
    Generator g(11);
    std::vector<double> si(2000), so(1500);
    for (auto& v : si) v = std::min(1.0, 0.35 + 0.65 * std::sqrt(g.uniform()));
    for (auto& v : so) v = 0.6 * g.uniform() + 0.2 * g.uniform();
    metrics::ConfidenceOodOptions opt;
    opt.grid = 3000;
    auto mb = metrics::confidence_ood_metrics(si, so, opt);
    const double lo =
        std::min(*std::min_element(si.begin(), si.end()), *std::min_element(so.begin(), so.end()));
    const double hi =
        std::max(*std::max_element(si.begin(), si.end()), *std::max_element(so.begin(), so.end()));
    const double gap = (hi - lo) / 3000;
    double fpr = 0, total = 0, det = 1.0;
    for (int i = 0; lo + i * gap < hi; ++i) {
        const double d = lo + i * gap;
        double ge = 0, lt = 0, gt = 0;
        for (double v : si) {
            ge += v >= d;
            lt += v < d;
        }
        for (double v : so) gt += v > d;
        const double tpr = ge / 2000, err2 = gt / 1500;
        if (tpr <= 0.9505 && tpr >= 0.9495) {
            fpr += err2;
            total += 1;
        }
        det = std::min(det, (lt / 2000 + err2) / 2.0);
    }
    REQUIRE(total > 0);
    CHECK(mb.fpr_at_95_tpr == Approx(fpr / total).epsilon(1e-12));
    CHECK(mb.detection_error == Approx(det).epsilon(1e-12));
    // AUROC by all pairs.
    double wins = 0;
    for (double a : si)
        for (double b : so) wins += a > b ? 1.0 : a == b ? 0.5 : 0.0;
    CHECK(mb.auroc == Approx(wins / (2000.0 * 1500.0)).epsilon(1e-12));
    // No grid point with TPR in the window: FPR = 1 (the reference's corner case).
    CHECK(metrics::confidence_ood_metrics(in, out).fpr_at_95_tpr == 1.0);
    CHECK_THROWS_WITH(metrics::confidence_ood_metrics(std::vector<double>{}, out),
                      Catch::Matchers::Contains("no in"));
}

TEST_CASE("FlatConvNet: shapes, classify(features(x)) is forward(x), and a wrong input is named",
          "[confidence]") {
    Generator gen(4);
    FlatConvNetConfig cfg;
    cfg.width = 4;
    cfg.hidden = 16;
    FlatConvNet net(cfg, gen);
    CHECK(net.feature_dim() == 16);
    // 1 x 5 x 5 x 4 + 4, 4 x 5 x 5 x 8 + 8, 8 x 7 x 7 x 16 + 16, 16 x 10 + 10.
    CHECK(net.num_parameters() == 104 + 808 + 6288 + 170);
    check_classify_of_features(net, 16);
    CHECK_THROWS_WITH(net.forward(Var(Tensor::zeros({2, 1, 27, 28}, DType::f32))),
                      Catch::Matchers::Contains("f32[2, 1, 27, 28]"));
    reset_tape();
}

TEST_CASE("confidence_backward: gradients of the loss at the old lambda, then the budget update",
          "[confidence]") {
    // The reference (train.py) forms total = L_t + lambda L_c, then updates lambda, then backpropagates:
    // the step uses the lambda from before the update.
    Generator gen(9);
    auto net = std::make_shared<LinearNet>(5, 3, gen, DType::f64);
    ConfidenceClassifier model(net, gen, DType::f64);
    Generator gx(2);
    std::vector<double> v(20);
    for (auto& e : v) e = gx.uniform() * 2 - 1;
    const Tensor x = Tensor::from_vector(v, {4, 5}, DType::f64);
    const std::vector<std::int32_t> y = {2, 0, 1, 2};
    const std::vector<std::uint8_t> b = {1, 0, 1, 1};
    auto grads = [&] {
        std::vector<double> g;
        for (auto* p : model.parameters())
            for (double e : p->grad().to_vector()) g.push_back(e);
        return g;
    };
    model.zero_grad();
    auto o = model.forward_both(Var(x));
    auto l = confidence_loss(o.logits, o.confidence_logit, y, b, 0.25);
    const double lc = l.confidence.item();
    backward(l.total);
    const auto want = grads();
    reset_tape();
    model.zero_grad();
    double lambda = 0.25;
    CHECK(confidence_backward(model, Var(x), y, b, lambda) == lc);
    CHECK(grads() == want);
    CHECK(lambda == update_budget(0.25, lc));
    CHECK(lambda != 0.25);
    reset_tape();
}

// The reference's known bugs, pinned so that we do not share them (uoguelph-mlrg/confidence_estimation
// c98f23d; /work/shared/REFERENCES.md).
TEST_CASE("reference bugs not shared: seeded hints and per-image Cutout; no division by zero in FPR@95",
          "[confidence][reference]") {
    // train.py draws the hints from torch's CPU generator, which it never seeds (only the CUDA one): two
    // runs differ. Ours are a function of the generator's seed and stream.
    Generator a(21, 12), b(21, 12), c(21, 13);
    const auto ha = draw_hints(256, 0.5, a);
    CHECK(ha == draw_hints(256, 0.5, b));
    CHECK(ha != draw_hints(256, 0.5, c));
    // utils.Cutout draws from numpy's global generator inside DataLoader workers, which all start from the
    // same numpy state, so the workers repeat each other's masks. Ours: different (epoch, batch) forks give
    // different masks, and the images of one batch get independently placed squares.
    const std::size_t n = 32, h = 28, w = 28;
    const std::vector<float> ones(n * h * w, 1.0f);
    const Generator root(7, 11);
    auto masked = [&](std::uint64_t tag) {
        std::vector<float> im = ones;
        Generator g = root.fork(tag);
        cutout(im, n, 1, h, w, 8, 1.0, g);
        return im;
    };
    const auto m0 = masked(0), m1 = masked(1);
    CHECK(m0 == masked(0));
    CHECK(m0 != m1);
    std::set<std::vector<float>> distinct;
    for (std::size_t i = 0; i < n; ++i)
        distinct.insert(std::vector<float>(m0.begin() + std::ptrdiff_t(i * h * w),
                                           m0.begin() + std::ptrdiff_t((i + 1) * h * w)));
    CHECK(distinct.size() > n / 2);
    // utils/ood_metrics.tpr95 divides by the number of grid points with TPR in [0.9495, 0.9505] and raises
    // ZeroDivisionError when there is none (here: 3 in-distribution scores, TPR in {0, 1/3, 2/3, 1}); and
    // np.arange(start, end, 0) raises when every score is equal. Ours: FPR@95 = 1, finite metrics.
    const std::vector<double> in3 = {0.9, 0.5, 0.4}, out2 = {0.6, 0.1};
    const auto m = metrics::confidence_ood_metrics(in3, out2);
    CHECK(m.fpr_at_95_tpr == 1.0);
    CHECK(m.detection_error == Approx(0.25).epsilon(1e-12));  // (0 + 1/2) / 2 at a threshold in [0.1, 0.4]
    const std::vector<double> same = {0.5, 0.5};
    const auto ms = metrics::confidence_ood_metrics(same, same);
    CHECK(ms.fpr_at_95_tpr == 1.0);
    CHECK(ms.auroc == 0.5);
}
