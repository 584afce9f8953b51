// Progress line and JSONL log (run_log.h).
#include "train/run_log.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sana/error.h"
#include "sana/io/atomic_file.h"

using json = nlohmann::json;

namespace sana::detail {
namespace {

std::string fmt(double v) {
  char buf[32];
  if (v != 0 && (std::abs(v) < 1e-3 || std::abs(v) >= 1e5))
    std::snprintf(buf, sizeof(buf), "%.3e", v);
  else
    std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}

std::string clock(double s) {
  const int64_t t = static_cast<int64_t>(std::max(0.0, s));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  return buf;
}

}  // namespace

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void note(const std::string& msg) { std::fprintf(stderr, "[sana-sprint] %s\n", msg.c_str()); }

Progress::Progress(std::string what, int64_t total, int64_t start)
    : what_(std::move(what)), total_(total), start_(start), t0_(now()) {}

void Progress::update(int64_t step, const Values& values) {
  const double elapsed = now() - t0_;
  const double rate = (step - start_) / std::max(elapsed, 1e-9);
  std::ostringstream s;
  s << what_ << " " << step << "/" << total_ << " [" << clock(elapsed) << " < "
    << clock((total_ - step) / std::max(rate, 1e-9)) << ", " << fmt(rate) << " it/s]";
  for (const auto& [k, v] : values) s << " " << k << "=" << fmt(v);
  note(s.str());
}

JsonlLog::JsonlLog(const std::string& path, int64_t start) {
  std::ostringstream kept;
  if (start > 0 && std::filesystem::exists(path)) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() < start)
        kept << line << "\n";
    }
  }
  write_file_atomic(path, kept.str());
  out_.open(path, std::ios::app);
  if (!out_) throw Error("cannot write the training log " + path);
}

void JsonlLog::write(int64_t step, const Values& values, const Labels& labels) {
  json j;
  j["step"] = step;
  for (const auto& [k, v] : labels) j[k] = v;
  for (const auto& [k, v] : values) j[k] = std::isfinite(v) ? json(v) : json(std::to_string(v));
  out_ << j.dump() << "\n";
  out_.flush();
}

}  // namespace sana::detail
