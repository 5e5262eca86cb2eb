#include "modiff/common/environment.h"

#include <cerrno>
#include <cstdlib>

#include "modiff/common/error.h"

namespace modiff {

namespace {

constexpr long kAnyText = -1;  // min > max

const char* value_of(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// The variable's whole number, checked against its range; nullopt when it is not set.
std::optional<long> whole_number(const EnvironmentVariable& var) {
  const char* text = value_of(var.name);
  if (!text) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long n = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || errno == ERANGE || n < var.min || n > var.max)
    throw Error(std::string(var.name) + " must be a whole number from " + std::to_string(var.min) + " to " +
                std::to_string(var.max) + ", got '" + text + "'");
  return n;
}

const EnvironmentVariable& variable(const std::string& name) {
  for (const auto& v : environment_variables())
    if (name == v.name) return v;
  throw Error("internal: no environment variable " + name);
}

std::optional<std::string> text_of(const char* name) {
  const char* v = value_of(name);
  return v ? std::optional<std::string>(v) : std::nullopt;
}

}  // namespace

const std::vector<EnvironmentVariable>& environment_variables() {
  static const std::vector<EnvironmentVariable> vars = {
      {"MODIFF_HOME", "the data home (default ~/.cache/modiff)", 0, kAnyText},
      {"MODIFF_ASSETS", "another assets folder (behavior policies)", 0, kAnyText},
      {"MODIFF_READ_DEADLINE_S", "seconds an HDF5 file may take to read (default 300; 0: no deadline)", 0, 86400},
      {"MODIFF_SIDE_STREAMS", "CUDA side streams for the gradient work beside a step (default 2)", 1, 8},
      {"MODIFF_GRAPH_STEPS", "training steps per captured CUDA graph (default: the algorithm's)", 1, 64},
      {"MODIFF_STACK_SIZE", "the most runs of a group trained as one stacked network on CUDA (default 16; 0, 1: none)",
       0, 4096},
      {"MODIFF_PROFILE_TRACE", "file prefix of a kernel trace of training steps 200-220 (developers)", 0, kAnyText},
      {"MODIFF_GRAPH_DUMP", "file prefix of a .dot dump of every captured CUDA graph (developers)", 0, kAnyText},
  };
  return vars;
}

std::optional<std::string> environment_value(const EnvironmentVariable& variable) { return text_of(variable.name); }

void check_environment() {
  for (const auto& v : environment_variables())
    if (v.min <= v.max) whole_number(v);
}

std::string data_home_directory() {
  if (const auto home = text_of("MODIFF_HOME")) return *home;
  const char* user = value_of("HOME");
  return std::string(user ? user : ".") + "/.cache/modiff";
}

std::optional<std::string> assets_override() { return text_of("MODIFF_ASSETS"); }

unsigned read_deadline_seconds() {
  static const unsigned seconds = static_cast<unsigned>(whole_number(variable("MODIFF_READ_DEADLINE_S")).value_or(300));
  return seconds;
}

int side_stream_setting() {
  static const int count = static_cast<int>(whole_number(variable("MODIFF_SIDE_STREAMS")).value_or(2));
  return count;
}

std::optional<int> graph_steps_setting() {
  static const auto steps = whole_number(variable("MODIFF_GRAPH_STEPS"));
  return steps ? std::optional<int>(static_cast<int>(*steps)) : std::nullopt;
}

int stack_size_setting() { return static_cast<int>(whole_number(variable("MODIFF_STACK_SIZE")).value_or(16)); }

std::optional<std::string> profile_trace_prefix() { return text_of("MODIFF_PROFILE_TRACE"); }
std::optional<std::string> graph_dump_prefix() { return text_of("MODIFF_GRAPH_DUMP"); }

}  // namespace modiff
