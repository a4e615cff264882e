// RetentionSweeper against a real Env, TopicRegistry and Writer, with the
// writer held so that a sweep's request shares its transaction with a
// request that makes it abort or retry: the paths the broker-level tests
// cannot reach on purpose.

#include "retention/retention_sweeper.h"

#include <lmdb.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "log/append.h"
#include "log/record_codec.h"
#include "storage/env.h"
#include "test_util.h"
#include "topic/topic_registry.h"
#include "write/commit_signal.h"
#include "write/writer.h"

namespace txmq {
namespace {

using ::txmq::testing::Eventually;
using ::txmq::testing::TempDir;

class NoTimers final : public TimerSink {
 public:
  void Schedule(uint8_t, const std::array<uint8_t, 16>&, int64_t) override {}
  void Cancel(uint8_t, const std::array<uint8_t, 16>&) override {}
  void Rescan() override {}
};

// A request that runs `apply` and lets the test wait for it.
class TestRequest final : public WriteRequest {
 public:
  explicit TestRequest(std::function<absl::Status(WriteContext&)> apply,
                       bool is_exclusive = false)
      : apply_(std::move(apply)) {
    exclusive = is_exclusive;
  }
  absl::Status Apply(WriteContext& ctx) override { return apply_(ctx); }
  void Complete(absl::Status status) override {
    status_ = status;
    done_.Notify();
  }
  absl::Status Wait() {
    done_.WaitForNotification();
    return status_;
  }

 private:
  std::function<absl::Status(WriteContext&)> apply_;
  absl::Status status_;
  absl::Notification done_;
};

class RetentionSweeperTest : public ::testing::Test {
 protected:
  static constexpr int kMessages = 100;

  void SetUp() override {
    Env::Config config;
    config.initial_map_bytes = size_t{1} << 20;
    auto env = Env::Open(tmp_.path(), config);
    TXMQ_ASSERT_OK(env);
    env_ = *std::move(env);
    auto topics = TopicRegistry::Load(env_.get());
    TXMQ_ASSERT_OK(topics);
    topics_ = *std::move(topics);
    writer_ = std::make_unique<Writer>(env_.get(), &signal_, clock_,
                                       absl::Milliseconds(100), nullptr);
    sweeper_ = std::make_unique<RetentionSweeper>(topics_.get(), writer_.get(),
                                                  &timers_, clock_,
                                                  absl::Seconds(10), nullptr);
    TXMQ_ASSERT_OK(RunWrite(
        *writer_,
        [&](WriteContext& ctx) {
          return topics_->ApplyCreate(ctx, "t", 1, /*retention_ms=*/60000);
        },
        /*exclusive=*/true));
    topic_ = topics_->Find("t");
    TXMQ_ASSERT_OK(RunWrite(*writer_, [&](WriteContext& ctx) -> absl::Status {
      for (int i = 0; i < kMessages; ++i) {
        auto record = PendingRecord::Encode({.topic = "t", .body = "x"},
                                            ctx.now_ms(), 1 << 20);
        if (!record.ok()) return record.status();
        auto sent = AppendToQueue(ctx, *topic_, 0, *record);
        if (!sent.ok()) return sent.status();
      }
      return absl::OkStatus();
    }));
    clock_->Advance(absl::Minutes(2));  // every message has expired
  }

  void TearDown() override {
    if (writer_ != nullptr) writer_->Stop();
  }

  // Holds the writer inside a request until Release(); what is submitted
  // meanwhile is applied together in the next transaction.
  void Hold() {
    hold_ = std::make_unique<TestRequest>([this](WriteContext&) {
      entered_.Notify();
      release_.WaitForNotification();
      return absl::OkStatus();
    });
    writer_->Submit(hold_.get());
    entered_.WaitForNotification();
  }
  void Release() {
    release_.Notify();
    TXMQ_EXPECT_OK(hold_->Wait());
  }

  // Messages in the queue's table, on disk.
  uint64_t Stored() {
    MDB_txn* txn = nullptr;
    EXPECT_EQ(mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn),
              MDB_SUCCESS);
    MDB_stat stat;
    EXPECT_EQ(mdb_stat(txn, topic_->queue(0).dbi, &stat), MDB_SUCCESS);
    mdb_txn_abort(txn);
    return stat.ms_entries;
  }
  uint64_t First() {
    return topic_->queue(0).first.load(std::memory_order_acquire);
  }

  TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  CommitSignal signal_;
  NoTimers timers_;
  std::unique_ptr<Env> env_;
  std::unique_ptr<TopicRegistry> topics_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<RetentionSweeper> sweeper_;
  std::shared_ptr<Topic> topic_;
  std::unique_ptr<TestRequest> hold_;
  absl::Notification entered_, release_;
};

TEST_F(RetentionSweeperTest, DeletesAllButTheLast) {
  sweeper_->OnDue();
  ASSERT_TRUE(Eventually([&] { return !sweeper_->running(); }));
  EXPECT_EQ(First(), uint64_t{kMessages - 1});
  EXPECT_EQ(Stored(), 1u);
  EXPECT_EQ(sweeper_->expired(), uint64_t{kMessages - 1});
}

TEST_F(RetentionSweeperTest, AnAbortedSweepRestoresFirst) {
  Hold();
  sweeper_->OnDue();  // its request waits behind the held one
  TestRequest fail([&](WriteContext& ctx) {
    // What a real failure does: the whole transaction aborts.
    return ctx.Fail(MDB_PANIC, "injected failure");
  });
  writer_->Submit(&fail);
  Release();
  EXPECT_FALSE(fail.Wait().ok());
  ASSERT_TRUE(Eventually([&] { return !sweeper_->running(); }));
  EXPECT_EQ(First(), 0u);
  EXPECT_EQ(Stored(), uint64_t{kMessages});
  EXPECT_EQ(sweeper_->expired(), 0u);

  // The next sweep does it.
  sweeper_->OnDue();
  ASSERT_TRUE(Eventually([&] { return !sweeper_->running(); }));
  EXPECT_EQ(First(), uint64_t{kMessages - 1});
  EXPECT_EQ(Stored(), 1u);
}

TEST_F(RetentionSweeperTest, ABatchAppliedAgainAfterTheMapGrewCountsOnce) {
  Hold();
  sweeper_->OnDue();
  int attempts = 0;
  TestRequest full([&](WriteContext& ctx) -> absl::Status {
    if (++attempts == 1) return ctx.Fail(MDB_MAP_FULL, "injected full map");
    return absl::OkStatus();
  });
  writer_->Submit(&full);
  Release();
  TXMQ_EXPECT_OK(full.Wait());
  EXPECT_EQ(attempts, 2);  // the sweep's request was applied twice too
  ASSERT_TRUE(Eventually([&] { return !sweeper_->running(); }));
  EXPECT_EQ(First(), uint64_t{kMessages - 1});
  EXPECT_EQ(Stored(), 1u);
  EXPECT_EQ(sweeper_->expired(), uint64_t{kMessages - 1});
}

TEST_F(RetentionSweeperTest, ATopicDeletedBeforeTheRequestAppliesIsSkipped) {
  Hold();
  TestRequest remove(
      [&](WriteContext& ctx) { return topics_->ApplyDelete(ctx, "t", {}); },
      /*is_exclusive=*/true);
  writer_->Submit(&remove);
  // The sweep takes the topic list while "t" still exists; its request is
  // applied after the deletion committed.
  sweeper_->OnDue();
  Release();
  TXMQ_EXPECT_OK(remove.Wait());
  ASSERT_TRUE(Eventually([&] { return !sweeper_->running(); }));
  EXPECT_TRUE(topic_->deleted());
  EXPECT_EQ(sweeper_->expired(), 0u);
  EXPECT_EQ(First(), 0u);
  // The table (dropped later, once no reader can use it) is untouched.
  EXPECT_EQ(Stored(), uint64_t{kMessages});
}

}  // namespace
}  // namespace txmq
