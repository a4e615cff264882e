// A points service: when a student finishes a course, award the course's
// points exactly once (DESIGN.md, "Beyond RocketMQ: one local transaction").
//
// For each "course-finished" message, ONE local transaction
//   - adds the points to the student's balance   (host table "balances"),
//   - records the award under the message's id   (host table "awards"),
//   - publishes "points-awarded"                  (topic),
//   - acknowledges "course-finished" for good     (consumer group).
// A crash at any moment leaves all four done or none: a message is never
// awarded twice and never lost (tests/crash/points_crash_test.cc kills this
// program with SIGKILL again and again to show it).
//
//   txmq-points-service                  demo in a temporary directory
//   txmq-points-service DIR produce N    publish N course-finished events
//   txmq-points-service DIR serve [T]    award with T threads (default 4)
//                                        until nothing arrives for 300 ms
//   txmq-points-service DIR check        verify the books; exit 1 if wrong

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "txmq/txmq.h"

namespace {

constexpr char kFinished[] = "course-finished";
constexpr char kAwarded[] = "points-awarded";
constexpr char kGroup[] = "points-service";

void Report(const absl::Status& s, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
}

absl::StatusOr<std::unique_ptr<txmq::Broker>> OpenBroker(const char* dir) {
  absl::StatusOr<std::unique_ptr<txmq::Broker>> broker =
      txmq::Broker::Open(dir);
  if (!broker.ok()) return broker.status();
  for (const char* topic : {kFinished, kAwarded}) {
    absl::Status s = (*broker)->CreateTopic(topic, {.queues = 4});
    if (!s.ok() && !absl::IsAlreadyExists(s)) return s;
  }
  return broker;
}

absl::Status Produce(txmq::Broker& broker, int n) {
  absl::StatusOr<std::unique_ptr<txmq::Producer>> producer =
      broker.CreateProducer();
  if (!producer.ok()) return producer.status();
  std::vector<txmq::Message> batch;
  for (int i = 0; i < n; ++i) {
    // Key: the student, so a student's events stay in order on one queue.
    batch.push_back({.topic = kFinished,
                     .key = "student-" + std::to_string(i % 7),
                     .body = std::to_string(i % 5 + 1)});  // the points
    if (batch.size() == 100 || i == n - 1) {
      if (auto sent = (*producer)->SendBatch(batch); !sent.ok()) {
        return sent.status();
      }
      batch.clear();
    }
  }
  return absl::OkStatus();
}

// Awards one course-finished message in one local transaction.
absl::Status Award(txmq::Broker& broker, txmq::Consumer& consumer,
                   txmq::LocalTable balances, txmq::LocalTable awards,
                   const txmq::MessageView& m) {
  return broker.RunInTransaction(
      [&](txmq::LocalTransaction& tx) -> absl::Status {
        const std::string student(m.key());
        const int points = std::atoi(std::string(m.body()).c_str());
        absl::StatusOr<std::optional<std::string_view>> old =
            tx.Get(balances, student);
        if (!old.ok()) return old.status();
        const long balance =
            old->has_value() ? std::atol(std::string(**old).c_str()) : 0;
        if (absl::Status s =
                tx.Put(balances, student, std::to_string(balance + points));
            !s.ok()) {
          return s;
        }
        if (absl::Status s =
                tx.Put(awards, m.id().ToString(), std::to_string(points));
            !s.ok()) {
          return s;
        }
        absl::StatusOr<txmq::SendResult> sent =
            tx.Send({.topic = kAwarded,
                     .key = student,
                     .body = m.id().ToString() + " " + std::to_string(points)});
        if (!sent.ok()) return sent.status();
        return tx.Ack(consumer, m);
      });
}

absl::Status Serve(txmq::Broker& broker, int threads) {
  absl::StatusOr<txmq::LocalTable> balances = broker.OpenTable("balances");
  absl::StatusOr<txmq::LocalTable> awards = broker.OpenTable("awards");
  if (!balances.ok()) return balances.status();
  if (!awards.ok()) return awards.status();
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      absl::StatusOr<std::unique_ptr<txmq::Consumer>> consumer =
          broker.CreateConsumer(kGroup, kFinished);
      if (!consumer.ok()) {
        Report(consumer.status(), "consumer");
        failed = true;
        return;
      }
      while (true) {
        absl::StatusOr<txmq::ReceivedBatch> batch =
            (*consumer)->Receive(16, absl::Milliseconds(300));
        if (!batch.ok() || batch->empty()) break;  // drained (or an error)
        for (const txmq::MessageView& m : *batch) {
          absl::Status s = Award(broker, **consumer, *balances, *awards, m);
          // FAILED_PRECONDITION: its invisible time ran out and it will be
          // delivered again; that delivery is awarded instead.
          if (!s.ok() && !absl::IsFailedPrecondition(s)) {
            Report(s, "award");
            failed = true;
            return;
          }
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  return failed ? absl::InternalError("a worker failed") : absl::OkStatus();
}

// The books: every course-finished message awarded exactly once.
absl::Status Check(txmq::Broker& broker, bool verbose) {
  absl::StatusOr<txmq::LocalTable> balances = broker.OpenTable("balances");
  absl::StatusOr<txmq::LocalTable> awards = broker.OpenTable("awards");
  if (!balances.ok()) return balances.status();
  if (!awards.ok()) return awards.status();
  std::map<std::string, int> awarded;   // message id -> points
  std::map<std::string, long> balance;  // student -> points
  absl::Status read = broker.ReadTables([&](const txmq::LocalReader& r) {
    absl::Status s = r.Scan(*awards, "", [&](auto k, auto v) {
      awarded[std::string(k)] = std::atoi(std::string(v).c_str());
      return true;
    });
    if (!s.ok()) return s;
    return r.Scan(*balances, "", [&](auto k, auto v) {
      balance[std::string(k)] = std::atol(std::string(v).c_str());
      return true;
    });
  });
  if (!read.ok()) return read;
  // Read both topics from the start, as the group "audit".
  std::map<std::string, long> expected;  // student -> points, from awards
  size_t finished = 0, missing = 0;
  std::map<std::string, int> published;  // message id -> points-awarded
  for (const std::string_view topic : {kFinished, kAwarded}) {
    if (absl::Status s = broker.ResetGroup("audit", topic, {}); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::unique_ptr<txmq::Consumer>> reader =
        broker.CreateConsumer("audit", topic);
    if (!reader.ok()) return reader.status();
    while (true) {
      absl::StatusOr<txmq::ReceivedBatch> batch =
          (*reader)->Receive(1000, absl::ZeroDuration());
      if (!batch.ok()) return batch.status();
      if (batch->empty()) break;
      for (const txmq::MessageView& m : *batch) {
        if (topic == kFinished) {
          ++finished;
          auto it = awarded.find(m.id().ToString());
          if (it == awarded.end()) {
            ++missing;
          } else {
            expected[std::string(m.key())] += it->second;
          }
        } else {
          const std::string body(m.body());
          ++published[body.substr(0, body.find(' '))];
        }
      }
      (void)(*reader)->Ack(*batch);
    }
  }
  size_t doubled = 0;
  for (const auto& [id, n] : published) doubled += n > 1;
  const bool ok = missing == 0 && doubled == 0 && expected == balance &&
                  published.size() == awarded.size() &&
                  awarded.size() == finished;
  if (verbose || !ok) {
    std::printf(
        "%zu course-finished, %zu awarded, %zu missing, %zu points-awarded "
        "(%zu twice), balances %s\n",
        finished, awarded.size(), missing, published.size(), doubled,
        expected == balance ? "agree" : "DISAGREE");
  }
  if (verbose) {
    for (const auto& [student, points] : balance) {
      std::printf("  %-10s %ld points\n", student.c_str(), points);
    }
  }
  return ok ? absl::OkStatus() : absl::DataLossError("the books disagree");
}

int Demo() {
  char dir[] = "/tmp/txmq-points-XXXXXX";
  if (mkdtemp(dir) == nullptr) return 1;
  int rc = 1;
  {
    absl::StatusOr<std::unique_ptr<txmq::Broker>> broker = OpenBroker(dir);
    if (broker.ok() && Produce(**broker, 100).ok() && Serve(**broker, 4).ok() &&
        Check(**broker, /*verbose=*/true).ok()) {
      rc = 0;
    }
  }
  std::filesystem::remove_all(dir);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Demo();
  if (argc < 3) {
    std::fprintf(
        stderr, "usage: %s [DIR produce N | DIR serve [THREADS] | DIR check]\n",
        argv[0]);
    return 2;
  }
  absl::StatusOr<std::unique_ptr<txmq::Broker>> broker = OpenBroker(argv[1]);
  if (!broker.ok()) {
    Report(broker.status(), "open");
    return 1;
  }
  const std::string mode = argv[2];
  absl::Status s;
  if (mode == "produce" && argc == 4) {
    s = Produce(**broker, std::atoi(argv[3]));
  } else if (mode == "serve") {
    std::printf("ready\n");
    std::fflush(stdout);
    s = Serve(**broker, argc == 4 ? std::atoi(argv[3]) : 4);
  } else if (mode == "check") {
    s = Check(**broker, /*verbose=*/true);
  } else {
    std::fprintf(stderr, "unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  if (!s.ok()) {
    Report(s, mode.c_str());
    return 1;
  }
  return 0;
}
