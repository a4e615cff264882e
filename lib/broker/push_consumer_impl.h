// LocalPushConsumer: include/txmq/push_consumer.h on pull consumers.
//
// Each listener thread owns a LocalConsumer of the group (consumers are
// cheap, and one per thread keeps Receive free of locks); they compete for
// the group's messages like any consumers. A broadcasting push consumer's
// threads share one instance.

#ifndef TXMQ_LIB_BROKER_PUSH_CONSUMER_IMPL_H_
#define TXMQ_LIB_BROKER_PUSH_CONSUMER_IMPL_H_

#include <atomic>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "txmq/broker.h"
#include "txmq/push_consumer.h"

namespace txmq {

class LocalPushConsumer final : public PushConsumer {
 public:
  // Errors: INVALID_ARGUMENT (bad options, no listener), and those of
  // Broker::CreateConsumer.
  static absl::StatusOr<std::unique_ptr<PushConsumer>> Create(
      Broker& broker, std::string_view group, std::string_view topic,
      MessageListener listener, const PushConsumerOptions& options);
  ~LocalPushConsumer() override;

  uint64_t succeeded() const override {
    return succeeded_.load(std::memory_order_relaxed);
  }
  uint64_t failed() const override {
    return failed_.load(std::memory_order_relaxed);
  }

 private:
  LocalPushConsumer(MessageListener listener, size_t batch)
      : listener_(std::move(listener)), batch_(batch) {}
  void Run(Consumer& consumer);
  // One delivery: the listener's answer, or kReconsumeLater if it threw.
  ConsumeResult Deliver(const MessageView& message);

  const MessageListener listener_;
  const size_t batch_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> succeeded_{0};
  std::atomic<uint64_t> failed_{0};
  std::vector<std::unique_ptr<Consumer>> consumers_;
  std::vector<std::thread> threads_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_PUSH_CONSUMER_IMPL_H_
