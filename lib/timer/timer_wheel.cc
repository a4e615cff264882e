#include "timer/timer_wheel.h"

#include <algorithm>

namespace txmq {

TimerWheel::TimerWheel(int64_t now_ms) : now_ms_(now_ms) { LevelAt(0); }

TimerWheel::Level& TimerWheel::LevelAt(size_t i) {
  while (levels_.size() <= i) {
    auto level = std::make_unique<Level>();
    level->tick = levels_.empty() ? 1 : levels_.back()->tick * kSlots;
    level->current_time = now_ms_ - now_ms_ % level->tick;
    levels_.push_back(std::move(level));
  }
  return *levels_[i];
}

bool TimerWheel::IsLive(const Entry& entry) const {
  auto it = live_.find(entry.timer.target);
  return it != live_.end() && it->second == entry.seq;
}

void TimerWheel::Add(const Timer& timer) {
  const uint64_t seq = next_seq_++;
  live_[timer.target] = seq;  // replaces any earlier timer of the target
  Place(Entry{timer, seq});
}

bool TimerWheel::Cancel(const TimerTarget& target) {
  return live_.erase(target) > 0;
}

void TimerWheel::Place(Entry entry) {
  const int64_t due = entry.timer.due_ms;
  if (due < LevelAt(0).current_time + 1) {
    ready_.push_back(std::move(entry));  // due now
    return;
  }
  // The lowest level whose window holds `due`. (A level's current bucket
  // never qualifies: the level below, with the finer clock, would have
  // taken the timer.)
  for (size_t i = 0;; ++i) {
    Level& level = LevelAt(i);
    if (due < level.current_time + level.tick * kSlots) {
      const int64_t expiration = due - due % level.tick;
      const uint32_t slot = static_cast<uint32_t>((due / level.tick) % kSlots);
      Bucket& bucket = level.buckets[slot];
      if (bucket.expiration != expiration) {
        bucket.expiration = expiration;
        pending_.push(Pending{expiration, static_cast<uint32_t>(i), slot});
      }
      bucket.entries.push_back(std::move(entry));
      return;
    }
  }
}

void TimerWheel::AdvanceLevels(int64_t time_ms) {
  for (auto& level : levels_) {
    if (time_ms >= level->current_time + level->tick) {
      level->current_time = time_ms - time_ms % level->tick;
    }
  }
}

void TimerWheel::Advance(int64_t now_ms, std::vector<Timer>* fired) {
  if (now_ms > now_ms_) {
    // Flush the buckets whose span has begun, earliest first: each flush
    // moves the clocks to the bucket's start and cascades its timers one or
    // more levels down (or into ready_).
    while (!pending_.empty() && pending_.top().expiration <= now_ms) {
      const Pending p = pending_.top();
      pending_.pop();
      Bucket& bucket = levels_[p.level]->buckets[p.slot];
      if (bucket.expiration != p.expiration) continue;  // reused since
      std::vector<Entry> entries = std::move(bucket.entries);
      bucket.entries.clear();
      bucket.expiration = -1;
      now_ms_ = std::max(now_ms_, p.expiration);
      AdvanceLevels(now_ms_);
      for (Entry& entry : entries) {
        if (IsLive(entry)) Place(std::move(entry));
      }
    }
    now_ms_ = now_ms;
    AdvanceLevels(now_ms_);
  }
  if (ready_.empty()) return;
  std::vector<Entry> due;
  due.swap(ready_);
  std::sort(due.begin(), due.end(), [](const Entry& a, const Entry& b) {
    return a.timer.due_ms != b.timer.due_ms ? a.timer.due_ms < b.timer.due_ms
                                            : a.seq < b.seq;
  });
  for (Entry& entry : due) {
    if (!IsLive(entry)) continue;
    live_.erase(entry.timer.target);
    fired->push_back(entry.timer);
  }
}

std::optional<int64_t> TimerWheel::NextExpiration() const {
  if (!ready_.empty()) return now_ms_;
  if (pending_.empty()) return std::nullopt;
  return pending_.top().expiration;
}

}  // namespace txmq
