#include "modiff/sweeps/cell_record.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "modiff/common/error.h"

namespace modiff::sweeps {

namespace fs = std::filesystem;

void to_json(nlohmann::json& j, const EvaluationSummary& e) { j = {{"per_seed", e.per_seed}, {"aggregate", e.aggregate}}; }

void from_json(const nlohmann::json& j, EvaluationSummary& e) {
  j.at("per_seed").get_to(e.per_seed);
  e.aggregate = j.at("aggregate");
}

void to_json(nlohmann::json& j, const CellRecord& r) {
  j = {{"id", r.id},
       {"kind", r.kind},
       {"dataset", r.dataset},
       {"algo", r.algo},
       {"schedule", r.schedule},
       {"seed", r.seed},
       {"policy_cell", r.policy_cell},
       {"guidance_cell", r.guidance_cell},
       {"guidance_algo", r.guidance_algo},
       {"defines", r.defines},
       {"guided", r.guided},
       {"score", r.score}};
  if (r.unguided) j["unguided"] = *r.unguided;
  if (r.score_unguided) j["score_unguided"] = *r.score_unguided;
  if (!r.run.empty()) j["run"] = r.run;
}

void from_json(const nlohmann::json& j, CellRecord& r) {
  j.at("id").get_to(r.id);
  j.at("kind").get_to(r.kind);
  j.at("dataset").get_to(r.dataset);
  j.at("algo").get_to(r.algo);
  j.at("schedule").get_to(r.schedule);
  j.at("seed").get_to(r.seed);
  j.at("policy_cell").get_to(r.policy_cell);
  j.at("guidance_cell").get_to(r.guidance_cell);
  j.at("guidance_algo").get_to(r.guidance_algo);
  r.defines = j.at("defines");
  j.at("guided").get_to(r.guided);
  j.at("score").get_to(r.score);
  if (r.kind == "train") {  // a train cell without these is incomplete, not a swap
    r.unguided = j.at("unguided").get<EvaluationSummary>();
    r.score_unguided = j.at("score_unguided").get<double>();
    j.at("run").get_to(r.run);
  }
}

CellRecord read_cell_record(const std::string& done_file) {
  std::ifstream in(done_file);
  if (!in) throw Error(done_file + ": cannot read");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str()).get<CellRecord>();
  } catch (const nlohmann::json::parse_error&) {
    throw Error(done_file + ": not valid JSON");
  } catch (const std::exception& e) {
    throw Error(done_file + ": not a cell record (" + std::string(e.what()) + ")");
  }
}

std::vector<FinishedCell> read_finished_cells(const std::vector<std::string>& sweep_dirs) {
  std::vector<FinishedCell> cells;
  for (const auto& sweep : sweep_dirs) {
    const fs::path dir = fs::path(sweep) / "cells";
    if (!fs::is_directory(dir)) throw Error(sweep + ": not a sweep directory (no cells/)");
    for (const auto& entry : fs::directory_iterator(dir)) {
      const fs::path done = entry.path() / "DONE";
      if (fs::exists(done)) cells.push_back({read_cell_record(done.string()), entry.path().string()});
    }
  }
  return cells;
}

}  // namespace modiff::sweeps
