// The op table. Order must follow AUTOSP_OPS (ir/op.h); the static_assert checks the size
// and op_info() checks each entry's position once.
#include "ir/registry.h"

#include <array>

#include "ir/op_rules.h"

namespace autosp::ir {

namespace {
using namespace rules;

#define R(name, min_in, max_in, n_out, attrs, vjp) R2(name, min_in, max_in, n_out, 0u, attrs, vjp)
#define R2(name, min_in, max_in, n_out, nondiff, attrs, vjp) \
  OpInfo{Op::name, #name, min_in, max_in, n_out, nondiff, attrs, infer_##name, vjp, "cpu." #name, "cuda." #name}

const std::array<OpInfo, kNumOps> kOps = {{
    R(embedding, 2, 2, 1, NoAttrs{}, vjp_embedding),
    R(matmul, 2, 3, 1, MatmulAttrs{}, vjp_matmul),
    R(add, 2, 2, 1, NoAttrs{}, vjp_add),
    R(sub, 2, 2, 1, NoAttrs{}, vjp_sub),
    R(mul, 2, 2, 1, NoAttrs{}, vjp_mul),
    R(div, 2, 2, 1, NoAttrs{}, vjp_div),
    R(scale, 1, 1, 1, ScaleAttrs{}, vjp_scale),
    R(rms_norm, 2, 2, 1, NormAttrs{}, vjp_rms_norm),
    R(layer_norm, 3, 3, 1, NormAttrs{}, vjp_layer_norm),
    R(rope, 2, 2, 1, RopeAttrs{}, vjp_rope),
    R(silu, 1, 1, 1, NoAttrs{}, vjp_silu),
    R(gelu, 1, 1, 1, NoAttrs{}, vjp_gelu),
    R(swiglu, 2, 2, 1, NoAttrs{}, vjp_swiglu),
    R(reshape, 1, 1, 1, ShapeAttrs{}, vjp_reshape),
    R(permute, 1, 1, 1, PermuteAttrs{}, vjp_permute),
    R2(attention, 3, 5, 2, 0b10u, AttentionAttrs{}, vjp_attention),
    R2(cross_entropy, 3, 3, 3, 0b110u, CrossEntropyAttrs{}, vjp_cross_entropy),
    R(sum, 1, 1, 1, ReduceAttrs{}, vjp_sum),
    R(mean, 1, 1, 1, ReduceAttrs{}, vjp_mean),
    R(broadcast, 1, 1, 1, BroadcastAttrs{}, vjp_broadcast),
    R(cast, 1, 1, 1, CastAttrs{}, vjp_cast),
    R(embedding_backward, 2, 2, 1, EmbeddingBackwardAttrs{}, nullptr),
    R(rms_norm_backward, 3, 3, 2, NormAttrs{}, nullptr),
    R(layer_norm_backward, 3, 3, 3, NormAttrs{}, nullptr),
    R(silu_backward, 2, 2, 1, NoAttrs{}, nullptr),
    R(gelu_backward, 2, 2, 1, NoAttrs{}, nullptr),
    R(swiglu_backward, 3, 3, 2, NoAttrs{}, nullptr),
    R(attention_backward, 6, 8, 3, AttentionAttrs{}, nullptr),
    R(cross_entropy_backward, 5, 5, 2, CrossEntropyAttrs{}, nullptr),
    R(all_to_all, 1, 1, 1, AllToAllAttrs{}, vjp_all_to_all),
    R(all_gather, 1, 1, 1, AxisCollectiveAttrs{}, vjp_all_gather),
    R(reduce_scatter, 1, 1, 1, AxisCollectiveAttrs{}, vjp_reduce_scatter),
    R(all_reduce, 1, 1, 1, GroupAttrs{}, vjp_all_reduce),
    R(send_recv, 1, 1, 1, SendRecvAttrs{}, vjp_send_recv),
    R2(ring_attention, 4, 5, 2, 0b10u, RingAttentionAttrs{}, vjp_ring_attention),
    R(ring_attention_backward, 7, 8, 3, RingAttentionAttrs{}, nullptr),
    R(pack, 1, 1 << 20, 1, PackAttrs{}, vjp_pack),
    R(unpack, 1, 1, kVariadicOutputs, UnpackAttrs{}, vjp_unpack),
    R(split, 1, 1, kVariadicOutputs, SplitAttrs{}, vjp_split),
    R(concat, 1, 1 << 20, 1, ConcatAttrs{}, vjp_concat),
    R(offload, 1, 1, 1, NoAttrs{}, vjp_offload),
    R(fetch, 1, 1, 1, NoAttrs{}, vjp_fetch),
}};
#undef R
#undef R2
static_assert(kOps.size() == size_t(kNumOps), "the op table and the Op enum must list the same ops");
}  // namespace

const OpInfo& op_info(Op op) {
  static const bool ordered = [] {
    for (int i = 0; i < kNumOps; ++i) AUTOSP_CHECK(int(kOps[i].op) == i) << "registry entry " << i << " out of order";
    return true;
  }();
  (void)ordered;
  return kOps[size_t(op)];
}

std::string_view op_name(Op op) { return op_info(op).name; }

std::optional<Op> op_from_name(std::string_view name) {
  for (const OpInfo& i : kOps)
    if (name == i.name) return i.op;
  return std::nullopt;
}

namespace rules {
Status operand_error(const Graph& g, const Node& n, int operand, const std::string& expected) {
  std::string t = operand < int(n.inputs.size()) ? g.type(n.inputs[operand]).str() : "missing";
  return InvalidArgument(std::string(op_name(n.op)) + " operand " + std::to_string(operand) + " (" + t +
                         "): expected " + expected);
}
}  // namespace rules

}  // namespace autosp::ir
