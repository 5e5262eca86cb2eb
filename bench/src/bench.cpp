#include "modiff/bench/bench.h"

#include <tbb/info.h>
#include <unistd.h>

#include <chrono>
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
