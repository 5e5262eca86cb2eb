// Pairing a diffusion policy with a guidance module for inference: the
// candidates of all observations go through one batched denoising pass, the
// guidance scores them, and one is kept per observation:
//   argmax    : the highest min target Q (IDQL's default);
//   softmax   : sampled with probabilities softmax(Q / temperature) (Diffusion-QL);
//   expectile : sampled with IQL's expectile weights, tau where Q > V, 1 - tau elsewhere (IDQL's variant).
#include "modiff/agents/inference_policy.h"

#include "infer/inference_impl.h"
#include "io/artifact_io.h"
#include "runtime/cuda_support.h"
#include "modiff/torch/torch_support.h"
#include "modiff/common/error.h"
#include "modiff/common/rng.h"

#include <tbb/parallel_for.h>

namespace modiff::agents {

InferencePolicy::InferencePolicy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
InferencePolicy::InferencePolicy(InferencePolicy&&) noexcept = default;
InferencePolicy& InferencePolicy::operator=(InferencePolicy&&) noexcept = default;
InferencePolicy::~InferencePolicy() = default;

InferencePolicy InferencePolicy::load(const std::string& diffusion_dir, const std::string& guidance_dir,
                                      const InferenceOptions& options, std::vector<std::string>* warnings) {
  auto impl = std::make_unique<Impl>();
  const DeviceChoice choice = resolve_device(options.device);
  impl->device = torch_device(choice);
  if (impl->device.is_cuda()) {
    allow_tf32();
    bind_cuda_contexts(impl->device);
  }
  impl->diffusion_info = read_artifact(diffusion_dir, "diffusion");
  const bool guided = !guidance_dir.empty() && guidance_dir != "none";
  if (guided) {
    impl->guidance_info = read_artifact(guidance_dir, "guidance");
    auto w = check_pairing(impl->diffusion_info, impl->guidance_info);
    if (warnings) warnings->insert(warnings->end(), w.begin(), w.end());
  }
  impl->policy = load_diffusion(diffusion_dir, impl->device);
  const auto& cfg = impl->policy->config();
  if (options.candidates < 0) throw Error("--candidates must be positive");
  if (options.temperature <= 0) throw Error("--temperature must be positive");
  impl->select = options.select.empty() ? cfg.select : options.select;
  if (impl->select != "argmax" && impl->select != "softmax" && impl->select != "expectile")
    throw Error("--select must be argmax, softmax or expectile, got '" + impl->select + "'");
  if (guided) {
    impl->guidance = load_guidance(guidance_dir, impl->device);
    impl->candidates = options.candidates > 0 ? options.candidates : cfg.candidates;
    if (impl->select == "expectile" && !impl->guidance->has_v())
      throw Error("--select expectile needs a guidance with V(s) (iql); " + guidance_dir + " is " +
                  impl->guidance_info.algorithm);
  } else {
    if (options.candidates > 1) throw Error("--candidates " + std::to_string(options.candidates) + " needs a guidance module to choose among them");
    impl->candidates = 1;
  }
  impl->temperature = options.temperature;
  if (options.chunk < -1) throw Error("--chunk must be >= 0 (or -1: by device)");
  impl->chunk = options.chunk >= 0 ? options.chunk : (impl->device.is_cuda() ? 64 : 4);
  impl->generator = make_generator(impl->device, options.seed);
  if (impl->device.is_cuda()) impl->stream = new_cuda_stream();
  return InferencePolicy(std::move(impl));
}

void InferencePolicy::reseed(uint64_t seed) { impl_->generator.set_current_seed(seed); }

const ArtifactInfo& InferencePolicy::diffusion() const { return impl_->diffusion_info; }
const ArtifactInfo* InferencePolicy::guidance() const { return impl_->guidance ? &impl_->guidance_info : nullptr; }
int InferencePolicy::candidates() const { return impl_->candidates; }
const std::string& InferencePolicy::select() const { return impl_->select; }

std::pair<torch::Tensor, torch::Tensor> keyed_noise(const uint64_t* keys, int n, int k, int steps, int act_dim,
                                                    int live) {
  if (live < 0) live = n;
  const std::vector<long> shape{steps, static_cast<long>(n) * k, act_dim};
  auto noise = live < n ? torch::zeros(shape, torch::kFloat32) : torch::empty(shape, torch::kFloat32);
  auto uniform = torch::zeros({n}, torch::kFloat32);
  float* z = noise.data_ptr<float>();
  float* u = uniform.data_ptr<float>();
  const long row_stride = static_cast<long>(n) * k * act_dim;
  tbb::parallel_for(0, live, [&](int r) {
    for (int c = 0; c < k; ++c) {
      Rng rng(derive_seed(keys[r], static_cast<uint64_t>(c)));
      for (int s = 0; s < steps; ++s)
        for (int d = 0; d < act_dim; ++d)
          z[s * row_stride + (static_cast<long>(r) * k + c) * act_dim + d] = static_cast<float>(rng.normal());
    }
    u[r] = static_cast<float>(Rng(derive_seed(keys[r], 0xC401CEULL)).uniform01());
  });
  return {noise, uniform};
}

torch::Tensor draw_from_weights(const torch::Tensor& weights, const torch::Tensor& uniform) {
  auto cdf = torch::cumsum(weights, 1);
  auto threshold = uniform.view({-1, 1}) * cdf.narrow(1, cdf.size(1) - 1, 1);
  return torch::clamp_max((cdf < threshold).sum(1), weights.size(1) - 1);
}

torch::Tensor pick_candidates(const InferencePolicy::Impl& m, const torch::Tensor& q, const torch::Tensor& v,
                              const torch::Tensor& uniform) {
  if (m.select == "argmax") return q.argmax(1);
  torch::Tensor weights;
  if (m.select == "softmax") {
    weights = torch::softmax(q / m.temperature, 1);
  } else {
    const double tau = m.guidance->config().expectile;
    const auto adv = q - v;
    weights = torch::where(adv > 0, torch::full_like(adv, tau), torch::full_like(adv, 1 - tau));
  }
  return uniform.defined() ? draw_from_weights(weights, uniform)
                           : torch::multinomial(weights, 1, false, m.generator).view(-1);
}

void InferencePolicy::act(const float* observations, int n, double* actions, const uint64_t* noise_keys) {
  run_on_stream(impl_->stream, [&] { act_chunks(observations, n, actions, noise_keys); });
}

void InferencePolicy::act_chunks(const float* observations, int n, double* actions, const uint64_t* noise_keys) {
  auto& m = *impl_;
  const int c = m.chunk;
  if (c == 0 || n == c) return m.act_rows(observations, n, actions, noise_keys);
  const int obs_dim = m.diffusion_info.obs_dim, act_dim = m.diffusion_info.act_dim;
  std::vector<float> obs(static_cast<size_t>(c) * obs_dim);
  std::vector<double> out(static_cast<size_t>(c) * act_dim);
  std::vector<uint64_t> keys(c);
  for (int start = 0; start < n; start += c) {
    const int rows = std::min(c, n - start);
    std::fill(obs.begin(), obs.end(), 0.f);
    std::copy_n(observations + static_cast<size_t>(start) * obs_dim, static_cast<size_t>(rows) * obs_dim, obs.begin());
    if (noise_keys) {
      std::fill(keys.begin(), keys.end(), 0);
      std::copy_n(noise_keys + start, rows, keys.begin());
    }
    m.act_rows(obs.data(), c, out.data(), noise_keys ? keys.data() : nullptr);
    std::copy_n(out.begin(), static_cast<size_t>(rows) * act_dim, actions + static_cast<size_t>(start) * act_dim);
  }
}

void InferencePolicy::Impl::act_rows(const float* observations, int n, double* actions, const uint64_t* noise_keys) {
  if (device.is_cuda()) bind_cuda_context();  // the evaluator may call from any of its threads
  torch::NoGradGuard no_grad;
  auto& m = *this;
  const int obs_dim = m.diffusion_info.obs_dim, act_dim = m.diffusion_info.act_dim, k = m.candidates;
  auto obs = torch::from_blob(const_cast<float*>(observations), {n, obs_dim}, torch::kFloat32).to(m.device);
  torch::Tensor noise, uniform;
  if (noise_keys) {
    auto [z, u] = keyed_noise(noise_keys, n, k, m.policy->config().diffusion.steps, act_dim);
    noise = z.to(m.device);
    uniform = u.to(m.device);
  }
  torch::Tensor chosen;
  if (!m.guidance) {
    chosen = m.policy->sample_inference(obs, m.generator, noise);
  } else {
    auto repeated = obs.repeat_interleave(k, 0);                         // [n k, obs]
    auto cands = m.policy->sample_inference(repeated, m.generator, noise);  // [n k, act]
    const auto q = m.guidance->q_min(repeated, cands).view({n, k});
    const auto v = m.select == "expectile" ? m.guidance->v(obs).view({n, 1}) : torch::Tensor();
    const auto pick = pick_candidates(m, q, v, uniform);
    auto rows = torch::arange(n, pick.options()) * k + pick;
    chosen = cands.index_select(0, rows);
  }
  auto host = chosen.to(torch::kCPU).to(torch::kFloat64).contiguous();
  std::memcpy(actions, host.data_ptr<double>(), sizeof(double) * n * act_dim);
}

}  // namespace modiff::agents
