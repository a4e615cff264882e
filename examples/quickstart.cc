// The README's "Using the library" example, compiled so that it stays true.
//   build/examples/txmq-quickstart DIR

#include <cstdio>

#include "txmq/txmq.h"

absl::Status Run(const char* dir) {
  absl::StatusOr<std::unique_ptr<txmq::Broker>> broker =
      txmq::Broker::Open(dir, {});  // kSync by default
  if (!broker.ok()) return broker.status();
  absl::Status created = (*broker)->CreateTopic("order-created", {.queues = 4});
  if (!created.ok() && !absl::IsAlreadyExists(created)) return created;

  // Producers: thread-safe; sends are durable when they return OK.
  absl::StatusOr<std::unique_ptr<txmq::Producer>> producer =
      (*broker)->CreateProducer();
  if (!producer.ok()) return producer.status();
  absl::StatusOr<txmq::SendResult> sent =
      (*producer)->Send({.topic = "order-created",
                         .key = "order-42",
                         .tags = {"paid"},
                         .properties = {{"region", "eu"}},
                         .body = R"({"order":42})"});
  if (!sent.ok()) return sent.status();
  std::printf("sent %s to queue %u at offset %llu\n",
              sent->id.ToString().c_str(), sent->queue,
              static_cast<unsigned long long>(sent->offset));

  // Consumers: one per thread; every group gets every message.
  absl::StatusOr<std::unique_ptr<txmq::Consumer>> consumer =
      (*broker)->CreateConsumer("inventory", "order-created");
  if (!consumer.ok()) return consumer.status();
  absl::StatusOr<txmq::ReceivedBatch> batch =
      (*consumer)->Receive(/*max_messages=*/100, /*wait=*/absl::Seconds(1));
  if (!batch.ok()) return batch.status();
  for (const txmq::MessageView& m : *batch) {
    // The views point into the data file: valid until `batch` dies.
    std::printf("received %.*s (region %.*s)\n",
                static_cast<int>(m.body().size()), m.body().data(),
                static_cast<int>(m.property("region").value_or("").size()),
                m.property("region").value_or("").data());
  }
  return (*consumer)->Ack(*batch);  // progress is written in the background
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  absl::Status s = Run(argv[1]);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
