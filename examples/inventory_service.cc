// The inventory service of the two-process example (README, "Two
// processes"): a consumer group in another process, reading the order
// service's "order-created" over RPC (txmq::RemoteBroker: the same Consumer
// as in process).
//
//   build/examples/txmq-inventory-service unix:/tmp/orders.sock [EXPECT]
//
// Reserves stock for each order it receives and acknowledges it; stops
// after EXPECT orders (default: on Ctrl-C).

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/strings/str_format.h"
#include "txmq/remote_broker.h"

namespace {

std::atomic<bool> interrupted{false};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "inventory service failed: %s\n",
               status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: txmq-inventory-service unix:/path/to.sock|HOST:PORT "
                 "[EXPECT]\n");
    return 2;
  }
  const std::string address = argv[1];
  const int expect = argc > 2 ? std::atoi(argv[2]) : -1;
  ::signal(SIGINT, [](int) { interrupted.store(true); });
  ::signal(SIGTERM, [](int) { interrupted.store(true); });

  // The order service may still be starting: try for a while.
  absl::StatusOr<std::unique_ptr<txmq::RemoteBroker>> remote;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    remote = txmq::RemoteBroker::Connect(address);
    if (!remote.ok()) absl::SleepFor(absl::Milliseconds(100));
  } while (!remote.ok() && absl::Now() < deadline);
  if (!remote.ok()) return Fail(remote.status());
  auto consumer =
      (*remote)->CreateConsumer("inventory-service", "order-created");
  if (!consumer.ok()) return Fail(consumer.status());

  int reserved = 0;
  while (!interrupted.load() && (expect < 0 || reserved < expect)) {
    auto batch = (*consumer)->Receive(16, absl::Milliseconds(500));
    if (!batch.ok()) return Fail(batch.status());
    for (const txmq::MessageView& m : *batch) {
      std::printf("inventory: order %s received: reserve one %s\n",
                  std::string(m.key()).c_str(), std::string(m.body()).c_str());
      ++reserved;
    }
    std::fflush(stdout);
    if (absl::Status s = (*consumer)->Ack(*batch); !s.ok()) return Fail(s);
  }
  if (absl::Status s = (*consumer)->Flush(); !s.ok()) return Fail(s);
  std::printf("inventory: %d orders reserved\n", reserved);
  return 0;
}
