// The key index: (queue, message key) -> offsets, for query by key
// (docs/format.md, "key_index").
//
//   key   = u32be(queue number) || u16be(n) || K || u64be(offset)
//   value = empty
//
// K is the message key when it is at most kMaxIndexedKeyBytes long, else
// its first kLongKeyPrefixBytes bytes and a 16-byte hash of the whole key
// (LMDB keys are at most 511 bytes; message keys up to 1024); n is K's
// length, so that no key's rows are a prefix range of another's. A lookup
// reads the rows of prefix u32be(number) || u16be(n) || K and confirms each
// message's full key (a long key's hash may collide).
//
// Every message with a non-empty key stored in a queue has its row, written
// in the transaction that appends it; retention deletes the rows of the
// messages it deletes, and dropping a deleted topic's tables deletes the
// rows of its queue numbers.

#ifndef TXMQ_LIB_LOG_KEY_INDEX_H_
#define TXMQ_LIB_LOG_KEY_INDEX_H_

#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace txmq {

inline constexpr size_t kMaxIndexedKeyBytes = 480;
inline constexpr size_t kLongKeyPrefixBytes = 464;

// The rows of `key` in queue `number` share this prefix.
std::string KeyIndexPrefix(uint32_t number, std::string_view key);
// The row of the message at `offset`.
std::string KeyIndexRow(uint32_t number, std::string_view key, uint64_t offset);

struct KeyIndexEntry {
  uint32_t number = 0;
  std::string_view indexed_key;  // K
  uint64_t offset = 0;
};
// False when `row` is not a key index row.
bool ParseKeyIndexRow(std::string_view row, KeyIndexEntry* out);
// True when `key` indexes as `indexed_key` (K above).
bool KeyIndexes(std::string_view key, std::string_view indexed_key);

// Each returns an MDB_* code. Put and Delete do nothing for an empty key;
// Delete of a missing row is MDB_SUCCESS.
int PutKeyIndex(MDB_txn* txn, MDB_dbi dbi, uint32_t number,
                std::string_view key, uint64_t offset);
int DeleteKeyIndex(MDB_txn* txn, MDB_dbi dbi, uint32_t number,
                   std::string_view key, uint64_t offset);
// Deletes every row of queue `number`.
int DeleteKeyIndexOfQueue(MDB_txn* txn, MDB_dbi dbi, uint32_t number);

}  // namespace txmq

#endif  // TXMQ_LIB_LOG_KEY_INDEX_H_
