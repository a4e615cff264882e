// Throughput of txmq next to the baselines it is judged against, measured in
// the same run so that every figure can be quoted as a ratio:
//
//   BM_TxmqSend/sync|async, threads 1..64  blocking 128-byte sends
//   BM_TxmqSend/async_keyed                 the same with a key per message
//   BM_TxmqConsume                         one consumer over 1M messages
//   BM_LmdbPut/batch:1|64                  raw LMDB durable puts
//   BM_LmdbScan                            raw LMDB cursor scan of 1M records
//   BM_SqlitePut                           SQLite WAL, synchronous=FULL, one
//                                          row per transaction
//
// Run: scripts/dev bench   (bench/run.sh: JSON, ratios, chart)

#include <lmdb.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "benchmark/benchmark.h"
#include "txmq/txmq.h"

namespace {

using txmq::bench::Check;
using txmq::bench::kScanRecords;
using txmq::bench::kValueBytes;
using txmq::bench::MakeTempDir;
using txmq::bench::RemoveDir;
using txmq::bench::RunLongDirs;

// ---- txmq sends --------------------------------------------------------

struct SendFixture {
  std::string dir;
  std::unique_ptr<txmq::Broker> broker;
  std::unique_ptr<txmq::Producer> producer;
};
SendFixture* send_fixture = nullptr;

void BM_TxmqSend(benchmark::State& state, txmq::Durability durability,
                 bool keyed) {
  if (state.thread_index() == 0) {
    send_fixture = new SendFixture;
    send_fixture->dir = MakeTempDir("send");
    txmq::Options options;
    options.durability = durability;
    auto broker = txmq::Broker::Open(send_fixture->dir, options);
    Check(broker.ok(), "open");
    send_fixture->broker = *std::move(broker);
    Check(send_fixture->broker->CreateTopic("bench", {.queues = 4}).ok(),
          "topic");
    send_fixture->producer = *send_fixture->broker->CreateProducer();
  }
  txmq::Message message{.topic = "bench",
                        .body = std::string(kValueBytes, 'm')};
  uint64_t n = static_cast<uint64_t>(state.thread_index()) << 40;
  for (auto _ : state) {
    // Keyed: a distinct key per message, spread over the key space (an
    // order id), so that every send adds a key index row.
    if (keyed) message.key = std::to_string(++n * 0x9E3779B97F4A7C15ULL);
    // The loop's start barrier orders this after thread 0's setup.
    if (!send_fixture->producer->Send(message).ok()) {
      state.SkipWithError("send failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * kValueBytes);
  if (state.thread_index() == 0) {
    state.counters["commits"] =
        static_cast<double>(send_fixture->broker->Stats().commits);
    // After the loop's stop barrier: every thread is done sending.
    const std::string dir = send_fixture->dir;
    delete send_fixture;
    send_fixture = nullptr;
    RemoveDir(dir);
  }
}

void SendArgs(benchmark::internal::Benchmark* b) {
  b->Threads(1)->Threads(4)->Threads(16)->Threads(64)->UseRealTime();
}
BENCHMARK_CAPTURE(BM_TxmqSend, sync, txmq::Durability::kSync, false)
    ->Apply(SendArgs);
BENCHMARK_CAPTURE(BM_TxmqSend, async, txmq::Durability::kAsync, false)
    ->Apply(SendArgs);
// The cost of the key index (lib/log/key_index.h): the same sends, keyed.
BENCHMARK_CAPTURE(BM_TxmqSend, async_keyed, txmq::Durability::kAsync, true)
    ->Apply(SendArgs);

// ---- txmq transactions ---------------------------------------------------

// Begin, an empty local transaction, Commit: what a transactional send costs
// next to a plain one (BM_TxmqSend/sync, same threads).
void BM_TxmqTransactionalSend(benchmark::State& state) {
  if (state.thread_index() == 0) {
    send_fixture = new SendFixture;
    send_fixture->dir = MakeTempDir("txn");
    auto broker = txmq::Broker::Open(send_fixture->dir);
    Check(broker.ok(), "open");
    send_fixture->broker = *std::move(broker);
    Check(send_fixture->broker->CreateTopic("bench", {.queues = 4}).ok(),
          "topic");
    send_fixture->producer =
        *send_fixture->broker->CreateProducer({.group = "bench-producers"});
  }
  const txmq::Message message{.topic = "bench",
                              .body = std::string(kValueBytes, 't')};
  for (auto _ : state) {
    auto result = send_fixture->producer->SendInTransaction(
        message, [](const txmq::TransactionId&) {
          return txmq::TransactionState::kCommit;
        });
    if (!result.ok() || !result->sent.has_value()) {
      state.SkipWithError("transactional send failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    const std::string dir = send_fixture->dir;
    delete send_fixture;
    send_fixture = nullptr;
    RemoveDir(dir);
  }
}
BENCHMARK(BM_TxmqTransactionalSend)
    ->Threads(1)
    ->Threads(16)
    ->Threads(64)
    ->UseRealTime();

class CommitAll final : public txmq::TransactionChecker {
 public:
  txmq::TransactionState Check(const txmq::HalfMessage&) override {
    return txmq::TransactionState::kCommit;
  }
};

// 100,000 half messages whose producer went away, all past due: how fast
// the check-back resolves them through a trivial checker (checks/s).
void BM_TxmqCheckBack(benchmark::State& state) {
  constexpr int kPending = 100000;
  int64_t checked = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string dir = MakeTempDir("checkback");
    auto clock = std::make_shared<txmq::ManualClock>(absl::Now());
    {
      txmq::Options options;
      options.clock = clock;
      auto broker = *txmq::Broker::Open(dir, options);
      Check(broker->CreateTopic("bench", {.queues = 4}).ok(), "topic");
      auto producer = *broker->CreateProducer({.group = "bench-producers"});
      std::vector<std::thread> threads;
      for (int t = 0; t < 32; ++t) {
        threads.emplace_back([&] {
          const txmq::Message m{.topic = "bench",
                                .body = std::string(kValueBytes, 'c')};
          for (int i = 0; i < kPending / 32; ++i) {
            Check(producer->Begin(m).ok(), "begin");
          }
        });
      }
      for (auto& t : threads) t.join();
      Check(broker->Stats().pending_transactions == kPending / 32 * 32,
            "pending");
      clock->Advance(absl::Seconds(7));  // all past their first check
      state.ResumeTiming();
      Check(broker
                ->RegisterChecker("bench-producers",
                                  std::make_shared<CommitAll>())
                .ok(),
            "register");
      while (broker->Stats().pending_transactions > 0) {
        absl::SleepFor(absl::Microseconds(200));
      }
      state.PauseTiming();
      checked += static_cast<int64_t>(broker->Stats().checks);
    }
    RemoveDir(dir);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(checked);
  state.counters["checks"] = static_cast<double>(checked);
}
BENCHMARK(BM_TxmqCheckBack)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2)
    ->UseRealTime();

// ---- txmq consume ------------------------------------------------------

struct ConsumeFixture {
  std::string dir;
  std::unique_ptr<txmq::Broker> broker;
  int groups = 0;
};

ConsumeFixture& Consumable() {
  static ConsumeFixture* fixture = [] {
    auto* f = new ConsumeFixture;
    f->dir = MakeTempDir("consume");
    RunLongDirs().push_back(f->dir);
    txmq::Options options;
    options.durability = txmq::Durability::kAsync;
    auto broker = txmq::Broker::Open(f->dir, options);
    Check(broker.ok(), "open");
    f->broker = *std::move(broker);
    Check(f->broker->CreateTopic("bench", {.queues = 4}).ok(), "topic");
    auto producer = *f->broker->CreateProducer();
    std::vector<txmq::Message> batch(
        1000,
        txmq::Message{.topic = "bench", .body = std::string(kValueBytes, 'c')});
    for (int i = 0; i < kScanRecords; i += 1000) {
      Check(producer->SendBatch(batch).ok(), "fill");
    }
    Check(f->broker->Sync().ok(), "sync");
    return f;
  }();
  return *fixture;
}

void BM_TxmqConsume(benchmark::State& state) {
  ConsumeFixture& f = Consumable();
  int64_t consumed = 0;
  uint64_t checksum = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto consumer =
        *f.broker->CreateConsumer("g" + std::to_string(f.groups++), "bench");
    state.ResumeTiming();
    int64_t pass = 0;
    while (pass < kScanRecords) {
      auto batch = consumer->Receive(state.range(0), absl::ZeroDuration());
      if (!batch.ok() || batch->empty()) {
        state.SkipWithError("receive failed");
        return;
      }
      for (const txmq::MessageView& m : *batch) checksum += m.body().size();
      pass += batch->size();
      if (!consumer->Ack(*batch).ok()) {
        state.SkipWithError("ack failed");
        return;
      }
    }
    consumed += pass;
  }
  benchmark::DoNotOptimize(checksum);
  state.SetItemsProcessed(consumed);
  state.SetBytesProcessed(consumed * kValueBytes);
}
BENCHMARK(BM_TxmqConsume)->Arg(1024)->Unit(benchmark::kMillisecond);

// Consume with an acknowledgement per message (Ack(view)), by 1 or 4
// competing consumers of one group, over the same 1M messages.
void BM_TxmqConsumeAck(benchmark::State& state) {
  ConsumeFixture& f = Consumable();
  const int consumers = state.range(0);
  int64_t consumed = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string group = "ack" + std::to_string(f.groups++);
    std::vector<std::unique_ptr<txmq::Consumer>> members;
    for (int c = 0; c < consumers; ++c) {
      members.push_back(*f.broker->CreateConsumer(group, "bench"));
    }
    std::atomic<int64_t> acked{0};
    std::atomic<bool> failed{false};
    state.ResumeTiming();
    std::vector<std::thread> threads;
    for (int c = 0; c < consumers; ++c) {
      threads.emplace_back([&, c] {
        uint64_t checksum = 0;
        while (acked.load(std::memory_order_relaxed) < kScanRecords) {
          auto batch = members[c]->Receive(256, absl::ZeroDuration());
          if (!batch.ok()) {
            failed = true;
            return;
          }
          for (const txmq::MessageView& m : *batch) {
            checksum += m.body().size();
            if (!members[c]->Ack(m).ok()) failed = true;
          }
          acked.fetch_add(batch->size(), std::memory_order_relaxed);
        }
        benchmark::DoNotOptimize(checksum);
      });
    }
    for (std::thread& t : threads) t.join();
    if (failed) {
      state.SkipWithError("receive or ack failed");
      return;
    }
    consumed += acked.load();
  }
  state.SetItemsProcessed(consumed);
}
BENCHMARK(BM_TxmqConsumeAck)
    ->ArgName("consumers")
    ->Arg(1)
    ->Arg(4)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- raw LMDB ----------------------------------------------------------

struct Lmdb {
  explicit Lmdb(unsigned flags = 0) : dir(MakeTempDir("lmdb")) {
    Check(mdb_env_create(&env) == 0, "env");
    mdb_env_set_mapsize(env, size_t{4} << 30);
    Check(mdb_env_open(env, dir.c_str(), flags, 0644) == 0, "env open");
    MDB_txn* txn;
    mdb_txn_begin(env, nullptr, 0, &txn);
    mdb_dbi_open(txn, nullptr, 0, &dbi);
    mdb_txn_commit(txn);
  }
  ~Lmdb() {
    mdb_env_close(env);
    RemoveDir(dir);
  }
  std::string dir;
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
};

void BM_LmdbPut(benchmark::State& state) {
  Lmdb db;
  const int batch = static_cast<int>(state.range(0));
  std::string value(kValueBytes, 'l');
  uint64_t key = 0;
  for (auto _ : state) {
    MDB_txn* txn;
    mdb_txn_begin(db.env, nullptr, 0, &txn);
    for (int i = 0; i < batch; ++i) {
      const uint64_t k = __builtin_bswap64(key++);
      MDB_val mk{8, const_cast<uint64_t*>(&k)}, mv{value.size(), value.data()};
      mdb_put(txn, db.dbi, &mk, &mv, MDB_APPEND);
    }
    if (mdb_txn_commit(txn) != 0) state.SkipWithError("commit failed");
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * kValueBytes);
}
BENCHMARK(BM_LmdbPut)
    ->ArgName("batch")
    ->Arg(1)
    ->Arg(32)
    ->Arg(64)
    ->UseRealTime();

void BM_LmdbScan(benchmark::State& state) {
  static Lmdb* db = [] {
    auto* d = new Lmdb(MDB_NOSYNC);
    RunLongDirs().push_back(d->dir);
    MDB_txn* txn;
    mdb_txn_begin(d->env, nullptr, 0, &txn);
    std::string value(kValueBytes, 's');
    for (uint64_t key = 0; key < kScanRecords; ++key) {
      const uint64_t k = __builtin_bswap64(key);
      MDB_val mk{8, const_cast<uint64_t*>(&k)}, mv{value.size(), value.data()};
      mdb_put(txn, d->dbi, &mk, &mv, MDB_APPEND);
    }
    mdb_txn_commit(txn);
    return d;
  }();
  int64_t scanned = 0;
  uint64_t checksum = 0;
  for (auto _ : state) {
    MDB_txn* txn;
    MDB_cursor* cursor;
    mdb_txn_begin(db->env, nullptr, MDB_RDONLY, &txn);
    mdb_cursor_open(txn, db->dbi, &cursor);
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      checksum += v.mv_size;
      ++scanned;
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
  }
  benchmark::DoNotOptimize(checksum);
  state.SetItemsProcessed(scanned);
  state.SetBytesProcessed(scanned * kValueBytes);
}
BENCHMARK(BM_LmdbScan)->Unit(benchmark::kMillisecond);

// ---- SQLite ------------------------------------------------------------

void BM_SqlitePut(benchmark::State& state) {
  const std::string dir = MakeTempDir("sqlite");
  sqlite3* db = nullptr;
  Check(sqlite3_open((dir + "/bench.db").c_str(), &db) == SQLITE_OK, "open");
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE m (id INTEGER PRIMARY KEY, body BLOB);",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO m (body) VALUES (?)", -1, &insert,
                     nullptr);
  std::string value(kValueBytes, 'q');
  for (auto _ : state) {
    // Autocommit: one row, one transaction, one fsync of the WAL.
    sqlite3_bind_blob(insert, 1, value.data(), value.size(), SQLITE_STATIC);
    if (sqlite3_step(insert) != SQLITE_DONE) state.SkipWithError("insert");
    sqlite3_reset(insert);
  }
  sqlite3_finalize(insert);
  sqlite3_close(db);
  RemoveDir(dir);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * kValueBytes);
}
BENCHMARK(BM_SqlitePut)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
