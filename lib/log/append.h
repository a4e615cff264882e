// Appending a message to a queue: the one place the writer stamps and
// stores a record (plain sends and transaction commits both use it).

#ifndef TXMQ_LIB_LOG_APPEND_H_
#define TXMQ_LIB_LOG_APPEND_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "log/record_codec.h"
#include "topic/topic.h"
#include "txmq/message.h"
#include "write/writer.h"

namespace txmq {

// Thread: writer. Stamps `record` (id, queue, offset, store time) and
// appends it at the end of queue `queue` of `topic` in the batch's
// transaction. Errors: NOT_FOUND when the topic was deleted (nothing
// written); LMDB failures through ctx.Fail.
absl::StatusOr<SendResult> AppendToQueue(WriteContext& ctx, Topic& topic,
                                         uint32_t queue, PendingRecord& record);

}  // namespace txmq

#endif  // TXMQ_LIB_LOG_APPEND_H_
