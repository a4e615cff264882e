// The transaction tables of a data directory (docs/format.md):
//
//   half         txid -> state | MessageRecord, where
//                        state = u32be checks | u8 flags | i64be next_check_ms
//                                | i64be begin_ms | u16be group length | group
//                        (flags bit 0: in the check-exhausted hold), and the
//                        record is flat Cap'n Proto with the queue set (id,
//                        offset and store time are assigned on commit)
//   txn_outcome  txid -> u8 outcome (1 commit, 2 rollback) |
//                        i64be resolved_ms | on commit: 16-byte message id |
//                        u32be queue | u64be offset
//   timer        i64be due_ms | u8 kind | 16-byte id -> (empty)
//
// txid is the 16-byte TransactionId, so every table is ordered by begin
// time. A pending, non-exhausted transaction has exactly one check-back
// timer row, at its next_check_ms; an exhausted one has none; a resolved
// one has an outcome row and one outcome-expiry timer row at resolution +
// Options::outcome_retention, which deletes both when it fires.
// These functions keep that invariant within one write transaction.
//
// Thread rules: functions taking a write transaction run on the writer
// thread; the Read* functions in any transaction.

#ifndef TXMQ_LIB_TXN_TXN_STORE_H_
#define TXMQ_LIB_TXN_TXN_STORE_H_

#include <lmdb.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "txmq/message.h"
#include "txmq/transaction.h"

namespace txmq {

// Timer kinds (the timer table's kind byte).
inline constexpr uint8_t kTimerCheckBack = 1;      // the next check of a txid
inline constexpr uint8_t kTimerOutcomeExpiry = 2;  // forget a txid's outcome
inline constexpr uint8_t kTimerDelivery = 3;       // deliver a delayed message
// Volatile kinds (bit 7 set, kVolatileKind in timer/timer_service.h) have
// no row in the timer table; they schedule in-memory work only.
// The next retention sweep (retention/retention_sweeper.h); id all zeros.
inline constexpr uint8_t kTimerRetentionSweep = 0x80 | 5;

struct TxnTables {
  MDB_dbi half = 0;
  MDB_dbi outcome = 0;
  MDB_dbi timer = 0;
};

struct TxnState {
  uint32_t checks = 0;
  bool exhausted = false;
  int64_t next_check_ms = 0;
  int64_t begin_ms = 0;
  std::string group;
};

enum class TxnOutcomeKind : uint8_t { kCommitted = 1, kRolledBack = 2 };

struct TxnOutcome {
  TxnOutcomeKind kind = TxnOutcomeKind::kRolledBack;
  int64_t resolved_ms = 0;
  // On commit:
  MessageId message_id;
  uint32_t queue = 0;
  uint64_t offset = 0;
};

// A half row: the state, then the stored message record.
std::string EncodeHalf(const TxnState& state, std::string_view record);
struct HalfRow {
  TxnState state;
  std::string_view record;  // points into the decoded value (unaligned)
};
absl::StatusOr<HalfRow> DecodeHalf(std::string_view value);
// A half row (key = txid) as ListTransactions reports it. Errors:
// DATA_LOSS.
absl::StatusOr<HalfMessageInfo> DecodeHalfInfo(std::string_view key,
                                               std::string_view value);
std::string EncodeTxnOutcome(const TxnOutcome& outcome);
absl::StatusOr<TxnOutcome> DecodeTxnOutcome(std::string_view value);

// The timer row key: due_ms | kind | id.
std::string TimerKey(int64_t due_ms, uint8_t kind,
                     const std::array<uint8_t, 16>& id);
struct TimerRow {
  int64_t due_ms;
  uint8_t kind;
  std::array<uint8_t, 16> id;
};
std::optional<TimerRow> DecodeTimerKey(std::string_view key);

// Row access. Each returns an MDB_* code; Get* give MDB_NOTFOUND when absent.
int PutRow(MDB_txn* txn, MDB_dbi dbi, std::string_view key,
           std::string_view value);
int DeleteRow(MDB_txn* txn, MDB_dbi dbi, std::string_view key);
int GetRow(MDB_txn* txn, MDB_dbi dbi, std::string_view key,
           std::string_view* value);

inline std::string_view IdKey(const TransactionId& id) {
  return std::string_view(reinterpret_cast<const char*>(id.bytes().data()),
                          TransactionId::kSize);
}

}  // namespace txmq

#endif  // TXMQ_LIB_TXN_TXN_STORE_H_
