// A group of training runs in one process (train_group_on): built one after the other, then advanced in
// lockstep, each run one captured graph (or one eager chunk) at a time, so that on CUDA the GPU holds work of
// every run at once. What makes each run the run it would be alone is its RunContext (its random streams and
// stream, in place while it advances); the order in which runs advance changes nothing in any of them.
#include <c10/util/Exception.h>

#include <map>
#include <memory>
#include <utility>

#include "modiff/agents/train.h"
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

}  // namespace

std::vector<GroupRunResult> train_group_on(const std::vector<GroupMember>& members) {
  std::vector<GroupRunResult> results(members.size());
  std::vector<std::unique_ptr<TrainingRun>> runs = build_runs(members, results);
  int alive = 0;
  for (const auto& run : runs) alive += run != nullptr;
  for (auto& run : runs)
    if (run) run->set_group_size(alive);
  std::vector<bool> training(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) training[i] = runs[i] != nullptr;
  for (bool any = true; any;) {
    any = false;
    for (size_t i = 0; i < runs.size(); ++i) {
      if (!training[i]) continue;
      try {
        training[i] = runs[i]->advance();
        any = any || training[i];
      } catch (const std::exception& e) {
        results[i].error = message_of(e);
        training[i] = false;
        runs[i].reset();  // its folder's lock goes with it; its last checkpoint stays
      }
    }
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
