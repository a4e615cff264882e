#include "broker/group_admin.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "consume/cursor_store.h"
#include "storage/keys.h"
#include "storage/lmdb_status.h"
#include "topic/names.h"
#include "util/status_macros.h"

namespace txmq {
namespace {

GroupLag MakeLag(const BrokerCore& core, std::string_view group,
                 const Topic& topic,
                 const std::vector<std::optional<uint64_t>>& stored) {
  std::shared_ptr<GroupState> loaded = core.groups->Find(group, topic);
  GroupLag lag{.group = std::string(group), .topic = topic.name()};
  for (uint32_t q = 0; q < topic.queue_count(); ++q) {
    GroupQueueLag entry;
    entry.queue = q;
    entry.end = topic.queue(q).end.load(std::memory_order_acquire);
    entry.committed = loaded != nullptr ? loaded->cursor(q).committed()
                                        : stored[q].value_or(0);
    // Messages retention deleted are not lag: count from the first stored.
    const uint64_t from = std::max(
        entry.committed, topic.queue(q).first.load(std::memory_order_acquire));
    entry.lag = entry.end > from ? entry.end - from : 0;
    lag.queues.push_back(entry);
  }
  return lag;
}

}  // namespace

absl::StatusOr<GroupLag> DescribeGroupLag(const BrokerCore& core,
                                          std::string_view group,
                                          std::string_view topic_name) {
  TXMQ_RETURN_IF_ERROR(ValidateProgressName(group));
  TXMQ_RETURN_IF_ERROR(ValidateName(topic_name, NameKind::kTopic));
  std::shared_ptr<Topic> topic = core.topics->Find(topic_name);
  if (topic == nullptr) {
    return absl::NotFoundError(
        absl::StrFormat("topic '%s' does not exist", std::string(topic_name)));
  }
  TXMQ_ASSIGN_OR_RETURN(GatePass pass, EnterGate(core.env->gate()));
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(core.env->env(), nullptr, MDB_RDONLY, &txn);
      rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read consumer offsets");
  }
  std::vector<std::optional<uint64_t>> stored;
  const int rc = ReadCursors(txn, core.env->cursor_table(), group, topic_name,
                             topic->queue_count(), &stored);
  mdb_txn_abort(txn);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "cannot read consumer offsets");
  bool any = core.groups->Find(group, *topic) != nullptr;
  for (const auto& offset : stored) any |= offset.has_value();
  if (!any) {
    return absl::NotFoundError(
        absl::StrFormat("group '%s' has never read topic '%s'",
                        std::string(group), std::string(topic_name)));
  }
  return MakeLag(core, group, *topic, stored);
}

absl::StatusOr<std::vector<GroupLag>> ListGroupLags(const BrokerCore& core) {
  // (group, topic) -> queue -> offset, from the cursor table.
  std::map<std::pair<std::string, std::string>, std::map<uint32_t, uint64_t>>
      rows;
  {
    TXMQ_ASSIGN_OR_RETURN(GatePass pass, EnterGate(core.env->gate()));
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(core.env->env(), nullptr, MDB_RDONLY, &txn);
        rc != MDB_SUCCESS) {
      return LmdbStatus(rc, "cannot read consumer offsets");
    }
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn, core.env->cursor_table(), &cursor);
    MDB_val k, v;
    if (rc == MDB_SUCCESS) rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
    for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      const std::string_view key(static_cast<const char*>(k.mv_data),
                                 k.mv_size);
      const size_t a = key.find('\0');
      const size_t b = a == std::string_view::npos ? a : key.find('\0', a + 1);
      if (b == std::string_view::npos || key.size() != b + 5 ||
          v.mv_size != 8) {
        continue;  // not a cursor row; 'txmq verify' reports it
      }
      rows[{std::string(key.substr(0, a)),
            std::string(key.substr(a + 1, b - a - 1))}]
          [static_cast<uint32_t>(GetBigEndian(key.data() + b + 1, 4))] =
              GetBigEndian(static_cast<const char*>(v.mv_data), 8);
    }
    if (cursor != nullptr) mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND) {
      return LmdbStatus(rc, "cannot read consumer offsets");
    }
  }
  std::vector<GroupLag> out;
  for (const auto& [key, queues] : rows) {
    std::shared_ptr<Topic> topic = core.topics->Find(key.second);
    if (topic == nullptr) continue;
    std::vector<std::optional<uint64_t>> stored(topic->queue_count());
    for (const auto& [q, offset] : queues) {
      if (q < stored.size()) stored[q] = offset;
    }
    out.push_back(MakeLag(core, key.first, *topic, stored));
  }
  return out;
}

}  // namespace txmq
