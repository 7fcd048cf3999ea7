// A compiler pass: a name and one entry point. The pipeline (pipeline.h) verifies the graph
// before and after every pass and can dump it as text after each one.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "ir/graph.h"

namespace autosp::sp {

struct PassContext {
  std::string dump_dir;  // when set, the graph is written here after every pass
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string_view name() const = 0;
  virtual Status run(ir::Graph& g, const PassContext& ctx) = 0;
};

// Who makes and who reads each value of a graph, as passes that rewrite around matmuls need:
// producer[v] is the node writing v (-1 for arguments); uses[v] counts the nodes reading v,
// and graph outputs as one reader each (an output keeps its own buffer).
struct ValueIndex {
  std::vector<int> producer, uses;
  explicit ValueIndex(const ir::Graph& g) : producer(g.values.size(), -1), uses(g.values.size(), 0) {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      for (ir::ValueId v : g.nodes[i].outputs) producer[v] = int(i);
      for (ir::ValueId v : g.nodes[i].inputs) uses[v]++;
    }
    for (const ir::Output& o : g.outputs) uses[o.value]++;
  }
};

class Pipeline {
 public:
  Pipeline& add(std::unique_ptr<Pass> p) {
    passes_.push_back(std::move(p));
    return *this;
  }
  // Verifies the input, then runs each pass, verifying after it. With ctx.dump_dir the graph
  // is written as 00-input.ir, 01-<pass>.ir, ...
  Status run(ir::Graph& g, const PassContext& ctx) const;
  size_t size() const { return passes_.size(); }

 private:
  std::vector<std::unique_ptr<Pass>> passes_;
};

}  // namespace autosp::sp
