#include "runtime/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace autosp::runtime {
namespace fs = std::filesystem;

namespace {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kStateFile = "state.json";

// Step number of a directory named step_<digits>, or -1.
int64_t parse_step_dir(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step_") != 0) return -1;
  int64_t step = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (int64_t(1) << 58)) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// Step directories only ever appear by renaming a finished temporary directory, so the
// presence of each format's files is enough (load_train_state validates the shards).
bool is_complete(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / kStateFile, ec)) return false;
  return (fs::is_regular_file(dir / kModelFile, ec) && fs::is_regular_file(dir / kOptimizerFile, ec)) ||
         fs::is_regular_file(dir / kZeroIndexFile, ec);
}

// Complete step directories under root, oldest first.
std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& root) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    int64_t step = parse_step_dir(e.path().filename().string());
    if (step >= 0 && e.is_directory(ec) && is_complete(e.path())) out.emplace_back(step, e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string pid_suffix() { return "-" + std::to_string(::getpid()); }

// Renames `dir` to a hidden name in the same root, then deletes it: the step_* name
// disappears atomically even if the process dies during the recursive delete.
void remove_step_dir(const fs::path& dir) {
  std::error_code ec;
  fs::path doomed = dir.parent_path() / (".tmp-delete-" + dir.filename().string() + pid_suffix());
  fs::rename(dir, doomed, ec);
  fs::remove_all(ec ? dir : doomed, ec);
}

Status write_checkpoint_files(const fs::path& tmp, int64_t step, const Checkpoint& ckpt) {
  // "format": "pt" is what transformers expects in a PyTorch safetensors file.
  RETURN_IF_ERROR(save_safetensors((tmp / kModelFile).string(), ckpt.model, {{"format", "pt"}}));
  RETURN_IF_ERROR(save_safetensors((tmp / kOptimizerFile).string(), ckpt.optimizer, {{"format", "pt"}}));
  if (!ckpt.state.is_object()) return InvalidArgument("checkpoint state must be a JSON object");
  nlohmann::json state = ckpt.state;
  state["step"] = step;
  RETURN_IF_ERROR(write_file_atomic((tmp / kStateFile).string(), state.dump(2) + "\n"));
  return fsync_dir(tmp.string());
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

Status save_checkpoint(const std::string& dir, int64_t step, const Checkpoint& ckpt, int keep) {
  if (step < 0) return InvalidArgument("checkpoint step " + std::to_string(step) + " must be ≥ 0");
  if (keep < 1) return InvalidArgument("checkpoint.keep = " + std::to_string(keep) + ": expected ≥ 1");
  const fs::path root(dir);
  const std::string name = checkpoint_dir_name(step);
  const fs::path final_dir = root / name, tmp = root / (".tmp-" + name + pid_suffix());
  const std::string where = "checkpoint " + final_dir.string();
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return IoError(where + ": cannot create " + dir + ": " + ec.message());
  fs::remove_all(tmp, ec);  // left by an earlier crash of a process with our pid
  if (!fs::create_directory(tmp, ec) || ec)
    return IoError(where + ": cannot create " + tmp.string() + ": " + (ec ? ec.message() : "exists"));

  Status st = write_checkpoint_files(tmp, step, ckpt);
  if (st.ok()) st = install_checkpoint_dir(tmp.string(), root.string(), name);
  if (!st.ok()) {
    fs::remove_all(tmp, ec);
    return st.with_context("saving checkpoint step " + std::to_string(step));
  }
  return prune_checkpoints(root.string(), keep);
}

Status install_checkpoint_dir(const std::string& tmp, const std::string& root, const std::string& name) {
  const fs::path final_dir = fs::path(root) / name;
  std::error_code ec;
  // rename(2) cannot replace a non-empty directory: move an existing one aside first.
  fs::path old = fs::path(root) / (".tmp-delete-" + name + pid_suffix());
  bool had_old = fs::exists(final_dir, ec);
  if (had_old) {
    fs::remove_all(old, ec);
    fs::rename(final_dir, old, ec);
  }
  if (!ec) fs::rename(tmp, final_dir, ec);
  Status st;
  if (ec) st = IoError("checkpoint " + final_dir.string() + ": rename from " + tmp + " failed: " + ec.message());
  if (st.ok()) st = fsync_dir(root);
  if (had_old) fs::remove_all(old, ec);
  return st;
}

Status prune_checkpoints(const std::string& root, int keep) {
  auto all = list_checkpoints(root);
  for (size_t i = 0; i + size_t(std::max(keep, 0)) < all.size(); ++i) remove_step_dir(all[i].second);
  return fsync_dir(root);
}

StatusOr<std::string> latest_checkpoint(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return NotFound("checkpoint directory " + root + " does not exist");
  auto all = list_checkpoints(root);
  if (all.empty()) return NotFound("no complete step_* checkpoint in " + root);
  return all.back().second.string();
}

StatusOr<Checkpoint> load_checkpoint(const std::string& path) {
  std::error_code ec;
  fs::path dir(path);
  if (!fs::exists(dir / kStateFile, ec)) {
    ASSIGN_OR_RETURN(std::string latest, latest_checkpoint(path));
    dir = latest;
  }
  if (fs::exists(dir / kZeroIndexFile, ec))
    return InvalidArgument("checkpoint " + dir.string() + " is sharded (" + kZeroIndexFile +
                           "): read it with load_train_state (runtime/zero_checkpoint.h)");
  Checkpoint c;
  c.path = dir.string();
  const std::string state_path = (dir / kStateFile).string();
  std::ifstream in(state_path);
  if (!in) return IoError(state_path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  c.state = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (c.state.is_discarded() || !c.state.is_object() || !c.state.contains("step") ||
      !c.state["step"].is_number_integer())
    return InvalidArgument(state_path + ": expected a JSON object with an integer \"step\"");
  c.step = c.state["step"].get<int64_t>();
  c.state.erase("step");
  ASSIGN_OR_RETURN(c.model, load_safetensors((dir / kModelFile).string()));
  ASSIGN_OR_RETURN(c.optimizer, load_safetensors((dir / kOptimizerFile).string()));
  return c;
}

}  // namespace autosp::runtime
