// Text form of a lowered Program, for --dump-ir: one line per instruction with its stream;
// collectives on the communication stream print as "start", and the instruction that waits
// for them lists them first ("wait #12 #15;"), so the schedule's overlap is visible.
#pragma once
#include <string>

#include "ir/program.h"

namespace autosp::ir {

std::string print_program(const Program& p);

}  // namespace autosp::ir
