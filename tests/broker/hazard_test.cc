// Interleavings that once could hang or corrupt (found in review): a thread
// that holds a received batch while it waits for the writer, Stats() during
// map growth, and consumers racing with topic deletion.

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::TempDir;

TEST(HazardTest, HoldingABatchWhileTheMapMustGrowFailsInsteadOfHanging) {
  TempDir tmp;
  Options options;
  options.initial_map_bytes = 1 << 20;
  auto broker = Broker::Open(tmp.path(), options);
  TXMQ_ASSERT_OK(broker);
  TXMQ_ASSERT_OK((*broker)->CreateTopic("t", {.queues = 1}));
  auto producer = (*broker)->CreateProducer();
  TXMQ_ASSERT_OK((*producer)->Send({.topic = "t", .body = "first"}));
  auto consumer = (*broker)->CreateConsumer("g", "t");
  auto held = (*consumer)->Receive(1, absl::Seconds(5));
  TXMQ_ASSERT_OK(held);
  ASSERT_EQ(held->size(), 1u);

  // Consume-transform-produce while holding the batch: this send needs a
  // bigger map, which needs this thread's batch released.
  const Message big{.topic = "t", .body = std::string(2 << 20, 'b')};
  absl::StatusOr<SendResult> blocked = (*producer)->Send(big);
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kUnavailable)
      << blocked.status();
  EXPECT_NE(std::string(blocked.status().message()).find("release"),
            std::string::npos);

  TXMQ_ASSERT_OK((*consumer)->Ack(*held));
  *held = ReceivedBatch();
  TXMQ_EXPECT_OK((*producer)->Send(big));
  EXPECT_GE((*broker)->Stats().map_growths, 1u);
}

TEST(HazardTest, ReceiveWithoutDeadlineReturnsWhileItsThreadHoldsTheGate) {
  TempDir tmp;
  auto broker = Broker::Open(tmp.path());
  TXMQ_ASSERT_OK(broker);
  TXMQ_ASSERT_OK((*broker)->CreateTopic("a"));
  TXMQ_ASSERT_OK((*broker)->CreateTopic("b"));
  auto producer = (*broker)->CreateProducer();
  TXMQ_ASSERT_OK((*producer)->Send({.topic = "a", .body = "x"}));
  auto consumer = (*broker)->CreateConsumer("g", "a");
  auto held = (*consumer)->Receive(10, absl::Seconds(5));
  TXMQ_ASSERT_OK(held);
  ASSERT_EQ(held->size(), 1u);
  // Deleting "b" leaves tables the writer may drop only with no reader
  // inside; the next write makes it close the gate and wait for us.
  TXMQ_ASSERT_OK((*broker)->DeleteTopic("b"));
  TXMQ_ASSERT_OK((*producer)->Send({.topic = "a", .body = "y"}));

  absl::Notification returned;
  std::thread watchdog([&] {
    if (!returned.WaitForNotificationWithTimeout(absl::Seconds(60))) {
      ADD_FAILURE() << "Receive did not return: deadlock";
      std::_Exit(1);
    }
  });
  // With the gate closed this returns an empty batch soon; with it open
  // it returns "y". Either way it returns.
  auto next = (*consumer)->Receive(10, absl::InfiniteDuration());
  returned.Notify();
  watchdog.join();
  TXMQ_ASSERT_OK(next);
  size_t got = next->size();
  *held = ReceivedBatch();
  *next = ReceivedBatch();
  // Everything flows again once the batches are gone: "y" arrives.
  for (int i = 0; i < 100 && got == 0; ++i) {
    auto batch = (*consumer)->Receive(10, absl::Milliseconds(50));
    TXMQ_ASSERT_OK(batch);
    got += batch->size();
  }
  EXPECT_EQ(got, 1u);
}

TEST(HazardTest, StatsIsSafeWhileTheMapGrows) {
  TempDir tmp;
  Options options;
  options.initial_map_bytes = 1 << 20;
  auto broker = Broker::Open(tmp.path(), options);
  TXMQ_ASSERT_OK(broker);
  TXMQ_ASSERT_OK((*broker)->CreateTopic("t"));
  std::atomic<bool> stop{false};
  std::thread poller([&] {
    size_t sum = 0;
    while (!stop.load()) sum += (*broker)->Stats().used_bytes;
    EXPECT_GT(sum, 0u);
  });
  auto producer = (*broker)->CreateProducer();
  std::vector<Message> batch(
      50, Message{.topic = "t", .body = std::string(4000, 's')});
  for (int i = 0; i < 60; ++i) TXMQ_ASSERT_OK((*producer)->SendBatch(batch));
  stop.store(true);
  poller.join();
  EXPECT_GE((*broker)->Stats().map_growths, 2u);
}

TEST(HazardTest, ConsumersRacingTopicDeletionSeeMessagesOrNotFound) {
  TempDir tmp;
  auto broker = Broker::Open(tmp.path());
  TXMQ_ASSERT_OK(broker);
  auto producer = (*broker)->CreateProducer();
  for (int generation = 0; generation < 15; ++generation) {
    const std::string tag = "gen-" + std::to_string(generation);
    TXMQ_ASSERT_OK((*broker)->CreateTopic("t", {.queues = 2}));
    std::vector<Message> batch(200, Message{.topic = "t", .body = tag});
    TXMQ_ASSERT_OK((*producer)->SendBatch(batch));
    std::atomic<bool> gone{false};
    std::vector<std::thread> consumers;
    for (int c = 0; c < 3; ++c) {
      consumers.emplace_back([&] {
        auto consumer = (*broker)->CreateConsumer("g", "t");
        if (!consumer.ok()) {
          EXPECT_EQ(consumer.status().code(), absl::StatusCode::kNotFound);
          return;
        }
        while (true) {
          auto got = (*consumer)->Receive(7, absl::Milliseconds(5));
          if (!got.ok()) {
            EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound)
                << got.status();
            return;
          }
          for (const MessageView& m : *got) ASSERT_EQ(m.body(), tag);
          if (gone.load() && got->empty()) return;
          (void)(*consumer)->Ack(*got);
        }
      });
    }
    absl::SleepFor(absl::Milliseconds(2));
    TXMQ_ASSERT_OK((*broker)->DeleteTopic("t"));
    gone.store(true);
    for (auto& t : consumers) t.join();
  }
}

}  // namespace
}  // namespace txmq
