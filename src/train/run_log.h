#pragma once
// What a training run tells its user: a progress line on stderr and a JSONL log of every step.
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace sana::detail {

using Values = std::vector<std::pair<std::string, double>>;
using Labels = std::vector<std::pair<std::string, std::string>>;

double now();
// "[sana-sprint] msg" on stderr.
void note(const std::string& msg);

// One progress line per call: step/total, elapsed < remaining, it/s and the given values.
class Progress {
 public:
  Progress(std::string what, int64_t total, int64_t start);
  void update(int64_t step, const Values& values);

 private:
  std::string what_;
  int64_t total_, start_;
  double t0_;
};

// Appends one JSON object per step to <path>. On resume, lines with "step" >= start are dropped first, so the log
// reads as one uninterrupted run.
class JsonlLog {
 public:
  JsonlLog(const std::string& path, int64_t start);
  void write(int64_t step, const Values& values, const Labels& labels = {});

 private:
  std::ofstream out_;
};

}  // namespace sana::detail
