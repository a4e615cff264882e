#include "consume/cursor_store.h"

#include "storage/keys.h"

namespace txmq {
namespace {

MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

}  // namespace

std::string CursorKey(std::string_view group, std::string_view topic,
                      uint32_t queue) {
  std::string key;
  key.reserve(group.size() + topic.size() + 6);
  key.append(group);
  key.push_back('\0');
  key.append(topic);
  key.push_back('\0');
  AppendBigEndian(queue, 4, &key);
  return key;
}

int ReadCursors(MDB_txn* txn, MDB_dbi table, std::string_view group,
                std::string_view topic, uint32_t queue_count,
                std::vector<std::optional<uint64_t>>* out) {
  out->assign(queue_count, std::nullopt);
  for (uint32_t q = 0; q < queue_count; ++q) {
    const std::string key = CursorKey(group, topic, q);
    MDB_val k = Val(key), v;
    const int rc = mdb_get(txn, table, &k, &v);
    if (rc == MDB_NOTFOUND) continue;
    if (rc != MDB_SUCCESS) return rc;
    if (v.mv_size != 8) return MDB_CORRUPTED;
    (*out)[q] = GetBigEndian(static_cast<const char*>(v.mv_data), 8);
  }
  return MDB_SUCCESS;
}

int PutCursor(MDB_txn* txn, MDB_dbi table, std::string_view group,
              std::string_view topic, uint32_t queue, uint64_t offset) {
  const std::string key = CursorKey(group, topic, queue);
  char value[8];
  PutBigEndian(offset, 8, value);
  MDB_val k = Val(key), v = Val(std::string_view(value, 8));
  return mdb_put(txn, table, &k, &v, 0);
}

int DeleteTopicCursors(MDB_txn* txn, MDB_dbi table, std::string_view topic) {
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn, table, &cursor); rc != MDB_SUCCESS) {
    return rc;
  }
  std::vector<std::string> doomed;
  MDB_val k, v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
  for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    const std::string_view key(static_cast<const char*>(k.mv_data), k.mv_size);
    const size_t first = key.find('\0');
    if (first == std::string_view::npos) continue;
    const size_t second = key.find('\0', first + 1);
    if (second != std::string_view::npos &&
        key.substr(first + 1, second - first - 1) == topic) {
      doomed.emplace_back(key);
    }
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_NOTFOUND) return rc;
  for (const std::string& key : doomed) {
    MDB_val dk = Val(key);
    if (rc = mdb_del(txn, table, &dk, nullptr); rc != MDB_SUCCESS) return rc;
  }
  return MDB_SUCCESS;
}

int PutAckRow(MDB_txn* txn, MDB_dbi table, std::string_view group,
              std::string_view topic, uint32_t queue, uint64_t offset) {
  std::string key = CursorKey(group, topic, queue);
  AppendBigEndian(offset, 8, &key);
  MDB_val k = Val(key), v = Val("");
  return mdb_put(txn, table, &k, &v, 0);
}

namespace {

// Visits the ack rows of (group, topic, queue) in offset order while
// `visit(offset)` returns true.
template <typename F>
int ForEachAckRow(MDB_txn* txn, MDB_dbi table, std::string_view group,
                  std::string_view topic, uint32_t queue, F&& visit) {
  const std::string prefix = CursorKey(group, topic, queue);
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn, table, &cursor); rc != MDB_SUCCESS) {
    return rc;
  }
  MDB_val k = Val(prefix), v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    const std::string_view key(static_cast<const char*>(k.mv_data), k.mv_size);
    if (key.substr(0, prefix.size()) != prefix) break;
    if (key.size() != prefix.size() + 8) continue;  // the cursor row
    if (!visit(GetBigEndian(key.data() + prefix.size(), 8))) break;
  }
  mdb_cursor_close(cursor);
  return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

}  // namespace

int ReadAckRows(MDB_txn* txn, MDB_dbi table, std::string_view group,
                std::string_view topic, uint32_t queue,
                std::vector<uint64_t>* out) {
  return ForEachAckRow(txn, table, group, topic, queue, [&](uint64_t offset) {
    out->push_back(offset);
    return true;
  });
}

int DeleteAckRowsBelow(MDB_txn* txn, MDB_dbi table, std::string_view group,
                       std::string_view topic, uint32_t queue,
                       uint64_t offset) {
  std::vector<uint64_t> doomed;
  int rc = ForEachAckRow(txn, table, group, topic, queue, [&](uint64_t o) {
    if (o >= offset) return false;
    doomed.push_back(o);
    return true;
  });
  for (uint64_t o : doomed) {
    if (rc != MDB_SUCCESS) break;
    std::string key = CursorKey(group, topic, queue);
    AppendBigEndian(o, 8, &key);
    MDB_val k = Val(key);
    rc = mdb_del(txn, table, &k, nullptr);
  }
  return rc;
}

}  // namespace txmq
