#include "trainer/progress.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

namespace autosp::trainer {
namespace {

std::string printf_string(const char* fmt, auto... args) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), fmt, args...);
  return buf;
}

}  // namespace

std::string human_count(double v) {
  const double a = std::fabs(v);
  if (!std::isfinite(v)) return printf_string("%g", v);
  if (a < 1e3) return printf_string("%.0f", v);
  if (a < 1e6) return printf_string("%.1fk", v / 1e3);
  if (a < 1e9) return printf_string("%.2fM", v / 1e6);
  return printf_string("%.2fG", v / 1e9);
}

std::string human_bytes(double b) {
  if (b < 1024) return printf_string("%.0f B", b);
  if (b < 1024.0 * 1024) return printf_string("%.1f KiB", b / 1024);
  if (b < 1024.0 * 1024 * 1024) return printf_string("%.1f MiB", b / (1024.0 * 1024));
  return printf_string("%.2f GiB", b / (1024.0 * 1024 * 1024));
}

std::string human_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?:??:??";
  auto s = int64_t(std::llround(seconds));
  return printf_string("%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60), (long long)(s % 60));
}

// Width of the step counter follows the total, so lines stay aligned as the step grows.
static std::string step_counter(int64_t step, int64_t total) {
  int width = int(std::to_string(total).size());
  return printf_string("%*lld/%lld", width, (long long)step, (long long)total);
}

std::string format_progress_line(const StepStats& s) {
  return "step " + step_counter(s.step, s.total_steps) + printf_string(" | loss %.4f", s.loss) +
         printf_string(" | lr %.2e", s.lr) + printf_string(" | gnorm %.3f", s.grad_norm) + " | " +
         human_count(s.tokens_per_s) + " tok/s" + (s.mfu >= 0 ? printf_string(" | mfu %.1f%%", 100 * s.mfu) : "") +
         printf_string(" | %.1f ms/step", s.step_ms) +
         (s.comm_ms >= 0 ? printf_string(" | comm %.1f ms", s.comm_ms) : std::string()) + " | mem " +
         human_bytes(double(s.mem_bytes)) + " | eta " + human_duration(s.eta_s);
}

std::string format_eval_line(int64_t step, int64_t total_steps, double eval_loss, int64_t tokens) {
  return "eval step " + step_counter(step, total_steps) + printf_string(" | val loss %.4f", eval_loss) + " | " +
         human_count(double(tokens)) + " tokens";
}

StatusOr<MetricsWriter> MetricsWriter::open(const std::string& path, bool append) {
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return IoError("log.metrics_file " + path + ": cannot create " + parent.string() + ": " + ec.message());
  std::FILE* f = std::fopen(path.c_str(), append ? "a" : "w");
  if (!f) return IoError("log.metrics_file " + path + ": cannot open for writing: " + std::strerror(errno));
  MetricsWriter w;
  w.path_ = path;
  w.file_ = std::shared_ptr<std::FILE>(f, [](std::FILE* p) { std::fclose(p); });
  return w;
}

Status MetricsWriter::write(const StepStats& s, std::optional<double> eval_loss) {
  // nlohmann writes NaN/inf as null, which keeps every line parseable.
  nlohmann::ordered_json j = {{"step", s.step},
                              {"loss", s.loss},
                              {"lr", s.lr},
                              {"grad_norm", s.grad_norm},
                              {"tokens_per_s", s.tokens_per_s},
                              {"step_ms", s.step_ms},
                              {"mem_bytes", s.mem_bytes}};
  if (s.mfu >= 0) j["mfu"] = s.mfu;
  if (s.comm_ms >= 0) j["exposed_comm_ms"] = s.comm_ms;
  if (eval_loss) j["eval_loss"] = *eval_loss;
  const std::string line = j.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_.get()) != line.size() || std::fflush(file_.get()) != 0)
    return IoError("log.metrics_file " + path_ + ": write failed: " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace autosp::trainer
