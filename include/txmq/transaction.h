// Transactional messages: RocketMQ's half message, local transaction,
// commit or rollback, and check-back, inside the host process.
//
//   producer                         broker
//   --------                         ------
//   Begin(message) --------------->  store a half message (durable before
//                  <--------------   Begin returns; invisible to consumers)
//   run the local transaction
//   Commit() / Rollback() -------->  one LMDB transaction: drop the half
//                                    message, and on commit append it to its
//                                    queue; consumers see it from then on
//   (crash, timeout, unknown)        the check-back timer fires: the group's
//                                    TransactionChecker looks at the host's
//                                    own database and answers commit,
//                                    rollback or unknown (checked again with
//                                    back-off; after CheckPolicy::max_checks,
//                                    the check-exhausted hold)
//
// Resolution is idempotent: committing a committed transaction returns the
// same SendResult, rolling back a rolled-back one is OK; committing a
// rolled-back transaction, or the reverse, is FAILED_PRECONDITION and
// changes nothing. An unknown id is NOT_FOUND (so is one resolved longer ago
// than Options::outcome_retention).

#ifndef TXMQ_TRANSACTION_H_
#define TXMQ_TRANSACTION_H_

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txmq/message.h"

namespace txmq {

// The id of a transaction (of its half message): 16 bytes, unique within a
// data directory, sortable by begin time. Layout (big-endian): 6 bytes begin
// time in Unix milliseconds (the broker's clock), 4 bytes broker run, 6
// bytes sequence. A value type.
class TransactionId {
 public:
  static constexpr size_t kSize = 16;

  constexpr TransactionId() = default;
  static TransactionId FromBytes(const std::array<uint8_t, kSize>& bytes);
  // Errors: INVALID_ARGUMENT unless `text` is 32 hex digits.
  static absl::StatusOr<TransactionId> Parse(std::string_view text);
  std::string ToString() const;  // 32 lowercase hex digits

  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }
  int64_t begin_time_ms() const;
  bool IsZero() const { return *this == TransactionId(); }

  friend auto operator<=>(const TransactionId&, const TransactionId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const TransactionId& id) {
    return H::combine(std::move(h), id.bytes_);
  }

 private:
  std::array<uint8_t, kSize> bytes_{};
};

// What the local transaction (or a checker) says about a transaction.
enum class TransactionState {
  kCommit,    // the local transaction committed: deliver the message
  kRollback,  // it rolled back (or never ran): drop the message
  kUnknown,   // cannot tell yet: ask again later
};

// A half message as a TransactionChecker sees it.
struct HalfMessage {
  TransactionId id;
  std::string group;
  absl::Time begin_time;  // the broker's clock
  uint32_t checks = 0;    // check-backs already answered kUnknown
  // The message (topic, key, tags, properties, body). Its id, queue and
  // offset are not assigned yet. Valid during the Check call only.
  MessageView message;
};

// Answers check-backs for one producer group from the host's own database.
//
// Thread rules: the broker calls Check on a thread of the group's own (one
// check at a time per group), holding no lock of the broker's, so a slow
// checker delays only its group's checks, and Check may call the broker. An
// exception thrown by Check counts as kUnknown.
class TransactionChecker {
 public:
  virtual ~TransactionChecker() = default;
  virtual TransactionState Check(const HalfMessage& half) = 0;
};

// When and how often a group's half messages are checked (RocketMQ's
// defaults: transactionTimeOut 6 s, transactionCheckMax 15).
struct CheckPolicy {
  // The first check comes this long after Begin (unless Begin overrides it).
  absl::Duration transaction_timeout = absl::Seconds(6);
  // After this many kUnknown answers the half message moves to the
  // check-exhausted hold: kept, listed, resolvable by hand, never checked
  // again and never dropped.
  uint32_t max_checks = 15;
  // The wait before check n+1 after n unknown answers:
  // min(max_interval, first_interval * 2^(n-1)).
  absl::Duration first_interval = absl::Seconds(5);
  absl::Duration max_interval = absl::Seconds(60);
};

struct BeginOptions {
  // The first check-back after this long instead of the group's
  // transaction_timeout (zero: the group's).
  absl::Duration first_check = absl::ZeroDuration();
};

// A pending transaction, as listings show it.
struct HalfMessageInfo {
  TransactionId id;
  std::string group;
  std::string topic;
  std::string key;
  uint32_t queue = 0;  // the queue the message goes to on commit
  absl::Time begin_time;
  uint32_t checks = 0;
  // When the next check is due (a group without a checker is checked once
  // one registers); absl::InfiniteFuture() in the exhausted hold.
  absl::Time next_check;
  bool exhausted = false;
  size_t body_bytes = 0;
};

// The handle Producer::Begin returns. Destroying it without resolving
// leaves the transaction to the check-back. Thread-compatible.
class Transaction {
 public:
  virtual ~Transaction() = default;
  virtual const TransactionId& id() const = 0;
  // Appends the message to its queue and returns what the broker assigned.
  // Returns as soon as the commit is applied, before it reaches the disk
  // ("the commit need not wait for fsync"), so a Receive right after it may
  // not see the message yet (it appears when the commit lands, moments
  // later). If a crash or a failed write loses the commit, the check-back
  // commits the message again (under a new id and offset); a conflicting
  // Rollback is refused meanwhile, and the checker answers from the local
  // database, so the outcome cannot change. Errors: FAILED_PRECONDITION
  // (rolled back already), NOT_FOUND (unknown id, or its topic was
  // deleted), and send errors.
  virtual absl::StatusOr<SendResult> Commit() = 0;
  // Drops the half message. Returns before the drop reaches the disk, like
  // Commit. Errors: FAILED_PRECONDITION (committed already), NOT_FOUND.
  virtual absl::Status Rollback() = 0;
};

// What SendInTransaction did.
struct TransactionResult {
  TransactionId id;
  // The local transaction's answer (kUnknown also when it threw).
  TransactionState state = TransactionState::kUnknown;
  // Set when the message was committed.
  std::optional<SendResult> sent;
};

}  // namespace txmq

#endif  // TXMQ_TRANSACTION_H_
