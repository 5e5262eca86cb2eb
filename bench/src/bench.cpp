#include "modiff/bench/bench.h"

#include <tbb/global_control.h>
#include <tbb/info.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <fstream>
#include <sstream>
#include <vector>

#include "modiff/common/atomic_file.h"
#include "modiff/common/rng.h"
#include "modiff/envs/vector_env.h"

namespace modiff::bench {

double env_steps_per_second(const envs::EnvSpec& spec, int num_envs, double seconds) {
  envs::VectorEnv venv(spec, num_envs, 0);
  venv.reset();
  Rng rng(7);
  std::vector<double> actions(static_cast<size_t>(num_envs) * spec.act_dim);
  auto one_step = [&] {
    for (auto& a : actions) a = rng.uniform(-1, 1);
    venv.step(actions.data());
  };
  for (int i = 0; i < 20; ++i) one_step();
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  long steps = 0;
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int i = 0; i < 20; ++i) one_step();
    steps += 20L * num_envs;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  }
  return steps / elapsed;
}

std::vector<EnvBenchRow> run_env_benchmark(const EnvBenchOptions& options) {
  std::vector<const envs::EnvSpec*> specs = options.envs;
  if (specs.empty())
    for (const auto& s : envs::all_envs()) specs.push_back(&s);
  std::vector<int> threads = options.thread_counts;
  if (threads.empty()) {
    const int cores = tbb::info::default_concurrency();
    for (int t = 1; t < cores; t *= 2) threads.push_back(t);
    threads.push_back(cores);
  }
  std::vector<EnvBenchRow> rows;
  auto measure = [&](const envs::EnvSpec& spec, int t, int n) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(t));
    rows.push_back({spec.id, t, n, env_steps_per_second(spec, n, options.seconds)});
    if (options.progress)
      std::fprintf(stderr, "%-24s threads %3d envs %4d: %10.0f steps/s\n", spec.id.c_str(), t, n,
                   rows.back().steps_per_s);
  };
  for (const auto* spec : specs) {
    // One env on one thread: the single-threaded figure. Then the vector env
    // with a fixed number of envs per thread, so every thread count does the
    // same work per thread (efficiency is measured against its 1-thread row).
    if (options.num_envs == 0) measure(*spec, 1, 1);
    for (int t : threads) measure(*spec, t, options.num_envs > 0 ? options.num_envs : 32 * t);
  }
  return rows;
}

std::string env_benchmark_markdown(const std::vector<EnvBenchRow>& rows, const std::string& machine) {
  std::ostringstream md;
  md << "Machine: " << machine << ". Uniform random actions, auto-reset included. Speed-up and efficiency are "
     << "against the same env count per thread on one thread.\n\n"
     << "| env | threads | envs | steps/s | speed-up | parallel efficiency |\n|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    double base = 0;
    for (const auto& b : rows)
      if (b.env == r.env && b.threads == 1 && b.num_envs * r.threads == r.num_envs) base = b.steps_per_s;
    char line[256];
    std::snprintf(line, sizeof line, "| %s | %d | %d | %.0f | %.2f | %.0f%% |\n", r.env.c_str(), r.threads, r.num_envs,
                  r.steps_per_s, base > 0 ? r.steps_per_s / base : 0.0,
                  base > 0 ? 100.0 * r.steps_per_s / (base * r.threads) : 0.0);
    md << line;
  }
  return md.str();
}

std::string machine_description() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return model + ", " + std::to_string(tbb::info::default_concurrency()) + " cores (host " + host + ")";
}

void record_markdown_section(const std::string& path, const std::string& section, const std::string& body) {
  std::string text;
  {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  const std::string begin = "<!-- " + section + " begin -->", end = "<!-- " + section + " end -->";
  const std::string block = begin + "\n" + body + end;
  const auto b = text.find(begin), e = text.find(end);
  if (b != std::string::npos && e != std::string::npos && e > b) {
    text.replace(b, e + end.size() - b, block);
  } else {
    if (!text.empty() && text.back() != '\n') text += "\n";
    text += "\n" + block + "\n";
  }
  write_text_atomically(path, text);
}

}  // namespace modiff::bench
