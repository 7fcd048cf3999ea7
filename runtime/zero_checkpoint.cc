#include "runtime/zero_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "kernels/cpu/cast.h"
#include "runtime/checkpoint.h"

namespace autosp::runtime {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kStateFile = "state.json";
constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kIndexFormat = "autosp-zero";
constexpr int kIndexVersion = 1;
// The three per-bucket tensors of a shard file, in the order RankShards holds them.
constexpr const char* kKinds[3] = {"param", "exp_avg", "exp_avg_sq"};

std::atomic<int> g_fault_rank{-1};

std::string shard_file_name(int rank) { return "shard_rank" + std::to_string(rank) + ".safetensors"; }
std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }
// "f32[3,5]"
std::string type_str(const Tensor& t) { return std::string(dtype_name(t.dtype())) + t.shape().str(); }

// ---- the bucket plan as JSON (zero_index.json) ----

const char* init_kind_name(ir::Init::Kind k) {
  switch (k) {
    case ir::Init::Kind::zeros:
      return "zeros";
    case ir::Init::Kind::ones:
      return "ones";
    case ir::Init::Kind::normal:
      return "normal";
  }
  return "?";
}

json plan_to_json(const ir::BucketPlan& plan) {
  json buckets = json::array();
  for (const ir::Bucket& b : plan.buckets) {
    json params = json::array();
    for (const ir::BucketEntry& e : b.params)
      params.push_back({{"name", e.name},
                        {"shape", e.shape.dims()},
                        {"offset", e.offset},
                        {"init", {{"kind", init_kind_name(e.init.kind)}, {"std", e.init.std}}}});
    buckets.push_back({{"name", b.name}, {"numel", b.numel}, {"padded", b.padded}, {"params", std::move(params)}});
  }
  return {{"format", kIndexFormat},
          {"version", kIndexVersion},
          {"world", plan.world},
          {"stage", plan.stage},
          {"buckets", std::move(buckets)}};
}

// o[key] as a non-negative integer; `where` names the object for the error.
Status get_count(const json& o, const char* key, const std::string& where, int64_t* out) {
  if (!o.is_object() || !o.contains(key) || !o[key].is_number_integer() || o[key].get<int64_t>() < 0)
    return InvalidArgument(where + ": \"" + key + "\" " +
                           (o.is_object() && o.contains(key) ? o[key].dump() : "missing") +
                           ", expected a non-negative integer");
  *out = o[key].get<int64_t>();
  return Status::Ok();
}

Status get_string(const json& o, const char* key, const std::string& where, std::string* out) {
  if (!o.is_object() || !o.contains(key) || !o[key].is_string())
    return InvalidArgument(where + ": \"" + key + "\" " +
                           (o.is_object() && o.contains(key) ? o[key].dump() : "missing") + ", expected a string");
  *out = o[key].get<std::string>();
  return Status::Ok();
}

Status parse_entry(const json& j, const std::string& where, ir::BucketEntry* e) {
  RETURN_IF_ERROR(get_string(j, "name", where, &e->name));
  const std::string at = where + " \"" + e->name + "\"";
  if (!j.contains("shape") || !j["shape"].is_array())
    return InvalidArgument(at + ": \"shape\" missing or not an array");
  std::vector<int64_t> dims;
  for (const json& d : j["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t(1) << 40))
      return InvalidArgument(at + ": shape " + j["shape"].dump() + ", expected non-negative integers");
    dims.push_back(d.get<int64_t>());
  }
  e->shape = Shape(std::move(dims));
  RETURN_IF_ERROR(get_count(j, "offset", at, &e->offset));
  if (j.contains("init")) {  // informational (how the run initialised it); absent is fine
    const json& init = j["init"];
    std::string kind;
    RETURN_IF_ERROR(get_string(init, "kind", at + " init", &kind));
    bool known = false;
    for (auto k : {ir::Init::Kind::zeros, ir::Init::Kind::ones, ir::Init::Kind::normal})
      if (kind == init_kind_name(k)) e->init.kind = k, known = true;
    if (!known) return InvalidArgument(at + ": init kind " + in_quotes(kind) + ", expected zeros, ones or normal");
    if (init.contains("std") && init["std"].is_number()) e->init.std = init["std"].get<float>();
  }
  return Status::Ok();
}

StatusOr<ir::BucketPlan> plan_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) return InvalidArgument(where + ": expected a JSON object");
  std::string format;
  RETURN_IF_ERROR(get_string(j, "format", where, &format));
  int64_t version = 0, world = 0, stage = 0;
  RETURN_IF_ERROR(get_count(j, "version", where, &version));
  if (format != kIndexFormat || version != kIndexVersion)
    return InvalidArgument(where + ": format " + in_quotes(format) + " version " + std::to_string(version) +
                           ", expected \"" + kIndexFormat + "\" version " + std::to_string(kIndexVersion));
  RETURN_IF_ERROR(get_count(j, "world", where, &world));
  RETURN_IF_ERROR(get_count(j, "stage", where, &stage));
  if (world > (1 << 24)) return InvalidArgument(where + ": world " + std::to_string(world) + " is implausibly large");
  ir::BucketPlan plan;
  plan.world = int(world);
  plan.stage = int(stage);
  if (!j.contains("buckets") || !j["buckets"].is_array())
    return InvalidArgument(where + ": \"buckets\" missing or not an array");
  for (size_t i = 0; i < j["buckets"].size(); ++i) {
    const json& jb = j["buckets"][i];
    const std::string at = where + ": buckets[" + std::to_string(i) + "]";
    ir::Bucket b;
    RETURN_IF_ERROR(get_string(jb, "name", at, &b.name));
    RETURN_IF_ERROR(get_count(jb, "numel", at, &b.numel));
    RETURN_IF_ERROR(get_count(jb, "padded", at, &b.padded));
    if (!jb.contains("params") || !jb["params"].is_array())
      return InvalidArgument(at + ": \"params\" missing or not an array");
    for (size_t k = 0; k < jb["params"].size(); ++k) {
      ir::BucketEntry e;
      RETURN_IF_ERROR(parse_entry(jb["params"][k], at + ".params[" + std::to_string(k) + "]", &e));
      b.params.push_back(std::move(e));
    }
    plan.buckets.push_back(std::move(b));
  }
  return plan;
}

// The invariants every reader of a plan relies on: equal shards (padded divisible by world),
// parameters inside their bucket's numel and not overlapping, names unique.
Status validate_plan(const ir::BucketPlan& plan, const std::string& where) {
  if (plan.world < 1) return InvalidArgument(where + ": world " + std::to_string(plan.world) + ", expected ≥ 1");
  if (plan.stage < 0 || plan.stage > 3)
    return InvalidArgument(where + ": stage " + std::to_string(plan.stage) + ", expected 0-3");
  std::set<std::string> buckets, params;
  for (const ir::Bucket& b : plan.buckets) {
    const std::string at = where + ": bucket " + in_quotes(b.name);
    if (b.name.empty() || !buckets.insert(b.name).second)
      return InvalidArgument(at + ": bucket name empty or duplicated");
    if (b.numel < 0 || b.padded < b.numel || b.padded % plan.world != 0)
      return InvalidArgument(at + ": numel " + std::to_string(b.numel) + ", padded " + std::to_string(b.padded) +
                             ": expected padded ≥ numel and a multiple of the world size " +
                             std::to_string(plan.world));
    std::vector<std::pair<int64_t, const ir::BucketEntry*>> spans;
    for (const ir::BucketEntry& e : b.params) {
      if (!params.insert(e.name).second)
        return InvalidArgument(at + ": parameter " + in_quotes(e.name) + " duplicated");
      for (int64_t d : e.shape.dims())
        if (d < 0) return InvalidArgument(at + ": parameter " + in_quotes(e.name) + " shape " + e.shape.str());
      if (e.offset < 0 || e.offset + e.shape.numel() > b.numel)
        return InvalidArgument(at + ": parameter " + in_quotes(e.name) + " at offset " + std::to_string(e.offset) +
                               " with " + std::to_string(e.shape.numel()) + " elements " + e.shape.str() +
                               " does not fit the bucket's numel " + std::to_string(b.numel));
      spans.emplace_back(e.offset, &e);
    }
    std::sort(spans.begin(), spans.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    for (size_t i = 1; i < spans.size(); ++i) {
      const ir::BucketEntry& p = *spans[i - 1].second;
      if (p.offset + p.shape.numel() > spans[i].first)
        return InvalidArgument(at + ": parameters " + in_quotes(p.name) + " [" + std::to_string(p.offset) + ", " +
                               std::to_string(p.offset + p.shape.numel()) + ") and " +
                               in_quotes(spans[i].second->name) + " at offset " + std::to_string(spans[i].first) +
                               " overlap");
    }
  }
  return Status::Ok();
}

// The part of parameter `e` inside the shard [lo, lo + S) of its bucket, as bucket offsets
// [begin, end) (empty when begin >= end). Padding belongs to no parameter, so it is never copied.
struct Span {
  int64_t begin, end;
};
Span overlap(const ir::BucketEntry& e, int64_t lo, int64_t S) {
  return {std::max(e.offset, lo), std::min(e.offset + e.shape.numel(), lo + S)};
}

// ---- agreement between ranks ----

// Collective: every rank passes its own status and gets the same answer, the status of the
// lowest failing rank (code and message), or OK. One all_reduce of flags says who failed;
// the first of them broadcasts its error.
Status agree(Communicator& comm, const Status& mine) {
  std::vector<float> failed(size_t(comm.size()), 0.0f);
  if (!mine.ok()) failed[size_t(comm.rank())] = 1.0f;
  comm.all_reduce_sum(failed.data(), int64_t(failed.size()));
  int root = -1;
  for (int r = 0; r < comm.size() && root < 0; ++r)
    if (failed[size_t(r)] > 0.0f) root = r;
  if (root < 0) return Status::Ok();
  int64_t head[2] = {int64_t(mine.code()), int64_t(mine.message().size())};
  comm.broadcast(head, sizeof(head), root);
  std::string msg = comm.rank() == root ? mine.message() : std::string(size_t(head[1]), '\0');
  comm.broadcast(msg.data(), head[1], root);
  return Status(StatusCode(head[0]), msg);
}

// Collective: every rank gets rank 0's `s`.
void broadcast_string(Communicator& comm, std::string& s) {
  int64_t n = int64_t(s.size());
  comm.broadcast(&n, sizeof(n), 0);
  s.resize(size_t(n));
  comm.broadcast(s.data(), n, 0);
}

Status check_shards(const Communicator& world, const ir::BucketPlan& plan, const RankShards& mine) {
  const std::string where = "rank " + std::to_string(world.rank()) + " shards";
  const std::vector<Tensor>* lists[3] = {&mine.param, &mine.exp_avg, &mine.exp_avg_sq};
  for (int k = 0; k < 3; ++k) {
    if (lists[k]->size() != plan.buckets.size())
      return InvalidArgument(where + ": " + std::to_string(lists[k]->size()) + " " + kKinds[k] +
                             " tensors for a plan of " + std::to_string(plan.buckets.size()) + " buckets");
    for (size_t i = 0; i < plan.buckets.size(); ++i) {
      const Tensor& t = (*lists[k])[i];
      const int64_t S = plan.shard_numel(plan.buckets[i]);
      if (!t.defined() || t.dtype() != DType::f32 || t.numel() != S)
        return InvalidArgument(where + ": " + kKinds[k] + " of bucket " + in_quotes(plan.buckets[i].name) + " is " +
                               (t.defined() ? type_str(t) : "undefined") + ", expected f32[" + std::to_string(S) + "]");
    }
  }
  return Status::Ok();
}

// Rank 0, after every shard is on disk: index, state, fsync, rename into place, prune.
Status finish_on_rank0(const fs::path& tmp, const fs::path& root, const std::string& name, const ir::BucketPlan& plan,
                       int64_t step, const json& state, int keep) {
  // error_handler_t::replace: a stray invalid UTF-8 string in the state must not throw
  // between two collectives.
  RETURN_IF_ERROR(write_file_atomic((tmp / kZeroIndexFile).string(),
                                    plan_to_json(plan).dump(1, ' ', false, json::error_handler_t::replace) + "\n"));
  json st = state;
  st["step"] = step;
  RETURN_IF_ERROR(
      write_file_atomic((tmp / kStateFile).string(), st.dump(2, ' ', false, json::error_handler_t::replace) + "\n"));
  RETURN_IF_ERROR(fsync_dir(tmp.string()));
  RETURN_IF_ERROR(install_checkpoint_dir(tmp.string(), root.string(), name));
  return prune_checkpoints(root.string(), keep);
}

// ---- loading ----

StatusOr<json> read_json_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return NotFound(path + ": missing");
  std::ifstream in(path);
  if (!in) return IoError(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument(path + ": not valid JSON");
  return j;
}

// state.json into s.step / s.state.
Status read_state(const fs::path& dir, TrainState* s) {
  const std::string path = (dir / kStateFile).string();
  ASSIGN_OR_RETURN(s->state, read_json_file(path));
  if (!s->state.is_object() || !s->state.contains("step") || !s->state["step"].is_number_integer())
    return InvalidArgument(path + ": expected a JSON object with an integer \"step\"");
  s->step = s->state["step"].get<int64_t>();
  s->state.erase("step");
  return Status::Ok();
}

Status load_single_writer(const fs::path& dir, bool with_moments, TrainState* s) {
  const std::string model_path = (dir / kModelFile).string(), opt_path = (dir / kOptimizerFile).string();
  ASSIGN_OR_RETURN(s->params, load_safetensors(model_path));
  for (const auto& [name, t] : s->params)
    if (t.dtype() != DType::f32)
      return InvalidArgument(model_path + ": tensor " + in_quotes(name) + " is " + type_str(t) + ", expected f32");
  if (!with_moments) return Status::Ok();
  ASSIGN_OR_RETURN(NamedTensors opt, load_safetensors(opt_path));
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : opt) by_name[name] = &t;
  for (const auto& [name, t] : s->params) {
    for (auto [suffix, out] : {std::pair{".exp_avg", &s->exp_avg}, std::pair{".exp_avg_sq", &s->exp_avg_sq}}) {
      auto it = by_name.find(name + suffix);
      if (it == by_name.end())
        return InvalidArgument(opt_path + ": tensor " + in_quotes(name + suffix) + " missing (parameter " +
                               in_quotes(name) + " is in " + kModelFile + ")");
      const Tensor& m = *it->second;
      if (m.dtype() != DType::f32 || m.shape() != t.shape())
        return InvalidArgument(opt_path + ": tensor " + in_quotes(name + suffix) + " is " + type_str(m) +
                               ", expected f32" + t.shape().str() + " like the parameter");
      out->emplace_back(name, m);
      by_name.erase(it);
    }
  }
  if (!by_name.empty())
    return InvalidArgument(opt_path + ": tensor " + in_quotes(by_name.begin()->first) +
                           " is no moment of a parameter in " + kModelFile);
  return Status::Ok();
}

Status load_sharded(const fs::path& dir, bool with_moments, TrainState* s) {
  const std::string index_path = (dir / kZeroIndexFile).string();
  ASSIGN_OR_RETURN(json index, read_json_file(index_path));
  ASSIGN_OR_RETURN(ir::BucketPlan plan, plan_from_json(index, index_path));
  RETURN_IF_ERROR(validate_plan(plan, index_path));

  // Every rank's file, and no other: a stray shard means the index and the files disagree.
  std::error_code ec;
  for (int r = 0; r < plan.world; ++r)
    if (!fs::is_regular_file(dir / shard_file_name(r), ec))
      return NotFound((dir / shard_file_name(r)).string() + ": missing; " + index_path +
                      " says world = " + std::to_string(plan.world) + ", so shard_rank0 … shard_rank" +
                      std::to_string(plan.world - 1) + " must exist");
  std::set<std::string> expected;
  for (int r = 0; r < plan.world; ++r) expected.insert(shard_file_name(r));
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    if (f.rfind("shard_rank", 0) == 0 && !expected.count(f))
      return InvalidArgument(e.path().string() + ": not a shard of " + index_path +
                             ", which says world = " + std::to_string(plan.world));
  }

  // Full tensors first, filled shard by shard: peak memory is the full state plus one file.
  NamedTensors* outs[3] = {&s->params, &s->exp_avg, &s->exp_avg_sq};
  const int kinds = with_moments ? 3 : 1;
  for (const ir::Bucket& b : plan.buckets)
    for (const ir::BucketEntry& e : b.params)
      for (int k = 0; k < kinds; ++k) outs[k]->emplace_back(e.name, Tensor::zeros(DType::f32, e.shape));

  for (int r = 0; r < plan.world; ++r) {
    const std::string path = (dir / shard_file_name(r)).string();
    ASSIGN_OR_RETURN(NamedTensors file, load_safetensors(path));
    std::map<std::string, const Tensor*> by_name;
    for (const auto& [name, t] : file) by_name[name] = &t;
    size_t next = 0;  // index of the bucket's first parameter in outs[k]
    for (const ir::Bucket& b : plan.buckets) {
      const int64_t S = plan.shard_numel(b), lo = int64_t(r) * S;
      for (int k = 0; k < 3; ++k) {
        const std::string name = b.name + "." + kKinds[k];
        auto it = by_name.find(name);
        if (it == by_name.end())
          return InvalidArgument(path + ": tensor " + in_quotes(name) + " missing (bucket " + in_quotes(b.name) +
                                 " of " + index_path + ")");
        const Tensor& t = *it->second;
        if (t.dtype() != DType::f32 || t.shape() != Shape{S})
          return InvalidArgument(path + ": tensor " + in_quotes(name) + " is " + type_str(t) + ", but " + index_path +
                                 " gives bucket " + in_quotes(b.name) + " padded " + std::to_string(b.padded) +
                                 " / world " + std::to_string(plan.world) + " = f32[" + std::to_string(S) +
                                 "] per rank");
        if (k < kinds)
          for (size_t p = 0; p < b.params.size(); ++p) {
            const ir::BucketEntry& e = b.params[p];
            Span o = overlap(e, lo, S);
            if (o.begin < o.end)
              std::memcpy((*outs[k])[next + p].second.data<float>() + (o.begin - e.offset),
                          t.data<float>() + (o.begin - lo), size_t(o.end - o.begin) * sizeof(float));
          }
        by_name.erase(it);
      }
      next += b.params.size();
    }
    if (!by_name.empty())
      return InvalidArgument(path + ": tensor " + in_quotes(by_name.begin()->first) + " belongs to no bucket of " +
                             index_path);
  }
  return Status::Ok();
}

StatusOr<TrainState> load_impl(const std::string& path, bool with_moments) {
  std::error_code ec;
  fs::path dir(path);
  if (!fs::exists(dir / kStateFile, ec)) {
    ASSIGN_OR_RETURN(std::string latest, latest_checkpoint(path));
    dir = latest;
  }
  TrainState s;
  s.path = dir.string();
  RETURN_IF_ERROR(read_state(dir, &s));
  if (fs::exists(dir / kZeroIndexFile, ec))
    RETURN_IF_ERROR(load_sharded(dir, with_moments, &s));
  else
    RETURN_IF_ERROR(load_single_writer(dir, with_moments, &s));
  return s;
}

}  // namespace

void set_zero_checkpoint_fault_rank(int rank) { g_fault_rank.store(rank < 0 ? -1 : rank); }

Status save_sharded_checkpoint(Communicator& world, const std::string& dir, int64_t step, const ir::BucketPlan& plan,
                               const RankShards& mine, const json& state, int keep) {
  const fs::path root(dir);
  const std::string name = checkpoint_dir_name(step);
  const std::string context = "saving sharded checkpoint step " + std::to_string(step);
  const int rank = world.rank();

  // 1. Arguments, on every rank (a bad shard on one rank fails them all, before any file).
  Status st;
  if (step < 0) st = InvalidArgument("checkpoint step " + std::to_string(step) + " must be ≥ 0");
  if (st.ok() && keep < 1) st = InvalidArgument("checkpoint.keep = " + std::to_string(keep) + ": expected ≥ 1");
  if (st.ok() && plan.world != world.size())
    st = InvalidArgument("bucket plan for world " + std::to_string(plan.world) + ", but the communicator has " +
                         std::to_string(world.size()) + " ranks");
  if (st.ok()) st = validate_plan(plan, "bucket plan");
  if (st.ok()) st = check_shards(world, plan, mine);
  if (st.ok() && rank == 0 && !state.is_object()) st = InvalidArgument("checkpoint state must be a JSON object");
  RETURN_IF_ERROR(agree(world, st).with_context(context));

  // 2. Rank 0 makes the temporary directory; everyone learns its name.
  std::string tmp_name;
  if (rank == 0) {
    std::error_code ec;
    const fs::path tmp = root / (".tmp-" + name + "-" + std::to_string(::getpid()));
    tmp_name = tmp.string();
    fs::create_directories(root, ec);
    if (ec) st = IoError("checkpoint " + (root / name).string() + ": cannot create " + dir + ": " + ec.message());
    if (st.ok()) {
      fs::remove_all(tmp, ec);  // left by an earlier crash of a process with this pid
      if (!fs::create_directory(tmp, ec) || ec)
        st = IoError("checkpoint " + (root / name).string() + ": cannot create " + tmp_name + ": " +
                     (ec ? ec.message() : "exists"));
    }
  }
  RETURN_IF_ERROR(agree(world, st).with_context(context));
  broadcast_string(world, tmp_name);
  const fs::path tmp(tmp_name);

  // 3. Each rank writes and fsyncs its own shard (save_safetensors is itself atomic).
  const std::string shard_path = (tmp / shard_file_name(rank)).string();
  if (g_fault_rank.load() == rank) {
    st = IoError(shard_path + ": write failed: No space left on device (test fault)");
  } else {
    NamedTensors tensors;
    const std::vector<Tensor>* lists[3] = {&mine.param, &mine.exp_avg, &mine.exp_avg_sq};
    for (size_t i = 0; i < plan.buckets.size(); ++i)
      for (int k = 0; k < 3; ++k) {
        const int64_t S = plan.shard_numel(plan.buckets[i]);
        tensors.emplace_back(plan.buckets[i].name + "." + kKinds[k], (*lists[k])[i].reshape(Shape{S}));
      }
    st = save_safetensors(shard_path, tensors,
                          {{"format", "pt"}, {"rank", std::to_string(rank)}, {"world", std::to_string(plan.world)}});
  }
  if (!st.ok()) st = st.with_context("rank " + std::to_string(rank));
  const Status written = agree(world, st);

  // 4. Rank 0 publishes the directory, or removes it if any rank failed. The second agreement
  // also keeps every rank here until the temporary directory is gone.
  Status finished;
  if (rank == 0) {
    if (written.ok()) finished = finish_on_rank0(tmp, root, name, plan, step, state, keep);
    std::error_code ec;
    if (!written.ok() || !finished.ok()) fs::remove_all(tmp, ec);
    if (!finished.ok()) finished = finished.with_context("rank 0");
  }
  finished = agree(world, finished);
  const Status result = written.ok() ? finished : written;
  return result.with_context(context);
}

StatusOr<TrainState> load_train_state(const std::string& path) { return load_impl(path, /*with_moments=*/true); }

void read_as_f32(const Tensor& t, int64_t begin, int64_t n, float* dst) {
  AUTOSP_CHECK(begin >= 0 && n >= 0 && begin + n <= t.numel()) << "read_as_f32: elements out of range";
  if (t.dtype() == DType::bf16) {
    kernels::cpu::cast_bf16_to_f32(t.data<uint16_t>() + begin, dst, n);
    return;
  }
  AUTOSP_CHECK(t.dtype() == DType::f32) << "read_as_f32: " << dtype_name(t.dtype());
  std::memcpy(dst, t.data<float>() + begin, size_t(n) * sizeof(float));
}

StatusOr<RankShards> shard_train_state(const TrainState& s, const ir::BucketPlan& plan, int rank) {
  RETURN_IF_ERROR(validate_plan(plan, "bucket plan"));
  if (rank < 0 || rank >= plan.world)
    return InvalidArgument("rank " + std::to_string(rank) + " outside the plan's world of " +
                           std::to_string(plan.world));
  const NamedTensors* ins[3] = {&s.params, &s.exp_avg, &s.exp_avg_sq};
  std::map<std::string, const Tensor*> by_name[3];
  for (int k = 0; k < 3; ++k)
    for (const auto& [name, t] : *ins[k]) by_name[k][name] = &t;
  RankShards out;
  std::vector<Tensor>* outs[3] = {&out.param, &out.exp_avg, &out.exp_avg_sq};
  size_t used = 0;
  for (const ir::Bucket& b : plan.buckets) {
    const int64_t S = plan.shard_numel(b), lo = int64_t(rank) * S;
    for (int k = 0; k < 3; ++k) {
      Tensor shard = Tensor::zeros(DType::f32, Shape{S});
      if (k > 0 && s.zero_moments) {
        outs[k]->push_back(std::move(shard));
        continue;
      }
      for (const ir::BucketEntry& e : b.params) {
        auto it = by_name[k].find(e.name);
        if (it == by_name[k].end())
          return InvalidArgument("checkpoint " + s.path + " has no " + (k ? std::string(kKinds[k]) + " of " : "") +
                                 "parameter " + in_quotes(e.name) + " (bucket " + in_quotes(b.name) + " of this run)");
        const Tensor& full = *it->second;
        if ((full.dtype() != DType::f32 && full.dtype() != DType::bf16) || full.shape() != e.shape)
          return InvalidArgument("checkpoint " + s.path + ": " + kKinds[k] + " of " + in_quotes(e.name) + " is " +
                                 type_str(full) + ", this run needs f32 or bf16" + e.shape.str());
        Span o = overlap(e, lo, S);
        if (o.begin < o.end) read_as_f32(full, o.begin - e.offset, o.end - o.begin, shard.data<float>() + (o.begin - lo));
      }
      outs[k]->push_back(std::move(shard));
    }
    used += b.params.size();
  }
  if (used != s.params.size()) {
    std::set<std::string> planned;
    for (const ir::Bucket& b : plan.buckets)
      for (const ir::BucketEntry& e : b.params) planned.insert(e.name);
    for (const auto& [name, t] : s.params)
      if (!planned.count(name))
        return InvalidArgument("checkpoint " + s.path + " has parameter " + in_quotes(name) +
                               ", which this run's model does not have");
  }
  return out;
}

Status export_consolidated(const std::string& checkpoint_path, const std::string& out_file) {
  ASSIGN_OR_RETURN(TrainState s, load_impl(checkpoint_path, /*with_moments=*/false));
  // "format": "pt" is what transformers expects in a PyTorch safetensors file.
  return save_safetensors(out_file, s.params, {{"format", "pt"}})
      .with_context("exporting checkpoint " + s.path + " to " + out_file);
}

}  // namespace autosp::runtime
