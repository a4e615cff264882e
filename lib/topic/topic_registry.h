// TopicRegistry: the topics of a data directory, in memory, and the writes
// that change them.
//
// Stored in the meta table (docs/format.md):
//   "topic/<name>"       -> TopicRecord (name, queue count, first queue
//                           number, create time, retention)
//   "next_queue_number"  -> u32, the first queue number never used yet
//   "dropped/<number>"   -> empty; a queue table emptied by DeleteTopic whose
//                           LMDB handle is not closed yet (see below)
// Each queue's messages live in the table "q.<number>".
//
// Deleting a topic removes its record and marks its tables "dropped/<n>" in
// one transaction; the topic is gone from then on. Dropping the tables
// (mdb_drop with del=1, which also closes their LMDB handles) must wait
// until no reader can be using them, so the writer does it later, when the
// MapGate is empty (TakeTablesToClose, CloseTables); a crash before that
// leaves "dropped/<n>" rows that Load finishes.
//
// Thread rules: Find, All and FindByQueueNumber from any thread (a mutex
// guards the maps; lookups copy a shared_ptr). Apply* and TakeTablesToClose
// on the writer thread only. Load once, before the writer starts.

#ifndef TXMQ_LIB_TOPIC_TOPIC_REGISTRY_H_
#define TXMQ_LIB_TOPIC_TOPIC_REGISTRY_H_

#include <lmdb.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/env.h"
#include "topic/topic.h"
#include "write/writer.h"

namespace txmq {

inline constexpr uint32_t kMaxQueuesPerTopic = 1024;

// Meta table keys (docs/format.md).
inline constexpr std::string_view kTopicPrefix = "topic/";
inline constexpr std::string_view kDroppedPrefix = "dropped/";
inline constexpr std::string_view kNextNumberKey = "next_queue_number";

// The name of queue table `number`: "q.<number>".
std::string TableName(uint32_t number);
// Decodes a TopicRecord (its tables not opened). Errors: DATA_LOSS.
absl::StatusOr<std::shared_ptr<Topic>> DecodeTopic(std::string_view value);

class TopicRegistry {
 public:
  // Reads every topic, opens its tables and recovers each queue's first and
  // end offsets. Errors: DATA_LOSS for a record that does not decode or a
  // table that is missing.
  static absl::StatusOr<std::unique_ptr<TopicRegistry>> Load(Env* env);

  // Fills the key index (log/key_index.h) from every stored message, when
  // Env::key_index_created() says an older build left it unfilled; then
  // clears that mark. Call after Load, before the writer starts. Empties
  // the index first, then commits in steps, growing the map as needed; a
  // crash has the next open start again. When Options::max_map_bytes
  // leaves no room, returns OK with the index still pending (readers then
  // do not use it). Errors: LMDB failures.
  absl::Status BuildKeyIndex();

  std::shared_ptr<Topic> Find(std::string_view name) const;
  std::shared_ptr<Topic> FindByQueueNumber(uint32_t number) const;
  // Sorted by name.
  std::vector<std::shared_ptr<Topic>> All() const;

  // Thread: writer only. Create: ALREADY_EXISTS, RESOURCE_EXHAUSTED (the
  // table budget Options::max_queues is spent), INVALID_ARGUMENT (queue
  // count). SetRetention: NOT_FOUND; the topic takes the new value after
  // the commit. Delete: NOT_FOUND. `on_deleted` runs after the commit.
  // `retention_ms` is a validated Topic::retention_ms
  // (retention/retention_policy.h).
  absl::Status ApplyCreate(WriteContext& ctx, std::string_view name,
                           uint32_t queue_count, int64_t retention_ms);
  absl::Status ApplySetRetention(WriteContext& ctx, std::string_view name,
                                 int64_t retention_ms);
  absl::Status ApplyDelete(WriteContext& ctx, std::string_view name,
                           std::function<void(const Topic&)> on_deleted);
  // Thread: writer only. The handles of deleted topics' tables; the caller
  // closes them once no reader can be using them.
  std::vector<MDB_dbi> TakeTablesToClose() { return std::move(to_close_); }
  bool HasTablesToClose() const { return !to_close_.empty(); }
  // Thread: writer only. Drops the tables `dbis` and forgets their
  // "dropped/" rows, in one transaction. Readers must be out (MapGate).
  absl::Status CloseTables(const std::vector<MDB_dbi>& dbis);

 private:
  explicit TopicRegistry(Env* env) : env_(env) {}
  void Publish(std::shared_ptr<Topic> topic);

  Env* const env_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Topic>> by_name_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, std::shared_ptr<Topic>> by_number_
      ABSL_GUARDED_BY(mu_);

  // Thread: writer only (and Load).
  uint32_t next_queue_number_ = 0;
  uint32_t live_tables_ = 0;
  std::vector<MDB_dbi> to_close_;
  absl::flat_hash_map<MDB_dbi, uint32_t> closing_numbers_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_TOPIC_TOPIC_REGISTRY_H_
