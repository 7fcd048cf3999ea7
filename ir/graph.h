// The IR: a Graph is an SSA list of Nodes in topological order over Values. Arguments
// (model inputs and parameters) are Values with a name and a role; every other Value is
// produced by exactly one Node output. Outputs are named references to Values.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "core/status.h"
#include "ir/attrs.h"
#include "ir/op.h"

namespace autosp::ir {

using ValueId = int32_t;
inline constexpr ValueId kNoValue = -1;

struct TensorType {
  DType dtype = DType::f32;
  Shape shape;
  bool operator==(const TensorType& o) const { return dtype == o.dtype && shape == o.shape; }
  bool operator!=(const TensorType& o) const { return !(*this == o); }
  std::string str() const { return std::string(dtype_name(dtype)) + shape.str(); }
};

// Placement over the sequence-parallel mesh axis; `none` until shard_sequence runs.
enum class ShardKind : uint8_t { none, replicate, shard, partial };
struct Sharding {
  ShardKind kind = ShardKind::none;
  int dim = -1;  // for shard
  bool operator==(const Sharding&) const = default;
};

enum class ArgRole : uint8_t { input, param };

// How the runtime initialises a parameter (the graph never holds data).
struct Init {
  enum class Kind : uint8_t { zeros, ones, normal } kind = Kind::zeros;
  float std = 0.0f;  // for normal
  bool operator==(const Init&) const = default;
};

struct Value {
  TensorType type;
  Sharding sharding;
  std::string name;  // arguments only
};

struct Node {
  Op op;
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
  Attrs attrs;
};

struct Arg {
  ValueId value;
  ArgRole role;
  Init init;  // params only
};

struct Output {
  std::string name;
  ValueId value;
};

class Graph {
 public:
  std::string name = "main";
  std::vector<Value> values;
  std::vector<Arg> args;
  std::vector<Node> nodes;
  std::vector<Output> outputs;

  ValueId add_arg(const std::string& name, TensorType type, ArgRole role, Init init = {});
  ValueId add_value(TensorType type);
  // Appends a node after inferring its output types with the op's registry rule.
  StatusOr<std::vector<ValueId>> add_node(Op op, std::vector<ValueId> inputs, Attrs attrs);
  void add_output(const std::string& name, ValueId v) { outputs.push_back({name, v}); }

  const TensorType& type(ValueId v) const { return values.at(v).type; }
  // kNoValue when absent.
  ValueId find_arg(const std::string& name) const;
  ValueId find_output(const std::string& name) const;
  std::vector<ValueId> params() const;
};

// Which nodes a graph output depends on (every op is pure: a node nothing reads is dead).
std::vector<bool> live_nodes(const Graph& g);
// Drops the dead nodes (a pass that moves readers to new nodes, as recompute does, leaves them).
void remove_dead_nodes(Graph& g);

}  // namespace autosp::ir
