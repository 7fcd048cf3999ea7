// Config JSON ↔ Options. Every field is listed once, in for_each_field, and that one list
// drives reading, writing and the set of known keys, so they cannot drift apart.
#include "trainer/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

namespace autosp::trainer {
namespace {

using nlohmann::json;

// The single list of (section, key, field). O is Options or const Options.
template <class O, class F>
void for_each_field(O& o, F&& f) {
  auto& m = o.model;
  f("model", "arch", m.arch);
  f("model", "vocab_size", m.vocab_size);
  f("model", "d_model", m.d_model);
  f("model", "n_layers", m.n_layers);
  f("model", "n_heads", m.n_heads);
  f("model", "n_kv_heads", m.n_kv_heads);
  f("model", "ffn_hidden", m.ffn_hidden);
  f("model", "max_seq_len", m.max_seq_len);
  f("model", "rope_theta", m.rope_theta);
  f("model", "norm_eps", m.norm_eps);
  f("model", "tie_embeddings", m.tie_embeddings);
  auto& d = o.data;
  f("data", "train", d.train);
  f("data", "val", d.val);
  f("data", "format", d.format);
  f("data", "documents", d.documents);
  f("data", "eod_token", d.eod_token);
  auto& t = o.train;
  f("train", "seq_len", t.seq_len);
  f("train", "batch_size", t.batch_size);
  f("train", "grad_accum_steps", t.grad_accum_steps);
  f("train", "steps", t.steps);
  f("train", "lr", t.lr);
  f("train", "min_lr", t.min_lr);
  f("train", "warmup_steps", t.warmup_steps);
  f("train", "lr_schedule", t.lr_schedule);
  f("train", "decay_steps", t.decay_steps);
  f("train", "weight_decay", t.weight_decay);
  f("train", "beta1", t.beta1);
  f("train", "beta2", t.beta2);
  f("train", "grad_clip", t.grad_clip);
  f("train", "seed", t.seed);
  f("train", "eval_every", t.eval_every);
  f("train", "eval_steps", t.eval_steps);
  f("train", "dtype", t.dtype);
  f("train", "device", t.device);
  f("train", "hardware", t.hardware);
  f("train", "recompute", t.recompute);
  f("train", "memory_gib", t.memory_gib);
  f("train", "offload", t.offload);
  f("train", "host_memory_gib", t.host_memory_gib);
  f("train", "mlp_chunks", t.mlp_chunks);
  auto& p = o.parallel;
  f("parallel", "sp", p.sp);
  f("parallel", "sp_strategy", p.sp_strategy);
  f("parallel", "zero_stage", p.zero_stage);
  f("parallel", "bucket_mb", p.bucket_mb);
  f("parallel", "overlap", p.overlap);
  auto& c = o.checkpoint;
  f("checkpoint", "dir", c.dir);
  f("checkpoint", "every", c.every);
  f("checkpoint", "keep", c.keep);
  f("checkpoint", "init_from", c.init_from);
  auto& l = o.log;
  f("log", "every", l.every);
  f("log", "metrics_file", l.metrics_file);
}

// section → its keys in declaration order (for "unknown key" messages).
const std::map<std::string, std::vector<std::string>>& known_keys() {
  static const auto keys = [] {
    std::map<std::string, std::vector<std::string>> k;
    Options o;
    for_each_field(o, [&](const char* s, const char* key, auto&) { k[s].push_back(key); });
    return k;
  }();
  return keys;
}

std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::string: return "string " + v.dump();
    case json::value_t::boolean: return "boolean " + v.dump();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "number " + v.dump();
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::null: return "null";
    default: return v.dump();
  }
}

Status type_error(const std::string& where, const char* expected, const json& v) {
  return InvalidArgument(where + ": expected " + expected + ", got " + describe(v));
}

Status read_value(const json& v, std::string& out, const std::string& where) {
  if (!v.is_string()) return type_error(where, "a string", v);
  out = v.get<std::string>();
  return Status::Ok();
}

Status read_value(const json& v, bool& out, const std::string& where) {
  if (!v.is_boolean()) return type_error(where, "true or false", v);
  out = v.get<bool>();
  return Status::Ok();
}

Status read_value(const json& v, int64_t& out, const std::string& where) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      return type_error(where, "an integer that fits in int64", v);
    out = int64_t(v.get<uint64_t>());
    return Status::Ok();
  }
  if (v.is_number_integer()) {
    out = v.get<int64_t>();
    return Status::Ok();
  }
  // 2e3 is a float in JSON; accept it when it is a whole number.
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18) {
      out = int64_t(d);
      return Status::Ok();
    }
  }
  return type_error(where, "an integer", v);
}

Status read_value(const json& v, double& out, const std::string& where) {
  if (!v.is_number() || !std::isfinite(v.get<double>())) return type_error(where, "a finite number", v);
  out = v.get<double>();
  return Status::Ok();
}

Status read_value(const json& v, float& out, const std::string& where) {
  double d = 0;
  RETURN_IF_ERROR(read_value(v, d, where));
  if (std::fabs(d) > double(std::numeric_limits<float>::max()))
    return type_error(where, "a number in float range", v);
  out = float(d);
  return Status::Ok();
}

// A float widened to double prints as 9.999999747378752e-06; go through the float's
// shortest decimal form so to_json writes 1e-05 (which reads back as the same float).
double clean_double(float f) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}
template <class T>
json write_value(const T& v) {
  if constexpr (std::is_same_v<T, float>)
    return clean_double(v);
  else
    return v;
}

StatusOr<json> read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument("config " + path + ": cannot open: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str(), nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    return InvalidArgument("config " + path + ": not valid JSON: " + e.what());
  }
}

}  // namespace

StatusOr<Options> options_from_json(const json& j, const std::string& source_name) {
  if (!j.is_object()) return type_error(source_name, "a JSON object with sections", j);
  const auto& keys = known_keys();
  for (const auto& [section, body] : j.items()) {
    auto it = keys.find(section);
    if (it == keys.end()) {
      std::string valid;
      for (const auto& [s, _] : keys) valid += (valid.empty() ? "" : ", ") + s;
      return InvalidArgument(source_name + ": unknown section \"" + section + "\" (sections: " + valid + ")");
    }
    if (!body.is_object()) return type_error(source_name + ": " + section, "an object", body);
    for (const auto& [key, _] : body.items()) {
      if (std::find(it->second.begin(), it->second.end(), key) != it->second.end()) continue;
      std::string valid;
      for (const auto& k : it->second) valid += (valid.empty() ? "" : ", ") + k;
      return InvalidArgument(source_name + ": unknown key \"" + section + "." + key + "\" (" + section +
                             " has: " + valid + ")");
    }
  }
  Options o;
  Status st;
  for_each_field(o, [&](const char* section, const char* key, auto& field) {
    if (!st.ok() || !j.contains(section) || !j[section].contains(key)) return;
    st = read_value(j[section][key], field, source_name + ": " + section + "." + key);
  });
  RETURN_IF_ERROR(st);
  return o;
}

json to_json(const Options& o) {
  json j = json::object();
  for_each_field(o, [&](const char* section, const char* key, const auto& field) {
    j[section][key] = write_value(field);
  });
  return j;
}

StatusOr<Options> load_options(const std::string& path, const std::vector<std::string>& sets) {
  ASSIGN_OR_RETURN(json j, read_json_file(path));
  if (!j.is_object()) return type_error("config " + path, "a JSON object with sections", j);
  for (const std::string& s : sets) {
    const std::string where = "--set " + s;
    size_t eq = s.find('=');
    size_t dot = s.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq)
      return InvalidArgument(where + ": expected section.key=VALUE, e.g. train.lr=3e-4");
    std::string section = s.substr(0, dot), key = s.substr(dot + 1, eq - dot - 1);
    std::string text = s.substr(eq + 1);
    json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (v.is_discarded()) v = text;  // data.train=x.u16 is not JSON: a string
    // Check the override alone first, so a bad key or type names the --set, not the file.
    json probe = {{section, {{key, v}}}};
    RETURN_IF_ERROR(options_from_json(probe, where).status());
    if (j.contains(section) && !j[section].is_object())
      return type_error("config " + path + ": " + section, "an object", j[section]);
    j[section][key] = v;
  }
  return options_from_json(j, "config " + path);
}

Status validate(const Options& o, int world_size, const std::string& source_name) {
  // "config x.json: train.lr = -1: expected ≥ 0"
  auto bad = [&](const char* key, const json& value, const std::string& expected) {
    return InvalidArgument(source_name + ": " + key + " = " + value.dump() + ": expected " + expected);
  };
  auto one_of = [](const std::string& v, std::initializer_list<const char*> allowed) {
    for (const char* a : allowed)
      if (v == a) return true;
    return false;
  };

  const auto& m = o.model;
  if (!one_of(m.arch, {"llama", "gpt2"})) return bad("model.arch", m.arch, "\"llama\" or \"gpt2\"");
  if (m.vocab_size < 2) return bad("model.vocab_size", m.vocab_size, "≥ 2");
  if (m.d_model < 1) return bad("model.d_model", m.d_model, "≥ 1");
  if (m.n_layers < 1) return bad("model.n_layers", m.n_layers, "≥ 1");
  if (m.n_heads < 1) return bad("model.n_heads", m.n_heads, "≥ 1");
  if (m.n_kv_heads < 1) return bad("model.n_kv_heads", m.n_kv_heads, "≥ 1");
  if (m.n_heads % m.n_kv_heads != 0)
    return bad("model.n_heads", m.n_heads,
               "a multiple of model.n_kv_heads = " + std::to_string(m.n_kv_heads) + " (grouped-query attention)");
  if (m.arch == "gpt2" && m.n_kv_heads != m.n_heads)
    return bad("model.n_kv_heads", m.n_kv_heads,
               "equal to model.n_heads = " + std::to_string(m.n_heads) + " for arch gpt2 (no grouped-query attention)");
  if (m.d_model % m.n_heads != 0)
    return bad("model.d_model", m.d_model, "divisible by model.n_heads = " + std::to_string(m.n_heads));
  if (m.arch == "llama" && m.head_dim() % 2 != 0)
    return bad("model.d_model", m.d_model,
               "d_model / n_heads even for rope (head_dim is " + std::to_string(m.head_dim()) + ")");
  if (m.ffn_hidden < 1) return bad("model.ffn_hidden", m.ffn_hidden, "≥ 1");
  if (m.max_seq_len < 1) return bad("model.max_seq_len", m.max_seq_len, "≥ 1");
  if (!(m.rope_theta > 0)) return bad("model.rope_theta", m.rope_theta, "> 0");
  if (!(m.norm_eps > 0)) return bad("model.norm_eps", m.norm_eps, "> 0");

  const auto& d = o.data;
  if (d.train.empty()) return bad("data.train", d.train, "a token file path");
  if (!one_of(d.format, {"u16", "u32", "llmc"})) return bad("data.format", d.format, "\"u16\", \"u32\" or \"llmc\"");
  if (d.format != "u32" && m.vocab_size > 65536)
    return bad("model.vocab_size", m.vocab_size, "≤ 65536 for data.format " + d.format + " (16-bit tokens)");
  if (d.documents && (d.eod_token < 0 || d.eod_token >= m.vocab_size))
    return bad("data.eod_token", d.eod_token,
               "in [0, model.vocab_size = " + std::to_string(m.vocab_size) + ") when data.documents is true");

  const auto& t = o.train;
  if (t.seq_len < 1) return bad("train.seq_len", t.seq_len, "≥ 1");
  if (t.seq_len > m.max_seq_len)
    return bad("train.seq_len", t.seq_len, "≤ model.max_seq_len = " + std::to_string(m.max_seq_len));
  if (t.batch_size < 1) return bad("train.batch_size", t.batch_size, "≥ 1");
  if (t.grad_accum_steps < 1) return bad("train.grad_accum_steps", t.grad_accum_steps, "≥ 1");
  if (t.steps < 0) return bad("train.steps", t.steps, "≥ 0");
  if (t.lr < 0) return bad("train.lr", t.lr, "≥ 0");
  if (t.min_lr < 0) return bad("train.min_lr", t.min_lr, "≥ 0");
  if (t.min_lr > t.lr) return bad("train.min_lr", t.min_lr, "≤ train.lr = " + json(t.lr).dump());
  if (t.warmup_steps < 0) return bad("train.warmup_steps", t.warmup_steps, "≥ 0");
  if (!one_of(t.lr_schedule, {"cosine", "linear", "constant", "wsd"}))
    return bad("train.lr_schedule", t.lr_schedule, "\"cosine\", \"linear\", \"constant\" or \"wsd\"");
  if (t.decay_steps < 0) return bad("train.decay_steps", t.decay_steps, "≥ 0 (0 = a fifth of the steps after warmup)");
  if (t.weight_decay < 0) return bad("train.weight_decay", t.weight_decay, "≥ 0");
  if (t.beta1 < 0 || t.beta1 >= 1) return bad("train.beta1", t.beta1, "in [0, 1)");
  if (t.beta2 < 0 || t.beta2 >= 1) return bad("train.beta2", t.beta2, "in [0, 1)");
  if (t.grad_clip < 0) return bad("train.grad_clip", t.grad_clip, "≥ 0 (0 = no clipping)");
  if (t.seed < 0) return bad("train.seed", t.seed, "≥ 0");
  if (t.eval_every < 0) return bad("train.eval_every", t.eval_every, "≥ 0 (0 = no eval)");
  if (t.eval_every > 0 && t.eval_steps < 1) return bad("train.eval_steps", t.eval_steps, "≥ 1 when train.eval_every > 0");
  if (t.eval_every > 0 && d.val.empty())
    return bad("data.val", d.val, "a token file path when train.eval_every > 0 (or set train.eval_every = 0)");
  if (!one_of(t.dtype, {"f32", "bf16"})) return bad("train.dtype", t.dtype, "\"f32\" or \"bf16\"");
  if (!one_of(t.device, {"cpu", "cuda"})) return bad("train.device", t.device, "\"cpu\" or \"cuda\"");
  if (t.device == "cuda" && t.dtype != "bf16")
    return bad("train.dtype", t.dtype, "\"bf16\" with train.device = \"cuda\" (the GPU's attention and loss kernels are bf16)");
  if (!one_of(t.hardware, {"auto", "cpu", "h100", "h200", "h100x8-nvlink"}))
    return bad("train.hardware", t.hardware, "\"auto\", \"cpu\", \"h100\", \"h200\" or \"h100x8-nvlink\" (--hardware sets it)");
  if (!one_of(t.recompute, {"auto", "none", "selective", "layer", "full"}))
    return bad("train.recompute", t.recompute, "\"auto\", \"none\", \"selective\", \"layer\" or \"full\"");
  if (!(t.memory_gib >= 0)) return bad("train.memory_gib", t.memory_gib, "≥ 0 (0 = no limit)");
  if (!one_of(t.offload, {"auto", "none", "on"})) return bad("train.offload", t.offload, "\"auto\", \"none\" or \"on\"");
  if (!(t.host_memory_gib >= 0)) return bad("train.host_memory_gib", t.host_memory_gib, "≥ 0 (0 = no limit)");
  if (t.mlp_chunks < 0 || t.mlp_chunks > t.seq_len)
    return bad("train.mlp_chunks", t.mlp_chunks, "0 (auto) or 1..train.seq_len");

  const auto& p = o.parallel;
  if (p.sp < 1) return bad("parallel.sp", p.sp, "≥ 1");
  if (world_size < 1 || world_size % p.sp != 0)
    return bad("parallel.sp", p.sp, "a divisor of the world size " + std::to_string(world_size));
  if (p.sp > t.seq_len)
    return bad("parallel.sp", p.sp, "≤ train.seq_len = " + std::to_string(t.seq_len) + " (every rank holds a token)");
  if (!one_of(p.sp_strategy, {"auto", "ulysses", "ring", "hybrid"}))
    return bad("parallel.sp_strategy", p.sp_strategy, "\"auto\", \"ulysses\", \"ring\" or \"hybrid\"");
  if (p.zero_stage < 0 || p.zero_stage > 3) return bad("parallel.zero_stage", p.zero_stage, "0, 1, 2 or 3");
  if (!(p.bucket_mb > 0)) return bad("parallel.bucket_mb", p.bucket_mb, "> 0");

  const auto& c = o.checkpoint;
  if (c.every < 0) return bad("checkpoint.every", c.every, "≥ 0 (0 = no checkpoints)");
  if (c.every > 0 && c.dir.empty()) return bad("checkpoint.dir", c.dir, "a directory when checkpoint.every > 0");
  if (c.keep < 1) return bad("checkpoint.keep", c.keep, "≥ 1");

  if (o.log.every < 1) return bad("log.every", o.log.every, "≥ 1");
  return Status::Ok();
}

uint64_t options_hash(const Options& o) {
  const std::string s = to_json(o).dump();
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 0x100000001b3ull;  // FNV prime
  }
  return h;
}

}  // namespace autosp::trainer
