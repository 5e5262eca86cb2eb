// `modiff hyperparameters`: every number of an algorithm as a run would use it, with the values it may take
// and where its reference value comes from. The algorithm's table in agents/src/algos/ is the one place these
// numbers are written; docs/agents.md's tables are this command's --markdown output (a test checks them).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "modiff/agents/train.h"
#include "modiff/common/error.h"
#include "modiff/common/escape.h"

namespace modiff::cli {

namespace {

std::string markdown_table(const std::vector<agents::HyperparameterRow>& rows) {
  std::string s = "| name | value | range | source |\n|---|---|---|---|\n";
  for (const auto& r : rows)
    s += "| `" + r.name + "` | " + markdown_escaped(r.value) + " | " + markdown_escaped(r.range) + " | " +
         markdown_escaped(r.source) + " |\n";
  return s;
}

void print_text(const std::vector<agents::HyperparameterRow>& rows) {
  size_t name = 4, value = 5, range = 5;
  for (const auto& r : rows) {
    name = std::max(name, r.name.size());
    value = std::max(value, r.value.size());
    range = std::max(range, r.range.size());
  }
  const int n = static_cast<int>(name), v = static_cast<int>(value), g = static_cast<int>(range);
  std::printf("%-*s  %-*s  %-*s  %s\n", n, "name", v, "value", g, "range", "source");
  for (const auto& r : rows)
    std::printf("%-*s  %-*s  %-*s  %s\n", n, r.name.c_str(), v, r.value.c_str(), g, r.range.c_str(), r.source.c_str());
}

}  // namespace

void add_hyperparameters_command(CLI::App& app) {
  struct Args {
    std::string algo = "idql", guidance_kind, dataset;
    std::vector<std::string> set;
    bool markdown = false, json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("hyperparameters",
                                 "Every hyperparameter of an algorithm: value, range and source (what --set may change)");
  cmd->add_option("--algo", args->algo, "idql, dql, cfg or edp")->capture_default_str()->check(one_of(agents::algorithm_names()));
  cmd->add_option("--guidance-kind", args->guidance_kind, "iql or twin-q (default: the algorithm's own)")
      ->check(one_of({"iql", "twin-q"}));
  cmd->add_option("--dataset", args->dataset, "Dataset name, for values the reference sets per dataset (dql's grad norms)");
  cmd->add_option("--set", args->set, "NAME=VALUE overrides, as modiff train takes them")->type_name("NAME=VALUE");
  auto* markdown = cmd->add_flag("--markdown", args->markdown, "Print a Markdown table (docs/agents.md holds these)");
  cmd->add_flag("--json", args->json, "Print {name: value} as JSON")->excludes(markdown);
  cmd->callback([args] {
    std::vector<agents::HyperparameterRow> rows;
    try {  // a name or value the table refuses is a bad command line
      rows = agents::hyperparameters(args->algo, args->guidance_kind, args->dataset, args->set);
    } catch (const Error& e) {
      throw CLI::ValidationError(e.what());
    }
    if (args->markdown) {
      std::cout << markdown_table(rows);
    } else if (args->json) {
      nlohmann::json j = nlohmann::json::object();
      for (const auto& r : rows) j[r.name] = {{"value", r.value}, {"range", r.range}, {"source", r.source}};
      std::cout << j.dump(2) << "\n";
    } else {
      print_text(rows);
    }
  });
}

}  // namespace modiff::cli
