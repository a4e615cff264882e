// The txmq CLI's errors, help, and its use on a live directory that another
// process holds open and is writing to.

#include <lmdb.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "child_process.h"
#include "cli/cli_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A failure: nonzero exit, nothing on stdout, one line on stderr that
// contains `what`.
void ExpectError(const CliResult& r, const std::string& what,
                 int exit_code = 1) {
  EXPECT_EQ(r.exit_code, exit_code) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr(what));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.err.starts_with("txmq: error: ")) << r.err;
}

// Runs `fn` in a write transaction of the LMDB environment in `dir`, opened
// directly: behind txmq's back.
void RawWrite(const std::string& dir, const std::function<void(MDB_txn*)>& fn) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), MDB_SUCCESS);
  mdb_env_set_maxdbs(env, 2048);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0644), MDB_SUCCESS);
  MDB_txn* txn;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), MDB_SUCCESS);
  fn(txn);
  EXPECT_EQ(mdb_txn_commit(txn), MDB_SUCCESS);
  mdb_env_close(env);
}

class CliTest : public ::testing::Test {
 protected:
  // A data directory with topic "orders" (2 queues) and one message.
  void MakeDirectory() {
    auto broker = Broker::Open(tmp_.path());
    TXMQ_ASSERT_OK(broker);
    TXMQ_ASSERT_OK((*broker)->CreateTopic("orders", {.queues = 2}));
    auto producer = (*broker)->CreateProducer();
    TXMQ_ASSERT_OK((*producer)->Send({.topic = "orders", .body = "x"}));
  }

  CliResult Run(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), {"--data", tmp_.path()});
    return RunCli(args, input);
  }

  TempDir tmp_;
};

TEST_F(CliTest, MissingDirectory) {
  ExpectError(RunCli({"--data", tmp_.Sub("nope"), "stat"}), "does not exist");
  // A write command does not create it either (only topic create does).
  ExpectError(RunCli({"--data", tmp_.Sub("nope"), "send", "orders", "x"}),
              "does not exist");
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("nope")));
}

TEST_F(CliTest, DirectoryThatIsNotTxmq) {
  ExpectError(Run({"stat"}), "is not a txmq data directory");
  ExpectError(Run({"send", "orders", "x"}), "is not a txmq data directory");
  // Nothing half-written: the directory is still empty.
  EXPECT_TRUE(std::filesystem::is_empty(tmp_.path()));
  // A foreign data file.
  std::ofstream(tmp_.Sub("data.mdb")) << std::string(8192, 'x');
  ExpectError(Run({"topic", "list"}), "not a txmq data file");
  ExpectError(Run({"topic", "create", "t"}), "not a txmq data file");
}

TEST_F(CliTest, ForeignLmdbEnvironment) {
  RawWrite(tmp_.path(), [](MDB_txn* txn) {
    MDB_dbi dbi;
    ASSERT_EQ(mdb_dbi_open(txn, "other", MDB_CREATE, &dbi), MDB_SUCCESS);
  });
  ExpectError(Run({"stat"}), "is not a txmq data directory");
}

TEST_F(CliTest, NewerFormatVersion) {
  MakeDirectory();
  RawWrite(tmp_.path(), [](MDB_txn* txn) {
    MDB_dbi meta;
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), MDB_SUCCESS);
    char version[4] = {0, 0, 0, 9};
    MDB_val k{14, const_cast<char*>("format_version")}, v{4, version};
    ASSERT_EQ(mdb_put(txn, meta, &k, &v, 0), MDB_SUCCESS);
  });
  ExpectError(Run({"stat"}), "newer txmq (format version 9");
  ExpectError(Run({"topic", "create", "t"}), "newer txmq");
}

TEST_F(CliTest, UnknownTopicGroupAndIds) {
  MakeDirectory();
  ExpectError(Run({"topic", "describe", "nope"}),
              "topic 'nope' does not exist");
  ExpectError(Run({"msg", "peek", "nope"}), "topic 'nope' does not exist");
  ExpectError(Run({"msg", "tail", "nope"}), "topic 'nope' does not exist");
  ExpectError(Run({"send", "nope", "x"}), "nope");
  ExpectError(Run({"topic", "delete", "nope"}), "nope");
  ExpectError(Run({"consume", "nope", "--group", "g"}), "nope");
  ExpectError(Run({"dlq", "list", "nogroup"}),
              "group 'nogroup' has no dead-letter queue");
  ExpectError(Run({"dlq", "redrive", "nogroup"}),
              "group 'nogroup' has no dead-letter queue");
  ExpectError(Run({"msg", "get", std::string(32, '0')}), "no message with id");
  ExpectError(Run({"msg", "get", "xyz"}), "'xyz' is not a message id");
  ExpectError(Run({"half", "commit", std::string(32, 'a')}), "");
  ExpectError(Run({"half", "rollback", "12"}), "is not a transaction id");
  ExpectError(Run({"msg", "peek", "orders", "--queue", "7"}),
              "there is no queue 7");
}

TEST_F(CliTest, MalformedDurationsAndTimestamps) {
  MakeDirectory();
  ExpectError(Run({"topic", "create", "t", "--retention", "5"}),
              "'5' is not a duration (it has no unit)", 2);
  ExpectError(Run({"topic", "create", "t", "--retention", "5x"}),
              "unknown unit 'x'", 2);
  ExpectError(Run({"send", "orders", "--delay", "-1s", "x"}),
              "is not a duration", 2);
  ExpectError(Run({"group", "reset", "g", "orders", "--to", "yesterday"}),
              "'yesterday' is not a timestamp", 2);
  ExpectError(Run({"group", "reset", "g", "orders", "--to", "2026-13-01"}),
              "is not a timestamp", 2);
  ExpectError(Run({"send", "orders", "--prop", "novalue", "x"}),
              "is not a property", 2);
  // Nothing was written by the failed commands.
  auto inspector = Inspector::Open(tmp_.path());
  TXMQ_ASSERT_OK(inspector);
  EXPECT_EQ((*inspector)->Stat()->messages, 1u);
  EXPECT_EQ((*inspector)->ListTopics()->size(), 1u);
  EXPECT_TRUE((*inspector)->ListGroups()->empty());
}

TEST_F(CliTest, UsageErrors) {
  MakeDirectory();
  ExpectError(Run({"stat", "--bogus"}), "--bogus", 2);
  ExpectError(Run({"frobnicate"}), "frobnicate", 2);
  ExpectError(RunCli({"stat"}), "pass --data DIR", 2);
  ExpectError(Run({"topic"}), "", 2);
  ExpectError(Run({"consume", "orders"}), "--group", 2);
  ExpectError(Run({"send", "orders", "--half", "x"}), "--half needs --group",
              2);
  ExpectError(Run({"consume", "orders", "--group", "g", "--from", "middle"}),
              "--from must be earliest or latest", 2);
}

TEST_F(CliTest, HelpDescribesEveryCommandAndFlag) {
  const CliResult top = RunCli({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  for (const char* command : {"stat", "topic", "send", "msg", "half", "group",
                              "consume", "dlq", "verify", "--data", "--json"}) {
    EXPECT_THAT(top.out, HasSubstr(command));
  }
  const CliResult send = RunCli({"send", "--help"});
  EXPECT_EQ(send.exit_code, 0);
  for (const char* flag :
       {"--key", "--tag", "--prop", "--delay", "--half", "--group", "BODY"}) {
    EXPECT_THAT(send.out, HasSubstr(flag));
  }
  const CliResult peek = RunCli({"msg", "peek", "--help"});
  EXPECT_EQ(peek.exit_code, 0);
  EXPECT_THAT(peek.out, HasSubstr("--offset"));
  EXPECT_EQ(RunCli({"--data", tmp_.path(), "verify", "--help"}).exit_code, 0);
  // Help does not touch the directory.
  EXPECT_TRUE(std::filesystem::is_empty(tmp_.path()));
}

TEST_F(CliTest, TopicCreateInitialisesAnEmptyDirectory) {
  const CliResult r = Run({"topic", "create", "first", "--queues", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto inspector = Inspector::Open(tmp_.path());
  TXMQ_ASSERT_OK(inspector);
  EXPECT_EQ((*inspector)->ListTopics()->size(), 1u);
}

TEST_F(CliTest, WritesToADirectoryWithMoreQueuesThanTheDefault) {
  {
    Options options;
    options.max_queues = 1500;
    auto broker = Broker::Open(tmp_.path(), options);
    TXMQ_ASSERT_OK(broker);
    TXMQ_ASSERT_OK((*broker)->CreateTopic("wide", {.queues = 1024}));
    TXMQ_ASSERT_OK((*broker)->CreateTopic("wider", {.queues = 200}));
  }
  const CliResult r = Run({"send", "wider", "x"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(CliTest, FollowingEndsWhenTheTopicIsDeleted) {
  MakeDirectory();
  CliProcess tail({"--data", tmp_.path(), "msg", "tail", "orders", "-f"}, "",
                  {});
  ASSERT_TRUE(Eventually([&] { return !tail.OutSoFar().empty(); }));
  {
    // Deleted and created again, with more queues than it had.
    auto broker = Broker::Open(tmp_.path());
    TXMQ_ASSERT_OK(broker);
    TXMQ_ASSERT_OK((*broker)->DeleteTopic("orders"));
    TXMQ_ASSERT_OK((*broker)->CreateTopic("orders", {.queues = 64}));
    auto producer = (*broker)->CreateProducer();
    TXMQ_ASSERT_OK((*producer)->Send({.topic = "orders", .body = "new"}));
  }
  const CliResult r = tail.Wait();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("topic orders was deleted while following"));
  EXPECT_THAT(r.out, Not(HasSubstr("new")));
}

TEST_F(CliTest, ConsumeAcknowledgesOnlyWhatReachedStdout) {
  MakeDirectory();
  // Through a shell, to point stdout at /dev/full.
  const std::string cmd = CliBinary() + " --data " + tmp_.path() +
                          " consume orders --group g > /dev/full 2>/dev/null";
  EXPECT_NE(std::system(cmd.c_str()), 0);
  auto inspector = Inspector::Open(tmp_.path());
  TXMQ_ASSERT_OK(inspector);
  auto groups = (*inspector)->ListGroups();
  TXMQ_ASSERT_OK(groups);
  uint64_t lag = 0;
  for (const GroupLag& g : *groups) {
    if (g.topic == "orders") lag += g.total();
  }
  EXPECT_EQ(lag, 1u);  // the message was not shown, so not acknowledged
}

// Runs `command` on a pseudo-terminal (script(1)) and returns what the
// terminal showed, stdout and stderr together.
std::string OnATerminal(const std::string& command) {
  const std::string cmd = "script -qec '" + command + "' /dev/null";
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r"); f != nullptr) {
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;) out.append(buf, n);
    pclose(f);
  }
  return out;
}

TEST_F(CliTest, ProgressBarsOnlyOnATerminal) {
  MakeDirectory();
  {
    auto broker = Broker::Open(tmp_.path());
    auto producer = (*broker)->CreateProducer();
    std::vector<Message> batch(5000, Message{.topic = "orders", .key = "k"});
    TXMQ_ASSERT_OK((*producer)->SendBatch(batch));
  }
  const std::string shown =
      OnATerminal(CliBinary() + " --data " + tmp_.path() + " verify");
  if (shown.empty() || shown.starts_with("script:")) {
    GTEST_SKIP() << "no pseudo-terminal on this machine: " << shown;
  }
  EXPECT_THAT(shown, HasSubstr("verify ["));
  EXPECT_THAT(shown, HasSubstr("\033[Kok: "));  // erased before the result
  const CliResult piped = Run({"verify"});
  EXPECT_EQ(piped.exit_code, 0);
  EXPECT_EQ(piped.err, "");
  EXPECT_THAT(piped.out, Not(HasSubstr("[")));
}

TEST_F(CliTest, DelayedSendIsStoredForLater) {
  MakeDirectory();
  const CliResult r = Run({"send", "orders", "--delay", "1h", "--json", "x"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto doc = nlohmann::json::parse(r.out);
  EXPECT_TRUE(doc["delayed"].get<bool>());
  EXPECT_TRUE(doc["id"].is_null());
  auto inspector = Inspector::Open(tmp_.path());
  EXPECT_EQ((*inspector)->Stat()->delayed_messages, 1u);
}

TEST_F(CliTest, KeysTagsAndPropertiesThatAreNotUtf8) {
  MakeDirectory();
  const CliResult sent = Run({"send", "orders", "--key", "k\xff", "--tag",
                              "\xc3", "--prop", "p=\xfe", "--json", "-"},
                             std::string("\0\xff", 2));
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  const std::string id = nlohmann::json::parse(sent.out)["id"];
  const CliResult human = Run({"msg", "get", id});
  EXPECT_EQ(human.exit_code, 0) << human.err;
  EXPECT_THAT(human.out, HasSubstr("k\\xff"));  // escaped
  const CliResult json = Run({"msg", "get", id, "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto doc = nlohmann::json::parse(json.out);
  EXPECT_EQ(doc["key"], "k\xef\xbf\xbd");  // U+FFFD
  EXPECT_EQ(doc["body_encoding"], "base64");
  EXPECT_EQ(doc["body"], "AP8=");
}

TEST_F(CliTest, VerifyReportsDamage) {
  MakeDirectory();
  // Behind txmq's back: a check-back timer row without its transaction,
  // and a queue table that belongs to no topic.
  RawWrite(tmp_.path(), [](MDB_txn* txn) {
    MDB_dbi timer;
    ASSERT_EQ(mdb_dbi_open(txn, "timer", 0, &timer), MDB_SUCCESS);
    std::string key(8 + 1 + 16, '\0');
    key[0] = static_cast<char>(0x80);  // due at 1970 (biased)
    key[8] = 1;                        // a check-back
    key[9] = 'x';
    MDB_val k{key.size(), key.data()}, v{0, nullptr};
    ASSERT_EQ(mdb_put(txn, timer, &k, &v, 0), MDB_SUCCESS);
    MDB_dbi stray;
    ASSERT_EQ(mdb_dbi_open(txn, "q.77", MDB_CREATE, &stray), MDB_SUCCESS);
  });
  const CliResult r = Run({"verify"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.out, HasSubstr("no such pending transaction"));
  EXPECT_THAT(r.out, HasSubstr("table q.77 belongs to no topic"));
  EXPECT_THAT(r.out, HasSubstr("2 problems"));
  const CliResult j = Run({"verify", "--json"});
  EXPECT_EQ(j.exit_code, 3);
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_FALSE(doc["ok"].get<bool>());
  EXPECT_EQ(doc["problems"].size(), 2u);
}

// A page overwritten with garbage: every other command refuses the
// directory with DATA_LOSS (exit 1) naming the page; verify lists what is
// wrong (exit 3) without reading a table, and nothing crashes.
TEST_F(CliTest, VerifyListsDamagedPages) {
  MakeDirectory();
  const std::string path = tmp_.path() + "/data.mdb";
  std::string data = ReadFile(path);
  const uint64_t page = testing::MainTableRootPage(data);
  ASSERT_LT(page * 4096, data.size());
  for (size_t i = 0; i < 4096; ++i) data[page * 4096 + i] = 'G';
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
  }
  const std::string named = absl::StrFormat("table (main): page %d:", page);
  const CliResult stat = Run({"stat"});
  EXPECT_EQ(stat.exit_code, 1);
  EXPECT_THAT(stat.err, HasSubstr("is damaged"));
  EXPECT_THAT(stat.err, HasSubstr(named));
  const CliResult r = Run({"verify"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.out, HasSubstr(named));
  EXPECT_THAT(r.out, HasSubstr("1 problems in 2 tables, 0 records checked"));
  const CliResult j = Run({"verify", "--json"});
  EXPECT_EQ(j.exit_code, 3);
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_FALSE(doc["ok"].get<bool>());
  EXPECT_EQ(ReadFile(path), data);  // left alone
}

// Lines of the child's side file: "<id> <queue> <offset>" per acknowledged
// send.
std::vector<std::string> AckedIds(const std::string& sidefile) {
  std::vector<std::string> ids;
  for (absl::string_view line :
       absl::StrSplit(ReadFile(sidefile), '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() == 3) ids.emplace_back(f[0]);
  }
  return ids;
}

TEST_F(CliTest, ReadsALiveDirectoryWhileItsOwnerWrites) {
  const std::string dir = tmp_.Sub("live");
  const std::string sidefile = tmp_.Sub("acked");
  ChildProcess child({"send", dir, sidefile, "2", "sync"});
  ASSERT_TRUE(child.ok());
  ASSERT_TRUE(Eventually([&] { return AckedIds(sidefile).size() >= 50; }));

  // Everything acknowledged before a command ran is visible to it.
  std::vector<std::string> acked = AckedIds(sidefile);
  CliResult stat = RunCli({"--data", dir, "stat", "--json"});
  ASSERT_EQ(stat.exit_code, 0) << stat.err;
  auto doc = nlohmann::json::parse(stat.out);
  EXPECT_EQ(doc["owner_pid"].get<int>(), child.pid());
  EXPECT_GE(doc["messages"].get<uint64_t>(), acked.size());
  for (size_t i : {size_t{0}, acked.size() / 2, acked.size() - 1}) {
    const CliResult get = RunCli({"--data", dir, "msg", "get", acked[i]});
    EXPECT_EQ(get.exit_code, 0) << get.err;
    EXPECT_THAT(get.out, HasSubstr(acked[i]));
  }
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"topic", "list"},
           {"topic", "describe", "crash"},
           {"msg", "peek", "crash", "--count", "5"},
           {"msg", "tail", "crash"},
           {"msg", "find", "crash", "--key", "nobody"},
           {"half", "list"},
           {"group", "list"},
           {"consume", "crash", "--group", "g", "--no-ack"},
           {"verify"}}) {
    std::vector<std::string> all = {"--data", dir};
    all.insert(all.end(), args.begin(), args.end());
    const CliResult r = RunCli(all);
    EXPECT_EQ(r.exit_code, 0) << args[0] << ": " << r.err;
    EXPECT_EQ(r.err, "");
  }

  // Following: new messages appear until interrupted.
  CliProcess tail(
      {"--data", dir, "msg", "tail", "crash", "-f", "--json", "--count", "0"},
      "", {});
  const size_t before = AckedIds(sidefile).size();
  ASSERT_TRUE(Eventually([&] {
    const std::string out = tail.OutSoFar();
    return std::count(out.begin(), out.end(), '\n') >= 5;
  }));
  tail.Signal(SIGINT);
  const CliResult followed = tail.Wait();
  EXPECT_EQ(followed.exit_code, 0) << followed.err;
  size_t lines = 0;
  for (absl::string_view line :
       absl::StrSplit(followed.out, '\n', absl::SkipEmpty())) {
    auto m = nlohmann::json::parse(line);
    EXPECT_EQ(m["topic"], "crash");
    ++lines;
  }
  EXPECT_GE(lines, 5u);

  // The writer kept going while the commands read.
  EXPECT_TRUE(Eventually([&] { return AckedIds(sidefile).size() > before; }));

  // Writes are refused, saying who owns the directory.
  const CliResult create = RunCli({"--data", dir, "topic", "create", "x"});
  ExpectError(create, "open by another process");
  EXPECT_THAT(create.err, HasSubstr(std::to_string(child.pid())));
  EXPECT_THAT(create.err, HasSubstr("'txmq stat'"));
}

}  // namespace
}  // namespace txmq::testing
