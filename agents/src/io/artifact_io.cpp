#include "io/artifact_io.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "modiff/agents/artifact.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"

namespace modiff::agents {

namespace {
constexpr double kMaxNormalizerValue = 1e6, kMinNormalizerStd = 1e-8;
}  // namespace

void save_tensors(const std::string& path, const NamedTensors& tensors) {
  torch::serialize::OutputArchive archive;
  for (const auto& [name, t] : tensors) archive.write(name, t.detach().to(torch::kCPU));
  save_archive(archive, path);
}

void load_tensors_into(const std::string& path, const NamedTensors& tensors) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const std::exception&) {
    throw Error(path + ": cannot read (corrupt or not a LibTorch archive)");
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : tensors) {
    torch::Tensor loaded;
    bool found = false;
    try {
      found = archive.try_read(name, loaded);
    } catch (const std::exception&) {  // an entry of that name that is no tensor (a crafted archive)
      throw Error(path + ": entry '" + name + "' is not a tensor");
    }
    if (!found) throw Error(path + ": tensor '" + name + "' missing");
    if (loaded.sizes() != t.sizes())
      throw Error(path + ": tensor '" + name + "' has " + std::to_string(loaded.numel()) + " values where " +
                  std::to_string(t.numel()) + " are expected (another architecture?)");
    if (loaded.scalar_type() != t.scalar_type())
      throw Error(path + ": tensor '" + name + "' holds " + std::string(c10::toString(loaded.scalar_type())) +
                  " values where " + c10::toString(t.scalar_type()) + " are expected");
    // A module of NaN weights would "guide" exactly like no guidance; refuse it by name.
    if (loaded.is_floating_point() && !torch::isfinite(loaded).all().item<bool>())
      throw Error(path + ": tensor '" + name + "' holds NaN or infinite values");
    try {
      t.copy_(loaded);
    } catch (const std::exception&) {  // a layout LibTorch cannot copy from (a crafted archive)
      throw Error(path + ": tensor '" + name + "' cannot be read into the module");
    }
  }
}

void to_json(nlohmann::json& j, const GuidanceConfig& c) {
  j = {{"kind", c.kind},         {"hidden", c.hidden},
          {"layers", c.layers},     {"activation", activation_name(c.activation)},
          {"discount", c.discount}, {"tau", c.tau},
          {"expectile", c.expectile}, {"lr", c.lr},
          {"lr_decay_steps", c.lr_decay_steps}, {"max_grad_norm", c.max_grad_norm},
          {"scale_rewards", c.scale_rewards}, {"normalize_obs", c.normalize_obs}};
}

namespace {

// A size read from a manifest, checked before it sizes a network: a crafted 10^9 would allocate without end.
int size_in(const nlohmann::json& j, const char* key, int lo, int hi) {
  const long long v = j.at(key).get<long long>();
  if (v < lo || v > hi)
    throw Error(std::string("hyperparameter ") + key + " = " + std::to_string(v) + " is outside " + std::to_string(lo) +
                ".." + std::to_string(hi));
  return static_cast<int>(v);
}

// A named choice of a manifest: one of `known`, else refused (never read as another one).
std::string choice_in(const nlohmann::json& j, const char* key, const std::vector<std::string>& known) {
  const std::string v = j.at(key).get<std::string>();
  std::string list;
  for (const auto& k : known) {
    if (v == k) return v;
    list += (list.empty() ? "" : ", ") + k;
  }
  throw Error(std::string("hyperparameter ") + key + " = '" + v + "' is not one of " + list);
}

}  // namespace

void from_json(const nlohmann::json& j, GuidanceConfig& c) {
  c.kind = j.at("kind");
  c.hidden = size_in(j, "hidden", 1, 65536);
  c.layers = size_in(j, "layers", 1, 64);
  c.activation = parse_activation(j.at("activation"));
  c.discount = j.at("discount");
  c.tau = j.at("tau");
  c.expectile = j.at("expectile");
  c.lr = j.at("lr");
  c.lr_decay_steps = j.at("lr_decay_steps");
  c.max_grad_norm = j.at("max_grad_norm");
  c.scale_rewards = j.at("scale_rewards");
  c.normalize_obs = j.at("normalize_obs");
}

void to_json(nlohmann::json& j, const DiffusionPolicyConfig& c) {
  const auto& d = c.denoiser;
  j = {{"denoiser",
           {{"kind", d.kind}, {"hidden", d.hidden}, {"blocks", d.blocks}, {"block_width", d.block_width},
            {"dropout", d.dropout}, {"time_dim", d.time_dim}, {"activation", activation_name(d.activation)},
            {"cond_dim", d.cond_dim}}},
          {"diffusion",
           {{"schedule", c.diffusion.schedule}, {"steps", c.diffusion.steps}, {"sampler", c.diffusion.sampler},
            {"loss", c.diffusion.loss}}},
          {"optimizer",
           {{"lr", c.adam.lr}, {"beta1", c.adam.beta1}, {"beta2", c.adam.beta2}, {"eps", c.adam.eps},
            {"weight_decay", c.adam.weight_decay}, {"decay_steps", c.adam.decay_steps},
            {"max_grad_norm", c.adam.max_grad_norm}}},
          {"ema_rate", c.ema_rate},
          {"ema_start", c.ema_start},
          {"ema_every", c.ema_every},
          {"sample_with_ema", c.sample_with_ema},
          {"normalize_obs", c.normalize_obs},
          {"cond_dropout", c.cond_dropout},
          {"guide_weight", c.guide_weight},
          {"target_quantile", c.target_quantile},
          {"candidates", c.candidates},
          {"select", c.select}};
  // Written where it matters only, so that the other samplers' manifests stay as they were.
  if (c.diffusion.sampler == "dpm-solver") j["diffusion"]["solver_passes"] = c.diffusion.solver_passes;
}

void from_json(const nlohmann::json& j, DiffusionPolicyConfig& c) {
  const auto& d = j.at("denoiser");
  c.denoiser.kind = d.at("kind");
  c.denoiser.hidden = size_in(d, "hidden", 1, 65536);
  c.denoiser.blocks = size_in(d, "blocks", 0, 64);
  c.denoiser.block_width = size_in(d, "block_width", 1, 65536);
  c.denoiser.dropout = d.at("dropout");
  c.denoiser.time_dim = size_in(d, "time_dim", 0, 65536);
  c.denoiser.activation = parse_activation(d.at("activation"));
  c.denoiser.cond_dim = size_in(d, "cond_dim", 0, 4096);
  const auto& f = j.at("diffusion");
  c.diffusion.schedule = f.at("schedule");
  c.diffusion.steps = size_in(f, "steps", 1, 1000);
  c.diffusion.sampler = choice_in(f, "sampler", {"eps-clip", "posterior", "dpm-solver"});
  if (c.diffusion.sampler == "dpm-solver")
    c.diffusion.solver_passes = size_in(f, "solver_passes", 1, c.diffusion.steps);
  c.diffusion.loss = choice_in(f, "loss", {"sum", "mean"});
  const auto& o = j.at("optimizer");
  c.adam.lr = o.at("lr");
  c.adam.beta1 = o.at("beta1");
  c.adam.beta2 = o.at("beta2");
  c.adam.eps = o.at("eps");
  c.adam.weight_decay = o.at("weight_decay");
  c.adam.decay_steps = o.at("decay_steps");
  c.adam.max_grad_norm = o.at("max_grad_norm");
  c.ema_rate = j.at("ema_rate");
  c.ema_start = j.at("ema_start");
  c.ema_every = j.at("ema_every");
  c.sample_with_ema = j.at("sample_with_ema");
  c.normalize_obs = j.at("normalize_obs");
  c.cond_dropout = j.at("cond_dropout");
  c.guide_weight = j.at("guide_weight");
  c.target_quantile = j.at("target_quantile");
  c.candidates = size_in(j, "candidates", 1, 4096);
  c.select = j.at("select");
}

void to_json(nlohmann::json& j, const Normalizer& n) { j = {{"mean", n.mean}, {"std", n.std}}; }

Normalizer normalizer_from_json(const nlohmann::json& j, int dim, torch::Device device) {
  auto mean = j.at("mean").get<std::vector<float>>();
  auto std = j.at("std").get<std::vector<float>>();
  if (static_cast<int>(mean.size()) != dim || static_cast<int>(std.size()) != dim)
    throw Error("observation_normalization: expected " + std::to_string(dim) + " values");
  // Observations of the locomotion envs are of order 1-100: statistics far outside that are a corrupt file.
  for (float m : mean)
    if (!std::isfinite(m) || std::abs(m) > kMaxNormalizerValue)
      throw Error("observation_normalization: mean " + std::to_string(m) + " is not finite or beyond 1e6");
  for (float s : std)
    if (!(s >= kMinNormalizerStd) || !(s <= kMaxNormalizerValue))
      throw Error("observation_normalization: std " + std::to_string(s) + " is not in [1e-8, 1e6]");
  return Normalizer::from(mean, std, device);
}

namespace {

double finite_positive(double v, const std::string& dir, const char* key) {
  if (!std::isfinite(v) || !(v > 0)) throw Error(dir + "/manifest.json: " + key + " must be finite and positive");
  return v;
}

nlohmann::json read_manifest_json(const ArtifactInfo& info) { return nlohmann::json::parse(info.manifest_text); }

template <typename F>
auto with_manifest_context(const std::string& dir, F&& f) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(dir + "/manifest.json: missing or mistyped key (" + std::string(e.what()) + ")");
  }
}

}  // namespace

std::unique_ptr<GuidanceModule> load_guidance(const std::string& dir, torch::Device device,
                                              Implementation implementation) {
  const ArtifactInfo info = read_artifact(dir, "guidance");
  auto module = with_manifest_context(dir, [&] {
    const auto j = read_manifest_json(info);
    const auto config = j.at("hyperparameters").get<GuidanceConfig>();
    if (config.kind != info.algorithm) throw Error(dir + "/manifest.json: algorithm and hyperparameters.kind disagree");
    return std::make_unique<GuidanceModule>(config, info.obs_dim, info.act_dim,
                                            normalizer_from_json(j.at("observation_normalization"), info.obs_dim, device),
                                            finite_positive(j.at("reward_scale").get<double>(), dir, "reward_scale"), device,
                                            implementation);
  });
  module->freeze();
  load_tensors_into(dir + "/weights.pt", module->weights());
  return module;
}

std::unique_ptr<DiffusionModel> load_diffusion(const std::string& dir, torch::Device device,
                                               Implementation implementation) {
  const ArtifactInfo info = read_artifact(dir, "diffusion");
  auto model = with_manifest_context(dir, [&] {
    const auto j = read_manifest_json(info);
    auto m = std::make_unique<DiffusionModel>(j.at("hyperparameters").get<DiffusionPolicyConfig>(), info.obs_dim,
                                              info.act_dim,
                                              normalizer_from_json(j.at("observation_normalization"), info.obs_dim, device),
                                              device, /*trainable=*/false, implementation);
    if (m->conditioned()) {
      const auto& labels = j.at("labels");
      m->label_mean = labels.at("mean");
      m->label_std = finite_positive(labels.at("std").get<double>(), dir, "labels.std");
      m->target_label = labels.at("target");
      if (!std::isfinite(m->label_mean) || !std::isfinite(m->target_label))
        throw Error(dir + "/manifest.json: labels.mean and labels.target must be finite");
    }
    return m;
  });
  load_tensors_into(dir + "/weights.pt", model->weights());
  return model;
}

}  // namespace modiff::agents
