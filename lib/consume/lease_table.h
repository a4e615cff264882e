// LeaseTable: the invisible times of one queue's received, unacknowledged
// messages (RocketMQ's invisible duration).
//
//   offsets   [100, 164)          [164, 200)      [200, 201)  ...
//   lease     until t+30s, c1     until t+31s, c2  until t+90s (extended)
//
// A Receive leases the offsets it claimed until a deadline; acknowledging
// drops them; when a deadline passes, the broker takes the lease and
// redelivers what is still unacknowledged. Leases never overlap. Ranges are
// kept as received (one entry per claim, not per message), so the cost is
// per batch.
//
// Thread-compatible: QueueCursor guards it with its per-queue mutex.

#ifndef TXMQ_LIB_CONSUME_LEASE_TABLE_H_
#define TXMQ_LIB_CONSUME_LEASE_TABLE_H_

#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace txmq {

struct OffsetRange {
  uint64_t begin = 0;
  uint64_t end = 0;
  friend bool operator==(const OffsetRange&, const OffsetRange&) = default;
};

class LeaseTable {
 public:
  // Leases [begin, end) (not leased yet) to consumer `owner` until
  // `deadline_ms`.
  void Add(uint64_t begin, uint64_t end, int64_t deadline_ms, uint64_t owner);
  // Forgets every leased offset below `offset` (acknowledged).
  void DropBelow(uint64_t offset);
  // Forgets the leases that lie entirely inside [begin, end) (acknowledged).
  void DropWithin(uint64_t begin, uint64_t end);
  bool Contains(uint64_t offset) const {
    auto it = leases_.upper_bound(offset);
    return it != leases_.begin() && offset < std::prev(it)->second.end;
  }
  // Removes `offset` from its lease. False when it is not leased.
  bool Remove(uint64_t offset);
  // Gives `offset` its own lease until `deadline_ms`, same owner. False
  // when it is not leased.
  bool Extend(uint64_t offset, int64_t deadline_ms);
  // Removes the leases whose deadline is at or before `now_ms` and appends
  // their ranges.
  void TakeExpired(int64_t now_ms, std::vector<OffsetRange>* out);
  // Removes the leases of `owner` and appends their ranges.
  void TakeOwned(uint64_t owner, std::vector<OffsetRange>* out);
  void Clear();

  // The earliest deadline, or nullopt when nothing is leased.
  std::optional<int64_t> earliest_deadline() const;
  size_t size() const { return leases_.size(); }

 private:
  struct Lease {
    uint64_t end;
    int64_t deadline_ms;
    uint64_t owner;
  };
  using Map = std::map<uint64_t, Lease>;  // begin -> lease

  Map::iterator Erase(Map::iterator it);
  void Insert(uint64_t begin, const Lease& lease);
  // The lease containing `offset`, or end().
  Map::iterator Containing(uint64_t offset);

  Map leases_;
  std::set<std::pair<int64_t, uint64_t>> by_deadline_;  // (deadline, begin)
};

}  // namespace txmq

#endif  // TXMQ_LIB_CONSUME_LEASE_TABLE_H_
