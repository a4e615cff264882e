// Latencies (part of txmq_bench; percentiles are reported as counters, in
// microseconds or milliseconds as their names say):
//
//   BM_TxmqLatency/sync|async    send to receive, one producer sending one
//                                message at a time, one consumer waiting
//   BM_TxmqDelayedFiring         delayed messages due over 2 s: how late
//                                each is received after its deliver_at
//   BM_TxmqDelayedBurst          500,000 delayed messages due in the same
//                                millisecond: how long until all arrived
//
// The system clock drives the broker here (delays are real).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "benchmark/benchmark.h"
#include "txmq/txmq.h"

namespace {

using txmq::bench::Check;
using txmq::bench::MakeTempDir;
using txmq::bench::RemoveDir;

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The p-th percentile (0..100) of `v` (sorted in place).
double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i =
      std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()));
  return v[i];
}

struct Broker {
  explicit Broker(txmq::Durability durability, uint32_t queues = 4)
      : dir(MakeTempDir("latency")) {
    txmq::Options options;
    options.durability = durability;
    auto opened = txmq::Broker::Open(dir, options);
    Check(opened.ok(), "open");
    broker = *std::move(opened);
    Check(broker->CreateTopic("bench", {.queues = queues}).ok(), "topic");
  }
  ~Broker() {
    broker.reset();
    RemoveDir(dir);
  }
  std::string dir;
  std::unique_ptr<txmq::Broker> broker;
};

void BM_TxmqLatency(benchmark::State& state, txmq::Durability durability) {
  constexpr int kMessages = 20000;
  std::vector<double> micros;
  for (auto _ : state) {
    Broker b(durability);
    auto producer = *b.broker->CreateProducer();
    auto consumer = *b.broker->CreateConsumer("g", "bench");
    std::atomic<int> received{0};
    micros.clear();
    micros.reserve(kMessages);
    std::thread reader([&] {
      while (received.load() < kMessages) {
        auto batch = consumer->Receive(64, absl::Milliseconds(100));
        if (!batch.ok()) return;
        const int64_t now = SteadyNanos();
        for (const txmq::MessageView& m : *batch) {
          micros.push_back((now - std::stoll(std::string(m.body()))) / 1e3);
        }
        (void)consumer->Ack(*batch);
        received.fetch_add(batch->size());
      }
    });
    for (int i = 0; i < kMessages; ++i) {
      // The body carries the send's start time.
      if (!producer
               ->Send({.topic = "bench", .body = std::to_string(SteadyNanos())})
               .ok()) {
        state.SkipWithError("send failed");
        break;
      }
    }
    reader.join();
  }
  state.SetItemsProcessed(state.iterations() * kMessages);
  state.counters["p50_us"] = Percentile(micros, 50);
  state.counters["p99_us"] = Percentile(micros, 99);
  state.counters["p999_us"] = Percentile(micros, 99.9);
  state.counters["max_us"] = Percentile(micros, 100);
}
BENCHMARK_CAPTURE(BM_TxmqLatency, sync, txmq::Durability::kSync)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_TxmqLatency, async, txmq::Durability::kAsync)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Receives `n` messages of `consumer` and returns, for each, how late it
// arrived after its deliver_at (carried in the body, Unix ms), in ms.
std::vector<double> Lateness(txmq::Consumer& consumer, int n,
                             absl::Duration patience) {
  std::vector<double> late;
  late.reserve(n);
  const absl::Time deadline = absl::Now() + patience;
  while (static_cast<int>(late.size()) < n && absl::Now() < deadline) {
    auto batch = consumer.Receive(4096, absl::Milliseconds(50));
    if (!batch.ok()) break;
    const absl::Time now = absl::Now();
    for (const txmq::MessageView& m : *batch) {
      const int64_t due_ms = std::stoll(std::string(m.body()));
      late.push_back(
          absl::ToDoubleMilliseconds(now - absl::FromUnixMillis(due_ms)));
    }
    (void)consumer.Ack(*batch);
  }
  return late;
}

void BM_TxmqDelayedFiring(benchmark::State& state) {
  constexpr int kMessages = 20000;
  std::vector<double> late;
  for (auto _ : state) {
    Broker b(txmq::Durability::kAsync);
    auto producer = *b.broker->CreateProducer();
    auto consumer = *b.broker->CreateConsumer("g", "bench");
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> spread(300, 2300);  // ms ahead
    std::vector<txmq::Message> batch;
    const absl::Time start = absl::Now();
    for (int i = 0; i < kMessages; ++i) {
      const int64_t due_ms =
          absl::ToUnixMillis(start + absl::Milliseconds(spread(rng)));
      batch.push_back({.topic = "bench",
                       .body = std::to_string(due_ms),
                       .deliver_at = absl::FromUnixMillis(due_ms)});
      if (batch.size() == 1000) {
        Check(producer->SendBatch(batch).ok(), "send");
        batch.clear();
      }
    }
    Check(absl::Now() - start < absl::Milliseconds(300), "sends too slow");
    late = Lateness(*consumer, kMessages, absl::Seconds(30));
    if (static_cast<int>(late.size()) != kMessages) {
      state.SkipWithError("not every delayed message arrived");
    }
  }
  state.SetItemsProcessed(state.iterations() * kMessages);
  state.counters["late_p50_ms"] = Percentile(late, 50);
  state.counters["late_p99_ms"] = Percentile(late, 99);
  state.counters["late_max_ms"] = Percentile(late, 100);
  state.counters["early"] =
      std::count_if(late.begin(), late.end(), [](double ms) { return ms < 0; });
}
BENCHMARK(BM_TxmqDelayedFiring)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_TxmqDelayedBurst(benchmark::State& state) {
  constexpr int kMessages = 500000;
  std::vector<double> late;
  for (auto _ : state) {
    Broker b(txmq::Durability::kAsync);
    auto producer = *b.broker->CreateProducer();
    auto consumer = *b.broker->CreateConsumer("g", "bench");
    // All due in the same millisecond, far enough ahead to store them all.
    const int64_t due_ms = absl::ToUnixMillis(absl::Now() + absl::Seconds(12));
    std::vector<txmq::Message> batch(
        1000, txmq::Message{.topic = "bench",
                            .body = std::to_string(due_ms),
                            .deliver_at = absl::FromUnixMillis(due_ms)});
    for (int i = 0; i < kMessages; i += 1000) {
      Check(producer->SendBatch(batch).ok(), "send");
    }
    Check(absl::Now() < absl::FromUnixMillis(due_ms), "sends too slow");
    late = Lateness(*consumer, kMessages, absl::Seconds(60));
    if (static_cast<int>(late.size()) != kMessages) {
      state.SkipWithError("not every delayed message arrived");
    }
  }
  state.SetItemsProcessed(state.iterations() * kMessages);
  state.counters["all_in_ms"] = Percentile(late, 100);
  state.counters["late_p50_ms"] = Percentile(late, 50);
  state.counters["within_10ms"] = std::count_if(
      late.begin(), late.end(), [](double ms) { return ms <= 10; });
  state.counters["early"] =
      std::count_if(late.begin(), late.end(), [](double ms) { return ms < 0; });
}
BENCHMARK(BM_TxmqDelayedBurst)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
