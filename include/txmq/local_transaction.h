// One local transaction: the host's own tables, the messages it publishes
// and the message it acknowledges, committed atomically (DESIGN.md "Beyond
// RocketMQ"). Exactly-once processing without a second database:
//
//   txmq::LocalTable balances = *broker->OpenTable("balances");
//   for (const txmq::MessageView& m : *consumer->Receive(64, wait)) {
//     absl::Status s = broker->RunInTransaction(
//         [&](txmq::LocalTransaction& tx) -> absl::Status {
//           int64_t points = ...tx.Get(balances, user)... + 10;
//           if (auto s = tx.Put(balances, user, ...); !s.ok()) return s;
//           if (auto s = tx.Send({.topic = "points-awarded", ...}); !s.ok())
//             return s.status();
//           return tx.Ack(*consumer, m);  // never delivered again
//         });
//   }
//
// Either all of it happens (the balance changes, "points-awarded" is
// published, "course-finished" is acknowledged for the group for good,
// crash or not) or none of it does (the message is delivered again). The
// callback runs inside the broker's single writer, in the same LMDB write
// transaction as other work (group commit); a failed callback rolls back
// only its own writes (an LMDB nested transaction).
//
// Host tables are named key-value tables in the data directory (names as
// for topics: 1 to 127 bytes of [A-Za-z0-9_.-]), sorted by key bytes.
// Keys are 1 to 511 bytes; values up to Options::max_message_bytes.

#ifndef TXMQ_LOCAL_TRANSACTION_H_
#define TXMQ_LOCAL_TRANSACTION_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txmq/consumer.h"
#include "txmq/message.h"

namespace txmq {

namespace internal {
class LocalTables;
}  // namespace internal

// A host table of one broker (Broker::OpenTable). A value type; valid as
// long as the broker that returned it. A default-constructed one is no
// table (INVALID_ARGUMENT wherever it is used).
class LocalTable {
 public:
  LocalTable() = default;

 private:
  friend class internal::LocalTables;
  explicit LocalTable(uint32_t handle) : handle_(handle) {}
  uint32_t handle_ = 0;
};

// Reads of host tables, in a consistent snapshot (Broker::ReadTables), or
// in a LocalTransaction (which also sees its own writes).
class LocalReader {
 public:
  virtual ~LocalReader() = default;

  // The value of `key`, or nullopt. The view is valid until the reader's
  // callback returns or, in a LocalTransaction, until its next write.
  // Errors: INVALID_ARGUMENT (not a table of this broker, bad key).
  virtual absl::StatusOr<std::optional<std::string_view>> Get(
      LocalTable table, std::string_view key) const = 0;

  // Calls `fn(key, value)` for each key that starts with `prefix`, in key
  // order, until `fn` returns false. The views live during the call.
  virtual absl::Status Scan(
      LocalTable table, std::string_view prefix,
      const std::function<bool(std::string_view key, std::string_view value)>&
          fn) const = 0;
};

// Handed to Broker::RunInTransaction's callback; valid during the call.
class LocalTransaction : public LocalReader {
 public:
  // Writes a host table. Errors: INVALID_ARGUMENT (bad table, key or value
  // size).
  virtual absl::Status Put(LocalTable table, std::string_view key,
                           std::string_view value) = 0;
  // Removes `key`; false when it was not there.
  virtual absl::StatusOr<bool> Delete(LocalTable table,
                                      std::string_view key) = 0;

  // Stores `message` (queue chosen as a producer with QueueSelector::kAuto
  // would) if and only if the transaction commits. A delayed message
  // (deliver_at) waits as usual. Errors: as for Producer::Send.
  virtual absl::StatusOr<SendResult> Send(const Message& message) = 0;

  // Acknowledges `message`, received by `consumer` (of this broker), for
  // good if and only if the transaction commits: it is not delivered to
  // the group again, even after a crash. Errors: FAILED_PRECONDITION when
  // it is acknowledged already or its invisible time ran out (it is being
  // delivered again: let the transaction fail, and process the redelivery);
  // INVALID_ARGUMENT as for Consumer::Ack.
  virtual absl::Status Ack(Consumer& consumer, const MessageView& message) = 0;

  // The broker's clock for this transaction (store times of its sends).
  virtual absl::Time now() const = 0;
};

}  // namespace txmq

#endif  // TXMQ_LOCAL_TRANSACTION_H_
