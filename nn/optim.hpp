// Optimizers (SGD with momentum / Nesterov, Adam, AdamW), learning-rate schedules and gradient clipping.
//
// Optimizers update Parameter::value() in place from Parameter::grad(), in float32 or float64 as the
// parameter is, with the arithmetic of torch.optim (PyTorch 1.13, the non-foreach path) so that results can
// be compared with it. Non-trainable parameters are skipped. State (moments, step count) lives on the heap,
// allocated at construction, and is exposed by named_state() for checkpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/tape.hpp"

namespace sdeuq::nn {

class Optimizer {
public:
    Optimizer(std::vector<Parameter*> params, double lr);
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    virtual std::string type_name() const = 0;
    // One update from the current gradients; increments step_count().
    void step();
    void zero_grad();
    double lr() const { return lr_; }
    void set_lr(double lr) { lr_ = lr; }
    std::int64_t step_count() const { return steps_; }
    void set_step_count(std::int64_t s) { steps_ = s; }
    const std::vector<Parameter*>& params() const { return params_; }
    // Per-parameter state tensors, named "<index>.<slot>" ("0.exp_avg"), for checkpoints.
    std::vector<std::pair<std::string, Tensor*>> named_state();

protected:
    // Update parameter i (trainable) at step t (1-based).
    virtual void update(std::size_t i, Parameter& p, std::int64_t t) = 0;
    // Adds a state slot of p's shape and dtype for every parameter, zero-initialised.
    void add_slot(const std::string& slot);
    Tensor& state(std::size_t i, std::size_t slot) { return state_[i][slot]; }

    std::vector<Parameter*> params_;
    double lr_;

private:
    std::int64_t steps_ = 0;
    std::vector<std::string> slots_;
    std::vector<std::vector<Tensor>> state_;
};

struct SGDOptions {
    double lr = 1e-2;
    double momentum = 0.0;
    double dampening = 0.0;
    bool nesterov = false;
    double weight_decay = 0.0;  // L2: g <- g + wd * p
};

// torch.optim.SGD: g = grad + wd p; b = g at the first step, else mu b + (1 - dampening) g;
// Nesterov (Sutskever et al. 2013, in PyTorch's form): g <- g + mu b, else g <- b; p <- p - lr g.
class SGD : public Optimizer {
public:
    SGD(std::vector<Parameter*> params, SGDOptions opt = {});
    std::string type_name() const override { return "SGD"; }

protected:
    void update(std::size_t i, Parameter& p, std::int64_t t) override;

private:
    SGDOptions opt_;
};

struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    bool decoupled = false;  // AdamW
};

// Kingma & Ba 2015, Algorithm 1 (with the bias corrections folded as in torch.optim.Adam):
//   m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,
//   p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// Weight decay: Adam adds wd p to g (L2); AdamW (Loshchilov & Hutter 2019, Algorithm 2) first scales
// p <- p (1 - lr wd), decoupled from the moments.
class Adam : public Optimizer {
public:
    Adam(std::vector<Parameter*> params, AdamOptions opt = {});
    std::string type_name() const override { return opt_.decoupled ? "AdamW" : "Adam"; }

protected:
    void update(std::size_t i, Parameter& p, std::int64_t t) override;

private:
    AdamOptions opt_;
};

// AdamW with PyTorch's default weight decay 1e-2.
class AdamW : public Adam {
public:
    AdamW(std::vector<Parameter*> params, AdamOptions opt = {.lr = 1e-3, .weight_decay = 1e-2});
};

// ---- learning-rate schedules: pure functions of the step (so a checkpoint needs only the step count) ----
class LrSchedule {
public:
    virtual ~LrSchedule() = default;
    virtual double operator()(std::int64_t step) const = 0;
    // Sets opt's learning rate for `step` (0-based: the rate used by the step about to be taken).
    void apply(Optimizer& opt, std::int64_t step) const { opt.set_lr((*this)(step)); }
};

// base * gamma^(number of milestones <= step) (torch.optim.lr_scheduler.MultiStepLR).
class MultiStepLR : public LrSchedule {
public:
    MultiStepLR(double base, std::vector<std::int64_t> milestones, double gamma = 0.1);
    double operator()(std::int64_t step) const override;

private:
    double base_, gamma_;
    std::vector<std::int64_t> milestones_;
};

// Linear warm-up from base * warmup_start_factor to base over warmup steps, then cosine decay to min_lr at
// total steps (Loshchilov & Hutter 2017, SGDR eq. 5, without restarts); min_lr after total.
class WarmupCosineLR : public LrSchedule {
public:
    WarmupCosineLR(double base, std::int64_t warmup, std::int64_t total, double min_lr = 0.0,
                   double warmup_start_factor = 0.0);
    double operator()(std::int64_t step) const override;

private:
    double base_;
    std::int64_t warmup_, total_;
    double min_lr_, start_;
};

// base * gamma^step (torch.optim.lr_scheduler.ExponentialLR).
class ExponentialLR : public LrSchedule {
public:
    ExponentialLR(double base, double gamma) : base_(base), gamma_(gamma) {}
    double operator()(std::int64_t step) const override;

private:
    double base_, gamma_;
};

// Scales all gradients by max_norm / (norm + 1e-6) if their global L2 norm exceeds max_norm (as
// torch.nn.utils.clip_grad_norm_); returns the norm before clipping. Non-trainable parameters are ignored.
double clip_grad_norm(std::span<Parameter* const> params, double max_norm);
double grad_norm(std::span<Parameter* const> params);

}  // namespace sdeuq::nn
