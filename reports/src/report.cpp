#include "modiff/reports/report.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "modiff/agents/train.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/file_lock.h"
#include "modiff/common/error.h"
#include "modiff/common/escape.h"
#include "modiff/common/spawn.h"
#include "modiff/eval/statistics.h"
#include "modiff/sweeps/cell_record.h"

namespace modiff::reports {

namespace fs = std::filesystem;

namespace {

using sweeps::CellRecord;
using Cell = sweeps::FinishedCell;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string fmt(double v, int digits = 1) {
  char b[48];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// Markdown and HTML tables from one header and rows; also written as CSV.
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::string markdown() const {
    std::string s = "|";
    for (const auto& h : header) s += " " + markdown_escaped(h) + " |";
    s += "\n|";
    for (size_t i = 0; i < header.size(); ++i) s += "---|";
    s += "\n";
    for (const auto& r : rows) {
      s += "|";
      for (const auto& c : r) s += " " + markdown_escaped(c) + " |";
      s += "\n";
    }
    return s;
  }
  std::string html() const {
    std::string s = "<table><tr>";
    for (const auto& h : header) s += "<th>" + html_escaped(h) + "</th>";
    s += "</tr>";
    for (const auto& r : rows) {
      s += "<tr>";
      for (const auto& c : r) s += "<td>" + html_escaped(c) + "</td>";
      s += "</tr>";
    }
    return s + "</table>\n";
  }
  std::string csv() const {
    std::string s;
    for (size_t i = 0; i < header.size(); ++i) s += (i ? "," : "") + csv_field(header[i]);
    s += "\n";
    for (const auto& r : rows) {
      for (size_t i = 0; i < r.size(); ++i) s += (i ? "," : "") + csv_field(r[i]);
      s += "\n";
    }
    return s;
  }
};

// Runs gnuplot on a script; the script writes `svg`. Throws a clear error when gnuplot is missing or fails.
void gnuplot(const fs::path& script_path, const std::string& script, const fs::path& svg) {
  write_text_atomically(script_path.string(), script);
  SpawnOptions options;
  options.stderr_file = script_path.string() + ".log";
  if (run_program({"gnuplot", script_path.string()}, options).exit_code != 0 || !fs::exists(svg))
    throw Error("gnuplot failed on " + script_path.string() + " (is gnuplot-nox installed? see " +
                script_path.string() + ".log)");
}

// A gnuplot string literal that stays text: single-quoted (gnuplot performs no backquote, macro or backslash
// substitution inside single quotes), quotes doubled, line breaks (which would end the command) as spaces.
std::string gp_quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "''";
    else if (c == '\n' || c == '\r') q += ' ';
    else q += c;
  }
  return q + "'";
}

std::string svg_body(const fs::path& svg) {
  std::string s = slurp(svg);
  const auto start = s.find("<svg");
  return start == std::string::npos ? s : s.substr(start);
}

std::string config_name(const CellRecord& r) { return r.dataset + " / " + r.algo + " / " + r.schedule; }

// The same sweep named twice, however spelled, would count its runs twice.
void check_distinct(const std::vector<std::string>& runs) {
  std::set<fs::path> seen;
  for (const auto& run : runs) {
    std::error_code ec;
    const fs::path resolved = fs::weakly_canonical(fs::absolute(run), ec);
    if (!seen.insert(ec ? fs::path(run) : resolved).second) throw Error("report: sweep directory " + run + " is named twice");
  }
}

// Two reports into one folder at once: the second stops naming the first.
ExclusiveLock lock_report_folder(const std::string& out_dir) {
  std::error_code made;
  fs::create_directories(out_dir, made);
  if (made) throw Error("report: cannot create " + out_dir + ": " + made.message());
  return ExclusiveLock((fs::path(out_dir) / ".modiff-lock").string(), "report " + out_dir);
}

// The report being written: its folder, its Markdown and HTML so far, and what it wrote.
struct ReportDocument {
  fs::path out, plots;
  bool have_gnuplot = false;
  std::string md, html_body;
  ReportResult result;

  void section(const std::string& title, const std::string& text) {
    md += "## " + title + "\n\n" + text + "\n";
    html_body += "<h2>" + title + "</h2>\n<p>" + text + "</p>\n";
  }
  void subsection(const std::string& title, const std::string& text) {
    md += "### " + title + "\n\n" + text + "\n\n";
    html_body += "<h3>" + title + "</h3>\n<p>" + text + "</p>\n";
  }
  void add_table(const std::string& name, const Table& t) {
    const std::string path = (out / (name + ".csv")).string();
    write_text_atomically(path, t.csv());
    result.files.push_back(path);
    md += t.markdown() + "\n[" + name + ".csv](" + name + ".csv)\n\n";
    html_body += t.html();
  }
  // Without gnuplot the report keeps its tables and says the plots are missing (write_report).
  void add_plot(const std::string& name, const std::string& script_body, const std::string& caption) {
    if (!have_gnuplot) return;
    const fs::path svg = plots / (name + ".svg");
    gnuplot(plots / (name + ".gp"),
            "set terminal svg size 820,460 dynamic font 'sans,11'\nset output " + gp_quoted(svg.string()) + "\n" + script_body,
            svg);
    result.files.push_back(svg.string());
    md += "![" + markdown_escaped(caption) + "](plots/" + name + ".svg)\n\n";
    html_body += "<figure>" + svg_body(svg) + "<figcaption>" + html_escaped(caption) + "</figcaption></figure>\n";
  }
};

// The train cells grouped by configuration (dataset / algorithm / schedule), with their scores.
struct Configurations {
  std::map<std::string, std::vector<double>> own, none;  // scores with the policy's own guidance, without
  std::map<std::string, std::vector<const Cell*>> train_cells;
};

Configurations group_by_configuration(const std::vector<Cell>& cells) {
  Configurations g;
  for (const auto& c : cells) {
    if (!c.record.is_train()) continue;
    const std::string k = config_name(c.record);
    g.own[k].push_back(c.record.score);
    g.none[k].push_back(*c.record.score_unguided);
    g.train_cells[k].push_back(&c);
  }
  return g;
}

// 1. Scores per configuration, with its own guidance and without: a table with intervals and a box plot.
void scores_section(ReportDocument& doc, const Configurations& g, int reps) {
  Table scores{{"configuration", "guidance", "seeds", "median", "median CI", "IQR", "IQR CI", "IQM", "IQM CI", "mean", "mean CI"}, {}};
  auto ci = [](const eval::Interval& i) { return "[" + fmt(i.lo) + "; " + fmt(i.hi) + "]"; };
  for (const auto& [k, v] : g.own) {
    for (const auto& [label, values] : {std::pair{"own", v}, {"none", g.none.at(k)}}) {
      const auto a = eval::aggregate_with_intervals({values}, reps, 0);
      scores.rows.push_back({k, label, std::to_string(values.size()), fmt(a.point.median), ci(a.median), fmt(a.point.iqr),
                             ci(a.iqr), fmt(a.point.iqm), ci(a.iqm), fmt(a.point.mean), ci(a.mean)});
    }
  }
  doc.section("Normalized scores per configuration",
          "With the policy's own guidance (candidates ranked by it) and without guidance (one sample).\n");
  doc.add_table("scores", scores);
  {
    // Boxes drawn from our own quartiles (docs/statistics.md's rule), whiskers to min and max, the seeds as points.
    std::ostringstream boxes, points, labels;
    int x = 0;
    for (const auto& [k, v] : g.own) {
      ++x;
      labels << (x > 1 ? ", " : "") << gp_quoted(k) << " " << x;
      const auto a = eval::aggregate(v);
      boxes << x << " " << eval::quantile(v, 0.25) << " " << a.min << " " << a.max << " " << eval::quantile(v, 0.75)
            << " " << a.median << "\n";
      for (double s : v) points << x << " " << s << "\n";
    }
    const std::string bdat = (doc.plots / "box.dat").string(), pdat = (doc.plots / "box_points.dat").string();
    write_text_atomically(bdat, boxes.str());
    write_text_atomically(pdat, points.str());
    doc.add_plot("box",
             "set boxwidth 0.4\nset style fill solid 0.25\nset xtics (" + labels.str() +
                 ") rotate by -15 font ',9'\nset ylabel 'normalized score'\nunset key\nset xrange [0.5:" +
                 std::to_string(x) + ".5]\nplot " + gp_quoted(bdat) +
                 " using 1:2:3:4:5 with candlesticks whiskerbars lc rgb '#3b6ea5', '' using 1:6:6:6:6 with candlesticks "
                 "lc rgb '#1d3557' lw 2, " + gp_quoted(pdat) + " using 1:2 with points pt 7 ps 0.6 lc rgb '#d08c3a'\n",
             "Normalized scores over training seeds (own guidance): box = quartiles (its height is the IQR)");
  }

}

// 2. Learning curves with and without guidance (from metrics.csv when the sweep evaluated during training).
void learning_curves_section(ReportDocument& doc, const Configurations& g) {
  {
    std::string plot_cmds;
    int series = 0;
    for (const auto& [k, list] : g.train_cells) {
      std::map<long, std::pair<double, int>> guided, unguided;
      for (const Cell* c : list) {
        std::ifstream csv(fs::path(c->dir) / "run" / "metrics.csv");
        std::string line;
        std::getline(csv, line);
        while (std::getline(csv, line)) {
          std::vector<std::string> f;
          std::stringstream ss(line);
          for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
          if (f.size() < 11 || f[8].empty()) continue;
          const long step = std::stol(f[0]);
          guided[step].first += std::stod(f[8]);
          guided[step].second += 1;
          unguided[step].first += std::stod(f[9]);
          unguided[step].second += 1;
        }
      }
      if (guided.empty()) continue;
      const fs::path dat = doc.plots / ("curve" + std::to_string(series) + ".dat");
      std::ostringstream d;
      for (const auto& [step, g] : guided)
        d << step << " " << g.first / g.second << " " << unguided[step].first / unguided[step].second << "\n";
      write_text_atomically(dat.string(), d.str());
      plot_cmds += std::string(plot_cmds.empty() ? "plot " : ", ") + gp_quoted(dat.string()) +
                   " using 1:2 with linespoints title " + gp_quoted(k + " (guided)") + ", " + gp_quoted(dat.string()) +
                   " using 1:3 with linespoints dashtype 2 title " + gp_quoted(k + " (no guidance)");
      ++series;
    }
    doc.section("Learning curves: guidance necessity",
            series ? "Mean normalized score over training seeds during training, with guidance (solid) and without (dashed).\n"
                   : "The sweep did not evaluate during training (`[eval] every`).\n");
    if (series)
      doc.add_plot("curves", "set xlabel 'training step (of the diffusion phase)'\nset ylabel 'normalized score'\nset key below font ',9'\n" + plot_cmds + "\n",
               "Learning curves with and without guidance");
  }

}

// 3. Swap matrices, the IQR change seed swaps bring, and cross-algorithm swaps.
void swaps_section(ReportDocument& doc, const std::vector<Cell>& cells, const Configurations& g) {
  {
    doc.section("Guidance swaps", "Rows: the policy's training seed; columns: the guidance's training seed (the diagonal is "
                              "the policy's own guidance). Cells: mean normalized score.\n");
    Table change{{"configuration", "own: median", "own: IQR", "swapped: median", "swapped: IQR", "IQR change"}, {}};
    int heatmaps = 0;
    for (const auto& [k, list] : g.train_cells) {
      std::map<std::pair<uint64_t, uint64_t>, double> m;
      std::vector<uint64_t> seeds;
      for (const Cell* c : list) {
        const uint64_t s = c->record.seed;
        seeds.push_back(s);
        m[{s, s}] = c->record.score;
      }
      std::sort(seeds.begin(), seeds.end());
      std::vector<double> swapped;
      for (const auto& c : cells) {
        const auto& r = c.record;
        if (r.kind != "swap" || config_name(r) != k || r.id.rfind("swap-", 0) != 0) continue;
        const std::string& gid = r.guidance_cell;
        const uint64_t g = std::stoull(gid.substr(gid.rfind("-s") + 2));
        m[{r.seed, g}] = r.score;
        swapped.push_back(r.score);
      }
      if (swapped.empty()) continue;
      const auto a = eval::aggregate(g.own.at(k)), b = eval::aggregate(swapped);
      change.rows.push_back({k, fmt(a.median), fmt(a.iqr), fmt(b.median), fmt(b.iqr),
                             fmt(100 * eval::relative_change(a.iqr, b.iqr)) + "%"});
      std::ostringstream d;
      for (size_t i = 0; i < seeds.size(); ++i)
        for (size_t j = 0; j < seeds.size(); ++j) {
          const auto it = m.find({seeds[i], seeds[j]});
          d << j << " " << i << " " << (it == m.end() ? std::string("NaN") : fmt(it->second, 3)) << "\n";
        }
      const std::string name = "swap" + std::to_string(heatmaps++);
      write_text_atomically((doc.plots / (name + ".dat")).string(), d.str());
      std::string tics;
      for (size_t i = 0; i < seeds.size(); ++i) tics += (i ? ", " : "") + std::string("'") + std::to_string(seeds[i]) + "' " + std::to_string(i);
      doc.add_plot(name,
               "set xtics (" + tics + ")\nset ytics (" + tics + ")\nset xlabel 'guidance seed'\nset ylabel 'policy seed'\n"
               "set palette rgbformulae 33,13,10\nset title " + gp_quoted(k) + "\nplot " +
                   gp_quoted((doc.plots / (name + ".dat")).string()) + " using 1:2:3 with image pixels notitle, '' using 1:2:(sprintf('%.1f',$3)) with labels notitle\n",
               "Swap matrix, " + k);
    }
    doc.subsection("IQR change from seed swaps",
               "IQR of the scores with the policy's own guidance against the IQR over all seed swaps.");
    doc.add_table("swap_iqr", change);
    Table cross{{"dataset / guidance -> policy / schedule", "seeds", "median", "IQR", "policy's own: median", "own: IQR"}, {}};
    std::map<std::string, std::vector<double>> cross_scores;
    std::map<std::string, std::string> cross_own;
    for (const auto& c : cells) {
      const auto& r = c.record;
      if (r.id.rfind("cross-", 0) != 0) continue;
      const std::string key = r.dataset + " / " + r.guidance_algo + " guides " + r.algo + " / " + r.schedule;
      cross_scores[key].push_back(r.score);
      cross_own[key] = config_name(r);
    }
    for (const auto& [k, v] : cross_scores) {
      const auto a = eval::aggregate(v), o = eval::aggregate(g.own.at(cross_own[k]));
      cross.rows.push_back({k, std::to_string(v.size()), fmt(a.median), fmt(a.iqr), fmt(o.median), fmt(o.iqr)});
    }
    if (!cross.rows.empty()) {
      doc.subsection("Cross-algorithm swaps",
                 "One algorithm's guidance ranking another algorithm's candidates (same dataset, schedule and training seed).");
      doc.add_table("cross_algorithm", cross);
    }
  }

}

// 4. Joint against guidance-first: diffusion-phase time and peak memory (from the policies' manifests).
void timing_section(ReportDocument& doc, const Configurations& g) {
  {
    Table t{{"configuration", "seeds", "diffusion-phase seconds", "steps/s", "peak memory (MiB)", "memory kind"}, {}};
    std::ostringstream d;
    int x = 0;
    for (const auto& [k, list] : g.train_cells) {
      double secs = 0, sps = 0, mem = 0;
      std::string kind;
      for (const Cell* c : list) {
        const auto m = nlohmann::json::parse(slurp(fs::path(c->dir) / "run" / "diffusion" / "manifest.json"));
        for (const auto& p : m.at("training").at("phases").get<std::vector<agents::PhaseRecord>>())
          if (p.name != "guidance") {
            secs += p.seconds / list.size();
            sps += p.steps_per_s / list.size();
            mem += p.peak_memory_bytes / 1048576.0 / list.size();
            kind = p.memory_kind;
          }
      }
      t.rows.push_back({k, std::to_string(list.size()), fmt(secs, 2), fmt(sps), fmt(mem), kind});
      d << x++ << " \"" << k << "\" " << secs << " " << mem << "\n";
    }
    doc.section("Joint against guidance-first training",
            "The diffusion phase of guidance-first (the frozen guidance's phase excluded) against the joint phase; "
            "means over training seeds.\n");
    doc.add_table("timing", t);
    write_text_atomically((doc.plots / "timing.dat").string(), d.str());
    doc.add_plot("timing",
             "set style data histograms\nset style fill solid 0.8\nset boxwidth 0.8\nset xtics rotate by -20\n"
             "set ylabel 'seconds'\nset y2label 'peak memory (MiB)'\nset y2tics\nset ytics nomirror\nset key outside bottom\n"
             "plot " + gp_quoted((doc.plots / "timing.dat").string()) + " using 3:xtic(2) title 'diffusion-phase seconds' lc rgb '#3b6ea5', '' using 4 axes x1y2 title 'peak memory (MiB)' lc rgb '#d08c3a'\n",
             "Diffusion-phase time and peak memory, joint against guidance-first");
  }

}

// report.md and the self-contained report.html (the SVGs inline, the style here).
void write_documents(ReportDocument& doc) {
  doc.result.markdown = (doc.out / "report.md").string();
  write_text_atomically(doc.result.markdown, doc.md);
  doc.result.html = (doc.out / "report.html").string();
  std::string html = "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>modiff report</title><style>"
                     "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
                     "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #bbb;padding:3px 7px}"
                     "th{background:#eef}figure{margin:1em 0}figcaption{font-size:13px;color:#555}</style></head><body>"
                     "<h1>modiff report</h1>\n<p>Scores are D4RL normalized scores; statistics over training seeds with "
                     "95% stratified-bootstrap intervals.</p>\n" +
                     doc.html_body + "</body></html>\n";
  write_text_atomically(doc.result.html, html);
  doc.result.files.push_back(doc.result.markdown);
  doc.result.files.push_back(doc.result.html);
}

}  // namespace

ReportResult write_report(const std::vector<std::string>& runs, const std::string& out_dir, int reps) {
  if (runs.empty()) throw Error("report: name at least one sweep directory");
  check_distinct(runs);
  const std::vector<Cell> cells = sweeps::read_finished_cells(runs);
  if (cells.empty()) throw Error("report: no finished cells in the given sweep directories");
  const ExclusiveLock lock = lock_report_folder(out_dir);  // after the inputs are read: a bad input makes no folder
  ReportDocument doc;
  doc.out = out_dir;
  doc.plots = doc.out / "plots";
  fs::create_directories(doc.plots);
  doc.md = "# modiff report\n\nSweeps: ";
  for (const auto& r : runs) doc.md += "`" + r + "` ";
  doc.md += "\n\nScores are D4RL normalized scores. A training seed's score is the mean over its evaluation episodes; "
            "statistics are over training seeds, with 95% stratified-bootstrap intervals (" + std::to_string(reps) +
            " replicates, docs/statistics.md).\n\n";
  doc.have_gnuplot = !find_program("gnuplot").empty();
  if (!doc.have_gnuplot) {
    doc.result.warnings.push_back("gnuplot not found: the report has no plots (apt-get install gnuplot-nox)");
    doc.md += "> gnuplot was not found: this report has tables only.\n\n";
  }
  const Configurations g = group_by_configuration(cells);
  scores_section(doc, g, reps);
  learning_curves_section(doc, g);
  swaps_section(doc, cells, g);
  timing_section(doc, g);
  write_documents(doc);
  return doc.result;
}

}  // namespace modiff::reports
