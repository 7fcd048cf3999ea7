// chunk_mlp: computes each SwiGLU MLP (down(swiglu(gate(h), up(h)))) over `chunks` slices of
// the sequence, one after another, so only one slice's [tokens, ffn_hidden] intermediates are
// alive at a time — in forward, and, with recompute, in backward. The MLP's intermediate is
// the largest activation of a layer (ffn_hidden ≈ 3.5 × d_model), which is what limits the
// longest context once attention is flash-style. Runs before autodiff; the math per token is
// unchanged (weight gradients become sums over slices).
#pragma once
#include <memory>

#include "sp_compiler/pass.h"

namespace autosp::sp {

std::unique_ptr<Pass> make_chunk_mlp_pass(int chunks);

}  // namespace autosp::sp
