// safetensors files (the Hugging Face format, so PyTorch / transformers load our weights):
//   8 bytes   little-endian u64 N = header length
//   N bytes   JSON {name: {"dtype": "F32"|"BF16"|"I32"|"I64", "shape": [...],
//                          "data_offsets": [begin, end]}, "__metadata__": {str: str}},
//             padded with spaces so the data starts 8-byte aligned
//   data      raw little-endian tensor bytes; offsets are relative to the data start
//
// Writes are atomic (write `<path>.tmp.<pid>`, fsync, rename, fsync the directory), so a
// reader sees the old file or the new one, never half of one. The small file helpers used
// for that are exported for checkpoint.cc, together with a write-fault hook for tests.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace autosp::runtime {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Host tensors only (copy device tensors to the host first). Names must be unique and not
// "__metadata__". Data is laid out in the given order.
Status save_safetensors(const std::string& path, const NamedTensors& tensors,
                        const std::map<std::string, std::string>& metadata = {});

struct SafetensorsFile {
  NamedTensors tensors;  // in data-offset order (the save order for files written here)
  std::map<std::string, std::string> metadata;
};

// Validates everything before trusting it: header length within the file, JSON object,
// known dtypes, non-negative shapes, data_offsets in range and matching shape × dtype size,
// tensors neither overlapping nor leaving holes. Each error names the file, the tensor and
// the offending offsets. Every tensor gets its own host storage.
StatusOr<SafetensorsFile> read_safetensors(const std::string& path);
// read_safetensors without copies: the tensors view one read-only shared mapping of the
// file (unmapped when the last of them is gone), so ranks on one machine reading the same
// file share its pages, and only the bytes read are paged in. Writing through them faults.
// The file must not change while they live.
StatusOr<SafetensorsFile> map_safetensors(const std::string& path);
// read_safetensors without the metadata.
StatusOr<NamedTensors> load_safetensors(const std::string& path);

// ---- file helpers shared with checkpoint.cc ----

// Writes `contents` to `path` atomically (same protocol as save_safetensors).
Status write_file_atomic(const std::string& path, const std::string& contents);
// fsync a directory so a rename or create inside it survives a crash.
Status fsync_dir(const std::string& dir);

// Test hook: after `bytes` more bytes have been written through these helpers, every write
// fails with ENOSPC, as on a full disk. -1 (the default) turns it off. Process-wide.
void set_write_fault_after_bytes(int64_t bytes);

}  // namespace autosp::runtime
