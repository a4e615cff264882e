#include "local/local_transaction_impl.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "broker/consumer_impl.h"
#include "broker/producer_impl.h"
#include "log/record_codec.h"
#include "storage/lmdb_status.h"
#include "util/status_macros.h"

namespace txmq {
namespace {

constexpr size_t kMaxKeyBytes = 511;  // LMDB's default key limit

MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

absl::Status CheckKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a table key is 1 to %d bytes, not %d", kMaxKeyBytes, key.size()));
  }
  return absl::OkStatus();
}

// Reads host tables in one LMDB transaction.
class Reader final : public LocalReader {
 public:
  Reader(const internal::LocalTables& tables, MDB_txn* txn)
      : tables_(tables), txn_(txn) {}

  absl::StatusOr<std::optional<std::string_view>> Get(
      LocalTable table, std::string_view key) const override {
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi dbi, tables_.Handle(table));
    TXMQ_RETURN_IF_ERROR(CheckKey(key));
    MDB_val k = Val(key), v;
    const int rc = mdb_get(txn_, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    if (rc != MDB_SUCCESS) return LmdbStatus(rc, "cannot read a table");
    return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
  }

  absl::Status Scan(
      LocalTable table, std::string_view prefix,
      const std::function<bool(std::string_view, std::string_view)>& fn)
      const override {
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi dbi, tables_.Handle(table));
    MDB_cursor* cursor = nullptr;
    if (int rc = mdb_cursor_open(txn_, dbi, &cursor); rc != MDB_SUCCESS) {
      return LmdbStatus(rc, "cannot read a table");
    }
    MDB_val k = Val(prefix), v;
    int rc = prefix.empty() ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
                            : mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      const std::string_view key(static_cast<const char*>(k.mv_data),
                                 k.mv_size);
      if (key.substr(0, prefix.size()) != prefix) break;
      if (!fn(key, std::string_view(static_cast<const char*>(v.mv_data),
                                    v.mv_size))) {
        break;
      }
    }
    mdb_cursor_close(cursor);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
      return LmdbStatus(rc, "cannot read a table");
    }
    return absl::OkStatus();
  }

 private:
  const internal::LocalTables& tables_;
  MDB_txn* const txn_;
};

class Transaction final : public LocalTransaction {
 public:
  Transaction(BrokerCore& core, WriteContext& ctx)
      : core_(core), ctx_(ctx), reader_(*core.tables, ctx.txn()) {}

  absl::StatusOr<std::optional<std::string_view>> Get(
      LocalTable table, std::string_view key) const override {
    return reader_.Get(table, key);
  }
  absl::Status Scan(
      LocalTable table, std::string_view prefix,
      const std::function<bool(std::string_view, std::string_view)>& fn)
      const override {
    return reader_.Scan(table, prefix, fn);
  }

  absl::Status Put(LocalTable table, std::string_view key,
                   std::string_view value) override {
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi dbi, core_.tables->Handle(table));
    TXMQ_RETURN_IF_ERROR(CheckKey(key));
    if (value.size() > core_.options.max_message_bytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "a table value is at most Options::max_message_bytes (%d bytes), "
          "not %d",
          core_.options.max_message_bytes, value.size()));
    }
    MDB_val k = Val(key), v = Val(value);
    if (int rc = mdb_put(ctx_.txn(), dbi, &k, &v, 0); rc != MDB_SUCCESS) {
      return ctx_.Fail(rc, "cannot write a table");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Delete(LocalTable table, std::string_view key) override {
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi dbi, core_.tables->Handle(table));
    TXMQ_RETURN_IF_ERROR(CheckKey(key));
    MDB_val k = Val(key);
    const int rc = mdb_del(ctx_.txn(), dbi, &k, nullptr);
    if (rc == MDB_NOTFOUND) return false;
    if (rc != MDB_SUCCESS) return ctx_.Fail(rc, "cannot write a table");
    return true;
  }

  absl::StatusOr<SendResult> Send(const Message& message) override {
    std::shared_ptr<Topic> topic = core_.topics->Find(message.topic);
    if (topic == nullptr) {
      return absl::NotFoundError(absl::StrFormat(
          "topic '%s' does not exist; create it with CreateTopic or 'txmq "
          "topic create'",
          message.topic));
    }
    TXMQ_ASSIGN_OR_RETURN(
        PendingRecord record,
        PendingRecord::Encode(message, ctx_.now_ms(),
                              core_.options.max_message_bytes));
    const uint32_t queue =
        message.key.empty()
            ? core_.local_round_robin.fetch_add(1, std::memory_order_relaxed) %
                  topic->queue_count()
            : QueueForKey(message.key, topic->queue_count());
    QueueState& q = topic->queue(queue);
    appended_.emplace_back(&q, q.writer_next);  // for a rollback
    return core_.delays->Store(ctx_, *topic, queue, record);
  }

  absl::Status Ack(Consumer& consumer, const MessageView& message) override {
    auto* local = dynamic_cast<LocalConsumer*>(&consumer);
    if (local == nullptr || !local->BelongsTo(core_)) {
      return absl::InvalidArgumentError(
          "LocalTransaction::Ack needs a consumer of this broker");
    }
    return local->AckInTransaction(ctx_, message);
  }

  absl::Time now() const override {
    return absl::FromUnixMillis(ctx_.now_ms());
  }

  // The nested transaction was aborted: the queues it appended to take
  // their next offsets back.
  void RollBack() {
    for (auto it = appended_.rbegin(); it != appended_.rend(); ++it) {
      it->first->writer_next = it->second;
    }
  }

 private:
  BrokerCore& core_;
  WriteContext& ctx_;
  Reader reader_;
  std::vector<std::pair<QueueState*, uint64_t>> appended_;
};

class LocalTransactionRequest final : public WriteRequest {
 public:
  LocalTransactionRequest(
      BrokerCore& core,
      const std::function<absl::Status(LocalTransaction&)>& fn)
      : core_(core), fn_(fn) {}

  absl::Status Apply(WriteContext& ctx) override {
    MDB_txn* nested = nullptr;
    if (int rc = mdb_txn_begin(core_.env->env(), ctx.txn(), 0, &nested);
        rc != MDB_SUCCESS) {
      return ctx.Fail(rc, "cannot begin a local transaction");
    }
    WriteContext inner(nested, ctx.now_ms(), ctx.key_index());
    Transaction tx(core_, inner);
    absl::Status status;
    try {
      status = fn_(tx);
    } catch (...) {
      status = absl::InternalError(
          "the local transaction's callback threw an exception; nothing of "
          "it was written");
    }
    if (inner.failed() || !status.ok()) {
      mdb_txn_abort(nested);
      tx.RollBack();
      // An LMDB failure (a full map) fails the batch, which grows the map
      // and applies it again; anything else fails this request alone.
      if (inner.failed()) return ctx.Fail(inner.rc(), "local transaction");
      return status;
    }
    if (int rc = mdb_txn_commit(nested); rc != MDB_SUCCESS) {
      tx.RollBack();
      return ctx.Fail(rc, "cannot commit a local transaction");
    }
    ctx.Adopt(inner);
    return absl::OkStatus();
  }

  void Complete(absl::Status status) override {
    outcome_.Set(std::move(status));
  }
  absl::Status Wait() { return outcome_.Wait(); }

 private:
  BrokerCore& core_;
  const std::function<absl::Status(LocalTransaction&)>& fn_;
  Outcome outcome_;
};

}  // namespace

absl::Status RunLocalTransaction(
    BrokerCore& core,
    const std::function<absl::Status(LocalTransaction&)>& fn) {
  TXMQ_RETURN_IF_ERROR(CheckNotOnWriterThread());
  if (!fn) {
    return absl::InvalidArgumentError("RunInTransaction needs a callback");
  }
  LocalTransactionRequest request(core, fn);
  // In kAsync mode, durable as sends are: after the commit.
  core.writer->Submit(&request);
  return request.Wait();
}

absl::Status ReadLocalTables(
    const BrokerCore& core,
    const std::function<absl::Status(const LocalReader&)>& fn) {
  TXMQ_ASSIGN_OR_RETURN(GatePass pass, EnterGate(core.env->gate()));
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(core.env->env(), nullptr, MDB_RDONLY, &txn);
      rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read the tables");
  }
  struct Abort {
    MDB_txn* txn;
    ~Abort() { mdb_txn_abort(txn); }  // also if `fn` throws
  } abort{txn};
  Reader reader(*core.tables, txn);
  return fn(reader);
}

}  // namespace txmq
