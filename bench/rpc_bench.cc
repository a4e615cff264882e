// txmq over its Cap'n Proto RPC next to Redis Streams and NATS JetStream,
// durable on every side, over loopback, measured in one run so that every
// figure is also a ratio (issue 6):
//
//   throughput  N publisher threads (--threads, default 1,16,64), each
//               publishing 128-byte messages one at a time and blocking on
//               the durable acknowledgement, for --seconds after a warm-up;
//               repeated --rounds times, interleaved, medians reported.
//               Also the acknowledgement latency (p50/p99), and per
//               message the fsync calls, disk flushes and CPU time (see
//               below).
//   latency     one publisher (publishing one message at a time, durable
//               ack) and one consumer (a long-polling receive, then an ack)
//               on a fresh channel: publish-to-receive p50/p99 of
//               --latency_messages 128-byte messages (the first 200 are a
//               warm-up).
//
// Run it through bench/rpc_bench.sh, which starts and stops the external
// servers; it passes --redis and --nats. The txmq servers run in this
// process (txmq::RpcServer on 127.0.0.1, port 0, in front of a
// txmq::Broker), reached through loopback TCP like the others; or give
// --txmq=HOST:PORT of a `txmq serve` (e.g. to profile server and client
// apart; its broker's durability is its own).
//
// The systems (--systems picks some, comma-separated):
//   txmq         RPC, Durability::kSync (fsync before the ack); ONE
//                txmq::RemoteBroker (one connection) shared by the N
//                threads, a Producer per thread calling Send: the client's
//                intended use, and how the NATS client is driven.
//   redis        redis-server, appendonly yes, appendfsync always (the
//                script starts it so); XADD, one hiredis connection per
//                thread (a Redis connection carries one blocking command at
//                a time). Receive: XREADGROUP ... BLOCK, then XACK.
//   nats         nats-server -js, a file-storage stream; js_Publish (waits
//                for the stream's PubAck) from the N threads on ONE
//                connection. Receive: a durable push consumer with explicit
//                acks (js_SubscribeSync, NextMsg, natsMsg_Ack); a pull
//                consumer (Fetch of up to 64) measured some 7x slower here.
//                nats-server 2.9 has no fsync setting: its PubAck means
//                "written", the file is fsynced every 2 minutes. So its
//                acknowledgements are not power-loss durable; compare with
//                txmq-async for like semantics.
//   txmq-conns   (diagnostic) as txmq, one RemoteBroker per thread.
//   txmq-window  (diagnostic) as txmq, but ONE thread keeps N sends in
//                flight with Producer::SendAsync (N = the thread count of
//                the row): the RPC path without N client threads.
//   txmq-inproc  (diagnostic) Producer::Send on the Broker in process, no
//                RPC: the ceiling the RPC path is measured against.
//   txmq-async   (diagnostic) as txmq on a second broker in kAsync
//                (committed, fsynced every 100 ms: NATS's kind of ack).
//
// Costs per message, over the measured window:
//   fsyncs        fsync(2) and fdatasync(2) calls on the whole machine,
//                 counted with the kernel's syscall tracepoints
//                 (perf_event_open; needs root or perf_event_paranoid <= -1,
//                 else "-"). Only the system under test writes then, so
//                 this shows how much group commit each one does.
//   disk flushes  cache flush requests completed by the disk holding the
//                 data (/proc/diskstats): also counts what is no fsync
//                 call, e.g. LMDB's meta page write through an O_DSYNC
//                 descriptor, and journal commits.
//   CPU us/msg    user + system time of this process (the clients, and the
//                 txmq server when in process) and of the external server
//                 (--redis_pid, --nats_pid, --txmq_pid); "CPUs used" is the
//                 same per second; "machine busy" is every process's, so a
//                 gap between the two is other load (noise).
//
// A plain program rather than Google Benchmark: the servers are external,
// the runs are interleaved across systems, and the figures of interest are
// ratios and counts across systems, which its per-benchmark model would
// scatter.
//
// Output: Markdown tables on stdout (progress on stderr).

#include <hiredis.h>
#include <linux/perf_event.h>
#include <nats/nats.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench_util.h"
#include "txmq/remote_broker.h"
#include "txmq/rpc_server.h"
#include "txmq/txmq.h"

namespace {

using txmq::bench::kValueBytes;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void SleepSeconds(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

// The p-th percentile (0..100) of `v` (sorted in place).
double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const size_t i =
      std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()));
  return v[i];
}

double Median(std::vector<double> v) { return Percentile(v, 50); }

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "rpc_bench: %s\n", what.c_str());
  std::exit(1);
}

// ---- flags ---------------------------------------------------------------

// Every system, in the order of the tables.
constexpr const char* kSystems[] = {"txmq",       "redis",       "nats",
                                    "txmq-conns", "txmq-window", "txmq-inproc",
                                    "txmq-async"};

struct Flags {
  std::string redis;  // host:port; empty: no Redis
  std::string nats;   // nats://host:port; empty: no NATS
  std::string txmq;   // an external `txmq serve`; empty: served in process
  // The external servers' processes, whose CPU time counts with this one's.
  int redis_pid = 0;
  int nats_pid = 0;
  int txmq_pid = 0;
  std::string dir;  // txmq data; empty: a temporary directory
  std::vector<int> threads = {1, 16, 64};
  double seconds = 3;
  double warmup = 0.5;
  int rounds = 3;
  int latency_messages = 3000;
  std::vector<std::string> systems = {std::begin(kSystems), std::end(kSystems)};
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.substr(0, 2) != "--" || eq == std::string::npos) {
      Die(absl::StrCat("bad argument '", arg, "': flags are --name=value"));
    }
    const std::string name(arg.substr(2, eq - 2));
    const std::string value(arg.substr(eq + 1));
    auto number = [&](auto* out) {
      if (!absl::SimpleAtoi(value, out)) Die("--" + name + ": not a number");
    };
    auto real = [&](double* out) {
      if (!absl::SimpleAtod(value, out)) Die("--" + name + ": not a number");
    };
    if (name == "redis") {
      f.redis = value;
    } else if (name == "nats") {
      f.nats = value;
    } else if (name == "txmq") {
      f.txmq = value;
    } else if (name == "redis_pid") {
      number(&f.redis_pid);
    } else if (name == "nats_pid") {
      number(&f.nats_pid);
    } else if (name == "txmq_pid") {
      number(&f.txmq_pid);
    } else if (name == "dir") {
      f.dir = value;
    } else if (name == "threads") {
      f.threads.clear();
      for (absl::string_view t : absl::StrSplit(value, ',')) {
        int n = 0;
        if (!absl::SimpleAtoi(t, &n) || n < 1) Die("--threads: bad count");
        f.threads.push_back(n);
      }
    } else if (name == "seconds") {
      real(&f.seconds);
    } else if (name == "warmup") {
      real(&f.warmup);
    } else if (name == "rounds") {
      number(&f.rounds);
    } else if (name == "latency_messages") {
      number(&f.latency_messages);
    } else if (name == "systems") {
      f.systems = absl::StrSplit(value, ',', absl::SkipEmpty());
    } else {
      Die("unknown flag --" + name +
          " (--redis --nats --txmq --redis_pid --nats_pid --txmq_pid --dir "
          "--threads --seconds --warmup --rounds "
          "--latency_messages --systems)");
    }
  }
  if (f.rounds < 1 || f.seconds <= 0) Die("--rounds and --seconds: >= 1, > 0");
  if (f.latency_messages < 0) Die("--latency_messages: >= 0");
  return f;
}

// ---- fsync counting ------------------------------------------------------

// Counts fsync(2) and fdatasync(2) calls on every CPU (all processes)
// through the syscall tracepoints. Unavailable without the permission.
class SyncCounter {
 public:
  SyncCounter() {
    for (const char* call : {"sys_enter_fsync", "sys_enter_fdatasync"}) {
      const int64_t id = TracepointId(call);
      if (id < 0) {
        Close();
        return;
      }
      const long cpus = sysconf(_SC_NPROCESSORS_CONF);
      for (int cpu = 0; cpu < cpus; ++cpu) {
        perf_event_attr attr;
        std::memset(&attr, 0, sizeof(attr));
        attr.type = PERF_TYPE_TRACEPOINT;
        attr.size = sizeof(attr);
        attr.config = static_cast<uint64_t>(id);
        const int fd = static_cast<int>(
            syscall(SYS_perf_event_open, &attr, -1, cpu, -1, 0));
        if (fd < 0) {
          if (errno == ENODEV || errno == EINVAL) continue;  // offline CPU
          Close();
          return;
        }
        fds_.push_back(fd);
      }
    }
  }
  SyncCounter(const SyncCounter&) = delete;
  SyncCounter& operator=(const SyncCounter&) = delete;
  ~SyncCounter() { Close(); }

  bool ok() const { return !fds_.empty(); }

  uint64_t Read() const {
    uint64_t total = 0;
    for (int fd : fds_) {
      uint64_t n = 0;
      if (read(fd, &n, sizeof(n)) == sizeof(n)) total += n;
    }
    return total;
  }

 private:
  static int64_t TracepointId(const std::string& call) {
    for (const char* base :
         {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}) {
      std::ifstream in(absl::StrCat(base, "/events/syscalls/", call, "/id"));
      int64_t id = -1;
      if (in >> id) return id;
    }
    return -1;
  }
  void Close() {
    for (int fd : fds_) close(fd);
    fds_.clear();
  }

  std::vector<int> fds_;
};

// Flush (cache flush) requests the block device holding `dir` completed,
// from /proc/diskstats (Linux 5.5+): what an fsync, an O_DSYNC write or a
// journal commit costs the disk. Unavailable: "-".
class DiskFlushCounter {
 public:
  explicit DiskFlushCounter(const std::string& dir) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) return;
    major_ = static_cast<int>(major(st.st_dev));
    minor_ = static_cast<int>(minor(st.st_dev));
    ok_ = Read().has_value();
  }
  bool ok() const { return ok_; }
  std::optional<uint64_t> Read() const {
    std::ifstream in("/proc/diskstats");
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> f =
          absl::StrSplit(line, ' ', absl::SkipWhitespace());
      int maj = 0, min = 0;
      uint64_t flushes = 0;
      if (f.size() >= 20 && absl::SimpleAtoi(f[0], &maj) &&
          absl::SimpleAtoi(f[1], &min) && maj == major_ && min == minor_ &&
          absl::SimpleAtoi(f[18], &flushes)) {
        return flushes;
      }
    }
    return std::nullopt;
  }

 private:
  int major_ = -1;
  int minor_ = -1;
  bool ok_ = false;
};

// Busy CPU time of the whole machine (every process), from /proc/stat:
// shows whether the machine was saturated, and, against the processes'
// own time below, how much others (noise) took.
struct MachineCpu {
  double busy_seconds = 0;
  double total_seconds = 0;
  static MachineCpu Now() {
    std::ifstream in("/proc/stat");
    std::string cpu;
    uint64_t v[8] = {};
    in >> cpu;
    for (uint64_t& x : v) in >> x;
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    uint64_t total = 0;
    for (uint64_t x : v) total += x;
    const uint64_t idle = v[3] + v[4];  // idle, iowait
    return {(total - idle) / tick, total / tick};
  }
};

// CPU time (user + system) of the processes in `pids` (0: this one), from
// /proc/PID/stat: the clients (this process, with an in-process txmq
// server) and the external server.
double ProcessCpuSeconds(const std::vector<int>& pids) {
  double seconds = 0;
  for (int pid : pids) {
    std::ifstream in(pid == 0 ? std::string("/proc/self/stat")
                              : absl::StrCat("/proc/", pid, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(
        absl::string_view(stat).substr(paren + 2), ' ', absl::SkipEmpty());
    uint64_t utime = 0, stime = 0;
    // Fields 14 and 15 of proc(5), counted from the state (field 3).
    if (f.size() > 12 && absl::SimpleAtoi(f[11], &utime) &&
        absl::SimpleAtoi(f[12], &stime)) {
      seconds += (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  return seconds;
}

// ---- what a system provides ----------------------------------------------

// Publishes to one channel (topic, stream key, subject); blocks until the
// system acknowledged the message. One per publishing thread.
class Publisher {
 public:
  virtual ~Publisher() = default;
  virtual absl::Status Publish(std::string_view body) = 0;
  // For a windowed system: publishes without waiting; `done` runs when the
  // message is acknowledged, on another thread.
  virtual void PublishAsync(std::string_view body,
                            std::function<void(absl::Status)> done) {
    done(Publish(body));
  }
};

// Receives from one channel as a consumer group member; acknowledges what
// it received before returning it.
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  // Appends the bodies received within about 200 ms (maybe none).
  virtual absl::Status Receive(std::vector<std::string>* bodies) = 0;
};

class System {
 public:
  virtual ~System() = default;
  // `n` publishers to `channel`, for `n` threads.
  virtual absl::StatusOr<std::vector<std::unique_ptr<Publisher>>> Publishers(
      int n, const std::string& channel) = 0;
  // A consumer of `channel` that sees what is published after this returns.
  virtual absl::StatusOr<std::unique_ptr<Subscriber>> Subscribe(
      const std::string& channel) = 0;
  // Driven by ONE thread keeping N publishes in flight (PublishAsync)
  // instead of N threads each waiting for its own.
  virtual bool windowed() const { return false; }
};

// ---- txmq ----------------------------------------------------------------

class TxmqPublisher final : public Publisher {
 public:
  TxmqPublisher(std::shared_ptr<txmq::RemoteBroker> remote,
                std::unique_ptr<txmq::Producer> producer, std::string topic)
      : remote_(std::move(remote)),
        producer_(std::move(producer)),
        topic_(std::move(topic)) {}
  absl::Status Publish(std::string_view body) override {
    return producer_->Send({.topic = topic_, .body = std::string(body)})
        .status();
  }
  void PublishAsync(std::string_view body,
                    std::function<void(absl::Status)> done) override {
    producer_->SendAsync(
        {.topic = topic_, .body = std::string(body)},
        [done = std::move(done)](absl::StatusOr<txmq::SendResult> r) {
          done(r.status());
        });
  }

 private:
  // Declared first: the producer goes before its RemoteBroker (if any).
  std::shared_ptr<txmq::RemoteBroker> remote_;
  std::unique_ptr<txmq::Producer> producer_;
  const std::string topic_;
};

class TxmqSubscriber final : public Subscriber {
 public:
  TxmqSubscriber(std::shared_ptr<txmq::RemoteBroker> remote,
                 std::unique_ptr<txmq::Consumer> consumer)
      : remote_(std::move(remote)), consumer_(std::move(consumer)) {}
  absl::Status Receive(std::vector<std::string>* bodies) override {
    absl::StatusOr<txmq::ReceivedBatch> batch =
        consumer_->Receive(64, absl::Milliseconds(200));
    if (!batch.ok()) return batch.status();
    if (batch->empty()) return absl::OkStatus();
    for (const txmq::MessageView& m : *batch) bodies->emplace_back(m.body());
    return consumer_->Ack(*batch);
  }

 private:
  std::shared_ptr<txmq::RemoteBroker> remote_;
  std::unique_ptr<txmq::Consumer> consumer_;
};

// txmq through a server (`address`), or in process (`broker`, no address).
class TxmqSystem final : public System {
 public:
  // Remote: one RemoteBroker shared by all publishers, or one each.
  // `windowed`: one thread keeps N sends in flight (SendAsync).
  TxmqSystem(std::string address, bool connection_per_thread,
             bool windowed = false)
      : address_(std::move(address)),
        connection_per_thread_(connection_per_thread),
        windowed_(windowed) {}
  // In process.
  explicit TxmqSystem(txmq::Broker* broker) : broker_(broker) {}

  absl::StatusOr<std::vector<std::unique_ptr<Publisher>>> Publishers(
      int n, const std::string& channel) override {
    if (absl::Status s = EnsureTopic(channel); !s.ok()) return s;
    std::vector<std::unique_ptr<Publisher>> out;
    std::shared_ptr<txmq::RemoteBroker> shared;
    for (int i = 0; i < n; ++i) {
      std::shared_ptr<txmq::RemoteBroker> remote;
      if (broker_ == nullptr) {
        if (shared == nullptr || connection_per_thread_) {
          auto connected = Connect();
          if (!connected.ok()) return connected.status();
          shared = *std::move(connected);
        }
        remote = shared;
      }
      auto producer = remote != nullptr ? remote->CreateProducer({})
                                        : broker_->CreateProducer({});
      if (!producer.ok()) return producer.status();
      out.push_back(std::make_unique<TxmqPublisher>(
          remote, *std::move(producer), channel));
    }
    return out;
  }

  bool windowed() const override { return windowed_; }

  absl::StatusOr<std::unique_ptr<Subscriber>> Subscribe(
      const std::string& channel) override {
    if (absl::Status s = EnsureTopic(channel); !s.ok()) return s;
    const txmq::ConsumerOptions options{.start_from = txmq::StartFrom::kLatest};
    std::shared_ptr<txmq::RemoteBroker> remote;
    absl::StatusOr<std::unique_ptr<txmq::Consumer>> consumer;
    if (broker_ != nullptr) {
      consumer = broker_->CreateConsumer("bench", channel, options);
    } else {
      auto connected = Connect();
      if (!connected.ok()) return connected.status();
      remote = *std::move(connected);
      consumer = remote->CreateConsumer("bench", channel, options);
    }
    if (!consumer.ok()) return consumer.status();
    return std::make_unique<TxmqSubscriber>(remote, *std::move(consumer));
  }

 private:
  absl::StatusOr<std::shared_ptr<txmq::RemoteBroker>> Connect() {
    auto remote = txmq::RemoteBroker::Connect(address_);
    if (!remote.ok()) return remote.status();
    return std::shared_ptr<txmq::RemoteBroker>(*std::move(remote));
  }

  absl::Status EnsureTopic(const std::string& topic) {
    // One queue for the latency channel (a single ordered stream, like the
    // others); four for throughput, as bench/txmq_bench.cc.
    const txmq::TopicOptions options{.queues = topic == "bench" ? 4u : 1u};
    absl::Status s;
    if (broker_ != nullptr) {
      s = broker_->CreateTopic(topic, options);
    } else {
      auto remote = Connect();
      if (!remote.ok()) return remote.status();
      s = (*remote)->CreateTopic(topic, options);
    }
    return absl::IsAlreadyExists(s) ? absl::OkStatus() : s;
  }

  const std::string address_;
  const bool connection_per_thread_ = false;
  const bool windowed_ = false;
  txmq::Broker* const broker_ = nullptr;
};

// A broker in `dir` served on loopback TCP.
struct TxmqServer {
  TxmqServer(const std::string& dir, txmq::Durability durability) {
    txmq::Options options;
    options.durability = durability;
    auto opened = txmq::Broker::Open(dir, options);
    if (!opened.ok())
      Die(absl::StrCat("txmq open: ", opened.status().ToString()));
    broker = *std::move(opened);
    auto started = txmq::RpcServer::Start(*broker, {.listen = "127.0.0.1:0"});
    if (!started.ok())
      Die(absl::StrCat("txmq serve: ", started.status().ToString()));
    server = *std::move(started);
  }
  ~TxmqServer() {
    server->Stop();
    server.reset();
    broker.reset();
  }
  std::unique_ptr<txmq::Broker> broker;
  std::unique_ptr<txmq::RpcServer> server;
};

// ---- Redis Streams -------------------------------------------------------

struct RedisReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;
struct RedisContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using RedisPtr = std::unique_ptr<redisContext, RedisContextDeleter>;

absl::StatusOr<RedisPtr> RedisConnect(const std::string& host, int port) {
  RedisPtr c(redisConnect(host.c_str(), port));
  if (c == nullptr) return absl::ResourceExhaustedError("redisConnect");
  if (c->err != 0) {
    return absl::UnavailableError(absl::StrCat("redis: ", c->errstr));
  }
  return c;
}

// Runs a command given as arguments; errors for no reply or an error reply.
absl::StatusOr<ReplyPtr> RedisRun(redisContext* c,
                                  const std::vector<std::string_view>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  ReplyPtr r(static_cast<redisReply*>(redisCommandArgv(
      c, static_cast<int>(argv.size()), argv.data(), lens.data())));
  if (r == nullptr) {
    return absl::UnavailableError(absl::StrCat("redis: ", c->errstr));
  }
  if (r->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(
        absl::StrCat("redis: ", std::string(r->str, r->len)));
  }
  return r;
}

class RedisPublisher final : public Publisher {
 public:
  RedisPublisher(RedisPtr c, std::string key)
      : c_(std::move(c)), key_(std::move(key)) {}
  absl::Status Publish(std::string_view body) override {
    return RedisRun(c_.get(), {"XADD", key_, "*", "b", body}).status();
  }

 private:
  RedisPtr c_;
  const std::string key_;
};

class RedisSubscriber final : public Subscriber {
 public:
  RedisSubscriber(RedisPtr c, std::string key)
      : c_(std::move(c)), key_(std::move(key)) {}
  absl::Status Receive(std::vector<std::string>* bodies) override {
    // Reply: [[key, [[id, [field, value, ...]], ...]]], or nil on timeout.
    auto r = RedisRun(c_.get(), {"XREADGROUP", "GROUP", "bench", "c1", "COUNT",
                                 "64", "BLOCK", "200", "STREAMS", key_, ">"});
    if (!r.ok()) return r.status();
    const redisReply* reply = r->get();
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
      return absl::OkStatus();
    }
    const redisReply* entries = reply->element[0]->element[1];
    std::vector<std::string_view> ack = {"XACK", key_, "bench"};
    for (size_t i = 0; i < entries->elements; ++i) {
      const redisReply* entry = entries->element[i];
      ack.emplace_back(entry->element[0]->str, entry->element[0]->len);
      const redisReply* fields = entry->element[1];
      if (fields->elements >= 2) {
        bodies->emplace_back(fields->element[1]->str, fields->element[1]->len);
      }
    }
    return RedisRun(c_.get(), ack).status();
  }

 private:
  RedisPtr c_;
  const std::string key_;
};

class RedisSystem final : public System {
 public:
  explicit RedisSystem(const std::string& address) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(address.substr(colon + 1), &port_)) {
      Die("--redis: host:port");
    }
    host_ = address.substr(0, colon);
  }

  absl::StatusOr<std::vector<std::unique_ptr<Publisher>>> Publishers(
      int n, const std::string& channel) override {
    std::vector<std::unique_ptr<Publisher>> out;
    for (int i = 0; i < n; ++i) {
      auto c = RedisConnect(host_, port_);
      if (!c.ok()) return c.status();
      out.push_back(std::make_unique<RedisPublisher>(*std::move(c), channel));
    }
    return out;
  }

  absl::StatusOr<std::unique_ptr<Subscriber>> Subscribe(
      const std::string& channel) override {
    auto c = RedisConnect(host_, port_);
    if (!c.ok()) return c.status();
    auto created = RedisRun(
        c->get(), {"XGROUP", "CREATE", channel, "bench", "$", "MKSTREAM"});
    if (!created.ok() &&
        !absl::StrContains(created.status().message(), "BUSYGROUP")) {
      return created.status();
    }
    return std::make_unique<RedisSubscriber>(*std::move(c), channel);
  }

 private:
  std::string host_;
  int port_ = 0;
};

// ---- NATS JetStream ------------------------------------------------------

absl::Status NatsError(natsStatus s, jsErrCode js, const char* what) {
  return absl::UnavailableError(absl::StrFormat(
      "nats %s: %s (jetstream error %d)", what, natsStatus_GetText(s), js));
}

// A connection and its JetStream context.
class NatsConnection {
 public:
  static absl::StatusOr<std::shared_ptr<NatsConnection>> Open(
      const std::string& url) {
    auto c = std::make_shared<NatsConnection>();
    natsStatus s = natsConnection_ConnectTo(&c->nc_, url.c_str());
    if (s != NATS_OK) return NatsError(s, jsErrCode(0), "connect");
    s = natsConnection_JetStream(&c->js_, c->nc_, nullptr);
    if (s != NATS_OK) return NatsError(s, jsErrCode(0), "jetstream");
    return c;
  }
  NatsConnection() = default;
  NatsConnection(const NatsConnection&) = delete;
  NatsConnection& operator=(const NatsConnection&) = delete;
  ~NatsConnection() {
    if (js_ != nullptr) jsCtx_Destroy(js_);
    if (nc_ != nullptr) natsConnection_Destroy(nc_);
  }
  jsCtx* js() { return js_; }

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

class NatsPublisher final : public Publisher {
 public:
  NatsPublisher(std::shared_ptr<NatsConnection> c, std::string subject)
      : c_(std::move(c)), subject_(std::move(subject)) {}
  absl::Status Publish(std::string_view body) override {
    jsErrCode js = jsErrCode(0);
    natsStatus s = js_Publish(nullptr, c_->js(), subject_.c_str(), body.data(),
                              static_cast<int>(body.size()), nullptr, &js);
    return s == NATS_OK ? absl::OkStatus() : NatsError(s, js, "publish");
  }

 private:
  std::shared_ptr<NatsConnection> c_;
  const std::string subject_;
};

class NatsSubscriber final : public Subscriber {
 public:
  NatsSubscriber(std::shared_ptr<NatsConnection> c, natsSubscription* sub)
      : c_(std::move(c)), sub_(sub) {}
  ~NatsSubscriber() override { natsSubscription_Destroy(sub_); }
  absl::Status Receive(std::vector<std::string>* bodies) override {
    natsMsg* m = nullptr;
    natsStatus s = natsSubscription_NextMsg(&m, sub_, 200);
    if (s == NATS_TIMEOUT) return absl::OkStatus();
    if (s != NATS_OK) return NatsError(s, jsErrCode(0), "next");
    bodies->emplace_back(natsMsg_GetData(m), natsMsg_GetDataLength(m));
    s = natsMsg_Ack(m, nullptr);  // published, not waited for
    natsMsg_Destroy(m);
    return s == NATS_OK ? absl::OkStatus() : NatsError(s, jsErrCode(0), "ack");
  }

 private:
  std::shared_ptr<NatsConnection> c_;
  natsSubscription* const sub_;
};

class NatsSystem final : public System {
 public:
  explicit NatsSystem(std::string url) : url_(std::move(url)) {}

  absl::StatusOr<std::vector<std::unique_ptr<Publisher>>> Publishers(
      int n, const std::string& channel) override {
    auto c = NatsConnection::Open(url_);
    if (!c.ok()) return c.status();
    if (absl::Status s = EnsureStream(**c, channel); !s.ok()) return s;
    std::vector<std::unique_ptr<Publisher>> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(std::make_unique<NatsPublisher>(*c, channel));
    }
    return out;
  }

  absl::StatusOr<std::unique_ptr<Subscriber>> Subscribe(
      const std::string& channel) override {
    auto c = NatsConnection::Open(url_);
    if (!c.ok()) return c.status();
    if (absl::Status s = EnsureStream(**c, channel); !s.ok()) return s;
    jsSubOptions options;
    jsSubOptions_Init(&options);
    // A durable push consumer: the server sends each message as it is
    // stored, to this connection's inbox.
    options.Config.Durable = "bench";
    options.Config.DeliverPolicy = js_DeliverNew;
    options.Config.AckPolicy = js_AckExplicit;
    natsSubscription* sub = nullptr;
    jsErrCode js = jsErrCode(0);
    natsStatus s = js_SubscribeSync(&sub, (*c)->js(), channel.c_str(), nullptr,
                                    &options, &js);
    if (s != NATS_OK) return NatsError(s, js, "subscribe");
    return std::make_unique<NatsSubscriber>(*c, sub);
  }

 private:
  // A file-storage stream named after `channel` (upper case) holding it.
  static absl::Status EnsureStream(NatsConnection& c,
                                   const std::string& channel) {
    std::string name = channel;
    for (char& ch : name) ch = static_cast<char>(std::toupper(ch));
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    config.Name = name.c_str();
    const char* subjects[] = {channel.c_str()};
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    jsStreamInfo* info = nullptr;
    jsErrCode js = jsErrCode(0);
    natsStatus s = js_AddStream(&info, c.js(), &config, nullptr, &js);
    if (info != nullptr) jsStreamInfo_Destroy(info);
    if (s == NATS_OK || js == JSStreamNameExistErr) return absl::OkStatus();
    return NatsError(s, js, "add stream");
  }

  const std::string url_;
};

// ---- the runs ------------------------------------------------------------

struct ThroughputRun {
  double per_second = kNaN;
  double ack_p50_us = kNaN;
  double ack_p99_us = kNaN;
  double fsyncs_per_message = kNaN;
  double flushes_per_message = kNaN;
  double cpu_us_per_message = kNaN;  // the system's processes
  double cores = kNaN;               // the system's processes, in CPUs
  double machine_busy = kNaN;        // every process, 0..1
  std::string error;
};

struct Counters {
  SyncCounter syncs;
  DiskFlushCounter flushes;
};

// `pids`: the processes whose CPU time counts for the system (0: this one).
ThroughputRun RunThroughput(System& system, int threads, const Flags& flags,
                            const Counters& counters,
                            const std::vector<int>& pids) {
  ThroughputRun run;
  const bool windowed = system.windowed();
  auto publishers = system.Publishers(windowed ? 1 : threads, "bench");
  if (!publishers.ok()) {
    run.error = publishers.status().ToString();
    return run;
  }
  const std::string body(kValueBytes, 'm');
  std::atomic<bool> stop{false};
  std::atomic<bool> measuring{false};
  std::atomic<uint64_t> done{0};
  std::vector<std::vector<double>> acks(threads);
  std::mutex error_mu;
  std::vector<std::thread> workers;
  // Windowed: one thread keeps `threads` publishes in flight.
  std::condition_variable window_cv;
  int in_flight = 0;  // guarded by error_mu
  if (windowed) {
    workers.emplace_back([&] {
      Publisher& publisher = *(*publishers)[0];
      std::unique_lock<std::mutex> lock(error_mu);
      while (!stop.load(std::memory_order_relaxed)) {
        window_cv.wait(lock, [&] { return in_flight < threads; });
        ++in_flight;
        lock.unlock();
        const int64_t start = SteadyNanos();
        publisher.PublishAsync(body, [&, start](absl::Status s) {
          const int64_t end = SteadyNanos();
          std::lock_guard<std::mutex> lock(error_mu);
          --in_flight;
          window_cv.notify_all();
          if (!s.ok()) {
            if (run.error.empty()) run.error = s.ToString();
            stop = true;
            return;
          }
          done.fetch_add(1, std::memory_order_relaxed);
          if (measuring.load(std::memory_order_relaxed)) {
            acks[0].push_back((end - start) / 1e3);
          }
        });
        lock.lock();
      }
      window_cv.wait(lock, [&] { return in_flight == 0; });
    });
  }
  for (int i = 0; i < (windowed ? 0 : threads); ++i) {
    workers.emplace_back([&, i] {
      Publisher& publisher = *(*publishers)[i];
      while (!stop.load(std::memory_order_relaxed)) {
        const int64_t start = SteadyNanos();
        absl::Status s = publisher.Publish(body);
        const int64_t end = SteadyNanos();
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (run.error.empty()) run.error = s.ToString();
          stop = true;
          break;
        }
        done.fetch_add(1, std::memory_order_relaxed);
        if (measuring.load(std::memory_order_relaxed)) {
          acks[i].push_back((end - start) / 1e3);
        }
      }
    });
  }
  SleepSeconds(flags.warmup);
  const uint64_t count0 = done.load();
  const uint64_t syncs0 = counters.syncs.Read();
  const std::optional<uint64_t> flushes0 = counters.flushes.Read();
  const MachineCpu machine0 = MachineCpu::Now();
  const double cpu0 = ProcessCpuSeconds(pids);
  const int64_t t0 = SteadyNanos();
  measuring = true;
  SleepSeconds(flags.seconds);
  measuring = false;
  const uint64_t count1 = done.load();
  const uint64_t syncs1 = counters.syncs.Read();
  const std::optional<uint64_t> flushes1 = counters.flushes.Read();
  const MachineCpu machine1 = MachineCpu::Now();
  const double cpu1 = ProcessCpuSeconds(pids);
  const int64_t t1 = SteadyNanos();
  stop = true;
  for (std::thread& t : workers) t.join();
  if (!run.error.empty()) return run;
  const uint64_t messages = count1 - count0;
  run.per_second = messages / ((t1 - t0) / 1e9);
  std::vector<double> all;
  for (const auto& v : acks) all.insert(all.end(), v.begin(), v.end());
  run.ack_p50_us = Percentile(all, 50);
  run.ack_p99_us = Percentile(all, 99);
  if (messages == 0) return run;
  if (counters.syncs.ok()) {
    run.fsyncs_per_message = static_cast<double>(syncs1 - syncs0) / messages;
  }
  if (flushes0.has_value() && flushes1.has_value()) {
    run.flushes_per_message =
        static_cast<double>(*flushes1 - *flushes0) / messages;
  }
  run.cpu_us_per_message = (cpu1 - cpu0) * 1e6 / messages;
  run.cores = (cpu1 - cpu0) / ((t1 - t0) / 1e9);
  if (machine1.total_seconds > machine0.total_seconds) {
    run.machine_busy = (machine1.busy_seconds - machine0.busy_seconds) /
                       (machine1.total_seconds - machine0.total_seconds);
  }
  return run;
}

struct LatencyRun {
  double p50_us = kNaN;
  double p99_us = kNaN;
  double max_us = kNaN;
  int received = 0;
  std::string error;
};

constexpr int kLatencyWarmup = 200;

// Bodies carry [sequence][publish start, steady ns] and padding.
LatencyRun RunLatency(System& system, const std::string& channel,
                      const Flags& flags) {
  LatencyRun run;
  const int total = kLatencyWarmup + flags.latency_messages;
  auto subscriber = system.Subscribe(channel);
  if (!subscriber.ok()) {
    run.error = subscriber.status().ToString();
    return run;
  }
  auto publishers = system.Publishers(1, channel);
  if (!publishers.ok()) {
    run.error = publishers.status().ToString();
    return run;
  }
  std::vector<double> latencies;
  std::string consumer_error;
  std::atomic<bool> publisher_failed{false};
  std::thread consumer([&] {
    const int64_t deadline = SteadyNanos() + int64_t{120} * 1000000000;
    std::vector<std::string> bodies;
    while (run.received < total && SteadyNanos() < deadline &&
           !publisher_failed.load()) {
      bodies.clear();
      absl::Status s = (*subscriber)->Receive(&bodies);
      const int64_t now = SteadyNanos();
      if (!s.ok()) {
        consumer_error = s.ToString();
        return;
      }
      for (const std::string& b : bodies) {
        uint64_t seq = 0;
        int64_t sent = 0;
        if (b.size() < 16) continue;
        std::memcpy(&seq, b.data(), 8);
        std::memcpy(&sent, b.data() + 8, 8);
        ++run.received;
        if (seq >= kLatencyWarmup) latencies.push_back((now - sent) / 1e3);
      }
    }
  });
  std::string body(kValueBytes, 'l');
  for (uint64_t seq = 0; seq < static_cast<uint64_t>(total); ++seq) {
    const int64_t start = SteadyNanos();
    std::memcpy(body.data(), &seq, 8);
    std::memcpy(body.data() + 8, &start, 8);
    if (absl::Status s = (*publishers)[0]->Publish(body); !s.ok()) {
      run.error = s.ToString();
      publisher_failed = true;
      break;
    }
  }
  consumer.join();
  if (run.error.empty()) run.error = consumer_error;
  if (run.error.empty() && run.received < total) {
    run.error = absl::StrFormat("received %d of %d", run.received, total);
  }
  run.p50_us = Percentile(latencies, 50);
  run.p99_us = Percentile(latencies, 99);
  run.max_us = latencies.empty() ? kNaN : latencies.back();
  return run;
}

// ---- report --------------------------------------------------------------

std::string Human(double x) {
  if (std::isnan(x)) return "-";
  if (x >= 1e6) return absl::StrFormat("%.2fM", x / 1e6);
  if (x >= 1e3) return absl::StrFormat("%.2fk", x / 1e3);
  return absl::StrFormat("%.0f", x);
}
std::string Fixed(double x, const char* format) {
  return std::isnan(x) ? "-" : absl::StrFormat(format, x);
}

const std::map<std::string, std::string>& Descriptions() {
  static const auto* d = new std::map<std::string, std::string>{
      {"txmq",
       "txmq RPC, kSync (fsync before the ack), one connection shared by the "
       "threads"},
      {"redis",
       "Redis Streams XADD, appendfsync always, a connection per thread"},
      {"nats",
       "NATS JetStream js_Publish, file stream (2.9: acked before fsync), one "
       "connection shared by the threads"},
      {"txmq-conns", "(diagnostic) txmq RPC, kSync, a connection per thread"},
      {"txmq-window",
       "(diagnostic) txmq RPC, kSync, one connection, ONE thread keeping N "
       "SendAsync in flight"},
      {"txmq-inproc", "(diagnostic) txmq in process, kSync, no RPC"},
      {"txmq-async",
       "(diagnostic) txmq RPC, kAsync (fsync every 100 ms), one connection"},
  };
  return *d;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  const std::string dir =
      flags.dir.empty() ? txmq::bench::MakeTempDir("rpc") : flags.dir;
  const bool own_dir = flags.dir.empty();

  auto wants = [&](const std::string& name) {
    return std::find(flags.systems.begin(), flags.systems.end(), name) !=
           flags.systems.end();
  };
  for (const std::string& s : flags.systems) {
    if (Descriptions().count(s) == 0) Die("unknown system '" + s + "'");
  }

  // Servers and systems, in the order of the tables.
  std::unique_ptr<TxmqServer> sync_server, async_server;
  std::string txmq_address = flags.txmq;
  if (!flags.txmq.empty()) {
    // An external server: the systems that need a broker here are left out.
    for (const char* name : {"txmq-inproc", "txmq-async"}) {
      if (wants(name)) {
        std::fprintf(stderr, "rpc_bench: --txmq given: %s skipped\n", name);
      }
    }
  } else if (wants("txmq") || wants("txmq-conns") || wants("txmq-window") ||
             wants("txmq-inproc")) {
    sync_server =
        std::make_unique<TxmqServer>(dir + "/sync", txmq::Durability::kSync);
  }
  if (sync_server != nullptr) txmq_address = sync_server->server->address();
  if (wants("txmq-async") && flags.txmq.empty()) {
    async_server =
        std::make_unique<TxmqServer>(dir + "/async", txmq::Durability::kAsync);
  }
  std::vector<std::pair<std::string, std::unique_ptr<System>>> systems;
  for (const char* name : kSystems) {
    if (!wants(name)) continue;
    std::unique_ptr<System> system;
    if (name == std::string("txmq")) {
      system = std::make_unique<TxmqSystem>(txmq_address, false);
    } else if (name == std::string("txmq-conns")) {
      system = std::make_unique<TxmqSystem>(txmq_address, true);
    } else if (name == std::string("txmq-window")) {
      system = std::make_unique<TxmqSystem>(txmq_address, false, true);
    } else if (name == std::string("txmq-inproc")) {
      if (sync_server == nullptr) continue;
      system = std::make_unique<TxmqSystem>(sync_server->broker.get());
    } else if (name == std::string("txmq-async")) {
      if (async_server == nullptr) continue;
      system =
          std::make_unique<TxmqSystem>(async_server->server->address(), false);
    } else if (name == std::string("redis")) {
      if (flags.redis.empty()) {
        std::fprintf(stderr, "rpc_bench: no --redis: Redis skipped\n");
        continue;
      }
      system = std::make_unique<RedisSystem>(flags.redis);
    } else {
      if (flags.nats.empty()) {
        std::fprintf(stderr, "rpc_bench: no --nats: NATS skipped\n");
        continue;
      }
      system = std::make_unique<NatsSystem>(flags.nats);
    }
    systems.emplace_back(name, std::move(system));
  }

  const Counters counters{.syncs = {}, .flushes = DiskFlushCounter(dir)};
  if (!counters.syncs.ok()) {
    std::fprintf(stderr,
                 "rpc_bench: cannot count fsyncs (perf_event_open on the "
                 "syscall tracepoints needs root): column left empty\n");
  }
  if (!counters.flushes.ok()) {
    std::fprintf(stderr,
                 "rpc_bench: no flush count for the disk of %s in "
                 "/proc/diskstats: column left empty\n",
                 dir.c_str());
  }

  // Throughput: rounds x concurrency x systems, interleaved so that a
  // noisy moment hits every system alike.
  std::map<std::pair<int, std::string>, std::vector<ThroughputRun>> runs;
  for (int round = 1; round <= flags.rounds; ++round) {
    for (int n : flags.threads) {
      for (auto& [name, system] : systems) {
        std::vector<int> pids = {0};
        if (name == "redis" && flags.redis_pid > 0)
          pids.push_back(flags.redis_pid);
        if (name == "nats" && flags.nats_pid > 0)
          pids.push_back(flags.nats_pid);
        if (name.rfind("txmq", 0) == 0 && flags.txmq_pid > 0) {
          pids.push_back(flags.txmq_pid);
        }
        ThroughputRun run = RunThroughput(*system, n, flags, counters, pids);
        std::fprintf(stderr,
                     "round %d, %2d threads, %-11s %9s msg/s  ack p50 %s us "
                     "p99 %s us  fsyncs/msg %s flushes/msg %s cpu %s us/msg "
                     "%s cores, machine busy %s %s\n",
                     round, n, name.c_str(), Human(run.per_second).c_str(),
                     Fixed(run.ack_p50_us, "%.0f").c_str(),
                     Fixed(run.ack_p99_us, "%.0f").c_str(),
                     Fixed(run.fsyncs_per_message, "%.3f").c_str(),
                     Fixed(run.flushes_per_message, "%.3f").c_str(),
                     Fixed(run.cpu_us_per_message, "%.0f").c_str(),
                     Fixed(run.cores, "%.2f").c_str(),
                     Fixed(run.machine_busy * 100, "%.0f%%").c_str(),
                     run.error.c_str());
        runs[{n, name}].push_back(run);
      }
    }
  }

  std::map<std::string, LatencyRun> latency;
  if (flags.latency_messages > 0) {
    for (auto& [name, system] : systems) {
      // A channel per system: the txmq ones share a broker.
      latency[name] =
          RunLatency(*system, "lat" + std::to_string(latency.size()), flags);
      const LatencyRun& l = latency[name];
      std::fprintf(stderr, "latency %-11s p50 %s us p99 %s us %s\n",
                   name.c_str(), Fixed(l.p50_us, "%.0f").c_str(),
                   Fixed(l.p99_us, "%.0f").c_str(), l.error.c_str());
    }
  }

  // The medians of the rounds.
  auto median = [&](int n, const std::string& name,
                    double ThroughputRun::*field) {
    std::vector<double> v;
    for (const ThroughputRun& r : runs[{n, name}]) {
      if (r.error.empty() && !std::isnan(r.*field)) v.push_back(r.*field);
    }
    return v.empty() ? kNaN : Median(v);
  };

  std::printf(
      "Durable publish throughput, 128-byte messages, N threads each "
      "blocking on its ack; median of %d rounds of %.3g s:\n\n",
      flags.rounds, flags.seconds);
  std::printf(
      "| threads | system | msg/s | ack p50 us | ack p99 us | fsyncs/msg | "
      "disk flushes/msg | CPU us/msg | CPUs used | machine busy |\n"
      "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int n : flags.threads) {
    for (const auto& [name, system] : systems) {
      std::string error;
      for (const ThroughputRun& r : runs[{n, name}]) {
        if (!r.error.empty()) error = " (failed: " + r.error + ")";
      }
      std::printf(
          "| %d | %s%s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n,
          name.c_str(), error.c_str(),
          Human(median(n, name, &ThroughputRun::per_second)).c_str(),
          Fixed(median(n, name, &ThroughputRun::ack_p50_us), "%.0f").c_str(),
          Fixed(median(n, name, &ThroughputRun::ack_p99_us), "%.0f").c_str(),
          Fixed(median(n, name, &ThroughputRun::fsyncs_per_message), "%.3f")
              .c_str(),
          Fixed(median(n, name, &ThroughputRun::flushes_per_message), "%.3f")
              .c_str(),
          Fixed(median(n, name, &ThroughputRun::cpu_us_per_message), "%.0f")
              .c_str(),
          Fixed(median(n, name, &ThroughputRun::cores), "%.2f").c_str(),
          Fixed(median(n, name, &ThroughputRun::machine_busy) * 100, "%.0f%%")
              .c_str());
    }
  }

  auto ratio = [&](int n, const std::string& a, const std::string& b) {
    const double x = median(n, a, &ThroughputRun::per_second);
    const double y = median(n, b, &ThroughputRun::per_second);
    return y > 0 ? x / y : kNaN;
  };
  std::printf(
      "\nRatios of throughput at the same concurrency (target: "
      "txmq / redis >= 1):\n\n");
  std::printf(
      "| threads | txmq / redis | txmq / nats | txmq-conns / redis | "
      "txmq / txmq-inproc | target met |\n"
      "|---:|---:|---:|---:|---:|---|\n");
  for (int n : flags.threads) {
    const double vs_redis = ratio(n, "txmq", "redis");
    std::printf("| %d | %s | %s | %s | %s | %s |\n", n,
                Fixed(vs_redis, "%.2fx").c_str(),
                Fixed(ratio(n, "txmq", "nats"), "%.2fx").c_str(),
                Fixed(ratio(n, "txmq-conns", "redis"), "%.2fx").c_str(),
                Fixed(ratio(n, "txmq", "txmq-inproc"), "%.2fx").c_str(),
                std::isnan(vs_redis) ? "-"
                : vs_redis >= 1      ? "yes"
                                     : "no");
  }

  if (!latency.empty()) {
    std::printf(
        "\nPublish-to-receive latency, one publisher (durable ack, one at a "
        "time), one consumer (long-poll receive, then ack), %d messages:\n\n",
        flags.latency_messages);
    std::printf(
        "| system | p50 us | p99 us | max us |\n|---|---:|---:|---:|\n");
    for (const auto& [name, system] : systems) {
      const LatencyRun& l = latency[name];
      std::printf("| %s%s | %s | %s | %s |\n", name.c_str(),
                  l.error.empty() ? "" : (" (failed: " + l.error + ")").c_str(),
                  Fixed(l.p50_us, "%.0f").c_str(),
                  Fixed(l.p99_us, "%.0f").c_str(),
                  Fixed(l.max_us, "%.0f").c_str());
    }
    auto lratio = [&](const std::string& a, const std::string& b,
                      double LatencyRun::*field) {
      if (latency.count(a) == 0 || latency.count(b) == 0) return kNaN;
      return latency[a].*field / latency[b].*field;
    };
    std::printf(
        "\nLatency ratios (lower is better): p50 txmq / redis %s, txmq / "
        "nats %s; p99 txmq / redis %s, txmq / nats %s\n",
        Fixed(lratio("txmq", "redis", &LatencyRun::p50_us), "%.2fx").c_str(),
        Fixed(lratio("txmq", "nats", &LatencyRun::p50_us), "%.2fx").c_str(),
        Fixed(lratio("txmq", "redis", &LatencyRun::p99_us), "%.2fx").c_str(),
        Fixed(lratio("txmq", "nats", &LatencyRun::p99_us), "%.2fx").c_str());
  }

  // Noise: the machine's busy share beyond what the systems' own processes
  // used (other processes, and kernel work charged to none).
  std::vector<double> other;
  const double cpus = static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));
  for (const auto& [key, list] : runs) {
    for (const ThroughputRun& r : list) {
      if (!std::isnan(r.machine_busy) && !std::isnan(r.cores)) {
        other.push_back(std::max(0.0, r.machine_busy - r.cores / cpus));
      }
    }
  }
  if (!other.empty()) {
    const double p50 = Percentile(other, 50);
    const double most = other.back();
    std::printf(
        "\nOther load (machine busy beyond the systems' own processes) in "
        "the measured windows: median %.0f%%, at most %.0f%% of the "
        "machine%s\n",
        p50 * 100, most * 100,
        most > 0.15 ? ": NOISY, other processes competed; rerun on a quiet "
                      "machine before quoting"
                    : "");
  }

  std::printf("\nSystems:\n\n");
  for (const auto& [name, system] : systems) {
    std::printf("- `%s`: %s\n", name.c_str(), Descriptions().at(name).c_str());
  }

  systems.clear();
  async_server.reset();
  sync_server.reset();
  if (own_dir) txmq::bench::RemoveDir(dir);
  return 0;
}
