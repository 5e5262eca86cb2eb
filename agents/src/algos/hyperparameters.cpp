#include "algos/hyperparameters.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "modiff/common/error.h"

namespace modiff::agents {

namespace {

// "[1, 65536]", "(0, 1]": the bounds and whether each is open. A malformed range is a bug of the table.
void parse_range(const std::string& range, double& lo, double& hi, bool& lo_open, bool& hi_open) {
  const auto comma = range.find(',');
  if (range.size() < 5 || comma == std::string::npos || (range.front() != '[' && range.front() != '(') ||
      (range.back() != ']' && range.back() != ')'))
    throw Error("internal: hyperparameter range '" + range + "' is not an interval");
  lo_open = range.front() == '(';
  hi_open = range.back() == ')';
  lo = std::strtod(range.substr(1, comma - 1).c_str(), nullptr);
  hi = std::strtod(range.substr(comma + 1, range.size() - comma - 2).c_str(), nullptr);
}

// The shortest text that reads back as the same double (nlohmann's), so a printed value is the value used.
std::string number_text(double v) { return nlohmann::json(v).dump(); }

}  // namespace

Hyperparameters::Entry& Hyperparameters::add(const std::string& name, Field field, const char* range,
                                             const std::string& source) {
  for (const auto& e : entries_)
    if (e.name == name) throw Error("internal: hyperparameter '" + name + "' listed twice");
  Entry e;
  e.name = name;
  e.field = field;
  e.source = source;
  if (range) {
    e.range = range;
    parse_range(e.range, e.lo, e.hi, e.lo_open, e.hi_open);
  }
  entries_.push_back(e);
  return entries_.back();
}

void Hyperparameters::number(const std::string& name, int& field, int reference, const char* range,
                             const std::string& source) {
  field = reference;
  add(name, &field, range, source);
}

void Hyperparameters::number(const std::string& name, long& field, long reference, const char* range,
                             const std::string& source) {
  field = reference;
  add(name, &field, range, source);
}

void Hyperparameters::number(const std::string& name, double& field, double reference, const char* range,
                             const std::string& source) {
  field = reference;
  add(name, &field, range, source);
}

void Hyperparameters::flag(const std::string& name, bool& field, bool reference, const std::string& source) {
  field = reference;
  add(name, &field, nullptr, source).range = "true | false";
}

void Hyperparameters::choice(const std::string& name, std::string& field, const std::string& reference,
                             const std::vector<std::string>& choices, const std::string& source) {
  field = reference;
  auto& e = add(name, &field, nullptr, source);
  e.choices = choices;
  for (const auto& c : choices) e.range += (e.range.empty() ? "" : " | ") + c;
}

void Hyperparameters::activation(const std::string& name, Activation& field, Activation reference,
                                 const std::string& source) {
  field = reference;
  add(name, &field, nullptr, source).range = "relu | mish | silu";
}

bool Hyperparameters::has(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return true;
  return false;
}

void Hyperparameters::change_reference(const std::string& name, const std::string& value, const std::string& source) {
  set(name + "=" + value, "internal: the table");
  for (auto& e : entries_)
    if (e.name == name) e.source = source;
}

void Hyperparameters::set(const std::string& assignment, const std::string& owner) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error("'" + assignment + "' is not NAME=VALUE (see modiff hyperparameters)");
  const std::string name = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  Entry* entry = nullptr;
  for (auto& e : entries_)
    if (e.name == name) entry = &e;
  if (!entry) {
    std::string names;
    for (const auto& e : entries_) names += (names.empty() ? "" : ", ") + e.name;
    throw Error(owner + " has no hyperparameter '" + name + "' (it has " + names + ")");
  }
  const std::string at = name + "=" + value + ": ";
  std::visit(
      [&](auto* field) {
        using T = std::remove_pointer_t<decltype(field)>;
        if constexpr (std::is_same_v<T, std::string>) {
          for (const auto& c : entry->choices)
            if (c == value) {
              *field = value;
              return;
            }
          throw Error(at + "must be one of " + entry->range);
        } else if constexpr (std::is_same_v<T, Activation>) {
          if (value != "relu" && value != "mish" && value != "silu") throw Error(at + "must be one of " + entry->range);
          *field = parse_activation(value);
        } else if constexpr (std::is_same_v<T, bool>) {
          if (value != "true" && value != "false") throw Error(at + "must be true or false");
          *field = value == "true";
        } else {
          char* end = nullptr;
          errno = 0;
          const double v = std::strtod(value.c_str(), &end);
          if (value.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) throw Error(at + "not a finite number");
          if (std::is_integral_v<T> && v != std::floor(v)) throw Error(at + "must be a whole number");
          const bool inside = (entry->lo_open ? v > entry->lo : v >= entry->lo) &&
                              (entry->hi_open ? v < entry->hi : v <= entry->hi);
          if (!inside) throw Error(at + "must be in " + entry->range);
          *field = static_cast<T>(v);
        }
      },
      entry->field);
}

std::string Hyperparameters::text(const Field& field) {
  return std::visit(
      [](auto* f) -> std::string {
        using T = std::remove_pointer_t<decltype(f)>;
        if constexpr (std::is_same_v<T, std::string>) return *f;
        else if constexpr (std::is_same_v<T, Activation>) return activation_name(*f);
        else if constexpr (std::is_same_v<T, bool>) return *f ? "true" : "false";
        else if constexpr (std::is_same_v<T, double>) return number_text(*f);
        else return std::to_string(*f);
      },
      field);
}

std::vector<Hyperparameters::Row> Hyperparameters::rows() const {
  std::vector<Row> rows;
  for (const auto& e : entries_) rows.push_back({e.name, text(e.field), e.range, e.source});
  return rows;
}

nlohmann::json Hyperparameters::values() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& e : entries_)
    std::visit(
        [&](auto* f) {
          using T = std::remove_pointer_t<decltype(f)>;
          if constexpr (std::is_same_v<T, Activation>) j[e.name] = activation_name(*f);
          else j[e.name] = *f;
        },
        e.field);
  return j;
}

}  // namespace modiff::agents
