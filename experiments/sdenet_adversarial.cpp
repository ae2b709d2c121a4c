// sdenet_adversarial: SDE-Net's third study (Kong et al. 2020, Section 5.3), adversarial robustness on MNIST.
//
// FGSM and PGD (L-infinity; PGD with a random start, --pgd-steps steps of 2.5 epsilon / steps) at several
// epsilons on MNIST test images, against each method: the deterministic conv net, MC dropout and a deep
// ensemble (the networks of mnist_baselines, trained here on pixels in [0, 1] that they standardise
// internally), and SDE-Net. Reported per method, attack and epsilon: the accuracy under attack and the
// AUROC with which each of the method's uncertainty scores separates the adversarial images from the same
// images clean (1 - max probability, predictive entropy, mutual information for the stochastic methods
// and the ensemble, and SDE-Net's diffusion g(h0(x))).
//
// Attacks on stochastic models use the expected gradient over --attack-passes passes (nn/attacks.hpp);
// the ensemble is attacked through its averaged probabilities; SDE-Net is attacked and evaluated at
// each --sigma-eval (500, the reference's evaluation sigma, and 20, the training sigma). The reference repository has no adversarial study
// (REFERENCES.md), so the epsilons and the protocol are ours, written down in results.json.
//
// The models are trained by this program (checkpointed after every epoch in out/checkpoints/; a killed run
// resumes), or, with --models-from DIR, read from sdenet_mnist's training checkpoints in DIR (the models of
// its MNIST-in study, e.g. reports/results/sdenet_mnist_full/checkpoints: their architecture comes from the
// checkpoints' metadata, and the CRC-32 of each one's weights goes into the configuration). Each method's attack
// results are checkpointed too, so a resumed run skips finished methods; --part I/N attacks only every N-th
// method (in the order of the results) and exits without results, so that N processes share the attacks and
// the same command without --part then writes the results.
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <zlib.h>

#include "experiments/common.hpp"
#include "experiments/mnist_study.hpp"
#include "nn/attacks.hpp"
#include "nn/metrics.hpp"

using namespace sdeuq;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Settings {
    study::ConvSettings conv;
    study::SdeNetSettings sdenet;
    double dropout = 0.1;
    int ensemble = 3;
    std::size_t train_subset = 10000;  // 0 = all 60,000 (10,000: mnist_baselines' quick mode)
    std::size_t attack_subset = 100;  // test images attacked
    std::vector<double> epsilons = {0.05, 0.1, 0.2, 0.3};
    int pgd_steps = 10;
    int attack_passes = 3;  // expected gradient over this many passes (MC dropout, SDE-Net); full: 10
    int eval_passes = 10;   // predictive passes (MC dropout masks, SDE-Net Brownian paths)
    std::size_t attack_batch = 100;
    // SDE-Net is attacked and evaluated at each: the reference's evaluation sigma and the training sigma.
    std::vector<double> sigma_eval = {500.0, 20.0};
    std::vector<std::string> methods = {"deterministic", "mc_dropout", "deep_ensemble", "sdenet"};
    std::string models_from;  // sdenet_mnist's checkpoint directory; "" = train the models here
    std::vector<int> part;    // {I, N}: attack methods I, I + N, ...; empty: all
};

// ---- --models-from: the trained models of sdenet_mnist's MNIST-in study

// A checkpoint's metadata and the CRC-32 (zlib) of its model weights: every "param/" and "buffer/" entry's
// name and bytes in the file's order. Unlike the file's bytes (its metadata holds the training's wall
// times), the weights' CRC is the same for every run that trains the same weights, so that it can identify
// the models in a configuration that must regenerate byte for byte.
struct CheckpointInfo {
    json meta;
    std::string weights_crc32;
};

// Reads the checkpoint at p, or throws a runtime_error naming the file and what to run.
CheckpointInfo checkpoint_info(const fs::path& p) {
    if (!fs::exists(p))
        throw std::runtime_error(fmt::format(
            "--models-from: {} does not exist: train the models with sdenet_mnist (MNIST in) and pass its "
            "--checkpoints directory (e.g. reports/results/sdenet_mnist_full/checkpoints)",
            p.string()));
    const nn::CheckpointFile ck = nn::read_checkpoint_file(p.string());
    CheckpointInfo info{json::parse(ck.metadata, nullptr, false), ""};
    if (info.meta.is_discarded() || !info.meta.is_object())
        throw std::runtime_error(fmt::format("--models-from: {}: its metadata is not a JSON object", p.string()));
    uLong crc = crc32(0L, Z_NULL, 0);
    for (const auto& e : ck.entries) {
        if (e.name.rfind("param/", 0) != 0 && e.name.rfind("buffer/", 0) != 0) continue;
        crc = crc32(crc, reinterpret_cast<const Bytef*>(e.name.data()), static_cast<uInt>(e.name.size()));
        crc = crc32(crc, e.data.data(), static_cast<uInt>(e.data.size()));
    }
    info.weights_crc32 = fmt::format("{:08x}", static_cast<std::uint32_t>(crc));
    return info;
}

// Throws unless the checkpoint at p, with metadata meta, finished all `epochs` of its training.
void require_trained(const fs::path& p, const json& meta, int epochs) {
    const int done = meta.value("epochs_done", 0);
    if (done != epochs)
        throw std::runtime_error(fmt::format(
            "--models-from: {} holds {} of its {} training epochs: finish sdenet_mnist's training first "
            "(the same sdenet_mnist command resumes from it)",
            p.string(), done, epochs));
}

// What the checkpoints in dir say the models are: the baselines' settings (from member 0's identity) and
// SDE-Net's (from its config key), each file's epochs and weights' CRC-32; checks that every checkpoint
// the methods need exists, belongs to sdenet_mnist's MNIST-in study, agrees with the others and is fully
// trained. Fills s.conv, s.dropout, s.ensemble and s.sdenet.
json read_models(const fs::path& dir, Settings& s, bool need_member0, bool need_ensemble, bool need_dropout,
                 bool need_sdenet) {
    json prov = {{"experiment", "sdenet_mnist"}, {"dataset", "mnist"}, {"files", json::object()}};
    auto record = [&](const fs::path& p, const CheckpointInfo& info) {
        prov["files"][p.filename().string()] = {{"epochs_done", info.meta.value("epochs_done", 0)},
                                                {"weights_crc32", info.weights_crc32}};
    };
    if (need_member0 || need_ensemble || need_dropout) {
        const fs::path p0 = dir / "mnist_member0.ckpt";
        const json id = checkpoint_info(p0).meta.value("identity", json::object());
        if (id.value("experiment", "") != "sdenet_mnist" || id.value("dataset", "") != "mnist" ||
            !id.contains("config") || !id["config"].contains("baseline"))
            throw std::runtime_error(fmt::format(
                "--models-from: {} is not a baseline checkpoint of sdenet_mnist's MNIST-in study (its identity "
                "names experiment '{}', data set '{}')",
                p0.string(), id.value("experiment", ""), id.value("dataset", "")));
        const json& b = id["config"]["baseline"];
        s.conv.epochs = b.at("epochs").get<int>();
        s.conv.lr = b.at("lr").get<double>();
        s.conv.width = b.at("width").get<std::int64_t>();
        s.conv.groups = b.at("groups").get<int>();
        s.conv.blocks = b.at("residual_blocks").get<int>();
        s.dropout = b.at("dropout").get<double>();
        s.ensemble = b.at("ensemble").get<int>();
        prov["baseline_identity"] = id;
        prov["baseline_identity"].erase("slot");
        const int members = need_ensemble ? s.ensemble : (need_member0 ? 1 : 0);
        for (int k = 0; k < members + (need_dropout ? 1 : 0); ++k) {
            const std::string slot = k < members ? fmt::format("member{}", k) : "dropout";
            const fs::path p = dir / ("mnist_" + slot + ".ckpt");
            const CheckpointInfo info = checkpoint_info(p);
            const json& meta = info.meta;
            json idk = meta.value("identity", json::object());
            if (idk.value("slot", "") != slot)
                throw std::runtime_error(fmt::format("--models-from: {} holds slot '{}', not '{}'", p.string(),
                                                     idk.value("slot", ""), slot));
            idk.erase("slot");
            if (idk != prov["baseline_identity"])
                throw std::runtime_error(fmt::format(
                    "--models-from: {} was trained by another sdenet_mnist run than {} (their identities differ)",
                    p.string(), p0.string()));
            require_trained(p, meta, s.conv.epochs);
            record(p, info);
        }
    }
    if (need_sdenet) {
        const fs::path p = dir / "mnist_sdenet.ckpt";
        const CheckpointInfo info = checkpoint_info(p);
        const json& meta = info.meta;
        // sdenet_mnist's key: <its configuration as JSON>|seed=<seed>|in=<data set>
        const std::string key = meta.value("config", "");
        const auto bar = key.rfind("|seed=");
        const json c = bar == std::string::npos ? json() : json::parse(key.substr(0, bar), nullptr, false);
        if (bar == std::string::npos || c.is_discarded() || !c.is_object() || !key.ends_with("|in=mnist"))
            throw std::runtime_error(fmt::format(
                "--models-from: {} is not an SDE-Net checkpoint of sdenet_mnist's MNIST-in study", p.string()));
        s.sdenet.epochs = c.at("epochs").get<int>();
        s.sdenet.width = c.at("width").get<std::int64_t>();
        s.sdenet.max_groups = c.at("max_groups").get<int>();
        s.sdenet.batch = c.at("batch").get<std::size_t>();
        s.sdenet.lr = c.at("lr").get<double>();
        s.sdenet.lr_diffusion = c.at("lr_diffusion").get<double>();
        s.sdenet.sigma_train = c.at("sigma_train").get<double>();
        prov["sdenet_config"] = key;
        require_trained(p, meta, s.sdenet.epochs);
        record(p, info);
    }
    return prov;
}

// Loads a baseline conv net (built from s.conv and dropout) from checkpoint p; evaluation mode.
study::PixelConvNet load_convnet(const fs::path& p, const Settings& s, double dropout) {
    study::PixelConvNet m{study::make_convnet(s.conv, dropout, 0)};
    auto gens = m.net->named_generators();
    nn::load_checkpoint(p.string(), *m.net, nullptr, gens);
    m.net->eval();
    return m;
}

// Loads SDE-Net (built from s.sdenet) from checkpoint p; at sigma_eval, evaluation mode.
std::unique_ptr<sde::SdeNet> load_sdenet(const fs::path& p, const Settings& s) {
    auto net = study::make_sdenet(s.sdenet, 0);
    sde::SdeNetTrainer trainer(*net, s.sdenet.train_config(), 0);
    sde::load_sdenet_checkpoint(p.string(), *net, trainer);
    net->set_sigma(s.sdenet.sigma_eval);
    net->eval();
    return net;
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t tag) {
    Generator g = Generator(seed, 0xad7e'5a41).fork(tag);
    const std::uint64_t hi = g(), lo = g();
    return (hi << 32) | lo;
}

// A method under attack: how to attack it, how to predict (per-pass probabilities) and extra scores.
struct Method {
    std::string name;
    nn::Classifier classifier;
    std::function<std::vector<std::vector<double>>(const Tensor&)> pass_probs;
    // Extra uncertainty scores (higher = more uncertain), e.g. the diffusion.
    std::function<std::vector<std::pair<std::string, std::vector<double>>>(const Tensor&)> extra_scores;
};

// Uncertainty scores (higher = more uncertain) from per-pass probabilities: "max_prob" is 1 - max_c p_c
// (its AUROC is that of the max probability with clean images as the positives).
std::vector<std::pair<std::string, std::vector<double>>> scores_of(const std::vector<std::vector<double>>& pp) {
    const std::vector<double> mean = study::mean_probs(pp);
    std::vector<double> conf = metrics::max_prob(std::span<const double>(mean), 10);
    for (auto& c : conf) c = 1.0 - c;
    std::vector<double> ent = metrics::predictive_entropy(std::span<const double>(mean), 10);
    std::vector<std::pair<std::string, std::vector<double>>> out = {{"max_prob", conf}, {"entropy", ent}};
    if (pp.size() > 1) {
        // Mutual information I(y; w | x) = H(mean_k p_k) - mean_k H(p_k) (Houlsby et al. 2011, BALD; the
        // epistemic part of the predictive entropy).
        std::vector<double> mi = ent;
        for (auto& p : pp) {
            const auto hk = metrics::predictive_entropy(std::span<const double>(p), 10);
            for (std::size_t i = 0; i < mi.size(); ++i) mi[i] -= hk[i] / static_cast<double>(pp.size());
        }
        out.emplace_back("mutual_information", mi);
    }
    return out;
}

// The mean of a score as reported: the max probability itself (not 1 - it), the others as they are.
double mean_score(const std::pair<std::string, std::vector<double>>& s) {
    const double m = metrics::mean(s.second);
    return s.first == "max_prob" ? 1.0 - m : m;
}

json evaluate(const Method& m, const Tensor& x, std::span<const std::int32_t> y,
              std::vector<std::pair<std::string, std::vector<double>>>& scores) {
    const auto pp = m.pass_probs(x);
    scores = scores_of(pp);
    if (m.extra_scores)
        for (auto& s : m.extra_scores(x)) scores.push_back(s);
    const auto mean = study::mean_probs(pp);
    return {{"accuracy", metrics::accuracy(std::span<const double>(mean), y, 10)},
            {"nll", metrics::nll(std::span<const double>(mean), y, 10)}};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"sdenet_adversarial: FGSM and PGD against a conv net, MC dropout, a deep ensemble and SDE-Net on MNIST"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/sdenet_adversarial");
    Settings s;
    s.conv.epochs = 2;  // quick: 2 epochs of the first 10,000 images (full: 20 of 60,000, mnist_baselines')
    s.sdenet.epochs = 2;
    auto* o_epochs = app.add_option("--epochs", s.conv.epochs, "baseline training epochs")->check(CLI::Range(1, 1000));
    auto* o_sepochs = app.add_option("--sdenet-epochs", s.sdenet.epochs, "SDE-Net training epochs")->check(CLI::Range(1, 1000));
    auto* o_width = app.add_option("--width", s.conv.width, "baseline conv channels")->check(CLI::Range(1, 512));
    auto* o_groups = app.add_option("--groups", s.conv.groups, "baseline GroupNorm groups (must divide --width)")
                         ->check(CLI::Range(1, 512));
    auto* o_blocks = app.add_option("--blocks", s.conv.blocks, "baseline residual conv blocks")->check(CLI::Range(0, 32));
    auto* o_swidth = app.add_option("--sdenet-width", s.sdenet.width, "SDE-Net state channels")->check(CLI::Range(2, 512));
    auto* o_sgroups = app.add_option("--sdenet-groups", s.sdenet.max_groups,
                                     "SDE-Net GroupNorm groups min(this, width), >= 2 channels per group")
                          ->check(CLI::Range(1, 512));
    auto* o_ens = app.add_option("--ensemble", s.ensemble, "ensemble members")->check(CLI::Range(1, 50));
    auto* o_train = app.add_option("--train-subset", s.train_subset, "training images (0 = all 60,000)");
    auto* o_attack = app.add_option("--attack-subset", s.attack_subset, "test images attacked (1-10000)")
                         ->check(CLI::Range(1, 10000));
    app.add_option("--epsilons", s.epsilons, "L-infinity budgets (pixels in [0, 1])")->check(CLI::Range(0.0, 1.0));
    app.add_option("--pgd-steps", s.pgd_steps, "PGD steps")->check(CLI::Range(1, 1000));
    auto* o_apasses = app.add_option("--attack-passes", s.attack_passes,
                                     "passes averaged in a stochastic model's attack gradient")->check(CLI::Range(1, 1000));
    app.add_option("--eval-passes", s.eval_passes, "predictive passes (MC dropout, SDE-Net)")->check(CLI::Range(1, 1000));
    app.add_option("--sigma-eval", s.sigma_eval, "SDE-Net's diffusion scales when attacked and evaluated (each a row)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--lr", s.conv.lr, "baseline Adam learning rate")->check(CLI::PositiveNumber);
    app.add_option("--methods", s.methods, "methods to attack")
        ->check(CLI::IsMember({"deterministic", "mc_dropout", "deep_ensemble", "sdenet"}));
    app.add_option("--models-from", s.models_from,
                   "attack the models trained by sdenet_mnist (MNIST in) from its checkpoint directory (e.g. "
                   "reports/results/sdenet_mnist_full/checkpoints) instead of training them here; their "
                   "settings come from the checkpoints")
        ->check(CLI::ExistingDirectory);
    app.add_option("--part", s.part,
                   "I/N: attack only the methods I, I + N, ... (0-based, in the order of the results; SDE-Net "
                   "counts once per --sigma-eval) to their checkpoints and exit without results; the same "
                   "command without --part then writes the results")
        ->delimiter('/')
        ->expected(2);
    SDEUQ_PARSE(app, argc, argv);
    if (!s.part.empty() && (s.part[1] < 1 || s.part[0] < 0 || s.part[0] >= s.part[1])) {
        std::fprintf(stderr, "sdenet_adversarial: --part %d/%d: I/N needs N >= 1 and 0 <= I < N\n", s.part[0],
                     s.part[1]);
        return 2;
    }
    if (!s.models_from.empty())
        for (auto* o : {o_epochs, o_sepochs, o_width, o_groups, o_blocks, o_swidth, o_sgroups, o_ens, o_train,
                        app.get_option("--lr")})
            if (o->count()) {
                std::fprintf(stderr, "sdenet_adversarial: %s sets how a model is trained; with --models-from the "
                             "models come trained, with the settings in their checkpoints: drop it\n",
                             o->get_name().c_str());
                return 2;
            }
    if (!args.quick) {  // the paper-scale models: mnist_baselines' full networks and the reference SDE-Net
        if (!o_epochs->count()) s.conv.epochs = 20;
        if (!o_width->count()) s.conv.width = 64;
        if (!o_groups->count()) s.conv.groups = 32;
        if (!app.count("--lr")) s.conv.lr = 1e-3;
        if (!o_blocks->count()) s.conv.blocks = 2;
        if (!o_ens->count()) s.ensemble = 5;
        if (!o_train->count()) s.train_subset = 0;
        if (!o_attack->count()) s.attack_subset = 1000;
        if (!o_sepochs->count()) s.sdenet.epochs = 40;
        if (!o_swidth->count()) s.sdenet.width = 64;
        if (!o_sgroups->count()) s.sdenet.max_groups = 32;  // the reference's 32 groups of 2 channels
        if (!o_apasses->count()) s.attack_passes = 10;
    }
    if (const auto err = study::sdenet_groups_error(s.sdenet.width, s.sdenet.max_groups, "--sdenet-width",
                                                    "--sdenet-groups");
        !err.empty()) {
        std::fprintf(stderr, "sdenet_adversarial: %s\n", err.c_str());
        return 2;
    }
    if (s.conv.width % s.conv.groups != 0) {
        std::fprintf(stderr, "sdenet_adversarial: --groups %d must divide --width %lld\n", s.conv.groups,
                     static_cast<long long>(s.conv.width));
        return 2;
    }
    auto wants = [&](const std::string& m) { return std::find(s.methods.begin(), s.methods.end(), m) != s.methods.end(); };
    json models_from;  // what --models-from read
    if (!s.models_from.empty()) {
        try {
            models_from = read_models(s.models_from, s, wants("deterministic"), wants("deep_ensemble"),
                                      wants("mc_dropout"), wants("sdenet"));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "sdenet_adversarial: %s\n", e.what());
            return 1;
        }
        models_from["dir"] = s.models_from;
    }
    experiment::apply_common(args);
    data::Dataset train, test;
    try {
        const fs::path dir = data::resolve_data_dir(args.data);
        if (s.models_from.empty()) train = data::load_mnist(dir, data::Split::train);
        test = data::load_mnist(dir, data::Split::test);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sdenet_adversarial: %s\n", e.what());
        return 1;
    }
    const std::size_t n_train = s.train_subset == 0 ? train.n : std::min(s.train_subset, train.n);
    const auto train_idx = study::first_n(n_train);
    const Tensor x_train = s.models_from.empty() ? study::images(train, train_idx) : Tensor();
    const auto y_train = study::labels(train, train_idx);
    const auto test_idx = study::first_n(std::min(s.attack_subset, test.n));
    const Tensor x_test = study::images(test, test_idx);
    const auto y_test = study::labels(test, test_idx);

    json config = {{"baseline", s.conv.json()},
                   {"sdenet", s.sdenet.json()},
                   {"dropout", s.dropout},
                   {"ensemble", s.ensemble},
                   {"train_subset", n_train},
                   {"attack_subset", test_idx.size()},
                   {"epsilons", s.epsilons},
                   {"pgd_steps", s.pgd_steps},
                   {"pgd_step_size", "2.5 epsilon / steps"},
                   {"pgd_random_start", true},
                   {"attack_passes", s.attack_passes},
                   {"sdenet_sigma_eval", s.sigma_eval},
                   {"eval_passes", s.eval_passes},
                   {"methods", s.methods},
                   {"attack_loss", "cross-entropy of the logits; -log of the averaged probability (ensemble)"},
                   {"auroc", "adversarial (positive) vs the same images clean, score = uncertainty"}};
    config["sdenet"].erase("sigma_eval");  // see sdenet_sigma_eval
    if (!s.models_from.empty()) {  // trained by sdenet_mnist: its settings and files, not this program's
        config.erase("train_subset");
        config["models_from"] = models_from;
        config["sdenet"].erase("milestones");  // sdenet_mnist's own: in models_from.sdenet_config
    }
    const std::string key = config.dump() + fmt::format("|seed={}", args.seed);
    const fs::path ck_dir = fs::path(args.out) / "checkpoints";
    fs::create_directories(ck_dir);
    auto ck = [&](const std::string& m) { return (ck_dir / (m + ".ckpt")).string(); };
    json timings;

    // ---- models ----
    std::vector<study::PixelConvNet> members;
    study::PixelConvNet dropout_net;
    std::unique_ptr<sde::SdeNet> sdenet;
    const int n_members = wants("deep_ensemble") ? s.ensemble : (wants("deterministic") ? 1 : 0);
    if (!s.models_from.empty()) {
        try {
            const fs::path dir = s.models_from;
            for (int k = 0; k < n_members; ++k)
                members.push_back(load_convnet(dir / fmt::format("mnist_member{}.ckpt", k), s, 0.0));
            if (wants("mc_dropout")) dropout_net = load_convnet(dir / "mnist_dropout.ckpt", s, s.dropout);
            if (wants("sdenet")) sdenet = load_sdenet(dir / "mnist_sdenet.ckpt", s);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "sdenet_adversarial: --models-from: %s\n", e.what());
            return 1;
        }
    }
    for (int k = 0; k < (s.models_from.empty() ? n_members : 0); ++k) {
        std::vector<double> secs;
        members.push_back(study::train_convnet(x_train, y_train, 0.0, derive_seed(args.seed, 100 + k), s.conv,
                                               ck(fmt::format("member{}", k)), key, args.resume, &secs));
        timings["train_seconds_per_epoch"][fmt::format("member{}", k)] = secs;
        std::fprintf(stderr, "sdenet_adversarial: ensemble member %d trained\n", k);
    }
    if (wants("mc_dropout") && s.models_from.empty()) {
        std::vector<double> secs;
        dropout_net = study::train_convnet(x_train, y_train, s.dropout, derive_seed(args.seed, 200), s.conv,
                                           ck("dropout"), key, args.resume, &secs);
        timings["train_seconds_per_epoch"]["mc_dropout"] = secs;
        std::fprintf(stderr, "sdenet_adversarial: MC dropout net trained\n");
    }
    if (wants("sdenet") && s.models_from.empty()) {
        std::vector<double> secs;
        sdenet = study::train_sdenet(x_train, y_train, derive_seed(args.seed, 300), s.sdenet, ck("sdenet"), key,
                                     args.resume, &secs);
        timings["train_seconds_per_epoch"]["sdenet"] = secs;
        std::fprintf(stderr, "sdenet_adversarial: SDE-Net trained\n");
    }

    // ---- the methods as the attacks see them ----
    std::vector<Method> methods;
    if (wants("deterministic")) {
        auto* m0 = &members[0];
        methods.push_back({"deterministic",
                           {[m0](const Var& x) { return m0->forward(x); }, nn::ClassifierOutput::logits, 1,
                            "deterministic"},
                           [m0](const Tensor& x) { return study::pass_probs([m0](const Var& v) { return m0->forward(v); }, x, 1); },
                           {}});
    }
    if (wants("mc_dropout")) {
        auto* d = &dropout_net;
        nn::set_mc_dropout(*d->net, true);
        const int ev = s.eval_passes;
        methods.push_back({"mc_dropout",
                           {[d](const Var& x) { return d->forward(x); }, nn::ClassifierOutput::logits,
                            s.attack_passes, "mc_dropout"},
                           [d, ev](const Tensor& x) { return study::pass_probs([d](const Var& v) { return d->forward(v); }, x, ev); },
                           {}});
    }
    if (wants("deep_ensemble")) {
        auto* ms = &members;
        auto avg = [ms](const Var& x) {
            Var p = softmax((*ms)[0].forward(x), -1);
            for (std::size_t k = 1; k < ms->size(); ++k) p = p + softmax((*ms)[k].forward(x), -1);
            return p * (1.0 / static_cast<double>(ms->size()));
        };
        methods.push_back({"deep_ensemble",
                           {avg, nn::ClassifierOutput::probabilities, 1, "deep_ensemble"},
                           [ms](const Tensor& x) {
                               std::vector<std::vector<double>> pp;
                               for (auto& m : *ms)
                                   pp.push_back(study::pass_probs([&m](const Var& v) { return m.forward(v); }, x, 1)[0]);
                               return pp;
                           },
                           {}});
    }
    if (wants("sdenet")) {
        // One trained SDE-Net, attacked and evaluated at each --sigma-eval (a separate "method" per sigma).
        auto* net = sdenet.get();
        const int ev = s.eval_passes;
        for (double sigma : s.sigma_eval) {
            auto fwd = [net, sigma](const Var& v) { return net->forward(v, sigma, net->noise_generator()); };
            const std::string name = fmt::format("sdenet_sigma{:g}", sigma);
            methods.push_back({name,
                               {fwd, nn::ClassifierOutput::logits, s.attack_passes, name},
                               [fwd, ev](const Tensor& x) { return study::pass_probs(fwd, x, ev); },
                               [net](const Tensor& x) {
                                   return std::vector<std::pair<std::string, std::vector<double>>>{
                                       {"diffusion", sde::diffusion_score(*net, x)}};
                               }});
        }
    }

    // ---- attacks ----
    json results;
    // Whether this process attacks method mi: all of them unless --part.
    auto mine = [&](std::size_t mi) {
        return s.part.empty() || mi % static_cast<std::size_t>(s.part[1]) == static_cast<std::size_t>(s.part[0]);
    };
    std::size_t n_mine = 0;
    for (std::size_t mi = 0; mi < methods.size(); ++mi) n_mine += mine(mi) ? 1 : 0;
    const std::int64_t total = static_cast<std::int64_t>(n_mine * 2 * s.epsilons.size());
    experiment::Progress bar("sdenet_adversarial", total);
    std::int64_t done = 0;
    // Every generator the stochastic models draw from (MC dropout's masks, SDE-Net's Brownian increments)
    // restarted from (seed, method) before each method's attack, so that a method's results do not depend on
    // which methods ran before it in the same process (--part, a resumed run).
    auto reseed = [&](std::size_t mi) {
        std::uint64_t k = 0;
        auto reset = [&](nn::Module& mod) {
            for (auto& [name, g] : mod.named_generators()) *g = Generator(derive_seed(args.seed, (std::uint64_t{1} << 40) + mi), k++);
        };
        if (dropout_net.net) reset(*dropout_net.net);
        if (sdenet) reset(*sdenet);
    };
    for (std::size_t mi = 0; mi < methods.size(); ++mi) {
        if (!mine(mi)) continue;
        const Method& m = methods[mi];
        const std::string part = (ck_dir / ("attack_" + m.name + ".json")).string();
        if (args.resume && fs::exists(part)) {
            std::ifstream in(part);
            json saved = json::parse(in);
            if (saved.value("config", "") == key) {
                results[m.name] = saved["result"];
                timings["attack_seconds"][m.name] = saved["seconds"];
                done += static_cast<std::int64_t>(2 * s.epsilons.size());
                std::fprintf(stderr, "sdenet_adversarial: %s resumed from %s\n", m.name.c_str(), part.c_str());
                continue;
            }
        }
        const double t0 = experiment::wall_seconds();
        reseed(mi);
        std::vector<std::pair<std::string, std::vector<double>>> clean_scores;
        json r;
        r["clean"] = evaluate(m, x_test, y_test, clean_scores);
        for (const std::string attack : {"fgsm", "pgd"}) {
            json rows = json::array();
            for (std::size_t ei = 0; ei < s.epsilons.size(); ++ei) {
                const double eps = s.epsilons[ei];
                Tensor adv = Tensor::empty(x_test.shape(), DType::f32);
                const std::int64_t n = x_test.dim(0), bs = static_cast<std::int64_t>(s.attack_batch);
                const std::size_t row = 28 * 28;
                for (std::int64_t lo = 0; lo < n; lo += bs) {
                    const std::int64_t hi = std::min(n, lo + bs);
                    const Tensor xb = study::rows(x_test, lo, hi);
                    std::span<const std::int32_t> yb(y_test.data() + lo, static_cast<std::size_t>(hi - lo));
                    Tensor ab;
                    if (attack == "fgsm") {
                        ab = nn::fgsm(m.classifier, xb, yb, eps);
                    } else {
                        nn::PgdOptions po;
                        po.epsilon = eps;
                        po.steps = s.pgd_steps;
                        po.seed = derive_seed(args.seed, 1000 + 100 * mi + 10 * ei + static_cast<std::uint64_t>(lo));
                        ab = nn::pgd(m.classifier, xb, yb, po).x_adv;
                    }
                    std::memcpy(adv.data<float>() + static_cast<std::size_t>(lo) * row, ab.raw(), ab.nbytes());
                }
                std::vector<std::pair<std::string, std::vector<double>>> adv_scores;
                json e = evaluate(m, adv, y_test, adv_scores);
                e["epsilon"] = eps;
                for (std::size_t k = 0; k < adv_scores.size(); ++k) {
                    std::vector<double> sc = clean_scores[k].second;
                    sc.insert(sc.end(), adv_scores[k].second.begin(), adv_scores[k].second.end());
                    std::vector<std::int32_t> lab(clean_scores[k].second.size(), 0);
                    lab.resize(sc.size(), 1);
                    e["auroc"][adv_scores[k].first] = metrics::roc_auc(sc, lab);
                    e["mean_score"][adv_scores[k].first] = mean_score(adv_scores[k]);
                }
                rows.push_back(e);
                bar.update(++done, m.name + " " + attack);
            }
            r[attack] = rows;
        }
        for (auto& sc : clean_scores) r["clean"]["mean_score"][sc.first] = mean_score(sc);
        const double secs = experiment::wall_seconds() - t0;
        results[m.name] = r;
        timings["attack_seconds"][m.name] = secs;
        experiment::write_json(part, json{{"config", key}, {"result", r}, {"seconds", secs}});
    }
    bar.finish();
    if (!s.part.empty()) {
        std::printf("sdenet_adversarial: --part %d/%d: %zu of %zu methods attacked to the checkpoints in %s; the "
                    "same command without --part writes the results\n",
                    s.part[0], s.part[1], n_mine, methods.size(), ck_dir.string().c_str());
        return 0;
    }

    std::vector<std::vector<std::string>> rows;
    const std::vector<std::string> score_names = {"max_prob", "entropy", "mutual_information", "diffusion"};
    for (auto& [method, r] : results.items()) {
        rows.push_back({method, "none", "0", experiment::num(r["clean"]["accuracy"].get<double>())});
        for (int k = 0; k < 4; ++k) rows.back().push_back("");
        for (const std::string attack : {"fgsm", "pgd"})
            for (auto& e : r[attack]) {
                std::vector<std::string> row = {method, attack, experiment::num(e["epsilon"].get<double>()),
                                                experiment::num(e["accuracy"].get<double>())};
                for (auto& sn : score_names)
                    row.push_back(e["auroc"].contains(sn) ? experiment::num(e["auroc"][sn].get<double>()) : "");
                rows.push_back(row);
            }
    }
    json out = {{"provenance", experiment::provenance("sdenet_adversarial", args, config)}, {"results", results}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("results.csv",
                   {"method", "attack", "epsilon", "accuracy", "auroc_max_prob", "auroc_entropy",
                    "auroc_mutual_information", "auroc_diffusion"},
                   rows);
    json run = experiment::run_info(args);
    run["timings"] = timings;
    result_set.json("run.json", run);
    result_set.commit();  // results.json, results.csv, run.json as one set
    for (auto& [method, r] : results.items()) {
        std::printf("%-14s clean acc %.4f\n", method.c_str(), r["clean"]["accuracy"].get<double>());
        for (const std::string attack : {"fgsm", "pgd"})
            for (auto& e : r[attack])
                std::printf("  %-4s eps %.2f  acc %.4f  AUROC(entropy) %.4f\n", attack.c_str(),
                            e["epsilon"].get<double>(), e["accuracy"].get<double>(),
                            e["auroc"]["entropy"].get<double>());
    }
    return 0;
}
