#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/log.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "sp_compiler/pass.h"

namespace autosp::sp {

namespace {
Status dump(const ir::Graph& g, const PassContext& ctx, int index, std::string_view name) {
  if (ctx.dump_dir.empty()) return Status::Ok();
  std::error_code ec;
  std::filesystem::create_directories(ctx.dump_dir, ec);
  if (ec) return IoError("--dump-ir: cannot create directory " + ctx.dump_dir + ": " + ec.message());
  char file[256];
  std::snprintf(file, sizeof file, "%02d-%.*s.ir", index, int(name.size()), name.data());
  std::string path = (std::filesystem::path(ctx.dump_dir) / file).string();
  std::ofstream f(path);
  f << ir::print(g);
  if (!f) return IoError("--dump-ir: cannot write " + path);
  return Status::Ok();
}
}  // namespace

Status Pipeline::run(ir::Graph& g, const PassContext& ctx) const {
  RETURN_IF_ERROR(ir::verify(g).with_context("input graph @" + g.name));
  RETURN_IF_ERROR(dump(g, ctx, 0, "input"));
  int i = 1;
  for (const auto& p : passes_) {
    AUTOSP_LOG(1) << "pass " << p->name() << ": " << g.nodes.size() << " nodes in";
    RETURN_IF_ERROR(p->run(g, ctx).with_context("pass " + std::string(p->name())));
    RETURN_IF_ERROR(ir::verify(g).with_context("after pass " + std::string(p->name())));
    AUTOSP_LOG(1) << "pass " << p->name() << ": " << g.nodes.size() << " nodes out";
    RETURN_IF_ERROR(dump(g, ctx, i++, p->name()));
  }
  return Status::Ok();
}

}  // namespace autosp::sp
