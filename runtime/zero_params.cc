// ZeRO stages 1-3 (DESIGN.md section 4.3). Every bucket (ir/buckets.h) is a flat, padded
// buffer; this rank owns elements [rank·S, (rank+1)·S) and keeps AdamW moments only for them.
//   stage 1: parameters whole (the program reads per-parameter views of the bucket); the
//            program all-reduces the packed gradients into a whole bucket; we update our shard
//            and all-gather the bucket. A bf16 bucket (a bf16 program's matrices, read only
//            through casts) is kept whole in bf16 beside a separate f32 master shard, and the
//            gather converts the shard as it sends: 2 bytes per parameter plus 4/W, not 4.
//   stage 2: as 1, but the program reduce-scatters the gradients into our shard.
//   stage 3: parameters exist only as our shard; the program gathers them where used.
//
// On a device backend the live buckets are the device's: the program binds them, the
// backend runs AdamW and the norm on them, and the gather after the update runs over the
// device communicator (the mesh's world: NCCL, or the local communicator moving device
// buffers). The host buckets become a mirror, copied at initialisation, checkpoints, resume
// and full_parameters(), which keep their host collectives over `world`.
#include <cmath>
#include <cstring>

#include "kernels/cpu/adamw.h"
#include "kernels/cpu/cast.h"
#include "kernels/cpu/reduce.h"
#include "runtime/param_state.h"

namespace autosp::runtime {

namespace {

using ir::kGradBucketPrefix;
using ir::kGradShardPrefix;
using ir::kParamShardPrefix;

class ZeroState final : public ParameterState {
 public:
  ZeroState(const ir::BucketPlan& plan, Communicator& world, Communicator& device_world, Backend* device)
      : plan_(plan), world_(world), device_world_(device_world), device_(device) {
    AUTOSP_CHECK(plan.stage >= 1 && plan.stage <= 3 && plan.world == world.size()) << "bucket plan for stage "
                                                                                     << plan.stage;
    // One send buffer for the gathers after the update (stages 1-2), as large as the largest
    // bucket's shard in its gathered type: the gathers run one after another (in stream order
    // on a device), so each conversion writes it only after the previous gather has sent it.
    const size_t send_bytes = size_t(plan_.send_bytes());
    for (const ir::Bucket& b : plan_.buckets) {
      const int64_t S = plan_.shard_numel(b);
      State st;
      if (plan_.stage < 3) st.full = Tensor::zeros(b.gather, {b.padded});
      if (plan_.stage < 3 && !plan_.separate_master(b))
        st.shard = st.full.view(size_t(rank_begin(b)) * sizeof(float), DType::f32, {S});
      else
        st.shard = Tensor::zeros(DType::f32, {S});
      st.grad = Tensor::zeros(DType::f32, {plan_.stage == 1 ? b.padded : S});
      st.exp_avg = Tensor::zeros(DType::f32, {S});
      st.exp_avg_sq = Tensor::zeros(DType::f32, {S});
      buckets_.push_back(std::move(st));
    }
    send_.resize(send_bytes);  // the host buckets' gathers (live ones, or the mirror's at a resume)
    if (!device_) return;
    if (send_bytes > 0) send_dev_ = device_->allocate(send_bytes);
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const ir::Bucket& b = plan_.buckets[k];
      const State& h = buckets_[k];
      auto alloc = [&](DType t, const Shape& shape) {
        return Tensor(device_->allocate(size_t(shape.numel()) * dtype_size(t)), 0, t, shape);
      };
      State d;
      if (plan_.stage < 3) d.full = alloc(b.gather, h.full.shape());
      if (plan_.stage < 3 && !plan_.separate_master(b))
        d.shard = d.full.view(size_t(rank_begin(b)) * sizeof(float), DType::f32, h.shard.shape());
      else
        d.shard = alloc(DType::f32, h.shard.shape());
      d.grad = alloc(DType::f32, h.grad.shape());
      d.exp_avg = alloc(DType::f32, h.exp_avg.shape());
      d.exp_avg_sq = alloc(DType::f32, h.exp_avg_sq.shape());
      dev_.push_back(std::move(d));
    }
    // Gradients start as the host's zeros, as on the CPU (a norm before any step reads them).
    for (size_t k = 0; k < buckets_.size(); ++k)
      device_->upload(dev_[k].grad.raw(), buckets_[k].grad.raw(), buckets_[k].grad.nbytes());
  }

  void initialize(uint64_t seed) override {
    std::vector<float> whole;  // a bf16 bucket's f32 values, before they are split and cast
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const ir::Bucket& b = plan_.buckets[k];
      State& st = buckets_[k];
      // Stages 1-2 hold the whole bucket, stage 3 only this rank's elements.
      const int64_t lo = plan_.stage < 3 ? 0 : rank_begin(b), hi = plan_.stage < 3 ? b.padded : rank_begin(b) + S(b);
      const bool separate = plan_.separate_master(b);
      if (separate) whole.resize(size_t(b.padded));
      float* dst = separate ? whole.data() : (plan_.stage < 3 ? st.full : st.shard).data<float>();
      std::fill(dst, dst + (hi - lo), 0.0f);  // padding stays zero
      for (const ir::BucketEntry& e : b.params) {
        const int64_t a = std::max(lo, e.offset), z = std::min(hi, e.offset + e.shape.numel());
        if (a < z) init_elements(e.name, e.init, seed, a - e.offset, z - e.offset, dst + (a - lo));
      }
      if (separate) {  // every rank computed the same whole bucket: no gather needed
        std::memcpy(st.shard.raw(), dst + rank_begin(b), st.shard.nbytes());
        kernels::cpu::cast_f32_to_bf16(dst, st.full.data<uint16_t>(), b.padded);
      }
      std::fill(buckets_[k].exp_avg.data<float>(), buckets_[k].exp_avg.data<float>() + S(b), 0.0f);
      std::fill(buckets_[k].exp_avg_sq.data<float>(), buckets_[k].exp_avg_sq.data<float>() + S(b), 0.0f);
    }
    push();
  }

  Status bind(Executor& ex) override {
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const ir::Bucket& b = plan_.buckets[k];
      State& st = live(k);
      if (plan_.stage < 3) {
        for (const ir::BucketEntry& e : b.params)
          RETURN_IF_ERROR(ex.bind(e.name, st.full.view(size_t(e.offset) * dtype_size(b.gather), b.gather, e.shape)));
      } else {
        RETURN_IF_ERROR(ex.bind(kParamShardPrefix + b.name, st.shard));
      }
      RETURN_IF_ERROR(bind_gradient(ex, (plan_.stage == 1 ? kGradBucketPrefix : kGradShardPrefix) + b.name, st.grad));
    }
    return Status::Ok();
  }

  void zero_gradients() override {
    for (size_t k = 0; k < buckets_.size(); ++k) {
      Tensor& g = live(k).grad;
      if (device_)
        device_->fill_zero(g.raw(), g.nbytes());
      else
        std::memset(g.raw(), 0, g.nbytes());
    }
  }

  double grad_norm() override {
    double s = 0;
    if (device_) {
      std::vector<Tensor> mine;
      for (size_t k = 0; k < buckets_.size(); ++k) mine.push_back(my_grad_view(dev_[k], k));
      s = device_->sum_squares(mine);
    } else {
      for (size_t k = 0; k < buckets_.size(); ++k) s += kernels::cpu::sum_squares(my_grad(k), S(plan_.buckets[k]));
    }
    float total = float(s);  // partial sums of squares: each rank's shard, then the world
    world_.all_reduce_sum(&total, 1);
    return std::sqrt(double(total));
  }

  void update(const AdamWConfig& cfg, float lr, int64_t step, float grad_scale) override {
    if (device_) return update_device(cfg, lr, step, grad_scale);
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const ir::Bucket& b = plan_.buckets[k];
      State& st = buckets_[k];
      const int64_t lo = rank_begin(b), hi = lo + S(b);
      // Each parameter's slice of this shard, with its own weight decay (matrices only).
      for (const ir::BucketEntry& e : b.params) {
        const int64_t a = std::max(lo, e.offset), z = std::min(hi, e.offset + e.shape.numel());
        if (a >= z) continue;
        const int64_t i = a - lo;
        kernels::cpu::adamw_step(st.shard.data<float>() + i, my_grad(k) + i, st.exp_avg.data<float>() + i,
                                 st.exp_avg_sq.data<float>() + i, z - a, lr, cfg.beta1, cfg.beta2, cfg.eps,
                                 e.shape.rank() >= 2 ? cfg.weight_decay : 0.0f, step, grad_scale);
      }
      if (plan_.stage < 3)  // every rank needs the whole updated bucket for the next step
        gather_shard(host_mem_ops(), world_, b, st.shard, send_.data(), st.full);
    }
  }

  // What the live tensors hold (the device's on a device; the host mirror is not counted).
  PersistentBytes persistent_bytes() const override {
    PersistentBytes p;
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const State& st = device_ ? dev_[k] : buckets_[k];
      if (plan_.stage < 3) p.params += int64_t(st.full.nbytes());
      if (plan_.stage == 3 || plan_.separate_master(plan_.buckets[k])) p.params += int64_t(st.shard.nbytes());
      p.grads += int64_t(st.grad.nbytes());
      p.optimizer += int64_t(st.exp_avg.nbytes() + st.exp_avg_sq.nbytes());
    }
    p.buffers = device_ ? (send_dev_ ? int64_t(send_dev_->bytes()) : 0) : int64_t(send_.size());
    return p;
  }

  int64_t num_elements() const override {
    int64_t n = 0;
    for (const ir::Bucket& b : plan_.buckets) n += b.numel;
    return n;
  }

  NamedTensors full_parameters() override {
    pull(&State::shard);
    if (device_ && plan_.stage < 3) pull(&State::full);
    NamedTensors out;
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const ir::Bucket& b = plan_.buckets[k];
      Tensor full = buckets_[k].full;
      if (plan_.stage == 3 || plan_.separate_master(b)) {  // the f32 values exist only as shards
        full = Tensor::zeros(DType::f32, {b.padded});
        world_.all_gather(buckets_[k].shard.raw(), full.raw(), S(b) * int64_t(sizeof(float)));
      }
      for (const ir::BucketEntry& e : b.params)
        out.push_back({e.name, full.view(size_t(e.offset) * sizeof(float), DType::f32, e.shape)});
    }
    return out;
  }

  NamedTensors full_gradients() override {
    NamedTensors out;
    if (plan_.stage != 1) return out;
    pull(&State::grad);
    for (size_t k = 0; k < buckets_.size(); ++k)
      for (const ir::BucketEntry& e : plan_.buckets[k].params)
        out.push_back({e.name, buckets_[k].grad.view(size_t(e.offset) * sizeof(float), DType::f32, e.shape)});
    return out;
  }

  Status save(Communicator* world, const std::string& dir, int64_t step, const nlohmann::json& state,
              int keep) override {
    AUTOSP_CHECK(world == &world_) << "ZeRO state saves over its own world";
    for (Tensor State::*t : {&State::shard, &State::exp_avg, &State::exp_avg_sq}) pull(t);
    RankShards mine;
    for (State& st : buckets_) {
      mine.param.push_back(st.shard);
      mine.exp_avg.push_back(st.exp_avg);
      mine.exp_avg_sq.push_back(st.exp_avg_sq);
    }
    return save_sharded_checkpoint(world_, dir, step, plan_, mine, state, keep);
  }

  // From whole per-parameter tensors (any stage, any world size): this rank's shards, and at
  // stages 1-2 the whole parameter buckets.
  Status load(const TrainState& s) override {
    ASSIGN_OR_RETURN(RankShards mine, shard_train_state(s, plan_, world_.rank()));
    for (size_t k = 0; k < buckets_.size(); ++k) {
      State& st = buckets_[k];
      const size_t bytes = size_t(S(plan_.buckets[k])) * sizeof(float);
      std::memcpy(st.shard.raw(), mine.param[k].raw(), bytes);  // maybe a view of `full` (stages 1-2)
      std::memcpy(st.exp_avg.raw(), mine.exp_avg[k].raw(), bytes);
      std::memcpy(st.exp_avg_sq.raw(), mine.exp_avg_sq[k].raw(), bytes);
      if (plan_.stage < 3) gather_shard(host_mem_ops(), world_, plan_.buckets[k], st.shard, send_.data(), st.full);
    }
    push();
    return Status::Ok();
  }

 private:
  struct State {
    Tensor full;   // stages 1-2: the whole bucket in Bucket::gather's type (parameters are views of it)
    Tensor shard;  // this rank's f32 parameter elements (a view of an f32 `full` below stage 3)
    Tensor grad;   // stage 1: whole bucket; stages 2-3: this rank's shard
    Tensor exp_avg, exp_avg_sq;
  };

  // Fills `full` (stages 1-2) from every rank's f32 shard: the shard, converted to the
  // bucket's type, goes through `send` (the gather's send buffer; it may not be the shard
  // itself, which can lie inside `full`). A blocking communicator reads `send` from the host
  // thread, so the conversion is complete before it is called.
  void gather_shard(MemOps& mem, Communicator& comm, const ir::Bucket& b, const Tensor& shard, void* send, Tensor& full) {
    if (b.gather == DType::bf16)
      mem.f32_to_bf16(send, shard.raw(), size_t(S(b)));
    else
      mem.copy(send, shard.raw(), shard.nbytes());
    if (!comm.stream_ordered()) mem.synchronize();
    comm.all_gather(send, full.raw(), S(b) * int64_t(dtype_size(b.gather)));
  }

  State& live(size_t k) { return device_ ? dev_[k] : buckets_[k]; }

  // One AdamW step per parameter slice of each device shard, then (stages 1-2) the gather of
  // the updated shards over the device communicator. The optimizer step is not overlapped:
  // the device is synchronised before the gather (a blocking communicator reads the shards
  // from the host thread) and after it (the next step's program reads the buckets).
  void update_device(const AdamWConfig& cfg, float lr, int64_t step, float grad_scale) {
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const ir::Bucket& b = plan_.buckets[k];
      State& st = dev_[k];
      const int64_t lo = rank_begin(b), hi = lo + S(b);
      const Tensor g = my_grad_view(st, k);
      for (const ir::BucketEntry& e : b.params) {
        const int64_t a = std::max(lo, e.offset), z = std::min(hi, e.offset + e.shape.numel());
        if (a >= z) continue;
        const size_t at = size_t(a - lo) * sizeof(float);
        Tensor p = st.shard.view(at, DType::f32, {z - a}), m = st.exp_avg.view(at, DType::f32, {z - a}),
               v = st.exp_avg_sq.view(at, DType::f32, {z - a});
        device_->adamw(p, g.view(at, DType::f32, {z - a}), m, v,
                       {lr, cfg.beta1, cfg.beta2, cfg.eps, e.shape.rank() >= 2 ? cfg.weight_decay : 0.0f, step,
                        grad_scale});
      }
    }
    if (plan_.stage == 3) return;
    device_->synchronize();
    MemOps& mem = device_->mem(ir::Stream::comm);
    for (size_t k = 0; k < buckets_.size(); ++k)
      gather_shard(mem, device_world_, plan_.buckets[k], dev_[k].shard, send_dev_->data(), dev_[k].full);
    mem.synchronize();
    device_->synchronize();
  }

  // Host mirror -> device: parameters (the whole bucket below stage 3, and the master shard
  // when it is apart) and moments.
  void push() {
    if (!device_) return;
    for (size_t k = 0; k < buckets_.size(); ++k) {
      std::vector<Tensor State::*> what = {&State::exp_avg, &State::exp_avg_sq};
      if (plan_.stage < 3) what.push_back(&State::full);
      if (plan_.stage == 3 || plan_.separate_master(plan_.buckets[k])) what.push_back(&State::shard);
      for (Tensor State::*t : what) device_->upload((dev_[k].*t).raw(), (buckets_[k].*t).raw(), (dev_[k].*t).nbytes());
    }
  }
  // Device -> host mirror, for one kind of tensor.
  void pull(Tensor State::*t) {
    if (!device_) return;
    for (size_t k = 0; k < buckets_.size(); ++k)
      device_->download((buckets_[k].*t).raw(), (dev_[k].*t).raw(), (dev_[k].*t).nbytes());
  }
  // This rank's elements of a bucket's gradient (at stage 1 the program leaves the whole sum).
  Tensor my_grad_view(const State& st, size_t k) const {
    const ir::Bucket& b = plan_.buckets[k];
    return st.grad.view(plan_.stage == 1 ? size_t(rank_begin(b)) * sizeof(float) : 0, DType::f32, {S(b)});
  }

  int64_t S(const ir::Bucket& b) const { return plan_.shard_numel(b); }
  int64_t rank_begin(const ir::Bucket& b) const { return int64_t(world_.rank()) * S(b); }
  const float* my_grad(size_t k) const {
    const Tensor& g = buckets_[k].grad;
    return g.data<float>() + (plan_.stage == 1 ? rank_begin(plan_.buckets[k]) : 0);
  }

  ir::BucketPlan plan_;
  Communicator& world_;         // host buffers: norms of partial sums, checkpoints, resume
  Communicator& device_world_;  // the live buckets' gather (world_ itself without a device)
  Backend* device_;             // null: the host buckets are the live ones
  std::vector<State> buckets_;  // live on the host, else the device's mirror
  std::vector<State> dev_;
  std::vector<std::byte> send_;        // stages 1-2, host: the gathers' send buffer
  std::shared_ptr<Storage> send_dev_;  // stages 1-2, device: the same on the device
};

}  // namespace

std::unique_ptr<ParameterState> make_zero_state(const ir::BucketPlan& plan, Communicator& world,
                                                Communicator* device_world, Backend* backend) {
  const bool device = backend && backend->device() != Device::host;
  return std::make_unique<ZeroState>(plan, world, device && device_world ? *device_world : world,
                                     device ? backend : nullptr);
}

}  // namespace autosp::runtime
