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

// The ragged tables of a ring attention's visiting block (runtime/cuda/ring_attention_cuda.cc):
// the queries are rows [q0, q1) of each [B, Tq] row of the rank's own tokens (q_seg), the keys
// rows [k0, k1) of each [B, Tk] row of the visiting block's (k_seg), every key of a query's
// document visible (a zigzag piece off the diagonal has no causal edge). Sequence i (of
// `slots` >= count) is document i of the queries' rows (starts, count: document_scan of
// q_seg) cut to the query window, paired with the keys of its id in the key window, which are
// one run when k_seg's window is ordered (found by binary search); both lengths are 0 when
// either part is empty, and for the slots past count, so that queries outside every sequence
// see no key. Offsets are elements from the windows' first rows (row q0, or k0, of batch row
// 0): q/o [B, Tq, H, D], k/v [B, Tk, Hkv, D], and the statistics packed to the window,
// [B·(q1 - q0), H]. They never decrease. *unordered := 1 (it is never cleared here) when
// k_seg's window is out of order by document_scan's rule, which makes the pairing inexact: our
// data's ids never are (a row's ids count its end-of-document tokens, padding trails), and the
// owner reports it (attention_cudnn.cc).
void visiting_tables(const int32_t* q_seg, const int32_t* starts, int64_t count, const int32_t* k_seg, int64_t B,
                     int64_t Tq, int64_t Tk, int64_t q0, int64_t q1, int64_t k0, int64_t k1, int64_t slots, int64_t H,
                     int64_t Hkv, int64_t D, int32_t* seq_q, int32_t* seq_kv, int64_t* q_offset, int64_t* kv_offset,
                     int64_t* stats_offset, int32_t* unordered, cudaStream_t s);

// Our lse [B, H, T] <-> cuDNN's ragged statistics, token-major [B·T, H].
void lse_to_token_major(const float* lse, float* stats, int64_t B, int64_t H, int64_t T, cudaStream_t s);
void lse_from_token_major(const float* stats, float* lse, int64_t B, int64_t H, int64_t T, cudaStream_t s);

}  // namespace autosp::kernels::cuda
