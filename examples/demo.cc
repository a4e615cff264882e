// The txmq demo: a producer and a consumer group in one process, a restart,
// and proof that nothing was lost. Runs in a few seconds.
//
//   build/examples/txmq-demo [DIR]    (default: a fresh temporary directory)

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "txmq/txmq.h"

namespace {

constexpr int kOrders = 20000;
constexpr int kProducerThreads = 8;

void Step(const std::string& text) { std::printf("==> %s\n", text.c_str()); }

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "demo failed: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  if (argc > 1) {
    dir = argv[1];
  } else {
    char tmpl[] = "/tmp/txmq-demo-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return 1;
    dir = tmpl;
  }

  Step("open the data directory " + dir + " (kSync: every send is fsynced)");
  auto broker = txmq::Broker::Open(dir);
  if (!broker.ok()) return Fail(broker.status());
  if (absl::Status s = (*broker)->CreateTopic("order-created", {.queues = 4});
      !s.ok() && !absl::IsAlreadyExists(s)) {
    return Fail(s);
  }

  Step(
      absl::StrFormat("%d producer threads send %d orders; the writer "
                      "commits them in groups",
                      kProducerThreads, kOrders));
  auto producer = (*broker)->CreateProducer();
  if (!producer.ok()) return Fail(producer.status());
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kProducerThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kOrders; i += kProducerThreads) {
        txmq::Message m{
            .topic = "order-created",
            .key = absl::StrFormat("order-%d", i),
            .tags = {"paid"},
            .body = absl::StrFormat("{\"order\": %d, \"cents\": %d}", i,
                                    100 + i % 900)};
        if (!(*producer)->Send(m).ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  if (failures.load() != 0) {
    return Fail(absl::InternalError(
        absl::StrFormat("%d sends failed", failures.load())));
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  txmq::BrokerStats stats = (*broker)->Stats();
  std::printf("    %d durable sends in %.2f s (%.0f/s) using %llu commits\n",
              kOrders, secs, kOrders / secs,
              static_cast<unsigned long long>(stats.commits));

  Step("consumer group 'inventory' reads half of them and acknowledges");
  int received = 0;
  {
    auto consumer = (*broker)->CreateConsumer("inventory", "order-created");
    if (!consumer.ok()) return Fail(consumer.status());
    while (received < kOrders / 2) {
      auto batch = (*consumer)->Receive(std::min(500, kOrders / 2 - received),
                                        absl::Seconds(1));
      if (!batch.ok()) return Fail(batch.status());
      if (received == 0 && !batch->empty()) {
        const txmq::MessageView& m = (*batch)[0];
        std::printf("    first: id=%s queue=%u offset=%llu key=%s body=%s\n",
                    m.id().ToString().c_str(), m.queue(),
                    static_cast<unsigned long long>(m.offset()),
                    std::string(m.key()).c_str(),
                    std::string(m.body()).c_str());
      }
      received += batch->size();
      if (absl::Status s = (*consumer)->Ack(*batch); !s.ok()) return Fail(s);
    }
    if (absl::Status s = (*consumer)->Flush(); !s.ok()) return Fail(s);
  }
  std::printf("    received and acknowledged %d\n", received);

  Step("close the broker and open the directory again");
  producer->reset();
  broker->reset();
  broker = txmq::Broker::Open(dir);
  if (!broker.ok()) return Fail(broker.status());
  auto info = (*broker)->DescribeTopic("order-created");
  if (!info.ok()) return Fail(info.status());
  std::printf("    topic 'order-created' holds %llu messages in %u queues\n",
              static_cast<unsigned long long>(info->message_count()),
              info->queue_count);

  Step("the group resumes where it left off and gets the other half");
  int rest = 0;
  {
    auto consumer = (*broker)->CreateConsumer("inventory", "order-created");
    if (!consumer.ok()) return Fail(consumer.status());
    while (true) {
      auto batch = (*consumer)->Receive(1000, absl::Milliseconds(200));
      if (!batch.ok()) return Fail(batch.status());
      if (batch->empty()) break;
      rest += batch->size();
      if (absl::Status s = (*consumer)->Ack(*batch); !s.ok()) return Fail(s);
    }
  }
  std::printf("    received %d more: %d of %d orders, none lost, none twice\n",
              rest, received + rest, kOrders);
  if (received + rest != kOrders) {
    return Fail(absl::DataLossError("message count mismatch"));
  }
  Step("done; the data directory stays in " + dir);
  return 0;
}
