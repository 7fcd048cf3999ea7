// Token data: memory-mapped token files and the deterministic batch loader.
//
// TokenFile maps a file of token ids (raw little-endian u16 / u32, or the llm.c .bin layout)
// and validates it once at open: every id is scanned against vocab_size, which costs one
// pass over the file — fine for corpora of a few GB, and it turns a bad id into an error
// with its index instead of an out-of-range embedding read mid-training.
//
// DataLoader cuts the file into windows of seq_len + 1 tokens starting at multiples of
// seq_len (window w = tokens [w·T, w·T + T]); inputs are the first T, targets the last T,
// so targets arrive pre-shifted and a sequence split never loses one. The window order is a
// per-epoch permutation that is a pure function of (seed, epoch), so batch `step` is a
// pure function of step: resume is exact and every rank agrees without communication.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace autosp::trainer {

class MappedFile;  // read-only mmap, defined in data.cc

class TokenFile {
 public:
  // format: "u16" | "u32" | "llmc" (llm.c: 256 × int32 header {20240520, 1, n_tokens, ...},
  // then n_tokens u16). If `<path>.mask` exists it must hold one byte (0 or 1) per token;
  // token i is scored as a target only where mask[i] = 1.
  static StatusOr<TokenFile> open(const std::string& path, const std::string& format, int64_t vocab_size);

  int64_t size() const { return n_tokens_; }
  int32_t token(int64_t i) const {
    return elem_size_ == 2 ? int32_t(static_cast<const uint16_t*>(tokens_)[i])
                           : int32_t(static_cast<const uint32_t*>(tokens_)[i]);
  }
  bool has_mask() const { return mask_ != nullptr; }
  // 1 when token i is scored as a target (always 1 without a mask file).
  bool scored(int64_t i) const { return mask_ == nullptr || mask_[i] != 0; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_, mask_file_;  // keep the maps alive; copies share them
  const void* tokens_ = nullptr;
  const uint8_t* mask_ = nullptr;
  int64_t n_tokens_ = 0;
  int elem_size_ = 2;
};

// One batch for tokens [t_begin, t_end) of each row; every tensor is i32 [batch, t_end - t_begin].
struct Batch {
  Tensor tokens;       // input ids
  Tensor targets;      // next-token ids; -1 = ignored (masked out by the .mask file)
  Tensor positions;    // rope / learned position of each token (restarts per document)
  Tensor segment_ids;  // document index within the window (0 without documents)
};

class DataLoader {
 public:
  // documents: segment ids count eod_token occurrences strictly before each token within its
  // window, and positions restart after each eod_token. Error when the file has fewer than
  // seq_len + 1 tokens.
  static StatusOr<DataLoader> create(TokenFile file, int64_t seq_len, int64_t batch_size, uint64_t seed,
                                     bool documents, int32_t eod_token);

  // Batch rows of `step`, tokens [t_begin, t_end) of each row (a sequence-parallel rank
  // passes its shard; 0 ≤ t_begin ≤ t_end ≤ seq_len). Row b is window
  // order_e[(step·B + b) mod n_windows] with epoch e = (step·B + b) / n_windows.
  Batch get(int64_t step, int64_t t_begin, int64_t t_end) const { return get(step, t_begin, t_end, 0, batch_size_); }
  Batch get(int64_t step) const { return get(step, 0, seq_len_); }
  // Only rows [row_begin, row_end) of the step (a data-parallel replica's share).
  Batch get(int64_t step, int64_t t_begin, int64_t t_end, int64_t row_begin, int64_t row_end) const;

  // Window index of row `row` of `step` (exposed for tests and logging).
  int64_t window(int64_t step, int64_t row) const;
  int64_t num_windows() const { return n_windows_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t batch_size() const { return batch_size_; }
  const TokenFile& file() const { return file_; }

 private:
  struct OrderCache;
  std::shared_ptr<const std::vector<int64_t>> order(int64_t epoch) const;

  TokenFile file_;
  int64_t seq_len_ = 0, batch_size_ = 0, n_windows_ = 0;
  uint64_t seed_ = 0;
  bool documents_ = false;
  int32_t eod_ = 0;
  std::shared_ptr<OrderCache> cache_;  // permutations of recent epochs, shared by copies
};

}  // namespace autosp::trainer
