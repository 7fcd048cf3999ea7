#include "sp_compiler/zero_shard.h"

#include <map>
#include <numeric>
#include <regex>

#include "core/log.h"
#include "ir/builder.h"
#include "sp_compiler/autodiff.h"

namespace autosp::sp {

namespace {

using ir::Op;
using ir::ValueId;

// "model.layers.3.mlp.up_proj.weight" -> "model.layers.3."; non-layer parameters -> "".
std::string layer_key(const std::string& name) {
  static const std::regex re(R"(^(.*?\.(layers|h)\.\d+\.))");
  std::smatch m;
  return std::regex_search(name, m, re) ? m[1].str() : "";
}

// The type each parameter is read in: bf16 when every node reading it is a cast to bf16, else
// f32 (a norm weight or embedding table read directly, or a parameter nothing reads).
std::map<ValueId, DType> read_dtypes(const ir::Graph& g) {
  std::map<ValueId, DType> read;
  for (const ir::Arg& a : g.args)
    if (a.role == ir::ArgRole::param) read[a.value] = DType::f32;
  std::map<ValueId, bool> only_casts;
  for (const ir::Node& n : g.nodes)
    for (ValueId v : n.inputs) {
      if (!read.count(v)) continue;
      const bool to_bf16 = n.op == Op::cast && std::get<ir::CastAttrs>(n.attrs).dtype == DType::bf16;
      auto [it, first] = only_casts.emplace(v, to_bf16);
      if (!first) it->second = it->second && to_bf16;
    }
  for (const auto& [v, casts] : only_casts)
    if (casts) read[v] = DType::bf16;
  return read;
}

}  // namespace

ir::BucketPlan plan_buckets(const ir::Graph& g, const ZeroOptions& opt) {
  ir::BucketPlan plan;
  plan.world = opt.world;
  plan.stage = opt.stage;
  // With ZeRO a layer's parameters read in bf16 and those read in f32 go to separate
  // buckets, so the bf16 ones can be gathered in bf16 (ir/buckets.h); stage 0 gathers nothing.
  const std::map<ValueId, DType> read = opt.stage >= 1 ? read_dtypes(g) : std::map<ValueId, DType>{};
  auto gather_dtype = [&](ValueId v) { return read.count(v) ? read.at(v) : DType::f32; };
  std::vector<const ir::Arg*> params;
  std::vector<std::string> keys;  // by position; the reordering below stays within one key
  for (const ir::Arg& a : g.args)
    if (a.role == ir::ArgRole::param) {
      params.push_back(&a);
      keys.push_back(layer_key(g.values[a.value].name));
    }
  for (size_t lo = 0; lo < params.size();) {
    // One run of consecutive parameters of one layer; within it, bf16-read ones first.
    size_t hi = lo;
    while (hi < params.size() && keys[hi] == keys[lo]) ++hi;
    std::stable_partition(params.begin() + int64_t(lo), params.begin() + int64_t(hi),
                          [&](const ir::Arg* a) { return gather_dtype(a->value) == DType::bf16; });
    for (size_t i = lo; i < hi; ++i) {
      const ir::Value& v = g.values[params[i]->value];
      const int64_t n = v.type.shape.numel();
      const DType dt = gather_dtype(params[i]->value);
      const bool start = i == lo || plan.buckets.back().gather != dt ||
                         (plan.buckets.back().numel + n) * 4 > opt.bucket_bytes;
      if (start) plan.buckets.push_back({"bucket." + std::to_string(plan.buckets.size()), {}, 0, 0, dt});
      ir::Bucket& b = plan.buckets.back();
      b.params.push_back({v.name, v.type.shape, params[i]->init, b.numel});
      b.numel += n;
    }
    lo = hi;
  }
  for (ir::Bucket& b : plan.buckets) b.padded = (b.numel + opt.world - 1) / opt.world * opt.world;
  return plan;
}

namespace {

class ZeroShard final : public Pass {
 public:
  explicit ZeroShard(ZeroOptions opt) : opt_(opt) {}
  std::string_view name() const override { return "zero_shard"; }

  Status run(ir::Graph& g, const PassContext&) override {
    if (opt_.stage < 0 || opt_.stage > 3) return InvalidArgument("parallel.zero_stage must be 0-3");
    // A forward-only graph (eval) has no gradients; at stage 3 it still gathers parameters.
    const ValueId seed = g.find_arg(kLossSeedInput);
    if (opt_.stage == 0) return opt_.world > 1 && seed != ir::kNoValue ? bucket_all_reduces(g) : Status::Ok();
    const ir::BucketPlan plan = plan_buckets(g, opt_);
    if (seed == ir::kNoValue) return opt_.stage == 3 ? shard_parameters(g, plan, seed) : read_whole_in_bf16(g, plan);
    ir::Builder b(g);

    // Gradients: pack each bucket's partial gradients (before autodiff's all_reduce) and
    // reduce them as one buffer.
    std::map<std::string, ValueId> grad_of;
    for (const ir::Output& o : g.outputs)
      if (o.name.rfind(kGradPrefix, 0) == 0) grad_of[o.name.substr(std::string(kGradPrefix).size())] = o.value;
    std::vector<ir::Output> outputs;
    for (const ir::Output& o : g.outputs)
      if (o.name.rfind(kGradPrefix, 0) != 0) outputs.push_back(o);
    const std::vector<ValueId> partial = partials(g);
    for (const ir::Bucket& bk : plan.buckets) {
      std::vector<ValueId> parts;
      for (const ir::BucketEntry& e : bk.params) parts.push_back(partial[grad_of.at(e.name)]);
      ValueId flat = b.op1(Op::pack, parts, ir::PackAttrs{bk.padded});
      if (opt_.stage == 1)
        outputs.push_back({kGradBucketPrefix + bk.name,
                           b.op1(Op::all_reduce, {flat}, ir::GroupAttrs{ir::MeshGroup::world, opt_.world})});
      else
        outputs.push_back({kGradShardPrefix + bk.name, b.op1(Op::reduce_scatter, {flat},
                                                             ir::AxisCollectiveAttrs{ir::MeshGroup::world,
                                                                                     opt_.world, 0})});
    }
    g.outputs = std::move(outputs);
    remove_dead_all_reduces(g);
    RETURN_IF_ERROR(opt_.stage == 3 ? shard_parameters(g, plan, seed) : read_whole_in_bf16(g, plan));
    AUTOSP_LOG(1) << "zero_shard: stage " << opt_.stage << ", " << plan.buckets.size() << " buckets over "
                  << opt_.world << " ranks";
    return Status::Ok();
  }

 private:
  // Stage 0: each bucket's partial gradients packed, all-reduced once, and unpacked into the
  // "grad.<p>" outputs. A gradient autodiff did not all-reduce (none over several ranks
  // today) would be summed twice here, so that is an error rather than a silent wrong answer.
  Status bucket_all_reduces(ir::Graph& g) {
    const ir::BucketPlan plan = plan_buckets(g, opt_);
    ir::Builder b(g);
    std::map<std::string, ValueId> grad_of;
    for (const ir::Output& o : g.outputs)
      if (o.name.rfind(kGradPrefix, 0) == 0) grad_of[o.name.substr(std::string(kGradPrefix).size())] = o.value;
    const std::vector<ValueId> partial = partials(g);
    for (const ir::Bucket& bk : plan.buckets)
      for (const ir::BucketEntry& e : bk.params) {
        auto it = grad_of.find(e.name);
        if (it == grad_of.end()) return Status::Ok();  // a parameter without a gradient: leave the graph as is
        if (partial[it->second] == it->second)
          return InvalidArgument("zero_shard: grad." + e.name + " is not all-reduced over the world");
      }
    std::map<std::string, ValueId> reduced;
    for (const ir::Bucket& bk : plan.buckets) {
      std::vector<ValueId> parts;
      std::vector<Shape> shapes;
      for (const ir::BucketEntry& e : bk.params) {
        parts.push_back(partial[grad_of.at(e.name)]);
        shapes.push_back(e.shape);
      }
      ValueId flat = b.op1(Op::pack, parts, ir::PackAttrs{bk.padded});
      ValueId sum = b.op1(Op::all_reduce, {flat}, ir::GroupAttrs{ir::MeshGroup::world, opt_.world});
      const std::vector<ValueId> out = b.op(Op::unpack, {sum}, ir::UnpackAttrs{ir::encode_shapes(shapes)});
      for (size_t j = 0; j < bk.params.size(); ++j) reduced[bk.params[j].name] = out[j];
    }
    for (ir::Output& o : g.outputs)
      if (o.name.rfind(kGradPrefix, 0) == 0) o.value = reduced.at(o.name.substr(std::string(kGradPrefix).size()));
    remove_dead_all_reduces(g);
    AUTOSP_LOG(1) << "zero_shard: stage 0, gradients all-reduced in " << plan.buckets.size() << " buckets";
    return Status::Ok();
  }

  // Per value: the value before the all_reduce that produced it (autodiff's implicit-broadcast
  // reduction of a gradient), or the value itself.
  static std::vector<ValueId> partials(const ir::Graph& g) {
    std::vector<ValueId> r(g.values.size());
    std::iota(r.begin(), r.end(), ValueId(0));
    for (const ir::Node& n : g.nodes)
      if (n.op == Op::all_reduce) r[n.outputs[0]] = n.inputs[0];
    return r;
  }

  // Drop all_reduce nodes whose result nothing reads any more.
  static void remove_dead_all_reduces(ir::Graph& g) {
    std::vector<int> uses(g.values.size(), 0);
    for (const ir::Node& n : g.nodes)
      for (ValueId v : n.inputs) uses[v]++;
    for (const ir::Output& o : g.outputs) uses[o.value]++;
    std::erase_if(g.nodes, [&](const ir::Node& n) { return n.op == Op::all_reduce && uses[n.outputs[0]] == 0; });
  }

  // Stages 1-2: a bf16 bucket's parameter arguments become bf16 (the runtime keeps the whole
  // bucket in bf16) and the casts that read them are dropped, their readers reading the
  // argument. The gradients are unchanged: autodiff's cast VJP already made them f32.
  Status read_whole_in_bf16(ir::Graph& g, const ir::BucketPlan& plan) {
    std::map<ValueId, std::string> bf16_param;
    for (const ir::Bucket& bk : plan.buckets)
      if (bk.gather == DType::bf16)
        for (const ir::BucketEntry& e : bk.params) bf16_param[g.find_arg(e.name)] = e.name;
    if (bf16_param.empty()) return Status::Ok();
    std::map<ValueId, ValueId> replaced;  // a dropped cast's result -> the argument
    std::vector<ir::Node> kept;
    for (ir::Node& n : g.nodes) {
      bool dropped = false;
      for (ValueId& v : n.inputs) {
        if (auto r = replaced.find(v); r != replaced.end()) {
          v = r->second;
          continue;
        }
        if (!bf16_param.count(v)) continue;
        // plan_buckets put the parameter here because every reader is such a cast.
        if (n.op != Op::cast || std::get<ir::CastAttrs>(n.attrs).dtype != DType::bf16)
          return Internal("zero_shard: " + bf16_param.at(v) + " is kept in bf16 but read by " +
                          std::string(ir::op_name(n.op)));
        replaced[n.outputs[0]] = v;
        dropped = true;
      }
      if (!dropped) kept.push_back(std::move(n));
    }
    g.nodes = std::move(kept);
    for (ir::Output& o : g.outputs)
      if (auto r = replaced.find(o.value); r != replaced.end()) o.value = r->second;
    for (const auto& [v, name] : bf16_param) g.values[v].type.dtype = DType::bf16;
    return Status::Ok();
  }

  // Stage 3: each bucket's parameters come from all_gather(param_shard) + unpack, emitted
  // right before the bucket's first use in forward and again before its first use in
  // backward (from the first node that depends on the loss seed; none in a forward-only graph).
  Status shard_parameters(ir::Graph& g, const ir::BucketPlan& plan, ValueId seed) {
    // The backward phase starts at the first node that depends on the loss seed; everything
    // after it (recomputed forward nodes included) reads the backward's gather.
    const std::vector<bool> is_backward = backward_phase(g, seed);
    std::map<ValueId, std::pair<size_t, size_t>> where;  // param -> (bucket, index in bucket)
    std::vector<ValueId> shard_args;
    for (size_t k = 0; k < plan.buckets.size(); ++k) {
      const ir::Bucket& bk = plan.buckets[k];
      for (size_t j = 0; j < bk.params.size(); ++j) where[g.find_arg(bk.params[j].name)] = {k, j};
    }
    // New shard arguments replace the parameter arguments.
    std::vector<ir::Arg> args;
    for (const ir::Arg& a : g.args)
      if (a.role != ir::ArgRole::param) args.push_back(a);
    g.args = std::move(args);
    for (const ir::Bucket& bk : plan.buckets)
      shard_args.push_back(g.add_arg(kParamShardPrefix + bk.name, {DType::f32, Shape{plan.shard_numel(bk)}},
                                     ir::ArgRole::param));

    // Rebuild the node list, materialising each bucket once per phase before its first use.
    // A bf16 bucket's parameters arrive already cast: the casts that read them are dropped, and
    // whatever read a cast's result reads the gathered value of its own phase instead (so the
    // backward does not keep the forward's bf16 copy alive, it gathers again).
    std::vector<ir::Node> nodes = std::move(g.nodes);
    g.nodes.clear();
    std::vector<ir::Node> out;
    std::map<std::pair<size_t, bool>, std::vector<ValueId>> gathered;  // (bucket, backward) -> params
    std::map<ValueId, std::pair<size_t, size_t>> cast_of;              // dropped cast's result -> its parameter
    auto param = [&](size_t k, size_t j, bool backward) {
      auto key = std::make_pair(k, backward);
      if (!gathered.count(key)) gathered[key] = gather(g, plan, k, shard_args[k], out);
      return gathered[key][j];
    };
    for (size_t i = 0; i < nodes.size(); ++i) {
      ir::Node n = nodes[i];
      bool dropped = false;
      for (ValueId& v : n.inputs) {
        if (auto c = cast_of.find(v); c != cast_of.end()) {
          v = param(c->second.first, c->second.second, is_backward[i]);
          continue;
        }
        auto it = where.find(v);
        if (it == where.end()) continue;
        const auto [k, j] = it->second;
        if (plan.buckets[k].gather == DType::bf16) {
          // plan_buckets put the parameter here because every reader is such a cast.
          if (n.op != Op::cast || std::get<ir::CastAttrs>(n.attrs).dtype != DType::bf16)
            return Internal("zero_shard: " + plan.buckets[k].params[j].name + " is gathered in bf16 but read by " +
                            std::string(ir::op_name(n.op)));
          cast_of[n.outputs[0]] = it->second;
          dropped = true;
        } else {
          v = param(k, j, is_backward[i]);
        }
      }
      if (!dropped) out.push_back(std::move(n));
    }
    g.nodes = std::move(out);
    for (const ir::Output& o : g.outputs)
      if (cast_of.count(o.value))
        return Internal("zero_shard: output " + o.name + " is a parameter's bf16 cast, which stage 3 never keeps");
    return Status::Ok();
  }

  // Emits [cast to bf16 +] all_gather + unpack of bucket k into `out`; returns the parameter
  // values. (Lowering folds the cast into the gather, so no bf16 copy of the shard lives on.)
  std::vector<ValueId> gather(ir::Graph& g, const ir::BucketPlan& plan, size_t k, ValueId shard,
                              std::vector<ir::Node>& out) {
    const ir::Bucket& bk = plan.buckets[k];
    auto emit = [&](Op op, ValueId in, ir::Attrs attrs) {
      auto r = g.add_node(op, {in}, std::move(attrs));
      AUTOSP_CHECK(r.ok()) << r.status().message();
      out.push_back(std::move(g.nodes.back()));
      g.nodes.pop_back();
      return r.value();
    };
    if (bk.gather == DType::bf16) shard = emit(Op::cast, shard, ir::CastAttrs{DType::bf16})[0];
    const ValueId full = emit(Op::all_gather, shard, ir::AxisCollectiveAttrs{ir::MeshGroup::world, opt_.world, 0})[0];
    std::vector<Shape> shapes;
    for (const ir::BucketEntry& e : bk.params) shapes.push_back(e.shape);
    return emit(Op::unpack, full, ir::UnpackAttrs{ir::encode_shapes(shapes)});
  }

  ZeroOptions opt_;
};

}  // namespace

std::unique_ptr<Pass> make_zero_shard_pass(const ZeroOptions& opt) { return std::make_unique<ZeroShard>(opt); }

}  // namespace autosp::sp
