// The durable committed offsets of consumer groups (the "cursor" table).
//
//   key   = group '\0' topic '\0' queue (u32 big-endian)
//   value = committed offset (u64 big-endian): every message below it has
//           been acknowledged by the group
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

// Deletes every group's rows for `topic`.
int DeleteTopicCursors(MDB_txn* txn, MDB_dbi table, std::string_view topic);

}  // namespace txmq

#endif  // TXMQ_LIB_CONSUME_CURSOR_STORE_H_
