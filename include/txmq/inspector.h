// Inspector: a read-only view of a txmq data directory, for tools (the
// `txmq` CLI) and monitoring.
//
// Unlike Broker::Open, an Inspector opens a directory that another process
// owns and is writing to: it reads through LMDB read-only transactions,
// which take no lock the owner waits for. Each call reads one consistent
// snapshot of what was committed when the call began, and holds it only for
// the length of the call (a read transaction pins the pages it sees, so a
// long call, such as Verify on a large directory, makes the owner's file
// grow meanwhile instead of reusing pages).
//
// What an Inspector reports is what is on disk: acknowledgements that a
// live owner holds in memory and has not written yet (it writes them in
// the background) are not in a group's committed offsets, so lag may read a
// little high while the owner runs.
//
//   absl::StatusOr<std::unique_ptr<txmq::Inspector>> in =
//       txmq::Inspector::Open("/var/lib/orders-mq");
//   if (!in.ok()) return in.status();
//   absl::StatusOr<txmq::DirectoryStats> stats = (*in)->Stat();
//
// Thread rules: one thread at a time per Inspector (use one per thread).
// One process opens a directory once (LMDB allows one environment per file
// per process): Inspector::Open refuses a directory that a Broker or
// another Inspector of this process has open, and Broker::Open one that an
// Inspector of this process has open (FAILED_PRECONDITION). Use the
// Broker's calls, or share the Inspector.

#ifndef TXMQ_INSPECTOR_H_
#define TXMQ_INSPECTOR_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txmq/broker.h"
#include "txmq/message.h"
#include "txmq/transaction.h"

namespace txmq {

// A stored message, copied out of the data file.
struct StoredMessage {
  MessageId id;
  std::string topic;
  uint32_t queue = 0;
  uint64_t offset = 0;
  std::string key;
  std::vector<std::string> tags;
  std::vector<std::pair<std::string, std::string>> properties;
  std::string body;
  absl::Time born_time;
  absl::Time store_time;
  // Retry and dead-letter copies: the failed deliveries before this copy,
  // and where the message was first stored.
  uint32_t reconsume_times = 0;
  struct Origin {
    std::string topic;
    MessageId id;
    uint32_t queue = 0;
    uint64_t offset = 0;
    absl::Time store_time;
  };
  std::optional<Origin> origin;
  // The size of the stored record (body, key, tags, properties, framing).
  size_t record_bytes = 0;
};

// A topic with the on-disk size of each queue.
struct TopicUsage {
  TopicInfo info;
  // Per queue (same order as info.queues): the bytes of the pages its
  // table occupies in the data file.
  std::vector<uint64_t> queue_bytes;
};

struct DirectoryStats {
  uint32_t format_version = 0;
  // The size of data.mdb on disk, the owner's map size (the largest the
  // file may grow before the owner enlarges the map), and the bytes of
  // pages in use (LMDB reuses freed pages below this mark).
  uint64_t file_bytes = 0;
  uint64_t map_bytes = 0;
  uint64_t used_bytes = 0;
  // Topics, user and broker-owned ("%RETRY%...", "%DLQ%..."), and the
  // messages they store.
  uint32_t topics = 0;
  uint32_t broker_topics = 0;  // of which broker-owned
  uint64_t messages = 0;
  uint64_t pending_transactions = 0;    // half messages not resolved
  uint64_t exhausted_transactions = 0;  // of which in the exhausted hold
  uint64_t delayed_messages = 0;        // stored, waiting for deliver_at
  // Consumer groups with offsets (broadcast instances count apiece), and
  // their lag summed over every topic they read.
  uint32_t groups = 0;
  uint64_t total_lag = 0;
  // The pid of the process that owns the directory for writing, or 0 when
  // none does.
  int owner_pid = 0;
};

// What Verify found.
struct VerifyReport {
  uint64_t tables = 0;   // LMDB tables walked
  uint64_t records = 0;  // rows checked
  // One line per problem: the table, the key, what is wrong.
  std::vector<std::string> problems;
  bool ok() const { return problems.empty(); }
};

class Inspector {
 public:
  // Called now and then by long calls with (work done, work in all);
  // returning false stops the call, which then fails with CANCELLED (and
  // lets go of its snapshot at once).
  using Progress = std::function<bool(uint64_t done, uint64_t total)>;

  // Opens `dir` for reading.
  // Errors:
  //   NOT_FOUND            `dir` does not exist.
  //   FAILED_PRECONDITION  `dir` is not a txmq data directory (no data file,
  //                        or a foreign LMDB environment); it was written by
  //                        a newer txmq (format version); this process has
  //                        it open through a Broker.
  //   DATA_LOSS            the data file is not LMDB, or is damaged (Open
  //                        checks every page's structure before LMDB reads
  //                        one: about 0.35 s per GB of data file with the
  //                        file in the page cache; VerifyPages lists the
  //                        damage).
  //   PERMISSION_DENIED    the directory cannot be read.
  // Never writes to the data file (LMDB's reader table, lock.mdb, gets
  // this process's reader slot while a call runs).
  static absl::StatusOr<std::unique_ptr<Inspector>> Open(std::string_view dir);

  // The page check of Open and Verify alone, for a directory Open refuses
  // as damaged: every page of the newest snapshot is reached from its
  // table's root, names itself, has the kind its place needs, and keeps its
  // entries, keys and values inside it (or in its overflow pages); no page
  // is reached twice or is both in use and free; every table's counts
  // agree with its pages. One problem per line, naming the table and the
  // page. Never reads a table through LMDB. Errors: as Open, except
  // DATA_LOSS for damage (that is the report).
  static absl::StatusOr<VerifyReport> VerifyPages(std::string_view dir);

  virtual ~Inspector() = default;

  virtual absl::StatusOr<DirectoryStats> Stat() = 0;

  // Every topic, sorted by name, with broker-owned topics ("%...") when
  // `include_broker_topics`.
  virtual absl::StatusOr<std::vector<TopicInfo>> ListTopics(
      bool include_broker_topics = false) = 0;
  // Errors: NOT_FOUND.
  virtual absl::StatusOr<TopicUsage> DescribeTopic(std::string_view name) = 0;

  // The message with `id`. Errors: NOT_FOUND (no such message: never
  // stored, deleted by retention, or its topic deleted).
  virtual absl::StatusOr<StoredMessage> GetMessage(const MessageId& id) = 0;
  // Up to `count` messages of queue `queue` of `topic`, from the first
  // stored at or after `offset`, in offset order. Errors: NOT_FOUND
  // (topic), OUT_OF_RANGE (no such queue).
  virtual absl::StatusOr<std::vector<StoredMessage>> Read(
      std::string_view topic, uint32_t queue, uint64_t offset,
      size_t count) = 0;
  // The messages of `topic` whose key is `key`, oldest first (by store
  // time), at most `limit`. Reads the key index (docs/format.md): a few
  // B-tree probes per message found. Without a usable index (an empty key,
  // or a directory an older build wrote that no Broker has opened since)
  // it reads every message of the topic. Errors: NOT_FOUND (topic),
  // CANCELLED (`progress` returned false).
  virtual absl::StatusOr<std::vector<StoredMessage>> FindByKey(
      std::string_view topic, std::string_view key, size_t limit,
      const Progress& progress = {}) = 0;

  // As Broker::ListTransactions.
  virtual absl::StatusOr<std::vector<HalfMessageInfo>> ListTransactions(
      std::string_view group = {}, size_t limit = SIZE_MAX,
      bool exhausted_only = false) = 0;
  // Every (group, topic) with offsets on disk, sorted by group and topic,
  // with lag against the stored messages (broker-internal groups, "%SYS%",
  // left out).
  virtual absl::StatusOr<std::vector<GroupLag>> ListGroups() = 0;
  // As Broker::ListDeadLetters.
  virtual absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(
      std::string_view group, size_t limit = SIZE_MAX) = 0;
  // How many dead letters ListDeadLetters would list, without reading them.
  // Errors: as ListDeadLetters.
  virtual absl::StatusOr<uint64_t> CountDeadLetters(std::string_view group) = 0;

  // Checks the snapshot's pages as VerifyPages does; when they are sound,
  // walks every table in it: every record decodes and agrees with
  // its key; offsets are dense; every topic's tables exist and no table is
  // left without a topic; consumer offsets name existing topics and lie
  // within their queues; every pending transaction, delayed message and
  // outcome has exactly the timer rows the format requires, and every
  // timer row has its target (docs/format.md). `progress` counts pages,
  // then rows.
  // Errors only when the directory cannot be read, or CANCELLED; what is
  // wrong with the directory is in the report.
  virtual absl::StatusOr<VerifyReport> Verify(
      const Progress& progress = {}) = 0;

  virtual const std::string& dir() const = 0;
};

}  // namespace txmq

#endif  // TXMQ_INSPECTOR_H_
