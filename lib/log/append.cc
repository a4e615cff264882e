#include "log/append.h"

#include "absl/strings/str_format.h"
#include "log/key_index.h"
#include "storage/keys.h"

namespace txmq {

absl::StatusOr<SendResult> AppendToQueue(WriteContext& ctx, Topic& topic,
                                         uint32_t queue,
                                         PendingRecord& record) {
  if (topic.deleted()) {
    return absl::NotFoundError(
        absl::StrFormat("topic '%s' was deleted", topic.name()));
  }
  QueueState& q = topic.queue(queue);
  const uint64_t offset = q.writer_next;
  const MessageId id = MessageId::Make(ctx.now_ms(), q.number, offset);
  record.Stamp(id, queue, offset, ctx.now_ms());
  const OffsetKey key(offset);
  MDB_val k{8, const_cast<char*>(key.bytes)};
  MDB_val v{record.size(), nullptr};
  // Offsets only grow, so every append lands at the end of its queue's
  // table: MDB_APPEND fills pages densely; MDB_RESERVE lets the record be
  // serialized straight into the map.
  if (int rc = mdb_put(ctx.txn(), q.dbi, &k, &v, MDB_APPEND | MDB_RESERVE);
      rc != MDB_SUCCESS) {
    return ctx.Fail(
        rc, absl::StrFormat("cannot append to topic '%s'", topic.name()));
  }
  record.WriteTo(v.mv_data);
  if (int rc = PutKeyIndex(ctx.txn(), ctx.key_index(), q.number, record.key(),
                           offset);
      rc != MDB_SUCCESS) {
    return ctx.Fail(rc, absl::StrFormat("cannot index a message of topic '%s'",
                                        topic.name()));
  }
  q.writer_next = offset + 1;
  ctx.Touch(&q);
  return SendResult{.id = id,
                    .queue = queue,
                    .offset = offset,
                    .store_time = absl::FromUnixMillis(ctx.now_ms()),
                    .deliver_at = absl::FromUnixMillis(ctx.now_ms())};
}

}  // namespace txmq
