// The evaluator's stacked passes (SharedPasses, modiff/agents/inference_policy.h): the chunks of several
// policies alike acted on in one pass of stacked networks (nets/stacked.h), each policy's weights gathered into
// the slots its chunks fill.
//
// A pass, for S slots of c rows and k candidates: each slot's observations normalized by its policy, repeated k
// times; the reverse chain (or DPM-Solver) over [S, c k, act] with each row's noise from its key; the slots'
// target critics score the candidates; each row keeps one by its policy's rule (pick_candidates, as
// InferencePolicy::act). Every operation works on each slot apart, and S is fixed by c and k, so what a slot
// gives depends on its own policy and rows only.
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>

#include "infer/inference_impl.h"
#include "modiff/agents/inference_policy.h"
#include "modiff/common/error.h"
#include "nets/denoisers.h"
#include "nets/stacked.h"
#include "runtime/cuda_support.h"

namespace modiff::agents {

namespace {

constexpr int kMaxSlots = 32;

int slots_per_pass(int chunk, int candidates) {
  return std::clamp(kStackedRowsPerPass / (chunk * candidates), 1, kMaxSlots);
}

// A chunk of a request: `rows` of its rows from `start`.
struct Chunk {
  const SharedPasses::Request* request;
  int start, rows;
};

const InferencePolicy::Impl& policy_of(const Chunk& c) { return c.request->policy->impl(); }

// The network a policy samples with (its EMA or its model) and that network's flat parameters.
struct SamplingNetwork {
  Denoiser* net;
  FlatParams* params;
};
SamplingNetwork sampling_network(DiffusionModel& policy) {
  const auto parts = policy.trained_parts();
  return policy.config().sample_with_ema ? SamplingNetwork{parts.ema_net, parts.ema_params}
                                         : SamplingNetwork{parts.net, parts.params};
}

std::string parameter_shapes(torch::nn::Module& module) {
  std::string s;
  for (const auto& p : module.parameters()) {
    for (long d : p.sizes()) s += std::to_string(d) + "x";
    s += ",";
  }
  return s;
}

// What policies whose chunks share passes have alike; empty where a policy's chunks cannot be stacked.
std::string stack_key(const InferencePolicy::Impl& m) {
  if (m.chunk <= 0 || m.policy->conditioned()) return "";
  Denoiser* net = sampling_network(*m.policy).net;
  std::string key;
  if (const auto* mlp = dynamic_cast<const MlpDenoiser*>(net))
    key = "mlp " + std::to_string(static_cast<int>(mlp->body->activation));
  else if (const auto* ln = dynamic_cast<const LnResnetDenoiser*>(net))
    key = "ln-resnet " + std::to_string(static_cast<int>(ln->activation));
  else
    return "";
  const auto& d = m.policy->config().diffusion;
  key += " " + parameter_shapes(*net) + " " + d.schedule + " " + std::to_string(d.steps) + " " + d.sampler + " " +
         std::to_string(d.solver_passes) + " | " + m.device.str() + " chunk " + std::to_string(m.chunk) + " k " +
         std::to_string(m.candidates);
  if (m.guidance) {
    auto& g = *m.guidance;
    key += " | " + g.config().kind + " " + std::to_string(static_cast<int>(g.config().activation)) + " " +
           parameter_shapes(*g.target_critics().net) + " " + m.select;
    if (m.select == "softmax") key += " " + std::to_string(m.temperature);
    if (m.select == "expectile") key += " " + std::to_string(g.config().expectile) + " " + parameter_shapes(*g.value_network().net);
  }
  return key;
}

// [S, 1, obs] means and deviations of the slots' normalizers; undefined where all are the identity.
std::pair<torch::Tensor, torch::Tensor> stacked_normalizer(const std::vector<const Normalizer*>& normalizers,
                                                           int obs_dim, torch::Device device) {
  bool identity = true;
  for (const auto* n : normalizers) identity = identity && n->is_identity;
  if (identity) return {};
  std::vector<torch::Tensor> means, stds;
  for (const auto* n : normalizers) {
    means.push_back(n->mean_t.view({1, obs_dim}));
    stds.push_back(n->std_t.view({1, obs_dim}));
  }
  return {torch::stack(means).to(device), torch::stack(stds).to(device)};
}

torch::Tensor normalized_by(const std::pair<torch::Tensor, torch::Tensor>& normalizer, const torch::Tensor& obs) {
  return normalizer.first.defined() ? (obs - normalizer.first) / normalizer.second : obs;
}

}  // namespace

// One stack's slots as its last pass filled them, and their policies' weights gathered for it.
struct StackState {
  void* stream = nullptr;  // on CUDA its own, made at the first pass: its weights live on it whichever policy leads
  std::vector<const InferencePolicy::Impl*> slots;
  std::unique_ptr<StackedParams> denoiser, critics, value;
  std::pair<torch::Tensor, torch::Tensor> policy_normalizer, guidance_normalizer;

  void fill(const std::vector<const InferencePolicy::Impl*>& policies);
  void pass(const std::vector<Chunk>& chunks, size_t first, size_t count);
  torch::Tensor sample(const torch::Tensor& obs, const torch::Tensor& noise) const;
};

struct SharedPasses::Impl {
  PassStacking stacking;
  std::map<std::string, StackState> stacks;
  std::atomic<long> passes{0}, filled_slots{0};
  void run(StackState& state, const std::vector<Chunk>& chunks);
};

void StackState::fill(const std::vector<const InferencePolicy::Impl*>& policies) {
  if (policies == slots) return;  // the same policies in the same slots: the weights are in place
  slots = policies;
  const auto& first = *slots.front();
  std::vector<torch::Tensor> d, q, v;
  std::vector<const Normalizer*> pn, gn;
  for (const auto* m : slots) {
    d.push_back(sampling_network(*m->policy).params->values);
    pn.push_back(&m->policy->normalizer());
    if (m->guidance) {
      q.push_back(m->guidance->target_critics().params->values);
      gn.push_back(&m->guidance->normalizer());
      if (m->select == "expectile") v.push_back(m->guidance->value_network().params->values);
    }
  }
  const int obs_dim = first.diffusion_info.obs_dim;
  denoiser = std::make_unique<StackedParams>(*sampling_network(*first.policy).params, torch::stack(d));
  policy_normalizer = stacked_normalizer(pn, obs_dim, first.device);
  if (!q.empty()) {
    critics = std::make_unique<StackedParams>(*first.guidance->target_critics().params, torch::stack(q));
    guidance_normalizer = stacked_normalizer(gn, obs_dim, first.device);
  }
  if (!v.empty()) value = std::make_unique<StackedParams>(*first.guidance->value_network().params, torch::stack(v));
}

torch::Tensor StackState::sample(const torch::Tensor& obs, const torch::Tensor& noise) const {
  const auto& first = *slots.front();
  Ddpm& ddpm = first.policy->ddpm();
  const auto& config = ddpm.config();
  Denoiser* net = sampling_network(*first.policy).net;
  const DenoiserChain eps_of =
      dynamic_cast<const MlpDenoiser*>(net)
          ? stacked_mlp_chain(*dynamic_cast<const MlpDenoiser*>(net), *denoiser, obs, config.steps)
          : stacked_ln_resnet_chain(*dynamic_cast<const LnResnetDenoiser*>(net), *denoiser, obs, config.steps);
  if (config.sampler == "dpm-solver") return ddpm.solve_ode(eps_of, config.solver_passes, noise.select(0, 0));
  long draw = 0;
  return ddpm.reverse_chain(eps_of, [&] { return noise.select(0, draw++); });
}

void StackState::pass(const std::vector<Chunk>& chunks, size_t first_chunk, size_t count) {
  const auto& lead = policy_of(chunks[first_chunk]);
  const int c = lead.chunk, k = lead.candidates, obs_dim = lead.diffusion_info.obs_dim,
            act_dim = lead.diffusion_info.act_dim, steps = lead.policy->config().diffusion.steps;
  const int s = slots_per_pass(c, k);
  std::vector<const InferencePolicy::Impl*> policies(static_cast<size_t>(s), &lead);
  for (size_t i = 0; i < count; ++i) policies[i] = &policy_of(chunks[first_chunk + i]);
  fill(policies);
  // The slots' rows: each chunk's observations and keys, padding zero.
  std::vector<float> obs(static_cast<size_t>(s) * c * obs_dim, 0.f);
  std::vector<uint64_t> keys(static_cast<size_t>(s) * c, 0);
  for (size_t i = 0; i < count; ++i) {
    const Chunk& ch = chunks[first_chunk + i];
    std::copy_n(ch.request->observations + static_cast<size_t>(ch.start) * obs_dim,
                static_cast<size_t>(ch.rows) * obs_dim, obs.begin() + static_cast<long>(i) * c * obs_dim);
    std::copy_n(ch.request->noise_keys + ch.start, ch.rows, keys.begin() + static_cast<long>(i) * c);
  }
  const int rows = s * c;
  auto [z, u] = keyed_noise(keys.data(), rows, k, steps, act_dim, static_cast<int>(count) * c);
  const auto noise = z.to(lead.device).view({steps, s, static_cast<long>(c) * k, act_dim});
  const auto uniform = u.to(lead.device);
  const auto o = torch::from_blob(obs.data(), {s, c, obs_dim}, torch::kFloat32).to(lead.device);
  torch::Tensor chosen;
  if (!lead.guidance) {
    chosen = sample(normalized_by(policy_normalizer, o), noise).reshape({rows, act_dim});
  } else {
    const auto repeated = o.repeat_interleave(k, 1);  // [S, c k, obs]
    const auto cands = sample(normalized_by(policy_normalizer, repeated), noise);  // [S, c k, act]
    auto [q1, q2] = stacked_twin_q(*lead.guidance->target_critics().net, *critics,
                                   torch::cat({normalized_by(guidance_normalizer, repeated), cands}, 2), false);
    const auto q = torch::min(q1, q2).reshape({rows, k});
    const auto v = value ? stacked_mlp(*lead.guidance->value_network().net, *value, normalized_by(guidance_normalizer, o))
                               .reshape({rows, 1})
                         : torch::Tensor();
    const auto pick = pick_candidates(lead, q, v, uniform);
    chosen = cands.reshape({static_cast<long>(rows) * k, act_dim})
                 .index_select(0, torch::arange(rows, pick.options()) * k + pick);
  }
  const auto host = chosen.to(torch::kCPU).to(torch::kFloat64).contiguous();
  const double* a = host.data_ptr<double>();
  for (size_t i = 0; i < count; ++i) {
    const Chunk& ch = chunks[first_chunk + i];
    std::copy_n(a + static_cast<long>(i) * c * act_dim, static_cast<size_t>(ch.rows) * act_dim,
                ch.request->actions + static_cast<size_t>(ch.start) * act_dim);
  }
}

void SharedPasses::Impl::run(StackState& state, const std::vector<Chunk>& chunks) {
  const auto& lead = policy_of(chunks.front());
  const size_t s = static_cast<size_t>(slots_per_pass(lead.chunk, lead.candidates));
  if (lead.device.is_cuda()) {
    bind_cuda_context();  // the evaluator may call from any of its threads
    if (state.stream == nullptr) state.stream = new_cuda_stream();
  }
  run_on_stream(state.stream, [&] {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < chunks.size(); i += s) {
      const size_t count = std::min(s, chunks.size() - i);
      state.pass(chunks, i, count);
      ++passes;
      filled_slots += static_cast<long>(count);
    }
  });
}

SharedPasses::SharedPasses(PassStacking stacking) : impl_(std::make_unique<Impl>()) { impl_->stacking = stacking; }
SharedPasses::~SharedPasses() = default;
long SharedPasses::passes() const { return impl_->passes; }
long SharedPasses::filled_slots() const { return impl_->filled_slots; }

void SharedPasses::act(const std::vector<Request>& requests) {
  std::vector<const Request*> alone;
  std::map<std::string, std::vector<Chunk>> stacked;  // by stack key, chunks in request order
  for (size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    if (r.policy == nullptr) throw Error("internal: a request without a policy");
    for (size_t j = 0; j < i; ++j)
      if (requests[j].policy == r.policy) throw Error("internal: one policy in two requests of one step");
    if (r.n <= 0) continue;
    const auto& m = r.policy->impl();
    const bool stack = impl_->stacking == PassStacking::Always ||
                       (impl_->stacking == PassStacking::Auto && m.device.is_cuda());
    const std::string key = stack && r.noise_keys != nullptr ? stack_key(m) : "";
    if (key.empty()) {
      alone.push_back(&r);
      continue;
    }
    auto& chunks = stacked[key];
    for (int start = 0; start < r.n; start += m.chunk) chunks.push_back({&r, start, std::min(m.chunk, r.n - start)});
  }
  std::vector<std::function<void()>> work;
  for (const Request* r : alone)
    work.push_back([r] { r->policy->act(r->observations, r->n, r->actions, r->noise_keys); });
  for (const auto& [key, chunks] : stacked) {
    StackState* state = &impl_->stacks[key];  // made here, before the threads
    const std::vector<Chunk>* mine = &chunks;
    work.push_back([this, state, mine] { impl_->run(*state, *mine); });
  }
  tbb::parallel_for(size_t{0}, work.size(), [&](size_t i) { work[i](); });
}

}  // namespace modiff::agents
