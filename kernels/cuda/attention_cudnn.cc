// cuDNN SDPA forward and backward through the cuDNN frontend's graph API (header-only C++;
// CMake compiles this file, and defines AUTOSP_HAVE_CUDNN_FRONTEND, only when it finds the
// headers). Written against nvidia-cudnn-frontend 1.32.
//
// No copies or permutes: our [B, T, H, D] tensors are cuDNN's logical [B, H, T, D] with strides
// {R·H·D, D, H·D, 1}, R = T or the row window's allocated rows (AttentionArgs::q_rows,
// k_rows), and GQA is K/V with Hkv heads. Stats, [B, H, Tq, 1] fp32, is the
// natural-log logsumexp of the scaled scores (the frontend's default; set_stats_use_log2 would
// make it base 2) — exactly our lse [B, H, Tq]. Causal is cuDNN's top-left diagonal band with
// right bound 0: key j visible to query i iff j <= i, which is our causal mask with default
// positions (0..Tq-1 and 0..Tk-1), Tq != Tk included. Positions and segments have no cuDNN
// equivalent here and go to the fallback kernels.
//
// A graph is built once per shape (B, Tq, Tk, rows, H, Hkv, D, causal, scale, direction) and cached
// in the context with its workspace size; a shape cuDNN rejects is cached as rejected, and
// its reason printed once. The backward asks for cuDNN's deterministic algorithm (like the
// fallback, repeated steps give identical gradients) and takes the default one when that is
// not supported for the shape, or when its workspace is too large: on Hopper the frontend
// serves a deterministic request by materialising dP, B·H·Tq·Tk bf16 values, in the
// workspace (scaled_dot_product_flash_attention.h, "use_dp_workspace"; cuDNN < 9.25 has no
// other deterministic Hopper path) — 16 GiB at 32k tokens with 8 heads, far past the memory
// plan, and a cudaMalloc failure (an abort) at longer sequences. The default algorithm's
// workspace is linear in Tq (an fp32 dQ accumulator).
#include <cudnn_frontend.h>

#include <cstdio>
#include <exception>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>

#include "core/check.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"

#define CUDNN_CHECK(call)                                                                                       \
  do {                                                                                                          \
    cudnnStatus_t autosp_st_ = (call);                                                                          \
    AUTOSP_CHECK(autosp_st_ == CUDNN_STATUS_SUCCESS) << #call << " failed: " << cudnnGetErrorString(autosp_st_); \
  } while (0)

namespace autosp::kernels::cuda {

namespace fe = cudnn_frontend;

namespace {

using Tensor = std::shared_ptr<fe::graph::Tensor_attributes>;
using Graph = std::shared_ptr<fe::graph::Graph>;

enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kdO, kdQ, kdK, kdV };

// B, Tq, Tk, q_rows, k_rows, H, Hkv, D, causal, scale, backward
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, float, bool>;

struct Built {
  Graph graph;  // null: cuDNN rejected the shape
  int64_t workspace = 0;
};

// The largest workspace the deterministic backward may take (the frontend's own former
// default cap on the dP workspace, CUDNN_FRONTEND_ATTN_DP_WORKSPACE_LIMIT): about
// B·H·Tq·Tk ≤ 2^27, e.g. 4k tokens with 8 heads. Past it the default algorithm is used.
constexpr int64_t kMaxDeterministicWorkspace = int64_t(256) << 20;

}  // namespace

struct CudnnAttention {
  cudnnHandle_t handle = nullptr;  // null: cudnnCreate failed, every call takes the fallback
  std::map<Key, Built> graphs;
};

namespace {

// One operand: T rows (of R allocated) of [B, R, heads, D] memory, cuDNN's dims [B, heads, T, D].
struct Side {
  int64_t B, heads, T, R, D;
  std::vector<int64_t> dims() const { return {B, heads, T, D}; }
  std::vector<int64_t> strides() const { return {R * heads * D, D, heads * D, 1}; }
};
int64_t rows_of(int64_t rows, int64_t T) { return rows > 0 ? rows : T; }
Side q_side(const AttentionArgs& a) { return {a.B, a.H, a.Tq, rows_of(a.q_rows, a.Tq), a.D}; }
Side k_side(const AttentionArgs& a) { return {a.B, a.Hkv, a.Tk, rows_of(a.k_rows, a.Tk), a.D}; }

Tensor input(fe::graph::Graph& g, const char* name, Uid uid, const Side& x) {
  return g.tensor(
      fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim(x.dims()).set_stride(x.strides()));
}

void output(const Tensor& t, Uid uid, const Side& x) {
  t->set_output(true).set_uid(uid).set_dim(x.dims()).set_stride(x.strides());
}

// Stats, [B, H, Tq, 1] fp32: our lse [B, H, Tq], packed in a row window too.
fe::graph::Tensor_attributes& stats_layout(fe::graph::Tensor_attributes& t, const AttentionArgs& a) {
  return t.set_uid(kStats)
      .set_data_type(fe::DataType_t::FLOAT)
      .set_dim({a.B, a.H, a.Tq, 1})
      .set_stride({a.H * a.Tq, a.Tq, 1, 1});
}

Graph new_graph() {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

Graph forward_graph(const AttentionArgs& a) {
  Graph g = new_graph();
  const Tensor q = input(*g, "Q", kQ, q_side(a));
  const Tensor k = input(*g, "K", kK, k_side(a));
  const Tensor v = input(*g, "V", kV, k_side(a));
  auto opts = fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(true).set_attn_scale(a.scale);
  if (a.causal) opts.set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT).set_diagonal_band_right_bound(0);
  auto [o, stats] = g->sdpa(q, k, v, opts);
  output(o, kO, q_side(a));
  stats_layout(stats->set_output(true), a);
  return g;
}

Graph backward_graph(const AttentionArgs& a, bool deterministic) {
  Graph g = new_graph();
  const Tensor q = input(*g, "Q", kQ, q_side(a));
  const Tensor k = input(*g, "K", kK, k_side(a));
  const Tensor v = input(*g, "V", kV, k_side(a));
  const Tensor o = input(*g, "O", kO, q_side(a));
  const Tensor dout = input(*g, "dO", kdO, q_side(a));
  const Tensor stats = g->tensor(stats_layout(fe::graph::Tensor_attributes().set_name("Stats"), a));
  auto opts = fe::graph::SDPA_backward_attributes()
                  .set_name("sdpa_backward")
                  .set_attn_scale(a.scale)
                  .set_deterministic_algorithm(deterministic);
  if (a.causal) opts.set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT).set_diagonal_band_right_bound(0);
  auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, opts);
  output(dq, kdQ, q_side(a));
  output(dk, kdK, k_side(a));
  output(dv, kdV, k_side(a));
  return g;
}

// The frontend's build steps, stopping at the first failure; "" when the graph is ready.
// Some failures below the graph API surface as exceptions, which mean "not supported" too.
std::string build(fe::graph::Graph& g, cudnnHandle_t handle) {
  try {
    fe::error_t e = g.validate();
    if (e.is_good()) e = g.build_operation_graph(handle);
    if (e.is_good()) e = g.create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK});
    if (e.is_good()) e = g.check_support();
    if (e.is_good()) e = g.build_plans();
    if (e.is_good()) return "";
    const std::string message = e.get_message();
    return message.empty() ? "error code " + std::to_string(int(e.get_code())) : message;
  } catch (const std::exception& ex) {
    return ex.what();
  }
}

std::string describe(const AttentionArgs& a, bool backward) {
  const int64_t qr = rows_of(a.q_rows, a.Tq), kr = rows_of(a.k_rows, a.Tk);
  const std::string window =
      qr > a.Tq || kr > a.Tk ? " in windows of " + std::to_string(qr) + "/" + std::to_string(kr) + " rows" : "";
  return std::string(backward ? "backward" : "forward") + " B=" + std::to_string(a.B) + " Tq=" + std::to_string(a.Tq) +
         " Tk=" + std::to_string(a.Tk) + window + " H=" + std::to_string(a.H) + " Hkv=" + std::to_string(a.Hkv) +
         " D=" + std::to_string(a.D) + (a.causal ? " causal" : "");
}

// The cached graph for these arguments, built on first use; null when cuDNN rejects them.
const Built& graph_for(AttentionContext& ctx, const AttentionArgs& a, bool backward) {
  if (!ctx.cudnn) {
    ctx.cudnn = new CudnnAttention;
    // A cuDNN that cannot start here (a libcudnn whose engine libraries or driver do not match
    // this machine's) leaves attention to the fallback kernels instead of ending the run.
    const cudnnStatus_t st = cudnnCreate(&ctx.cudnn->handle);
    if (st != CUDNN_STATUS_SUCCESS) {
      ctx.cudnn->handle = nullptr;
      std::fprintf(stderr, "autosp: cuDNN unavailable (cudnnCreate: %s), using the fallback attention kernels\n",
                   cudnnGetErrorString(st));
    }
  }
  static const Built kNone;
  if (!ctx.cudnn->handle) return kNone;
  const Key key{a.B,   a.Tq,     a.Tk,    rows_of(a.q_rows, a.Tq), rows_of(a.k_rows, a.Tk), a.H, a.Hkv,
                a.D,   a.causal, a.scale, backward};
  auto it = ctx.cudnn->graphs.find(key);
  if (it != ctx.cudnn->graphs.end()) return it->second;

  Built built;
  std::string why;
  auto workspace_of = [](fe::graph::Graph& g) {
    int64_t bytes = 0;
    AUTOSP_CHECK(g.get_workspace_size(bytes).is_good()) << "cuDNN SDPA workspace size";
    return bytes;
  };
  if (!backward) {
    Graph g = forward_graph(a);
    why = build(*g, ctx.cudnn->handle);
    if (why.empty()) built = {g, workspace_of(*g)};
  } else {
    for (bool deterministic : {true, false}) {
      Graph g = backward_graph(a, deterministic);
      std::string reason = build(*g, ctx.cudnn->handle);
      if (reason.empty()) {
        const int64_t workspace = workspace_of(*g);
        if (!deterministic || workspace <= kMaxDeterministicWorkspace) {
          built = {g, workspace};
          break;
        }
        reason = "workspace of " + std::to_string(workspace >> 20) + " MiB (over " +
                 std::to_string(kMaxDeterministicWorkspace >> 20) + " MiB)";
      }
      why += (deterministic ? "deterministic: " : "; default: ") + reason;
    }
    if (built.graph && !why.empty())  // took the default algorithm: say once why
      std::fprintf(stderr, "autosp: cuDNN SDPA %s uses the non-deterministic algorithm (%s)\n",
                   describe(a, backward).c_str(), why.c_str());
  }
  if (!built.graph) {
    std::fprintf(stderr, "autosp: cuDNN SDPA %s not supported, using the fallback kernels: %s\n",
                 describe(a, backward).c_str(), why.c_str());
  }
  return ctx.cudnn->graphs.emplace(key, std::move(built)).first->second;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// What cuDNN is never asked to do: masks beyond causal, head dims its kernels do not take
// (multiples of 8 up to 256; the support check narrows that per GPU), empty problems, and
// operands its vectorised loads cannot read.
bool applicable(const AttentionArgs& a, std::initializer_list<const void*> ptrs) {
  if (a.q_pos || a.k_pos || a.q_seg || a.k_seg) return false;
  if (a.D % 8 != 0 || a.D > 256 || a.B == 0 || a.Tq == 0 || a.Tk == 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

void execute(AttentionContext& ctx, const Built& built, std::unordered_map<int64_t, void*>& pack, cudaStream_t s) {
  void* workspace = built.workspace > 0 ? ctx.scratch(size_t(built.workspace)) : nullptr;
  CUDNN_CHECK(cudnnSetStream(ctx.cudnn->handle, s));
  fe::error_t e = built.graph->execute(ctx.cudnn->handle, pack, workspace);
  AUTOSP_CHECK(e.is_good()) << "cuDNN SDPA execute failed: " << e.get_message();
}

}  // namespace

bool attention_cudnn_built() { return true; }

bool attention_forward_cudnn(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                             const bf16* v, bf16* o, float* lse, cudaStream_t s) {
  if (!applicable(a, {q, k, v, o, lse})) return false;
  const Built& built = graph_for(ctx, a, false);
  if (!built.graph) return false;
  std::unordered_map<int64_t, void*> pack = {{kQ, const_cast<bf16*>(q)}, {kK, const_cast<bf16*>(k)},
                                             {kV, const_cast<bf16*>(v)}, {kO, o},
                                             {kStats, lse}};
  execute(ctx, built, pack, s);
  return true;
}

bool attention_backward_cudnn(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk,
                              bf16* dv, cudaStream_t s) {
  if (!applicable(a, {q, k, v, o, lse, dout, dq, dk, dv})) return false;
  const Built& built = graph_for(ctx, a, true);
  if (!built.graph) return false;
  std::unordered_map<int64_t, void*> pack = {
      {kQ, const_cast<bf16*>(q)},    {kK, const_cast<bf16*>(k)},      {kV, const_cast<bf16*>(v)},
      {kO, const_cast<bf16*>(o)},    {kdO, const_cast<bf16*>(dout)},  {kStats, const_cast<float*>(lse)},
      {kdQ, dq},                     {kdK, dk},                       {kdV, dv}};
  execute(ctx, built, pack, s);
  return true;
}

int64_t attention_cudnn_workspace(AttentionContext& ctx, const AttentionArgs& a, bool backward) {
  if (!applicable(a, {})) return -1;
  const Built& built = graph_for(ctx, a, backward);
  return built.graph ? built.workspace : -1;
}

void release_cudnn_attention(CudnnAttention* c) {
  if (!c) return;
  c->graphs.clear();  // plans hold cuDNN descriptors: gone before the handle
  if (c->handle) cudnnDestroy(c->handle);
  delete c;
}

}  // namespace autosp::kernels::cuda
