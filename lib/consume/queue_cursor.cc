#include "consume/queue_cursor.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace txmq {

QueueCursor::QueueCursor(uint64_t committed)
    : next_(committed), committed_(committed), acked_(committed) {}

std::pair<uint64_t, uint64_t> QueueCursor::Claim(uint64_t max, uint64_t limit) {
  if (has_returned_.load(std::memory_order_acquire)) {
    absl::MutexLock lock(&mu_);
    if (!returned_.empty()) {
      auto it = returned_.begin();
      const uint64_t begin = it->first;
      const uint64_t end = begin + std::min(it->second - begin, max);
      if (end < it->second) returned_.emplace(end, it->second);
      returned_.erase(it);
      if (returned_.empty()) {
        has_returned_.store(false, std::memory_order_release);
      }
      return {begin, end};
    }
  }
  // Memory ordering: relaxed is enough. All claims are read-modify-writes of
  // the single atomic next_, so they form one modification order in which
  // each successful CAS moves next_ from `begin` to `end`: the claimed
  // ranges tile the offsets without overlap or gap, whatever the threads.
  // No data is published through next_ (the messages are published by the
  // queue's `end`, release/acquire, and the LMDB snapshot), so no acquire
  // or release is needed here.
  uint64_t begin = next_.load(std::memory_order_relaxed);
  while (begin < limit) {
    const uint64_t end = begin + std::min(limit - begin, max);  // no overflow
    if (next_.compare_exchange_weak(begin, end, std::memory_order_relaxed,
                                    std::memory_order_relaxed)) {
      return {begin, end};
    }
  }
  return {begin, begin};
}

void QueueCursor::Reset(uint64_t offset) {
  absl::MutexLock lock(&mu_);
  acked_ = offset;
  ranges_.clear();
  leases_.Clear();
  returned_.clear();
  has_returned_.store(false, std::memory_order_release);
  next_.store(offset, std::memory_order_relaxed);
  committed_.store(offset, std::memory_order_seq_cst);
}

bool QueueCursor::SkipTo(uint64_t offset) {
  if (committed() >= offset) return false;
  absl::MutexLock lock(&mu_);
  // Claims race on next_ without the mutex: move it only forward.
  uint64_t next = next_.load(std::memory_order_relaxed);
  while (next < offset &&
         !next_.compare_exchange_weak(next, offset, std::memory_order_relaxed,
                                      std::memory_order_relaxed)) {
  }
  // Handed-back ranges below `offset` are gone; keep their tails.
  for (auto it = returned_.begin();
       it != returned_.end() && it->first < offset;) {
    if (it->second > offset) returned_.emplace(offset, it->second);
    it = returned_.erase(it);
  }
  if (returned_.empty()) has_returned_.store(false, std::memory_order_release);
  if (acked_ >= offset) return false;
  acked_ = offset;
  for (auto it = ranges_.begin(); it != ranges_.end() && it->first <= acked_;
       it = ranges_.erase(it)) {
    acked_ = std::max(acked_, it->second);
  }
  committed_.store(acked_, std::memory_order_seq_cst);
  return true;
}

void QueueCursor::Unclaim(uint64_t begin, uint64_t end) {
  absl::MutexLock lock(&mu_);
  UnclaimLocked(begin, end);
}

void QueueCursor::UnclaimLocked(uint64_t begin, uint64_t end) {
  if (begin >= end) return;
  returned_.emplace(begin, end);
  has_returned_.store(true, std::memory_order_release);
}

bool QueueCursor::Lease(uint64_t begin, uint64_t end, int64_t deadline_ms,
                        uint64_t owner) {
  absl::MutexLock lock(&mu_);
  begin = std::max(begin, acked_);  // acknowledged already (a quick Ack)
  if (begin >= end) return false;
  leases_.Add(begin, end, deadline_ms, owner);
  if (deadline_ms >= armed_ms_) return false;
  armed_ms_ = deadline_ms;
  return true;
}

absl::Status QueueCursor::Extend(uint64_t offset, int64_t deadline_ms,
                                 bool* arm) {
  absl::MutexLock lock(&mu_);
  *arm = false;
  if (!leases_.Extend(offset, deadline_ms)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "offset %d is not invisible any more: it was acknowledged, or its "
        "invisible time ran out and it is being delivered again",
        offset));
  }
  if (deadline_ms < armed_ms_) {
    armed_ms_ = deadline_ms;
    *arm = true;
  }
  return absl::OkStatus();
}

bool QueueCursor::Release(uint64_t offset) {
  absl::MutexLock lock(&mu_);
  return leases_.Remove(offset);
}

int64_t QueueCursor::TakeExpired(int64_t now_ms,
                                 std::vector<OffsetRange>* unacked) {
  absl::MutexLock lock(&mu_);
  std::vector<OffsetRange> expired;
  leases_.TakeExpired(now_ms, &expired);
  for (const OffsetRange& r : expired) AppendUnacked(r.begin, r.end, unacked);
  armed_ms_ = leases_.earliest_deadline().value_or(INT64_MAX);
  // An ordered queue blocked by a deferral: wake its consumers at the end.
  if (!returned_.empty() && not_before_ms_ > now_ms) {
    armed_ms_ = std::min(armed_ms_, not_before_ms_);
  }
  return armed_ms_;
}

void QueueCursor::ReturnOwned(uint64_t owner) {
  absl::MutexLock lock(&mu_);
  std::vector<OffsetRange> owned, unacked;
  leases_.TakeOwned(owner, &owned);
  for (const OffsetRange& r : owned) AppendUnacked(r.begin, r.end, &unacked);
  for (const OffsetRange& r : unacked) UnclaimLocked(r.begin, r.end);
}

bool QueueCursor::IsAcked(uint64_t offset) {
  absl::MutexLock lock(&mu_);
  if (offset < acked_) return true;
  auto it = ranges_.upper_bound(offset);
  return it != ranges_.begin() && offset < std::prev(it)->second;
}

void QueueCursor::PreAck(uint64_t offset) {
  {
    absl::MutexLock lock(&mu_);
    if (offset < acked_) return;
    if (offset == acked_) {
      acked_ = offset + 1;
      for (auto it = ranges_.begin();
           it != ranges_.end() && it->first <= acked_; it = ranges_.erase(it)) {
        acked_ = std::max(acked_, it->second);
      }
      committed_.store(acked_, std::memory_order_seq_cst);
      // Nothing is claimed yet: claims start past the acknowledged prefix.
      next_.store(std::max(next_.load(std::memory_order_relaxed), acked_),
                  std::memory_order_relaxed);
    } else {
      auto [it, inserted] = ranges_.emplace(offset, offset + 1);
      (void)inserted;
      // Merge with neighbours (load order is ascending, so the previous).
      if (it != ranges_.begin()) {
        auto prev = std::prev(it);
        if (prev->second >= offset) {
          prev->second = std::max(prev->second, offset + 1);
          ranges_.erase(it);
        }
      }
    }
  }
  uint64_t until = preacked_until_.load(std::memory_order_relaxed);
  while (until < offset + 1 &&
         !preacked_until_.compare_exchange_weak(until, offset + 1)) {
  }
  NoteAckRow(offset);
}

void QueueCursor::NoteAckRow(uint64_t offset) {
  uint64_t until = ack_rows_until_.load(std::memory_order_relaxed);
  while (until < offset + 1 &&
         !ack_rows_until_.compare_exchange_weak(until, offset + 1)) {
  }
}

std::optional<uint64_t> QueueCursor::ack_rows_until() const {
  const uint64_t until = ack_rows_until_.load(std::memory_order_relaxed);
  if (until == 0) return std::nullopt;
  return until;
}

void QueueCursor::ForgetAckRowsBelow(uint64_t committed) {
  // All rows below `committed` are gone; if none was above, none is left
  // (a newer row moves ack_rows_until_ up, and the exchange then fails).
  uint64_t until = ack_rows_until_.load(std::memory_order_relaxed);
  if (until != 0 && until <= committed) {
    ack_rows_until_.compare_exchange_strong(until, 0);
  }
}

std::pair<uint64_t, uint64_t> QueueCursor::ClaimOrdered(uint64_t limit,
                                                        int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  if (!returned_.empty()) {
    // Handed back (a deferral, or a consumer that left): the head first,
    // and only once its wait is over.
    if (now_ms < not_before_ms_) return {0, 0};
    auto it = returned_.begin();
    const uint64_t begin = it->first;
    if (begin + 1 < it->second) returned_.emplace(begin + 1, it->second);
    returned_.erase(it);
    if (returned_.empty()) {
      has_returned_.store(false, std::memory_order_release);
    }
    return {begin, begin + 1};
  }
  uint64_t next = next_.load(std::memory_order_relaxed);
  // In flight: claimed and not acknowledged (nothing was handed back).
  if (next != acked_ || next >= limit) return {next, next};
  next_.store(next + 1, std::memory_order_relaxed);
  return {next, next + 1};
}

void QueueCursor::Defer(uint64_t offset, int64_t not_before_ms, bool* arm) {
  absl::MutexLock lock(&mu_);
  if (deferred_offset_ != offset) {
    deferred_offset_ = offset;
    deferred_failures_ = 0;
  }
  ++deferred_failures_;
  not_before_ms_ = not_before_ms;
  leases_.Remove(offset);
  UnclaimLocked(offset, offset + 1);
  *arm = not_before_ms < armed_ms_;
  if (*arm) armed_ms_ = not_before_ms;
}

uint32_t QueueCursor::Failures(uint64_t offset) {
  absl::MutexLock lock(&mu_);
  return offset == deferred_offset_ ? deferred_failures_ : 0;
}

void QueueCursor::AppendUnacked(uint64_t begin, uint64_t end,
                                std::vector<OffsetRange>* out) {
  begin = std::max(begin, acked_);
  // ranges_ is sorted and disjoint: walk the acknowledged ranges that
  // overlap [begin, end) and emit the gaps between them.
  auto it = ranges_.upper_bound(begin);
  if (it != ranges_.begin() && std::prev(it)->second > begin) --it;
  for (; begin < end && it != ranges_.end() && it->first < end; ++it) {
    if (it->first > begin) out->push_back({begin, it->first});
    begin = std::max(begin, it->second);
  }
  if (begin < end) out->push_back({begin, end});
}

absl::StatusOr<bool> QueueCursor::Ack(uint64_t begin, uint64_t end) {
  if (begin >= end) return false;
  // A thread acknowledges offsets it claimed itself or received from a
  // thread that did (with the synchronization that hand-over implies), so
  // the relaxed load sees at least that claim.
  if (end > next_.load(std::memory_order_relaxed)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "offset %d was never delivered to this group; acknowledge only "
        "received messages",
        end - 1));
  }
  absl::MutexLock lock(&mu_);
  begin = std::max(begin, acked_);
  if (begin >= end) return false;
  if (begin == acked_) {
    acked_ = end;
  } else {
    // Insert [begin, end), merging with overlapping or adjacent ranges.
    auto it = ranges_.upper_bound(begin);
    if (it != ranges_.begin()) {
      auto prev = std::prev(it);
      if (prev->second >= begin) {
        begin = prev->first;
        end = std::max(end, prev->second);
        it = ranges_.erase(prev);
      }
    }
    while (it != ranges_.end() && it->first <= end) {
      end = std::max(end, it->second);
      it = ranges_.erase(it);
    }
    ranges_.emplace(begin, end);
    leases_.DropWithin(begin, end);
    return false;
  }
  // acked_ moved: absorb the ranges it now reaches.
  for (auto it = ranges_.begin(); it != ranges_.end() && it->first <= acked_;
       it = ranges_.erase(it)) {
    acked_ = std::max(acked_, it->second);
  }
  leases_.DropBelow(acked_);
  committed_.store(acked_, std::memory_order_seq_cst);
  return true;
}

}  // namespace txmq
