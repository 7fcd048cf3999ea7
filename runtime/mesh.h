// The process mesh: world = dp × sp ranks. SP groups are consecutive ranks (so they stay
// inside a node); in a hybrid layout each SP group is sp_outer rings of sp_inner consecutive
// ranks. All communicators are created once at start.
#pragma once
#include <memory>

#include "ir/attrs.h"
#include "runtime/comm.h"

namespace autosp::runtime {

struct MeshShape {
  int dp = 1, sp = 1;
  int sp_inner = 1;  // Ulysses degree inside a hybrid SP group (1 unless hybrid)
};

class Mesh {
 public:
  // Collective over `world`, whose size must be shape.dp * shape.sp.
  static std::unique_ptr<Mesh> create(Communicator& world, const MeshShape& shape);

  Communicator& group(ir::MeshGroup g) const;
  const MeshShape& shape() const { return shape_; }
  int rank() const { return world_->rank(); }
  int sp_rank() const { return sp_->rank(); }
  int dp_rank() const { return dp_->rank(); }
  // The communicators enqueue on a device stream (NCCL) rather than complete on return.
  bool stream_ordered() const { return world_->stream_ordered(); }

 private:
  Mesh() = default;
  MeshShape shape_;
  Communicator* world_ = nullptr;
  std::unique_ptr<Communicator> sp_, sp_inner_, sp_outer_, dp_;
};

}  // namespace autosp::runtime
