// A run's checkpoint (OUT/checkpoint/, written atomically): every tensor of both modules (weights, optimizer
// state, EMA), the CPU and CUDA generators' states, and state.json (the options a resume must share, the
// phase and step, the metrics rows so far, the label statistics). Restoring it makes the rest of the run
// bit for bit the uninterrupted one.
#include <fstream>

#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/common/json_difference.h"
#include "train/metrics_log.h"
#include "train/training_run.h"

namespace modiff::agents {

NamedTensors TrainingRun::all_tensors() {
  NamedTensors t;
  for (auto& [name, v] : guidance_->state()) t.push_back({"guidance." + name, v});
  for (auto& [name, v] : policy_->state()) t.push_back({"policy." + name, v});
  return t;
}

void TrainingRun::write_metrics() const {
  std::string csv = std::string(MetricsLog::kHeader) + "\n";
  for (const auto& r : rows_) csv += r + "\n";
  write_text_atomically((out_ / "metrics.csv").string(), csv);
}

void TrainingRun::save_checkpoint(double phase_seconds) {
  write_directory_atomically(ckpt_.string(), [&](const std::string& dir) {
    auto tensors = all_tensors();
    tensors.push_back({"rng_cpu", at::detail::getDefaultCPUGenerator().get_state()});
    if (device_.is_cuda()) tensors.push_back({"rng_cuda", at::globalContext().defaultGenerator(device_).get_state()});
    save_tensors(dir + "/state.pt", tensors);
    const nlohmann::json state = {{"options", options_},
                                  {"phase_index", phase_index_},
                                  {"phase_step", phase_step_},
                                  {"phase_seconds", phase_seconds},
                                  {"done_phases", done_},
                                  {"rows", rows_},
                                  {"labels", {policy_->label_mean, policy_->label_std, policy_->target_label}}};
    write_text_atomically(dir + "/state.json", state.dump(1) + "\n");
  });
  write_metrics();
}

void TrainingRun::restore_checkpoint() {
  nlohmann::json state;
  try {
    std::ifstream(ckpt_ / "state.json") >> state;
  } catch (const std::exception&) {
    throw Error((ckpt_ / "state.json").string() + ": not valid JSON");
  }
  if (const JsonDifference d = first_difference(state.at("options"), options_); d.found())
    throw Error("--resume: " + d.path + " differs from the checkpointed run (" + d.was.dump() + " there, " +
                d.now.dump() + " now)");
  phase_index_ = state.at("phase_index");
  phase_step_ = state.at("phase_step");
  phase_seconds_before_ = state.at("phase_seconds");
  state.at("done_phases").get_to(done_);
  state.at("rows").get_to(rows_);
  if (phase_index_ > 0 && plan_[0].name == "guidance") guidance_->freeze();
  auto tensors = all_tensors();
  torch::Tensor rng_cpu = torch::empty({0}, torch::kUInt8), rng_cuda = torch::empty({0}, torch::kUInt8);
  {
    torch::serialize::InputArchive archive;
    archive.load_from((ckpt_ / "state.pt").string());
    archive.read("rng_cpu", rng_cpu);
    if (device_.is_cuda()) archive.try_read("rng_cuda", rng_cuda);
  }
  load_tensors_into((ckpt_ / "state.pt").string(), tensors);
  at::Generator cpu_generator = at::detail::getDefaultCPUGenerator();  // a handle: setting its state sets the default's
  cpu_generator.set_state(rng_cpu);
  if (device_.is_cuda() && rng_cuda.numel() > 0) {
    at::Generator cuda_generator = at::globalContext().defaultGenerator(device_);
    cuda_generator.set_state(rng_cuda);
  }
  if (guidance_->frozen() && phase_index_ < plan_.size() && plan_[phase_index_].name == "diffusion")
    algorithm_->on_guidance_frozen();
  const auto labels = state.at("labels");
  policy_->label_mean = labels.at(0);
  policy_->label_std = labels.at(1);
  policy_->target_label = labels.at(2);
}

}  // namespace modiff::agents
