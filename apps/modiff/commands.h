#pragma once
// Each subcommand lives in its own file and registers itself on the app.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace modiff::cli {

void add_envs_command(CLI::App& app);
void add_rollout_command(CLI::App& app);
void add_fidelity_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_robot_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_suite_subcommand(CLI::App& data);  // `modiff data suite`
void add_behavior_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_hyperparameters_command(CLI::App& app);
void add_eval_command(CLI::App& app);  // eval and swap
void add_sweep_commands(CLI::App& app);  // sweep, report, run
void add_train_bench(CLI::App& bench);  // `modiff bench train`
void add_eval_bench(CLI::App& bench);   // `modiff bench eval`

// Sets oneTBB's thread limit for the rest of the process (0 = all cores).
void limit_threads(int threads);

// Checks of an option's value, before any work: a value outside them is a bad command line (exit 2, one line
// naming the flag and the value). They run only when the option is given, so defaults stay defaults.
// A finite number in [lo, hi] (lo excluded when `lo_open`): NaN, infinities and trailing text fail.
CLI::Validator finite_in(double lo, double hi, bool lo_open = false);
CLI::Validator positive();      // finite and > 0
CLI::Validator non_negative();  // finite and >= 0
CLI::Validator integer_in(long long lo, long long hi);  // an integer in [lo, hi], written whole
CLI::Validator seed_value();    // an integer in [0, 2^63)
CLI::Validator thread_count();  // 0 (all cores) .. 4096
CLI::Validator dataset_name();  // a name in the data home (datasets::check_dataset_name)
CLI::Validator one_of(const std::vector<std::string>& allowed);   // exactly one of these names
CLI::Validator list_of(const std::vector<std::string>& allowed);  // comma-separated names of these, none twice
CLI::Validator positive_int_list();  // "1,2,4"
CLI::Validator seed_list();          // "0-4", "0,3,7", "0-2,10"; none twice
// The device flag's values.
inline const std::vector<std::string> kDevices = {"auto", "cpu", "cuda"};

// The whole of `text` as an integer (no sign-less overflow, no trailing text); false otherwise.
bool parse_integer(const std::string& text, long long& value);

// A flag's comma-separated list ("a,b,c"; empty items dropped).
std::vector<std::string> split_list(const std::string& list);
// A flag's comma-separated positive integers; anything else is an Error naming the flag.
std::vector<int> parse_positive_ints(const std::string& list, const std::string& flag);

}  // namespace modiff::cli
