// Pages overwritten with garbage (issue 7): LMDB has no checksums and would
// follow a damaged page out of bounds. storage/page_check.h walks the pages
// first; these tests damage real data files page by page and byte by byte,
// and open each copy in a child process, so a crash is seen as a crash.

#include "storage/page_check.h"

#include <lmdb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/inspector.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::ReadFile;
using ::txmq::testing::TempDir;

constexpr size_t kPage = 4096;

void WriteFile(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(std::fwrite(data.data(), 1, data.size(), f), data.size());
  ASSERT_EQ(std::fclose(f), 0);
}

// Stores messages in `dir`: small ones with keys and tags in 4 queues,
// delayed ones, consumer offsets, and with `large` a few bodies bigger than
// a page (LMDB's overflow pages).
void Fill(const std::string& dir, bool large) {
  auto broker = Broker::Open(dir);
  TXMQ_ASSERT_OK(broker);
  TXMQ_ASSERT_OK((*broker)->CreateTopic("small", {.queues = 4}));
  TXMQ_ASSERT_OK((*broker)->CreateTopic("large"));
  auto producer = (*broker)->CreateProducer();
  TXMQ_ASSERT_OK(producer);
  std::mt19937 rng(7);
  for (int i = 0; i < 1200; ++i) {
    TXMQ_ASSERT_OK((*producer)->Send(
        {.topic = "small",
         .key = absl::StrFormat("k%d", i % 50),
         .tags = {i % 2 ? "odd" : "even"},
         .body = std::string(20 + rng() % 200, static_cast<char>('a' + i % 26)),
         .deliver_at = i % 100 == 0 ? absl::Now() + absl::Hours(1)
                                    : absl::InfinitePast()}));
  }
  if (large) {
    for (int i = 0; i < 8; ++i) {
      TXMQ_ASSERT_OK((*producer)->Send(
          {.topic = "large", .body = std::string(5000 + i * 3000, 'L')}));
    }
  }
  auto consumer = (*broker)->CreateConsumer("readers", "small");
  TXMQ_ASSERT_OK(consumer);
  auto batch = (*consumer)->Receive(100, absl::ZeroDuration());
  TXMQ_ASSERT_OK(batch);
  TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
}

PageCheck CheckDirectory(const std::string& dir) {
  MDB_env* env = nullptr;
  EXPECT_EQ(mdb_env_create(&env), MDB_SUCCESS);
  EXPECT_EQ(mdb_env_open(env, dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0644),
            MDB_SUCCESS);
  MDB_txn* txn = nullptr;
  EXPECT_EQ(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn), MDB_SUCCESS);
  absl::StatusOr<PageCheck> check = CheckPages(env, txn);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  EXPECT_TRUE(check.ok()) << check.status();
  return check.ok() ? *check : PageCheck{};
}

// What a child made of a damaged copy (its exit status).
enum Outcome : int {
  kClean = 0,              // opened, read every message, verified clean
  kVerifyFound = 1,        // opened; Verify reported problems
  kReadFailed = 2,         // opened; a read failed with DATA_LOSS
  kOpenDataLoss = 3,       // Broker::Open: DATA_LOSS
  kInspectorDataLoss = 4,  // Broker opened; Inspector::Open: DATA_LOSS
  kOtherError = 5,         // any other error (the test fails)
};

// Everything a user would do with `dir`, in this (forked) process.
Outcome Probe(const std::string& dir) {
  {
    auto broker = Broker::Open(dir);
    if (!broker.ok()) {
      if (absl::IsDataLoss(broker.status())) return kOpenDataLoss;
      std::fprintf(stderr, "open: %s\n", broker.status().ToString().c_str());
      return kOtherError;
    }
    for (const char* topic : {"small", "large"}) {
      auto consumer = (*broker)->CreateConsumer("probe", topic);
      if (!consumer.ok()) {
        if (absl::IsDataLoss(consumer.status())) return kReadFailed;
        std::fprintf(stderr, "consumer: %s\n",
                     consumer.status().ToString().c_str());
        return kOtherError;
      }
      for (;;) {
        auto batch = (*consumer)->Receive(500, absl::ZeroDuration());
        if (!batch.ok()) {
          if (absl::IsDataLoss(batch.status())) return kReadFailed;
          std::fprintf(stderr, "receive: %s\n",
                       batch.status().ToString().c_str());
          return kOtherError;
        }
        if (batch->empty()) break;
        size_t bytes = 0;
        for (const auto& m : *batch) bytes += m.body().size() + m.key().size();
        if (bytes == SIZE_MAX) return kOtherError;  // (keeps the reads)
        if (!(*consumer)->Ack(*batch).ok()) return kOtherError;
      }
    }
  }
  auto inspector = Inspector::Open(dir);
  if (!inspector.ok()) {
    if (absl::IsDataLoss(inspector.status())) return kInspectorDataLoss;
    std::fprintf(stderr, "inspector: %s\n",
                 inspector.status().ToString().c_str());
    return kOtherError;
  }
  auto report = (*inspector)->Verify();
  if (!report.ok()) {
    std::fprintf(stderr, "verify: %s\n", report.status().ToString().c_str());
    return kOtherError;
  }
  return report->ok() ? kClean : kVerifyFound;
}

// Probe in a child process; the exit status, or -signal when it died.
int ProbeInChild(const std::string& dir) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) _exit(Probe(dir));
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

class PageCheckTest : public ::testing::Test {
 protected:
  // A copy of `data` as the data file of a fresh directory.
  std::string Copy(const std::string& data, int n) {
    const std::string dir = tmp_.Sub(absl::StrFormat("copy%d", n));
    std::filesystem::create_directories(dir);
    WriteFile(dir + "/data.mdb", data);
    return dir;
  }
  TempDir tmp_;
};

TEST_F(PageCheckTest, ASoundDirectoryHasNoProblems) {
  const std::string dir = tmp_.Sub("d");
  Fill(dir, /*large=*/true);
  const PageCheck check = CheckDirectory(dir);
  EXPECT_TRUE(check.ok()) << check.problems[0];
  // The free list, the main table, txmq's own tables and 5 queue tables.
  EXPECT_GE(check.tables, 2u + 5u);
  EXPECT_GT(check.pages, 10u);
  std::printf("%llu of %llu pages in %llu tables; the file has %zu pages\n",
              static_cast<unsigned long long>(check.pages),
              static_cast<unsigned long long>(check.page_count),
              static_cast<unsigned long long>(check.tables),
              ReadFile(dir + "/data.mdb").size() / kPage);
  EXPECT_LE(check.pages * kPage, ReadFile(dir + "/data.mdb").size());
  EXPECT_EQ(ProbeInChild(dir), kClean);
}

// Every page in use, overwritten whole with random bytes, is found before
// LMDB reads it: Broker::Open fails with DATA_LOSS naming it. Garbage on a
// free page harms nothing.
TEST_F(PageCheckTest, EveryPageInUseOverwrittenIsDataLossNotACrash) {
  const std::string dir = tmp_.Sub("d");
  Fill(dir, /*large=*/false);  // no overflow pages: every page is checked
  const std::string pristine = ReadFile(dir + "/data.mdb");
  const PageCheck sound = CheckDirectory(dir);
  ASSERT_TRUE(sound.ok());
  std::mt19937_64 rng(11);
  std::map<int, int> outcomes;
  // Pages past the snapshot's last are never read.
  const size_t pages = sound.page_count;
  for (size_t p = 2; p < pages; ++p) {
    std::string data = pristine;
    for (size_t i = 0; i < kPage; ++i) {
      data[p * kPage + i] = static_cast<char>(rng());
    }
    const std::string copy = Copy(data, static_cast<int>(p));
    const int outcome = ProbeInChild(copy);
    ++outcomes[outcome];
    ASSERT_TRUE(outcome == kClean || outcome == kOpenDataLoss)
        << "page " << p << " of " << pages << ": outcome " << outcome;
    std::filesystem::remove_all(copy);
  }
  EXPECT_EQ(outcomes[kOpenDataLoss], static_cast<int>(sound.pages));
  EXPECT_EQ(outcomes[kClean], static_cast<int>(pages - 2 - sound.pages));
}

// The damage names the table and the page, in Broker::Open's error, in
// Inspector::Open's, in Verify's report on an inspector opened before, and
// in Inspector::VerifyPages.
TEST_F(PageCheckTest, TheDamageIsNamed) {
  const std::string dir = tmp_.Sub("d");
  Fill(dir, /*large=*/false);
  auto inspector = Inspector::Open(dir);
  TXMQ_ASSERT_OK(inspector);
  std::string data = ReadFile(dir + "/data.mdb");
  const uint64_t main_root = testing::MainTableRootPage(data);
  ASSERT_LT(main_root * kPage, data.size());
  for (size_t i = 0; i < 8; ++i) data[main_root * kPage + i] = 'X';
  WriteFile(dir + "/data.mdb", data);  // the same inode: the inspector sees it
  const std::string expected = absl::StrFormat(
      "table (main): page %d: its header names page", main_root);

  auto report = (*inspector)->Verify();
  TXMQ_ASSERT_OK(report);
  ASSERT_FALSE(report->ok());
  EXPECT_NE(report->problems[0].find(expected), std::string::npos)
      << report->problems[0];
  inspector->reset();

  auto broker = Broker::Open(dir);
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(broker.status().message().find(expected), std::string::npos)
      << broker.status();
  auto again = Inspector::Open(dir);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(again.status().message().find(expected), std::string::npos)
      << again.status();
  auto pages = Inspector::VerifyPages(dir);  // what `txmq verify` lists
  TXMQ_ASSERT_OK(pages);
  ASSERT_EQ(pages->problems.size(), 1u);
  EXPECT_NE(pages->problems[0].find(expected), std::string::npos)
      << pages->problems[0];
  EXPECT_EQ(ReadFile(dir + "/data.mdb"), data);  // left alone
}

// LMDB divides by the page size a meta page gives (SIGFPE at 0) and maps
// the pages it counts: both are checked before mdb_env_open.
TEST_F(PageCheckTest, DamagedMetaFieldsAreDataLossNotACrash) {
  const std::string dir = tmp_.Sub("d");
  Fill(dir, /*large=*/false);
  const std::string pristine = ReadFile(dir + "/data.mdb");
  // (meta page, offset in the page, value): the free list's pad is the
  // page size (16 + 24); the last page is at 16 + 120.
  struct Damage {
    size_t page, at;
    uint64_t value;
    size_t bytes;
  };
  int n = 0;
  for (const Damage& d :
       {Damage{0, 40, 0, 4}, Damage{1, 40, 0, 4}, Damage{0, 40, 3000, 4},
        Damage{1, 40, 8192, 4}, Damage{0, 136, uint64_t{1} << 40, 8},
        Damage{1, 136, uint64_t{1} << 40, 8}}) {
    std::string data = pristine;
    std::memcpy(data.data() + d.page * kPage + d.at, &d.value, d.bytes);
    const std::string copy = Copy(data, n++);
    const int outcome = ProbeInChild(copy);
    EXPECT_TRUE(outcome == kOpenDataLoss || outcome == kClean)
        << "meta page " << d.page << " offset " << d.at << " = " << d.value
        << ": outcome " << outcome;
    if (d.page == 0 || d.at == 40) {
      // Page 0 is always read; a page size is checked on both.
      EXPECT_EQ(outcome, kOpenDataLoss) << d.page << " " << d.at;
    }
  }
}

// A few random bytes of a random page, meta pages and overflow pages
// included: whatever they hit, no process crashes. Open fails with
// DATA_LOSS, or a read does, or Verify reports it, or (in a message body, a
// free page, an unused byte) nothing notices.
TEST_F(PageCheckTest, RandomByteDamageNeverCrashes) {
  const std::string dir = tmp_.Sub("d");
  Fill(dir, /*large=*/true);
  const std::string pristine = ReadFile(dir + "/data.mdb");
  const size_t pages = CheckDirectory(dir).page_count;
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed() + 13);
  std::map<int, int> outcomes;
  constexpr int kTrials = 150;
  for (int trial = 0; trial < kTrials; ++trial) {
    std::string data = pristine;
    // One trial in eight damages a meta page's fields.
    const bool meta = rng() % 8 == 0;
    const size_t page = meta ? rng() % 2 : rng() % pages;
    const int bytes = 1 + static_cast<int>(rng() % 8);
    std::string what = absl::StrFormat("trial %d: page %d, bytes", trial, page);
    for (int b = 0; b < bytes; ++b) {
      // Mostly the header and the node offsets, where LMDB is trusting.
      const size_t at = meta        ? 16 + rng() % 144
                        : rng() % 2 ? rng() % 64
                                    : rng() % kPage;
      data[page * kPage + at] = static_cast<char>(rng());
      absl::StrAppendFormat(&what, " %d", at);
    }
    const std::string copy = Copy(data, trial);
    const int outcome = ProbeInChild(copy);
    ++outcomes[outcome];
    ASSERT_GE(outcome, 0) << what << ": the child died of signal " << -outcome;
    ASSERT_NE(outcome, kOtherError) << what;
    std::filesystem::remove_all(copy);
  }
  std::string summary;
  for (auto [outcome, n] : outcomes) {
    absl::StrAppendFormat(&summary, " outcome %d: %d;", outcome, n);
  }
  std::printf("%d trials:%s\n", kTrials, summary.c_str());
}

}  // namespace
}  // namespace txmq
