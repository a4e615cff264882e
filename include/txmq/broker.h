// txmq: an embeddable, transactional message broker on LMDB.
//
// A Broker owns one data directory. Open it once per process, share the
// Broker, and create producers and consumers from it:
//
//   absl::StatusOr<std::unique_ptr<txmq::Broker>> broker =
//       txmq::Broker::Open("/var/lib/orders-mq", {});
//   if (!broker.ok()) return broker.status();
//   (*broker)->CreateTopic("order-created", {.queues = 4}).IgnoreError();
//   auto producer = (*broker)->CreateProducer({});
//   auto result = (*producer)->Send({.topic = "order-created", .key = "o-42",
//                                    .body = "..."});
//
// Guarantees (docs/guarantees.md; each has a test):
//   - A send that returned OK is never lost: in kSync mode not by a crash or
//     a power loss, in kAsync mode not by a crash of the process.
//   - Every stored message is delivered to every consumer group that reads
//     its topic, at least once; within a queue in offset order. (Unless
//     retention deletes it first: see TopicOptions::retention.)
//   - Bad input gets a clear absl::Status and damages nothing stored.
//
// Caveats (read these):
//   - One Broker per data directory per process (an LMDB rule); a second
//     Open of the same directory, from this or another process, is refused.
//     Other processes may read the directory (the txmq CLI does) without
//     blocking the owner.
//   - Destroy producers, consumers and received batches before the Broker.
//   - A received batch pins a snapshot of the data file and holds off the
//     growth of its map; let it go quickly. If the map fills while batches
//     are held, writes wait up to 2 s for them and then fail with
//     UNAVAILABLE (release, then retry) rather than deadlock with a thread
//     that holds a batch while it sends.
//   - kAsync trades power-loss safety for speed: see Durability.
//   - Topics keep messages for 72 hours by default (TopicOptions::retention),
//     whether or not every group has consumed them; a group that falls
//     further behind skips what was deleted.
//
// Thread-safe: every Broker method may be called from any thread.

#ifndef TXMQ_BROKER_H_
#define TXMQ_BROKER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txmq/clock.h"
#include "txmq/consumer.h"
#include "txmq/local_transaction.h"
#include "txmq/message.h"
#include "txmq/producer.h"
#include "txmq/push_consumer.h"
#include "txmq/transaction.h"

namespace txmq {

enum class Durability {
  // A send returns after its data is fsynced to disk (two flushes per group
  // commit: the pages, then LMDB's meta page). Survives kill -9 and power
  // loss. The default: an acknowledged message is a durable message.
  kSync,
  // A send returns after the LMDB commit, without fsync; the file is synced
  // every `async_sync_interval`. Survives kill -9 (the kernel holds the
  // pages). A power loss (or kernel crash) may lose the last interval, and
  // because LMDB does not order its page and meta writes without fsync,
  // it can also leave the data file damaged (LMDB's MDB_NOSYNC caveat): use
  // kSync where the machine may lose power.
  kAsync,
};

enum class LogLevel { kInfo, kWarning, kError };

struct Options {
  Durability durability = Durability::kSync;
  // kAsync only: how often the data file is fsynced.
  absl::Duration async_sync_interval = absl::Milliseconds(100);

  // The initial size of the memory map (virtual address space; the file
  // grows only as data is written). The broker doubles the map (in steps of
  // at most 8 GiB) when it is 3/4 used, so a full map never reaches a
  // caller while the disk has room.
  size_t initial_map_bytes = size_t{1} << 30;
  // 0: no limit but the disk. Otherwise writes fail with RESOURCE_EXHAUSTED
  // once the map would pass this size.
  size_t max_map_bytes = 0;

  // The largest stored record (body, key, tags and properties together),
  // as RocketMQ's maxMessageSize. Larger sends fail with INVALID_ARGUMENT.
  size_t max_message_bytes = size_t{4} << 20;

  // The most queues (summed over all topics) the directory can hold; each
  // queue is an LMDB table, and LMDB fixes the table count at open.
  uint32_t max_queues = 1024;
  // The most host tables (OpenTable) the broker can open: 0 to 4096.
  uint32_t max_tables = 64;
  // The most transactions reading at once: received batches alive, plus
  // readers in other processes (the CLI).
  uint32_t max_readers = 256;

  // Open fails with NOT_FOUND instead of creating a missing directory.
  bool create_if_missing = true;

  // The broker's clock: store times, transaction begin times and check-back
  // schedules. Null: the system clock. Tests pass a ManualClock.
  std::shared_ptr<Clock> clock;

  // How long the outcome of a resolved transaction is kept, so that a late
  // or repeated Commit/Rollback gets the same answer (or
  // FAILED_PRECONDITION) rather than NOT_FOUND.
  absl::Duration outcome_retention = absl::Hours(72);

  // How often the background retention sweep looks for expired messages
  // (TopicOptions::retention): from 1 ms to 1 day. A message is deleted
  // between its expiry and one interval later (longer while the sweep
  // works through a large backlog, and, because the sweep is scheduled on
  // the broker's clock, as much longer as that clock steps back).
  absl::Duration retention_check_interval = absl::Seconds(10);

  // Optional. Receives the broker's rare notable events (map growth, a
  // failed background sync). Called from broker threads; must not block.
  std::function<void(LogLevel, std::string_view)> log;
};

struct TopicOptions {
  // Queues are the unit of order and of parallelism: 1 to 1024.
  uint32_t queues = 4;

  // How long the topic keeps a message after its store time (the broker's
  // clock). Later, a background sweep deletes it, whether or not every
  // consumer group has consumed it; absl::InfiniteDuration() keeps messages
  // forever. From 1 second to 100 years; other values are INVALID_ARGUMENT.
  // Change it later with Broker::SetTopicRetention. The broker's own topics
  // (names beginning with '%': retry and dead-letter queues) get the
  // default too; SetTopicRetention changes theirs as well.
  //
  // The sweep deletes each queue's expired prefix (in the background, in
  // write transactions of at most 1024 messages, every
  // Options::retention_check_interval) and stops at the first message that
  // has not expired: a message stored after a clock step back may outlive
  // its retention until those before it expire. It never deletes the last
  // message of a queue, so that offsets continue after a restart. A
  // consumer group behind the first stored message skips the deleted
  // messages (they count as consumed); a received batch keeps reading its
  // messages even if they are deleted meanwhile.
  absl::Duration retention = absl::Hours(72);
};

struct QueueInfo {
  uint32_t queue = 0;
  // The first stored offset and one past the last; end - first messages.
  uint64_t first_offset = 0;
  uint64_t end_offset = 0;
};

struct TopicInfo {
  std::string name;
  uint32_t queue_count = 0;
  absl::Time create_time;
  // TopicOptions::retention (absl::InfiniteDuration(): kept forever).
  absl::Duration retention;
  std::vector<QueueInfo> queues;

  uint64_t message_count() const {
    uint64_t n = 0;
    for (const QueueInfo& q : queues) n += q.end_offset - q.first_offset;
    return n;
  }
};

// A consumer group's progress on one topic.
struct GroupQueueLag {
  uint32_t queue = 0;
  // Every message below `committed` is acknowledged; `end` is one past the
  // last stored message; lag = end - max(committed, the queue's first
  // offset): the stored messages not yet acknowledged by the group
  // (messages that retention deleted are not lag).
  uint64_t committed = 0;
  uint64_t end = 0;
  uint64_t lag = 0;
};

struct GroupLag {
  std::string group;
  std::string topic;
  std::vector<GroupQueueLag> queues;

  uint64_t total() const {
    uint64_t n = 0;
    for (const GroupQueueLag& q : queues) n += q.lag;
    return n;
  }
};

// Where ResetGroup moves a group's offsets.
struct OffsetReset {
  enum class To {
    kEarliest,  // the first stored message of each queue
    kLatest,    // past the last one: only new messages
    kTime,      // each queue's first message stored at or after `time`
  };
  To to = To::kEarliest;
  absl::Time time;  // kTime only (the broker's clock)
};

// A message in a consumer group's dead-letter queue, copied out.
struct DeadLetter {
  // Where the message was first stored: its id, topic, queue and offset.
  MessageId id;
  std::string topic;
  uint32_t queue = 0;
  uint64_t offset = 0;
  std::string key;
  std::vector<std::string> tags;
  std::vector<std::pair<std::string, std::string>> properties;
  std::string body;
  absl::Time born_time;
  absl::Time store_time;  // the original store time
  absl::Time dead_time;   // when it entered the dead-letter queue
  // Redeliveries it had (the last failure was delivery 1 + this).
  uint32_t reconsume_times = 0;
  // Its offset in the dead-letter queue (topic "%DLQ%<group>", queue 0).
  uint64_t dead_letter_offset = 0;
};

struct RedriveResult {
  uint64_t redriven = 0;  // given back to the group
  uint64_t dropped = 0;   // their topic was deleted
};

struct BrokerStats {
  uint64_t pending_transactions = 0;    // half messages awaiting resolution
  uint64_t exhausted_transactions = 0;  // of which in the check-exhausted hold
  uint64_t checks = 0;                  // check-backs answered since Open
  uint64_t delayed_messages = 0;        // stored, waiting for deliver_at
  // Since Open: copies stored for redelivery (ReconsumeLater, or invisible
  // time ran out), and messages moved to dead-letter queues.
  uint64_t redeliveries = 0;
  uint64_t dead_lettered = 0;
  uint64_t expired_messages = 0;  // deleted by retention since Open
  size_t map_bytes = 0;           // current map size
  size_t used_bytes = 0;          // high-water mark of pages in the data file
  uint64_t commits = 0;           // write transactions committed since Open
  uint64_t map_growths = 0;
  // Reader slots of dead processes freed (checked at open and every
  // Options::retention_check_interval).
  uint64_t stale_readers_cleared = 0;
  // Messages handed to consumers in place (zero-copy) and, for records
  // that were not 8-byte aligned in the map, through a copy. The layout in
  // docs/format.md keeps the second at 0.
  uint64_t zero_copy_reads = 0;
  uint64_t copied_reads = 0;
};

class Broker {
 public:
  // Opens (or, when it is missing or empty, creates) the data directory
  // `dir`.
  // Errors:
  //   NOT_FOUND            `dir` is missing and !options.create_if_missing.
  //   FAILED_PRECONDITION  `dir` is open already (in this process or
  //                        another); it holds an LMDB environment that is not
  //                        txmq's; it was written by a newer txmq (format
  //                        version); it is not a directory.
  //   DATA_LOSS            data.mdb is not an LMDB file (foreign or damaged),
  //                        is shorter than its pages, has a damaged page (the
  //                        message names the table and the page; Open checks
  //                        every page's structure before LMDB reads one,
  //                        about 0.35 s per GB of data file in the page
  //                        cache; Inspector::VerifyPages lists them all), or
  //                        a record in it is damaged.
  //   PERMISSION_DENIED    the directory is not writable.
  //   INVALID_ARGUMENT     bad options.
  // A failed Open changes nothing that was stored.
  static absl::StatusOr<std::unique_ptr<Broker>> Open(
      std::string_view dir, const Options& options = {});

  // Completes queued sends, syncs, and closes the directory. Producers,
  // consumers and batches must already be destroyed.
  virtual ~Broker() = default;

  // Errors: INVALID_ARGUMENT (bad name, queue count or retention),
  // ALREADY_EXISTS, RESOURCE_EXHAUSTED (Options::max_queues would be
  // passed).
  virtual absl::Status CreateTopic(std::string_view name,
                                   const TopicOptions& options = {}) = 0;
  // Deletes the topic, its messages and every group's offsets for it.
  // Producers and consumers of it get NOT_FOUND from then on.
  // Errors: NOT_FOUND, INVALID_ARGUMENT.
  virtual absl::Status DeleteTopic(std::string_view name) = 0;
  // Changes how long `name` keeps messages (TopicOptions::retention), on
  // disk and for the next sweep; a shorter retention deletes the newly
  // expired messages at the next sweep. Also for an existing broker topic
  // ("%DLQ%<group>", to keep dead letters longer). Errors: NOT_FOUND,
  // INVALID_ARGUMENT (bad name or retention).
  virtual absl::Status SetTopicRetention(std::string_view name,
                                         absl::Duration retention) = 0;
  // Sorted by name.
  virtual std::vector<TopicInfo> ListTopics() const = 0;
  // Errors: NOT_FOUND.
  virtual absl::StatusOr<TopicInfo> DescribeTopic(
      std::string_view name) const = 0;

  // Errors: INVALID_ARGUMENT (a bad group name).
  virtual absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(
      const ProducerOptions& options = {}) = 0;
  // A consumer of `topic` in consumer group `group`. A group new to the
  // topic starts at options.start_from; that starting point is stored at
  // once, so it holds across restarts.
  // Errors: INVALID_ARGUMENT (bad group name), NOT_FOUND (no such topic).
  virtual absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(
      std::string_view group, std::string_view topic,
      const ConsumerOptions& options = {}) = 0;

  // A push consumer (include/txmq/push_consumer.h): `listener` is called
  // with each message of `topic` for consumer group `group`, on
  // options.threads threads, from now until the PushConsumer is destroyed.
  // Errors: INVALID_ARGUMENT (bad options, no listener), and those of
  // CreateConsumer.
  virtual absl::StatusOr<std::unique_ptr<PushConsumer>> CreatePushConsumer(
      std::string_view group, std::string_view topic, MessageListener listener,
      const PushConsumerOptions& options = {}) = 0;

  // Host tables and local transactions (include/txmq/local_transaction.h).
  //
  // Opens the host table `name` (1 to 127 bytes of [A-Za-z0-9_.-]),
  // creating it if missing; opening it again returns the same table.
  // Errors: INVALID_ARGUMENT (bad name), RESOURCE_EXHAUSTED
  // (Options::max_tables are open).
  virtual absl::StatusOr<LocalTable> OpenTable(std::string_view name) = 0;
  // Runs `fn` in one write transaction with the broker's own writes: its
  // table writes, sends and acknowledgements are committed together, or
  // none of them (fn returned an error or threw: that error, or INTERNAL,
  // is returned). Returns once committed, durable as a send would be
  // (Options::durability). Thread rules: `fn` runs on the broker's writer
  // thread, holding up every write while it runs: keep it short, and do
  // not call broker methods that wait for the writer from it (Send,
  // CreateConsumer, Flush, ...: they fail with FAILED_PRECONDITION there);
  // use the LocalTransaction's own. `fn` may run more than once (when the
  // data file must grow, the batch is applied again): it must have no
  // effects outside the transaction. Errors: fn's, write errors, and
  // FAILED_PRECONDITION when called from inside a transaction.
  virtual absl::Status RunInTransaction(
      const std::function<absl::Status(LocalTransaction&)>& fn) = 0;
  // Runs `fn` on a consistent snapshot of the host tables, from any
  // thread, without waiting for writes. Returns fn's status.
  virtual absl::Status ReadTables(
      const std::function<absl::Status(const LocalReader&)>& fn) const = 0;

  // Makes everything committed so far durable (useful in kAsync mode).
  virtual absl::Status Sync() = 0;

  // Consumer groups (include/txmq/consumer.h). Offsets here include
  // acknowledgements not yet written to disk.
  //
  // The progress and lag of `group` on `topic`. Errors: NOT_FOUND (no such
  // topic, or the group has never read it), INVALID_ARGUMENT (bad names).
  virtual absl::StatusOr<GroupLag> DescribeGroup(
      std::string_view group, std::string_view topic) const = 0;
  // Every (group, topic) with offsets, sorted by group then topic.
  virtual absl::StatusOr<std::vector<GroupLag>> ListGroups() const = 0;
  // Moves the group's offsets on `topic` (creating them for a new group):
  // its consumers continue from there (messages before it count as
  // acknowledged; after a move back they are delivered again). kTime finds,
  // per queue, the first message whose store time is at or after the
  // given time (a binary search, exact while the broker's clock only moves
  // forward). Consumers active during the reset may still acknowledge
  // messages they received before it. Errors: NOT_FOUND (topic),
  // INVALID_ARGUMENT (bad names).
  virtual absl::Status ResetGroup(std::string_view group,
                                  std::string_view topic,
                                  const OffsetReset& reset) = 0;

  // Dead letters (include/txmq/consumer.h, "Retries"): the messages of
  // `group` that failed every redelivery, oldest first, up to `limit`
  // (those not re-driven yet). Errors: INVALID_ARGUMENT (bad name or limit
  // 0), NOT_FOUND (the group has no dead-letter queue: no consumer of it
  // was ever created).
  virtual absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(
      std::string_view group, size_t limit = 100) const = 0;
  // Gives up to `max` dead letters of `group` (oldest first) back to the
  // group: each is delivered again at once through the group's retry queue
  // for its topic, with reconsume_times 0 (a fresh set of retries), to
  // this group only. One transaction: a crash re-drives all or none.
  // Dead letters whose topic was deleted are dropped. Errors: as for
  // ListDeadLetters.
  virtual absl::StatusOr<RedriveResult> RedriveDeadLetters(
      std::string_view group, size_t max = SIZE_MAX) = 0;

  // Transactional messages (include/txmq/transaction.h).
  //
  // Registers the checker of producer group `group` (replacing any) with
  // its policy; from now on the group's due half messages are checked,
  // including those that fell due while it had no checker (they are not
  // counted against max_checks until checked). After a restart, register
  // again. Errors: INVALID_ARGUMENT (bad group name or policy).
  virtual absl::Status RegisterChecker(
      std::string_view group, std::shared_ptr<TransactionChecker> checker,
      const CheckPolicy& policy = {}) = 0;
  // Stops checking `group`; waits for a check in progress to return.
  virtual absl::Status UnregisterChecker(std::string_view group) = 0;
  // As UnregisterChecker, but only while `checker` is the group's checker:
  // a later registration (by anyone) is left alone, and that is OK too.
  // For code that registers on behalf of others (the RPC server).
  virtual absl::Status UnregisterCheckerIf(
      std::string_view group, const TransactionChecker* checker) = 0;

  // Pending half messages, oldest first: of `group` (all groups when
  // empty), at most `limit`; only the check-exhausted hold when
  // `exhausted_only`.
  virtual absl::StatusOr<std::vector<HalfMessageInfo>> ListTransactions(
      std::string_view group = {}, size_t limit = 1000,
      bool exhausted_only = false) const = 0;
  // Resolve any transaction by id (an operator, or a host that lost the
  // handle), with the same rules as Transaction::Commit/Rollback.
  virtual absl::StatusOr<SendResult> CommitTransaction(
      const TransactionId& id) = 0;
  virtual absl::Status RollbackTransaction(const TransactionId& id) = 0;

  virtual BrokerStats Stats() const = 0;
  virtual const std::string& dir() const = 0;
};

}  // namespace txmq

#endif  // TXMQ_BROKER_H_
