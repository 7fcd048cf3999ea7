#include "ir/printer.h"

#include <charconv>
#include <variant>

#include "ir/registry.h"

namespace autosp::ir {

namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
}

// Names print bare when they are identifiers. All-digit names are quoted too, because bare
// %N is reserved for node results; anything else (spaces, empty) is quoted so that every
// graph round-trips. The parser's read_name() undoes exactly this.
std::string quote(const std::string& name) {
  bool bare = !name.empty(), digits = true;
  for (char c : name) {
    bare = bare && is_name_char(c);
    digits = digits && c >= '0' && c <= '9';
  }
  if (bare && !digits) return name;
  std::string s = "\"";
  for (char c : name) {
    if (c == '"' || c == '\\') s += '\\';
    if (c == '\n') s += "\\n";
    else s += c;
  }
  return s + "\"";
}

// Printed names of all values: arguments by name, node results by order of definition.
// Computed from the whole graph so that print_node agrees with print.
class Names {
 public:
  explicit Names(const Graph& g) : names_(g.values.size()) {
    for (const Arg& a : g.args)
      if (in_range(a.value) && names_[a.value].empty()) names_[a.value] = "%" + quote(g.values[a.value].name);
    int next = 0;
    for (const Node& n : g.nodes)
      for (ValueId v : n.outputs) {
        std::string s = "%" + std::to_string(next++);
        if (in_range(v) && names_[v].empty()) names_[v] = std::move(s);
      }
  }
  std::string operator()(ValueId v) const {
    return in_range(v) && !names_[v].empty() ? names_[v] : "%?" + std::to_string(v);
  }

 private:
  bool in_range(ValueId v) const { return v >= 0 && v < ValueId(names_.size()); }
  std::vector<std::string> names_;
};

std::string print_attr(bool b) { return b ? "true" : "false"; }
std::string print_attr(int64_t i) { return std::to_string(i); }
std::string print_attr(float f) { return print_float(f); }
std::string print_attr(MeshGroup g) { return std::string(group_name(g)); }
std::string print_attr(DType t) { return std::string(dtype_name(t)); }
std::string print_attr(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

// " {k=v, ...}" in fields() order, or "" for an attribute struct without fields.
std::string print_attrs(const Attrs& attrs) {
  Attrs copy = attrs;  // fields() is non-const: it also serves the parser, which writes
  std::string s;
  std::visit([&](auto& st) {
    st.fields([&](const char* key, auto& member) {
      s += (s.empty() ? "" : ", ") + std::string(key) + "=" + print_attr(member);
    });
  }, copy);
  return s.empty() ? s : " {" + s + "}";
}

std::string value_type(const Graph& g, ValueId v) {
  if (v < 0 || v >= ValueId(g.values.size())) return "?";
  return print_type(g.values[v].type, g.values[v].sharding);
}

std::string node_line(const Graph& g, const Node& n, const Names& names) {
  std::string s;
  for (size_t i = 0; i < n.outputs.size(); ++i) s += (i ? ", " : "") + names(n.outputs[i]);
  if (!n.outputs.empty()) s += " = ";
  s += int(n.op) < kNumOps ? std::string(op_name(n.op)) : "?op" + std::to_string(int(n.op));
  s += "(";
  for (size_t i = 0; i < n.inputs.size(); ++i) s += (i ? ", " : "") + names(n.inputs[i]);
  s += ")" + print_attrs(n.attrs) + " :";
  for (size_t i = 0; i < n.outputs.size(); ++i) s += (i ? ", " : " ") + value_type(g, n.outputs[i]);
  return s;
}

std::string print_init(const Init& init) {
  switch (init.kind) {
    case Init::Kind::zeros: return "zeros";
    case Init::Kind::ones: return "ones";
    case Init::Kind::normal: return "normal(" + print_float(init.std) + ")";
  }
  return "?";
}

}  // namespace

std::string print_float(float f) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f);  // shortest form that round-trips
  return std::string(buf, r.ptr);
}

std::string print_type(const TensorType& t, const Sharding& s) {
  std::string out = t.str();
  switch (s.kind) {
    case ShardKind::none: break;
    case ShardKind::replicate: out += "{S:rep}"; break;
    case ShardKind::shard: out += "{S:shard(" + std::to_string(s.dim) + ")}"; break;
    case ShardKind::partial: out += "{S:partial}"; break;
  }
  return out;
}

std::string print_node(const Graph& g, const Node& n) { return node_line(g, n, Names(g)); }

std::string print_value_name(const Graph& g, ValueId v) { return Names(g)(v); }

std::string print(const Graph& g) {
  const Names names(g);
  std::string s = "graph @" + quote(g.name) + "(";
  for (size_t i = 0; i < g.args.size(); ++i) {
    const Arg& a = g.args[i];
    s += (i ? ", " : "") + names(a.value) + ": " + value_type(g, a.value);
    s += a.role == ArgRole::input ? " input" : " param " + print_init(a.init);
  }
  s += ") {\n";
  for (const Node& n : g.nodes) s += "  " + node_line(g, n, names) + "\n";
  s += "  return";
  for (size_t i = 0; i < g.outputs.size(); ++i)
    s += (i ? ", " : " ") + quote(g.outputs[i].name) + "=" + names(g.outputs[i].value);
  return s + "\n}\n";
}

}  // namespace autosp::ir
