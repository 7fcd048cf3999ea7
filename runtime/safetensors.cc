#include "runtime/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

namespace autosp::runtime {

// Tensor bytes go to disk as they are in memory; the format is little-endian.
static_assert(std::endian::native == std::endian::little, "safetensors IO assumes a little-endian host");

namespace {

using nlohmann::json;

std::atomic<int64_t> g_fault_budget{-1};

const char* st_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
  }
  return "?";
}

bool parse_st_dtype(const std::string& s, DType* out) {
  for (DType t : {DType::f32, DType::bf16, DType::i32, DType::i64})
    if (s == st_dtype(t)) {
      *out = t;
      return true;
    }
  return false;
}

std::string errno_text(int e) { return std::strerror(e); }

// Writes all of [p, p+n), honouring the fault hook. Returns errno (0 on success).
int write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    size_t chunk = std::min<size_t>(n, size_t(1) << 30);
    int64_t budget = g_fault_budget.load();
    if (budget >= 0) {
      if (budget == 0) return ENOSPC;
      chunk = std::min<size_t>(chunk, size_t(budget));
      g_fault_budget.store(budget - int64_t(chunk));
    }
    ssize_t w = ::write(fd, c, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    c += w;
    n -= size_t(w);
  }
  return 0;
}

// A file written under a temporary name and renamed into place by commit(). Destroying it
// uncommitted removes the temporary, so a failed save leaves nothing behind.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path)
      : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {}
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  Status open() {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return IoError(path_ + ": cannot create " + tmp_ + ": " + errno_text(errno));
    return Status::Ok();
  }
  Status write(const void* p, size_t n) {
    if (int e = write_all(fd_, p, n)) return IoError(path_ + ": write failed: " + errno_text(e));
    return Status::Ok();
  }
  Status commit() {
    if (::fsync(fd_) != 0) return IoError(path_ + ": fsync failed: " + errno_text(errno));
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return IoError(path_ + ": close failed: " + errno_text(errno));
    if (::rename(tmp_.c_str(), path_.c_str()) != 0)
      return IoError(path_ + ": rename from " + tmp_ + " failed: " + errno_text(errno));
    committed_ = true;
    auto parent = std::filesystem::path(path_).parent_path();
    return fsync_dir(parent.empty() ? "." : parent.string());
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Reads exactly n bytes at offset; false on a short read or error.
bool pread_all(int fd, void* p, size_t n, uint64_t offset) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::pread(fd, c, n, off_t(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= size_t(r);
    offset += uint64_t(r);
  }
  return true;
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

std::string range(uint64_t b, uint64_t e) { return "[" + std::to_string(b) + ", " + std::to_string(e) + ")"; }

// Parses one header entry; `where` is "file.safetensors: tensor \"name\"".
Status parse_entry(const std::string& where, const json& v, uint64_t data_bytes, Entry* out) {
  if (!v.is_object()) return InvalidArgument(where + ": expected an object with dtype, shape, data_offsets");
  if (!v.contains("dtype") || !v["dtype"].is_string() || !parse_st_dtype(v["dtype"].get<std::string>(), &out->dtype))
    return InvalidArgument(where + ": dtype " + (v.contains("dtype") ? v["dtype"].dump() : "missing") +
                           ", expected \"F32\", \"BF16\", \"I32\" or \"I64\"");
  if (!v.contains("shape") || !v["shape"].is_array())
    return InvalidArgument(where + ": shape missing or not an array");
  uint64_t numel = 1;
  std::vector<int64_t> dims;
  for (const json& d : v["shape"]) {
    if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
      return InvalidArgument(where + ": shape " + v["shape"].dump() + ", expected non-negative integers");
    uint64_t x = d.get<uint64_t>();
    if (x > (uint64_t(1) << 48) || __builtin_mul_overflow(numel, x, &numel))
      return InvalidArgument(where + ": shape " + v["shape"].dump() + " is too large");
    dims.push_back(int64_t(x));
  }
  out->shape = Shape(std::move(dims));
  const json* offs = v.contains("data_offsets") ? &v["data_offsets"] : nullptr;
  if (!offs || !offs->is_array() || offs->size() != 2 || !(*offs)[0].is_number_unsigned() ||
      !(*offs)[1].is_number_unsigned())
    return InvalidArgument(where + ": data_offsets " + (offs ? offs->dump() : "missing") +
                           ", expected [begin, end] (non-negative integers)");
  out->begin = (*offs)[0].get<uint64_t>();
  out->end = (*offs)[1].get<uint64_t>();
  if (out->begin > out->end || out->end > data_bytes)
    return InvalidArgument(where + ": data_offsets " + range(out->begin, out->end) +
                           " outside the data section of " + std::to_string(data_bytes) + " bytes");
  uint64_t expect = 0;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(out->dtype)), &expect) || expect != out->end - out->begin)
    return InvalidArgument(where + ": data_offsets " + range(out->begin, out->end) + " hold " +
                           std::to_string(out->end - out->begin) + " bytes, but shape " + out->shape.str() + " " +
                           v["dtype"].get<std::string>() + " needs " + std::to_string(numel) + " × " +
                           std::to_string(dtype_size(out->dtype)) + " bytes");
  return Status::Ok();
}

}  // namespace

void set_write_fault_after_bytes(int64_t bytes) { g_fault_budget.store(bytes < 0 ? -1 : bytes); }

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError(dir + ": cannot open directory to fsync: " + errno_text(errno));
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return IoError(dir + ": fsync of directory failed: " + errno_text(e));
  return Status::Ok();
}

Status write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  RETURN_IF_ERROR(f.open());
  RETURN_IF_ERROR(f.write(contents.data(), contents.size()));
  return f.commit();
}

Status save_safetensors(const std::string& path, const NamedTensors& tensors,
                        const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps __metadata__ first and tensors in data order: easy to read with `head`.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || !names.insert(name).second)
      return InvalidArgument(path + ": tensor name \"" + name + "\" is duplicated or reserved");
    if (!t.defined()) return InvalidArgument(path + ": tensor \"" + name + "\" is undefined");
    header[name] = {{"dtype", st_dtype(t.dtype())},
                    {"shape", t.shape().dims()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned (8 + N ≡ 0 mod 8)
  const uint64_t n = text.size();

  AtomicFile f(path);
  RETURN_IF_ERROR(f.open());
  RETURN_IF_ERROR(f.write(&n, sizeof(n)));
  RETURN_IF_ERROR(f.write(text.data(), text.size()));
  for (const auto& [name, t] : tensors) RETURN_IF_ERROR(f.write(t.raw(), t.nbytes()));
  return f.commit();
}

namespace {

// An open file descriptor, closed on destruction.
struct Fd {
  int fd = -1;
  Fd() = default;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// The validated layout of a safetensors file: its entries in data order, the data section's
// start, the file size and the metadata.
struct Layout {
  std::vector<Entry> entries;
  uint64_t data_start = 0, size = 0;
  std::map<std::string, std::string> metadata;
};

StatusOr<Layout> read_layout(const std::string& path, int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return IoError(path + ": fstat failed: " + errno_text(errno));
  Layout L;
  L.size = uint64_t(st.st_size);
  uint64_t n = 0;
  if (L.size < 8 || !pread_all(fd, &n, 8, 0))
    return InvalidArgument(path + ": " + std::to_string(L.size) + " bytes, too short for the 8-byte header length");
  // The format caps headers at 100 MB; a larger value is a corrupt or foreign file.
  if (n > 100'000'000 || n > L.size - 8)
    return InvalidArgument(path + ": header length " + std::to_string(n) + " (bytes 0-7) exceeds the file size " +
                           std::to_string(L.size) + " or the 100 MB limit: not a safetensors file, or truncated");
  std::string text(n, '\0');
  if (!pread_all(fd, text.data(), n, 8)) return IoError(path + ": short read of the header");
  json header = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object())
    return InvalidArgument(path + ": header (bytes 8-" + std::to_string(8 + n) + ") is not a JSON object");

  L.data_start = 8 + n;
  const uint64_t data_bytes = L.size - L.data_start;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) return InvalidArgument(path + ": __metadata__ must be an object of strings");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) return InvalidArgument(path + ": __metadata__." + k + " must be a string, got " + s.dump());
        L.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    Entry e;
    e.name = name;
    RETURN_IF_ERROR(parse_entry(path + ": tensor \"" + name + "\"", v, data_bytes, &e));
    L.entries.push_back(std::move(e));
  }
  // Tensors must tile the data section exactly: no overlap (two names aliasing bytes) and no
  // hole (bytes nobody owns usually mean a corrupt header).
  auto& entries = L.entries;
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t covered = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.begin < covered)
      return InvalidArgument(path + ": tensor \"" + e.name + "\" " + range(e.begin, e.end) + " overlaps tensor \"" +
                             entries[i - 1].name + "\" " + range(entries[i - 1].begin, entries[i - 1].end));
    if (e.begin > covered)
      return InvalidArgument(path + ": data bytes " + range(covered, e.begin) + " belong to no tensor");
    covered = e.end;
  }
  if (covered != data_bytes)
    return InvalidArgument(path + ": data section is " + std::to_string(data_bytes) + " bytes but tensors end at " +
                           std::to_string(covered));
  return L;
}

// Opens path into f and validates its layout.
StatusOr<Layout> open_layout(const std::string& path, Fd& f) {
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) {
    std::string msg = path + ": cannot open: " + errno_text(errno);
    return errno == ENOENT ? NotFound(msg) : IoError(msg);
  }
  return read_layout(path, f.fd);
}

}  // namespace

StatusOr<SafetensorsFile> read_safetensors(const std::string& path) {
  Fd f;
  ASSIGN_OR_RETURN(Layout L, open_layout(path, f));
  SafetensorsFile out{{}, std::move(L.metadata)};
  for (const Entry& e : L.entries) {
    Tensor t = Tensor::zeros(e.dtype, e.shape);
    if (t.nbytes() && !pread_all(f.fd, t.raw(), t.nbytes(), L.data_start + e.begin))
      return IoError(path + ": short read of tensor \"" + e.name + "\"");
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

StatusOr<SafetensorsFile> map_safetensors(const std::string& path) {
  Fd f;
  ASSIGN_OR_RETURN(Layout L, open_layout(path, f));
  SafetensorsFile out{{}, std::move(L.metadata)};
  if (L.entries.empty()) return out;
  // The mapping outlives the descriptor; the last tensor viewing it unmaps it.
  void* p = ::mmap(nullptr, L.size, PROT_READ, MAP_SHARED, f.fd, 0);
  if (p == MAP_FAILED) return IoError(path + ": mmap failed: " + errno_text(errno));
  const size_t bytes = L.size;
  auto storage = Storage::adopt(p, bytes, Device::host, [bytes](void* q) { ::munmap(q, bytes); });
  for (const Entry& e : L.entries)
    out.tensors.emplace_back(e.name, Tensor(storage, L.data_start + e.begin, e.dtype, e.shape));
  return out;
}

StatusOr<NamedTensors> load_safetensors(const std::string& path) {
  ASSIGN_OR_RETURN(SafetensorsFile f, read_safetensors(path));
  return std::move(f.tensors);
}

}  // namespace autosp::runtime
