// Recursive descent over the text, one character at a time: the grammar is small and every
// token's meaning is fixed by its position, so there is no separate lexer (which would have
// to guess whether "0.02" is a number or part of a name like model.layers.0.weight).
#include "ir/parser.h"

#include <algorithm>
#include <charconv>
#include <unordered_map>
#include <variant>

#include "ir/printer.h"
#include "ir/registry.h"

namespace autosp::ir {

namespace {

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool is_name_char(char c) { return is_word_char(c) || c == '.'; }
bool is_number_char(char c) { return is_name_char(c) || c == '-' || c == '+'; }

struct Name {
  std::string text;
  bool quoted = false;
  // Bare all-digit names are node results; a quoted all-digit (or empty) name is an argument
  // that merely looks like one (see quote() in printer.cc), so it gets its own key.
  std::string key() const {
    bool digits = std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    return quoted && digits ? "\"" + text : text;
  }
};

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  StatusOr<Graph> run() {
    RETURN_IF_ERROR(keyword("graph"));
    RETURN_IF_ERROR(expect('@'));
    ASSIGN_OR_RETURN(Name gname, name("a graph name"));
    g_.name = gname.text;
    RETURN_IF_ERROR(expect('('));
    if (!accept(')')) {
      do {
        RETURN_IF_ERROR(arg());
      } while (accept(','));
      RETURN_IF_ERROR(expect(')'));
    }
    RETURN_IF_ERROR(expect('{'));
    while (true) {
      skip();
      if (word_at(pos_) == "return") break;
      if (pos_ >= s_.size() || s_[pos_] != '%') return expected(pos_, "a node like '%0 = ...' or 'return'");
      RETURN_IF_ERROR(node());
    }
    pos_ += 6;
    RETURN_IF_ERROR(returns());
    RETURN_IF_ERROR(expect('}'));
    skip();
    if (pos_ < s_.size()) return expected(pos_, "end of input");
    return std::move(g_);
  }

 private:
  // ---- positions and errors
  std::string where(size_t at) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') ++line, col = 1;
      else ++col;
    }
    return "line " + std::to_string(line) + ":" + std::to_string(col);
  }
  // The token starting at `at`, as written, for "got '...'".
  std::string token_at(size_t at) const {
    if (at >= s_.size()) return "end of input";
    size_t e = at + (s_[at] == '%');
    if (e < s_.size() && s_[e] == '"') {
      for (++e; e < s_.size() && s_[e] != '"' && s_[e] != '\n'; ++e) e += s_[e] == '\\';
      e += e < s_.size() && s_[e] == '"';
    } else {
      while (e < s_.size() && is_number_char(s_[e])) ++e;
    }
    e = std::clamp(e, at + 1, std::min(s_.size(), at + 40));
    return "'" + std::string(s_.substr(at, e - at)) + "'";
  }
  Status fail(size_t at, const std::string& msg) const { return InvalidArgument(where(at) + ": " + msg); }
  Status expected(size_t at, const std::string& what) const {
    return fail(at, "expected " + what + ", got " + token_at(at));
  }

  // ---- characters and tokens
  void skip() {
    while (pos_ < s_.size()) {
      if (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r') ++pos_;
      else if (s_.substr(pos_, 2) == "//") pos_ = std::min(s_.size(), s_.find('\n', pos_));
      else break;
    }
  }
  bool accept(char c) {
    skip();
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }
  Status expect(char c) {
    return accept(c) ? Status::Ok() : expected(pos_, std::string("'") + c + "'");
  }
  std::string_view run_at(size_t at, bool (*pred)(char)) const {
    size_t e = at;
    while (e < s_.size() && pred(s_[e])) ++e;
    return s_.substr(at, e - at);
  }
  std::string_view word_at(size_t at) const { return run_at(at, is_word_char); }
  StatusOr<std::string> word(const std::string& what) {
    skip();
    std::string_view w = word_at(pos_);
    if (w.empty()) return expected(pos_, what);
    pos_ += w.size();
    return std::string(w);
  }
  Status keyword(std::string_view kw) {
    skip();
    if (word_at(pos_) != kw) return expected(pos_, "'" + std::string(kw) + "'");
    pos_ += kw.size();
    return Status::Ok();
  }
  StatusOr<Name> name(const std::string& what) {
    skip();
    const size_t at = pos_;
    if (pos_ < s_.size() && s_[pos_] == '"') {
      Name n{"", true};
      for (++pos_; pos_ < s_.size() && s_[pos_] != '"' && s_[pos_] != '\n'; ++pos_) {
        if (s_[pos_] == '\\' && pos_ + 1 < s_.size()) ++pos_, n.text += s_[pos_] == 'n' ? '\n' : s_[pos_];
        else n.text += s_[pos_];
      }
      if (pos_ >= s_.size() || s_[pos_] != '"') return expected(pos_, "a closing '\"' for the name at " + where(at));
      ++pos_;
      return n;
    }
    std::string_view w = run_at(pos_, is_name_char);
    if (w.empty()) return expected(pos_, what);
    pos_ += w.size();
    return Name{std::string(w), false};
  }
  template <class T>
  StatusOr<T> number(const std::string& what) {
    skip();
    std::string_view t = run_at(pos_, is_number_char);
    T v{};
    auto r = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || r.ec != std::errc() || r.ptr != t.data() + t.size()) return expected(pos_, what);
    pos_ += t.size();
    return v;
  }

  // ---- types
  StatusOr<TensorType> type() {
    skip();
    auto dt = parse_dtype(word_at(pos_));
    if (!dt) return expected(pos_, "a dtype (f32, bf16, i32, i64)");
    pos_ += word_at(pos_).size();
    RETURN_IF_ERROR(expect('['));
    std::vector<int64_t> dims;
    if (!accept(']')) {
      do {
        skip();
        const size_t at = pos_;
        ASSIGN_OR_RETURN(int64_t d, number<int64_t>("a dimension"));
        if (d < 0) return expected(at, "a non-negative dimension");
        dims.push_back(d);
      } while (accept(','));
      RETURN_IF_ERROR(expect(']'));
    }
    return TensorType{*dt, Shape(std::move(dims))};
  }
  // An optional "{S:rep}", "{S:shard(D)}" or "{S:partial}" after a type.
  StatusOr<Sharding> sharding() {
    Sharding s;
    if (!accept('{')) return s;
    RETURN_IF_ERROR(keyword("S"));
    RETURN_IF_ERROR(expect(':'));
    skip();
    const size_t at = pos_;
    ASSIGN_OR_RETURN(std::string kind, word("a sharding (rep, shard(D), partial)"));
    if (kind == "rep") {
      s.kind = ShardKind::replicate;
    } else if (kind == "partial") {
      s.kind = ShardKind::partial;
    } else if (kind == "shard") {
      s.kind = ShardKind::shard;
      RETURN_IF_ERROR(expect('('));
      ASSIGN_OR_RETURN(int64_t d, number<int64_t>("a dimension"));
      s.dim = int(d);
      RETURN_IF_ERROR(expect(')'));
    } else {
      return expected(at, "a sharding (rep, shard(D), partial)");
    }
    RETURN_IF_ERROR(expect('}'));
    return s;
  }

  // ---- values
  Status check_new(const Name& n, size_t at) const {
    auto it = defined_.find(n.key());
    if (it != defined_.end())
      return expected(at, "a new value name (it is already defined at " + where(it->second.second) + ")");
    return Status::Ok();
  }
  void define(const Name& n, size_t at, ValueId v) { defined_[n.key()] = {v, at}; }
  StatusOr<ValueId> ref() {
    skip();
    const size_t at = pos_;
    if (!accept('%')) return expected(at, "a value like %0 or %x");
    ASSIGN_OR_RETURN(Name n, name("a value name"));
    auto it = defined_.find(n.key());
    if (it == defined_.end()) return fail(at, "expected a value defined above, got undefined value " + token_at(at));
    return it->second.first;
  }

  Status arg() {
    skip();
    const size_t at = pos_;
    if (!accept('%')) return expected(at, "an argument like %x");
    ASSIGN_OR_RETURN(Name n, name("an argument name"));
    RETURN_IF_ERROR(check_new(n, at));
    RETURN_IF_ERROR(expect(':'));
    ASSIGN_OR_RETURN(TensorType t, type());
    ASSIGN_OR_RETURN(Sharding s, sharding());
    skip();
    const size_t role_at = pos_;
    ASSIGN_OR_RETURN(std::string role, word("'input' or 'param'"));
    Init init;
    if (role == "param") {
      skip();
      const size_t init_at = pos_;
      ASSIGN_OR_RETURN(std::string kind, word("an init (zeros, ones, normal(STD))"));
      if (kind == "zeros") {
        init.kind = Init::Kind::zeros;
      } else if (kind == "ones") {
        init.kind = Init::Kind::ones;
      } else if (kind == "normal") {
        init.kind = Init::Kind::normal;
        RETURN_IF_ERROR(expect('('));
        ASSIGN_OR_RETURN(init.std, number<float>("a standard deviation"));
        RETURN_IF_ERROR(expect(')'));
      } else {
        return expected(init_at, "an init (zeros, ones, normal(STD))");
      }
    } else if (role != "input") {
      return expected(role_at, "'input' or 'param'");
    }
    ValueId v = g_.add_arg(n.text, std::move(t), role == "param" ? ArgRole::param : ArgRole::input, init);
    g_.values[v].sharding = s;
    define(n, at, v);
    return Status::Ok();
  }

  // ---- attributes: parsed into the op's default struct through its fields() reflection
  Status attr_value(const std::string& key, bool& b) {
    skip();
    std::string_view w = word_at(pos_);
    if (w != "true" && w != "false") return expected(pos_, "true or false for " + key);
    b = w == "true";
    pos_ += w.size();
    return Status::Ok();
  }
  Status attr_value(const std::string& key, int64_t& i) {
    ASSIGN_OR_RETURN(i, number<int64_t>("an integer for " + key));
    return Status::Ok();
  }
  Status attr_value(const std::string& key, float& f) {
    ASSIGN_OR_RETURN(f, number<float>("a number for " + key));
    return Status::Ok();
  }
  Status attr_value(const std::string& key, MeshGroup& g) {
    skip();
    std::string_view w = word_at(pos_);
    auto parsed = group_from_name(w);
    if (!parsed) return expected(pos_, "a mesh group (world, sp, sp_inner, sp_outer, dp) for " + key);
    g = *parsed;
    pos_ += w.size();
    return Status::Ok();
  }
  Status attr_value(const std::string& key, DType& t) {
    skip();
    std::string_view w = word_at(pos_);
    auto parsed = parse_dtype(w);
    if (!parsed) return expected(pos_, "a dtype (f32, bf16, i32, i64) for " + key);
    t = *parsed;
    pos_ += w.size();
    return Status::Ok();
  }
  Status attr_value(const std::string& key, std::vector<int64_t>& v) {
    if (!accept('[')) return expected(pos_, "a list like [0,2] for " + key);
    v.clear();
    if (accept(']')) return Status::Ok();
    do {
      ASSIGN_OR_RETURN(int64_t x, number<int64_t>("an integer in " + key));
      v.push_back(x);
    } while (accept(','));
    return expect(']');
  }
  // After '{': "k=v, ...}". Keys left out keep the op's defaults.
  Status parse_attrs(Op op, Attrs& attrs) {
    std::vector<std::string> keys, seen;
    std::visit([&](auto& st) { st.fields([&](const char* k, auto&) { keys.push_back(k); }); }, attrs);
    if (accept('}')) return Status::Ok();
    do {
      skip();
      const size_t at = pos_;
      std::string key(word_at(pos_));
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        std::string list;
        for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
        return expected(at, list.empty() ? "no attributes (" + std::string(op_name(op)) + " takes none)"
                                         : "an attribute of " + std::string(op_name(op)) + " (" + list + ")");
      }
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) return expected(at, "each attribute once");
      seen.push_back(key);
      pos_ += key.size();
      RETURN_IF_ERROR(expect('='));
      Status st;
      std::visit([&](auto& s) {
        s.fields([&](const char* k, auto& member) {
          if (key == k) st = attr_value(key, member);
        });
      }, attrs);
      RETURN_IF_ERROR(st);
    } while (accept(','));
    return expect('}');
  }

  // ---- nodes: "%a, %b = op(%x, %y) {k=v} : T1, T2"
  Status node() {
    std::vector<std::pair<Name, size_t>> results;
    do {
      skip();
      const size_t at = pos_;
      if (!accept('%')) return expected(at, "a result like %0");
      ASSIGN_OR_RETURN(Name n, name("a result name"));
      for (const auto& r : results)
        if (r.first.key() == n.key()) return expected(at, "distinct result names");
      RETURN_IF_ERROR(check_new(n, at));
      results.push_back({std::move(n), at});
    } while (accept(','));
    RETURN_IF_ERROR(expect('='));
    skip();
    const size_t op_at = pos_;
    auto op = op_from_name(word_at(pos_));
    if (!op) return expected(op_at, "an op name");
    pos_ += word_at(pos_).size();
    const OpInfo& info = op_info(*op);
    RETURN_IF_ERROR(expect('('));
    std::vector<ValueId> inputs;
    if (!accept(')')) {
      do {
        ASSIGN_OR_RETURN(ValueId v, ref());
        inputs.push_back(v);
      } while (accept(','));
      RETURN_IF_ERROR(expect(')'));
    }
    Attrs attrs = info.default_attrs;
    if (accept('{')) RETURN_IF_ERROR(parse_attrs(*op, attrs));
    RETURN_IF_ERROR(expect(':'));
    std::vector<std::pair<TensorType, Sharding>> types;
    std::vector<size_t> type_at;
    do {
      skip();
      type_at.push_back(pos_);
      ASSIGN_OR_RETURN(TensorType t, type());
      ASSIGN_OR_RETURN(Sharding s, sharding());
      types.push_back({std::move(t), s});
    } while (accept(','));

    const std::string op_str(op_name(*op));
    if (info.num_outputs != kVariadicOutputs && int(results.size()) != info.num_outputs)
      return fail(results[0].second, "expected " + std::to_string(info.num_outputs) + " result(s) for " + op_str +
                                         ", got " + std::to_string(results.size()));
    if (types.size() != results.size())
      return fail(type_at[0], "expected " + std::to_string(results.size()) + " result type(s), got " +
                                  std::to_string(types.size()));
    auto out = g_.add_node(*op, std::move(inputs), std::move(attrs));
    if (!out.ok()) return fail(op_at, out.status().message());
    if (out.value().size() != results.size())
      return fail(results[0].second, "expected " + std::to_string(out.value().size()) + " result(s) for " + op_str +
                                         ", got " + std::to_string(results.size()));
    for (size_t i = 0; i < results.size(); ++i) {
      const ValueId v = out.value()[i];
      if (g_.type(v) != types[i].first)
        return fail(type_at[i], "result %" + results[i].first.text + " of " + op_str + " is declared " +
                                    types[i].first.str() + " but inferred " + g_.type(v).str());
      g_.values[v].sharding = types[i].second;
      define(results[i].first, results[i].second, v);
    }
    return Status::Ok();
  }

  // After 'return': "name=%v, ..." (possibly empty).
  Status returns() {
    skip();
    if (pos_ < s_.size() && s_[pos_] == '}') return Status::Ok();
    do {
      skip();
      const size_t at = pos_;
      ASSIGN_OR_RETURN(Name n, name("an output name"));
      if (g_.find_output(n.text) != kNoValue) return expected(at, "a new output name");
      RETURN_IF_ERROR(expect('='));
      ASSIGN_OR_RETURN(ValueId v, ref());
      g_.add_output(n.text, v);
    } while (accept(','));
    return Status::Ok();
  }

  std::string_view s_;
  size_t pos_ = 0;
  Graph g_;
  // Value key -> (value, position of its definition).
  std::unordered_map<std::string, std::pair<ValueId, size_t>> defined_;
};

}  // namespace

StatusOr<Graph> parse(std::string_view text) { return Parser(text).run(); }

}  // namespace autosp::ir
