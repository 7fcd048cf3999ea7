#include "runtime/pretrained.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/safetensors.h"

namespace autosp::runtime {

namespace fs = std::filesystem;

namespace {

// The safetensors files a path names, in order.
StatusOr<std::vector<std::string>> files_of(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    if (!fs::exists(path, ec)) return NotFound("checkpoint.init_from: " + path + " does not exist");
    return std::vector<std::string>{path};
  }
  const fs::path dir(path);
  if (fs::exists(dir / "model.safetensors", ec)) return std::vector<std::string>{(dir / "model.safetensors").string()};
  const fs::path index = dir / "model.safetensors.index.json";
  if (!fs::exists(index, ec))
    return NotFound("checkpoint.init_from: " + path + " holds neither model.safetensors nor model.safetensors.index.json");
  std::ifstream f(index);
  const nlohmann::json j = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    return InvalidArgument("checkpoint.init_from: " + index.string() + " is not an index with a \"weight_map\" object");
  std::set<std::string> names;
  for (const auto& [tensor, file] : j["weight_map"].items()) {
    if (!file.is_string())
      return InvalidArgument("checkpoint.init_from: " + index.string() + ": weight_map[\"" + tensor + "\"] is not a file name");
    names.insert(file.get<std::string>());
  }
  std::vector<std::string> files;
  for (const std::string& n : names) files.push_back((dir / n).string());
  return files;
}

}  // namespace

StatusOr<TrainState> load_pretrained(const std::string& path, const std::vector<ParamSpec>& specs, int* skipped) {
  ASSIGN_OR_RETURN(std::vector<std::string> files, files_of(path));
  std::map<std::string, std::pair<Tensor, std::string>> found;  // name -> (tensor, its file)
  for (const std::string& file : files) {
    ASSIGN_OR_RETURN(SafetensorsFile mapped, map_safetensors(file));
    for (auto& [name, t] : mapped.tensors) found.emplace(name, std::make_pair(std::move(t), file));
  }
  TrainState s;
  s.path = path;
  s.state = {{"init_from", path}};
  for (const ParamSpec& p : specs) {
    auto it = found.find(p.name);
    if (it == found.end())
      return InvalidArgument("checkpoint.init_from: " + path + " has no tensor " + p.name + " (of shape " +
                             p.shape.str() + ")");
    const auto& [t, file] = it->second;
    if (t.shape() != p.shape || (t.dtype() != DType::f32 && t.dtype() != DType::bf16))
      return InvalidArgument("checkpoint.init_from: " + file + ": " + p.name + " is " +
                             std::string(dtype_name(t.dtype())) + t.shape().str() + ", this config needs F32 or BF16" +
                             p.shape.str());
    s.params.push_back({p.name, t});  // a view of the mapping, in the file's type
  }
  s.zero_moments = true;
  if (skipped) *skipped = int(found.size() - specs.size());
  return s;
}

}  // namespace autosp::runtime
