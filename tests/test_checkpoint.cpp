// Checkpoints: resuming is bit-for-bit the uninterrupted run; bad files are clear errors and load nothing.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "nn/checkpoint.hpp"
#include "nn/models.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() / ("sdeuq_test_ckpt_" + std::to_string(::getpid()));
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

// A small SNGP model: trainable and frozen parameters, spectral-norm and GP buffers, dropout generators.
ResNetConfig small_config(std::int64_t hidden = 8, int layers = 2, DType dt = DType::f32) {
    ResNetConfig cfg;
    cfg.input_dim = 3;
    cfg.hidden = hidden;
    cfg.num_layers = layers;
    cfg.num_classes = 2;
    cfg.dropout = 0.3;
    cfg.sngp = true;
    cfg.gp.num_inducing = 16;
    cfg.dtype = dt;
    return cfg;
}

struct Run {
    std::unique_ptr<ResNetClassifier> model;
    std::unique_ptr<Adam> opt;
    Generator batch_gen{77, 1};  // picks the minibatch: state outside the model, saved as "rng/batches"
    Tensor x;
    std::vector<std::int32_t> y;

    explicit Run(std::uint64_t seed) {
        Generator g(seed, 0);
        model = std::make_unique<ResNetClassifier>(small_config(), g);
        opt = std::make_unique<Adam>(model->trainable_parameters(), AdamOptions{.lr = 0.01});
        Generator dg(5, 5);
        x = randn({32, 3}, dg);
        for (int i = 0; i < 32; ++i) y.push_back(x.flat(i * 3) + x.flat(i * 3 + 1) > 0 ? 1 : 0);
    }
    void steps(int n) {
        model->train();
        for (int s = 0; s < n; ++s) {
            const std::int64_t start = static_cast<std::int64_t>(batch_gen.uniform() * 24);
            Var xb = slice(Var(x), 0, start, start + 8);
            std::span<const std::int32_t> yb(y.data() + start, 8);
            opt->zero_grad();
            Var loss = cross_entropy(model->forward(xb), yb);
            backward(loss);
            clip_grad_norm(model->trainable_parameters(), 1.0);
            opt->step();
            reset_tape();
        }
    }
};

bool same_bits(Module& a, Module& b) {
    auto pa = a.named_parameters(), pb = b.named_parameters();
    auto ba = a.named_buffers(), bb = b.named_buffers();
    if (pa.size() != pb.size() || ba.size() != bb.size()) return false;
    for (std::size_t i = 0; i < pa.size(); ++i) {
        const Tensor &ta = pa[i].second->value(), &tb = pb[i].second->value();
        if (ta.nbytes() != tb.nbytes() || std::memcmp(ta.raw(), tb.raw(), ta.nbytes()) != 0) return false;
    }
    for (std::size_t i = 0; i < ba.size(); ++i)
        if (std::memcmp(ba[i].second->raw(), bb[i].second->raw(), ba[i].second->nbytes()) != 0) return false;
    return true;
}

std::string load_error(const std::string& path, Module& m, Optimizer* opt = nullptr) {
    try {
        load_checkpoint(path, m, opt);
    } catch (const CheckpointError& e) {
        return e.what();
    }
    return "";
}

std::vector<char> read_bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_bytes(const std::string& p, const std::vector<char>& b) {
    std::ofstream out(p, std::ios::binary);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST_CASE("train N steps, checkpoint, train M more == train N + M straight, bit for bit", "[checkpoint]") {
    TempDir dir;
    const std::string path = dir.file("run.ckpt");
    Run straight(1);
    straight.steps(7 + 5);

    Run first(1);
    first.steps(7);
    save_checkpoint(path, *first.model, first.opt.get(), R"({"epoch": 3, "note": "resume test"})",
                    {{"batches", &first.batch_gen}});
    CHECK(fs::exists(path));
    CHECK(!fs::exists(path + ".tmp"));

    Run resumed(999);  // different initial weights and generators: everything must come from the file
    CHECK(!same_bits(*resumed.model, *first.model));
    const std::string meta =
        load_checkpoint(path, *resumed.model, resumed.opt.get(), {{"batches", &resumed.batch_gen}});
    CHECK(meta == R"({"epoch": 3, "note": "resume test"})");
    CHECK(same_bits(*resumed.model, *first.model));
    CHECK(resumed.opt->step_count() == 7);
    resumed.steps(5);
    CHECK(same_bits(*resumed.model, *straight.model));
    // Adam's moments too.
    auto sa = resumed.opt->named_state(), sb = straight.opt->named_state();
    REQUIRE(sa.size() == sb.size());
    for (std::size_t i = 0; i < sa.size(); ++i)
        CHECK(std::memcmp(sa[i].second->raw(), sb[i].second->raw(), sa[i].second->nbytes()) == 0);
    // And the predictions in eval mode (GP covariance from the restored precision).
    straight.model->eval();
    resumed.model->eval();
    auto p1 = straight.model->predict(Var(straight.x)), p2 = resumed.model->predict(Var(resumed.x));
    CHECK(p1.logits.value().to_vector() == p2.logits.value().to_vector());
    CHECK(p1.variance.to_vector() == p2.variance.to_vector());
    reset_tape();
}

TEST_CASE("missing, truncated, corrupt and foreign files are clear errors", "[checkpoint][errors]") {
    TempDir dir;
    const std::string path = dir.file("a.ckpt");
    Run run(2);
    save_checkpoint(path, *run.model, run.opt.get());
    Run other(3);
    const auto before = other.model->named_parameters()[0].second->value().to_vector();

    CHECK(load_error(dir.file("nope.ckpt"), *other.model).find("nope.ckpt': cannot open") !=
          std::string::npos);

    auto bytes = read_bytes(path);
    write_bytes(dir.file("trunc.ckpt"), std::vector<char>(bytes.begin(), bytes.begin() + bytes.size() / 2));
    CHECK(load_error(dir.file("trunc.ckpt"), *other.model).find("trunc.ckpt': truncated") !=
          std::string::npos);
    write_bytes(dir.file("hdr.ckpt"), std::vector<char>(bytes.begin(), bytes.begin() + 10));
    CHECK(load_error(dir.file("hdr.ckpt"), *other.model).find("truncated header") != std::string::npos);

    auto corrupt = bytes;
    corrupt[corrupt.size() - 5] ^= 0x10;
    write_bytes(dir.file("corrupt.ckpt"), corrupt);
    CHECK(load_error(dir.file("corrupt.ckpt"), *other.model).find("checksum mismatch") != std::string::npos);

    auto magic = bytes;
    magic[0] = 'X';
    write_bytes(dir.file("magic.ckpt"), magic);
    CHECK(load_error(dir.file("magic.ckpt"), *other.model).find("bad magic") != std::string::npos);

    auto version = bytes;
    version[8] = 9;
    write_bytes(dir.file("version.ckpt"), version);
    CHECK(load_error(dir.file("version.ckpt"), *other.model).find("unsupported version 9") !=
          std::string::npos);

    // Nothing was written into the model by any failed load.
    CHECK(other.model->named_parameters()[0].second->value().to_vector() == before);
}

TEST_CASE("mismatched models and optimizers are rejected before anything is loaded", "[checkpoint][errors]") {
    TempDir dir;
    const std::string path = dir.file("a.ckpt");
    Run run(4);
    run.steps(2);
    save_checkpoint(path, *run.model, run.opt.get());

    Generator g(8, 0);
    SECTION("shape mismatch") {
        ResNetClassifier wide(small_config(10), g);
        auto before = wide.named_parameters().back().second->value().to_vector();
        std::string e = load_error(path, wide);
        CHECK(e.find("a.ckpt': entry 'param/input.weight' is f32[8, 3] but the model expects f32[10, 3]") !=
              std::string::npos);
        CHECK(wide.named_parameters().back().second->value().to_vector() == before);
    }
    SECTION("dtype mismatch") {
        ResNetClassifier f64(small_config(8, 2, DType::f64), g);
        CHECK(load_error(path, f64).find("is f32[8, 3] but the model expects f64[8, 3]") !=
              std::string::npos);
    }
    SECTION("unknown entry (a model with fewer layers)") {
        ResNetClassifier shallow(small_config(8, 1), g);
        std::string e = load_error(path, shallow);
        CHECK(e.find("unknown entry 'param/block1.dense.layer.weight'") != std::string::npos);
    }
    SECTION("missing entry (a model with more layers)") {
        ResNetClassifier deep(small_config(8, 3), g);
        CHECK(load_error(path, deep).find("missing entry 'param/block2.dense.layer.weight'") !=
              std::string::npos);
    }
    SECTION("optimizer type mismatch, and a model-only load") {
        ResNetClassifier same(small_config(), g);
        SGD sgd(same.trainable_parameters(), SGDOptions{.momentum = 0.9});
        CHECK(load_error(path, same, &sgd).find("optimizer is SGD but the file holds Adam state") !=
              std::string::npos);
        CHECK(load_error(path, same).empty());
        CHECK(same_bits(same, *run.model));
    }
    SECTION("a checkpoint without optimizer state cannot restore an optimizer") {
        save_checkpoint(dir.file("model_only.ckpt"), *run.model);
        ResNetClassifier same(small_config(), g);
        Adam adam(same.trainable_parameters());
        CHECK(load_error(dir.file("model_only.ckpt"), same, &adam)
                  .find("model_only.ckpt': no optimizer state") != std::string::npos);
    }
    SECTION("invalid metadata is refused at save time") {
        CHECK_THROWS_AS(save_checkpoint(dir.file("bad.ckpt"), *run.model, nullptr, "{not json"),
                        CheckpointError);
        CHECK(!fs::exists(dir.file("bad.ckpt")));
    }
}

TEST_CASE("the container round-trips entries and metadata", "[checkpoint]") {
    TempDir dir;
    CheckpointFile ck;
    ck.metadata = R"({"rng": [1, 2, 3]})";
    ck.entries.push_back({"a", 1, {2, 2}, std::vector<std::uint8_t>(32, 7)});
    ck.entries.push_back({"empty", 0, {0}, {}});
    ck.entries.push_back({"s", 2, {3}, {1, 2, 3}});
    write_checkpoint_file(dir.file("c.ckpt"), ck);
    CheckpointFile back = read_checkpoint_file(dir.file("c.ckpt"));
    CHECK(back.metadata == ck.metadata);
    REQUIRE(back.entries.size() == 3);
    CHECK(back.find("a")->shape == std::vector<std::int64_t>{2, 2});
    CHECK(back.find("a")->data == ck.entries[0].data);
    CHECK(back.find("empty")->data.empty());
    CHECK(back.find("s")->data == std::vector<std::uint8_t>{1, 2, 3});
}
