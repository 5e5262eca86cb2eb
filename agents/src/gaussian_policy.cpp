#include "modiff/agents/gaussian_policy.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/envs/env_spec.h"
#include "gaussian_policy_impl.h"

namespace modiff::agents {

GaussianPolicy::GaussianPolicy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GaussianPolicy::GaussianPolicy(GaussianPolicy&&) noexcept = default;
GaussianPolicy& GaussianPolicy::operator=(GaussianPolicy&&) noexcept = default;
GaussianPolicy::~GaussianPolicy() = default;

GaussianPolicy GaussianPolicy::random_init(const std::string& env_id, int hidden, uint64_t seed) {
  const auto& spec = envs::find_env(env_id);
  auto impl = std::make_unique<Impl>();
  impl->info = {spec.id, spec.obs_dim, spec.act_dim, hidden};
  torch::manual_seed(seed);
  impl->actor = Actor(spec.obs_dim, spec.act_dim, hidden);
  impl->actor->eval();
  impl->gen.set_current_seed(seed + 1);
  return GaussianPolicy(std::move(impl));
}

GaussianPolicy GaussianPolicy::load(const std::string& path) {
  std::ifstream meta(path + ".json");
  if (!meta) throw Error(path + ".json: cannot open policy description");
  nlohmann::json j;
  try {
    meta >> j;
  } catch (const std::exception& e) {
    throw Error(path + ".json: not valid JSON (" + e.what() + ")");
  }
  auto impl = std::make_unique<Impl>();
  try {
    impl->info = {j.at("env_id").get<std::string>(), j.at("obs_dim").get<int>(), j.at("act_dim").get<int>(),
                  j.at("hidden").get<int>()};
  } catch (const std::exception& e) {
    throw Error(path + ".json: missing or wrong key (" + e.what() + ")");
  }
  const auto& spec = envs::find_env(impl->info.env_id);
  if (spec.obs_dim != impl->info.obs_dim || spec.act_dim != impl->info.act_dim)
    throw Error(path + ".json: dims " + std::to_string(impl->info.obs_dim) + "/" + std::to_string(impl->info.act_dim) +
                " do not match " + spec.id);
  if (impl->info.hidden <= 0 || impl->info.hidden > 4096) throw Error(path + ".json: bad 'hidden'");
  impl->actor = Actor(impl->info.obs_dim, impl->info.act_dim, impl->info.hidden);
  try {
    torch::load(impl->actor, path);
  } catch (const std::exception& e) {
    throw Error(path + ": cannot load actor weights (corrupt or of another shape)");
  }
  impl->actor->eval();
  return GaussianPolicy(std::move(impl));
}

void GaussianPolicy::save(const std::string& path) const {
  write_atomically(path, [&](const std::string& tmp) { torch::save(impl_->actor, tmp); });
  nlohmann::json j = {{"env_id", impl_->info.env_id},
                      {"obs_dim", impl_->info.obs_dim},
                      {"act_dim", impl_->info.act_dim},
                      {"hidden", impl_->info.hidden},
                      {"kind", "sac-actor"}};
  write_text_atomically(path + ".json", j.dump(2) + "\n");
}

const PolicyFileInfo& GaussianPolicy::info() const { return impl_->info; }

void GaussianPolicy::reseed(uint64_t seed) { impl_->gen.set_current_seed(seed); }

void GaussianPolicy::act(const float* observations, int n, double* actions, bool deterministic) {
  torch::NoGradGuard no_grad;
  const int obs_dim = impl_->info.obs_dim, act_dim = impl_->info.act_dim;
  auto obs = torch::from_blob(const_cast<float*>(observations), {n, obs_dim}, torch::kFloat32);
  torch::Tensor a;
  if (deterministic) {
    a = torch::tanh(impl_->actor->forward(obs).first);
  } else {
    a = impl_->actor->sample(obs, impl_->gen).first;
  }
  a = a.contiguous().to(torch::kFloat64);
  std::memcpy(actions, a.data_ptr<double>(), sizeof(double) * n * act_dim);
}

}  // namespace modiff::agents
