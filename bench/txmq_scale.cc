// One million pending transactions: open time, resident memory per pending
// transaction, and check-back throughput. Run by hand (it takes a minute):
//
//   build/bench/txmq_scale [COUNT] [DIR]    (default 1000000, /tmp)
//
// Two populations: half of the transactions have their first check in 6 s
// (inside the timer wheel's 10-minute window: armed in memory), half in a
// day (outside it: their timers stay on disk until the window reaches them).

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "txmq/txmq.h"

namespace {

// Anonymous resident memory (the heap: what grows with pending state). The
// mapped data file's pages are file-backed, shared and reclaimable, and are
// reported apart.
size_t StatusKb(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::strtoull(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return 0;
}
size_t ResidentBytes() { return StatusKb("RssAnon") * 1024; }
size_t FileResidentBytes() { return StatusKb("RssFile") * 1024; }

class CommitAll final : public txmq::TransactionChecker {
 public:
  txmq::TransactionState Check(const txmq::HalfMessage&) override {
    return txmq::TransactionState::kCommit;
  }
};

void Die(const std::string& what) {
  std::fprintf(stderr, "txmq_scale: %s\n", what.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  const int count = argc > 1 ? std::atoi(argv[1]) : 1000000;
  const std::string base = argc > 2 ? argv[2] : "/tmp";
  const std::string dir = base + "/txmq-scale";
  std::filesystem::remove_all(dir);
  auto clock = std::make_shared<txmq::ManualClock>(absl::Now());
  txmq::Options options;
  options.clock = clock;
  options.durability = txmq::Durability::kAsync;  // Begin still syncs

  {
    auto broker = txmq::Broker::Open(dir, options);
    if (!broker.ok()) Die(broker.status().ToString());
    if (!(*broker)->CreateTopic("orders", {.queues = 8}).ok()) Die("topic");
    auto producer = *(*broker)->CreateProducer({.group = "scale"});
    const absl::Time start = absl::Now();
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 64; ++t) {
      threads.emplace_back([&] {
        const std::string body(128, 'b');
        for (int i; (i = next.fetch_add(1)) < count;) {
          const absl::Duration first =
              i % 2 == 0 ? absl::Seconds(6) : absl::Hours(24);
          auto txn = producer->Begin(
              {.topic = "orders", .key = std::to_string(i), .body = body},
              {.first_check = first});
          if (!txn.ok()) Die(txn.status().ToString());
        }
      });
    }
    for (auto& t : threads) t.join();
    std::printf("filled %d pending transactions in %.1f s\n", count,
                absl::ToDoubleSeconds(absl::Now() - start));
  }
  std::printf("data file: %.0f MiB\n",
              std::filesystem::file_size(dir + "/data.mdb") / 1048576.0);

  const size_t rss_before = ResidentBytes();
  const absl::Time open_start = absl::Now();
  auto broker = txmq::Broker::Open(dir, options);
  if (!broker.ok()) Die(broker.status().ToString());
  const absl::Duration open_time = absl::Now() - open_start;
  // Let the timer thread load its window (the 6 s half).
  absl::SleepFor(absl::Seconds(2));
  const size_t rss_open = ResidentBytes();
  const txmq::BrokerStats stats = (*broker)->Stats();
  std::printf("open: %.3f s; pending %llu\n", absl::ToDoubleSeconds(open_time),
              static_cast<unsigned long long>(stats.pending_transactions));
  std::printf(
      "anonymous resident memory after open: +%.1f MiB = %.1f bytes per "
      "pending transaction (half of them armed in the wheel, half on disk "
      "only); mapped file pages resident: %.1f MiB\n",
      (rss_open - rss_before) / 1048576.0,
      static_cast<double>(rss_open - rss_before) / count,
      FileResidentBytes() / 1048576.0);

  const absl::Time check_start = absl::Now();
  if (!(*broker)
           ->RegisterChecker("scale", std::make_shared<CommitAll>())
           .ok()) {
    Die("register");
  }
  clock->Advance(absl::Seconds(7));  // the first half is due
  size_t peak = rss_open;
  while ((*broker)->Stats().pending_transactions >
         static_cast<uint64_t>(count / 2)) {
    absl::SleepFor(absl::Milliseconds(10));
    peak = std::max(peak, ResidentBytes());
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - check_start);
  std::printf(
      "checked and committed %d in %.2f s: %.0f checks/s; peak "
      "resident +%.1f MiB\n",
      count / 2, secs, (count / 2) / secs, (peak - rss_before) / 1048576.0);
  broker->reset();
  std::filesystem::remove_all(dir);
  return 0;
}
