// Inspector (include/txmq/inspector.h): reads a data directory through its
// own read-only LMDB environment, one read transaction per call.
//
// Another process may own the directory and grow its map meanwhile: a read
// transaction then fails to begin with MDB_MAP_RESIZED, and the reader
// adopts the size recorded in the file (mdb_env_set_mapsize(env, 0)) and
// begins again. Named-table handles are opened inside read transactions,
// which therefore end with mdb_txn_commit (an abort would close them).

#include "txmq/inspector.h"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "broker/dead_letters.h"
#include "consume/cursor_store.h"
#include "log/key_index.h"
#include "log/stored_record.h"
#include "storage/env.h"
#include "storage/keys.h"
#include "storage/lmdb_status.h"
#include "storage/page_check.h"
#include "topic/names.h"
#include "topic/topic_registry.h"
#include "txn/txn_store.h"
#include "util/status_macros.h"
#include "util/strings.h"

namespace txmq {
namespace {

constexpr std::string_view kMagic = "txmq";
// Named tables the inspector may open beyond those present at Open: room
// for topics a live owner creates while a command follows it.
constexpr unsigned kSpareTables = 1024;
// The problems a VerifyReport lists before "(more problems not listed)".
constexpr size_t kMaxVerifyProblems = 1000;

MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

std::string Str(capnp::Text::Reader text) {
  return std::string(text.begin(), text.size());
}

MessageId IdFrom(capnp::Data::Reader data) {
  if (data.size() != MessageId::kSize) return MessageId();
  std::array<uint8_t, MessageId::kSize> bytes;
  std::memcpy(bytes.data(), data.begin(), bytes.size());
  return MessageId::FromBytes(bytes);
}

// Copies a stored queue record out. Errors: DATA_LOSS.
absl::StatusOr<StoredMessage> DecodeStored(std::string_view record) {
  return WithStoredRecord(record, [&](schema::MessageRecord::Reader root) {
    StoredMessage m;
    m.id = IdFrom(root.getId());
    m.topic = Str(root.getTopic());
    m.queue = root.getQueue();
    m.offset = root.getOffset();
    m.key = Str(root.getKey());
    for (auto tag : root.getTags()) m.tags.push_back(Str(tag));
    for (auto p : root.getProperties()) {
      m.properties.emplace_back(Str(p.getName()), Str(p.getValue()));
    }
    const capnp::Data::Reader body = root.getBody();
    m.body.assign(reinterpret_cast<const char*>(body.begin()), body.size());
    m.born_time = absl::FromUnixMillis(root.getBornTimeMs());
    m.store_time = absl::FromUnixMillis(root.getStoreTimeMs());
    m.reconsume_times = root.getReconsumeTimes();
    if (root.hasOrigin()) {
      auto origin = root.getOrigin();
      m.origin = StoredMessage::Origin{
          .topic = Str(origin.getTopic()),
          .id = IdFrom(origin.getId()),
          .queue = origin.getQueue(),
          .offset = origin.getOffset(),
          .store_time = absl::FromUnixMillis(origin.getStoreTimeMs())};
    }
    m.record_bytes = record.size();
    return m;
  });
}

// The key of a queue record, or DATA_LOSS.
absl::StatusOr<std::string> KeyOf(std::string_view record) {
  return WithStoredRecord(record, [](schema::MessageRecord::Reader root) {
    return Str(root.getKey());
  });
}

// A cursor row key: group \0 topic \0 u32be(queue) [u64be(offset): an ack
// row]. False when the key has neither shape.
struct CursorRowKey {
  std::string_view group;
  std::string_view topic;
  uint32_t queue = 0;
  std::optional<uint64_t> ack_offset;
};
bool ParseCursorKey(std::string_view key, CursorRowKey* out) {
  const size_t a = key.find('\0');
  if (a == std::string_view::npos) return false;
  const size_t b = key.find('\0', a + 1);
  if (b == std::string_view::npos) return false;
  const size_t rest = key.size() - b - 1;
  if (rest != 4 && rest != 12) return false;
  out->group = key.substr(0, a);
  out->topic = key.substr(a + 1, b - a - 1);
  out->queue = static_cast<uint32_t>(GetBigEndian(key.data() + b + 1, 4));
  if (rest == 12) out->ack_offset = GetBigEndian(key.data() + b + 5, 8);
  return true;
}

// The pid holding an flock on `path`, from /proc/locks; 0 when none.
int FlockOwner(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  const std::string dev =
      absl::StrFormat("%02x:%02x:%d", major(st.st_dev), minor(st.st_dev),
                      static_cast<uint64_t>(st.st_ino));
  std::ifstream locks("/proc/locks");
  std::string line;
  while (std::getline(locks, line)) {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
    std::vector<absl::string_view> f =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() >= 6 && f[1] == "FLOCK" && f[5] == dev) {
      int pid = 0;
      if (absl::SimpleAtoi(f[4], &pid) && pid > 0) return pid;
    }
  }
  return 0;
}

// One read transaction; ends with commit so that the table handles opened
// in it stay open for the environment.
class ReadTxn {
 public:
  explicit ReadTxn(MDB_txn* txn) : txn_(txn) {}
  ReadTxn(ReadTxn&& o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
  ReadTxn& operator=(ReadTxn&&) = delete;
  ~ReadTxn() {
    if (txn_ != nullptr) mdb_txn_commit(txn_);
  }
  MDB_txn* get() const { return txn_; }

 private:
  MDB_txn* txn_;
};

// A topic as one snapshot has it: its queue tables open, first and end
// offsets read.
struct SnapTopic {
  std::shared_ptr<Topic> topic;
  std::vector<MDB_dbi> dbis;
  std::vector<uint64_t> first;
  std::vector<uint64_t> end;

  TopicInfo Info() const {
    TopicInfo info{
        .name = topic->name(),
        .queue_count = topic->queue_count(),
        .create_time = absl::FromUnixMillis(topic->create_time_ms()),
        .retention = topic->retention_ms() < 0
                         ? absl::InfiniteDuration()
                         : absl::Milliseconds(topic->retention_ms())};
    for (uint32_t q = 0; q < topic->queue_count(); ++q) {
      info.queues.push_back(QueueInfo{
          .queue = q, .first_offset = first[q], .end_offset = end[q]});
    }
    return info;
  }
};

absl::Status NoSuchTopic(std::string_view name) {
  return absl::NotFoundError(
      absl::StrFormat("topic '%s' does not exist", std::string(name)));
}

class InspectorImpl final : public Inspector {
 public:
  // Takes over the registration of (dev, ino) (Env::Register).
  InspectorImpl(std::string dir, uint64_t dev, uint64_t ino)
      : dir_(std::move(dir)), dev_(dev), ino_(ino) {}
  ~InspectorImpl() override {
    if (env_ != nullptr) mdb_env_close(env_);
    Env::Unregister(dev_, ino_);
  }

  // Opens the environment with room for `tables` named tables; with
  // `check_pages`, checks every page first (storage/page_check.h).
  absl::Status OpenEnv(unsigned tables, bool check_pages) {
    if (env_ != nullptr) mdb_env_close(env_);
    env_ = nullptr;
    // LMDB trusts the meta pages' page size (storage/page_check.h).
    TXMQ_RETURN_IF_ERROR(CheckMetaPages(dir_));
    if (int rc = mdb_env_create(&env_); rc != MDB_SUCCESS) {
      env_ = nullptr;
      return LmdbStatus(rc, "cannot create an LMDB environment");
    }
    mdb_env_set_maxdbs(env_, tables);
    max_tables_ = tables;
    // The owner's reader limit is in lock.mdb; this only sizes our side.
    mdb_env_set_maxreaders(env_, 4096);
    // Map the file as it is, not the size its meta page records: a damaged
    // record would fail the mmap (ENOMEM); a grown file is MDB_MAP_RESIZED
    // in Begin.
    if (struct stat st;
        ::stat((dir_ + "/data.mdb").c_str(), &st) == 0 && st.st_size > 0) {
      mdb_env_set_mapsize(env_, static_cast<size_t>(st.st_size));
    }
    const int rc = mdb_env_open(env_, dir_.c_str(),
                                MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0644);
    if (rc != MDB_SUCCESS) {
      mdb_env_close(env_);
      env_ = nullptr;
      if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH) {
        return absl::DataLossError(absl::StrFormat(
            "'%s/data.mdb' is not a txmq data file (%s); it is foreign or "
            "damaged",
            dir_, mdb_strerror(rc)));
      }
      return LmdbStatus(
          rc, absl::StrFormat("cannot open data directory '%s'", dir_));
    }
    absl::Status s =
        check_pages ? CheckPagesOnOpen(env_, dir_) : absl::OkStatus();
    if (!s.ok()) {
      mdb_env_close(env_);
      env_ = nullptr;
      return s;
    }
    return absl::OkStatus();
  }

  // Checks the magic and the format version; returns the number of named
  // tables in the environment.
  absl::StatusOr<unsigned> CheckFormat() {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    MDB_dbi main;
    MDB_stat main_stat;
    int rc = mdb_dbi_open(txn.get(), nullptr, 0, &main);
    if (rc == MDB_SUCCESS) rc = mdb_stat(txn.get(), main, &main_stat);
    if (rc != MDB_SUCCESS) return Failed(rc, "cannot read");
    rc = mdb_dbi_open(txn.get(), "meta", 0, &meta_);
    if (rc == MDB_NOTFOUND) return NotTxmq("no meta table");
    if (rc != MDB_SUCCESS) return Failed(rc, "cannot read");
    MDB_val key = Val("magic"), val;
    rc = mdb_get(txn.get(), meta_, &key, &val);
    if (rc == MDB_NOTFOUND || (rc == MDB_SUCCESS && View(val) != kMagic)) {
      return NotTxmq("no txmq magic");
    }
    key = Val("format_version");
    if (rc == MDB_SUCCESS) rc = mdb_get(txn.get(), meta_, &key, &val);
    if (rc != MDB_SUCCESS || val.mv_size != 4) {
      return absl::DataLossError(absl::StrFormat(
          "'%s' has no readable format version; the directory is damaged",
          dir_));
    }
    format_version_ =
        static_cast<uint32_t>(GetBigEndian(static_cast<char*>(val.mv_data), 4));
    if (format_version_ > kFormatVersion) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "'%s' was written by a newer txmq (format version %d; this build "
          "reads up to %d); use a newer txmq",
          dir_, format_version_, kFormatVersion));
    }
    if (format_version_ == 0) {
      return absl::DataLossError(absl::StrFormat(
          "'%s' has format version 0, which no txmq writes; the directory is "
          "damaged",
          dir_));
    }
    return static_cast<unsigned>(main_stat.ms_entries);
  }

  absl::StatusOr<DirectoryStats> Stat() override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    DirectoryStats s;
    s.format_version = format_version_;
    if (struct stat data; ::stat((dir_ + "/data.mdb").c_str(), &data) == 0) {
      s.file_bytes = static_cast<uint64_t>(data.st_size);
    }
    MDB_envinfo info;
    MDB_stat env_stat;
    mdb_env_info(env_, &info);
    mdb_env_stat(env_, &env_stat);
    s.map_bytes = info.me_mapsize;
    s.used_bytes = (info.me_last_pgno + 1) * uint64_t{env_stat.ms_psize};
    TXMQ_ASSIGN_OR_RETURN(std::vector<SnapTopic> topics, LoadTopics(txn.get()));
    for (const SnapTopic& t : topics) {
      ++s.topics;
      if (t.topic->name().starts_with('%')) ++s.broker_topics;
      for (uint32_t q = 0; q < t.topic->queue_count(); ++q) {
        s.messages += t.end[q] - t.first[q];
      }
    }
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi half, Table(txn.get(), "half"));
    if (half != kNoTable) {
      TXMQ_RETURN_IF_ERROR(
          ForEach(txn.get(), half, [&](std::string_view, std::string_view v) {
            absl::StatusOr<HalfRow> row = DecodeHalf(v);
            ++s.pending_transactions;  // (a damaged row too: verify says)
            if (!row.ok()) return absl::OkStatus();
            if (row->state.exhausted) ++s.exhausted_transactions;
            return absl::OkStatus();
          }));
    }
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi delay, Table(txn.get(), "delay"));
    if (delay != kNoTable) {
      MDB_stat st;
      if (int rc = mdb_stat(txn.get(), delay, &st); rc != MDB_SUCCESS) {
        return Failed(rc, "cannot read");
      }
      s.delayed_messages = st.ms_entries;
    }
    TXMQ_ASSIGN_OR_RETURN(std::vector<GroupLag> groups,
                          Groups(txn.get(), topics));
    std::set<std::string> names;
    for (const GroupLag& g : groups) {
      names.insert(g.group);
      s.total_lag += g.total();
    }
    s.groups = static_cast<uint32_t>(names.size());
    s.owner_pid = FlockOwner(dir_ + "/txmq.lock");
    return s;
  }

  absl::StatusOr<std::vector<TopicInfo>> ListTopics(
      bool include_broker_topics) override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    TXMQ_ASSIGN_OR_RETURN(std::vector<SnapTopic> topics, LoadTopics(txn.get()));
    std::vector<TopicInfo> out;
    for (const SnapTopic& t : topics) {
      if (!include_broker_topics && t.topic->name().starts_with('%')) continue;
      out.push_back(t.Info());
    }
    return out;
  }

  absl::StatusOr<TopicUsage> DescribeTopic(std::string_view name) override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    TXMQ_ASSIGN_OR_RETURN(SnapTopic t, LoadTopic(txn.get(), name));
    TopicUsage usage{.info = t.Info()};
    for (MDB_dbi dbi : t.dbis) {
      MDB_stat st;
      if (int rc = mdb_stat(txn.get(), dbi, &st); rc != MDB_SUCCESS) {
        return Failed(rc, "cannot read");
      }
      usage.queue_bytes.push_back(
          (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) *
          uint64_t{st.ms_psize});
    }
    return usage;
  }

  absl::StatusOr<StoredMessage> GetMessage(const MessageId& id) override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    TXMQ_ASSIGN_OR_RETURN(std::vector<SnapTopic> topics, LoadTopics(txn.get()));
    const uint32_t number = id.queue_number();
    for (const SnapTopic& t : topics) {
      const uint32_t first = t.topic->first_number();
      if (number < first || number - first >= t.topic->queue_count()) {
        continue;
      }
      const OffsetKey key(id.offset());
      MDB_val k{8, const_cast<char*>(key.bytes)}, v;
      const int rc = mdb_get(txn.get(), t.dbis[number - first], &k, &v);
      if (rc == MDB_NOTFOUND) break;
      if (rc != MDB_SUCCESS) return Failed(rc, "cannot read");
      TXMQ_ASSIGN_OR_RETURN(StoredMessage m, DecodeStored(View(v)));
      if (m.id != id) break;  // another message at that offset: not it
      return m;
    }
    return absl::NotFoundError(absl::StrFormat(
        "no message with id %s (never stored here, deleted by retention, or "
        "its topic was deleted)",
        id.ToString()));
  }

  absl::StatusOr<std::vector<StoredMessage>> Read(std::string_view topic,
                                                  uint32_t queue,
                                                  uint64_t offset,
                                                  size_t count) override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    TXMQ_ASSIGN_OR_RETURN(SnapTopic t, LoadTopic(txn.get(), topic));
    if (queue >= t.topic->queue_count()) {
      return absl::OutOfRangeError(
          absl::StrFormat("topic '%s' has queues 0 to %d; there is no queue %d",
                          t.topic->name(), t.topic->queue_count() - 1, queue));
    }
    std::vector<StoredMessage> out;
    TXMQ_RETURN_IF_ERROR(ScanQueue(
        txn.get(), t.dbis[queue], offset, [&](uint64_t, std::string_view v) {
          if (out.size() >= count) return false;
          absl::StatusOr<StoredMessage> m = DecodeStored(v);
          if (!m.ok()) {
            scan_error_ = m.status();
            return false;
          }
          out.push_back(*std::move(m));
          return true;
        }));
    return out;
  }

  absl::StatusOr<std::vector<StoredMessage>> FindByKey(
      std::string_view topic, std::string_view key, size_t limit,
      const Inspector::Progress& progress) override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    TXMQ_ASSIGN_OR_RETURN(SnapTopic t, LoadTopic(txn.get(), topic));
    uint64_t total = 0, done = 0;
    for (uint32_t q = 0; q < t.topic->queue_count(); ++q) {
      total += t.end[q] - t.first[q];
    }
    std::vector<StoredMessage> out;
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi index, KeyIndex(txn.get()));
    if (index != kNoTable && !key.empty()) {
      // Through the index: each queue's first `limit` rows of the key.
      for (uint32_t q = 0; q < t.topic->queue_count(); ++q) {
        const uint32_t number = t.topic->first_number() + q;
        const std::string prefix = KeyIndexPrefix(number, key);
        MDB_cursor* cursor = nullptr;
        if (int rc = mdb_cursor_open(txn.get(), index, &cursor);
            rc != MDB_SUCCESS) {
          return Failed(rc, "cannot read");
        }
        MDB_val k = Val(prefix), v;
        int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
        size_t taken = 0;
        absl::Status s;
        for (;
             rc == MDB_SUCCESS && taken < limit && View(k).starts_with(prefix);
             rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
          KeyIndexEntry entry;
          if (!ParseKeyIndexRow(View(k), &entry)) continue;
          const OffsetKey at(entry.offset);
          MDB_val mk{8, const_cast<char*>(at.bytes)}, mv;
          const int got = mdb_get(txn.get(), t.dbis[q], &mk, &mv);
          if (got == MDB_NOTFOUND) continue;
          if (got != MDB_SUCCESS) {
            s = Failed(got, "cannot read");
            break;
          }
          absl::StatusOr<StoredMessage> m = DecodeStored(View(mv));
          if (!m.ok()) {
            s = m.status();
            break;
          }
          if (m->key != key) continue;  // a long key's hash collided
          out.push_back(*std::move(m));
          ++taken;
        }
        mdb_cursor_close(cursor);
        if (!s.ok()) return s;
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
          return Failed(rc, "cannot read");
        }
        if (progress && !progress(q + 1, t.topic->queue_count())) {
          return absl::CancelledError("the search was stopped");
        }
      }
      std::sort(out.begin(), out.end(),
                [](const auto& a, const auto& b) { return a.id < b.id; });
      if (out.size() > limit) out.resize(limit);
      return out;
    }
    // No usable index (a directory an older build wrote, not reopened
    // since): read everything.
    for (uint32_t q = 0; q < t.topic->queue_count(); ++q) {
      TXMQ_RETURN_IF_ERROR(
          ScanQueue(txn.get(), t.dbis[q], 0, [&](uint64_t, std::string_view v) {
            if (progress && (++done & 0xffff) == 0 && !progress(done, total)) {
              scan_error_ = absl::CancelledError("the search was stopped");
              return false;
            }
            absl::StatusOr<std::string> k = KeyOf(v);
            if (!k.ok()) {
              scan_error_ = k.status();
              return false;
            }
            if (*k != key) return true;
            absl::StatusOr<StoredMessage> m = DecodeStored(v);
            if (!m.ok()) {
              scan_error_ = m.status();
              return false;
            }
            out.push_back(*std::move(m));
            return true;
          }));
    }
    if (progress) progress(total, total);
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      return a.id < b.id;  // store time, then queue number and offset
    });
    if (out.size() > limit) out.resize(limit);
    return out;
  }

  absl::StatusOr<std::vector<HalfMessageInfo>> ListTransactions(
      std::string_view group, size_t limit, bool exhausted_only) override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    std::vector<HalfMessageInfo> out;
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi half, Table(txn.get(), "half"));
    if (half == kNoTable) return out;
    absl::Status s =
        ForEach(txn.get(), half, [&](std::string_view k, std::string_view v) {
          if (out.size() >= limit) return absl::CancelledError();
          absl::StatusOr<HalfMessageInfo> info = DecodeHalfInfo(k, v);
          if (!info.ok()) return absl::OkStatus();  // verify reports it
          if (!group.empty() && info->group != group) return absl::OkStatus();
          if (exhausted_only && !info->exhausted) return absl::OkStatus();
          out.push_back(*std::move(info));
          return absl::OkStatus();
        });
    if (!s.ok() && !absl::IsCancelled(s)) return s;
    return out;
  }

  absl::StatusOr<std::vector<GroupLag>> ListGroups() override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    TXMQ_ASSIGN_OR_RETURN(std::vector<SnapTopic> topics, LoadTopics(txn.get()));
    return Groups(txn.get(), topics);
  }

  absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(
      std::string_view group, size_t limit) override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    TXMQ_ASSIGN_OR_RETURN(DeadLetterQueue dlq,
                          LoadDeadLetters(txn.get(), group));
    std::vector<DeadLetter> out;
    TXMQ_RETURN_IF_ERROR(ScanQueue(txn.get(), dlq.topic.dbis[0], dlq.start,
                                   [&](uint64_t offset, std::string_view v) {
                                     if (out.size() >= limit) return false;
                                     absl::StatusOr<DeadLetter> letter =
                                         DecodeDeadLetter(v, offset);
                                     if (!letter.ok()) {
                                       scan_error_ = letter.status();
                                       return false;
                                     }
                                     out.push_back(*std::move(letter));
                                     return true;
                                   }));
    return out;
  }

  absl::StatusOr<uint64_t> CountDeadLetters(std::string_view group) override {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin());
    TXMQ_ASSIGN_OR_RETURN(DeadLetterQueue dlq,
                          LoadDeadLetters(txn.get(), group));
    return dlq.topic.end[0] - dlq.start;
  }

  absl::StatusOr<VerifyReport> Verify(
      const Inspector::Progress& progress) override;

  // The page check of Verify, in a snapshot it keeps in `*txn` when every
  // page is sound (the report is then empty). `progress` counts pages.
  absl::StatusOr<VerifyReport> VerifyPages(std::optional<ReadTxn>* txn,
                                           const Inspector::Progress& progress);

  const std::string& dir() const override { return dir_; }

 private:
  static constexpr MDB_dbi kNoTable = ~MDB_dbi{0};

  absl::Status Failed(int rc, std::string_view what) const {
    return LmdbStatus(rc, absl::StrFormat("%s '%s'", what, dir_));
  }
  absl::Status NotTxmq(std::string_view why) const {
    return absl::FailedPreconditionError(
        absl::StrFormat("'%s' is not a txmq data directory (%s)", dir_, why));
  }

  // Begins a read transaction, adopting a map the owner grew, and room for
  // the tables the owner created (handles are never closed and queue
  // numbers never reused, so a long-lived Inspector needs more in time).
  // A read transaction; with `open_meta`, the meta table's handle is open
  // in it (which reads pages of the main table; the page check of
  // VerifyPages must come first, and opens it after).
  absl::StatusOr<ReadTxn> Begin(bool open_meta = true) {
    for (int attempt = 0;; ++attempt) {
      MDB_txn* txn = nullptr;
      const int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
      if (rc == MDB_SUCCESS) {
        MDB_dbi main;
        MDB_stat st;
        if (attempt < 8 &&
            mdb_dbi_open(txn, nullptr, 0, &main) == MDB_SUCCESS &&
            mdb_stat(txn, main, &st) == MDB_SUCCESS &&
            st.ms_entries + kSpareTables / 2 > max_tables_) {
          mdb_txn_abort(txn);
          TXMQ_RETURN_IF_ERROR(
              OpenEnv(static_cast<unsigned>(st.ms_entries) + kSpareTables,
                      /*check_pages=*/false));
          continue;
        }
        // A new environment has no handles yet: open meta's again (kept
        // by the commit that ends this transaction).
        // (No meta table: CheckFormat says what that means.)
        if (int r =
                open_meta ? mdb_dbi_open(txn, "meta", 0, &meta_) : MDB_SUCCESS;
            r != MDB_SUCCESS && r != MDB_NOTFOUND) {
          mdb_txn_abort(txn);
          return Failed(r, "cannot read");
        }
        return ReadTxn(txn);
      }
      if (rc == MDB_MAP_RESIZED && attempt < 8) {
        if (int r = mdb_env_set_mapsize(env_, 0); r != MDB_SUCCESS) {
          return Failed(r, "cannot map");
        }
        continue;
      }
      return Failed(rc, "cannot read");
    }
  }

  // The handle of a named table, or kNoTable when it does not exist.
  absl::StatusOr<MDB_dbi> Table(MDB_txn* txn, const std::string& name) {
    MDB_dbi dbi;
    const int rc = mdb_dbi_open(txn, name.c_str(), 0, &dbi);
    if (rc == MDB_NOTFOUND) return kNoTable;
    if (rc != MDB_SUCCESS) {
      return Failed(rc, absl::StrFormat("cannot open table %s of", name));
    }
    return dbi;
  }

  // The key index, or kNoTable when the directory has none or it is not
  // filled yet (meta "key_index_pending").
  absl::StatusOr<MDB_dbi> KeyIndex(MDB_txn* txn) {
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi index, Table(txn, "key_index"));
    MDB_val k = Val("key_index_pending"), v;
    const int rc = mdb_get(txn, meta_, &k, &v);
    if (rc == MDB_SUCCESS) return kNoTable;
    if (rc != MDB_NOTFOUND) return Failed(rc, "cannot read");
    return index;
  }

  // Calls fn(key, value) for every row of `dbi`; stops at its first error.
  template <typename F>
  absl::Status ForEach(MDB_txn* txn, MDB_dbi dbi, F&& fn) {
    MDB_cursor* cursor = nullptr;
    if (int rc = mdb_cursor_open(txn, dbi, &cursor); rc != MDB_SUCCESS) {
      return Failed(rc, "cannot read");
    }
    MDB_val k, v;
    int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
    absl::Status s;
    for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      s = fn(View(k), View(v));
      if (!s.ok()) break;
    }
    mdb_cursor_close(cursor);
    if (!s.ok()) return s;
    if (rc != MDB_NOTFOUND) return Failed(rc, "cannot read");
    return absl::OkStatus();
  }

  // Calls fn(offset, record) for the records of a queue table from the
  // first at or after `from`, while it returns true. A decoding error fn
  // met goes in scan_error_ and is returned.
  template <typename F>
  absl::Status ScanQueue(MDB_txn* txn, MDB_dbi dbi, uint64_t from, F&& fn) {
    scan_error_ = absl::OkStatus();
    MDB_cursor* cursor = nullptr;
    if (int rc = mdb_cursor_open(txn, dbi, &cursor); rc != MDB_SUCCESS) {
      return Failed(rc, "cannot read");
    }
    const OffsetKey first(from);
    MDB_val k{8, const_cast<char*>(first.bytes)}, v;
    int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      if (k.mv_size != 8) {
        rc = MDB_CORRUPTED;
        break;
      }
      if (!fn(GetBigEndian(static_cast<char*>(k.mv_data), 8), View(v))) break;
    }
    mdb_cursor_close(cursor);
    if (!scan_error_.ok()) return scan_error_;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
      return Failed(rc, "cannot read");
    }
    return absl::OkStatus();
  }

  // Opens the queue tables of `topic` and reads their offsets.
  absl::StatusOr<SnapTopic> Snap(MDB_txn* txn, std::shared_ptr<Topic> topic) {
    SnapTopic t{.topic = std::move(topic)};
    for (uint32_t q = 0; q < t.topic->queue_count(); ++q) {
      const std::string name = TableName(t.topic->first_number() + q);
      TXMQ_ASSIGN_OR_RETURN(MDB_dbi dbi, Table(txn, name));
      if (dbi == kNoTable) {
        return absl::DataLossError(absl::StrFormat(
            "queue %d of topic '%s' has no table '%s'; the data directory is "
            "damaged",
            q, t.topic->name(), name));
      }
      MDB_cursor* cursor = nullptr;
      if (int rc = mdb_cursor_open(txn, dbi, &cursor); rc != MDB_SUCCESS) {
        return Failed(rc, "cannot read");
      }
      MDB_val k, v;
      uint64_t first = 0, end = 0;
      int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
      if (rc == MDB_SUCCESS && k.mv_size == 8) {
        first = GetBigEndian(static_cast<char*>(k.mv_data), 8);
        rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
        if (rc == MDB_SUCCESS && k.mv_size == 8) {
          end = GetBigEndian(static_cast<char*>(k.mv_data), 8) + 1;
        }
      }
      mdb_cursor_close(cursor);
      if (rc == MDB_SUCCESS && k.mv_size != 8) rc = MDB_CORRUPTED;
      if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return Failed(rc, "cannot read");
      }
      t.dbis.push_back(dbi);
      t.first.push_back(first);
      t.end.push_back(end);
    }
    return t;
  }

  absl::StatusOr<SnapTopic> LoadTopic(MDB_txn* txn, std::string_view name) {
    std::string key(kTopicPrefix);
    key.append(name);
    MDB_val k = Val(key), v;
    const int rc = mdb_get(txn, meta_, &k, &v);
    if (rc == MDB_NOTFOUND) return NoSuchTopic(name);
    if (rc != MDB_SUCCESS) return Failed(rc, "cannot read");
    TXMQ_ASSIGN_OR_RETURN(std::shared_ptr<Topic> topic, DecodeTopic(View(v)));
    return Snap(txn, std::move(topic));
  }

  // Every topic, sorted by name (the meta table's order).
  absl::StatusOr<std::vector<SnapTopic>> LoadTopics(MDB_txn* txn) {
    std::vector<std::shared_ptr<Topic>> topics;
    MDB_cursor* cursor = nullptr;
    if (int rc = mdb_cursor_open(txn, meta_, &cursor); rc != MDB_SUCCESS) {
      return Failed(rc, "cannot read");
    }
    MDB_val k = Val(kTopicPrefix), v;
    int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    absl::Status s;
    for (; rc == MDB_SUCCESS && View(k).starts_with(kTopicPrefix);
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      absl::StatusOr<std::shared_ptr<Topic>> topic = DecodeTopic(View(v));
      if (!topic.ok()) {
        s = topic.status();
        break;
      }
      topics.push_back(*std::move(topic));
    }
    mdb_cursor_close(cursor);
    if (!s.ok()) return s;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
      return Failed(rc, "cannot read");
    }
    std::vector<SnapTopic> out;
    for (auto& topic : topics) {
      TXMQ_ASSIGN_OR_RETURN(SnapTopic t, Snap(txn, std::move(topic)));
      out.push_back(std::move(t));
    }
    return out;
  }

  // A group's dead-letter queue and its first offset not re-driven.
  struct DeadLetterQueue {
    SnapTopic topic;
    uint64_t start = 0;
  };
  absl::StatusOr<DeadLetterQueue> LoadDeadLetters(MDB_txn* txn,
                                                  std::string_view group) {
    TXMQ_RETURN_IF_ERROR(ValidateProgressName(group));
    absl::StatusOr<SnapTopic> dlq = LoadTopic(txn, DeadLetterTopicName(group));
    if (absl::IsNotFound(dlq.status())) {
      return absl::NotFoundError(absl::StrFormat(
          "group '%s' has no dead-letter queue (no consumer of it was ever "
          "created)",
          std::string(group)));
    }
    if (!dlq.ok()) return dlq.status();
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi cursor_table, Table(txn, "cursor"));
    std::vector<std::optional<uint64_t>> redriven = {std::nullopt};
    if (cursor_table != kNoTable) {
      if (int rc = ReadCursors(txn, cursor_table, kRedriveGroup,
                               dlq->topic->name(), 1, &redriven);
          rc != MDB_SUCCESS) {
        return Failed(rc, "cannot read");
      }
    }
    const uint64_t start =
        std::min(std::max(redriven[0].value_or(0), dlq->first[0]), dlq->end[0]);
    return DeadLetterQueue{.topic = *std::move(dlq), .start = start};
  }

  // The groups' offsets and lag (ack rows and internal groups left out).
  absl::StatusOr<std::vector<GroupLag>> Groups(
      MDB_txn* txn, const std::vector<SnapTopic>& topics) {
    std::vector<GroupLag> out;
    TXMQ_ASSIGN_OR_RETURN(MDB_dbi table, Table(txn, "cursor"));
    if (table == kNoTable) return out;
    absl::flat_hash_map<std::string_view, const SnapTopic*> by_name;
    for (const SnapTopic& t : topics) by_name[t.topic->name()] = &t;
    std::map<std::pair<std::string, std::string>, std::map<uint32_t, uint64_t>>
        rows;
    TXMQ_RETURN_IF_ERROR(
        ForEach(txn, table, [&](std::string_view k, std::string_view v) {
          CursorRowKey row;
          if (!ParseCursorKey(k, &row) || row.ack_offset.has_value() ||
              v.size() != 8 || row.group.starts_with(kSystemPrefix)) {
            return absl::OkStatus();
          }
          rows[{std::string(row.group), std::string(row.topic)}][row.queue] =
              GetBigEndian(v.data(), 8);
          return absl::OkStatus();
        }));
    for (const auto& [names, queues] : rows) {
      auto it = by_name.find(names.second);
      if (it == by_name.end()) continue;  // Verify reports these
      const SnapTopic& t = *it->second;
      GroupLag lag{.group = names.first, .topic = names.second};
      for (uint32_t q = 0; q < t.topic->queue_count(); ++q) {
        GroupQueueLag entry{.queue = q, .end = t.end[q]};
        if (auto c = queues.find(q); c != queues.end()) {
          entry.committed = c->second;
        }
        const uint64_t from = std::max(entry.committed, t.first[q]);
        entry.lag = entry.end > from ? entry.end - from : 0;
        lag.queues.push_back(entry);
      }
      out.push_back(std::move(lag));
    }
    return out;
  }

  const std::string dir_;
  const uint64_t dev_;
  const uint64_t ino_;
  MDB_env* env_ = nullptr;
  unsigned max_tables_ = 0;  // the environment's maxdbs
  MDB_dbi meta_ = 0;
  uint32_t format_version_ = 0;
  absl::Status scan_error_;
};

}  // namespace

absl::StatusOr<VerifyReport> InspectorImpl::VerifyPages(
    std::optional<ReadTxn>* txn_holder, const Inspector::Progress& progress) {
  for (int attempt = 0;; ++attempt) {
    TXMQ_ASSIGN_OR_RETURN(ReadTxn txn, Begin(/*open_meta=*/false));
    absl::StatusOr<PageCheck> pages =
        CheckPages(env_, txn.get(), kMaxVerifyProblems, progress);
    // ABORTED: the owner committed twice since the snapshot began.
    if (absl::IsAborted(pages.status()) && attempt < 10) continue;
    TXMQ_RETURN_IF_ERROR(pages.status());
    VerifyReport r;
    r.tables = pages->tables;
    if (!pages->ok()) {
      // (The tables' contents are not read: LMDB would follow the damage.)
      r.problems = std::move(pages->problems);
    } else {
      txn_holder->emplace(std::move(txn));
    }
    return r;
  }
}

absl::StatusOr<VerifyReport> InspectorImpl::Verify(
    const Inspector::Progress& progress) {
  VerifyReport r;
  // First the pages themselves (storage/page_check.h): LMDB would follow a
  // damaged page out of bounds, so its tables are only read when every page
  // of the snapshot is sound.
  std::optional<ReadTxn> txn_holder;
  TXMQ_ASSIGN_OR_RETURN(VerifyReport pages, VerifyPages(&txn_holder, progress));
  if (!pages.ok()) return pages;
  MDB_txn* const txn = txn_holder->get();
  if (int rc = mdb_dbi_open(txn, "meta", 0, &meta_); rc != MDB_SUCCESS) {
    return Failed(rc, "cannot read");
  }
  auto problem = [&](std::string text) {
    if (r.problems.size() < kMaxVerifyProblems) {
      r.problems.push_back(std::move(text));
    } else if (r.problems.size() == kMaxVerifyProblems) {
      r.problems.push_back("(more problems not listed)");
    }
  };
  uint64_t total = 0;
  // Counts a row; false when `progress` asked to stop.
  bool stop = false;
  auto tick = [&] {
    if ((++r.records & 0xfff) == 0 && progress && !progress(r.records, total)) {
      stop = true;
    }
    return !stop;
  };
  const absl::Status cancelled = absl::CancelledError("verify was stopped");

  // Every named table, with its row count (the progress total).
  std::vector<std::string> tables;
  {
    MDB_dbi main;
    if (int rc = mdb_dbi_open(txn, nullptr, 0, &main); rc != MDB_SUCCESS) {
      return Failed(rc, "cannot read");
    }
    TXMQ_RETURN_IF_ERROR(
        ForEach(txn, main, [&](std::string_view k, std::string_view) {
          tables.emplace_back(k);
          return absl::OkStatus();
        }));
    for (const std::string& name : tables) {
      // (A table that cannot be opened is reported below, by its name.)
      absl::StatusOr<MDB_dbi> dbi = Table(txn, name);
      MDB_stat st;
      if (dbi.ok() && *dbi != kNoTable &&
          mdb_stat(txn, *dbi, &st) == MDB_SUCCESS) {
        total += st.ms_entries;
      }
    }
  }

  // meta: the topics, their queue numbers, the dropped tables.
  uint32_t next_number = 0;
  std::vector<std::shared_ptr<Topic>> topics;
  std::set<uint32_t> dropped;
  TXMQ_RETURN_IF_ERROR(
      ForEach(txn, meta_, [&](std::string_view k, std::string_view v) {
        if (!tick()) return cancelled;
        if (k == "magic" || k == "format_version" || k == "key_index_pending") {
          return absl::OkStatus();
        }
        if (k == kNextNumberKey) {
          if (v.size() != 4) {
            problem("meta: next_queue_number is not 4 bytes");
          } else {
            next_number = static_cast<uint32_t>(GetBigEndian(v.data(), 4));
          }
        } else if (k.starts_with(kTopicPrefix)) {
          absl::StatusOr<std::shared_ptr<Topic>> topic = DecodeTopic(v);
          if (!topic.ok()) {
            problem(
                absl::StrFormat("meta: %s: %s", k, topic.status().message()));
          } else if ((*topic)->name() != k.substr(kTopicPrefix.size())) {
            problem(absl::StrFormat("meta: %s holds the record of topic '%s'",
                                    k, (*topic)->name()));
          } else {
            topics.push_back(*std::move(topic));
          }
        } else if (k.starts_with(kDroppedPrefix) &&
                   k.size() == kDroppedPrefix.size() + 4) {
          dropped.insert(static_cast<uint32_t>(
              GetBigEndian(k.data() + kDroppedPrefix.size(), 4)));
        } else {
          problem(absl::StrFormat("meta: unknown key '%s'",
                                  absl::CHexEscape(ToAbsl(k))));
        }
        return absl::OkStatus();
      }));
  ++r.tables;

  // Queue numbers: inside [0, next_queue_number), each owned once.
  std::map<uint32_t, std::string> owner;
  for (const auto& topic : topics) {
    for (uint32_t q = 0; q < topic->queue_count(); ++q) {
      const uint32_t number = topic->first_number() + q;
      if (number >= next_number) {
        problem(
            absl::StrFormat("meta: topic '%s' uses queue number %d, not below "
                            "next_queue_number %d",
                            topic->name(), number, next_number));
      }
      auto [it, added] = owner.emplace(number, topic->name());
      if (!added) {
        problem(absl::StrFormat("meta: topics '%s' and '%s' share queue %d",
                                it->second, topic->name(), number));
      }
    }
  }

  // The key index, unless an older build left it unfilled.
  TXMQ_ASSIGN_OR_RETURN(const MDB_dbi index, KeyIndex(txn));

  // Queues: dense offsets; each record decodes and matches its place.
  std::map<std::string, SnapTopic, std::less<>> snaps;
  for (const auto& topic : topics) {
    absl::StatusOr<SnapTopic> snap = Snap(txn, topic);
    if (!snap.ok()) {
      problem(std::string(snap.status().message()));
      continue;
    }
    for (uint32_t q = 0; q < topic->queue_count(); ++q) {
      ++r.tables;
      const uint32_t number = topic->first_number() + q;
      uint64_t expect = snap->first[q];
      absl::Status s = ScanQueue(
          txn, snap->dbis[q], 0, [&](uint64_t offset, std::string_view v) {
            if (!tick()) return false;
            const std::string where = absl::StrFormat(
                "topic '%s' queue %d offset %d", topic->name(), q, offset);
            if (offset != expect) {
              problem(absl::StrFormat("%s: offsets %d to %d are missing", where,
                                      expect, offset - 1));
            }
            expect = offset + 1;
            absl::StatusOr<StoredMessage> m = DecodeStored(v);
            if (!m.ok()) {
              problem(absl::StrFormat("%s: %s", where, m.status().message()));
              return true;
            }
            if (m->topic != topic->name() || m->queue != q ||
                m->offset != offset) {
              problem(absl::StrFormat(
                  "%s: the record says topic '%s' queue %d offset %d", where,
                  m->topic, m->queue, m->offset));
            }
            if (index != kNoTable && !m->key.empty()) {
              const std::string row = KeyIndexRow(number, m->key, offset);
              MDB_val ik = Val(row), iv;
              if (mdb_get(txn, index, &ik, &iv) != MDB_SUCCESS) {
                problem(where + ": its key has no key_index row");
              }
            }
            const MessageId id = MessageId::Make(
                absl::ToUnixMillis(m->store_time), number, offset);
            if (m->id != id) {
              problem(absl::StrFormat("%s: id %s does not match (expected %s)",
                                      where, m->id.ToString(), id.ToString()));
            }
            return true;
          });
      if (stop) return cancelled;
      if (!s.ok())
        problem(absl::StrFormat("topic '%s' queue %d: %s", topic->name(), q,
                                s.message()));
    }
    snaps.emplace(topic->name(), *std::move(snap));
  }

  // Tables: each known, or a queue of a topic, or a dropped queue, or a
  // host table (walked, not interpreted).
  for (const std::string& name : tables) {
    if (name == "meta" || name == "cursor" || name == "half" ||
        name == "txn_outcome" || name == "timer" || name == "delay" ||
        name == "key_index") {
      continue;
    }
    uint32_t number = 0;
    if (name.starts_with("q.") &&
        absl::SimpleAtoi(absl::string_view(name).substr(2), &number)) {
      if (!owner.contains(number) && !dropped.contains(number)) {
        problem(absl::StrFormat(
            "table %s belongs to no topic (and is not marked dropped)", name));
      }
      continue;
    }
    if (name.starts_with("t.")) {
      TXMQ_ASSIGN_OR_RETURN(MDB_dbi dbi, Table(txn, name));
      if (dbi == kNoTable) continue;
      ++r.tables;
      TXMQ_RETURN_IF_ERROR(
          ForEach(txn, dbi, [&](std::string_view, std::string_view) {
            if (!tick()) return cancelled;
            return absl::OkStatus();
          }));
      continue;
    }
    problem(absl::StrFormat("unknown table '%s'", absl::CHexEscape(name)));
  }

  // Every key index row names a stored message with that key.
  if (index != kNoTable) {
    ++r.tables;
    std::map<uint32_t, std::pair<const SnapTopic*, uint32_t>> queues;
    for (const auto& [name, snap] : snaps) {
      for (uint32_t q = 0; q < snap.topic->queue_count(); ++q) {
        queues[snap.topic->first_number() + q] = {&snap, q};
      }
    }
    TXMQ_RETURN_IF_ERROR(
        ForEach(txn, index, [&](std::string_view k, std::string_view) {
          if (!tick()) return cancelled;
          KeyIndexEntry e;
          if (!ParseKeyIndexRow(k, &e)) {
            problem(absl::StrFormat("key_index: malformed row %s",
                                    absl::BytesToHexString(ToAbsl(k))));
            return absl::OkStatus();
          }
          auto it = queues.find(e.number);
          if (it == queues.end()) {
            if (!dropped.contains(e.number)) {
              problem(absl::StrFormat(
                  "key_index: a row of queue number %d, which no topic has",
                  e.number));
            }
            return absl::OkStatus();
          }
          const auto [snap, q] = it->second;
          const std::string where =
              absl::StrFormat("key_index: topic '%s' queue %d offset %d",
                              snap->topic->name(), q, e.offset);
          const OffsetKey at(e.offset);
          MDB_val mk{8, const_cast<char*>(at.bytes)}, mv;
          if (mdb_get(txn, snap->dbis[q], &mk, &mv) != MDB_SUCCESS) {
            problem(where + ": no such message");
            return absl::OkStatus();
          }
          absl::StatusOr<std::string> key = KeyOf(View(mv));
          if (key.ok() && !KeyIndexes(*key, e.indexed_key)) {
            problem(where + ": the message has another key");
          }
          return absl::OkStatus();
        }));
  }

  // Consumer offsets.
  TXMQ_ASSIGN_OR_RETURN(MDB_dbi cursor_table, Table(txn, "cursor"));
  if (cursor_table != kNoTable) {
    ++r.tables;
    std::map<std::string, uint64_t> committed;  // group\0topic\0queue
    TXMQ_RETURN_IF_ERROR(
        ForEach(txn, cursor_table, [&](std::string_view k, std::string_view v) {
          if (!tick()) return cancelled;
          CursorRowKey row;
          if (!ParseCursorKey(k, &row)) {
            problem(absl::StrFormat("cursor: malformed key '%s'",
                                    absl::CHexEscape(ToAbsl(k))));
            return absl::OkStatus();
          }
          const std::string where =
              absl::StrFormat("cursor: group '%s' topic '%s' queue %d",
                              row.group, row.topic, row.queue);
          auto t = snaps.find(row.topic);
          if (t == snaps.end()) {
            problem(where + ": no such topic");
            return absl::OkStatus();
          }
          if (row.queue >= t->second.topic->queue_count()) {
            problem(where + ": no such queue");
            return absl::OkStatus();
          }
          const uint64_t end = t->second.end[row.queue];
          const std::string queue_key(
              k.substr(0, k.size() - (row.ack_offset ? 8 : 0)));
          if (!row.ack_offset.has_value()) {
            if (v.size() != 8) {
              problem(where + ": the offset is not 8 bytes");
              return absl::OkStatus();
            }
            const uint64_t offset = GetBigEndian(v.data(), 8);
            committed[queue_key] = offset;
            if (offset > end) {
              problem(
                  absl::StrFormat("%s: committed offset %d is past the "
                                  "end of the queue (%d)",
                                  where, offset, end));
            }
          } else {
            // Ack rows sort right after their cursor row.
            auto c = committed.find(queue_key);
            if (!v.empty()) problem(where + ": an ack row has a value");
            if (*row.ack_offset >= end ||
                (c != committed.end() && *row.ack_offset < c->second)) {
              problem(absl::StrFormat(
                  "%s: ack row for offset %d outside [committed, end)", where,
                  *row.ack_offset));
            }
          }
          return absl::OkStatus();
        }));
  }

  // Transactions and timers.
  struct HalfSeen {
    bool exhausted;
    int64_t next_check_ms;
    int timers = 0;
  };
  std::map<std::string, HalfSeen> halves;
  std::map<std::string, int> outcomes;  // txid -> expiry timers seen
  std::map<std::string, std::pair<int64_t, int>>
      delays;  // key -> (due, timers)
  TXMQ_ASSIGN_OR_RETURN(MDB_dbi half, Table(txn, "half"));
  if (half != kNoTable) {
    ++r.tables;
    TXMQ_RETURN_IF_ERROR(
        ForEach(txn, half, [&](std::string_view k, std::string_view v) {
          if (!tick()) return cancelled;
          absl::StatusOr<HalfMessageInfo> info = DecodeHalfInfo(k, v);
          if (!info.ok()) {
            problem(absl::StrFormat("half: %s: %s",
                                    absl::BytesToHexString(ToAbsl(k)),
                                    info.status().message()));
            return absl::OkStatus();
          }
          // (Its topic may be gone: deleting a topic leaves its pending
          // transactions to be rolled back or held, which is legal.)
          halves[std::string(k)] =
              HalfSeen{info->exhausted, absl::ToUnixMillis(info->next_check)};
          return absl::OkStatus();
        }));
  }
  TXMQ_ASSIGN_OR_RETURN(MDB_dbi outcome, Table(txn, "txn_outcome"));
  if (outcome != kNoTable) {
    ++r.tables;
    TXMQ_RETURN_IF_ERROR(
        ForEach(txn, outcome, [&](std::string_view k, std::string_view v) {
          if (!tick()) return cancelled;
          if (k.size() != TransactionId::kSize || !DecodeTxnOutcome(v).ok()) {
            problem(absl::StrFormat("txn_outcome: %s does not decode",
                                    absl::BytesToHexString(ToAbsl(k))));
            return absl::OkStatus();
          }
          if (halves.contains(std::string(k))) {
            problem(
                absl::StrFormat("txn_outcome: %s is both resolved and pending",
                                absl::BytesToHexString(ToAbsl(k))));
          }
          outcomes[std::string(k)] = 0;
          return absl::OkStatus();
        }));
  }
  TXMQ_ASSIGN_OR_RETURN(MDB_dbi delay, Table(txn, "delay"));
  if (delay != kNoTable) {
    ++r.tables;
    TXMQ_RETURN_IF_ERROR(
        ForEach(txn, delay, [&](std::string_view k, std::string_view v) {
          if (!tick()) return cancelled;
          if (k.size() != 16) {
            problem(absl::StrFormat("delay: malformed key %s",
                                    absl::BytesToHexString(ToAbsl(k))));
            return absl::OkStatus();
          }
          // Delayed records are not aligned: DecodeStored copies.
          if (absl::StatusOr<StoredMessage> m = DecodeStored(v); !m.ok()) {
            problem(absl::StrFormat("delay: %s: %s",
                                    absl::BytesToHexString(ToAbsl(k)),
                                    m.status().message()));
          }
          delays[std::string(k)] = {
              static_cast<int64_t>(GetBigEndian(k.data(), 6)), 0};
          return absl::OkStatus();
        }));
  }
  TXMQ_ASSIGN_OR_RETURN(MDB_dbi timer, Table(txn, "timer"));
  if (timer != kNoTable) {
    ++r.tables;
    TXMQ_RETURN_IF_ERROR(
        ForEach(txn, timer, [&](std::string_view k, std::string_view) {
          if (!tick()) return cancelled;
          std::optional<TimerRow> row = DecodeTimerKey(k);
          if (!row.has_value()) {
            problem(absl::StrFormat("timer: malformed key %s",
                                    absl::BytesToHexString(ToAbsl(k))));
            return absl::OkStatus();
          }
          const std::string id(reinterpret_cast<const char*>(row->id.data()),
                               row->id.size());
          const std::string where = absl::StrFormat(
              "timer: kind %d for %s due %s", row->kind,
              absl::BytesToHexString(id),
              absl::FormatTime(absl::RFC3339_full,
                               absl::FromUnixMillis(row->due_ms),
                               absl::UTCTimeZone()));
          if (row->kind == kTimerCheckBack) {
            auto h = halves.find(id);
            if (h == halves.end()) {
              problem(where + ": no such pending transaction");
            } else if (h->second.exhausted) {
              problem(where + ": the transaction is in the exhausted hold");
            } else {
              ++h->second.timers;
              if (h->second.next_check_ms != row->due_ms) {
                problem(where + ": the transaction's next check differs");
              }
            }
          } else if (row->kind == kTimerOutcomeExpiry) {
            auto o = outcomes.find(id);
            if (o == outcomes.end()) {
              problem(where + ": no such resolved transaction");
            } else {
              ++o->second;
            }
          } else if (row->kind == kTimerDelivery) {
            auto d = delays.find(id);
            if (d == delays.end()) {
              problem(where + ": no such delayed message");
            } else {
              ++d->second.second;
              if (d->second.first != row->due_ms) {
                problem(where + ": the delayed message is due at another time");
              }
            }
          } else {
            problem(where + ": unknown timer kind");
          }
          return absl::OkStatus();
        }));
  }
  for (const auto& [id, h] : halves) {
    if (!h.exhausted && h.timers != 1) {
      problem(absl::StrFormat(
          "half: %s has %d check-back timers (a pending transaction has one)",
          absl::BytesToHexString(id), h.timers));
    }
  }
  for (const auto& [id, timers] : outcomes) {
    if (timers != 1) {
      problem(absl::StrFormat("txn_outcome: %s has %d expiry timers (one)",
                              absl::BytesToHexString(id), timers));
    }
  }
  for (const auto& [key, d] : delays) {
    if (d.second != 1) {
      problem(absl::StrFormat("delay: %s has %d delivery timers (one)",
                              absl::BytesToHexString(key), d.second));
    }
  }
  if (progress) progress(total, total);
  return r;
}

namespace {

// Inspector::Open up to the LMDB environment, opened with room for a few
// tables; `check_pages` as in OpenEnv.
absl::StatusOr<std::unique_ptr<InspectorImpl>> OpenInspector(
    std::string_view dir_view, bool check_pages) {
  std::string dir(dir_view);
  if (dir.empty()) {
    return absl::InvalidArgumentError("data directory path is empty");
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(
          absl::StrFormat("data directory '%s' does not exist", dir));
    }
    return LmdbStatus(err, absl::StrFormat("cannot access '%s'", dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("'%s' is not a directory", dir));
  }
  std::error_code ec;
  if (!std::filesystem::exists(dir + "/data.mdb", ec)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "'%s' is not a txmq data directory (it has no data.mdb)", dir));
  }
  if (!Env::Register(st.st_dev, st.st_ino)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "data directory '%s' is open in this process already (by a Broker "
        "or an Inspector); use that one (LMDB allows one environment per "
        "file per process)",
        dir));
  }
  auto inspector = std::make_unique<InspectorImpl>(dir, st.st_dev, st.st_ino);
  TXMQ_RETURN_IF_ERROR(inspector->OpenEnv(8, check_pages));
  return inspector;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Inspector>> Inspector::Open(
    std::string_view dir) {
  TXMQ_ASSIGN_OR_RETURN(std::unique_ptr<InspectorImpl> inspector,
                        OpenInspector(dir, /*check_pages=*/true));
  TXMQ_ASSIGN_OR_RETURN(unsigned tables, inspector->CheckFormat());
  TXMQ_RETURN_IF_ERROR(
      inspector->OpenEnv(tables + kSpareTables, /*check_pages=*/false));
  TXMQ_RETURN_IF_ERROR(inspector->CheckFormat().status());
  return inspector;
}

absl::StatusOr<VerifyReport> Inspector::VerifyPages(std::string_view dir) {
  TXMQ_ASSIGN_OR_RETURN(std::unique_ptr<InspectorImpl> inspector,
                        OpenInspector(dir, /*check_pages=*/false));
  std::optional<ReadTxn> txn;
  return inspector->VerifyPages(&txn, {});
}

}  // namespace txmq
