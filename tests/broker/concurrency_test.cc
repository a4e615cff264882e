// Concurrent producers and competing consumers: within a group every message
// is delivered exactly once when nothing crashes, and per queue in order.

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::TempDir;

struct Delivery {
  uint32_t queue;
  uint64_t offset;
  std::string body;
};

void RunProducersAndConsumers(Durability durability) {
  constexpr int kProducers = 6, kEach = 1500, kConsumers = 6;
  constexpr int kTotal = kProducers * kEach;
  TempDir tmp;
  Options options;
  options.durability = durability;
  auto broker = Broker::Open(tmp.path(), options);
  TXMQ_ASSERT_OK(broker);
  TXMQ_ASSERT_OK((*broker)->CreateTopic("t", {.queues = 3}));
  auto producer = (*broker)->CreateProducer();
  TXMQ_ASSERT_OK(producer);

  std::atomic<int> delivered{0};
  std::vector<std::vector<Delivery>> per_consumer(kConsumers);
  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&, c] {
      auto consumer = (*broker)->CreateConsumer("workers", "t");
      ASSERT_TRUE(consumer.ok()) << consumer.status();
      const absl::Time deadline = absl::Now() + absl::Seconds(120);
      while (delivered.load() < kTotal && absl::Now() < deadline) {
        auto batch = (*consumer)->Receive(1 + c * 5, absl::Milliseconds(20));
        ASSERT_TRUE(batch.ok()) << batch.status();
        for (const MessageView& m : *batch) {
          per_consumer[c].push_back(
              {m.queue(), m.offset(), std::string(m.body())});
        }
        delivered.fetch_add(batch->size());
        ASSERT_TRUE((*consumer)->Ack(*batch).ok());
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kEach; ++i) {
        auto r = (*producer)->Send(
            {.topic = "t",
             .key = (i % 2) ? "" : std::to_string(p * 100 + i % 50),
             .body = std::to_string(p * kEach + i)});
        ASSERT_TRUE(r.ok()) << r.status();
      }
    });
  }
  for (auto& t : producers) t.join();
  for (auto& t : consumers) t.join();

  std::set<std::string> bodies;
  std::set<std::pair<uint32_t, uint64_t>> positions;
  for (const auto& deliveries : per_consumer) {
    std::map<uint32_t, uint64_t> last;
    for (const Delivery& d : deliveries) {
      EXPECT_TRUE(bodies.insert(d.body).second) << "twice: " << d.body;
      EXPECT_TRUE(positions.insert({d.queue, d.offset}).second);
      // Each consumer sees a queue's offsets in increasing order.
      auto it = last.find(d.queue);
      if (it != last.end()) {
        EXPECT_GT(d.offset, it->second);
      }
      last[d.queue] = d.offset;
    }
  }
  EXPECT_EQ(bodies.size(), static_cast<size_t>(kTotal));
  // Offsets are dense: 0..n-1 in every queue.
  std::map<uint32_t, uint64_t> count;
  for (auto [q, o] : positions) ++count[q];
  for (auto [q, o] : positions) EXPECT_LT(o, count[q]);
}

TEST(ConcurrencyTest, ExactlyOncePerGroupWithSyncDurability) {
  RunProducersAndConsumers(Durability::kSync);
}

TEST(ConcurrencyTest, ExactlyOncePerGroupWithAsyncDurability) {
  RunProducersAndConsumers(Durability::kAsync);
}

// Eight competing consumers on ONE queue, while producers send: they ack
// (one by one or by batch), give messages up (ReconsumeLater), extend
// invisible times, and leave and join (a destroyed consumer hands its
// messages back). Every message must be acknowledged exactly once in the
// end: a give-up acknowledges the original once its copy is stored, and the
// copy is acknowledged in turn. Run it under ThreadSanitizer too
// (README, "Development").
TEST(ConcurrencyTest, EightCompetingConsumersOnOneQueueAckEachMessageOnce) {
  constexpr int kProducers = 2, kEach = 2500, kConsumers = 8;
  constexpr int kTotal = kProducers * kEach;
  TempDir tmp;
  Options options;
  options.durability = Durability::kAsync;
  auto broker = Broker::Open(tmp.path(), options);
  TXMQ_ASSERT_OK(broker);
  TXMQ_ASSERT_OK((*broker)->CreateTopic("t", {.queues = 1}));
  auto producer = (*broker)->CreateProducer();
  TXMQ_ASSERT_OK(producer);

  absl::Mutex mu;
  std::map<std::string, int> acked;  // body -> acknowledgements
  std::atomic<int> done{0};
  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&, c] {
      std::mt19937 rng(c);
      const ConsumerOptions options{
          .retry = {.backoff = {absl::ZeroDuration()}}};
      auto consumer = (*broker)->CreateConsumer("workers", "t", options);
      ASSERT_TRUE(consumer.ok()) << consumer.status();
      const absl::Time deadline = absl::Now() + absl::Seconds(120);
      for (int round = 0; done.load() < kTotal && absl::Now() < deadline;
           ++round) {
        if (rng() % 50 == 0) {  // leave, and join again
          consumer->reset();
          consumer = (*broker)->CreateConsumer("workers", "t", options);
          ASSERT_TRUE(consumer.ok()) << consumer.status();
        }
        auto batch =
            (*consumer)->Receive(1 + rng() % 16, absl::Milliseconds(5));
        ASSERT_TRUE(batch.ok()) << batch.status();
        if (batch->empty()) continue;
        if (rng() % 4 == 0) {  // the whole batch at once
          ASSERT_TRUE((*consumer)->Ack(*batch).ok());
          absl::MutexLock lock(&mu);
          for (const MessageView& m : *batch) ++acked[std::string(m.body())];
          done.fetch_add(batch->size());
          continue;
        }
        for (const MessageView& m : *batch) {
          const uint32_t dice = rng() % 20;
          if (dice == 0) {
            ASSERT_TRUE((*consumer)->ReconsumeLater(m).ok());
            continue;
          }
          if (dice == 1) {
            ASSERT_TRUE(
                (*consumer)->ChangeInvisibleDuration(m, absl::Minutes(2)).ok());
          }
          ASSERT_TRUE((*consumer)->Ack(m).ok());
          absl::MutexLock lock(&mu);
          ++acked[std::string(m.body())];
          done.fetch_add(1);
        }
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kEach; ++i) {
        ASSERT_TRUE(
            (*producer)
                ->Send({.topic = "t",
                        .body = std::to_string(p) + "-" + std::to_string(i)})
                .ok());
      }
    });
  }
  for (auto& t : producers) t.join();
  for (auto& t : consumers) t.join();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(acked.size(), static_cast<size_t>(kTotal));
  int twice = 0;
  for (const auto& [body, n] : acked) twice += n != 1;
  EXPECT_EQ(twice, 0);
  EXPECT_EQ((*broker)->DescribeGroup("workers", "t")->total(), 0u);
}

}  // namespace
}  // namespace txmq
