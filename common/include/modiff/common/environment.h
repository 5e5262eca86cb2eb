#pragma once
// Every MODIFF_* environment variable modiff reads, in one place: what each means, its range, and one
// reader per variable. `check_environment()` runs before any command does anything, so a bad value is one
// line naming the variable (exit 2, like a bad command line), never a default put in its place.
#include <optional>
#include <string>
#include <vector>

namespace modiff {

struct EnvironmentVariable {
  const char* name;
  const char* meaning;
  long min = 0, max = 0;  // a whole number within [min, max]; min > max: any non-empty text
};

// The variables, as README.md lists them.
const std::vector<EnvironmentVariable>& environment_variables();

// The variable's value, or none when it is unset or empty.
std::optional<std::string> environment_value(const EnvironmentVariable& variable);

// Throws modiff::Error naming the first variable that is set to a value outside its range.
void check_environment();

// The data home (MODIFF_HOME, default ~/.cache/modiff).
std::string data_home_directory();
// Another assets folder (MODIFF_ASSETS), or none.
std::optional<std::string> assets_override();
// Seconds an HDF5 file may take to read (MODIFF_READ_DEADLINE_S, default 300, 0: no deadline).
unsigned read_deadline_seconds();
// CUDA side streams for the gradient work beside each step (MODIFF_SIDE_STREAMS, 1-8, default 2).
int side_stream_setting();
// Training steps per captured CUDA graph (MODIFF_GRAPH_STEPS, 1-64), or none: the algorithm's choice.
std::optional<int> graph_steps_setting();
// The most runs of a group trained as one stacked network on CUDA (MODIFF_STACK_SIZE, 0-4096, default 16; 0 or
// 1: every run its own steps), read when a group starts.
int stack_size_setting();
// File prefixes for the developer's kernel trace (MODIFF_PROFILE_TRACE) and graph dumps (MODIFF_GRAPH_DUMP).
std::optional<std::string> profile_trace_prefix();
std::optional<std::string> graph_dump_prefix();

}  // namespace modiff
