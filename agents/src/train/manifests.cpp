// The manifests of the two artifacts a run writes (docs/agents.md, "Artifacts and compatibility"), and the
// artifacts themselves (weights.pt + manifest.json, written atomically as one folder).
#include "modiff/common/atomic_file.h"
#include "train/training_run.h"

namespace modiff::agents {

void to_json(nlohmann::json& j, const PhaseRecord& p) {
  j = {{"name", p.name},     {"steps", p.steps}, {"seconds", p.seconds}, {"steps_per_s", p.steps_per_s},
       {"peak_memory_bytes", p.peak_memory_bytes}, {"memory_kind", p.memory_kind}};
  if (p.runs_in_process != 1) j["runs_in_process"] = p.runs_in_process;  // records of runs trained alone stay as they were
  if (p.stacked_runs != 1) j["stacked_runs"] = p.stacked_runs;
}

void from_json(const nlohmann::json& j, PhaseRecord& p) {
  j.at("name").get_to(p.name);
  j.at("steps").get_to(p.steps);
  j.at("seconds").get_to(p.seconds);
  j.at("steps_per_s").get_to(p.steps_per_s);
  j.at("peak_memory_bytes").get_to(p.peak_memory_bytes);
  j.at("memory_kind").get_to(p.memory_kind);
  p.runs_in_process = j.contains("runs_in_process") ? j.at("runs_in_process").get<int>() : 1;
  p.stacked_runs = j.contains("stacked_runs") ? j.at("stacked_runs").get<int>() : 1;
}

nlohmann::json TrainingRun::guidance_manifest() const {
  return {{"format", "modiff-artifact-1"},
          {"kind", "guidance"},
          {"algorithm", guidance_->config().kind},
          {"env_id", ref_.env_id},
          {"obs_dim", data_->obs_dim},
          {"act_dim", data_->act_dim},
          {"observation_normalization", nlohmann::json(guidance_->normalizer())},
          {"reward_scale", guidance_->reward_scale()},
          {"has_v", guidance_->has_v()},
          {"dataset", {{"name", ref_.name}, {"sha256", ref_.sha256}, {"transitions", data_->size}}},
          {"seed", o_.seed},
          {"steps", plan_.front().steps},
          {"schedule", o_.schedule},
          {"trained_beside", o_.algo},
          {"hyperparameters", nlohmann::json(guidance_->config())},
          {"parameters", guidance_->parameter_count()},
          {"training", {{"device", choice_.description}, {"batch", config_.batch}, {"phases", done_}}}};
}

nlohmann::json TrainingRun::diffusion_manifest() const {
  const nlohmann::json trained_with =
      o_.guidance_dir.empty()
          ? nlohmann::json{{"dir", (out_ / "guidance").string()}, {"algorithm", guidance_->config().kind},
                           {"seed", o_.seed}, {"dataset_sha256", ref_.sha256}}
          : nlohmann::json{{"dir", o_.guidance_dir}, {"algorithm", guidance_info_.algorithm},
                           {"seed", guidance_info_.seed}, {"dataset_sha256", guidance_info_.dataset_sha256}};
  const nlohmann::json table = resolved_.table.values();
  nlohmann::json manifest = {{"format", "modiff-artifact-1"},
                             {"kind", "diffusion"},
                             {"algorithm", o_.algo},
                             {"env_id", ref_.env_id},
                             {"obs_dim", data_->obs_dim},
                             {"act_dim", data_->act_dim},
                             {"observation_normalization", nlohmann::json(policy_->normalizer())},
                             {"dataset", {{"name", ref_.name}, {"sha256", ref_.sha256}, {"transitions", data_->size}}},
                             {"seed", o_.seed},
                             {"steps", o_.steps},
                             {"schedule", o_.guidance_dir.empty() ? o_.schedule : "guidance-from-dir"},
                             {"guidance", trained_with},
                             {"hyperparameters", nlohmann::json(policy_->config())},
                             {"eta", table.value("eta", 0.0)},
                             {"algorithm_hyperparameters", table},
                             {"parameters", policy_->parameter_count()},
                             {"training", {{"device", choice_.description}, {"batch", config_.batch}, {"phases", done_}}}};
  if (policy_->conditioned())
    manifest["labels"] = {{"mean", policy_->label_mean}, {"std", policy_->label_std}, {"target", policy_->target_label},
                          {"source", guidance_->has_v() ? "advantage" : "q"}};
  return manifest;
}

void TrainingRun::write_artifact(const std::string& name, const nlohmann::json& manifest,
                                 const NamedTensors& weights) const {
  write_directory_atomically((out_ / name).string(), [&](const std::string& dir) {
    save_tensors(dir + "/weights.pt", weights);
    write_text_atomically(dir + "/manifest.json", manifest.dump(2) + "\n");
  });
}

}  // namespace modiff::agents
