// Packed documents for cuDNN's ragged (THD) attention (attention_cudnn.cc): each document of a
// row becomes one "sequence" of a variable-length batch, so cuDNN does only the documents'
// own squares, as our fallback kernels do by segment id.
//
// A row's documents are its runs of equal segment ids. That is exact for the segment mask
// (key visible iff same id) only when no id appears in two runs of a row; document_scan checks
// a sufficient order: run ids strictly increase along the row, a negative id (padding, -1)
// counting as above every id, so padding may only trail. Our data and shard layouts give that
// (segment ids count end-of-document tokens; padding sits at the end); anything else is
// reported as unordered and attention takes the fallback kernels.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace autosp::kernels::cuda {

struct DocumentScan {
  int32_t count = 0;    // documents (runs) over all rows
  int32_t max_len = 0;  // tokens in the longest
  int32_t ordered = 0;  // 1: every row's runs are in the order above (the table is exact)
};

// seg [B, T] device int32 -> starts[0..count] (global token index b·T + t of each run's first
// token, in order; starts[count] = B·T) and *scan, both device memory; starts needs B·T + 1
// entries. One block: a step has one such scan per segment tensor, over at most a few million
// tokens.
void document_scan(const int32_t* seg, int64_t B, int64_t T, int32_t* starts, DocumentScan* scan, cudaStream_t s);

// cuDNN's ragged tables for `slots` >= count sequences (the graph's batch size; the slots past
// count get length 0): seq_len[slots] int32, and [slots + 1] int64 element offsets of each
// sequence's first token in q/o ([tokens, H, D]), in k/v ([tokens, Hkv, D]) and in the
// token-major statistics ([tokens, H]).
void ragged_tables(const int32_t* starts, int64_t count, int64_t slots, int64_t H, int64_t Hkv, int64_t D,
                   int32_t* seq_len, int64_t* q_offset, int64_t* kv_offset, int64_t* stats_offset, cudaStream_t s);

// Our lse [B, H, T] <-> cuDNN's ragged statistics, token-major [B·T, H].
void lse_to_token_major(const float* lse, float* stats, int64_t B, int64_t H, int64_t T, cudaStream_t s);
void lse_from_token_major(const float* stats, float* lse, int64_t B, int64_t H, int64_t T, cudaStream_t s);

}  // namespace autosp::kernels::cuda
