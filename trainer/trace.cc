#include "trainer/trace.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "runtime/safetensors.h"

namespace autosp::trainer {

namespace {
std::string events_json(const std::vector<runtime::TraceEvent>& events, int rank) {
  std::string out;
  const char* thread_names[] = {"compute", "communication"};
  for (int tid = 0; tid < 2; ++tid)
    out += nlohmann::json{{"ph", "M"}, {"name", "thread_name"}, {"pid", rank}, {"tid", tid},
                          {"args", {{"name", thread_names[tid]}}}}.dump() + ",";
  out += nlohmann::json{{"ph", "M"}, {"name", "process_name"}, {"pid", rank},
                        {"args", {{"name", "rank " + std::to_string(rank)}}}}.dump();
  for (const runtime::TraceEvent& e : events)
    out += "," + nlohmann::json{{"ph", "X"}, {"name", e.name}, {"pid", rank}, {"tid", int(e.stream)},
                                {"ts", e.start_us}, {"dur", e.dur_us}}.dump();
  return out;
}
}  // namespace

Status write_trace(const std::string& path, runtime::Communicator* world,
                   const std::vector<runtime::TraceEvent>& events) {
  std::string mine = events_json(events, world ? world->rank() : 0);
  std::string all = mine;
  if (world && world->size() > 1) {
    // all_gather moves equal sizes: pad every rank's text to the longest (JSON allows spaces).
    const int p = world->size();
    std::vector<int64_t> lengths(static_cast<size_t>(p));
    const int64_t len = int64_t(mine.size());
    world->all_gather(&len, lengths.data(), sizeof len);
    const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
    mine.resize(size_t(longest), ' ');
    std::string gathered(size_t(longest) * size_t(p), ' ');
    world->all_gather(mine.data(), gathered.data(), longest);
    all.clear();
    for (int r = 0; r < p; ++r) all += (r ? "," : "") + gathered.substr(size_t(r * longest), size_t(lengths[r]));
    if (world->rank() != 0) return Status::Ok();
  }
  return runtime::write_file_atomic(path, "{\"traceEvents\":[" + all + "],\"displayTimeUnit\":\"ms\"}\n");
}

}  // namespace autosp::trainer
