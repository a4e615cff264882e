#include "topic/topic_registry.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "log/key_index.h"
#include "record.capnp.h"
#include "retention/retention_policy.h"
#include "storage/keys.h"
#include "storage/lmdb_status.h"
#include "txmq/message.h"
#include "util/status_macros.h"

namespace txmq {
namespace {

MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

std::string DroppedKey(uint32_t number) {
  std::string key(kDroppedPrefix);
  AppendBigEndian(number, 4, &key);
  return key;
}

// `retention_ms` rather than the topic's: SetTopicRetention stores the new
// value before the topic takes it.
std::string EncodeTopic(const Topic& topic, int64_t retention_ms) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<schema::TopicRecord>();
  root.setName(topic.name());
  root.setQueueCount(topic.queue_count());
  root.setFirstQueueNumber(topic.first_number());
  root.setCreateTimeMs(topic.create_time_ms());
  root.setRetentionMs(retention_ms);
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()),
                     bytes.size());
}

}  // namespace

std::string TableName(uint32_t number) {
  return absl::StrFormat("q.%d", number);
}

absl::StatusOr<std::shared_ptr<Topic>> DecodeTopic(std::string_view value) {
  // LMDB values are not 8-byte aligned in general; copy into words.
  kj::Array<capnp::word> words =
      kj::heapArray<capnp::word>((value.size() + 7) / 8);
  std::memcpy(words.begin(), value.data(), value.size());
  try {
    capnp::FlatArrayMessageReader reader(words);
    auto root = reader.getRoot<schema::TopicRecord>();
    if (root.getQueueCount() == 0 ||
        root.getQueueCount() > kMaxQueuesPerTopic) {
      return absl::DataLossError(
          absl::StrFormat("topic record '%s' has %d queues",
                          root.getName().cStr(), root.getQueueCount()));
    }
    return std::make_shared<Topic>(
        root.getName(), root.getQueueCount(), root.getFirstQueueNumber(),
        root.getCreateTimeMs(), RetentionMsFromRecord(root.getRetentionMs()));
  } catch (const kj::Exception& e) {
    return absl::DataLossError(absl::StrFormat(
        "a topic record does not decode (%s); the data directory is damaged",
        e.getDescription().cStr()));
  }
}

namespace {

// Reads the first and last offsets of `dbi` into `queue`.
int RecoverOffsets(MDB_txn* txn, QueueState& queue) {
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn, queue.dbi, &cursor); rc != MDB_SUCCESS) {
    return rc;
  }
  MDB_val key, val;
  int rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
  if (rc == MDB_SUCCESS && key.mv_size == 8) {
    queue.first.store(GetBigEndian(static_cast<char*>(key.mv_data), 8));
    rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
  }
  if (rc == MDB_SUCCESS) {
    if (key.mv_size != 8) {
      rc = MDB_CORRUPTED;
    } else {
      const uint64_t end = GetBigEndian(static_cast<char*>(key.mv_data), 8) + 1;
      queue.end.store(end);
      queue.writer_next = end;
    }
  } else if (rc == MDB_NOTFOUND) {
    rc = MDB_SUCCESS;  // empty queue
  }
  mdb_cursor_close(cursor);
  return rc;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TopicRegistry>> TopicRegistry::Load(Env* env) {
  auto registry = std::unique_ptr<TopicRegistry>(new TopicRegistry(env));
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env->env(), nullptr, 0, &txn); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read topics");
  }
  auto fail = [&](absl::Status s) {
    mdb_txn_abort(txn);
    return s;
  };
  const MDB_dbi meta = env->meta_table();
  MDB_val key = Val(kNextNumberKey), val;
  int rc = mdb_get(txn, meta, &key, &val);
  if (rc == MDB_SUCCESS && val.mv_size == 4) {
    registry->next_queue_number_ =
        static_cast<uint32_t>(GetBigEndian(static_cast<char*>(val.mv_data), 4));
  } else if (rc != MDB_NOTFOUND) {
    return fail(absl::DataLossError("meta key next_queue_number is damaged"));
  }

  MDB_cursor* cursor = nullptr;
  if (rc = mdb_cursor_open(txn, meta, &cursor); rc != MDB_SUCCESS) {
    return fail(LmdbStatus(rc, "cannot read topics"));
  }
  std::vector<std::shared_ptr<Topic>> topics;
  std::vector<uint32_t> dropped;
  key = Val("");
  for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
    const std::string_view k = View(key);
    if (k.substr(0, kTopicPrefix.size()) == kTopicPrefix) {
      absl::StatusOr<std::shared_ptr<Topic>> topic = DecodeTopic(View(val));
      if (!topic.ok()) {
        mdb_cursor_close(cursor);
        return fail(topic.status());
      }
      topics.push_back(*std::move(topic));
    } else if (k.substr(0, kDroppedPrefix.size()) == kDroppedPrefix &&
               k.size() == kDroppedPrefix.size() + 4) {
      dropped.push_back(static_cast<uint32_t>(
          GetBigEndian(k.data() + kDroppedPrefix.size(), 4)));
    }
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_NOTFOUND) return fail(LmdbStatus(rc, "cannot read topics"));

  // Finish deletions a crash interrupted.
  for (uint32_t number : dropped) {
    MDB_dbi dbi;
    rc = mdb_dbi_open(txn, TableName(number).c_str(), 0, &dbi);
    if (rc == MDB_SUCCESS) rc = mdb_drop(txn, dbi, 1);
    if (rc == MDB_SUCCESS || rc == MDB_NOTFOUND) {
      rc = DeleteKeyIndexOfQueue(txn, env->key_index_table(), number);
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
      return fail(LmdbStatus(rc, "cannot drop a deleted topic's table"));
    }
    std::string dk = DroppedKey(number);
    MDB_val dkey = Val(dk);
    rc = mdb_del(txn, meta, &dkey, nullptr);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
      return fail(LmdbStatus(rc, "cannot drop a deleted topic's table"));
    }
  }

  for (const std::shared_ptr<Topic>& topic : topics) {
    for (uint32_t i = 0; i < topic->queue_count(); ++i) {
      QueueState& q = topic->queue(i);
      rc = mdb_dbi_open(txn, TableName(q.number).c_str(), 0, &q.dbi);
      if (rc == MDB_NOTFOUND) {
        return fail(absl::DataLossError(absl::StrFormat(
            "queue %d of topic '%s' has no table '%s'; the data directory is "
            "damaged",
            i, topic->name(), TableName(q.number))));
      }
      if (rc == MDB_SUCCESS) rc = RecoverOffsets(txn, q);
      if (rc != MDB_SUCCESS) {
        return fail(
            LmdbStatus(rc, absl::StrFormat("cannot open queue %d of topic '%s'",
                                           i, topic->name())));
      }
    }
    registry->live_tables_ += topic->queue_count();
  }
  if (rc = mdb_txn_commit(txn); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read topics");
  }
  for (auto& topic : topics) registry->Publish(std::move(topic));
  return registry;
}

absl::Status TopicRegistry::BuildKeyIndex() {
  if (!env_->key_index_created()) return absl::OkStatus();
  constexpr size_t kRowsPerTransaction = 50000;
  // Start from empty: rows an interrupted build (or a build older than the
  // index, writing meanwhile) left may name messages that are gone.
  {
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_->env(), nullptr, 0, &txn);
    if (rc == MDB_SUCCESS) rc = mdb_drop(txn, env_->key_index_table(), 0);
    if (rc == MDB_SUCCESS) {
      rc = mdb_txn_commit(txn);
    } else if (txn != nullptr) {
      mdb_txn_abort(txn);
    }
    if (rc != MDB_SUCCESS) return LmdbStatus(rc, "cannot build the key index");
  }
  std::vector<uint64_t> scratch;
  for (const std::shared_ptr<Topic>& topic : All()) {
    for (uint32_t i = 0; i < topic->queue_count(); ++i) {
      QueueState& q = topic->queue(i);
      uint64_t from = q.first.load();
      while (from < q.end.load()) {
        MDB_txn* txn = nullptr;
        if (int rc = mdb_txn_begin(env_->env(), nullptr, 0, &txn);
            rc != MDB_SUCCESS) {
          return LmdbStatus(rc, "cannot build the key index");
        }
        MDB_cursor* cursor = nullptr;
        int rc = mdb_cursor_open(txn, q.dbi, &cursor);
        const OffsetKey start(from);
        MDB_val k{8, const_cast<char*>(start.bytes)}, v;
        if (rc == MDB_SUCCESS)
          rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
        uint64_t next = from;
        for (size_t n = 0; rc == MDB_SUCCESS && n < kRowsPerTransaction;
             ++n, rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
          const uint64_t offset =
              GetBigEndian(static_cast<char*>(k.mv_data), 8);
          scratch.resize((v.mv_size + 7) / 8);
          std::memcpy(scratch.data(), v.mv_data, v.mv_size);
          absl::StatusOr<MessageView> view =
              MessageView::FromRecord(std::string_view(
                  reinterpret_cast<const char*>(scratch.data()), v.mv_size));
          if (view.ok()) {
            rc = PutKeyIndex(txn, env_->key_index_table(), q.number,
                             view->key(), offset);
            if (rc != MDB_SUCCESS) break;
          }
          next = offset + 1;
        }
        if (cursor != nullptr) mdb_cursor_close(cursor);
        if (rc == MDB_NOTFOUND) {
          rc = MDB_SUCCESS;
          next = q.end.load();
        }
        if (rc == MDB_SUCCESS)
          rc = mdb_txn_commit(txn);
        else
          mdb_txn_abort(txn);
        if (rc == MDB_MAP_FULL) {
          if (absl::Status grown = env_->Grow(); !grown.ok()) {
            // Options::max_map_bytes leaves no room for the index: open
            // without it (still pending: lookups read the topic instead),
            // and try again at the next open.
            return absl::OkStatus();
          }
          continue;  // the same step again, in a larger map
        }
        if (rc != MDB_SUCCESS) {
          return LmdbStatus(rc, "cannot build the key index");
        }
        from = next;
        env_->RefreshUsage();
        while (env_->NeedsGrowth() && env_->NextMapSize().ok()) {
          if (!env_->Grow().ok()) break;
        }
      }
    }
  }
  return env_->FinishKeyIndex();
}

void TopicRegistry::Publish(std::shared_ptr<Topic> topic) {
  absl::MutexLock lock(&mu_);
  for (uint32_t i = 0; i < topic->queue_count(); ++i) {
    by_number_[topic->first_number() + i] = topic;
  }
  by_name_[topic->name()] = std::move(topic);
}

std::shared_ptr<Topic> TopicRegistry::Find(std::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second;
}

std::shared_ptr<Topic> TopicRegistry::FindByQueueNumber(uint32_t number) const {
  absl::MutexLock lock(&mu_);
  auto it = by_number_.find(number);
  return it == by_number_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Topic>> TopicRegistry::All() const {
  std::vector<std::shared_ptr<Topic>> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, topic] : by_name_) out.push_back(topic);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a->name() < b->name(); });
  return out;
}

absl::Status TopicRegistry::ApplyCreate(WriteContext& ctx,
                                        std::string_view name,
                                        uint32_t queue_count,
                                        int64_t retention_ms) {
  if (queue_count == 0 || queue_count > kMaxQueuesPerTopic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a topic has 1 to %d queues, not %d", kMaxQueuesPerTopic, queue_count));
  }
  if (Find(name) != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrFormat("topic '%s' already exists", std::string(name)));
  }
  const uint64_t budget = env_->config().max_queue_tables;
  const uint64_t in_use = live_tables_ + to_close_.size();
  if (in_use + queue_count > budget) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "topic '%s' needs %d queues but only %d of the %d allowed are free; "
        "delete topics or reopen with a larger Options::max_queues",
        std::string(name), queue_count, budget - std::min(budget, in_use),
        budget));
  }
  auto topic =
      std::make_shared<Topic>(std::string(name), queue_count,
                              next_queue_number_, ctx.now_ms(), retention_ms);
  for (uint32_t i = 0; i < queue_count; ++i) {
    QueueState& q = topic->queue(i);
    if (int rc = mdb_dbi_open(ctx.txn(), TableName(q.number).c_str(),
                              MDB_CREATE, &q.dbi);
        rc != MDB_SUCCESS) {
      return ctx.Fail(rc, absl::StrFormat("cannot create queue table for "
                                          "topic '%s'",
                                          std::string(name)));
    }
  }
  const std::string record = EncodeTopic(*topic, retention_ms);
  const std::string topic_key = absl::StrFormat("topic/%s", std::string(name));
  std::string next;
  AppendBigEndian(next_queue_number_ + queue_count, 4, &next);
  MDB_val k1 = Val(topic_key), v1 = Val(record);
  MDB_val k2 = Val(kNextNumberKey), v2 = Val(next);
  int rc = mdb_put(ctx.txn(), env_->meta_table(), &k1, &v1, 0);
  if (rc == MDB_SUCCESS)
    rc = mdb_put(ctx.txn(), env_->meta_table(), &k2, &v2, 0);
  if (rc != MDB_SUCCESS) {
    return ctx.Fail(
        rc, absl::StrFormat("cannot store topic '%s'", std::string(name)));
  }
  ctx.AfterCommit([this, topic, queue_count] {
    next_queue_number_ += queue_count;
    live_tables_ += queue_count;
    Publish(topic);
  });
  return absl::OkStatus();
}

absl::Status TopicRegistry::ApplySetRetention(WriteContext& ctx,
                                              std::string_view name,
                                              int64_t retention_ms) {
  std::shared_ptr<Topic> topic = Find(name);
  if (topic == nullptr) {
    return absl::NotFoundError(
        absl::StrFormat("topic '%s' does not exist", std::string(name)));
  }
  const std::string record = EncodeTopic(*topic, retention_ms);
  const std::string topic_key = absl::StrFormat("topic/%s", std::string(name));
  MDB_val k = Val(topic_key), v = Val(record);
  if (int rc = mdb_put(ctx.txn(), env_->meta_table(), &k, &v, 0);
      rc != MDB_SUCCESS) {
    return ctx.Fail(rc, absl::StrFormat("cannot store the retention of topic "
                                        "'%s'",
                                        std::string(name)));
  }
  ctx.AfterCommit(
      [topic, retention_ms] { topic->set_retention_ms(retention_ms); });
  return absl::OkStatus();
}

absl::Status TopicRegistry::ApplyDelete(
    WriteContext& ctx, std::string_view name,
    std::function<void(const Topic&)> on_deleted) {
  std::shared_ptr<Topic> topic = Find(name);
  if (topic == nullptr) {
    return absl::NotFoundError(
        absl::StrFormat("topic '%s' does not exist", std::string(name)));
  }
  // The tables keep their messages until CloseTables drops them, with no
  // reader inside the gate: a consumer racing with this deletion reads
  // intact messages (as if it had read just before), never emptied tables
  // or a reused handle.
  for (uint32_t i = 0; i < topic->queue_count(); ++i) {
    const QueueState& q = topic->queue(i);
    std::string dk = DroppedKey(q.number);
    MDB_val dkey = Val(dk), empty = Val("");
    if (int rc = mdb_put(ctx.txn(), env_->meta_table(), &dkey, &empty, 0);
        rc != MDB_SUCCESS) {
      return ctx.Fail(
          rc, absl::StrFormat("cannot delete topic '%s'", std::string(name)));
    }
  }
  const std::string topic_key = absl::StrFormat("topic/%s", std::string(name));
  MDB_val k = Val(topic_key);
  if (int rc = mdb_del(ctx.txn(), env_->meta_table(), &k, nullptr);
      rc != MDB_SUCCESS) {
    return ctx.Fail(
        rc, absl::StrFormat("cannot delete topic '%s'", std::string(name)));
  }
  ctx.AfterCommit([this, topic, on_deleted = std::move(on_deleted)] {
    topic->MarkDeleted();
    {
      absl::MutexLock lock(&mu_);
      by_name_.erase(topic->name());
      for (uint32_t i = 0; i < topic->queue_count(); ++i) {
        by_number_.erase(topic->first_number() + i);
      }
    }
    live_tables_ -= topic->queue_count();
    for (uint32_t i = 0; i < topic->queue_count(); ++i) {
      to_close_.push_back(topic->queue(i).dbi);
      closing_numbers_[topic->queue(i).dbi] = topic->queue(i).number;
    }
    if (on_deleted) on_deleted(*topic);
  });
  return absl::OkStatus();
}

absl::Status TopicRegistry::CloseTables(const std::vector<MDB_dbi>& dbis) {
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env_->env(), nullptr, 0, &txn);
      rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot drop deleted tables");
  }
  int rc = MDB_SUCCESS;
  for (MDB_dbi dbi : dbis) {
    // mdb_drop(del=1) closes the handle even if this transaction fails; the
    // "dropped/" row then survives and Load finishes the job.
    if (rc == MDB_SUCCESS) rc = mdb_drop(txn, dbi, 1);
    auto it = closing_numbers_.find(dbi);
    if (it == closing_numbers_.end()) continue;
    if (rc == MDB_SUCCESS) {
      rc = DeleteKeyIndexOfQueue(txn, env_->key_index_table(), it->second);
    }
    std::string dk = DroppedKey(it->second);
    closing_numbers_.erase(it);
    MDB_val dkey = Val(dk);
    if (rc == MDB_SUCCESS)
      rc = mdb_del(txn, env_->meta_table(), &dkey, nullptr);
  }
  if (rc == MDB_SUCCESS)
    return LmdbStatus(mdb_txn_commit(txn), "cannot drop deleted tables");
  mdb_txn_abort(txn);
  return LmdbStatus(rc, "cannot drop deleted tables");
}

}  // namespace txmq
