#include "broker/dead_letters.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_format.h"
#include "consume/cursor_store.h"
#include "log/append.h"
#include "log/record_codec.h"
#include "log/stored_record.h"
#include "record.capnp.h"
#include "storage/keys.h"
#include "storage/lmdb_status.h"
#include "topic/names.h"
#include "txn/txn_store.h"
#include "util/status_macros.h"

namespace txmq {
namespace {

// Re-drives at most this many per transaction.
constexpr size_t kRedrivePerTransaction = 1024;

std::string Str(capnp::Text::Reader text) {
  return std::string(text.begin(), text.size());
}

absl::StatusOr<std::shared_ptr<Topic>> DeadLetterTopic(const BrokerCore& core,
                                                       std::string_view group) {
  TXMQ_RETURN_IF_ERROR(ValidateProgressName(group));
  std::shared_ptr<Topic> topic = core.topics->Find(DeadLetterTopicName(group));
  if (topic == nullptr) {
    return absl::NotFoundError(absl::StrFormat(
        "group '%s' has no dead-letter queue (no consumer of it was ever "
        "created)",
        std::string(group)));
  }
  return topic;
}

// The first offset of `dlq` not re-driven yet.
int RedriveStart(MDB_txn* txn, const BrokerCore& core, const Topic& dlq,
                 uint64_t* start) {
  std::vector<std::optional<uint64_t>> stored;
  const int rc = ReadCursors(txn, core.env->cursor_table(), kRedriveGroup,
                             dlq.name(), 1, &stored);
  if (rc != MDB_SUCCESS) return rc;
  *start = std::max(stored[0].value_or(0),
                    dlq.queue(0).first.load(std::memory_order_acquire));
  return MDB_SUCCESS;
}

}  // namespace

absl::StatusOr<DeadLetter> DecodeDeadLetter(std::string_view stored,
                                            uint64_t offset) {
  return WithStoredRecord(stored, [&](schema::MessageRecord::Reader root) {
    DeadLetter out;
    auto origin = root.getOrigin();
    const capnp::Data::Reader id = origin.getId();
    if (id.size() == MessageId::kSize) {
      std::array<uint8_t, MessageId::kSize> bytes;
      std::memcpy(bytes.data(), id.begin(), MessageId::kSize);
      out.id = MessageId::FromBytes(bytes);
    }
    out.topic = Str(origin.getTopic());
    out.queue = origin.getQueue();
    out.offset = origin.getOffset();
    out.store_time = absl::FromUnixMillis(origin.getStoreTimeMs());
    out.key = Str(root.getKey());
    for (auto tag : root.getTags()) out.tags.push_back(Str(tag));
    for (auto p : root.getProperties()) {
      out.properties.emplace_back(Str(p.getName()), Str(p.getValue()));
    }
    const capnp::Data::Reader body = root.getBody();
    out.body.assign(reinterpret_cast<const char*>(body.begin()), body.size());
    out.born_time = absl::FromUnixMillis(root.getBornTimeMs());
    out.dead_time = absl::FromUnixMillis(root.getStoreTimeMs());
    out.reconsume_times = root.getReconsumeTimes();
    out.dead_letter_offset = offset;
    return out;
  });
}

namespace {

// The origin topic of a stored dead letter.
absl::StatusOr<std::string> OriginTopic(std::string_view stored) {
  return WithStoredRecord(stored, [](schema::MessageRecord::Reader root) {
    return Str(root.getOrigin().getTopic());
  });
}

}  // namespace

absl::StatusOr<std::vector<DeadLetter>> ListGroupDeadLetters(
    const BrokerCore& core, std::string_view group, size_t limit) {
  if (limit == 0) {
    return absl::InvalidArgumentError("ListDeadLetters needs a limit >= 1");
  }
  TXMQ_ASSIGN_OR_RETURN(std::shared_ptr<Topic> dlq,
                        DeadLetterTopic(core, group));
  TXMQ_ASSIGN_OR_RETURN(GatePass pass, EnterGate(core.env->gate()));
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(core.env->env(), nullptr, MDB_RDONLY, &txn);
      rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read dead letters");
  }
  std::vector<DeadLetter> out;
  absl::Status status;
  uint64_t offset = 0;
  int rc = RedriveStart(txn, core, *dlq, &offset);
  MDB_cursor* cursor = nullptr;
  if (rc == MDB_SUCCESS) rc = mdb_cursor_open(txn, dlq->queue(0).dbi, &cursor);
  const OffsetKey first(offset);
  MDB_val k{8, const_cast<char*>(first.bytes)}, v;
  if (rc == MDB_SUCCESS) rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  for (; rc == MDB_SUCCESS && out.size() < limit;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    absl::StatusOr<DeadLetter> letter = DecodeDeadLetter(
        std::string_view(static_cast<const char*>(v.mv_data), v.mv_size),
        GetBigEndian(static_cast<const char*>(k.mv_data), 8));
    if (!letter.ok()) {
      status = letter.status();
      break;
    }
    out.push_back(*std::move(letter));
  }
  if (cursor != nullptr) mdb_cursor_close(cursor);
  mdb_txn_abort(txn);
  TXMQ_RETURN_IF_ERROR(status);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    return LmdbStatus(rc, "cannot read dead letters");
  }
  return out;
}

absl::StatusOr<RedriveResult> RedriveGroupDeadLetters(BrokerCore& core,
                                                      std::string_view group,
                                                      size_t max) {
  if (max == 0) {
    return absl::InvalidArgumentError("RedriveDeadLetters needs max >= 1");
  }
  TXMQ_ASSIGN_OR_RETURN(std::shared_ptr<Topic> dlq,
                        DeadLetterTopic(core, group));
  RedriveResult total;
  while (total.redriven + total.dropped < max) {
    RedriveResult step;
    bool more = false;
    const size_t want = std::min(kRedrivePerTransaction,
                                 max - (total.redriven + total.dropped));
    TXMQ_RETURN_IF_ERROR(
        RunWrite(*core.writer, [&](WriteContext& ctx) -> absl::Status {
          step = RedriveResult();
          if (dlq->deleted()) return absl::OkStatus();
          const QueueState& queue = dlq->queue(0);
          uint64_t offset = 0;
          if (int rc = RedriveStart(ctx.txn(), core, *dlq, &offset);
              rc != MDB_SUCCESS) {
            return ctx.Fail(rc, "cannot read the dead-letter position");
          }
          const uint64_t end =
              std::min<uint64_t>(queue.writer_next, offset + want);
          for (; offset < end; ++offset) {
            const OffsetKey key(offset);
            std::string_view stored;
            int rc = GetRow(ctx.txn(), queue.dbi,
                            std::string_view(key.bytes, 8), &stored);
            if (rc == MDB_NOTFOUND) continue;  // deleted by retention
            if (rc != MDB_SUCCESS) {
              return ctx.Fail(rc, "cannot read a dead letter");
            }
            TXMQ_ASSIGN_OR_RETURN(std::string origin, OriginTopic(stored));
            std::shared_ptr<Topic> retry =
                core.topics->Find(RetryTopicName(group, origin));
            if (retry == nullptr || core.topics->Find(origin) == nullptr) {
              ++step.dropped;
              continue;
            }
            TXMQ_ASSIGN_OR_RETURN(
                PendingRecord copy,
                PendingRecord::CopyFor(stored, retry->name(), 0, 0));
            absl::StatusOr<SendResult> sent =
                AppendToQueue(ctx, *retry, 0, copy);
            if (!sent.ok()) return sent.status();
            ++step.redriven;
          }
          if (int rc = PutCursor(ctx.txn(), core.env->cursor_table(),
                                 kRedriveGroup, dlq->name(), 0, offset);
              rc != MDB_SUCCESS) {
            return ctx.Fail(rc, "cannot store the dead-letter position");
          }
          more = offset < queue.writer_next;
          return absl::OkStatus();
        }));
    total.redriven += step.redriven;
    total.dropped += step.dropped;
    if (!more || step.redriven + step.dropped == 0) break;
  }
  return total;
}

}  // namespace txmq
