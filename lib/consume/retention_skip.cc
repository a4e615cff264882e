#include "consume/retention_skip.h"

namespace txmq {

uint64_t SkipExpired(GroupRegistry& groups,
                     const std::shared_ptr<GroupState>& state, uint32_t queue,
                     uint64_t begin) {
  const uint64_t first =
      state->topic()->queue(queue).first.load(std::memory_order_acquire);
  if (begin >= first) return begin;
  QueueCursor& cursor = state->cursor(queue);
  if (cursor.SkipTo(first) && cursor.MarkDirty()) {
    groups.SchedulePersist(state, queue);
  }
  return first;
}

}  // namespace txmq
