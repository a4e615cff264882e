// The in-memory state of a topic and its queues.
//
// A topic is created by the writer and published in the TopicRegistry after
// its transaction commits; from then on its shape (name, queues, tables)
// never changes. Deletion only marks it: holders of the shared_ptr keep a
// valid object and see deleted() == true.
//
// Thread rules: everything const is safe from any thread. QueueState's
// `writer_next` belongs to the writer thread; `end` is written by the writer
// after each commit and read by consumers (release/acquire, see below).

#ifndef TXMQ_LIB_TOPIC_TOPIC_H_
#define TXMQ_LIB_TOPIC_TOPIC_H_

#include <lmdb.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace txmq {

struct QueueState {
  uint32_t index = 0;   // within the topic
  uint32_t number = 0;  // broker-wide, never reused; names table "q.<number>"
  MDB_dbi dbi = 0;
  // The offset the next appended message gets. Thread: writer only. Equal
  // to `end` between batches; ahead of it while a batch is being applied.
  uint64_t writer_next = 0;
  // One past the last committed offset. The writer stores it (release)
  // only after mdb_txn_commit returned, so a reader that loads it (acquire)
  // and then begins a read transaction sees every offset below it.
  std::atomic<uint64_t> end{0};
  // The first stored offset (0 until retention deletes messages). Only the
  // retention sweep (lib/retention/retention_sweeper.h) moves it, on the
  // writer thread: it stores the new value (release) BEFORE the deleting
  // transaction commits, and restores the old one if that transaction
  // aborts. So a reader that begins its read transaction and then loads
  // `first` (acquire) finds every offset in [first, end) in its snapshot,
  // and an offset below `first` that its snapshot lacks was deleted by
  // retention, not lost. Load recovers it from the table's first key.
  std::atomic<uint64_t> first{0};
};

class Topic {
 public:
  // `retention_ms`: see retention_ms().
  Topic(std::string name, uint32_t queue_count, uint32_t first_number,
        int64_t create_time_ms, int64_t retention_ms)
      : name_(std::move(name)),
        queue_count_(queue_count),
        first_number_(first_number),
        create_time_ms_(create_time_ms),
        queues_(new QueueState[queue_count]),
        retention_ms_(retention_ms) {
    for (uint32_t i = 0; i < queue_count; ++i) {
      queues_[i].index = i;
      queues_[i].number = first_number + i;
    }
  }
  Topic(const Topic&) = delete;
  Topic& operator=(const Topic&) = delete;

  const std::string& name() const { return name_; }
  uint32_t queue_count() const { return queue_count_; }
  uint32_t first_number() const { return first_number_; }
  int64_t create_time_ms() const { return create_time_ms_; }
  QueueState& queue(uint32_t i) const { return queues_[i]; }

  // How long a message is kept after its store time, in milliseconds (> 0),
  // or kKeepForever (retention/retention_policy.h). Any thread; the writer
  // changes it after the transaction that stored the new value committed.
  int64_t retention_ms() const {
    return retention_ms_.load(std::memory_order_relaxed);
  }
  // Thread: writer only, after the commit.
  void set_retention_ms(int64_t ms) {
    retention_ms_.store(ms, std::memory_order_relaxed);
  }

  bool deleted() const { return deleted_.load(std::memory_order_acquire); }
  // Thread: writer only, after the deleting transaction committed.
  void MarkDeleted() { deleted_.store(true, std::memory_order_release); }

 private:
  const std::string name_;
  const uint32_t queue_count_;
  const uint32_t first_number_;
  const int64_t create_time_ms_;
  const std::unique_ptr<QueueState[]> queues_;
  std::atomic<int64_t> retention_ms_;
  std::atomic<bool> deleted_{false};
};

}  // namespace txmq

#endif  // TXMQ_LIB_TOPIC_TOPIC_H_
