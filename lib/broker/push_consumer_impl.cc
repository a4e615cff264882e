#include "broker/push_consumer_impl.h"

#include <string>

#include "broker/consumer_impl.h"

namespace txmq {
namespace {

// How long a thread waits in Receive before it looks at the stop flag.
constexpr absl::Duration kPollSlice = absl::Milliseconds(50);

}  // namespace

absl::StatusOr<std::unique_ptr<PushConsumer>> LocalPushConsumer::Create(
    Broker& broker, std::string_view group, std::string_view topic,
    MessageListener listener, const PushConsumerOptions& options) {
  if (!listener) {
    return absl::InvalidArgumentError("a push consumer needs a listener");
  }
  if (options.threads < 1 || options.threads > 256) {
    return absl::InvalidArgumentError(
        "PushConsumerOptions::threads must be 1 to 256");
  }
  if (options.batch < 1 || options.batch > 1024) {
    return absl::InvalidArgumentError(
        "PushConsumerOptions::batch must be 1 to 1024");
  }
  std::unique_ptr<LocalPushConsumer> push(
      new LocalPushConsumer(std::move(listener), options.batch));
  ConsumerOptions consumer_options = options.consumer;
  for (int i = 0; i < options.threads; ++i) {
    absl::StatusOr<std::unique_ptr<Consumer>> consumer =
        broker.CreateConsumer(group, topic, consumer_options);
    if (!consumer.ok()) return consumer.status();
    if (i == 0 && consumer_options.model == MessageModel::kBroadcasting &&
        consumer_options.instance.empty()) {
      // The other threads join the instance the first one took.
      const std::string& progress =
          static_cast<LocalConsumer&>(**consumer).progress_group();
      consumer_options.instance = progress.substr(progress.rfind('%') + 1);
    }
    push->consumers_.push_back(*std::move(consumer));
  }
  for (auto& consumer : push->consumers_) {
    push->threads_.emplace_back(
        [raw = push.get(), c = consumer.get()] { raw->Run(*c); });
  }
  return std::unique_ptr<PushConsumer>(std::move(push));
}

LocalPushConsumer::~LocalPushConsumer() {
  stop_.store(true, std::memory_order_relaxed);
  for (std::thread& t : threads_) t.join();
  // The consumers go now, handing back what they did not process.
}

ConsumeResult LocalPushConsumer::Deliver(const MessageView& message) {
  try {
    return listener_(message);
  } catch (...) {
    return ConsumeResult::kReconsumeLater;  // an exception is a failure
  }
}

void LocalPushConsumer::Run(Consumer& consumer) {
  while (!stop_.load(std::memory_order_relaxed)) {
    absl::StatusOr<ReceivedBatch> batch = consumer.Receive(batch_, kPollSlice);
    if (!batch.ok()) {
      if (absl::IsNotFound(batch.status())) return;  // the topic is gone
      absl::SleepFor(kPollSlice);  // e.g. reader slots full: try again
      continue;
    }
    for (const MessageView& message : *batch) {
      // Stopping: the rest of the batch is handed back with the consumer.
      if (stop_.load(std::memory_order_relaxed)) break;
      if (Deliver(message) == ConsumeResult::kSuccess) {
        // An error here means the invisible time ran out (it is being
        // delivered again) or the topic is gone: nothing to do.
        (void)consumer.Ack(message);
        succeeded_.fetch_add(1, std::memory_order_relaxed);
      } else {
        (void)consumer.ReconsumeLater(message);
        failed_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
}

}  // namespace txmq
