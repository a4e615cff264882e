// Broker::Open and bad data directories (DESIGN.md guarantee 7: a clear
// status, and nothing stored is damaged).

#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "child_process.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/inspector.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::ChildProcess;
using ::txmq::testing::TempDir;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

bool Mentions(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

// Stores one message in `dir` and closes it.
void StoreOne(const std::string& dir) {
  auto broker = Broker::Open(dir);
  TXMQ_ASSERT_OK(broker);
  TXMQ_ASSERT_OK((*broker)->CreateTopic("t"));
  auto producer = (*broker)->CreateProducer();
  TXMQ_ASSERT_OK((*producer)->Send({.topic = "t", .body = "kept"}));
}

// Reads back the one message StoreOne stored.
void ExpectOneStored(const std::string& dir) {
  auto broker = Broker::Open(dir);
  TXMQ_ASSERT_OK(broker);
  auto consumer = (*broker)->CreateConsumer("check", "t");
  TXMQ_ASSERT_OK(consumer);
  auto batch = (*consumer)->Receive(10, absl::ZeroDuration());
  TXMQ_ASSERT_OK(batch);
  ASSERT_EQ(batch->size(), 1u);
  EXPECT_EQ((*batch)[0].body(), "kept");
}

TEST(OpenTest, CreatesAMissingDirectoryAndReopensIt) {
  TempDir tmp;
  const std::string dir = tmp.Sub("a/b");
  StoreOne(dir);
  ExpectOneStored(dir);
}

TEST(OpenTest, MissingDirectoryWithoutCreateIsNotFound) {
  TempDir tmp;
  Options options;
  options.create_if_missing = false;
  auto broker = Broker::Open(tmp.Sub("missing"), options);
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Mentions(broker.status(), "does not exist"));
}

TEST(OpenTest, AFileIsNotADataDirectory) {
  TempDir tmp;
  WriteFile(tmp.Sub("file"), "x");
  auto broker = Broker::Open(tmp.Sub("file"));
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Mentions(broker.status(), "is not a directory"));
}

TEST(OpenTest, SecondOpenInOneProcessIsRefused) {
  TempDir tmp;
  auto first = Broker::Open(tmp.path());
  TXMQ_ASSERT_OK(first);
  auto second = Broker::Open(tmp.path() + "/.");  // same directory
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Mentions(second.status(), "already open in this process"));
  first->reset();
  TXMQ_EXPECT_OK(Broker::Open(tmp.path()));
}

TEST(OpenTest, DirectoryOwnedByAnotherProcessIsRefused) {
  TempDir tmp;
  ChildProcess holder({"hold", tmp.path()});
  ASSERT_TRUE(holder.ok());
  auto broker = Broker::Open(tmp.path());
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Mentions(broker.status(), "open by another process (pid " +
                                            std::to_string(holder.pid()) + ")"))
      << broker.status();
  holder.Kill();  // its lock dies with it
  TXMQ_EXPECT_OK(Broker::Open(tmp.path()));
}

TEST(OpenTest, GarbageDataFileIsDataLossAndLeftAlone) {
  TempDir tmp;
  const std::string garbage(64 * 1024, 'G');
  WriteFile(tmp.Sub("data.mdb"), garbage);
  auto broker = Broker::Open(tmp.path());
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(broker.status(), "not a txmq data file"));
  EXPECT_EQ(ReadFile(tmp.Sub("data.mdb")), garbage);
}

TEST(OpenTest, DamagedMetaPagesAreDataLoss) {
  TempDir tmp;
  StoreOne(tmp.path());
  std::string data = ReadFile(tmp.Sub("data.mdb"));
  ASSERT_GT(data.size(), 8192u);
  for (size_t i = 0; i < 8192; ++i) data[i] = static_cast<char>(i * 31);
  WriteFile(tmp.Sub("data.mdb"), data);
  auto broker = Broker::Open(tmp.path());
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kDataLoss)
      << broker.status();
  EXPECT_EQ(ReadFile(tmp.Sub("data.mdb")), data);
}

// LMDB maps the data file: reading a page past a truncated file's end
// would be SIGBUS. Open checks the length against the meta page first.
TEST(OpenTest, TruncatedDataFileIsDataLossNotACrash) {
  TempDir tmp;
  StoreOne(tmp.path());
  std::string data = ReadFile(tmp.Sub("data.mdb"));
  data.resize(3 * 4096);  // the meta pages and a little more
  WriteFile(tmp.Sub("data.mdb"), data);
  auto broker = Broker::Open(tmp.path());
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kDataLoss)
      << broker.status();
  EXPECT_NE(broker.status().message().find("truncated"), std::string::npos)
      << broker.status();
  auto inspector = Inspector::Open(tmp.path());
  EXPECT_EQ(inspector.status().code(), absl::StatusCode::kDataLoss)
      << inspector.status();
  EXPECT_EQ(ReadFile(tmp.Sub("data.mdb")), data);
}

TEST(OpenTest, ForeignLmdbEnvironmentIsRefusedAndLeftAlone) {
  TempDir tmp;
  {
    MDB_env* env;
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    ASSERT_EQ(mdb_env_open(env, tmp.path().c_str(), 0, 0644), 0);
    MDB_txn* txn;
    MDB_dbi dbi;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "someone-elses", MDB_CREATE, &dbi), 0);
    MDB_val k{3, const_cast<char*>("key")}, v{5, const_cast<char*>("value")};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
  }
  const std::string before = ReadFile(tmp.Sub("data.mdb"));
  auto broker = Broker::Open(tmp.path());
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Mentions(broker.status(), "not a txmq data directory"));
  EXPECT_EQ(ReadFile(tmp.Sub("data.mdb")), before);
}

TEST(OpenTest, NewerFormatVersionIsRefusedAndLeftAlone) {
  TempDir tmp;
  StoreOne(tmp.path());
  {
    MDB_env* env;
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    ASSERT_EQ(mdb_env_open(env, tmp.path().c_str(), 0, 0644), 0);
    MDB_txn* txn;
    MDB_dbi meta;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    char version[4] = {0, 0, 0, 2};
    MDB_val k{14, const_cast<char*>("format_version")}, v{4, version};
    ASSERT_EQ(mdb_put(txn, meta, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
  }
  const std::string before = ReadFile(tmp.Sub("data.mdb"));
  auto broker = Broker::Open(tmp.path());
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Mentions(broker.status(), "newer txmq (format version 2"))
      << broker.status();
  EXPECT_EQ(ReadFile(tmp.Sub("data.mdb")), before);
}

TEST(OpenTest, ReadOnlyDirectoryIsPermissionDenied) {
  TempDir tmp;
  StoreOne(tmp.path());
  ASSERT_EQ(chmod(tmp.path().c_str(), 0755), 0);  // others may look inside
  const std::string ro = tmp.Sub("ro");
  ASSERT_EQ(mkdir(ro.c_str(), 0755), 0);
  // As root, permissions do not apply: check as an unprivileged user in a
  // child process (forked before it touches LMDB).
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) {
      _exit(10);
    }
    if (geteuid() != 0) chmod(ro.c_str(), 0555);
    auto broker = Broker::Open(ro);
    if (broker.ok()) _exit(11);
    if (broker.status().code() != absl::StatusCode::kPermissionDenied)
      _exit(12);
    if (!Mentions(broker.status(), "writable data directory")) _exit(13);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: cannot drop privileges, 11: opened, 12: wrong code, 13: "
         "unclear message";
  ExpectOneStored(tmp.path());
}

TEST(OpenTest, BadOptionsAreInvalidArgument) {
  TempDir tmp;
  std::vector<Options> bad(5);
  bad[0].initial_map_bytes = 1000;
  bad[1].max_message_bytes = 10;
  bad[2].max_queues = 0;
  bad[3].max_readers = 1;
  bad[4].max_map_bytes = 2 << 20;  // below the initial map
  for (const Options& o : bad) {
    EXPECT_EQ(Broker::Open(tmp.path(), o).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace txmq
