#include "txn/txn_store.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "storage/keys.h"

namespace txmq {
namespace {

constexpr size_t kStateFixed = 4 + 1 + 8 + 8 + 2;
constexpr size_t kOutcomeFixed = 1 + 8;
constexpr size_t kOutcomeCommit = kOutcomeFixed + MessageId::kSize + 4 + 8;
constexpr size_t kTimerKeySize = 8 + 1 + 16;

MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

absl::Status Damaged(std::string_view what) {
  return absl::DataLossError(absl::StrFormat(
      "a %s row is damaged; the data directory needs repair (run 'txmq "
      "verify')",
      std::string(what)));
}

}  // namespace

std::string EncodeHalf(const TxnState& state, std::string_view record) {
  std::string out;
  out.reserve(kStateFixed + state.group.size() + record.size());
  AppendBigEndian(state.checks, 4, &out);
  out.push_back(state.exhausted ? 1 : 0);
  AppendBigEndian(static_cast<uint64_t>(state.next_check_ms), 8, &out);
  AppendBigEndian(static_cast<uint64_t>(state.begin_ms), 8, &out);
  AppendBigEndian(state.group.size(), 2, &out);
  out.append(state.group);
  out.append(record);
  return out;
}

absl::StatusOr<HalfRow> DecodeHalf(std::string_view v) {
  if (v.size() < kStateFixed) return Damaged("half");
  HalfRow row;
  TxnState& state = row.state;
  state.checks = static_cast<uint32_t>(GetBigEndian(v.data(), 4));
  state.exhausted = (v[4] & 1) != 0;
  state.next_check_ms = static_cast<int64_t>(GetBigEndian(v.data() + 5, 8));
  state.begin_ms = static_cast<int64_t>(GetBigEndian(v.data() + 13, 8));
  const size_t group = GetBigEndian(v.data() + 21, 2);
  if (v.size() < kStateFixed + group) return Damaged("half");
  state.group.assign(v.data() + kStateFixed, group);
  row.record = v.substr(kStateFixed + group);
  return row;
}

absl::StatusOr<HalfMessageInfo> DecodeHalfInfo(std::string_view key,
                                               std::string_view value) {
  if (key.size() != TransactionId::kSize) return Damaged("half");
  absl::StatusOr<HalfRow> half = DecodeHalf(value);
  if (!half.ok()) return half.status();
  const TxnState& state = half->state;
  std::array<uint8_t, TransactionId::kSize> id;
  std::memcpy(id.data(), key.data(), id.size());
  HalfMessageInfo info;
  info.id = TransactionId::FromBytes(id);
  info.group = state.group;
  info.begin_time = absl::FromUnixMillis(state.begin_ms);
  info.checks = state.checks;
  info.exhausted = state.exhausted;
  info.next_check = state.exhausted ? absl::InfiniteFuture()
                                    : absl::FromUnixMillis(state.next_check_ms);
  // The record is not aligned within the row: decode an aligned copy.
  const std::string_view record = half->record;
  std::vector<uint64_t> words((record.size() + 7) / 8);
  std::memcpy(words.data(), record.data(), record.size());
  absl::StatusOr<MessageView> view = MessageView::FromRecord(std::string_view(
      reinterpret_cast<const char*>(words.data()), record.size()));
  if (!view.ok()) return view.status();
  info.topic = std::string(view->topic());
  info.key = std::string(view->key());
  info.queue = view->queue();
  info.body_bytes = view->body().size();
  return info;
}

std::string EncodeTxnOutcome(const TxnOutcome& outcome) {
  std::string out;
  out.push_back(static_cast<char>(outcome.kind));
  AppendBigEndian(static_cast<uint64_t>(outcome.resolved_ms), 8, &out);
  if (outcome.kind == TxnOutcomeKind::kCommitted) {
    out.append(reinterpret_cast<const char*>(outcome.message_id.bytes().data()),
               MessageId::kSize);
    AppendBigEndian(outcome.queue, 4, &out);
    AppendBigEndian(outcome.offset, 8, &out);
  }
  return out;
}

absl::StatusOr<TxnOutcome> DecodeTxnOutcome(std::string_view v) {
  if (v.size() < kOutcomeFixed) return Damaged("txn_outcome");
  TxnOutcome outcome;
  outcome.kind = static_cast<TxnOutcomeKind>(v[0]);
  outcome.resolved_ms = static_cast<int64_t>(GetBigEndian(v.data() + 1, 8));
  if (outcome.kind == TxnOutcomeKind::kRolledBack) {
    if (v.size() != kOutcomeFixed) return Damaged("txn_outcome");
    return outcome;
  }
  if (outcome.kind != TxnOutcomeKind::kCommitted ||
      v.size() != kOutcomeCommit) {
    return Damaged("txn_outcome");
  }
  std::array<uint8_t, MessageId::kSize> id;
  std::memcpy(id.data(), v.data() + kOutcomeFixed, MessageId::kSize);
  outcome.message_id = MessageId::FromBytes(id);
  outcome.queue =
      static_cast<uint32_t>(GetBigEndian(v.data() + kOutcomeFixed + 16, 4));
  outcome.offset = GetBigEndian(v.data() + kOutcomeFixed + 20, 8);
  return outcome;
}

std::string TimerKey(int64_t due_ms, uint8_t kind,
                     const std::array<uint8_t, 16>& id) {
  std::string key;
  key.reserve(kTimerKeySize);
  // Offset by 2^63 so that negative times (a clock before 1970) still sort.
  AppendBigEndian(static_cast<uint64_t>(due_ms) ^ (uint64_t{1} << 63), 8, &key);
  key.push_back(static_cast<char>(kind));
  key.append(reinterpret_cast<const char*>(id.data()), id.size());
  return key;
}

std::optional<TimerRow> DecodeTimerKey(std::string_view key) {
  if (key.size() != kTimerKeySize) return std::nullopt;
  TimerRow row;
  row.due_ms =
      static_cast<int64_t>(GetBigEndian(key.data(), 8) ^ (uint64_t{1} << 63));
  row.kind = static_cast<uint8_t>(key[8]);
  std::memcpy(row.id.data(), key.data() + 9, 16);
  return row;
}

int PutRow(MDB_txn* txn, MDB_dbi dbi, std::string_view key,
           std::string_view value) {
  MDB_val k = Val(key), v = Val(value);
  return mdb_put(txn, dbi, &k, &v, 0);
}

int DeleteRow(MDB_txn* txn, MDB_dbi dbi, std::string_view key) {
  MDB_val k = Val(key);
  return mdb_del(txn, dbi, &k, nullptr);
}

int GetRow(MDB_txn* txn, MDB_dbi dbi, std::string_view key,
           std::string_view* value) {
  MDB_val k = Val(key), v;
  const int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_SUCCESS) {
    *value = std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
  }
  return rc;
}

}  // namespace txmq
