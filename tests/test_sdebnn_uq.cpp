// SDE-BNN as a uq_benchmark method (experiments/uq_methods/sdebnn.cpp): registered under its name, valid
// probabilities and mutual information, bit-identical refits for a seed, a resumed checkpoint that restores
// the trained model, and option errors that name the option.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "autodiff/random.hpp"
#include "nn/uq_method.hpp"

using namespace sdeuq;

namespace {

// 48 random 28x28 "images" with random labels in 0..9 (the method needs nothing more to train and predict).
data::Dataset random_images(std::uint64_t seed) {
    Generator gen(seed, 0);
    data::Dataset ds;
    ds.n = 48;
    ds.shape = {1, 28, 28};
    ds.num_classes = 10;
    for (double v : rand_uniform({48 * 28 * 28}, gen, DType::f64, 0.0, 1.0).to_vector())
        ds.images.push_back(static_cast<float>(v));
    for (std::size_t i = 0; i < ds.n; ++i) ds.labels.push_back(static_cast<std::int32_t>(gen() % 10));
    return ds;
}

nn::UqSettings tiny_settings() {
    nn::UqSettings s;
    s.seed = 5;
    s.epochs = 2;
    s.batch = 16;
    s.width = 4;
    s.groups = 2;
    s.mc_samples = 3;
    s.options = {{"steps", "2"}};
    return s;
}

}  // namespace

TEST_CASE("sdebnn uq method: registered; probabilities, mutual information, bit-identical refits",
          "[sdebnn]") {
    const auto& info = nn::uq_method("sdebnn");
    CHECK(info.ood_score == "entropy");
    const data::Dataset train = random_images(1), test = random_images(2);
    auto a = info.make(tiny_settings());
    a->fit(train);
    nn::UqPrediction p = a->predict(test);
    REQUIRE(p.probs.size() == test.n * 10);
    REQUIRE(p.scores.count("mutual_information"));
    const auto& mi = p.scores["mutual_information"];
    REQUIRE(mi.size() == test.n);
    double mi_max = 0;
    for (std::size_t i = 0; i < test.n; ++i) {
        double row = 0;
        for (std::size_t c = 0; c < 10; ++c) {
            CHECK(p.probs[i * 10 + c] >= 0);
            row += p.probs[i * 10 + c];
        }
        CHECK(std::abs(row - 1) < 1e-5);
        CHECK(mi[i] >= -1e-12);
        mi_max = std::max(mi_max, mi[i]);
    }
    // The 3 weight paths differ (sigma > 0), so the prediction depends on the path somewhere.
    CHECK(mi_max > 0);
    CHECK(a->parameter_count() > 0);

    auto b = info.make(tiny_settings());
    b->fit(train);
    CHECK(b->predict(test).probs == p.probs);
}

TEST_CASE("sdebnn uq method: a finished checkpoint is resumed instead of retrained", "[sdebnn]") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / "sdeuq_test_sdebnn_uq";
    fs::remove_all(dir);
    nn::UqSettings s = tiny_settings();
    s.checkpoint_dir = dir.string();
    const data::Dataset train = random_images(1), test = random_images(2);
    auto a = nn::uq_method("sdebnn").make(s);
    a->fit(train);
    const auto probs = a->predict(test).probs;
    // Other training images: a retrained model would predict differently, the resumed one cannot.
    int epochs_reported = 0;
    s.on_epoch = [&] { ++epochs_reported; };
    auto b = nn::uq_method("sdebnn").make(s);
    b->fit(random_images(3));
    CHECK(epochs_reported == s.epochs);
    CHECK(b->predict(test).probs == probs);
    // Without resume, the other images do give another model.
    s.resume = false;
    auto c = nn::uq_method("sdebnn").make(s);
    c->fit(random_images(3));
    CHECK(c->predict(test).probs != probs);
    fs::remove_all(dir);
}

TEST_CASE("sdebnn uq method: bad options are errors naming them", "[sdebnn]") {
    nn::UqSettings s = tiny_settings();
    s.options["kl"] = "bogus";
    CHECK_THROWS_WITH(nn::uq_method("sdebnn").make(s), Catch::Contains("kl must be plain, full or stl"));
    s.options = {{"sigma", "-1"}};
    CHECK_THROWS_WITH(nn::uq_method("sdebnn").make(s), Catch::Contains("sigma -1"));
    s.options = {{"steps", "x"}};
    CHECK_THROWS_WITH(nn::uq_method("sdebnn").make(s), Catch::Contains("steps"));
}
