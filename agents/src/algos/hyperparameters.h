#pragma once
// The table of an algorithm's numbers. Each line of an algorithm's `describe`
// names one hyperparameter, sets its field to the reference value, gives the
// values it may take and says where the value comes from, so that a number is
// written once: the table sets the defaults, applies `--set NAME=VALUE`
// overrides (checked against the range), prints `modiff hyperparameters` and
// is recorded in checkpoints and manifests.
#include <nlohmann/json.hpp>

#include <string>
#include <variant>
#include <vector>

#include "nets/networks.h"

namespace modiff::agents {

class Hyperparameters {
 public:
  // `range` is an interval in the usual notation, "[1, 1048576]" or "(0, 1]".
  void number(const std::string& name, int& field, int reference, const char* range, const std::string& source);
  void number(const std::string& name, long& field, long reference, const char* range, const std::string& source);
  void number(const std::string& name, double& field, double reference, const char* range, const std::string& source);
  void flag(const std::string& name, bool& field, bool reference, const std::string& source);
  void choice(const std::string& name, std::string& field, const std::string& reference,
              const std::vector<std::string>& choices, const std::string& source);
  void activation(const std::string& name, Activation& field, Activation reference, const std::string& source);

  // One override "NAME=VALUE"; throws Error naming the name or value at fault. `owner` names the
  // table in messages ("idql with iql guidance").
  void set(const std::string& assignment, const std::string& owner);
  bool has(const std::string& name) const;
  // An algorithm built on another's table gives one of its numbers another reference value and source.
  void change_reference(const std::string& name, const std::string& value, const std::string& source);

  struct Row {
    std::string name, value, range, source;
  };
  std::vector<Row> rows() const;       // in the order the algorithm lists them
  nlohmann::json values() const;       // {name: value}, typed

 private:
  using Field = std::variant<int*, long*, double*, bool*, std::string*, Activation*>;
  struct Entry {
    std::string name;
    Field field;
    std::string range;  // as written; for choices "a | b"
    double lo = 0, hi = 0;
    bool lo_open = false, hi_open = false;
    std::vector<std::string> choices;
    std::string source;
  };
  Entry& add(const std::string& name, Field field, const char* range, const std::string& source);
  static std::string text(const Field& field);

  std::vector<Entry> entries_;
};

}  // namespace modiff::agents
