#include "ir/program_printer.h"

#include <map>

#include "ir/printer.h"

namespace autosp::ir {

namespace {
std::string slot_text(const Program& p, int s) {
  const Slot& slot = p.slots[s];
  switch (slot.kind) {
    case Slot::Kind::external: return "%" + slot.name;
    case Slot::Kind::arena: return "%s" + std::to_string(s) + "@" + std::to_string(slot.offset);
    case Slot::Kind::host: return "%s" + std::to_string(s) + "@host+" + std::to_string(slot.offset);
    case Slot::Kind::alias:
      return "%s" + std::to_string(s) + "=view(%s" + std::to_string(slot.alias_of) + "+" +
             std::to_string(slot.alias_offset) + ")";
  }
  return "?";
}
}  // namespace

std::string print_program(const Program& p) {
  std::map<int, std::vector<int>> waits;  // instruction -> collectives it waits for
  int comm = 0;
  for (int i = 0; i < int(p.instrs.size()); ++i)
    if (p.instrs[i].stream == Stream::comm) {
      waits[p.instrs[i].wait_before].push_back(i);
      ++comm;
    }
  std::string s = "program: " + std::to_string(p.instrs.size()) + " instructions, arena " +
                  std::to_string(p.arena_bytes) + " bytes" +
                  (p.host_bytes > 0 ? ", host arena " + std::to_string(p.host_bytes) + " bytes" : "") + ", " +
                  std::to_string(comm) +
                  " collectives on the communication stream\n";
  for (int i = 0; i <= int(p.instrs.size()); ++i) {
    std::string line;
    if (auto it = waits.find(i); it != waits.end()) {
      line += "wait";
      for (int c : it->second) line += " #" + std::to_string(c);
      line += "; ";
    }
    if (i == int(p.instrs.size())) {
      if (!line.empty()) s += "  end   compute  " + line + "\n";
      break;
    }
    const Instr& ins = p.instrs[i];
    const bool on_comm = ins.stream == Stream::comm;
    line += on_comm ? "start " : "";
    line += std::string(op_name(ins.op)) + "(";
    for (size_t k = 0; k < ins.in.size(); ++k) line += (k ? ", " : "") + slot_text(p, ins.in[k]);
    line += ") -> ";
    for (size_t k = 0; k < ins.out.size(); ++k)
      line += (k ? ", " : "") + slot_text(p, ins.out[k]) + ": " + p.slots[ins.out[k]].type.str();
    if (!ins.label.empty() && ins.label.find('(') != std::string::npos)
      line += "   // " + ins.label.substr(ins.label.find('(') + 1, ins.label.size() - ins.label.find('(') - 2);
    char idx[16];
    std::snprintf(idx, sizeof idx, "%5d ", i);
    s += idx + std::string(on_comm ? "comm     " : "compute  ") + line + "\n";
  }
  return s;
}

}  // namespace autosp::ir
