// Consumers behind retention: a group whose position is below a queue's
// first stored offset skips the messages retention deleted, which count as
// consumed, instead of failing to read them.
//
// Thread-safe (QueueCursor and GroupRegistry are).

#ifndef TXMQ_LIB_CONSUME_RETENTION_SKIP_H_
#define TXMQ_LIB_CONSUME_RETENTION_SKIP_H_

#include <cstdint>
#include <memory>

#include "consume/group_registry.h"

namespace txmq {

// For a consumer about to read offsets from `begin` on in `queue`, inside
// a read transaction it has ALREADY begun. Loads the queue's first offset
// (acquire); if `begin` is below it, marks everything below it acknowledged
// in the group's cursor (persisted in the background) and returns it,
// else returns `begin`. Every offset from the returned one up to the end
// the consumer loaded before its transaction is in its snapshot (see
// QueueState::first), so a missing one there is real damage.
uint64_t SkipExpired(GroupRegistry& groups,
                     const std::shared_ptr<GroupState>& state, uint32_t queue,
                     uint64_t begin);

}  // namespace txmq

#endif  // TXMQ_LIB_CONSUME_RETENTION_SKIP_H_
