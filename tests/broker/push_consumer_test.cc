// Push consumers (include/txmq/push_consumer.h): a listener on a thread
// pool, acknowledgement and retries from its answers, ordered and
// broadcasting variants, and a clean stop.

#include <atomic>
#include <future>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "broker_fixture.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::Eventually;

class PushConsumerTest : public testing::BrokerFixture {
 protected:
  PushConsumerTest() { queues_ = 4; }

  void Send(int n, const std::string& key = "") {
    for (int i = 0; i < n; ++i) {
      TXMQ_ASSERT_OK(producer_->Send(
          {.topic = "orders", .key = key, .body = key + std::to_string(i)}));
    }
  }

  // Bodies the listeners saw, with how often.
  struct Seen {
    absl::Mutex mu;
    std::map<std::string, int> count ABSL_GUARDED_BY(mu);
    void Add(std::string_view body) {
      absl::MutexLock lock(&mu);
      ++count[std::string(body)];
    }
    size_t size() {
      absl::MutexLock lock(&mu);
      return count.size();
    }
    int max() {
      absl::MutexLock lock(&mu);
      int m = 0;
      for (const auto& [body, n] : count) m = std::max(m, n);
      return m;
    }
  };
};

TEST_F(PushConsumerTest, EveryMessageReachesTheListenerOnce) {
  Seen seen;
  std::set<std::thread::id> threads;
  absl::Mutex threads_mu;
  auto push =
      broker_->CreatePushConsumer("points", "orders",
                                  [&](const MessageView& m) {
                                    seen.Add(m.body());
                                    absl::MutexLock lock(&threads_mu);
                                    threads.insert(std::this_thread::get_id());
                                    return ConsumeResult::kSuccess;
                                  },
                                  {.threads = 4, .batch = 8});
  TXMQ_ASSERT_OK(push);
  Send(1000);
  ASSERT_TRUE(Eventually([&] { return (*push)->succeeded() == 1000; }));
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(seen.max(), 1);
  EXPECT_EQ((*push)->failed(), 0u);
  {
    absl::MutexLock lock(&threads_mu);
    EXPECT_GE(threads.size(), 1u);
    EXPECT_LE(threads.size(), 4u);
  }
  push->reset();
  EXPECT_EQ(broker_->DescribeGroup("points", "orders")->total(), 0u);
}

TEST_F(PushConsumerTest, FailuresAndExceptionsAreRetried) {
  std::atomic<int> calls{0};
  Seen done;
  auto push = broker_->CreatePushConsumer(
      "points", "orders", [&](const MessageView& m) {
        ++calls;
        if (m.reconsume_times() == 0) {
          if (m.body() == "1") throw std::runtime_error("database down");
          return ConsumeResult::kReconsumeLater;
        }
        done.Add(m.body());
        return ConsumeResult::kSuccess;
      });
  TXMQ_ASSERT_OK(push);
  Send(3);
  ASSERT_TRUE(Eventually([&] { return (*push)->failed() == 3; }));
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == 3; }));
  EXPECT_EQ(done.size(), 0u);
  clock_->Advance(absl::Seconds(10));  // the first back-off
  ASSERT_TRUE(Eventually([&] { return (*push)->succeeded() == 3; }));
  EXPECT_EQ(done.size(), 3u);
  EXPECT_EQ(calls.load(), 6);
}

TEST_F(PushConsumerTest, OrderedListenersSeeEachQueueInOrderOneAtATime) {
  absl::Mutex mu;
  std::map<std::string, std::vector<int>> by_key;
  std::map<uint32_t, int> busy;  // queue -> listener calls in progress
  bool overlap = false;
  auto push = broker_->CreatePushConsumer(
      "points", "orders",
      [&](const MessageView& m) {
        const uint32_t q = m.queue();
        {
          absl::MutexLock lock(&mu);
          overlap |= ++busy[q] > 1;
        }
        absl::SleepFor(absl::Microseconds(200));
        absl::MutexLock lock(&mu);
        --busy[q];
        by_key[std::string(m.key())].push_back(
            std::stoi(std::string(m.body().substr(m.key().size()))));
        return ConsumeResult::kSuccess;
      },
      {.consumer = {.ordered = true}, .threads = 4});
  TXMQ_ASSERT_OK(push);
  for (int i = 0; i < 50; ++i) {
    for (const char* key : {"k1", "k2", "k3", "k4", "k5"}) {
      TXMQ_ASSERT_OK(producer_->Send(
          {.topic = "orders", .key = key, .body = key + std::to_string(i)}));
    }
  }
  ASSERT_TRUE(Eventually([&] { return (*push)->succeeded() == 250; }));
  absl::MutexLock lock(&mu);
  EXPECT_FALSE(overlap) << "two calls for one queue at once";
  for (const auto& [key, seq] : by_key) {
    ASSERT_EQ(seq.size(), 50u) << key;
    for (int i = 0; i < 50; ++i) EXPECT_EQ(seq[i], i) << key;
  }
}

TEST_F(PushConsumerTest, BroadcastingPushConsumersEachGetEverything) {
  Seen a, b;
  auto first = broker_->CreatePushConsumer(
      "caches", "orders",
      [&](const MessageView& m) {
        a.Add(m.body());
        return ConsumeResult::kSuccess;
      },
      {.consumer = {.model = MessageModel::kBroadcasting}, .threads = 2});
  auto second = broker_->CreatePushConsumer(
      "caches", "orders",
      [&](const MessageView& m) {
        b.Add(m.body());
        return ConsumeResult::kSuccess;
      },
      {.consumer = {.model = MessageModel::kBroadcasting}, .threads = 2});
  TXMQ_ASSERT_OK(first);
  TXMQ_ASSERT_OK(second);
  Send(200);
  ASSERT_TRUE(Eventually([&] { return a.size() == 200 && b.size() == 200; }));
  Settle();
  EXPECT_EQ(a.max(), 1);
  EXPECT_EQ(b.max(), 1);
  EXPECT_EQ((*first)->succeeded(), 200u);
}

TEST_F(PushConsumerTest, StoppingHandsUnprocessedMessagesBack) {
  absl::Notification started, release;
  std::atomic<int> calls{0};
  auto push = broker_->CreatePushConsumer("points", "orders",
                                          [&](const MessageView&) {
                                            if (++calls == 1) {
                                              started.Notify();
                                              release.WaitForNotification();
                                            }
                                            return ConsumeResult::kSuccess;
                                          },
                                          {.threads = 1, .batch = 10});
  TXMQ_ASSERT_OK(push);
  Send(10);
  started.WaitForNotification();
  auto stopping = std::async(std::launch::async, [&] { push->reset(); });
  Settle();
  release.Notify();  // the call in progress finishes; the rest stays
  stopping.get();
  EXPECT_EQ(calls.load(), 1);
  auto pull = broker_->CreateConsumer("points", "orders");
  TXMQ_ASSERT_OK(pull);
  size_t got = 0;
  while (true) {
    auto batch = (*pull)->Receive(100, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    if (batch->empty()) break;
    got += batch->size();
    TXMQ_ASSERT_OK((*pull)->Ack(*batch));
  }
  EXPECT_EQ(got, 9u);  // at once: no invisible time to wait out
}

TEST_F(PushConsumerTest, BadOptionsAreRefused) {
  auto ok = [](const MessageView&) { return ConsumeResult::kSuccess; };
  EXPECT_EQ(broker_->CreatePushConsumer("g", "orders", ok, {.threads = 0})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->CreatePushConsumer("g", "orders", ok, {.batch = 0})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->CreatePushConsumer("g", "orders", nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->CreatePushConsumer("g", "nope", ok).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace txmq
