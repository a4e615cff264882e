#include "consume/lease_table.h"

#include <algorithm>

namespace txmq {

LeaseTable::Map::iterator LeaseTable::Erase(Map::iterator it) {
  by_deadline_.erase({it->second.deadline_ms, it->first});
  return leases_.erase(it);
}

void LeaseTable::Insert(uint64_t begin, const Lease& lease) {
  if (begin >= lease.end) return;
  leases_.emplace(begin, lease);
  by_deadline_.emplace(lease.deadline_ms, begin);
}

LeaseTable::Map::iterator LeaseTable::Containing(uint64_t offset) {
  auto it = leases_.upper_bound(offset);
  if (it == leases_.begin()) return leases_.end();
  --it;
  return offset < it->second.end ? it : leases_.end();
}

void LeaseTable::Add(uint64_t begin, uint64_t end, int64_t deadline_ms,
                     uint64_t owner) {
  Insert(begin, Lease{end, deadline_ms, owner});
}

void LeaseTable::DropBelow(uint64_t offset) {
  auto it = leases_.begin();
  while (it != leases_.end() && it->first < offset) {
    const Lease lease = it->second;
    it = Erase(it);
    if (lease.end > offset) {
      Insert(offset, lease);  // the part at or above `offset` stays
      break;
    }
  }
}

void LeaseTable::DropWithin(uint64_t begin, uint64_t end) {
  auto it = leases_.lower_bound(begin);
  while (it != leases_.end() && it->second.end <= end) it = Erase(it);
}

bool LeaseTable::Remove(uint64_t offset) {
  auto it = Containing(offset);
  if (it == leases_.end()) return false;
  const uint64_t begin = it->first;
  const Lease lease = it->second;
  Erase(it);
  Insert(begin, Lease{offset, lease.deadline_ms, lease.owner});
  Insert(offset + 1, lease);
  return true;
}

bool LeaseTable::Extend(uint64_t offset, int64_t deadline_ms) {
  auto it = Containing(offset);
  if (it == leases_.end()) return false;
  const uint64_t owner = it->second.owner;
  Remove(offset);
  Insert(offset, Lease{offset + 1, deadline_ms, owner});
  return true;
}

void LeaseTable::TakeExpired(int64_t now_ms, std::vector<OffsetRange>* out) {
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now_ms) {
    auto it = leases_.find(by_deadline_.begin()->second);
    out->push_back({it->first, it->second.end});
    Erase(it);
  }
}

void LeaseTable::TakeOwned(uint64_t owner, std::vector<OffsetRange>* out) {
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.owner == owner) {
      out->push_back({it->first, it->second.end});
      it = Erase(it);
    } else {
      ++it;
    }
  }
}

void LeaseTable::Clear() {
  leases_.clear();
  by_deadline_.clear();
}

std::optional<int64_t> LeaseTable::earliest_deadline() const {
  if (by_deadline_.empty()) return std::nullopt;
  return by_deadline_.begin()->first;
}

}  // namespace txmq
