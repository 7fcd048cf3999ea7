#include "runtime/mesh.h"

#include "core/check.h"

namespace autosp::runtime {

std::unique_ptr<Mesh> Mesh::create(Communicator& world, const MeshShape& s) {
  AUTOSP_CHECK(world.size() == s.dp * s.sp) << "world " << world.size() << " != dp " << s.dp << " x sp " << s.sp;
  AUTOSP_CHECK(s.sp_inner >= 1 && s.sp % s.sp_inner == 0) << "sp_inner " << s.sp_inner << " must divide sp " << s.sp;
  std::unique_ptr<Mesh> m(new Mesh());
  m->shape_ = s;
  m->world_ = &world;
  const int r = world.rank();
  const int sp_group = r / s.sp, sp_rank = r % s.sp;
  m->sp_ = world.split(sp_group, sp_rank);
  m->dp_ = world.split(sp_rank, sp_group);
  // Inside an SP group: inner groups are consecutive ranks, outer groups link equal offsets.
  m->sp_inner_ = world.split(sp_group * s.sp + sp_rank / s.sp_inner, sp_rank);
  m->sp_outer_ = world.split(sp_group * s.sp + sp_rank % s.sp_inner, sp_rank);
  return m;
}

Communicator& Mesh::group(ir::MeshGroup g) const {
  switch (g) {
    case ir::MeshGroup::world: return *world_;
    case ir::MeshGroup::sp: return *sp_;
    case ir::MeshGroup::sp_inner: return *sp_inner_;
    case ir::MeshGroup::sp_outer: return *sp_outer_;
    case ir::MeshGroup::dp: return *dp_;
  }
  AUTOSP_CHECK(false) << "unknown mesh group";
  return *world_;
}

}  // namespace autosp::runtime
