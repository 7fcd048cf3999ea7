#include "trainer/shard_feed.h"

#include <cstring>
#include <vector>

#include "sp_compiler/shard_sequence.h"

namespace autosp::trainer {

void feed_shard(const DataLoader& loader, int64_t step, const ShardSpec& spec, runtime::Executor& ex) {
  const int64_t rows = spec.row_end - spec.row_begin, local = int64_t(spec.positions.size());
  // Assembled on the host, then written into the inputs (device memory on a GPU).
  const char* names[] = {"tokens", "targets", "positions", "segments", sp::kTokenIndexInput};
  std::vector<int32_t> host[5];
  for (int i = 0; i < 5; ++i)
    if (ex.has(names[i])) host[i].resize(size_t(rows * local));
  auto dst = [&](int i) { return host[i].empty() ? nullptr : host[i].data(); };
  int32_t* tok = dst(0);
  int32_t* tgt = dst(1);
  int32_t* pos = dst(2);
  int32_t* seg = dst(3);
  int32_t* idx = dst(4);
  // Walk maximal runs of consecutive positions: one loader read per run.
  for (int64_t c = 0; c < local;) {
    const int64_t first = spec.positions[c];
    int64_t end = c + 1;
    while (end < local && spec.positions[end] == spec.positions[end - 1] + 1 && spec.positions[end] < spec.seq_len)
      ++end;
    const int64_t n = end - c;
    if (first >= spec.seq_len) {  // padding
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = c; k < end; ++k) {
          const int64_t at = r * local + k;
          if (tok) tok[at] = 0;
          if (tgt) tgt[at] = -1;
          if (pos) pos[at] = 0;
          if (seg) seg[at] = -1;
        }
    } else {
      Batch b = loader.get(step, first, first + n, spec.row_begin, spec.row_end);
      for (int64_t r = 0; r < rows; ++r) {
        auto copy = [&](int32_t* d, const Tensor& s) {
          if (d) std::memcpy(d + r * local + c, s.data<int32_t>() + r * n, size_t(n) * sizeof(int32_t));
        };
        copy(tok, b.tokens);
        copy(tgt, b.targets);
        copy(pos, b.positions);
        copy(seg, b.segment_ids);
      }
    }
    c = end;
  }
  if (idx)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(idx + r * local, spec.positions.data(), size_t(local) * sizeof(int32_t));
  for (int i = 0; i < 5; ++i)
    if (!host[i].empty()) ex.write(names[i], host[i].data(), host[i].size() * sizeof(int32_t));
}

}  // namespace autosp::trainer
