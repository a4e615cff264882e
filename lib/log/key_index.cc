#include "log/key_index.h"

#include "storage/keys.h"

namespace txmq {
namespace {

MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

// FNV-1a, 64 bits, from `seed`: stable across builds and processes (the
// index is on disk).
uint64_t Fnv(std::string_view s, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// K: the key, or a long key's prefix and hash.
std::string Indexed(std::string_view key) {
  if (key.size() <= kMaxIndexedKeyBytes) return std::string(key);
  std::string k(key.substr(0, kLongKeyPrefixBytes));
  AppendBigEndian(Fnv(key, 0xcbf29ce484222325ULL), 8, &k);
  AppendBigEndian(Fnv(key, 0x84222325cbf29ce4ULL), 8, &k);
  return k;
}

}  // namespace

std::string KeyIndexPrefix(uint32_t number, std::string_view key) {
  const std::string k = Indexed(key);
  std::string out;
  out.reserve(4 + 2 + k.size() + 8);
  AppendBigEndian(number, 4, &out);
  AppendBigEndian(k.size(), 2, &out);
  out.append(k);
  return out;
}

std::string KeyIndexRow(uint32_t number, std::string_view key,
                        uint64_t offset) {
  std::string out = KeyIndexPrefix(number, key);
  AppendBigEndian(offset, 8, &out);
  return out;
}

bool ParseKeyIndexRow(std::string_view row, KeyIndexEntry* out) {
  if (row.size() < 4 + 2 + 8) return false;
  const size_t n = GetBigEndian(row.data() + 4, 2);
  if (row.size() != 4 + 2 + n + 8) return false;
  out->number = static_cast<uint32_t>(GetBigEndian(row.data(), 4));
  out->indexed_key = row.substr(6, n);
  out->offset = GetBigEndian(row.data() + 6 + n, 8);
  return true;
}

bool KeyIndexes(std::string_view key, std::string_view indexed_key) {
  return Indexed(key) == indexed_key;
}

int PutKeyIndex(MDB_txn* txn, MDB_dbi dbi, uint32_t number,
                std::string_view key, uint64_t offset) {
  if (key.empty()) return MDB_SUCCESS;
  const std::string row = KeyIndexRow(number, key, offset);
  MDB_val k = Val(row), v{0, nullptr};
  return mdb_put(txn, dbi, &k, &v, 0);
}

int DeleteKeyIndex(MDB_txn* txn, MDB_dbi dbi, uint32_t number,
                   std::string_view key, uint64_t offset) {
  if (key.empty()) return MDB_SUCCESS;
  const std::string row = KeyIndexRow(number, key, offset);
  MDB_val k = Val(row);
  const int rc = mdb_del(txn, dbi, &k, nullptr);
  return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

int DeleteKeyIndexOfQueue(MDB_txn* txn, MDB_dbi dbi, uint32_t number) {
  std::string prefix;
  AppendBigEndian(number, 4, &prefix);
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn, dbi, &cursor); rc != MDB_SUCCESS) {
    return rc;
  }
  MDB_val k = Val(prefix), v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS && k.mv_size >= 4 &&
         std::string_view(static_cast<const char*>(k.mv_data), 4) == prefix) {
    rc = mdb_cursor_del(cursor, 0);
    // Seek again rather than trust the position a deletion leaves.
    k = Val(prefix);
    if (rc == MDB_SUCCESS) rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  }
  mdb_cursor_close(cursor);
  return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

}  // namespace txmq
