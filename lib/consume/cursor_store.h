// The durable committed offsets of consumer groups (the "cursor" table).
//
//   key   = group '\0' topic '\0' queue (u32 big-endian)
//   value = committed offset (u64 big-endian): every message below it has
//           been acknowledged by the group
//
// and, for acknowledgements made in local transactions above the committed
// offset (include/txmq/local_transaction.h), ack rows right after it:
//
//   key   = group '\0' topic '\0' queue (u32 big-endian) offset (u64
//   big-endian) value = empty: the message at `offset` is acknowledged for good
//
// Ack rows below the committed offset say nothing more and are deleted as
// the committed offset passes them.
//
// Names never contain '\0' (topic/names.h), so keys do not collide, and all
// rows of one group and topic are adjacent.
//
// Thread rules: the Put/Delete functions run on the writer thread inside its
// transaction; Read in any read or write transaction.

#ifndef TXMQ_LIB_CONSUME_CURSOR_STORE_H_
#define TXMQ_LIB_CONSUME_CURSOR_STORE_H_

#include <lmdb.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace txmq {

std::string CursorKey(std::string_view group, std::string_view topic,
                      uint32_t queue);

// Reads the committed offsets of queues 0..queue_count-1; nullopt for a
// queue without a row. Returns an MDB_* code.
int ReadCursors(MDB_txn* txn, MDB_dbi table, std::string_view group,
                std::string_view topic, uint32_t queue_count,
                std::vector<std::optional<uint64_t>>* out);

int PutCursor(MDB_txn* txn, MDB_dbi table, std::string_view group,
              std::string_view topic, uint32_t queue, uint64_t offset);

// Deletes every group's rows for `topic` (ack rows too).
int DeleteTopicCursors(MDB_txn* txn, MDB_dbi table, std::string_view topic);

int PutAckRow(MDB_txn* txn, MDB_dbi table, std::string_view group,
              std::string_view topic, uint32_t queue, uint64_t offset);
// Appends the offsets of the ack rows of (group, topic, queue), ascending.
int ReadAckRows(MDB_txn* txn, MDB_dbi table, std::string_view group,
                std::string_view topic, uint32_t queue,
                std::vector<uint64_t>* out);
// Deletes the ack rows of (group, topic, queue) below `offset`.
int DeleteAckRowsBelow(MDB_txn* txn, MDB_dbi table, std::string_view group,
                       std::string_view topic, uint32_t queue, uint64_t offset);

}  // namespace txmq

#endif  // TXMQ_LIB_CONSUME_CURSOR_STORE_H_
