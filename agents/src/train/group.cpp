// A group of training runs in one process (train_group_on): built one after the other, then advanced in
// lockstep, each run one captured graph (or one eager chunk) at a time, so that on CUDA the GPU holds work of
// every run at once. What makes each run the run it would be alone is its RunContext (its random streams and
// stream, in place while it advances); the order in which runs advance changes nothing in any of them.
//
// On CUDA, runs that can be stacked (the same algorithm, phase, hyperparameters and shapes, at the same step:
// TrainingRun::stack_key) take their steps together: one stack (algos/stacked_steps.h) whose every kernel does
// the work of all of them, captured as one graph on a stream of its own. A run leaves its stack when the others
// no longer take the same steps (a member failed, or logs at other steps); the rest form a new one.
#include <c10/util/Exception.h>

#include <algorithm>
#include <map>
#include <memory>
#include <tuple>
#include <utility>

#include "modiff/agents/train.h"
#include "modiff/common/environment.h"
#include "modiff/common/error.h"
#include "modiff/torch/device.h"
#include "train/training_run.h"

namespace modiff::agents {

namespace {

std::string message_of(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  return e.what();
}

// Builds each member's run (sharing the device copy of data that runs before it already made); a member that
// cannot start gets its error.
std::vector<std::unique_ptr<TrainingRun>> build_runs(const std::vector<GroupMember>& members,
                                                     std::vector<GroupRunResult>& results) {
  std::vector<std::unique_ptr<TrainingRun>> runs(members.size());
  std::map<std::pair<const datasets::Dataset*, std::string>, std::shared_ptr<const OfflineData>> on_device;
  for (size_t i = 0; i < members.size(); ++i) {
    const GroupMember& m = members[i];
    try {
      if (!m.data) throw Error("internal: a group member without data");
      const auto key = std::make_pair(m.data, torch_device(resolve_device(m.options.device)).str());
      auto found = on_device.find(key);
      runs[i] = std::make_unique<TrainingRun>(*m.data, m.ref, m.options,
                                              found == on_device.end() ? nullptr : found->second);
      on_device.emplace(key, runs[i]->data());
    } catch (const std::exception& e) {
      results[i].error = message_of(e);
    }
  }
  return runs;
}

// Fewer runs alike than this take their own steps on their own streams: on an H200 4 IDQL runs side by side made
// 4,854 steps/s, stacked 3,785; 16 runs 4,408 side by side, 6,208 stacked (docs/benchmarks.md). The most runs in
// one stack is MODIFF_STACK_SIZE (common/environment.h, default 16; 0 or 1: no stacks); more runs alike than that
// form several stacks, which run beside each other on their own streams.
constexpr size_t kFewestStacked = 8;

// Runs taking their steps as one: the stacked steps, captured as one graph on the stack's own stream.
class Stack {
 public:
  Stack(const std::vector<size_t>& members, std::vector<std::unique_ptr<TrainingRun>>& runs, const std::string& algo,
        const std::string& phase, torch::Device device)
      : members_(members), context_(0, device) {
    const RunContext::Active on_stack_stream(context_);
    std::vector<StackMember> stacked;
    for (size_t i : members) {
      stacked.push_back(runs[i]->stack_member(static_cast<int>(members.size())));
      logs_.push_back(&runs[i]->phase_log());
    }
    for (const auto& m : stacked) m.context->current_stream_waits();  // their parameters, before they move
    steps_ = make_stacked_steps(algo, phase, stacked);
    graph_ = std::make_unique<GraphedSteps>(
        [this](int count) {
          const auto metrics = steps_->steps(count);
          for (size_t k = 0; k < logs_.size(); ++k) logs_[k]->accumulate(metrics[k]);
        },
        runs[members.front()]->steps_per_graph(), true);
    std::vector<at::Generator> generators;
    for (const auto& m : stacked) {
      if (auto g = m.context->cuda_generator()) generators.push_back(*g);
      contexts_.push_back(m.context);
    }
    graph_->draws_from(std::move(generators));
    for (const auto* c : contexts_) c->waits_for_current_stream();
  }
  const std::vector<size_t>& members() const { return members_; }

  // `count` steps of every member; the members' streams then wait for them (their host visits read results).
  void take_steps(int count) {
    const RunContext::Active on_stack_stream(context_);
    for (const auto* c : contexts_) c->current_stream_waits();
    (*graph_)(count);
    for (const auto* c : contexts_) c->waits_for_current_stream();
  }

 private:
  std::vector<size_t> members_;
  std::vector<const RunContext*> contexts_;
  std::vector<MetricsLog*> logs_;
  RunContext context_;
  std::unique_ptr<StackedSteps> steps_;
  std::unique_ptr<GraphedSteps> graph_;
};

// One round of a group: every run still training takes the steps due, stacked where it can.
class GroupRounds {
 public:
  GroupRounds(std::vector<std::unique_ptr<TrainingRun>>& runs, std::vector<GroupRunResult>& results,
              const std::vector<GroupMember>& members)
      : runs_(runs), results_(results), members_(members), training_(runs.size()), stack_size_(stack_size_setting()) {
    for (size_t i = 0; i < runs.size(); ++i) training_[i] = runs[i] != nullptr;
  }

  // False once no run has steps left.
  bool round() {
    std::vector<int> due(runs_.size(), 0);
    std::map<std::tuple<std::string, long, int>, std::vector<size_t>> alike;
    std::vector<size_t> alone;
    for (size_t i = 0; i < runs_.size(); ++i) {
      if (!training_[i]) continue;
      attempt(i, [&] {
        due[i] = runs_[i]->steps_due();
        training_[i] = due[i] > 0;
      });
      if (!training_[i]) continue;
      const std::string key = stack_size_ > 1 ? runs_[i]->stack_key() : "";
      if (key.empty()) alone.push_back(i);
      else alike[{key, runs_[i]->phase_step(), due[i]}].push_back(i);
    }
    std::map<StackId, std::unique_ptr<Stack>> kept;
    for (auto& [alike_key, all] : alike) {
      for (const auto& members : split(all)) {
        if (members.size() < 2) {
          alone.push_back(members.front());
          continue;
        }
        const StackId id{std::get<0>(alike_key), members};
        if (auto stack = stacked_round(id, due[members.front()])) kept[id] = std::move(stack);
      }
    }
    stacks_ = std::move(kept);
    for (size_t i : alone) attempt(i, [&] { training_[i] = runs_[i]->take_steps(due[i]); });
    for (bool t : training_)
      if (t) return true;
    return false;
  }

 private:
  // Runs alike in stacks of at most stack_size_, as even as they come (20 runs, stacks of 16: 10 and 10); fewer
  // than kFewestStacked (or stack_size_, if smaller) each alone.
  std::vector<std::vector<size_t>> split(const std::vector<size_t>& all) const {
    const size_t n = all.size(), limit = static_cast<size_t>(stack_size_);
    if (n < std::min(kFewestStacked, limit)) {
      std::vector<std::vector<size_t>> alone;
      for (size_t i : all) alone.push_back({i});
      return alone;
    }
    const size_t stacks = (n + limit - 1) / limit;
    std::vector<std::vector<size_t>> parts(stacks);
    for (size_t i = 0; i < n; ++i) parts[i * stacks / n].push_back(all[i]);
    return parts;
  }

  // A stack: what its runs share (TrainingRun::stack_key) and which runs it holds.
  using StackId = std::pair<std::string, std::vector<size_t>>;

  // The members' steps through their stack, kept from the last round where it holds the same runs in the same
  // phase; null where a member failed (the others form a new stack in the next round).
  std::unique_ptr<Stack> stacked_round(const StackId& id, int count) {
    const std::vector<size_t>& members = id.second;
    std::unique_ptr<Stack> stack;
    auto found = stacks_.find(id);
    if (found != stacks_.end()) stack = std::move(found->second);
    try {
      if (!stack) {
        const TrainOptions& o = members_[members.front()].options;
        stack = std::make_unique<Stack>(members, runs_, o.algo, runs_[members.front()]->phase_name(),
                                        torch_device(resolve_device(o.device)));
      }
      runs_[members.front()]->trace_before_steps();
      stack->take_steps(count);
      runs_[members.front()]->trace_after_steps(count, "stack_");
    } catch (const std::exception& e) {
      for (size_t i : members) fail(i, e);
      return nullptr;
    }
    bool all_train_on = true;
    for (size_t i : members) {
      attempt(i, [&] { training_[i] = runs_[i]->took_steps(count); });
      all_train_on = all_train_on && runs_[i] != nullptr;
    }
    return all_train_on ? std::move(stack) : nullptr;
  }

  template <typename F>
  void attempt(size_t i, F f) {
    try {
      f();
    } catch (const std::exception& e) {
      fail(i, e);
    }
  }

  void fail(size_t i, const std::exception& e) {
    results_[i].error = message_of(e);
    training_[i] = false;
    runs_[i].reset();  // its folder's lock goes with it; its last checkpoint stays
  }

  std::vector<std::unique_ptr<TrainingRun>>& runs_;
  std::vector<GroupRunResult>& results_;
  const std::vector<GroupMember>& members_;
  std::vector<bool> training_;
  const int stack_size_;
  std::map<StackId, std::unique_ptr<Stack>> stacks_;
};

}  // namespace

std::vector<GroupRunResult> train_group_on(const std::vector<GroupMember>& members) {
  std::vector<GroupRunResult> results(members.size());
  std::vector<std::unique_ptr<TrainingRun>> runs = build_runs(members, results);
  int alive = 0;
  for (const auto& run : runs) alive += run != nullptr;
  for (auto& run : runs)
    if (run) run->set_group_size(alive);
  GroupRounds rounds(runs, results, members);
  while (rounds.round()) {
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    if (!runs[i]) continue;
    try {
      results[i].result = runs[i]->finish();
    } catch (const std::exception& e) {
      results[i].error = message_of(e);
    }
    runs[i].reset();
  }
  return results;
}

std::vector<GroupRunResult> train_group(const std::string& dataset, const std::vector<TrainOptions>& options) {
  if (options.empty()) return {};
  const TrainingData loaded = load_training_data(dataset, options.front().quiet);
  std::vector<GroupMember> members;
  for (const auto& o : options) members.push_back({&loaded.data, loaded.ref, o});
  return train_group_on(members);
}

}  // namespace modiff::agents
