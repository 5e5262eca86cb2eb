#pragma once
// What a finished sweep cell records (its DONE file): written by run_sweep and read by reports through this one
// type, so the two cannot disagree on a key. JSON through nlohmann-json's own mapping (to_json/from_json).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace modiff::sweeps {

// An evaluation as a cell keeps it: the score of every evaluation seed and the evaluator's aggregate block.
struct EvaluationSummary {
  std::vector<double> per_seed;
  nlohmann::json aggregate;
};

struct CellRecord {
  std::string id;
  std::string kind;  // train | swap
  std::string dataset, algo, schedule;
  uint64_t seed = 0;
  std::string policy_cell, guidance_cell, guidance_algo;  // swap cells: whose policy, whose guidance
  nlohmann::json defines;  // the cell's definition, as cell.json holds it
  EvaluationSummary guided;  // with the policy's own guidance (train) or the other cell's (swap)
  double score = 0;          // the mean of guided.per_seed
  // Train cells only: the policy without guidance, and the run folder.
  std::optional<EvaluationSummary> unguided;
  std::optional<double> score_unguided;
  std::string run;

  bool is_train() const { return kind == "train"; }
};

void to_json(nlohmann::json& j, const EvaluationSummary& e);
void from_json(const nlohmann::json& j, EvaluationSummary& e);
void to_json(nlohmann::json& j, const CellRecord& r);
void from_json(const nlohmann::json& j, CellRecord& r);

// A DONE file; a missing key, a wrong type or broken JSON is an Error naming the file.
CellRecord read_cell_record(const std::string& done_file);

// The finished cells (those with a DONE record) of the given sweep folders, each with its folder.
struct FinishedCell {
  CellRecord record;
  std::string dir;
};
std::vector<FinishedCell> read_finished_cells(const std::vector<std::string>& sweep_dirs);

}  // namespace modiff::sweeps
