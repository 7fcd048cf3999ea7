#include "trainer/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>

#include "core/rng.h"

namespace autosp::trainer {

// Token files are little-endian on disk and read in place from the map.
static_assert(std::endian::native == std::endian::little, "token files are read in place: little-endian hosts only");

// A read-only private mapping of a whole file. The fd is closed right after mmap; the
// mapping stays valid until munmap.
class MappedFile {
 public:
  static StatusOr<std::shared_ptr<MappedFile>> open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      std::string msg = "data file " + path + ": cannot open: " + std::strerror(errno);
      return errno == ENOENT ? NotFound(msg) : IoError(msg);
    }
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return IoError("data file " + path + ": not a regular file");
    }
    auto f = std::shared_ptr<MappedFile>(new MappedFile());
    f->bytes_ = size_t(st.st_size);
    if (f->bytes_ > 0) {  // mmap of length 0 is EINVAL; an empty file is reported by the caller
      void* p = ::mmap(nullptr, f->bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        int e = errno;
        ::close(fd);
        return IoError("data file " + path + ": mmap failed: " + std::strerror(e));
      }
      f->data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
    return f;
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), bytes_);
  }
  const uint8_t* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
};

namespace {

constexpr int32_t kLlmcMagic = 20240520;
constexpr int32_t kLlmcVersion = 1;
constexpr size_t kLlmcHeaderBytes = 256 * sizeof(int32_t);

bool file_exists(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

StatusOr<TokenFile> TokenFile::open(const std::string& path, const std::string& format, int64_t vocab_size) {
  TokenFile tf;
  tf.path_ = path;
  if (format != "u16" && format != "u32" && format != "llmc")
    return InvalidArgument("data.format = \"" + format + "\": expected \"u16\", \"u32\" or \"llmc\"");
  tf.elem_size_ = format == "u32" ? 4 : 2;
  ASSIGN_OR_RETURN(tf.file_, MappedFile::open(path));
  const uint8_t* base = tf.file_->data();
  const size_t bytes = tf.file_->bytes();
  const std::string where = "data file " + path + " (" + format + ")";

  size_t data_offset = 0;
  if (format == "llmc") {
    if (bytes < kLlmcHeaderBytes)
      return InvalidArgument(where + ": " + std::to_string(bytes) + " bytes, smaller than the 1024-byte llm.c header");
    int32_t header[3];
    std::memcpy(header, base, sizeof(header));
    if (header[0] != kLlmcMagic)
      return InvalidArgument(where + ": bad magic " + std::to_string(header[0]) + " at offset 0, expected " +
                             std::to_string(kLlmcMagic) + " (llm.c token file)");
    if (header[1] != kLlmcVersion)
      return InvalidArgument(where + ": version " + std::to_string(header[1]) + " at offset 4, expected " +
                             std::to_string(kLlmcVersion) + " (u16 tokens)");
    const size_t data_bytes = bytes - kLlmcHeaderBytes;
    if (header[2] < 0 || size_t(header[2]) * 2 != data_bytes)
      return InvalidArgument(where + ": header says " + std::to_string(header[2]) +
                             " tokens (offset 8) but the file holds " + std::to_string(data_bytes) +
                             " bytes after the header, expected " + std::to_string(int64_t(header[2]) * 2) +
                             " (truncated or not an llm.c file)");
    data_offset = kLlmcHeaderBytes;
  } else if (bytes % tf.elem_size_ != 0) {
    return InvalidArgument(where + ": size " + std::to_string(bytes) + " bytes is not a multiple of " +
                           std::to_string(tf.elem_size_) + " (truncated, or the wrong data.format)");
  }
  tf.n_tokens_ = int64_t((bytes - data_offset) / tf.elem_size_);
  if (tf.n_tokens_ == 0) return InvalidArgument(where + ": contains no tokens");
  tf.tokens_ = base + data_offset;

  // One pass over every id (see the header comment for why at open).
  for (int64_t i = 0; i < tf.n_tokens_; ++i) {
    int64_t id = tf.elem_size_ == 2 ? int64_t(static_cast<const uint16_t*>(tf.tokens_)[i])
                                    : int64_t(static_cast<const uint32_t*>(tf.tokens_)[i]);
    if (id >= vocab_size)
      return InvalidArgument(where + ": token id " + std::to_string(id) + " at index " + std::to_string(i) +
                             " (byte offset " + std::to_string(data_offset + size_t(i) * tf.elem_size_) +
                             ") is ≥ model.vocab_size = " + std::to_string(vocab_size));
  }

  const std::string mask_path = path + ".mask";
  if (file_exists(mask_path)) {
    ASSIGN_OR_RETURN(tf.mask_file_, MappedFile::open(mask_path));
    if (int64_t(tf.mask_file_->bytes()) != tf.n_tokens_)
      return InvalidArgument("mask file " + mask_path + ": " + std::to_string(tf.mask_file_->bytes()) +
                             " bytes, expected one byte per token of " + path + " (" +
                             std::to_string(tf.n_tokens_) + ")");
    tf.mask_ = tf.mask_file_->data();
    for (int64_t i = 0; i < tf.n_tokens_; ++i)
      if (tf.mask_[i] > 1)
        return InvalidArgument("mask file " + mask_path + ": byte " + std::to_string(tf.mask_[i]) + " at offset " +
                               std::to_string(i) + ", expected 0 or 1");
  }
  return tf;
}

// Permutations of the most recent epochs. A step reads at most two epochs (its rows can
// straddle a boundary) and training moves forward, so a handful of entries is enough.
struct DataLoader::OrderCache {
  std::mutex mu;  // ranks of the local communicator are threads and may share a loader
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> epochs;
};

StatusOr<DataLoader> DataLoader::create(TokenFile file, int64_t seq_len, int64_t batch_size, uint64_t seed,
                                        bool documents, int32_t eod_token) {
  if (seq_len < 1 || batch_size < 1)
    return InvalidArgument("data loader: seq_len and batch_size must be ≥ 1, got " + std::to_string(seq_len) +
                           " and " + std::to_string(batch_size));
  if (file.size() < seq_len + 1)
    return InvalidArgument("data file " + file.path() + ": " + std::to_string(file.size()) +
                           " tokens, fewer than train.seq_len + 1 = " + std::to_string(seq_len + 1) +
                           " (one window of inputs plus the shifted target)");
  DataLoader dl;
  dl.file_ = std::move(file);
  dl.seq_len_ = seq_len;
  dl.batch_size_ = batch_size;
  // Window w needs tokens up to w·T + T, so the last usable start is ≤ size - 1 - T.
  dl.n_windows_ = (dl.file_.size() - 1) / seq_len;
  dl.seed_ = seed;
  dl.documents_ = documents;
  dl.eod_ = eod_token;
  dl.cache_ = std::make_shared<OrderCache>();
  return dl;
}

std::shared_ptr<const std::vector<int64_t>> DataLoader::order(int64_t epoch) const {
  std::lock_guard<std::mutex> lock(cache_->mu);
  auto it = cache_->epochs.find(epoch);
  if (it != cache_->epochs.end()) return it->second;
  // Fisher-Yates with Rng(seed, epoch): draw i uses counter i, so the permutation is a pure
  // function of (seed, epoch). 64 random bits make the modulo bias negligible.
  std::vector<int64_t> p(static_cast<size_t>(n_windows_));
  std::iota(p.begin(), p.end(), int64_t(0));
  Rng rng(seed_, uint64_t(epoch));
  for (int64_t i = n_windows_ - 1; i > 0; --i) {
    auto b = rng.bits(uint64_t(i));
    uint64_t r = (uint64_t(b[0]) << 32) | b[1];
    std::swap(p[size_t(i)], p[size_t(r % uint64_t(i + 1))]);
  }
  auto ptr = std::make_shared<const std::vector<int64_t>>(std::move(p));
  cache_->epochs[epoch] = ptr;
  if (cache_->epochs.size() > 4) {  // drop the oldest other epoch (eval loaders may go back to 0)
    auto victim = cache_->epochs.begin();
    if (victim->first == epoch) ++victim;
    cache_->epochs.erase(victim);
  }
  return ptr;
}

int64_t DataLoader::window(int64_t step, int64_t row) const {
  AUTOSP_CHECK(step >= 0 && row >= 0 && row < batch_size_) << "step " << step << " row " << row;
  const int64_t idx = step * batch_size_ + row;
  return (*order(idx / n_windows_))[size_t(idx % n_windows_)];
}

Batch DataLoader::get(int64_t step, int64_t t_begin, int64_t t_end, int64_t row_begin, int64_t row_end) const {
  AUTOSP_CHECK(0 <= t_begin && t_begin <= t_end && t_end <= seq_len_)
      << "shard [" << t_begin << ", " << t_end << ") of seq_len " << seq_len_;
  AUTOSP_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= batch_size_)
      << "rows [" << row_begin << ", " << row_end << ") of batch " << batch_size_;
  const int64_t B = row_end - row_begin, L = t_end - t_begin;
  Batch b{Tensor::zeros(DType::i32, {B, L}), Tensor::zeros(DType::i32, {B, L}), Tensor::zeros(DType::i32, {B, L}),
          Tensor::zeros(DType::i32, {B, L})};
  for (int64_t r = 0; r < B; ++r) {
    const int64_t start = window(step, row_begin + r) * seq_len_;
    // Segment and position at t_begin depend on the eod tokens before the shard: count them
    // from the window start (a shard reads its prefix, not the whole row).
    int32_t segment = 0;
    int64_t doc_start = 0;
    if (documents_) {
      for (int64_t i = 0; i < t_begin; ++i)
        if (file_.token(start + i) == eod_) {
          ++segment;
          doc_start = i + 1;
        }
    }
    int32_t* tok = b.tokens.data<int32_t>() + r * L;
    int32_t* tgt = b.targets.data<int32_t>() + r * L;
    int32_t* pos = b.positions.data<int32_t>() + r * L;
    int32_t* seg = b.segment_ids.data<int32_t>() + r * L;
    for (int64_t i = t_begin; i < t_end; ++i) {
      const int64_t k = i - t_begin, at = start + i;
      tok[k] = file_.token(at);
      tgt[k] = file_.scored(at + 1) ? file_.token(at + 1) : -1;
      pos[k] = int32_t(i - doc_start);
      seg[k] = segment;
      // The eod token ends its own document: the next token starts a new one.
      if (documents_ && tok[k] == eod_) {
        ++segment;
        doc_start = i + 1;
      }
    }
  }
  return b;
}

}  // namespace autosp::trainer
