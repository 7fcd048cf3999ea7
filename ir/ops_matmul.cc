// matmul: C[..., M, N] = op(A)[..., M, K] · op(B)[..., K, N] (+ X). B is either batched like A
// or a single rank-2 matrix shared by A's batch (a weight), which is what every projection is.
// The optional X, of C's type, is added in the GEMM's epilogue (BLAS beta = 1): the
// fuse_accumulate pass folds residual adds and gradient sums into the matmul that feeds them.
#include "ir/op_rules.h"

namespace autosp::ir::rules {

Status infer_matmul(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& a = g.type(n.inputs[0]);
  const auto& b = g.type(n.inputs[1]);
  const auto& at = std::get<MatmulAttrs>(n.attrs);
  RETURN_IF_ERROR(expect(is_float(a.dtype) && a.shape.rank() >= 2, g, n, 0, "a float tensor of rank >= 2"));
  RETURN_IF_ERROR(expect(b.dtype == a.dtype && b.shape.rank() >= 2, g, n, 1,
                         std::string(dtype_name(a.dtype)) + " of rank >= 2 (the type of operand 0)"));
  const bool shared_b = b.shape.rank() == 2;
  if (!shared_b) {
    RETURN_IF_ERROR(expect(b.shape.rank() == a.shape.rank(), g, n, 1, "rank 2 or the rank of operand 0"));
    for (int i = 0; i < a.shape.rank() - 2; ++i)
      RETURN_IF_ERROR(expect(a.shape[i] == b.shape[i], g, n, 1, "the batch dimensions of operand 0"));
  } else if (a.shape.rank() > 2) {
    RETURN_IF_ERROR(expect(!at.trans_a, g, n, 0, "trans_a=false when a rank-2 operand 1 is shared by the batch"));
  }
  const int64_t m = at.trans_a ? a.shape[-1] : a.shape[-2];
  const int64_t ka = at.trans_a ? a.shape[-2] : a.shape[-1];
  const int64_t kb = at.trans_b ? b.shape[-1] : b.shape[-2];
  const int64_t nn = at.trans_b ? b.shape[-2] : b.shape[-1];
  RETURN_IF_ERROR(expect(ka == kb, g, n, 1, "a contraction dimension of " + std::to_string(ka)));
  std::vector<int64_t> dims(a.shape.dims().begin(), a.shape.dims().end() - 2);
  dims.push_back(m);
  dims.push_back(nn);
  out = {{a.dtype, Shape(dims)}};
  if (n.inputs.size() == 3)
    RETURN_IF_ERROR(expect(g.type(n.inputs[2]) == out[0], g, n, 2, "the result's type, " + out[0].str()));
  return Status::Ok();
}

// With C = op(A) op(B), the four transpose cases give (dA, dB) as further matmuls:
//   ( , ):  dA = dC·Bᵀ      dB = Aᵀ·dC        (ᵀ, ):  dA = B·dCᵀ    dB = A·dC
//   ( ,ᵀ):  dA = dC·B       dB = dCᵀ·A        (ᵀ,ᵀ):  dA = Bᵀ·dCᵀ   dB = dCᵀ·Aᵀ
// A shared B gets the sum over the batch, which is one GEMM on A and dC flattened to 2-D.
// An accumulated X passes dC through unchanged.
Status vjp_matmul(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>& needs,
                  std::vector<ValueId>& ig) {
  const auto& at = std::get<MatmulAttrs>(n.attrs);
  const bool ta = at.trans_a, tb = at.trans_b;
  ValueId A = n.inputs[0], B = n.inputs[1], dC = og[0];
  if (needs[0]) {
    if (!ta) ig[0] = tb ? b.matmul(dC, B, false, false) : b.matmul(dC, B, false, true);
    else ig[0] = tb ? b.matmul(B, dC, true, true) : b.matmul(B, dC, false, true);
  }
  if (needs[1]) {
    const bool shared_b = b.shape(B).rank() == 2 && b.shape(A).rank() > 2;
    if (shared_b) {  // ta is false here (inference enforces it)
      const Shape sa = b.shape(A);
      const Shape sc = b.shape(dC);
      A = b.reshape(A, {sa.numel() / sa[-1], sa[-1]});
      dC = b.reshape(dC, {sc.numel() / sc[-1], sc[-1]});
    }
    if (!ta) ig[1] = tb ? b.matmul(dC, A, true, false) : b.matmul(A, dC, true, false);
    else ig[1] = tb ? b.matmul(dC, A, true, true) : b.matmul(A, dC, false, false);
  }
  if (n.inputs.size() == 3 && needs[2]) ig[2] = og[0];
  return Status::Ok();
}

}  // namespace autosp::ir::rules
