#include "nn/uq_method.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "nn/checkpoint.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"

namespace sdeuq::nn {

namespace {
std::map<std::string, UqMethodInfo>& registry() {
    static std::map<std::string, UqMethodInfo> r;
    return r;
}
}  // namespace

ConvNetConfig conv_net_config(const UqSettings& s) {
    ConvNetConfig c;
    c.in_channels = static_cast<std::int64_t>(s.input_shape.at(0));
    c.width = s.width;
    c.num_blocks = s.blocks;
    c.num_classes = s.num_classes;
    c.groups = s.groups;
    return c;
}

double UqSettings::option(const std::string& key, double fallback) const {
    auto it = options.find(key);
    if (it == options.end()) return fallback;
    try {
        std::size_t used = 0;
        const double v = std::stod(it->second, &used);
        if (used == it->second.size()) return v;
    } catch (const std::exception&) {
    }
    throw std::invalid_argument(fmt::format("option {}: '{}' is not a number", key, it->second));
}

std::int64_t UqSettings::option_int(const std::string& key, std::int64_t fallback) const {
    auto it = options.find(key);
    if (it == options.end()) return fallback;
    try {
        std::size_t used = 0;
        const long long v = std::stoll(it->second, &used);
        if (used == it->second.size()) return v;
    } catch (const std::exception&) {
    }
    throw std::invalid_argument(fmt::format("option {}: '{}' is not an integer", key, it->second));
}

std::string UqSettings::option_str(const std::string& key, const std::string& fallback) const {
    auto it = options.find(key);
    return it == options.end() ? fallback : it->second;
}

bool register_uq_method(UqMethodInfo info) {
    if (info.name.empty() || !info.make) throw std::logic_error("register_uq_method: empty name or factory");
    if (registry().count(info.name))
        throw std::logic_error(fmt::format("register_uq_method: '{}' registered twice", info.name));
    std::string name = info.name;
    registry().emplace(std::move(name), std::move(info));
    return true;
}

std::vector<UqMethodInfo> uq_methods() {
    std::vector<UqMethodInfo> out;
    for (auto& [name, info] : registry()) out.push_back(info);
    return out;
}

const UqMethodInfo& uq_method(const std::string& name) {
    auto it = registry().find(name);
    if (it == registry().end()) {
        std::string names;
        for (auto& [n, info] : registry()) names += (names.empty() ? "" : ", ") + n;
        throw std::invalid_argument(fmt::format("unknown method '{}' (registered: {})", name, names));
    }
    return it->second;
}

void train_classifier(Module& model, const std::function<Var(const Var&)>& logits, const data::Dataset& train,
                      const UqSettings& s, std::uint64_t seed, const std::string& tag,
                      const std::string& config_key, const std::function<void(int)>& epoch_start) {
    namespace fs = std::filesystem;
    using nlohmann::json;
    Adam opt(model.trainable_parameters(), {.lr = s.lr});
    auto gens = model.named_generators();
    const std::string path =
        s.checkpoint_dir.empty() ? "" : (fs::path(s.checkpoint_dir) / (tag + ".ckpt")).string();
    int start = 0;
    if (!path.empty() && s.resume && fs::exists(path)) {
        // Only a checkpoint written by the same configuration is resumed from.
        auto meta = json::parse(read_checkpoint_file(path).metadata);
        if (meta.value("config", "") == config_key) {
            load_checkpoint(path, model, &opt, gens);
            start = meta.value("epochs_done", 0);
            for (int e = 0; e < start; ++e)
                if (s.on_epoch) s.on_epoch();
            std::fprintf(stderr, "resuming %s after epoch %d\n", path.c_str(), start);
        }
    }
    data::BatchIterator it(train.n, s.batch, seed);
    std::vector<std::int32_t> yb;
    model.train();
    for (int e = start; e < s.epochs; ++e) {
        if (epoch_start) epoch_start(e);
        it.start_epoch(static_cast<std::uint64_t>(e));
        for (auto idx = it.next(); !idx.empty(); idx = it.next()) {
            Tensor x = data::batch_tensor(train, idx, yb);
            opt.zero_grad();
            backward(cross_entropy(logits(Var(x)), yb));
            opt.step();
            reset_tape();
        }
        if (!path.empty()) {
            fs::create_directories(s.checkpoint_dir);
            json meta = {{"config", config_key}, {"epochs_done", e + 1}};
            save_checkpoint(path, model, &opt, meta.dump(), gens);
        }
        if (s.on_epoch) s.on_epoch();
    }
    model.eval();
}

std::vector<double> predict_probs(const data::Dataset& ds, std::int64_t classes,
                                  const std::function<Var(const Var&)>& logits) {
    const auto c = static_cast<std::size_t>(classes);
    std::vector<double> probs(ds.n * c, 0.0);
    NoGradScope ng;
    std::vector<std::size_t> idx;
    std::vector<std::int32_t> yb;
    for (std::size_t lo = 0; lo < ds.n; lo += 500) {
        const std::size_t hi = std::min(ds.n, lo + 500);
        idx.resize(hi - lo);
        for (std::size_t i = lo; i < hi; ++i) idx[i - lo] = i;
        Var p = softmax(logits(Var(data::batch_tensor(ds, idx, yb))), -1);
        if (p.dim(1) != classes)
            throw ShapeError(
                fmt::format("predict_probs: logits have {} classes, expected {}", p.dim(1), classes));
        const Tensor& v = p.value();
        for (std::size_t i = 0; i < (hi - lo) * c; ++i)
            probs[lo * c + i] = v.flat(static_cast<std::int64_t>(i));
        reset_tape();
    }
    return probs;
}

std::vector<double> mutual_information(const std::vector<std::vector<double>>& samples,
                                       std::int64_t classes) {
    if (samples.empty()) throw std::invalid_argument("mutual_information: no samples");
    const auto c = static_cast<std::size_t>(classes);
    const std::size_t n = samples[0].size() / c;
    const double k = static_cast<double>(samples.size());
    auto plogp = [](double p) { return p > 0 ? p * std::log(p) : 0.0; };
    std::vector<double> mi(n, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        double mean_entropy = 0.0;
        for (std::size_t j = 0; j < c; ++j) {
            double m = 0.0;
            for (const auto& s : samples) {
                m += s[i * c + j] / k;
                mean_entropy -= plogp(s[i * c + j]) / k;
            }
            mi[i] -= plogp(m);
        }
        mi[i] = std::max(0.0, mi[i] - mean_entropy);  // >= 0 in exact arithmetic (Jensen)
    }
    return mi;
}

}  // namespace sdeuq::nn
