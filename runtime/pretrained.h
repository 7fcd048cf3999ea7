// Starting weights from a Hugging Face-style checkpoint (checkpoint.init_from): the
// tensors are looked up by the model's parameter names, which are Hugging Face's, in the
// same [out_features, in_features] layout (so `--export`'s file and a transformers
// Llama's `model.safetensors` both load). The path is one safetensors file, or a directory
// holding model.safetensors, or model.safetensors.index.json with its "weight_map" (tensor
// -> shard file) as transformers writes sharded checkpoints.
#pragma once
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/params.h"
#include "runtime/zero_checkpoint.h"

namespace autosp::runtime {

// Every parameter in `specs` must be found with its shape, as F32 or BF16 (widened to f32);
// the file's other tensors (a rotary inv_freq buffer, a head this config ties) are skipped
// and counted in *skipped. Errors name the file and the tensor. The result is a TrainState at
// step 0 without optimizer state (zero_moments), which every ParameterState loads, so any
// ZeRO stage and world size can start from it. Its parameters view read-only mappings of the
// files (map_safetensors) in the files' types: nothing is copied or widened until a rank
// takes its part, so the ranks of one machine share one copy of the file in the page cache
// and a ZeRO-3 rank reads only its shards.
StatusOr<TrainState> load_pretrained(const std::string& path, const std::vector<ParamSpec>& specs,
                                     int* skipped = nullptr);

}  // namespace autosp::runtime
