// A helper the tests run as a separate process (exec'd, so that it never
// shares an LMDB environment with its parent).
//
//   txmq_test_child hold DIR
//       opens DIR, prints "ready", and waits to be killed.
//   txmq_test_child send DIR SIDEFILE THREADS sync|async
//       opens DIR (kSync or kAsync), prints "ready", and sends from THREADS
//       threads until killed. After each send that returned OK it appends
//       "<id> <queue> <offset>\n" to SIDEFILE (O_APPEND, one write per
//       line), so the file lists acknowledged messages only.
//   txmq_test_child remote-begin ADDRESS GROUP TOPIC
//       connects to a txmq server, begins a transaction (first check after
//       200 ms), prints "ready", and waits to be killed.
//   txmq_test_child read DIR
//       opens DIR with an Inspector, prints "ready" from inside a Verify
//       (a read transaction open), and waits to be killed.
//   txmq_test_child topics DIR COUNT QUEUES
//       opens DIR, creates topics t0..t<COUNT-1> of QUEUES queues, prints
//       "ready", and waits to be killed.
//   txmq_test_child consume DIR SIDEFILE THREADS
//       opens DIR, prints "ready", and consumes topic "crash" as group
//       "workers" from THREADS consumers until killed, acknowledging every
//       message (after 4 ms of "processing" per batch of up to 16) and
//       calling Flush every few batches. Before acknowledging a
//       batch it appends "<id>\n" per message to SIDEFILE: a message not in
//       the file was never acknowledged.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "txmq/remote_broker.h"
#include "txmq/txmq.h"

namespace {

int Die(const std::string& what) {
  std::fprintf(stderr, "txmq_test_child: %s\n", what.c_str());
  return 2;
}

void Ready() {
  std::printf("ready\n");
  std::fflush(stdout);
}

int Hold(const std::string& dir) {
  auto broker = txmq::Broker::Open(dir);
  if (!broker.ok()) return Die(broker.status().ToString());
  Ready();
  while (true) pause();
}

int Send(const std::string& dir, const std::string& side, int threads,
         bool sync) {
  txmq::Options options;
  options.durability =
      sync ? txmq::Durability::kSync : txmq::Durability::kAsync;
  // Tests of map growth start with a small map.
  if (const char* map = std::getenv("TXMQ_CHILD_MAP_BYTES"); map != nullptr) {
    options.initial_map_bytes = std::strtoull(map, nullptr, 10);
  }
  auto broker = txmq::Broker::Open(dir, options);
  if (!broker.ok()) return Die(broker.status().ToString());
  absl::Status created = (*broker)->CreateTopic("crash", {.queues = 4});
  if (!created.ok() && !absl::IsAlreadyExists(created)) {
    return Die(created.ToString());
  }
  const int fd = ::open(side.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return Die("cannot open side file");
  auto producer = (*broker)->CreateProducer();
  if (!producer.ok()) return Die(producer.status().ToString());
  Ready();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (uint64_t i = 0;; ++i) {
        txmq::Message m{
            .topic = "crash",
            .key =
                (i % 3 == 0) ? absl::StrFormat("k%d", i % 17) : std::string(),
            .body = absl::StrFormat("t%d-%d-%s", t, i, std::string(100, 'x'))};
        absl::StatusOr<txmq::SendResult> r = (*producer)->Send(m);
        if (!r.ok()) {
          std::fprintf(stderr, "send failed: %s\n",
                       r.status().ToString().c_str());
          std::_Exit(3);
        }
        const std::string line = absl::StrFormat("%s %d %d\n", r->id.ToString(),
                                                 r->queue, r->offset);
        if (::write(fd, line.data(), line.size()) !=
            static_cast<ssize_t>(line.size())) {
          std::_Exit(4);
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  return 0;
}

int Consume(const std::string& dir, const std::string& side, int threads) {
  auto broker = txmq::Broker::Open(dir);
  if (!broker.ok()) return Die(broker.status().ToString());
  const int fd = ::open(side.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return Die("cannot open side file");
  std::vector<std::unique_ptr<txmq::Consumer>> consumers;
  for (int t = 0; t < threads; ++t) {
    auto consumer = (*broker)->CreateConsumer("workers", "crash");
    if (!consumer.ok()) return Die(consumer.status().ToString());
    consumers.push_back(*std::move(consumer));
  }
  Ready();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      txmq::Consumer& consumer = *consumers[t];
      for (int round = 1;; ++round) {
        auto batch = consumer.Receive(16, absl::Milliseconds(100));
        if (!batch.ok()) std::_Exit(3);
        absl::SleepFor(absl::Milliseconds(1));  // "processing
        std::string ids;
        for (const txmq::MessageView& m : *batch) {
          ids += m.id().ToString() + "\n";
        }
        if (::write(fd, ids.data(), ids.size()) !=
            static_cast<ssize_t>(ids.size())) {
          std::_Exit(6);
        }
        // Half one by one, half as a batch.
        if (round % 2 == 0) {
          if (!consumer.Ack(*batch).ok()) std::_Exit(4);
        } else {
          for (const txmq::MessageView& m : *batch) {
            if (!consumer.Ack(m).ok()) std::_Exit(4);
          }
        }
        if (round % 4 == 0 && !consumer.Flush().ok()) std::_Exit(5);
      }
    });
  }
  for (auto& w : workers) w.join();
  return 0;
}

}  // namespace

// Creates `topics` topics "t0".. of `queues` queues each, then prints
// "ready" and waits to be killed.
int Topics(const std::string& dir, int topics, int queues) {
  txmq::Options options;
  options.max_queues = 32768;
  auto broker = txmq::Broker::Open(dir, options);
  if (!broker.ok()) return Die(broker.status().ToString());
  for (int t = 0; t < topics; ++t) {
    absl::Status s = (*broker)->CreateTopic(
        absl::StrFormat("t%d", t), {.queues = static_cast<uint32_t>(queues)});
    if (!s.ok()) return Die(s.ToString());
  }
  Ready();
  while (true) pause();
}

// Opens DIR with an Inspector and, inside its Verify (a read transaction
// open), prints "ready" and waits to be killed.
int Read(const std::string& dir) {
  auto inspector = txmq::Inspector::Open(dir);
  if (!inspector.ok()) return Die(inspector.status().ToString());
  auto report = (*inspector)->Verify([](uint64_t, uint64_t) {
    Ready();
    while (true) pause();
    return true;
  });
  return Die("Verify returned");
}

// Connects to a txmq server at ADDR, begins a transaction of producer
// group GROUP on TOPIC (first check after 200 ms), prints "ready", and
// waits to be killed: a remote producer that dies between Begin and Commit.
int RemoteBegin(const std::string& address, const std::string& group,
                const std::string& topic) {
  auto remote = txmq::RemoteBroker::Connect(address);
  if (!remote.ok()) return Die(remote.status().ToString());
  auto producer = (*remote)->CreateProducer({.group = group});
  if (!producer.ok()) return Die(producer.status().ToString());
  auto txn = (*producer)->Begin({.topic = topic, .body = "orphaned"},
                                {.first_check = absl::Milliseconds(200)});
  if (!txn.ok()) return Die(txn.status().ToString());
  Ready();
  while (true) pause();
}

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "hold") return Hold(args[1]);
  if (args.size() == 5 && args[0] == "send") {
    return Send(args[1], args[2], std::atoi(args[3].c_str()),
                args[4] == "sync");
  }
  if (args.size() == 2 && args[0] == "read") return Read(args[1]);
  if (args.size() == 4 && args[0] == "remote-begin") {
    return RemoteBegin(args[1], args[2], args[3]);
  }
  if (args.size() == 4 && args[0] == "topics") {
    return Topics(args[1], std::atoi(args[2].c_str()),
                  std::atoi(args[3].c_str()));
  }
  if (args.size() == 4 && args[0] == "consume") {
    return Consume(args[1], args[2], std::atoi(args[3].c_str()));
  }
  return Die(
      "usage: hold DIR | send DIR SIDEFILE THREADS sync|async | consume DIR "
      "SIDEFILE THREADS | topics DIR COUNT QUEUES | read DIR | remote-begin "
      "ADDRESS GROUP TOPIC");
}
