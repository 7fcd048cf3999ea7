// Model definitions, written once for one device with the builder API only — no parallel
// logic. Each builds the forward graph of one training step:
//   inputs:  tokens, targets, positions [batch, seq] i32 (+ segments [batch, seq] i32 with
//            packed documents); targets are pre-shifted, -1 = not scored
//   outputs: loss (mean over scored tokens), loss_sum, count
// Parameter names follow Hugging Face (Llama: model.layers.{i}.self_attn.q_proj.weight, ...)
// in HF's [out_features, in_features] layout.
#pragma once
#include "core/status.h"
#include "ir/builder.h"
#include "ir/graph.h"
#include "models/model_config.h"

namespace autosp::models {

struct StepShape {
  int64_t batch = 1;
  int64_t seq_len = 0;
  bool documents = false;  // add the segment-id input and mask attention per document
  // Activation type. Parameters stay f32 (the optimizer's master weights); with bf16, each
  // is cast where it is used (norm weights excepted: the norm kernels read them as f32), so
  // matmuls and attention run in bf16 and gradients come back in f32, as under PyTorch's
  // autocast. Embedding rows are gathered in f32 and then cast.
  DType dtype = DType::f32;
};

// Errors name the model.* key that is inconsistent.
Status validate(const ModelConfig& cfg);
StatusOr<ir::Graph> build(const ModelConfig& cfg, const StepShape& shape);

// The architectures (called by build after validation).
ir::Graph llama(const ModelConfig& cfg, const StepShape& shape);
ir::Graph gpt2(const ModelConfig& cfg, const StepShape& shape);

// Parameter count.
int64_t num_params(const ir::Graph& g);

// The LM head and loss every model ends with: fused cross-entropy of the final hidden states
// against `head` ([vocab, d_model]; the embedding table when tied) and the outputs loss (mean
// over scored tokens), loss_sum and count.
void lm_loss(ir::Builder& b, ir::ValueId hidden, ir::ValueId head, ir::ValueId targets);

}  // namespace autosp::models
