// Soft Actor-Critic (CleanRL's sac_continuous_action.py, read top to bottom):
// collect with the current actor on the vector env, store in a replay buffer,
// update twin critics every step, the actor and temperature every
// `policy_frequency` steps, Polyak-average the target critics.
#include "modiff/behavior/sac.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "modiff/torch/torch_support.h"
#include "modiff/behavior/gaussian_policy.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/common/file_lock.h"
#include "modiff/common/rng.h"
#include "modiff/envs/episode_pool.h"
#include "modiff/envs/vector_env.h"
#include "gaussian_policy_impl.h"
#include "modiff/torch/torch_support.h"

namespace modiff::behavior {

namespace fs = std::filesystem;

// Lets the trainer wrap its actor in a GaussianPolicy for saving snapshots.
struct SacTrainer {
  static GaussianPolicy wrap(Actor actor, const std::string& env_id, int obs_dim, int act_dim, int hidden) {
    auto impl = std::make_unique<GaussianPolicy::Impl>();
    impl->info = {env_id, obs_dim, act_dim, hidden};
    impl->actor = actor;
    return GaussianPolicy(std::move(impl));
  }
};

namespace {

struct ReplayBuffer {
  torch::Tensor obs, next_obs, actions, rewards, dones;
  long capacity = 0, size = 0, pos = 0;

  ReplayBuffer(long cap, int obs_dim, int act_dim, torch::Device device) : capacity(cap) {
    auto f = torch::TensorOptions().dtype(torch::kFloat32).device(device);
    obs = torch::zeros({cap, obs_dim}, f);
    next_obs = torch::zeros({cap, obs_dim}, f);
    actions = torch::zeros({cap, act_dim}, f);
    rewards = torch::zeros({cap, 1}, f);
    dones = torch::zeros({cap, 1}, f);
  }

  // Appends n rows given as host arrays (row-major).
  void add(long n, const float* o, const float* no, const float* a, const float* r, const float* d) {
    const long obs_dim = obs.size(1), act_dim = actions.size(1);
    for (long i = 0; i < n; ++i) {
      if (obs.is_cuda()) {
        auto put = [&](torch::Tensor& dst, const float* src, long width) {
          dst[pos].copy_(torch::from_blob(const_cast<float*>(src + i * width), {width}, torch::kFloat32));
        };
        put(obs, o, obs_dim);
        put(next_obs, no, obs_dim);
        put(actions, a, act_dim);
        put(rewards, r, 1);
        put(dones, d, 1);
      } else {  // plain copies: a torch op per row costs more than the data
        std::memcpy(obs.data_ptr<float>() + pos * obs_dim, o + i * obs_dim, sizeof(float) * obs_dim);
        std::memcpy(next_obs.data_ptr<float>() + pos * obs_dim, no + i * obs_dim, sizeof(float) * obs_dim);
        std::memcpy(actions.data_ptr<float>() + pos * act_dim, a + i * act_dim, sizeof(float) * act_dim);
        rewards.data_ptr<float>()[pos] = r[i];
        dones.data_ptr<float>()[pos] = d[i];
      }
      pos = (pos + 1) % capacity;
      size = std::min(size + 1, capacity);
    }
  }
};

// The mean return of `episodes` episodes of the policy as a behavior policy acts (sampled), episode k's env
// reset with seed + k and its noise at step t drawn from a key of (seed, k, t) alone.
double evaluate(GaussianPolicy& policy, const envs::EnvSpec& spec, int episodes, uint64_t seed) {
  double sum = 0;
  std::vector<uint64_t> keys;
  envs::EpisodePoolOptions pool;
  pool.episodes = episodes;
  pool.reset_seed = [seed](long k) { return seed + static_cast<uint64_t>(k); };
  envs::EpisodeHooks hooks;
  hooks.policy = [&](const float* obs, int rows, const long* episode, const int* step, double* actions) {
    keys.resize(static_cast<size_t>(rows));
    for (int j = 0; j < rows; ++j)
      keys[j] = derive_seed(derive_seed(seed, static_cast<uint64_t>(episode[j])), static_cast<uint64_t>(step[j]));
    policy.sample_keyed(obs, rows, keys.data(), actions);
  };
  hooks.after_step = [&](int, long, const envs::EpisodeOutcome& so_far, bool ended) {
    if (ended) sum += so_far.episode_return;
    return true;
  };
  envs::run_episodes(spec, pool, hooks);
  return sum / episodes;
}

}  // namespace

namespace {

// The run folder, locked for this process; a new run (not --resume) needs it empty.
ExclusiveLock claim_run_folder(const fs::path& out, bool resume) {
  std::error_code made;
  fs::create_directories(out, made);
  if (made) throw Error("cannot create run folder " + out.string() + ": " + made.message());
  ExclusiveLock lock((out / kFolderLockFile).string(), "behavior run folder " + out.string());
  const bool empty = std::all_of(fs::directory_iterator(out), fs::directory_iterator(),
                                 [](const fs::directory_entry& e) { return e.path().filename() == kFolderLockFile; });
  if (!resume && !empty) throw Error(out.string() + " is not empty: use --resume to continue its run, or another --out");
  return lock;
}

}  // namespace

namespace {

// The networks, optimizers and entropy temperature of one SAC run, and its update rule.
struct SacLearner {
  SacLearner(int obs_dim, int act_dim, const SacConfig& config, torch::Device device) : cfg(config) {
    // Made in this order from the run's seed: the initial weights depend on it.
    actor = Actor(obs_dim, act_dim, cfg.hidden);
    qf1 = SoftQ(obs_dim, act_dim, cfg.hidden);
    qf2 = SoftQ(obs_dim, act_dim, cfg.hidden);
    qf1_target = SoftQ(obs_dim, act_dim, cfg.hidden);
    qf2_target = SoftQ(obs_dim, act_dim, cfg.hidden);
    for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(actor.get()), static_cast<torch::nn::Module*>(qf1.get()),
                                 static_cast<torch::nn::Module*>(qf2.get()), static_cast<torch::nn::Module*>(qf1_target.get()),
                                 static_cast<torch::nn::Module*>(qf2_target.get())})
      m->to(device);
    polyak_update(*qf1_target, *qf1, 1.0);
    polyak_update(*qf2_target, *qf2, 1.0);
    std::vector<torch::Tensor> q_params = qf1->parameters();
    for (auto& p : qf2->parameters()) q_params.push_back(p);
    q_optimizer = std::make_unique<torch::optim::Adam>(q_params, torch::optim::AdamOptions(cfg.q_lr));
    actor_optimizer = std::make_unique<torch::optim::Adam>(actor->parameters(), torch::optim::AdamOptions(cfg.policy_lr));
    target_entropy = -static_cast<double>(act_dim);
    log_alpha = torch::full({1}, std::log(cfg.alpha), torch::TensorOptions().device(device).requires_grad(true));
    alpha_optimizer = std::make_unique<torch::optim::Adam>(std::vector<torch::Tensor>{log_alpha},
                                                           torch::optim::AdamOptions(cfg.q_lr));
  }

  // One update from a batch of the buffer (CleanRL's order): the twin critics; every policy_frequency
  // updates the actor (and the temperature) that many times; then the targets. Returns the critic loss.
  torch::Tensor update(const ReplayBuffer& buffer, long update_index, torch::Device device) {
    auto idx = torch::randint(buffer.size, {cfg.batch_size}, torch::TensorOptions().dtype(torch::kLong).device(device));
    auto b_obs = buffer.obs.index_select(0, idx), b_next = buffer.next_obs.index_select(0, idx);
    auto b_act = buffer.actions.index_select(0, idx), b_rew = buffer.rewards.index_select(0, idx);
    auto b_done = buffer.dones.index_select(0, idx);
    auto alpha = log_alpha.exp().detach();
    torch::Tensor target;
    {
      torch::NoGradGuard no_grad;
      auto [next_a, next_logp] = actor->sample(b_next);
      auto q_next =
          torch::min(qf1_target->forward(b_next, next_a), qf2_target->forward(b_next, next_a)) - alpha * next_logp;
      target = b_rew + (1 - b_done) * cfg.gamma * q_next;
    }
    auto q_loss = torch::mse_loss(qf1->forward(b_obs, b_act), target) + torch::mse_loss(qf2->forward(b_obs, b_act), target);
    q_optimizer->zero_grad();
    q_loss.backward();
    q_optimizer->step();
    if (update_index % cfg.policy_frequency == 0)
      for (int k = 0; k < cfg.policy_frequency; ++k) update_actor(b_obs);
    polyak_update(*qf1_target, *qf1, cfg.tau);
    polyak_update(*qf2_target, *qf2, cfg.tau);
    return q_loss;
  }

  void update_actor(const torch::Tensor& b_obs) {
    auto [pi, logp] = actor->sample(b_obs);
    auto min_q = torch::min(qf1->forward(b_obs, pi), qf2->forward(b_obs, pi));
    auto actor_loss = (log_alpha.exp().detach() * logp - min_q).mean();
    actor_optimizer->zero_grad();
    actor_loss.backward();
    actor_optimizer->step();
    if (!cfg.autotune_alpha) return;
    auto alpha_loss = (-log_alpha.exp() * (logp.detach() + target_entropy)).mean();
    alpha_optimizer->zero_grad();
    alpha_loss.backward();
    alpha_optimizer->step();
  }

  // What a checkpoint holds besides the replay buffer, by file name.
  std::vector<std::pair<std::string, torch::nn::Module*>> modules() {
    return {{"actor", actor.get()}, {"qf1", qf1.get()}, {"qf2", qf2.get()},
            {"qf1_target", qf1_target.get()}, {"qf2_target", qf2_target.get()}};
  }
  std::vector<std::pair<std::string, torch::optim::Optimizer*>> optimizers() {
    return {{"q_optimizer", q_optimizer.get()}, {"actor_optimizer", actor_optimizer.get()},
            {"alpha_optimizer", alpha_optimizer.get()}};
  }

  const SacConfig& cfg;
  Actor actor{nullptr};
  SoftQ qf1{nullptr}, qf2{nullptr}, qf1_target{nullptr}, qf2_target{nullptr};
  std::unique_ptr<torch::optim::Adam> q_optimizer, actor_optimizer, alpha_optimizer;
  torch::Tensor log_alpha;
  double target_entropy = 0;
};

// The buffer a run resumed with more steps would have had from the start: the same rows, more room.
ReplayBuffer grown_buffer(ReplayBuffer buffer, long wanted, torch::Device device) {
  if (wanted <= buffer.capacity) return buffer;
  ReplayBuffer grown(wanted, static_cast<int>(buffer.obs.size(1)), static_cast<int>(buffer.actions.size(1)), device);
  using torch::indexing::Slice;
  grown.obs.index_put_({Slice(0, buffer.capacity)}, buffer.obs);
  grown.next_obs.index_put_({Slice(0, buffer.capacity)}, buffer.next_obs);
  grown.actions.index_put_({Slice(0, buffer.capacity)}, buffer.actions);
  grown.rewards.index_put_({Slice(0, buffer.capacity)}, buffer.rewards);
  grown.dones.index_put_({Slice(0, buffer.capacity)}, buffer.dones);
  grown.size = buffer.size;
  grown.pos = buffer.size < buffer.capacity ? buffer.pos : buffer.capacity;
  return grown;
}

// The checkpoint (OUT/checkpoint/, atomically): every module and optimizer, the temperature and the replay
// buffer (buffer.pt), and state.json; snapshots.json beside it.
void save_sac_checkpoint(const fs::path& out, SacLearner& learner, const ReplayBuffer& buffer,
                         const nlohmann::json& state) {
  write_directory_atomically((out / "checkpoint").string(), [&](const std::string& dir) {
    const fs::path tmp(dir);
    for (const auto& [name, module] : learner.modules()) {
      torch::serialize::OutputArchive archive;
      module->save(archive);
      save_archive(archive, (tmp / (name + ".pt")).string());
    }
    for (const auto& [name, optimizer] : learner.optimizers()) {
      torch::serialize::OutputArchive archive;
      optimizer->save(archive);
      save_archive(archive, (tmp / (name + ".pt")).string());
    }
    std::vector<torch::Tensor> tensors = {learner.log_alpha.detach().cpu(), buffer.obs.cpu(), buffer.next_obs.cpu(),
                                          buffer.actions.cpu(), buffer.rewards.cpu(), buffer.dones.cpu()};
    torch::serialize::OutputArchive buffer_archive;  // the layout torch::save gives a tensor list
    for (size_t i = 0; i < tensors.size(); ++i) buffer_archive.write(std::to_string(i), tensors[i]);
    save_archive(buffer_archive, (tmp / "buffer.pt").string());
    write_text_atomically((tmp / "state.json").string(), state.dump(2) + "\n");
  });
  write_text_atomically((out / "snapshots.json").string(), state.at("snapshots").dump(2) + "\n");
}

// Restores the modules, optimizers, temperature and buffer of a checkpoint; returns its state.json.
nlohmann::json restore_sac_checkpoint(const fs::path& ckpt, SacLearner& learner, ReplayBuffer& buffer, int obs_dim,
                                      int act_dim, torch::Device device) {
  nlohmann::json state;
  std::ifstream(ckpt / "state.json") >> state;
  for (const auto& [name, module] : learner.modules()) {
    torch::serialize::InputArchive archive;
    archive.load_from((ckpt / (name + ".pt")).string(), device);
    module->load(archive);
  }
  for (const auto& [name, optimizer] : learner.optimizers()) {
    torch::serialize::InputArchive archive;
    archive.load_from((ckpt / (name + ".pt")).string(), device);
    optimizer->load(archive);
  }
  std::vector<torch::Tensor> tensors;
  torch::load(tensors, (ckpt / "buffer.pt").string());
  {
    torch::NoGradGuard no_grad;
    learner.log_alpha.copy_(tensors.at(0));
  }
  buffer.obs = tensors.at(1).to(device);
  buffer.next_obs = tensors.at(2).to(device);
  buffer.actions = tensors.at(3).to(device);
  buffer.rewards = tensors.at(4).to(device);
  buffer.dones = tensors.at(5).to(device);
  buffer.capacity = buffer.obs.size(0);  // the buffer keeps the size it was created with
  buffer.size = state.at("buffer_size").get<long>();
  buffer.pos = state.at("buffer_pos").get<long>();
  if (buffer.size > buffer.capacity || buffer.pos >= buffer.capacity || buffer.obs.size(1) != obs_dim ||
      buffer.actions.size(1) != act_dim)
    throw Error(ckpt.string() + ": replay buffer does not match its state.json or the env");
  return state;
}

}  // namespace

void to_json(nlohmann::json& j, const SnapshotRecord& s) {
  j = {{"step", s.step}, {"file", s.file}, {"mean_return", s.mean_return}, {"normalized_return", s.normalized_return}};
}

void from_json(const nlohmann::json& j, SnapshotRecord& s) {
  j.at("step").get_to(s.step);
  j.at("file").get_to(s.file);
  j.at("mean_return").get_to(s.mean_return);
  j.at("normalized_return").get_to(s.normalized_return);
}

namespace {

// The actions of one collection step: uniform random before learning starts, the actor's samples after.
void choose_actions(long step, const SacConfig& cfg, SacLearner& learner, const std::vector<float>& obs, int n,
                    int obs_dim, torch::Device device, Rng& random_actions, std::vector<double>& actions) {
  if (step < cfg.learning_starts) {
    for (auto& a : actions) a = random_actions.uniform(-1, 1);
    return;
  }
  torch::NoGradGuard no_grad;
  const auto t = torch::from_blob(const_cast<float*>(obs.data()), {n, obs_dim}, torch::kFloat32).clone();
  auto a = learner.actor->sample(t.to(device)).first.to(torch::kCPU).to(torch::kFloat64).contiguous();
  std::memcpy(actions.data(), a.data_ptr<double>(), sizeof(double) * actions.size());
}

// One transition per env into the buffer. For finished episodes the buffer gets the real last observation; only
// true terminations cut the bootstrap (time limits do not). Finished episodes' returns go to `finished_returns`.
void store_transitions(const envs::VectorEnv& venv, const std::vector<float>& obs_before,
                       const std::vector<double>& actions, ReplayBuffer& buffer,
                       std::vector<double>& finished_returns) {
  const int n = venv.num_envs(), obs_dim = static_cast<int>(buffer.obs.size(1));
  std::vector<float> next = venv.observations();
  std::vector<float> done(n, 0.f), reward(n);
  for (int i = 0; i < n; ++i) {
    reward[i] = static_cast<float>(venv.rewards()[i]);
    done[i] = venv.terminated()[i] ? 1.f : 0.f;
    if (venv.terminated()[i] || venv.truncated()[i]) {
      std::copy_n(venv.final_observations().begin() + i * obs_dim, obs_dim, next.begin() + i * obs_dim);
      finished_returns.push_back(venv.episode_returns()[i]);
    }
  }
  const std::vector<float> act_f(actions.begin(), actions.end());
  buffer.add(n, obs_before.data(), next.data(), act_f.data(), reward.data(), done.data());
}

// One gradient update per env step taken in [from, to), once learning has started.
void update_for_steps(long from, long to, const SacConfig& cfg, SacLearner& learner, const ReplayBuffer& buffer,
                      torch::Device device, const fs::path& ckpt) {
  if (to <= cfg.learning_starts) return;
  for (long update = from; update < to; ++update)
    if (!std::isfinite(learner.update(buffer, update, device).item<double>()))
      throw Error("SAC: critic loss became non-finite at step " + std::to_string(update) +
                  "; the last good checkpoint is in " + ckpt.string());
}

// A snapshot: the actor saved as a behavior policy file (OUT/snapshots/step_NNNNNNNN.pt) and evaluated.
SnapshotRecord take_snapshot(const SacRunOptions& opt, const SacConfig& cfg, const envs::EnvSpec& spec,
                             SacLearner& learner, long step, torch::Device device) {
  char name[64];
  std::snprintf(name, sizeof name, "snapshots/step_%08ld.pt", step);
  GaussianPolicy policy = SacTrainer::wrap(learner.actor, spec.id, spec.obs_dim, spec.act_dim, cfg.hidden);
  learner.actor->to(torch::kCPU);
  const double ret = evaluate(policy, spec, opt.eval_episodes, opt.seed + 100003 + step);
  policy.save((fs::path(opt.out_dir) / name).string());
  learner.actor->to(device);
  return {step, name, ret, envs::normalized_score(spec, ret)};
}

double mean_of_last(const std::vector<double>& values, size_t count) {
  const size_t k = std::min(values.size(), count);
  double mean = 0;
  for (size_t i = values.size() - k; i < values.size(); ++i) mean += values[i] / k;
  return mean;
}

}  // namespace

SacRunResult train_sac(const SacRunOptions& opt, const SacConfig& cfg) {
  const auto& spec = envs::find_env(opt.env_id);
  if (opt.total_steps <= 0) throw Error("--steps must be positive");
  if (opt.num_envs <= 0) throw Error("--num-envs must be positive");
  const torch::Device device = torch_device(resolve_device(opt.device));
  const int obs_dim = spec.obs_dim, act_dim = spec.act_dim, n = opt.num_envs;
  const fs::path out(opt.out_dir), ckpt = out / "checkpoint";
  if (opt.resume && !fs::exists(ckpt / "state.json")) throw Error(opt.out_dir + ": no checkpoint to resume from");
  const ExclusiveLock lock = claim_run_folder(out, opt.resume);
  fs::create_directories(out / "snapshots");

  torch::manual_seed(opt.seed);
  SacLearner learner(obs_dim, act_dim, cfg, device);
  const long capacity = std::min(cfg.buffer_size, opt.total_steps);
  ReplayBuffer buffer(capacity, obs_dim, act_dim, device);
  long step = 0;
  std::vector<SnapshotRecord> snapshots;
  if (opt.resume) {
    const nlohmann::json state = restore_sac_checkpoint(ckpt, learner, buffer, obs_dim, act_dim, device);
    step = state.at("step").get<long>();
    state.at("snapshots").get_to(snapshots);
    buffer = grown_buffer(std::move(buffer), capacity, device);
    torch::manual_seed(opt.seed + static_cast<uint64_t>(step));
  }

  // The envs restart at every (re)start: Bullet worlds are not checkpointed.
  envs::VectorEnv venv(spec, n, opt.seed + static_cast<uint64_t>(step) * 7919);
  venv.reset();
  Rng random_actions(derive_seed(opt.seed + static_cast<uint64_t>(step), 17));
  std::vector<double> actions(static_cast<size_t>(n) * act_dim), finished_returns;
  const auto start = std::chrono::steady_clock::now();
  const long start_step = step;
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  long next_snapshot = (step / opt.snapshot_every + 1) * opt.snapshot_every;
  while (step < opt.total_steps) {
    const std::vector<float> obs_before = venv.observations();
    choose_actions(step, cfg, learner, obs_before, n, obs_dim, device, random_actions, actions);
    venv.step(actions.data());
    store_transitions(venv, obs_before, actions, buffer, finished_returns);
    update_for_steps(step, step + n, cfg, learner, buffer, device, ckpt);
    step += n;
    if (step < next_snapshot && step < opt.total_steps) continue;
    snapshots.push_back(take_snapshot(opt, cfg, spec, learner, step, device));
    save_sac_checkpoint(out, learner, buffer,
                        {{"step", step}, {"env_id", spec.id}, {"seed", opt.seed}, {"hidden", cfg.hidden},
                         {"learning_starts", cfg.learning_starts}, {"buffer_size", buffer.size},
                         {"buffer_pos", buffer.pos}, {"snapshots", snapshots}});
    next_snapshot += opt.snapshot_every;
    if (!opt.quiet)
      std::fprintf(stderr, "step %8ld  eval return %9.1f (normalized %6.1f)  train return %9.1f  %6.0f steps/s\n",
                   step, snapshots.back().mean_return, snapshots.back().normalized_return,
                   mean_of_last(finished_returns, 20), (step - start_step) / seconds());
  }
  SacRunResult result;
  result.snapshots = snapshots;
  result.env_steps_per_s = (step - start_step) / std::max(seconds(), 1e-9);
  return result;
}

}  // namespace modiff::behavior
