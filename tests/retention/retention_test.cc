// Per-topic retention: the setting (stored, reported, changed, validated)
// and the background sweep (what it deletes, what it never deletes, in
// bounded transactions), and consumers behind it.
//
// Time passes only on a ManualClock; Eventually() waits for the timer and
// writer threads to act on it.

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <lmdb.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "record.capnp.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::Eventually;
using ::txmq::testing::TempDir;

constexpr absl::Duration kInterval = absl::Seconds(10);

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override { Close(); }

  void Open() {
    Options options;
    options.clock = clock_;
    options.retention_check_interval = kInterval;
    options.log = [this](LogLevel level, std::string_view message) {
      if (level == LogLevel::kInfo) return;
      absl::MutexLock lock(&log_mu_);
      problems_.emplace_back(message);
    };
    auto broker = Broker::Open(tmp_.path(), options);
    TXMQ_ASSERT_OK(broker);
    broker_ = *std::move(broker);
    auto producer =
        broker_->CreateProducer({.selector = QueueSelector::kRoundRobin});
    TXMQ_ASSERT_OK(producer);
    producer_ = *std::move(producer);
  }

  void Close() {
    producer_.reset();
    broker_.reset();
  }

  // Sends `n` messages to `topic` in batches (one store time each batch).
  void Send(const std::string& topic, int n, const std::string& body = "m") {
    std::vector<Message> batch;
    for (int i = 0; i < n; ++i) {
      batch.push_back({.topic = topic, .body = body + std::to_string(i)});
      if (batch.size() == 500 || i == n - 1) {
        TXMQ_ASSERT_OK(producer_->SendBatch(batch));
        batch.clear();
      }
    }
  }

  QueueInfo Queue(const std::string& topic, uint32_t queue = 0) {
    auto info = broker_->DescribeTopic(topic);
    EXPECT_TRUE(info.ok()) << info.status();
    if (!info.ok() || queue >= info->queues.size()) return QueueInfo{};
    return info->queues[queue];
  }

  // Waits until queue `queue` of `topic` starts at `first`.
  bool FirstBecomes(const std::string& topic, uint64_t first,
                    uint32_t queue = 0) {
    return Eventually(
        [&] { return Queue(topic, queue).first_offset == first; });
  }

  // Runs at least one whole sweep at the current time plus one interval:
  // a witness topic, last in name order, gets a message that then expires;
  // once the sweep has deleted it, the sweep has been through every other
  // topic. (No waiting on real time for a sweep that should do nothing.)
  void SweepOnce() {
    if (!broker_->DescribeTopic(kWitness).ok()) {
      TXMQ_ASSERT_OK(broker_->CreateTopic(
          kWitness, {.queues = 1, .retention = absl::Seconds(1)}));
    }
    Send(kWitness, 2);
    const uint64_t last = Queue(kWitness).end_offset - 1;
    clock_->Advance(kInterval);
    ASSERT_TRUE(FirstBecomes(kWitness, last));
  }
  // Messages retention deleted, without the witness's. The sweep counts a
  // deletion before it moves `first`, so the witness's first is read first.
  uint64_t Expired() {
    const uint64_t witness = broker_->DescribeTopic(kWitness).ok()
                                 ? Queue(kWitness).first_offset
                                 : 0;
    return broker_->Stats().expired_messages - witness;
  }
  static constexpr char kWitness[] = "zzz-witness";

  std::vector<std::string> Problems() {
    absl::MutexLock lock(&log_mu_);
    return problems_;
  }

  TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Producer> producer_;
  absl::Mutex log_mu_;
  std::vector<std::string> problems_ ABSL_GUARDED_BY(log_mu_);
};

TEST_F(RetentionTest, DefaultAndCustomRetentionAreStoredAndReported) {
  TXMQ_ASSERT_OK(broker_->CreateTopic("default"));
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("short", {.retention = absl::Minutes(90)}));
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("forever", {.retention = absl::InfiniteDuration()}));
  auto check = [&] {
    EXPECT_EQ(broker_->DescribeTopic("default")->retention, absl::Hours(72));
    EXPECT_EQ(broker_->DescribeTopic("short")->retention, absl::Minutes(90));
    EXPECT_EQ(broker_->DescribeTopic("forever")->retention,
              absl::InfiniteDuration());
    std::vector<TopicInfo> all = broker_->ListTopics();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[2].name, "short");
    EXPECT_EQ(all[2].retention, absl::Minutes(90));
  };
  check();
  Close();
  Open();
  check();
}

TEST_F(RetentionTest, SetTopicRetentionChangesItDurably) {
  TXMQ_ASSERT_OK(broker_->CreateTopic("t"));
  TXMQ_ASSERT_OK(broker_->SetTopicRetention("t", absl::Seconds(30)));
  EXPECT_EQ(broker_->DescribeTopic("t")->retention, absl::Seconds(30));
  TXMQ_ASSERT_OK(broker_->SetTopicRetention("t", absl::InfiniteDuration()));
  EXPECT_EQ(broker_->DescribeTopic("t")->retention, absl::InfiniteDuration());
  TXMQ_ASSERT_OK(broker_->SetTopicRetention("t", absl::Hours(5)));
  Close();
  Open();
  EXPECT_EQ(broker_->DescribeTopic("t")->retention, absl::Hours(5));

  absl::Status missing = broker_->SetTopicRetention("nope", absl::Hours(1));
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
  EXPECT_NE(missing.message().find("'nope'"), std::string_view::npos);
  EXPECT_TRUE(absl::IsInvalidArgument(
      broker_->SetTopicRetention("bad name!", absl::Hours(1))));
  EXPECT_TRUE(absl::IsInvalidArgument(
      broker_->SetTopicRetention("t", absl::ZeroDuration())));
  EXPECT_EQ(broker_->DescribeTopic("t")->retention, absl::Hours(5));
}

TEST_F(RetentionTest, BadRetentionIsRefusedAndCreatesNothing) {
  for (absl::Duration bad :
       {absl::ZeroDuration(), absl::Seconds(-5), absl::Milliseconds(999),
        -absl::InfiniteDuration(), absl::Hours(24 * 365 * 101)}) {
    absl::Status s = broker_->CreateTopic("t", {.retention = bad});
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << absl::FormatDuration(bad);
    EXPECT_NE(s.message().find("retention"), std::string_view::npos) << s;
  }
  EXPECT_TRUE(broker_->ListTopics().empty());
  TXMQ_ASSERT_OK(broker_->CreateTopic("t", {.retention = absl::Seconds(1)}));
  TXMQ_ASSERT_OK(broker_->SetTopicRetention("t", absl::Seconds(1)));
  EXPECT_TRUE(absl::IsInvalidArgument(
      broker_->SetTopicRetention("t", absl::Milliseconds(10))));

  Close();
  for (absl::Duration bad :
       {absl::ZeroDuration(), absl::Seconds(-1), absl::InfiniteDuration()}) {
    Options options;
    options.retention_check_interval = bad;
    auto broker = Broker::Open(tmp_.path(), options);
    EXPECT_TRUE(absl::IsInvalidArgument(broker.status()))
        << absl::FormatDuration(bad);
  }
  Open();
}

// A TopicRecord written before retention existed has retentionMs 0: it
// reads as the default.
TEST_F(RetentionTest, OldTopicRecordsGetTheDefault) {
  TXMQ_ASSERT_OK(broker_->CreateTopic("old", {.retention = absl::Hours(1)}));
  Close();
  {
    MDB_env* env = nullptr;
    ASSERT_EQ(mdb_env_create(&env), MDB_SUCCESS);
    mdb_env_set_maxdbs(env, 2048);
    ASSERT_EQ(mdb_env_open(env, tmp_.path().c_str(), MDB_NOTLS, 0644),
              MDB_SUCCESS);
    MDB_txn* txn = nullptr;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), MDB_SUCCESS);
    MDB_dbi meta;
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), MDB_SUCCESS);
    std::string key = "topic/old";
    MDB_val k{key.size(), key.data()}, v;
    ASSERT_EQ(mdb_get(txn, meta, &k, &v), MDB_SUCCESS);
    std::vector<capnp::word> words((v.mv_size + 7) / 8);
    std::memcpy(words.data(), v.mv_data, v.mv_size);
    capnp::FlatArrayMessageReader reader(
        kj::arrayPtr(words.data(), words.size()));
    capnp::MallocMessageBuilder builder;
    builder.setRoot(reader.getRoot<schema::TopicRecord>());
    builder.getRoot<schema::TopicRecord>().setRetentionMs(0);
    kj::Array<capnp::word> flat = capnp::messageToFlatArray(builder);
    MDB_val nv{flat.asBytes().size(), flat.asBytes().begin()};
    ASSERT_EQ(mdb_put(txn, meta, &k, &nv, 0), MDB_SUCCESS);
    ASSERT_EQ(mdb_txn_commit(txn), MDB_SUCCESS);
    mdb_env_close(env);
  }
  Open();
  EXPECT_EQ(broker_->DescribeTopic("old")->retention, absl::Hours(72));
}

TEST_F(RetentionTest, DeletesTheExpiredPrefixAndNothingElse) {
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("t", {.queues = 2, .retention = absl::Hours(1)}));
  Send("t", 20, "old");  // offsets 0..9 on each queue
  clock_->Advance(absl::Minutes(30));
  Send("t", 10, "new");  // offsets 10..14
  // The old ones expire at +60 min, the new ones at +90 min.
  clock_->Advance(absl::Minutes(29));
  SweepOnce();
  SweepOnce();  // now + 59 min 20 s: nothing has expired yet
  EXPECT_EQ(Queue("t", 0).first_offset, 0u);
  EXPECT_EQ(Queue("t", 1).first_offset, 0u);
  EXPECT_EQ(Expired(), 0u);

  clock_->Advance(absl::Minutes(1));
  ASSERT_TRUE(FirstBecomes("t", 10, 0));
  ASSERT_TRUE(FirstBecomes("t", 10, 1));
  EXPECT_EQ(Queue("t", 0).end_offset, 15u);
  EXPECT_EQ(broker_->DescribeTopic("t")->message_count(), 10u);
  EXPECT_TRUE(Eventually([&] { return Expired() == 20; })) << Expired();

  // A new group from the earliest message gets exactly the kept ones.
  auto consumer = broker_->CreateConsumer("g", "t");
  TXMQ_ASSERT_OK(consumer);
  std::vector<std::string> bodies;
  while (true) {
    auto batch = (*consumer)->Receive(100, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    if (batch->empty()) break;
    for (const MessageView& m : *batch) {
      EXPECT_GE(m.offset(), 10u);
      bodies.emplace_back(m.body());
    }
    TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
  }
  EXPECT_EQ(bodies.size(), 10u);
  for (const std::string& body : bodies) EXPECT_EQ(body.substr(0, 3), "new");
  consumer->reset();

  // Later the new ones expire too, except each queue's last message.
  clock_->Advance(absl::Minutes(31) + kInterval);
  ASSERT_TRUE(FirstBecomes("t", 14, 0));
  ASSERT_TRUE(FirstBecomes("t", 14, 1));
  EXPECT_TRUE(Eventually([&] { return Expired() == 28; })) << Expired();
  EXPECT_TRUE(Problems().empty());
}

TEST_F(RetentionTest, LastMessageIsKeptAndTheEndSurvivesReopen) {
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("t", {.queues = 1, .retention = absl::Seconds(5)}));
  Send("t", 7);
  clock_->Advance(absl::Hours(10));
  ASSERT_TRUE(FirstBecomes("t", 6));
  // Further sweeps leave the last message alone.
  SweepOnce();
  SweepOnce();
  EXPECT_EQ(Queue("t").first_offset, 6u);
  EXPECT_EQ(Queue("t").end_offset, 7u);

  Close();
  Open();
  EXPECT_EQ(Queue("t").first_offset, 6u);
  EXPECT_EQ(Queue("t").end_offset, 7u);
  auto sent = producer_->Send({.topic = "t", .body = "after"});
  TXMQ_ASSERT_OK(sent);
  EXPECT_EQ(sent->offset, 7u);  // offsets continue, never reused
}

// The sweep stops at the first message that has not expired, even when a
// clock step back put older store times after it.
TEST_F(RetentionTest, StopsAtTheFirstUnexpiredMessage) {
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("t", {.queues = 1, .retention = absl::Hours(1)}));
  Send("t", 3, "a");  // t0: 0..2
  clock_->Advance(absl::Minutes(30));
  Send("t", 3, "b");  // t0 + 30 min: 3..5
  clock_->Advance(-absl::Hours(2));
  Send("t", 3, "c");  // t0 - 90 min: 6..8, stored after 3..5
  // To t0 + 80 min (past the sweep timer armed at t0 + 30 min + interval,
  // as a clock step back delays the sweep as much): a and c have expired,
  // b has not.
  clock_->Advance(absl::Minutes(170));
  ASSERT_TRUE(FirstBecomes("t", 3));
  SweepOnce();
  SweepOnce();
  EXPECT_EQ(Queue("t").first_offset, 3u);
  EXPECT_EQ(Expired(), 3u);
}

TEST_F(RetentionTest, DeletesInBoundedTransactions) {
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("t", {.queues = 1, .retention = absl::Minutes(1)}));
  constexpr int kMessages = 5000;
  Send("t", kMessages);
  const uint64_t commits_before = broker_->Stats().commits;
  clock_->Advance(absl::Minutes(2));
  ASSERT_TRUE(FirstBecomes("t", kMessages - 1));
  // Counted when the last transaction has committed.
  EXPECT_TRUE(Eventually([&] { return Expired() == kMessages - 1; }))
      << Expired();
  // 4,999 deletions at most 1,024 per transaction: at least 5 commits (no
  // other writes happened meanwhile that could stand in for them).
  EXPECT_TRUE(Eventually([&] {
    return broker_->Stats().commits - commits_before >= 5;
  })) << broker_->Stats().commits - commits_before;
  EXPECT_EQ(Queue("t").end_offset, uint64_t{kMessages});
}

TEST_F(RetentionTest, InfiniteRetentionDeletesNothing) {
  TXMQ_ASSERT_OK(broker_->CreateTopic(
      "a-forever", {.queues = 1, .retention = absl::InfiniteDuration()}));
  Send("a-forever", 10);
  clock_->Advance(absl::Hours(24 * 3650));
  SweepOnce();
  SweepOnce();
  EXPECT_EQ(Queue("a-forever").first_offset, 0u);
  EXPECT_EQ(Queue("a-forever").end_offset, 10u);

  // Until it gets a retention.
  TXMQ_ASSERT_OK(broker_->SetTopicRetention("a-forever", absl::Hours(1)));
  clock_->Advance(kInterval);
  ASSERT_TRUE(FirstBecomes("a-forever", 9));
}

TEST_F(RetentionTest, GroupBehindRetentionSkipsToFirst) {
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("t", {.queues = 1, .retention = absl::Hours(1)}));
  // The group exists (its consumer loaded, its offset 0) before anything is
  // deleted; another group has only a stored offset.
  auto consumer = broker_->CreateConsumer("g", "t");
  TXMQ_ASSERT_OK(consumer);
  {
    auto other = broker_->CreateConsumer("stored", "t");
    TXMQ_ASSERT_OK(other);
  }
  Send("t", 10, "old");
  clock_->Advance(absl::Minutes(30));
  Send("t", 5, "new");
  clock_->Advance(absl::Minutes(31) + kInterval);
  ASSERT_TRUE(FirstBecomes("t", 10));

  // Lag counts only what is stored: 15 - max(0, 10).
  auto lag = broker_->DescribeGroup("g", "t");
  TXMQ_ASSERT_OK(lag);
  EXPECT_EQ(lag->queues[0].committed, 0u);
  EXPECT_EQ(lag->queues[0].lag, 5u);
  EXPECT_EQ(broker_->DescribeGroup("stored", "t")->total(), 5u);
  auto groups = broker_->ListGroups();
  TXMQ_ASSERT_OK(groups);
  for (const GroupLag& g : *groups) {
    if (g.topic == "t") {
      EXPECT_EQ(g.total(), 5u) << g.group;
    }
  }

  // The consumer skips to the first stored message, without an error; the
  // deleted ones count as consumed even before anything is acknowledged.
  auto batch = (*consumer)->Receive(100, absl::ZeroDuration());
  TXMQ_ASSERT_OK(batch);
  ASSERT_EQ(batch->size(), 5u);
  EXPECT_EQ((*batch)[0].offset(), 10u);
  EXPECT_EQ((*batch)[0].body(), "new0");
  EXPECT_EQ(*(*consumer)->CommittedOffset(0), 10u);
  TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
  EXPECT_EQ(*(*consumer)->CommittedOffset(0), 15u);
  EXPECT_EQ(broker_->DescribeGroup("g", "t")->total(), 0u);
  *batch = ReceivedBatch();
  TXMQ_ASSERT_OK((*consumer)->Flush());
  consumer->reset();

  // Earliest means the first stored message.
  TXMQ_ASSERT_OK(
      broker_->ResetGroup("g", "t", {.to = OffsetReset::To::kEarliest}));
  EXPECT_EQ(broker_->DescribeGroup("g", "t")->queues[0].committed, 10u);
  auto again = broker_->CreateConsumer("g", "t");
  TXMQ_ASSERT_OK(again);
  auto redelivered = (*again)->Receive(100, absl::ZeroDuration());
  TXMQ_ASSERT_OK(redelivered);
  EXPECT_EQ(redelivered->size(), 5u);
}

// An ordered consumer (one message in flight per queue) behind retention
// skips the same way, and is not left waiting for a deleted head.
TEST_F(RetentionTest, OrderedGroupBehindRetentionSkipsToFirst) {
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("t", {.queues = 1, .retention = absl::Hours(1)}));
  auto consumer = broker_->CreateConsumer("g", "t", {.ordered = true});
  TXMQ_ASSERT_OK(consumer);
  Send("t", 10, "old");
  clock_->Advance(absl::Minutes(30));
  Send("t", 3, "new");
  clock_->Advance(absl::Minutes(31) + kInterval);
  ASSERT_TRUE(FirstBecomes("t", 10));
  for (uint64_t offset = 10; offset < 13; ++offset) {
    auto batch = (*consumer)->Receive(10, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    ASSERT_EQ(batch->size(), 1u);
    EXPECT_EQ((*batch)[0].offset(), offset);
    TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
  }
  EXPECT_EQ(*(*consumer)->CommittedOffset(0), 13u);
}

// The skip is persisted: after a restart the group resumes at first, not
// below it.
TEST_F(RetentionTest, SkipIsPersisted) {
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("t", {.queues = 1, .retention = absl::Hours(1)}));
  {
    auto consumer = broker_->CreateConsumer("g", "t");
    TXMQ_ASSERT_OK(consumer);
    Send("t", 10);
    clock_->Advance(absl::Hours(2));
    ASSERT_TRUE(FirstBecomes("t", 9));
    auto batch = (*consumer)->Receive(100, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    ASSERT_EQ(batch->size(), 1u);
    EXPECT_EQ((*batch)[0].offset(), 9u);
    TXMQ_ASSERT_OK((*consumer)->Flush());
  }
  Close();
  Open();
  EXPECT_EQ(broker_->DescribeGroup("g", "t")->queues[0].committed, 9u);
}

// A received batch is a snapshot: the sweep deletes its messages on disk,
// but the batch still reads them; the consumer's next Receive skips them.
TEST_F(RetentionTest, HeldBatchOutlivesTheDeletionOfItsMessages) {
  TXMQ_ASSERT_OK(
      broker_->CreateTopic("t", {.queues = 1, .retention = absl::Hours(1)}));
  // Invisible for longer than the test's clock moves: the held messages are
  // not redelivered through the retry queue meanwhile.
  auto consumer = broker_->CreateConsumer(
      "g", "t", {.invisible_duration = absl::Hours(24)});
  TXMQ_ASSERT_OK(consumer);
  Send("t", 10, "old");
  auto held = (*consumer)->Receive(10, absl::ZeroDuration());
  TXMQ_ASSERT_OK(held);
  ASSERT_EQ(held->size(), 10u);
  clock_->Advance(absl::Minutes(30));
  Send("t", 5, "new");
  clock_->Advance(absl::Minutes(31) + kInterval);
  ASSERT_TRUE(FirstBecomes("t", 10));

  for (size_t i = 0; i < held->size(); ++i) {
    EXPECT_EQ((*held)[i].offset(), i);
    EXPECT_EQ((*held)[i].body(), "old" + std::to_string(i));
  }
  // A second consumer of the group sees only what is stored; the first's
  // late acknowledgement is harmless.
  auto second = broker_->CreateConsumer("g", "t");
  TXMQ_ASSERT_OK(second);
  auto next = (*second)->Receive(100, absl::ZeroDuration());
  TXMQ_ASSERT_OK(next);
  ASSERT_EQ(next->size(), 5u);
  EXPECT_EQ((*next)[0].offset(), 10u);
  TXMQ_ASSERT_OK((*consumer)->Ack(*held));
  TXMQ_ASSERT_OK((*second)->Ack(*next));
  EXPECT_EQ(*(*consumer)->CommittedOffset(0), 15u);
  *held = ReceivedBatch();
  *next = ReceivedBatch();
  auto empty = (*consumer)->Receive(100, absl::ZeroDuration());
  TXMQ_ASSERT_OK(empty);
  EXPECT_TRUE(empty->empty());
}

// A topic deleted while a sweep works through it: the sweep skips it, and
// nothing fails or is left behind.
TEST_F(RetentionTest, TopicDeletedDuringASweepIsHarmless) {
  for (int round = 0; round < 6; ++round) {
    TXMQ_ASSERT_OK(broker_->CreateTopic(
        "doomed", {.queues = 2, .retention = absl::Seconds(1)}));
    TXMQ_ASSERT_OK(broker_->CreateTopic(
        "kept", {.queues = 1, .retention = absl::Seconds(1)}));
    Send("doomed", 6000);
    Send("kept", 3);
    clock_->Advance(absl::Seconds(2) + kInterval);
    // Some rounds delete before the sweep reaches the topic, some while it
    // is inside it, some after.
    absl::SleepFor(absl::Milliseconds(round * 3));
    TXMQ_ASSERT_OK(broker_->DeleteTopic("doomed"));
    EXPECT_TRUE(absl::IsNotFound(broker_->DescribeTopic("doomed").status()));
    ASSERT_TRUE(FirstBecomes("kept", 2));
    TXMQ_ASSERT_OK(broker_->DeleteTopic("kept"));
  }
  EXPECT_LE(broker_->Stats().expired_messages, 6u * (6000 + 2));
  // The same names work again, also after a restart.
  Close();
  Open();
  EXPECT_TRUE(broker_->ListTopics().empty());
  TXMQ_ASSERT_OK(broker_->CreateTopic("doomed", {.queues = 1}));
  Send("doomed", 2);
  EXPECT_EQ(Queue("doomed").end_offset, 2u);
  EXPECT_TRUE(Problems().empty());
}

}  // namespace
}  // namespace txmq
