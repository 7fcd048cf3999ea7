#include "sp_compiler/schedule.h"

#include <algorithm>
#include <map>

#include "core/log.h"

namespace autosp::sp {

namespace {

int64_t out_bytes(const ir::Program& p, const ir::Instr& ins) {
  int64_t b = 0;
  for (int s : ins.out) b += p.slots[s].type.shape.numel() * int64_t(dtype_size(p.slots[s].type.dtype));
  return b;
}

}  // namespace

void schedule(ir::Program& p, const ScheduleOptions& opt) {
  const int n = int(p.instrs.size());
  std::vector<int> producer(p.slots.size(), -1);  // instruction writing each root slot
  for (int i = 0; i < n; ++i)
    for (int s : p.instrs[i].out) producer[p.root(s)] = i;
  std::vector<std::vector<int>> consumers(n);
  std::vector<std::vector<int>> deps(n);
  for (int i = 0; i < n; ++i)
    for (int s : p.instrs[i].in) {
      const int d = producer[p.root(s)];
      if (d >= 0 && d != i) {
        deps[i].push_back(d);
        consumers[d].push_back(i);
      }
    }
  std::vector<bool> comm(n, false);
  for (int i = 0; i < n; ++i)
    comm[i] = opt.overlap && (ir::is_collective(p.instrs[i].op) || ir::is_transfer(p.instrs[i].op));
  if (!opt.overlap) {
    for (ir::Instr& ins : p.instrs) ins.stream = ir::Stream::compute;
    return;
  }

  // 1. Compute order: graph order, except that compute whose results only feed collectives
  //    is hoisted to just after its last producer.
  //    (One that reads a collective's result stays put: it would have to wait for it.)
  std::vector<bool> feeder(n, false);
  for (int i = 0; i < n; ++i) {
    if (comm[i] || consumers[i].empty()) continue;
    feeder[i] = std::all_of(consumers[i].begin(), consumers[i].end(), [&](int c) { return comm[c]; }) &&
                std::none_of(deps[i].begin(), deps[i].end(), [&](int d) { return comm[d]; });
  }
  std::vector<int> order;
  for (int i = 0; i < n; ++i)
    if (!comm[i] && !feeder[i]) order.push_back(i);
  for (int i = 0; i < n; ++i) {
    if (!feeder[i]) continue;
    int at = 0;  // after the last compute producer already placed
    for (int d : deps[i]) {
      auto it = std::find(order.begin(), order.end(), d);
      if (it != order.end()) at = std::max(at, int(it - order.begin()) + 1);
    }
    order.insert(order.begin() + at, i);
  }

  // 2. Collectives: at each point, every ready one is issued, most urgent (earliest first use)
  //    first. Ones whose results compute reads inside the step (all-to-alls, ZeRO-3 gathers)
  //    are held back while the bytes in flight exceed the budget, unless needed right there;
  //    gradient reductions (read only after the step) go as soon as they are ready, so they
  //    overlap the rest of the backward. The issue order is the FIFO order of the
  //    communication thread, and every rank computes the same one.
  std::vector<int> comm_list;
  std::vector<int64_t> bytes_of(n, 0);  // each collective's output bytes
  for (int i = 0; i < n; ++i)
    if (comm[i]) {
      comm_list.push_back(i);
      bytes_of[i] = out_bytes(p, p.instrs[i]);
    }
  // The issue plan for a compute order: where each collective is issued and waited for.
  struct Issue {
    std::vector<std::vector<int>> issue_at;  // collectives issued before order[k]
    std::vector<int> wait_pos;
    std::vector<bool> read_in_step;
  };
  auto plan_issue = [&](const std::vector<int>& ord) {
    std::vector<int> compute_pos(n, -1);
    for (int k = 0; k < int(ord.size()); ++k) compute_pos[ord[k]] = k;
    const int end = int(ord.size());
    // First compute consumer (position in `ord`) of each collective, through chains of
    // collectives feeding collectives.
    std::vector<int> first_use(n, end);
    // Whether the step's own compute reads a collective's result. A consumer whose results
    // nothing reads (the unpack of a stage-0 gradient bucket into the step's outputs) only
    // hands the result over: such a collective is a gradient reduction as far as the budget is
    // concerned.
    std::vector<bool> read_in_step(n, false);
    for (int j = int(comm_list.size()) - 1; j >= 0; --j) {
      const int c = comm_list[j];
      for (int u : consumers[c]) {
        first_use[c] = std::min(first_use[c], comm[u] ? first_use[u] : compute_pos[u]);
        read_in_step[c] = read_in_step[c] || (comm[u] ? read_in_step[u] : !consumers[u].empty());
      }
    }
    // Activation transfers. An offload is waited for after its source's last forward reader, so
    // the copy overlaps that compute and the source's bytes live no longer than they did; it
    // holds no device bytes of its own, so it is not budgeted. A fetch must not come back long
    // before the backward needs it (that would keep the activation on the device after all):
    // it may start only once compute reaches the first use of the fetch needed just before it,
    // one kept tensor of lookahead.
    std::vector<int> gate(n, 0);
    {
      std::vector<int> fetches;
      for (int c : comm_list) {
        const ir::Op op = p.instrs[c].op;
        if (op == ir::Op::offload) {
          read_in_step[c] = false;
          int at = 0;
          for (int d : deps[c]) {
            at = std::max(at, compute_pos[d] + 1);
            for (int u : consumers[d])
              if (!comm[u]) at = std::max(at, compute_pos[u]);
          }
          first_use[c] = std::min(at, end);
        }
        if (op == ir::Op::fetch) fetches.push_back(c);
      }
      std::stable_sort(fetches.begin(), fetches.end(), [&](int a, int b) { return first_use[a] < first_use[b]; });
      for (size_t j = 1; j < fetches.size(); ++j) gate[fetches[j]] = first_use[fetches[j - 1]];
      if (!fetches.empty()) {  // the first: once every offload has been issued (the forward is done)
        for (int c : comm_list)
          if (p.instrs[c].op == ir::Op::offload) gate[fetches[0]] = std::max(gate[fetches[0]], first_use[c]);
      }
    }
    // All-to-alls that recompute repeats from kept inputs (layer's re-run of O's exchange: the
    // same op over the same slots as a forward one) are ready from the forward on; issued
    // there, their results would be held to the backward, which is what the repeat avoids. Like
    // fetches, each may start once compute reaches the first use of the repeat needed before
    // it, and the first once every forward original has been read.
    {
      std::map<std::vector<int>, int> original;  // input slots -> the first all-to-all reading them
      std::vector<int> repeats;
      int forward_done = 0;
      for (int c : comm_list) {
        if (p.instrs[c].op != ir::Op::all_to_all) continue;
        auto [it, fresh] = original.try_emplace(p.instrs[c].in, c);
        if (fresh) continue;
        repeats.push_back(c);
        forward_done = std::max(forward_done, first_use[it->second]);
      }
      std::stable_sort(repeats.begin(), repeats.end(), [&](int a, int b) { return first_use[a] < first_use[b]; });
      for (size_t j = 0; j < repeats.size(); ++j)
        gate[repeats[j]] = std::max(gate[repeats[j]], j == 0 ? forward_done + 1 : first_use[repeats[j - 1]]);
    }
    std::vector<int> pending = comm_list;  // not yet issued, most urgent first
    std::stable_sort(pending.begin(), pending.end(), [&](int a, int b) { return first_use[a] < first_use[b]; });
    // The budget, by default, is relative to each collective: it may start ahead of its use
    // while at most twice its own bytes are in flight — Q, K and V's all-to-alls together, or
    // the next two buckets of a layer's size — so a one-off large collective (the embedding
    // table's gather) does not let every layer's buckets in at once, and small ones do not
    // crowd in behind large ones. inflight_bytes > 0 sets one fixed budget instead.
    const int64_t budget = opt.inflight_bytes;
    auto over_budget = [&](int64_t inflight, int64_t bytes) {
      return budget > 0 ? inflight + bytes > budget : inflight > 2 * bytes;
    };
    std::vector<std::vector<int>> issue_at(ord.size() + 1);  // collectives issued before ord[k]
    std::vector<int> issued_pos(n, -1);
    std::multimap<int, int64_t> inflight;  // wait position -> bytes (budgeted collectives only)
    int64_t inflight_bytes = 0;
    size_t n_issued = 0;
    for (int k = 0; k <= end && n_issued < comm_list.size(); ++k) {
      for (auto it = inflight.begin(); it != inflight.end() && it->first <= k;) {
        inflight_bytes -= it->second;
        it = inflight.erase(it);
      }
      for (bool progress = true; progress;) {  // a collective feeding another can go in the same round
        progress = false;
        for (int c : pending) {
          bool ready = k >= gate[c] || first_use[c] <= k;
          for (int d : deps[c]) ready = ready && (comm[d] ? issued_pos[d] >= 0 : compute_pos[d] < k);
          if (!ready) continue;
          const bool budgeted = read_in_step[c];
          const int64_t bytes = bytes_of[c];
          if (budgeted && first_use[c] > k && inflight_bytes > 0 && over_budget(inflight_bytes, bytes)) continue;
          issue_at[k].push_back(c);
          issued_pos[c] = k;
          ++n_issued;
          progress = true;
          if (budgeted) {
            inflight.insert({first_use[c], bytes});
            inflight_bytes += bytes;
          }
        }
        if (progress)
          pending.erase(std::remove_if(pending.begin(), pending.end(), [&](int c) { return issued_pos[c] >= 0; }),
                        pending.end());
      }
    }
    AUTOSP_CHECK(n_issued == comm_list.size()) << "schedule left a collective unissued";

    // Gradient reductions (results read only after the step, or by a final unpack) are waited
    // for once the reductions issued after them add up to twice their own bytes, at a later
    // compute instruction, not at the step's end: until its wait a collective's buffers cannot
    // be reused, and waiting at the end kept every layer's packed gradients alive for the whole
    // backward. The stream is FIFO, so a wait also waits for everything queued before it: no
    // reduction is waited for before an earlier one is due, or a small bucket's wait would
    // drain the queue behind it.
    std::vector<int> wait_pos = first_use;
    std::vector<int> reductions;  // in issue order
    for (int k = 0; k <= end; ++k)
      for (int c : issue_at[k])
        if (!read_in_step[c] && p.instrs[c].op != ir::Op::offload) reductions.push_back(c);
    int due_before = 0;  // the latest wait of an earlier reduction
    for (size_t j = 0; j < reductions.size(); ++j) {
      const int c = reductions[j];
      const int64_t bytes = bytes_of[c];
      int due = end;
      int64_t after = 0;
      for (size_t m = j + 1; m < reductions.size(); ++m) {
        after += bytes_of[reductions[m]];
        if (after >= 2 * bytes && issued_pos[reductions[m]] > issued_pos[c]) {
          due = issued_pos[reductions[m]];
          break;
        }
      }
      due_before = std::max(due_before, due);
      wait_pos[c] = std::min(wait_pos[c], due_before);
    }
    Issue r;
    r.issue_at = std::move(issue_at);
    r.wait_pos = std::move(wait_pos);
    r.read_in_step = std::move(read_in_step);
    return r;
  };
  Issue plan = plan_issue(order);

  // 2b. A compute instruction that only hands gradient reductions over to the step's outputs
  //     (stage 0's unpack of a bucket into each parameter's gradient) moves to where its
  //     reductions are waited for, so their buffers are freed there instead of at the end.
  {
    std::vector<int> target(n, -1);
    bool any = false;
    for (int k = 0; k < int(order.size()); ++k) {
      const int u = order[k];
      if (!consumers[u].empty() || deps[u].empty()) continue;
      int at = -1;
      bool hand_over = true;
      for (int d : deps[u]) {
        hand_over = hand_over && comm[d] && !plan.read_in_step[d] && p.instrs[d].op != ir::Op::offload;
        if (hand_over) at = std::max(at, plan.wait_pos[d]);
      }
      if (hand_over && at < k) {
        target[u] = at;
        any = true;
      }
    }
    if (any) {
      std::vector<std::vector<int>> before(order.size());  // moved instructions, in order, by target
      for (int u : order)
        if (target[u] >= 0) before[size_t(target[u])].push_back(u);
      std::vector<int> moved;
      for (int k = 0; k < int(order.size()); ++k) {
        moved.insert(moved.end(), before[size_t(k)].begin(), before[size_t(k)].end());
        if (target[order[k]] < 0) moved.push_back(order[k]);
      }
      order = std::move(moved);
      plan = plan_issue(order);
    }
  }
  std::vector<std::vector<int>>& issue_at = plan.issue_at;
  const std::vector<int>& wait_pos = plan.wait_pos;

  // 3. Emit, and point each collective at the instruction that waits for it.
  std::vector<ir::Instr> out;
  std::vector<int> new_index(n, -1);
  for (int k = 0; k <= int(order.size()); ++k) {
    for (int c : issue_at[k]) {
      new_index[c] = int(out.size());
      out.push_back(std::move(p.instrs[c]));
      out.back().stream = ir::Stream::comm;
    }
    if (k < int(order.size())) {
      new_index[order[k]] = int(out.size());
      out.push_back(std::move(p.instrs[order[k]]));
      out.back().stream = ir::Stream::compute;
    }
  }
  for (int c : comm_list)
    out[new_index[c]].wait_before = wait_pos[c] < int(order.size()) ? new_index[order[wait_pos[c]]] : int(out.size());
  p.instrs = std::move(out);
  AUTOSP_LOG(1) << "schedule: " << comm_list.size() << " collectives on the communication stream, "
                << order.size() << " compute instructions";
}

}  // namespace autosp::sp
