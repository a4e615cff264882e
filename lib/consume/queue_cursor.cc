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
      const uint64_t end = std::min(it->second, begin + max);
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
    const uint64_t end = std::min(limit, begin + max);
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
  if (begin >= end) return;
  absl::MutexLock lock(&mu_);
  returned_.emplace(begin, end);
  has_returned_.store(true, std::memory_order_release);
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
    return false;
  }
  // acked_ moved: absorb the ranges it now reaches.
  for (auto it = ranges_.begin(); it != ranges_.end() && it->first <= acked_;
       it = ranges_.erase(it)) {
    acked_ = std::max(acked_, it->second);
  }
  committed_.store(acked_, std::memory_order_seq_cst);
  return true;
}

}  // namespace txmq
