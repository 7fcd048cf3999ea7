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
// positions (0..Tq-1 and 0..Tk-1), Tq != Tk included. Explicit positions have no cuDNN
// equivalent here and go to the fallback kernels.
//
// Packed documents (segment ids, one tensor for queries and keys, default positions) run as
// cuDNN's ragged (THD) layout, the way Transformer Engine drives it: each run of equal ids in a
// row is one sequence of a variable-length batch (attention_documents.h), given by a padding
// mask (per-sequence lengths) and ragged offsets (each sequence's first element in Q, K, V, O
// and their gradients), so cuDNN does only the documents' own squares. The graph's batch is
// the document count rounded up to a power of two (at least 16; the rest are empty sequences)
// and its sequence extent the longest document's, rounded up likewise (capped at the row), so
// a few graphs serve every step. The tables come from the segment ids on the device; the
// count must reach the host to pick the graph, so each segment tensor costs one wait for the
// stream, once per step when the owner declares steps (AttentionContext::begin_step). Ragged
// statistics are token-major [tokens, H] (our lse is [B, H, T]): they pass through the
// scratch, transposed. A ring attention's visiting block (attention_forward_cudnn_visiting)
// runs the same way with different queries and keys: each local document, cut to the query
// window, paired with the keys of its id in the block's window (visiting_tables, on the
// device: the block's ids never reach the host), and the graph's key extent is the key
// window. Needs cuDNN 9.6 (ragged statistics; GQA with ragged offsets); older
// runtimes, rows whose ids repeat after another id, and shapes cuDNN rejects take the
// fallback.
//
// A graph is built once per shape (B, Tq, Tk, rows, H, Hkv, D, causal, scale, direction, and for
// documents the batch and sequence extents) and cached in the context with its workspace size; a
// shape cuDNN rejects is cached as rejected, and its reason printed once. The backward asks for
// cuDNN's deterministic algorithm (like the fallback, repeated steps give identical gradients) and
// takes the default one when that is not supported for the shape, or when its workspace is too
// large: on Hopper the frontend serves a deterministic request by materialising dP, B·H·Tq·Tk bf16
// values, in the workspace (scaled_dot_product_flash_attention.h, "use_dp_workspace"; cuDNN < 9.25
// has no other deterministic Hopper path) — 16 GiB at 32k tokens with 8 heads, far past the memory
// plan, and a cudaMalloc failure (an abort) at longer sequences. The default algorithm's workspace
// is linear in Tq (an fp32 dQ accumulator).
#include <cudnn_frontend.h>

#include <cstdio>
#include <exception>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>

#include "core/check.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_documents.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/ring.h"

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

enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kdO, kdQ, kdK, kdV, kSeqQ, kSeqKV, kOffQ, kOffO, kOffK, kOffV, kOffStats };

// B, Tq, Tk, q_rows, k_rows, H, Hkv, D, causal, scale, backward, document slots, query and key extents
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, float, bool,
                       int64_t, int64_t, int64_t>;

// A packed-documents graph's extents: `slots` sequences of at most Sq queries and Skv keys.
struct Ragged {
  int64_t slots = 0, Sq = 0, Skv = 0;
};

struct Built {
  Graph graph;  // null: cuDNN rejected the shape
  int64_t workspace = 0;
};

// The largest workspace the deterministic backward may take (the frontend's own former
// default cap on the dP workspace, CUDNN_FRONTEND_ATTN_DP_WORKSPACE_LIMIT): about
// B·H·Tq·Tk ≤ 2^27, e.g. 4k tokens with 8 heads. Past it the default algorithm is used.
constexpr int64_t kMaxDeterministicWorkspace = int64_t(256) << 20;

}  // namespace

// One segment tensor's documents (document_scan), computed once per step.
struct Documents {
  int32_t* starts = nullptr;  // device, B·T + 1 entries, kept across steps
  DocumentScan scan;
  int64_t step = -1;  // the context's step it was computed in
};

// What a scan brings to the host: its result, and whether a ring's visiting block was seen out
// of order since the context's first scan (visiting_tables; reported at the next scan, since
// reading it sooner would mean another wait for the stream).
struct ScanReport {
  DocumentScan scan;
  int32_t visiting_unordered = 0;
};

struct CudnnAttention {
  cudnnHandle_t handle = nullptr;  // null: cudnnCreate failed, every call takes the fallback
  std::map<Key, Built> graphs;
  std::map<std::tuple<const int32_t*, int64_t, int64_t>, Documents> documents;  // by (segments, B, T)
  ScanReport* report_dev = nullptr;   // on the device, zeroed once
  ScanReport* report_host = nullptr;  // and its pinned host copy
  int64_t bytes = 0;                  // device memory the documents' starts hold
};

namespace {

// One operand: T rows (of R allocated) of [B, R, heads, D] memory, cuDNN's dims [B, heads, T, D].
struct Side {
  int64_t B, heads, T, R, D;
  std::vector<int64_t> dims() const { return {B, heads, T, D}; }
  std::vector<int64_t> strides() const { return {R * heads * D, D, heads * D, 1}; }
};
int64_t rows_of(int64_t rows, int64_t T) { return rows > 0 ? rows : T; }
// Ragged: `slots` sequences of extent S over [tokens, heads, D] memory; each sequence's rows
// start at its ragged offset, so the batch stride is never used.
Side q_side(const AttentionArgs& a, const Ragged& r) {
  return r.slots ? Side{r.slots, a.H, r.Sq, r.Sq, a.D} : Side{a.B, a.H, a.Tq, rows_of(a.q_rows, a.Tq), a.D};
}
Side k_side(const AttentionArgs& a, const Ragged& r) {
  return r.slots ? Side{r.slots, a.Hkv, r.Skv, r.Skv, a.D} : Side{a.B, a.Hkv, a.Tk, rows_of(a.k_rows, a.Tk), a.D};
}

// One of the ragged index tensors: [n, 1, 1, 1] int32 lengths or int64 offsets.
Tensor index_tensor(fe::graph::Graph& g, const char* name, Uid uid, int64_t n, fe::DataType_t type) {
  return g.tensor(
      fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim({n, 1, 1, 1}).set_stride({1, 1, 1, 1}).set_data_type(
          type));
}
Tensor offsets(fe::graph::Graph& g, const char* name, Uid uid, const Ragged& r) {
  return r.slots ? index_tensor(g, name, uid, r.slots + 1, fe::DataType_t::INT64) : nullptr;
}

Tensor input(fe::graph::Graph& g, const char* name, Uid uid, const Side& x, const Tensor& offset) {
  Tensor t = g.tensor(
      fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim(x.dims()).set_stride(x.strides()));
  if (offset) t->set_ragged_offset(offset);
  return t;
}

void output(const Tensor& t, Uid uid, const Side& x, const Tensor& offset) {
  t->set_output(true).set_uid(uid).set_dim(x.dims()).set_stride(x.strides());
  if (offset) t->set_ragged_offset(offset);
}

// Stats, [B, H, Tq, 1] fp32: our lse [B, H, Tq], packed in a row window too. Ragged: token-major
// [tokens, H] from each sequence's offset (the layout cuDNN's ragged statistics take).
void stats_layout(fe::graph::Tensor_attributes& t, const AttentionArgs& a, const Ragged& r, const Tensor& offset) {
  t.set_uid(kStats).set_data_type(fe::DataType_t::FLOAT);
  if (r.slots) {
    t.set_dim({r.slots, a.H, r.Sq, 1}).set_stride({a.H * r.Sq, 1, a.H, 1}).set_ragged_offset(offset);
  } else {
    t.set_dim({a.B, a.H, a.Tq, 1}).set_stride({a.H * a.Tq, a.Tq, 1, 1});
  }
}

// Ragged graphs: a padding mask with each sequence's query and key lengths. The token totals
// size cuDNN's per-token workspace (the backward's fp32 dQ, and GQA's per-head dK and dV): they
// are the rows the offsets span, windows' gaps included, so that no offset reaches past them.
template <class Attributes>
void set_documents(fe::graph::Graph& g, Attributes& opts, const AttentionArgs& a, const Ragged& r) {
  if (!r.slots) return;
  opts.set_padding_mask(true)
      .set_seq_len_q(index_tensor(g, "seq_q", kSeqQ, r.slots, fe::DataType_t::INT32))
      .set_seq_len_kv(index_tensor(g, "seq_kv", kSeqKV, r.slots, fe::DataType_t::INT32))
      .set_max_total_seq_len_q((a.B - 1) * rows_of(a.q_rows, a.Tq) + a.Tq)
      .set_max_total_seq_len_kv((a.B - 1) * rows_of(a.k_rows, a.Tk) + a.Tk);
}

Graph new_graph() {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

// The ragged offsets of Q, O (and dO, dQ), K (dK), V (dV) and Stats; null tensors when dense.
struct Offsets {
  Tensor q, o, k, v, stats;
  Offsets(fe::graph::Graph& g, const Ragged& r)
      : q(offsets(g, "offset_q", kOffQ, r)), o(offsets(g, "offset_o", kOffO, r)), k(offsets(g, "offset_k", kOffK, r)),
        v(offsets(g, "offset_v", kOffV, r)), stats(offsets(g, "offset_stats", kOffStats, r)) {}
};

Graph forward_graph(const AttentionArgs& a, const Ragged& r) {
  Graph g = new_graph();
  const Offsets off(*g, r);
  const Tensor q = input(*g, "Q", kQ, q_side(a, r), off.q);
  const Tensor k = input(*g, "K", kK, k_side(a, r), off.k);
  const Tensor v = input(*g, "V", kV, k_side(a, r), off.v);
  auto opts = fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(true).set_attn_scale(a.scale);
  if (a.causal) opts.set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT).set_diagonal_band_right_bound(0);
  set_documents(*g, opts, a, r);
  // The frontend prefers its "unified" SDPA where its support check passes (cuDNN >= 9.15
  // takes padding masks), but that check does not look at ragged offsets: documents take the
  // composite implementation, the one Transformer Engine's ragged layout runs on.
  if (r.slots) opts.set_implementation(fe::AttentionImplementation_t::COMPOSITE);
  auto [o, stats] = g->sdpa(q, k, v, opts);
  output(o, kO, q_side(a, r), off.o);
  stats_layout(stats->set_output(true), a, r, off.stats);
  return g;
}

Graph backward_graph(const AttentionArgs& a, const Ragged& r, bool deterministic) {
  Graph g = new_graph();
  const Offsets off(*g, r);
  const Tensor q = input(*g, "Q", kQ, q_side(a, r), off.q);
  const Tensor k = input(*g, "K", kK, k_side(a, r), off.k);
  const Tensor v = input(*g, "V", kV, k_side(a, r), off.v);
  const Tensor o = input(*g, "O", kO, q_side(a, r), off.o);
  const Tensor dout = input(*g, "dO", kdO, q_side(a, r), off.o);
  fe::graph::Tensor_attributes stats_attributes;
  stats_layout(stats_attributes.set_name("Stats"), a, r, off.stats);
  const Tensor stats = g->tensor(stats_attributes);
  auto opts = fe::graph::SDPA_backward_attributes()
                  .set_name("sdpa_backward")
                  .set_attn_scale(a.scale)
                  .set_deterministic_algorithm(deterministic);
  if (a.causal) opts.set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT).set_diagonal_band_right_bound(0);
  set_documents(*g, opts, a, r);
  auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, opts);
  output(dq, kdQ, q_side(a, r), off.q);
  output(dk, kdK, k_side(a, r), off.k);
  output(dv, kdV, k_side(a, r), off.v);
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

std::string describe(const AttentionArgs& a, const Ragged& r, bool backward) {
  const int64_t qr = rows_of(a.q_rows, a.Tq), kr = rows_of(a.k_rows, a.Tk);
  const std::string window =
      qr > a.Tq || kr > a.Tk ? " in windows of " + std::to_string(qr) + "/" + std::to_string(kr) + " rows" : "";
  const std::string docs = r.slots ? " as " + std::to_string(r.slots) + " ragged sequences of <= " +
                                         std::to_string(r.Sq) + "/" + std::to_string(r.Skv) + " tokens"
                                   : "";
  return std::string(backward ? "backward" : "forward") + " B=" + std::to_string(a.B) + " Tq=" + std::to_string(a.Tq) +
         " Tk=" + std::to_string(a.Tk) + window + docs + " H=" + std::to_string(a.H) + " Hkv=" + std::to_string(a.Hkv) +
         " D=" + std::to_string(a.D) + (a.causal ? " causal" : "");
}

CudnnAttention& state(AttentionContext& ctx) {
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
  return *ctx.cudnn;
}

// The cached graph for these arguments, built on first use; null when cuDNN rejects them.
const Built& graph_for(AttentionContext& ctx, const AttentionArgs& a, const Ragged& r, bool backward) {
  CudnnAttention& c = state(ctx);
  static const Built kNone;
  if (!c.handle) return kNone;
  const Key key{a.B, a.Tq,    a.Tk,     rows_of(a.q_rows, a.Tq), rows_of(a.k_rows, a.Tk), a.H, a.Hkv, a.D, a.causal,
                a.scale, backward, r.slots, r.Sq, r.Skv};
  auto it = c.graphs.find(key);
  if (it != c.graphs.end()) return it->second;

  Built built;
  std::string why;
  auto workspace_of = [](fe::graph::Graph& g) {
    int64_t bytes = 0;
    AUTOSP_CHECK(g.get_workspace_size(bytes).is_good()) << "cuDNN SDPA workspace size";
    return bytes;
  };
  if (!backward) {
    Graph g = forward_graph(a, r);
    why = build(*g, c.handle);
    if (why.empty()) built = {g, workspace_of(*g)};
  } else {
    for (bool deterministic : {true, false}) {
      Graph g = backward_graph(a, r, deterministic);
      std::string reason = build(*g, c.handle);
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
                   describe(a, r, backward).c_str(), why.c_str());
  }
  if (!built.graph) {
    std::fprintf(stderr, "autosp: cuDNN SDPA %s not supported, using the fallback kernels: %s\n",
                 describe(a, r, backward).c_str(), why.c_str());
  }
  return c.graphs.emplace(key, std::move(built)).first->second;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Packed documents as cuDNN can take them: one segment tensor for queries and keys, which
// are the same rows (default positions, no windows).
bool documents(const AttentionArgs& a) {
  return a.q_seg && a.q_seg == a.k_seg && !a.q_pos && !a.k_pos && a.Tq == a.Tk && rows_of(a.q_rows, a.Tq) == a.Tq &&
         rows_of(a.k_rows, a.Tk) == a.Tk;
}

// What cuDNN is never asked to do: masks beyond causal and packed documents, head dims its
// kernels do not take (multiples of 8 up to 256; the support check narrows that per GPU),
// empty problems, and operands its vectorised loads cannot read.
bool applicable(const AttentionArgs& a, std::initializer_list<const void*> ptrs) {
  if ((a.q_pos || a.k_pos || a.q_seg || a.k_seg) && !documents(a)) return false;
  if (a.D % 8 != 0 || a.D > 256 || a.B == 0 || a.Tq == 0 || a.Tk == 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

int64_t pow2_at_least(int64_t n, int64_t floor) {
  int64_t p = floor;
  while (p < n) p *= 2;
  return p;
}

// The documents of the segment tensor seg [B, T]: scanned on the device, the scan's summary
// copied to the host (the one wait for the stream), then kept for the rest of the context's
// step. Null, with nothing left to do, when cuDNN cannot take them exactly.
const Documents* documents_for(AttentionContext& ctx, const int32_t* seg, int64_t B, int64_t T, cudaStream_t s) {
  // cuDNN 9.6: ragged statistics and GQA with ragged offsets (as Transformer Engine requires).
  static const bool supported = attention_cudnn_documents();
  if (!supported || B * T >= INT32_MAX) return nullptr;  // the starts are int32 token indices
  CudnnAttention& c = state(ctx);
  auto [it, fresh] = c.documents.try_emplace({seg, B, T});
  Documents& d = it->second;
  if (fresh) {
    const int64_t bytes = (B * T + 1) * int64_t(sizeof(int32_t));
    CUDA_CHECK(cudaMalloc(&d.starts, size_t(bytes)));
    c.bytes += bytes;
    if (ctx.on_resize) ctx.on_resize(bytes);
  }
  if (ctx.step() < 0 || d.step != ctx.step()) {  // a fresh entry's step is -1
    if (!c.report_dev) {
      CUDA_CHECK(cudaMalloc(&c.report_dev, sizeof(ScanReport)));
      CUDA_CHECK(cudaMemsetAsync(c.report_dev, 0, sizeof(ScanReport), s));
      CUDA_CHECK(cudaMallocHost(&c.report_host, sizeof(ScanReport)));
    }
    document_scan(seg, B, T, d.starts, &c.report_dev->scan, s);
    CUDA_CHECK(cudaMemcpyAsync(c.report_host, c.report_dev, sizeof(ScanReport), cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    AUTOSP_CHECK(!c.report_host->visiting_unordered)
        << "ring attention: a visiting block's document ids were out of order (they must count up along each row, "
           "padding last, as the data loader's do), so cuDNN paired its documents wrongly";
    d.scan = c.report_host->scan;
    d.step = ctx.step();
  }
  return d.scan.ordered ? &d : nullptr;
}

// A ragged call's device memory, carved from the context's scratch after cuDNN's workspace:
// the sequence lengths (one table for queries and keys unless they differ), the three offset
// tables and the token-major statistics.
struct RaggedScratch {
  void* workspace = nullptr;
  int32_t *seq_q = nullptr, *seq_kv = nullptr;
  int64_t *q_offset = nullptr, *kv_offset = nullptr, *stats_offset = nullptr;
  float* stats = nullptr;
};

int64_t align256(int64_t b) { return (b + 255) / 256 * 256; }

RaggedScratch carve(AttentionContext& ctx, const Built& built, const Ragged& r, const AttentionArgs& a) {
  const int64_t ws = align256(built.workspace), lens = align256(r.slots * 4), table = align256((r.slots + 1) * 8);
  char* base = static_cast<char*>(ctx.scratch(size_t(ws + 2 * lens + 3 * table + a.B * a.Tq * a.H * 4)));
  RaggedScratch m;
  m.workspace = built.workspace > 0 ? base : nullptr;
  m.seq_q = reinterpret_cast<int32_t*>(base + ws);
  m.seq_kv = reinterpret_cast<int32_t*>(base + ws + lens);
  m.q_offset = reinterpret_cast<int64_t*>(base + ws + 2 * lens);
  m.kv_offset = reinterpret_cast<int64_t*>(base + ws + 2 * lens + table);
  m.stats_offset = reinterpret_cast<int64_t*>(base + ws + 2 * lens + 2 * table);
  m.stats = reinterpret_cast<float*>(base + ws + 2 * lens + 3 * table);
  return m;
}

// The graph for this call and, for documents, its extents and filled tables; false when the
// call must take the fallback.
struct Prepared {
  const Built* built = nullptr;
  Ragged ragged;
  RaggedScratch scratch;
};

// visiting: a ring's visiting block of packed documents (a's windows), else null.
bool prepare(AttentionContext& ctx, const AttentionArgs& a, const VisitingDocuments* visiting, bool backward,
             cudaStream_t s, Prepared& p) {
  if (!state(ctx).handle) return false;
  const Documents* d = nullptr;
  if (visiting) {
    // The queries' whole rows are scanned (once per step); a document cut by the window is no
    // longer, and a key run no longer than the key window.
    d = documents_for(ctx, visiting->q_seg, a.B, rows_of(a.q_rows, a.Tq), s);
    if (!d) return false;
    p.ragged = {pow2_at_least(d->scan.count, 16), std::min(a.Tq, pow2_at_least(d->scan.max_len, 64)), a.Tk};
  } else if (documents(a)) {
    d = documents_for(ctx, a.q_seg, a.B, a.Tq, s);
    if (!d) return false;
    const int64_t S = std::min(a.Tq, pow2_at_least(d->scan.max_len, 64));
    p.ragged = {pow2_at_least(d->scan.count, 16), S, S};
  }
  p.built = &graph_for(ctx, a, p.ragged, backward);
  if (!p.built->graph) return false;
  if (d) {
    RaggedScratch& m = p.scratch;
    m = carve(ctx, *p.built, p.ragged, a);
    if (visiting) {
      visiting_tables(visiting->q_seg, d->starts, d->scan.count, visiting->k_seg, a.B, rows_of(a.q_rows, a.Tq),
                      rows_of(a.k_rows, a.Tk), visiting->q0, visiting->q0 + a.Tq, visiting->k0, visiting->k0 + a.Tk,
                      p.ragged.slots, a.H, a.Hkv, a.D, m.seq_q, m.seq_kv, m.q_offset, m.kv_offset, m.stats_offset,
                      &state(ctx).report_dev->visiting_unordered, s);
    } else {
      m.seq_kv = m.seq_q;  // each document's queries are its keys
      ragged_tables(d->starts, d->scan.count, p.ragged.slots, a.H, a.Hkv, a.D, m.seq_q, m.q_offset, m.kv_offset,
                    m.stats_offset, s);
    }
  } else {
    p.scratch.workspace = p.built->workspace > 0 ? ctx.scratch(size_t(p.built->workspace)) : nullptr;
  }
  return true;
}

void execute(AttentionContext& ctx, const Prepared& p, std::unordered_map<int64_t, void*>& pack, cudaStream_t s) {
  if (p.ragged.slots) {
    const RaggedScratch& m = p.scratch;
    pack[kSeqQ] = m.seq_q;
    pack[kSeqKV] = m.seq_kv;
    pack[kOffQ] = pack[kOffO] = m.q_offset;
    pack[kOffK] = pack[kOffV] = m.kv_offset;
    pack[kOffStats] = m.stats_offset;
  }
  CUDNN_CHECK(cudnnSetStream(ctx.cudnn->handle, s));
  fe::error_t e = p.built->graph->execute(ctx.cudnn->handle, pack, p.scratch.workspace);
  AUTOSP_CHECK(e.is_good()) << "cuDNN SDPA execute failed: " << e.get_message();
}

// Zeroes rows [0, a.Tq) (or Tk) of each batch row of a window of q_rows (k_rows) rows.
void zero_rows(void* x, const AttentionArgs& a, bool keys, cudaStream_t s) {
  const int64_t heads = keys ? a.Hkv : a.H, T = keys ? a.Tk : a.Tq;
  const int64_t rows = rows_of(keys ? a.k_rows : a.q_rows, T);
  const size_t row = size_t(heads * a.D) * sizeof(bf16);
  // One memset per batch row (there are few): a 2-D memset's pitch is capped (cudaDevAttrMaxPitch),
  // and a million-token row of 8 heads of 128 is past it.
  for (int64_t b = 0; b < a.B; ++b)
    CUDA_CHECK(cudaMemsetAsync(static_cast<char*>(x) + size_t(b) * row * size_t(rows), 0, row * size_t(T), s));
}

void check_visiting(const AttentionArgs& a) {
  AUTOSP_CHECK(!a.causal && !a.q_pos && !a.k_pos && !a.q_seg && !a.k_seg)
      << "cuDNN visiting documents: the ids come in VisitingDocuments, and a visiting block has no causal edge";
}

// The forward of every entry point; visiting: a ring's visiting block of packed documents.
bool forward(AttentionContext& ctx, const AttentionArgs& a, const VisitingDocuments* visiting, const bf16* q,
             const bf16* k, const bf16* v, bf16* o, float* lse, cudaStream_t s) {
  Prepared p;
  if (!applicable(a, {q, k, v, o, lse}) || !prepare(ctx, a, visiting, false, s, p)) return false;
  float* stats = p.ragged.slots ? p.scratch.stats : lse;
  if (visiting) {  // queries outside every sequence see no key here: o = 0, lse = -inf, which cuDNN leaves alone
    ring_fill(stats, a.B * a.Tq * a.H, -std::numeric_limits<float>::infinity(), s);
    zero_rows(o, a, false, s);
  }
  std::unordered_map<int64_t, void*> pack = {{kQ, const_cast<bf16*>(q)}, {kK, const_cast<bf16*>(k)},
                                             {kV, const_cast<bf16*>(v)}, {kO, o},
                                             {kStats, stats}};
  execute(ctx, p, pack, s);
  if (p.ragged.slots) lse_from_token_major(stats, lse, a.B, a.H, a.Tq, s);
  return true;
}

bool backward(AttentionContext& ctx, const AttentionArgs& a, const VisitingDocuments* visiting, const bf16* q,
              const bf16* k, const bf16* v, const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk,
              bf16* dv, cudaStream_t s) {
  Prepared p;
  if (!applicable(a, {q, k, v, o, lse, dout, dq, dk, dv}) || !prepare(ctx, a, visiting, true, s, p)) return false;
  float* stats = const_cast<float*>(lse);
  if (p.ragged.slots) {
    stats = p.scratch.stats;
    lse_to_token_major(lse, stats, a.B, a.H, a.Tq, s);
  }
  if (visiting) {  // queries and keys outside every sequence get no gradient; cuDNN leaves them alone
    zero_rows(dq, a, false, s);
    zero_rows(dk, a, true, s);
    zero_rows(dv, a, true, s);
  }
  std::unordered_map<int64_t, void*> pack = {
      {kQ, const_cast<bf16*>(q)},    {kK, const_cast<bf16*>(k)},      {kV, const_cast<bf16*>(v)},
      {kO, const_cast<bf16*>(o)},    {kdO, const_cast<bf16*>(dout)},  {kStats, stats},
      {kdQ, dq},                     {kdK, dk},                       {kdV, dv}};
  execute(ctx, p, pack, s);
  return true;
}

}  // namespace

bool attention_cudnn_built() { return true; }

bool attention_forward_cudnn(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                             const bf16* v, bf16* o, float* lse, cudaStream_t s) {
  return forward(ctx, a, nullptr, q, k, v, o, lse, s);
}

bool attention_backward_cudnn(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk,
                              bf16* dv, cudaStream_t s) {
  return backward(ctx, a, nullptr, q, k, v, o, lse, dout, dq, dk, dv, s);
}

bool attention_forward_cudnn_visiting(AttentionContext& ctx, const AttentionArgs& a, const VisitingDocuments& d,
                                      const bf16* q, const bf16* k, const bf16* v, bf16* o, float* lse,
                                      cudaStream_t s) {
  check_visiting(a);
  return forward(ctx, a, &d, q, k, v, o, lse, s);
}

bool attention_backward_cudnn_visiting(AttentionContext& ctx, const AttentionArgs& a, const VisitingDocuments& d,
                                       const bf16* q, const bf16* k, const bf16* v, const bf16* o, const float* lse,
                                       const bf16* dout, bf16* dq, bf16* dk, bf16* dv, cudaStream_t s) {
  check_visiting(a);
  return backward(ctx, a, &d, q, k, v, o, lse, dout, dq, dk, dv, s);
}

bool attention_cudnn_documents() { return cudnnGetVersion() >= 90600; }

int64_t attention_cudnn_workspace(AttentionContext& ctx, const AttentionArgs& a, bool backward) {
  if (!applicable(a, {}) || documents(a)) return -1;  // a documents graph depends on the data
  const Built& built = graph_for(ctx, a, Ragged{}, backward);
  return built.graph ? built.workspace : -1;
}

int64_t cudnn_attention_held_bytes(const CudnnAttention* c) { return c ? c->bytes : 0; }

int64_t release_cudnn_attention(CudnnAttention* c) {
  if (!c) return 0;
  c->graphs.clear();  // plans hold cuDNN descriptors: gone before the handle
  if (c->handle) cudnnDestroy(c->handle);
  for (auto& [key, d] : c->documents) cudaFree(d.starts);
  cudaFree(c->report_dev);
  cudaFreeHost(c->report_host);
  const int64_t bytes = c->bytes;
  delete c;
  return bytes;
}

}  // namespace autosp::kernels::cuda
