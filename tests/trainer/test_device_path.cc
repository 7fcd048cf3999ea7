// The runtime's device path, exercised on the CPU: a backend that runs the CPU kernels but
// says its memory is a device's. The trainer then keeps the live parameters, gradients and
// moments "on the device" (the host ParamStore becomes a mirror, copied at initialisation,
// checkpoints and resume), runs the optimizer through the backend, feeds inputs and reads
// losses through upload/download, and the executor calls the stream-ordering hooks around
// every collective. With the same kernels underneath, every loss must be bit-identical to
// the plain CPU run, and the hooks must come in the order a GPU needs:
// enqueued -> begin -> end -> compute waits, per collective, on every step. ZeRO buckets take
// the same path (device buckets, a host mirror, the gather over the mesh's world).
#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <mutex>

#include "sp_equivalence.h"
#include "tests/test_util.h"

using namespace autosp;
using namespace autosp::testing;
using autosp::trainer::Options;
using autosp::trainer::Trainer;

namespace {

class PretendDevice final : public runtime::Backend {
 public:
  PretendDevice() : cpu_(runtime::make_cpu_backend()) {}
  ~PretendDevice() override { CHECK(errors_.empty()); }

  const char* name() const override { return "pretend-device"; }
  Device device() const override { return Device::cuda; }
  std::shared_ptr<Storage> allocate(size_t bytes) override { return cpu_->allocate(bytes); }
  void launch(const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out) override {
    cpu_->launch(ins, in, out);
  }
  double sum_squares(std::span<const Tensor> xs) override { return cpu_->sum_squares(xs); }
  void adamw(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const runtime::AdamWStep& a) override {
    cpu_->adamw(p, g, m, v, a);
  }
  void upload(void* dst, const void* host, size_t bytes) override {
    ++uploads;
    cpu_->upload(dst, host, bytes);
  }
  void download(void* host, const void* src, size_t bytes) override {
    ++downloads;
    cpu_->download(host, src, bytes);
  }

  // Each collective's hooks in order; a step re-runs them, so the state cycles.
  enum State { idle, enqueued, begun, ended };
  void comm_enqueued(int i) override { step(i, {idle, ended}, enqueued, "enqueued"); }
  void comm_begin(int i, bool host_reads) override {
    if (!host_reads) note("a blocking communicator was called stream-ordered");
    step(i, {enqueued}, begun, "begin");
  }
  void comm_end(int i) override { step(i, {begun}, ended, "end"); }
  void compute_waits(int i) override {
    std::lock_guard<std::mutex> l(mu_);
    if (state_[i] != ended) errors_ += "compute waits for collective " + std::to_string(i) + " before its end; ";
    ++waits;
  }

  int uploads = 0, downloads = 0, waits = 0;
  std::string errors() {
    std::lock_guard<std::mutex> l(mu_);
    return errors_;
  }
  int collectives() {
    std::lock_guard<std::mutex> l(mu_);
    return int(state_.size());
  }

 private:
  void step(int i, std::initializer_list<State> from, State to, const char* what) {
    std::lock_guard<std::mutex> l(mu_);
    State& s = state_[i];  // idle when new
    bool ok = false;
    for (State f : from) ok = ok || s == f;
    if (!ok) errors_ += std::string(what) + " of collective " + std::to_string(i) + " out of order; ";
    s = to;
  }
  void note(const std::string& e) {
    std::lock_guard<std::mutex> l(mu_);
    errors_ += e + "; ";
  }

  std::unique_ptr<runtime::Backend> cpu_;
  std::mutex mu_;
  std::map<int, State> state_;
  std::string errors_;
};

std::vector<double> losses(Trainer& t, int steps) {
  std::vector<double> out;
  for (int i = 0; i < steps; ++i) {
    auto r = t.train_step();
    REQUIRE(r.ok());
    out.push_back(r->loss);
  }
  return out;
}

}  // namespace

TEST_CASE("the device path (mirrored parameters, backend optimizer) trains bit-identically to the CPU path",
          "[device]") {
  const Options o = sp_test_options({});
  auto cpu = Trainer::create(o);
  REQUIRE(cpu.ok());
  auto dev_backend = std::make_unique<PretendDevice>();
  PretendDevice* dev = dev_backend.get();
  auto device = Trainer::create(o, "", nullptr, std::move(dev_backend));
  REQUIRE(device.ok());
  CHECK(losses(*device.value(), 5) == losses(*cpu.value(), 5));
  CHECK(dev->uploads > 0);
  CHECK(dev->downloads > 0);
  // full_gradients() and full_parameters() come back from the device mirror.
  const auto g_cpu = cpu.value()->params().full_gradients();
  const auto g_dev = device.value()->params().full_gradients();
  REQUIRE(g_cpu.size() == g_dev.size());
  for (size_t k = 0; k < g_cpu.size(); ++k)
    CHECK(std::memcmp(g_cpu[k].second.raw(), g_dev[k].second.raw(), g_cpu[k].second.nbytes()) == 0);
}

TEST_CASE("a checkpoint written from the device path resumes the same run", "[device][resume]") {
  const std::string dir = fresh_dir("device_path_ckpt").string();
  Options o = sp_test_options({"checkpoint.dir=" + dir});
  auto whole = Trainer::create(o, "", nullptr, std::make_unique<PretendDevice>());
  REQUIRE(whole.ok());
  const std::vector<double> want = losses(*whole.value(), 6);

  auto first = Trainer::create(o, "", nullptr, std::make_unique<PretendDevice>());
  REQUIRE(first.ok());
  losses(*first.value(), 3);
  REQUIRE(first.value()->save_checkpoint().ok());
  auto second = Trainer::create(o, "", nullptr, std::make_unique<PretendDevice>());
  REQUIRE(second.ok());
  REQUIRE(second.value()->resume(dir).ok());
  const std::vector<double> rest = losses(*second.value(), 3);
  CHECK(rest == std::vector<double>(want.begin() + 3, want.end()));
}

TEST_CASE("under SP and ZeRO the device path equals the CPU path, and every collective is ordered for a device",
          "[device][sp][zero]") {
  const std::vector<std::vector<std::string>> cases = {
      {"parallel.sp=2", "parallel.overlap=true"},
      {"parallel.sp=2", "parallel.overlap=false"},
      {"parallel.sp=2", "parallel.zero_stage=1"},
      {"parallel.sp=1", "parallel.zero_stage=2"},
      {"parallel.sp=2", "parallel.zero_stage=3"},
      // bf16 buckets: the gather converts its f32 shard as it sends (at stages 1-2 into the
      // whole bf16 bucket the program reads, after the update).
      {"parallel.sp=2", "parallel.zero_stage=3", "train.dtype=bf16"},
      {"parallel.sp=2", "parallel.zero_stage=1", "train.dtype=bf16"},
      {"parallel.sp=1", "parallel.zero_stage=2", "train.dtype=bf16"},
      // Micro-batches: gradients zeroed through the backend, then accumulated in place.
      {"parallel.sp=2", "parallel.zero_stage=2", "train.grad_accum_steps=2"},
      // Offloaded activations (1 MiB per rank each): copies through the backend's MemOps on
      // the communication stream, ordered by the same hooks.
      {"parallel.sp=2", "train.offload=on", "train.recompute=full", "model.d_model=64", "model.ffn_hidden=96",
       "train.seq_len=512", "model.max_seq_len=512", "train.batch_size=16"},
      // PretendDevice does not run ring attention itself: the executor's host ring does.
      {"parallel.sp=2", "parallel.sp_strategy=ring"},
  };
  for (const auto& sets : cases) {
    std::string name;  // every setting: Catch runs a section once per distinct name
    for (const std::string& s : sets) name += s + " ";
    DYNAMIC_SECTION(name) {
      std::vector<std::string> all = sets;
      if (sets[1].find("sp_strategy") == std::string::npos) all.push_back("parallel.sp_strategy=ulysses");
      const Options o = sp_test_options(all);
      const std::vector<StepRecord> want = record_local(o, 2, 2);
      std::vector<std::string> errors(2);
      std::vector<int> counts(2), waits(2);
      std::vector<std::vector<double>> got(2);
      runtime::run_local(2, [&](runtime::Communicator& c) {
        auto b = std::make_unique<PretendDevice>();
        PretendDevice* dev = b.get();
        auto t = Trainer::create(o, "", &c, std::move(b));
        if (!t.ok()) throw std::runtime_error(t.status().message());
        for (int i = 0; i < 2; ++i) {
          auto r = t.value()->train_step();
          if (!r.ok()) throw std::runtime_error(r.status().message());
          got[size_t(c.rank())].push_back(r->loss);
        }
        errors[size_t(c.rank())] = dev->errors();
        counts[size_t(c.rank())] = dev->collectives();
        waits[size_t(c.rank())] = dev->waits;
      });
      for (int r = 0; r < 2; ++r) {
        CHECK(errors[size_t(r)] == "");
        CHECK(counts[size_t(r)] > 0);
        CHECK(waits[size_t(r)] > 0);
        CHECK(got[size_t(r)] == want[size_t(r)].losses);
      }
    }
  }
}

// ZeRO-3 shards, and ZeRO-1's bf16 buckets whose f32 master shards live apart on the device.
TEST_CASE("a ZeRO checkpoint written from device buckets resumes the same run", "[device][zero][resume]") {
  for (const char* setting : {"train.dtype=f32", "train.dtype=bf16"}) {
    DYNAMIC_SECTION(setting) {
      const std::string dir = fresh_dir("device_path_zero_ckpt").string();
      const bool bf16 = std::string(setting) == "train.dtype=bf16";
      const Options o = sp_test_options(
          {"parallel.sp=2", bf16 ? "parallel.zero_stage=1" : "parallel.zero_stage=3", setting, "checkpoint.dir=" + dir});
      const std::vector<StepRecord> want = record_local(o, 2, 4);
      std::vector<std::vector<double>> got(2);
      runtime::run_local(2, [&](runtime::Communicator& c) {
        auto first = Trainer::create(o, "", &c, std::make_unique<PretendDevice>());
        if (!first.ok()) throw std::runtime_error(first.status().message());
        for (int i = 0; i < 2; ++i)
          if (!first.value()->train_step().ok()) throw std::runtime_error("step");
        if (!first.value()->save_checkpoint().ok()) throw std::runtime_error("save");
        auto second = Trainer::create(o, "", &c, std::make_unique<PretendDevice>());
        if (!second.ok() || !second.value()->resume(dir).ok()) throw std::runtime_error("resume");
        for (int i = 0; i < 2; ++i) {
          auto r = second.value()->train_step();
          if (!r.ok()) throw std::runtime_error(r.status().message());
          got[size_t(c.rank())].push_back(r->loss);
        }
      });
      for (int r = 0; r < 2; ++r)
        CHECK(got[size_t(r)] == std::vector<double>(want[size_t(r)].losses.begin() + 2, want[size_t(r)].losses.end()));
    }
  }
}
