// TimerWheel: a hierarchical timing wheel with a millisecond tick.
//
//   level 0:  64 buckets x 1 ms        covers    64 ms
//   level 1:  64 buckets x 64 ms       covers   4.1 s
//   level 2:  64 buckets x 4.1 s       covers   4.4 min
//   level 3:  64 buckets x 4.4 min     covers   4.7 h
//   level 4:  64 buckets x 4.7 h       covers  12.4 days
//   ...       levels are added as far-future timers need them
//
// A timer goes into the lowest level whose span covers it. When a bucket's
// time comes, its timers cascade: each is added again, now landing one or
// more levels lower, until it reaches level 0 and fires. Time advances by
// jumping from one non-empty bucket to the next (a min-heap of bucket
// expirations, the design of Kafka's TimingWheel), so neither idle time nor
// a clock that jumps hours ahead costs a step per millisecond. A clock that
// goes backwards is ignored: the wheel's time never decreases.
//
// One timer per target: adding a timer for a target that has one replaces
// it (a check-back rescheduled), and Cancel removes it. An index from target
// to its live timer makes both O(1); the replaced or cancelled entry stays in
// its bucket until the bucket is reached, and is then dropped instead of
// fired or cascaded.
//
// Thread-compatible: one thread (the timer thread) owns a wheel.

#ifndef TXMQ_LIB_TIMER_TIMER_WHEEL_H_
#define TXMQ_LIB_TIMER_TIMER_WHEEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace txmq {

// What a timer is for: a kind (check-back, delayed delivery, ...) and the
// 16-byte id of its subject.
struct TimerTarget {
  uint8_t kind = 0;
  std::array<uint8_t, 16> id{};

  friend bool operator==(const TimerTarget&, const TimerTarget&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const TimerTarget& t) {
    return H::combine(std::move(h), t.kind, t.id);
  }
};

struct Timer {
  int64_t due_ms = 0;
  TimerTarget target;
};

class TimerWheel {
 public:
  static constexpr int kSlotBits = 6;
  static constexpr int kSlots = 1 << kSlotBits;

  // The wheel's time starts at `now_ms`.
  explicit TimerWheel(int64_t now_ms);
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Adds a timer, replacing the target's pending one if any. One that is
  // already due fires at the next Advance.
  void Add(const Timer& timer);

  // Drops the target's pending timer. Returns whether there was one.
  bool Cancel(const TimerTarget& target);

  // Moves the wheel's time to `now_ms` (if later) and appends every timer
  // due at or before it to `fired`, ordered by due time, ties in the order
  // they were added.
  void Advance(int64_t now_ms, std::vector<Timer>* fired);

  // The earliest time at which Advance could fire something: the start of
  // the earliest non-empty bucket (a lower bound of the earliest due time),
  // or nullopt when the wheel is empty. For sleeping until then.
  std::optional<int64_t> NextExpiration() const;

  int64_t now_ms() const { return now_ms_; }
  // Pending timers (one per target).
  size_t size() const { return live_.size(); }
  // Levels in use (grows with far-future timers).
  size_t levels() const { return levels_.size(); }

 private:
  struct Entry {
    Timer timer;
    uint64_t seq;  // insertion order, for stable firing order
  };
  struct Bucket {
    int64_t expiration = -1;  // start of the bucket's span; -1 when empty
    std::vector<Entry> entries;
  };
  struct Level {
    int64_t tick;          // ms per bucket
    int64_t current_time;  // a multiple of tick
    std::array<Bucket, kSlots> buckets;
  };
  struct Pending {  // a non-empty bucket, ordered by expiration
    int64_t expiration;
    uint32_t level;
    uint32_t slot;
    bool operator>(const Pending& o) const { return expiration > o.expiration; }
  };

  void Place(Entry entry);
  void AdvanceLevels(int64_t time_ms);
  Level& LevelAt(size_t i);

  bool IsLive(const Entry& entry) const;

  int64_t now_ms_;
  uint64_t next_seq_ = 0;
  std::vector<std::unique_ptr<Level>> levels_;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>>
      pending_;
  std::vector<Entry> ready_;  // due at or before now_ms_
  // The seq of each target's live entry; entries with another seq are stale.
  absl::flat_hash_map<TimerTarget, uint64_t> live_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_TIMER_TIMER_WHEEL_H_
