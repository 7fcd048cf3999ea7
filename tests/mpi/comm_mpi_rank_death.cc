// A rank that fails while its peers wait in a collective must end the whole job quickly,
// with a non-zero exit, instead of leaving them hanging. Mode (argv[1]):
//   abort - rank 1 calls Communicator::abort (what autosp does on an error);
//   crash - rank 1 exits abruptly, without MPI_Finalize (a crash or a kill).
// The ranks all pass a first barrier (so every rank is up), then all but rank 1 enter a
// second barrier that can only end through the failure. Registered through
// expect_failure.cmake, which requires the non-zero exit and the messages below.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/comm.h"

int main(int argc, char** argv) {
  const bool crash = argc > 1 && std::strcmp(argv[1], "crash") == 0;
  auto world = autosp::runtime::mpi_world();
  const int r = world->rank();
  if (world->size() < 2) {
    std::fprintf(stderr, "needs at least 2 ranks\n");
    return 2;
  }
  world->barrier();
  if (r == 1) {
    std::fprintf(stderr, "rank 1: failing (%s)\n", crash ? "crash" : "abort");
    std::fflush(stderr);
    if (crash) std::_Exit(3);
    world->abort("rank 1 dies on purpose");
  }
  try {
    world->barrier();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: barrier threw: %s\n", r, e.what());
    return 1;
  }
  std::printf("rank %d passed the barrier without rank 1\n", r);
  return 0;
}
