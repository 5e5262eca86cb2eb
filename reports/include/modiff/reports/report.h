#pragma once
// `modiff report RUNS --out DIR`: the results of one or more sweep directories
// as report.md and a self-contained report.html, with CSV tables and SVG plots
// drawn by gnuplot: normalized-score statistics per configuration (with and
// without guidance), box plots over training seeds, learning curves with and
// without guidance, swap matrices as heatmaps with the IQR change that swaps
// bring, and joint against guidance-first time and peak memory.
#include <string>
#include <vector>

namespace modiff::reports {

struct ReportResult {
  std::string markdown, html;     // paths
  std::vector<std::string> files;  // every file written
  std::vector<std::string> warnings;
};

ReportResult write_report(const std::vector<std::string>& runs, const std::string& out_dir, int bootstrap_reps = 5000);

}  // namespace modiff::reports
