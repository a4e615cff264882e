// Retention soak: sends continuously into a topic with a short retention and
// reports, as (simulated) time passes, the data file's size and how many
// messages are stored and expired. Once retention holds steady the file
// stops growing: LMDB reuses the pages the sweep frees (as long as no old
// read transaction pins them). Run by hand:
//
//   build/bench/txmq_retention_soak [--seconds=600] [--rate=2000]
//       [--body=1024] [--retention=10] [--report=30] [--queues=4]
//       [--consume] [--hold=0] [--sync] [--real_clock] [--dir=/tmp]
//
//   --seconds    how long to run, in simulated seconds
//   --rate       messages per simulated second
//   --body       body bytes per message
//   --retention  the topic's retention, seconds
//   --report     print a line every this many simulated seconds
//   --consume    a consumer group reads and acknowledges everything
//   --hold       half-way through, hold one received batch (an open read
//                transaction) for this many simulated seconds
//   --sync       kSync durability (default kAsync: the file's growth does
//                not depend on it, and the run is faster)
//   --real_clock the system clock and real pacing (default: a ManualClock
//                advanced 100 ms per step, as fast as the broker allows)
//
// The retention sweep runs every second (Options::retention_check_interval).

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "txmq/txmq.h"

namespace {

struct Flags {
  int64_t seconds = 600;
  int64_t rate = 2000;
  int64_t body = 1024;
  int64_t retention = 10;
  int64_t report = 30;
  int64_t queues = 4;
  int64_t hold = 0;
  bool consume = false;
  bool sync = false;
  bool real_clock = false;
  std::string dir = "/tmp";
};

void Die(const std::string& what) {
  std::fprintf(stderr, "txmq_retention_soak: %s\n", what.c_str());
  std::exit(1);
}

Flags Parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string_view name = arg.substr(0, eq);
    const std::string value(eq == std::string_view::npos ? ""
                                                         : arg.substr(eq + 1));
    auto number = [&](int64_t* out) {
      char* end = nullptr;
      *out = std::strtoll(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || *out <= 0) {
        Die(absl::StrFormat("%s needs a positive number", std::string(name)));
      }
    };
    if (name == "--seconds") {
      number(&f.seconds);
    } else if (name == "--rate") {
      number(&f.rate);
    } else if (name == "--body") {
      number(&f.body);
    } else if (name == "--retention") {
      number(&f.retention);
    } else if (name == "--report") {
      number(&f.report);
    } else if (name == "--queues") {
      number(&f.queues);
    } else if (name == "--hold") {
      number(&f.hold);
    } else if (name == "--dir") {
      f.dir = value;
    } else if (name == "--consume") {
      f.consume = true;
    } else if (name == "--sync") {
      f.sync = true;
    } else if (name == "--real_clock") {
      f.real_clock = true;
    } else {
      Die(
          absl::StrFormat("unknown flag %s (see the comment at the top of "
                          "bench/txmq_retention_soak.cc)",
                          std::string(arg)));
    }
  }
  return f;
}

double MiB(uint64_t bytes) { return bytes / 1048576.0; }

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = Parse(argc, argv);
  const std::string dir = flags.dir + "/txmq-retention-soak";
  std::filesystem::remove_all(dir);

  std::shared_ptr<txmq::ManualClock> manual;
  txmq::Options options;
  if (!flags.real_clock) {
    manual = std::make_shared<txmq::ManualClock>(absl::Now());
    options.clock = manual;
  }
  options.durability =
      flags.sync ? txmq::Durability::kSync : txmq::Durability::kAsync;
  options.retention_check_interval = absl::Seconds(1);

  auto opened = txmq::Broker::Open(dir, options);
  if (!opened.ok()) Die(opened.status().ToString());
  std::unique_ptr<txmq::Broker> broker = *std::move(opened);
  if (absl::Status s = broker->CreateTopic(
          "soak", {.queues = static_cast<uint32_t>(flags.queues),
                   .retention = absl::Seconds(flags.retention)});
      !s.ok()) {
    Die(s.ToString());
  }
  auto producer =
      broker->CreateProducer({.selector = txmq::QueueSelector::kRoundRobin});
  if (!producer.ok()) Die(producer.status().ToString());

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> consumed{0};
  std::thread consumer_thread;
  if (flags.consume) {
    auto consumer = broker->CreateConsumer("soak-group", "soak");
    if (!consumer.ok()) Die(consumer.status().ToString());
    consumer_thread = std::thread([&, c = *std::move(consumer)]() mutable {
      while (!stop.load()) {
        auto batch = c->Receive(256, absl::Milliseconds(20));
        if (!batch.ok()) Die(batch.status().ToString());
        consumed.fetch_add(batch->size());
        if (!batch->empty() && !c->Ack(*batch).ok()) Die("ack failed");
      }
    });
  }

  std::printf(
      "retention %llds, %lld msg/s of %lld B, %lld queues, %s, %s clock%s\n",
      static_cast<long long>(flags.retention),
      static_cast<long long>(flags.rate), static_cast<long long>(flags.body),
      static_cast<long long>(flags.queues), flags.sync ? "kSync" : "kAsync",
      flags.real_clock ? "real" : "manual",
      flags.consume ? ", one consumer group" : "");
  std::printf("%8s %10s %9s %10s %10s %11s %10s %9s\n", "sim_s", "sent",
              "stored", "expired", "consumed", "data.mdb", "used", "real_s");

  const std::string body(flags.body, 'x');
  const absl::Duration step = absl::Milliseconds(100);
  const int64_t per_step = std::max<int64_t>(1, flags.rate / 10);
  const int64_t steps = flags.seconds * 10;
  const absl::Time real_start = absl::Now();
  uint64_t sent = 0;
  std::vector<txmq::Message> batch;
  std::unique_ptr<txmq::Consumer> holder;
  txmq::ReceivedBatch held;
  for (int64_t i = 1; i <= steps; ++i) {
    const absl::Time step_start = absl::Now();
    if (flags.hold > 0 && i == steps / 2) {
      holder = *broker->CreateConsumer("soak-holder", "soak");
      auto got = holder->Receive(1, absl::ZeroDuration());
      if (!got.ok()) Die(got.status().ToString());
      if (got->empty()) Die("nothing to hold");
      held = *std::move(got);
      std::printf("%8lld holding a batch for %llds\n",
                  static_cast<long long>(i / 10),
                  static_cast<long long>(flags.hold));
    }
    if (holder != nullptr && i == steps / 2 + flags.hold * 10) {
      held = txmq::ReceivedBatch();
      holder.reset();
      std::printf("%8lld released the batch\n", static_cast<long long>(i / 10));
    }
    for (int64_t n = 0; n < per_step; n += batch.size()) {
      batch.clear();
      for (int64_t j = n; j < per_step && j < n + 256; ++j) {
        batch.push_back({.topic = "soak", .body = body});
      }
      auto results = (*producer)->SendBatch(batch);
      if (!results.ok()) Die(results.status().ToString());
      sent += batch.size();
    }
    if (manual != nullptr) {
      manual->Advance(step);
    } else {
      absl::SleepFor(step - (absl::Now() - step_start));
    }
    if (i % (flags.report * 10) == 0 || i == steps) {
      const txmq::BrokerStats stats = broker->Stats();
      auto info = broker->DescribeTopic("soak");
      if (!info.ok()) Die(info.status().ToString());
      std::printf(
          "%8lld %10llu %9llu %10llu %10llu %7.1f MiB %6.1f MiB %9.1f\n",
          static_cast<long long>(i / 10), static_cast<unsigned long long>(sent),
          static_cast<unsigned long long>(info->message_count()),
          static_cast<unsigned long long>(stats.expired_messages),
          static_cast<unsigned long long>(consumed.load()),
          MiB(std::filesystem::file_size(dir + "/data.mdb")),
          MiB(stats.used_bytes),
          absl::ToDoubleSeconds(absl::Now() - real_start));
      std::fflush(stdout);
    }
  }
  stop.store(true);
  if (consumer_thread.joinable()) consumer_thread.join();
  producer->reset();
  broker.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
