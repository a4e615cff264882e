// Golden tests of the txmq CLI: every command, human and --json output,
// against a data directory built here with a ManualClock (so that ids and
// times are the same on every run).
//
// Each case's expected output is tests/cli/golden/<case>.txt. To accept a
// change of output on purpose, rerun with TXMQ_UPDATE_GOLDEN=1 and review
// the diff:
//   TXMQ_UPDATE_GOLDEN=1 meson test -C build cli_golden_test

#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/cli_runner.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq::testing {
namespace {

// The fixture's clock starts here (ahead of any real clock the CLI's own
// writes use, so that nothing of the fixture expires or falls due when a
// write command opens the directory).
const absl::Time kStart = absl::FromUnixSeconds(4102542245);  // 2100-01-02
// "Now" for the CLI's ages: ten minutes after kStart.
const std::string kNow = std::to_string(absl::ToUnixMillis(kStart) + 600000);

struct Built {
  std::vector<std::string> txids;  // pending (0) and exhausted (1)
  std::string first_id;            // the first message of "orders"
};

class AlwaysUnknown : public TransactionChecker {
 public:
  TransactionState Check(const HalfMessage&) override {
    return TransactionState::kUnknown;
  }
};

// Topics "orders" (2 queues) and "audit" (1, kept forever), messages with
// keys, tags, properties and a binary body, a delayed message, group
// "billing" part way through "orders", a dead letter of group "mailer", a
// pending transaction and one in the exhausted hold.
Built Build(const std::string& dir) {
  Built built;
  auto clock = std::make_shared<ManualClock>(kStart);
  Options options;
  options.clock = clock;
  auto broker = Broker::Open(dir, options);
  EXPECT_TRUE(broker.ok()) << broker.status();
  Broker& b = **broker;
  EXPECT_TRUE(b.CreateTopic("orders", {.queues = 2}).ok());
  EXPECT_TRUE(b.CreateTopic("audit", {.queues = 1,
                                      .retention = absl::InfiniteDuration()})
                  .ok());
  auto producer = b.CreateProducer({.group = "orders-tx"});
  EXPECT_TRUE(producer.ok());
  std::vector<Message> messages = {
      {.topic = "orders",
       .key = "o-1",
       .tags = {"paid"},
       .properties = {{"channel", "web"}},
       .body = "order 1 paid"},
      {.topic = "orders",
       .key = "o-2",
       .tags = {"paid", "vip"},
       .body = "order 2 paid"},
      {.topic = "orders",
       .key = "o-1",
       .tags = {"refund"},
       .body = "order 1 refunded"},
      {.topic = "orders", .key = "o-3", .body = std::string("\0\1\xfe\xff", 4)},
      {.topic = "orders", .body = "line one\nline two"},
      {.topic = "audit", .key = "a-1", .body = "audit entry"},
  };
  for (const Message& m : messages) {
    auto r = (*producer)->Send(m);
    EXPECT_TRUE(r.ok()) << r.status();
    if (built.first_id.empty()) built.first_id = r->id.ToString();
    clock->Advance(absl::Seconds(1));
  }
  EXPECT_TRUE((*producer)
                  ->Send({.topic = "orders",
                          .key = "o-4",
                          .body = "later",
                          .deliver_at = clock->Now() + absl::Hours(1)})
                  .ok());
  // billing: everything stored before the third message is consumed.
  EXPECT_TRUE(b.ResetGroup("billing", "orders",
                           {.to = OffsetReset::To::kTime,
                            .time = kStart + absl::Seconds(2)})
                  .ok());
  // mailer: its one retry spent at once, so the message is a dead letter.
  {
    auto mailer = b.CreateConsumer("mailer", "audit",
                                   {.retry = {.max_reconsume_times = 0}});
    EXPECT_TRUE(mailer.ok());
    auto batch = (*mailer)->Receive(1, absl::Seconds(10));
    EXPECT_TRUE(batch.ok() && batch->size() == 1);
    EXPECT_TRUE((*mailer)->ReconsumeLater((*batch)[0]).ok());
    EXPECT_TRUE(Eventually([&] {
      auto letters = b.ListDeadLetters("mailer");
      return letters.ok() && letters->size() == 1;
    }));
    batch = ReceivedBatch();
    EXPECT_TRUE(Eventually([&] {
      auto lag = b.DescribeGroup("mailer", "audit");
      return lag.ok() && lag->total() == 0;
    }));
    EXPECT_TRUE((*mailer)->Flush().ok());
  }
  // Two transactions: one checked once (max_checks 1) into the hold.
  auto pending = (*producer)->Begin(
      {.topic = "orders", .key = "o-5", .body = "pending payment"},
      {.first_check = absl::Hours(1)});
  EXPECT_TRUE(pending.ok());
  built.txids.push_back((*pending)->id().ToString());
  auto stuck =
      (*producer)->Begin({.topic = "orders", .key = "o-6", .body = "stuck"},
                         {.first_check = absl::Seconds(1)});
  EXPECT_TRUE(stuck.ok());
  built.txids.push_back((*stuck)->id().ToString());
  CheckPolicy policy;
  policy.max_checks = 1;
  EXPECT_TRUE(
      b.RegisterChecker("orders-tx", std::make_shared<AlwaysUnknown>(), policy)
          .ok());
  clock->Advance(absl::Seconds(2));
  EXPECT_TRUE(
      Eventually([&] { return b.Stats().exhausted_transactions == 1; }));
  EXPECT_TRUE(b.UnregisterChecker("orders-tx").ok());
  return built;
}

// Replaces what legitimately differs between runs.
std::string Normalize(std::string text, const std::string& dir,
                      const Built& built) {
  text = absl::StrReplaceAll(text, {{dir, "DIR"},
                                    {built.txids[0], "<TXID-PENDING>"},
                                    {built.txids[1], "<TXID-EXHAUSTED>"}});
  // Ids (their first 12 hex digits are a time) and times from the real
  // clock: the CLI's own writes.
  std::string out;
  const std::regex id("\\b[0-9a-f]{32}\\b");
  auto last = text.cbegin();
  for (std::sregex_iterator it(text.begin(), text.end(), id), end; it != end;
       ++it) {
    const std::string hex = it->str();
    out.append(last, text.cbegin() + it->position());
    const int64_t ms = std::stoll(hex.substr(0, 12), nullptr, 16);
    out += ms < absl::ToUnixMillis(kStart) ? "<ID>" : hex;
    last = text.cbegin() + it->position() + it->length();
  }
  out.append(last, text.cend());
  text = std::move(out);
  text = std::regex_replace(
      text, std::regex("20(2[0-9])-[0-9]{2}-[0-9]{2}T[0-9:.]+Z"), "<TIME>");
  // Sizes of the data file and its map, which depend on the machine's
  // page cache and on LMDB's page reuse.
  text = std::regex_replace(text, std::regex("(file size +).*"), "$1<SIZE>");
  text = std::regex_replace(text, std::regex("(map +).*"), "$1<SIZE>");
  text = std::regex_replace(
      text, std::regex("(\"(file|map|used)_bytes\": )[0-9]+"), "$1<N>");
  return text;
}

struct Case {
  std::string name;
  std::vector<std::string> args;
  std::string input;
};

class CliGoldenTest : public ::testing::Test {
 protected:
  void Expect(const Case& c) {
    std::vector<std::string> args = {"--data", tmp_.path()};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const CliResult r = RunCli(args, c.input, {{"TXMQ_NOW", kNow}});
    std::string got = "$ txmq " + absl::StrJoin(c.args, " ") + "\n" + r.out;
    if (!r.err.empty()) got += "[stderr]\n" + r.err;
    if (r.exit_code != 0) got += "[exit " + std::to_string(r.exit_code) + "]\n";
    got = Normalize(got, tmp_.path(), built_);
    const char* golden_dir = getenv("TXMQ_GOLDEN_DIR");
    ASSERT_NE(golden_dir, nullptr) << "the build sets TXMQ_GOLDEN_DIR";
    const std::string path = std::string(golden_dir) + "/" + c.name + ".txt";
    if (getenv("TXMQ_UPDATE_GOLDEN") != nullptr) {
      std::ofstream(path, std::ios::binary) << got;
      return;
    }
    const std::string want = ReadFile(path);
    EXPECT_FALSE(want.empty()) << path << " is missing: run with "
                               << "TXMQ_UPDATE_GOLDEN=1 to write it";
    EXPECT_EQ(got, want) << "case " << c.name;
  }

  TempDir tmp_;
  Built built_;
};

TEST_F(CliGoldenTest, EveryCommand) {
  built_ = Build(tmp_.path());
  ASSERT_FALSE(HasFailure());
  const std::string& pending = built_.txids[0];
  const std::string& stuck = built_.txids[1];
  const std::vector<Case> cases = {
      // Read commands.
      {"stat", {"stat"}},
      {"stat-json", {"stat", "--json"}},
      {"topic-list", {"topic", "list"}},
      {"topic-list-all", {"topic", "list", "--all"}},
      {"topic-list-json", {"topic", "list", "--json"}},
      {"topic-describe", {"topic", "describe", "orders"}},
      {"topic-describe-json", {"topic", "describe", "orders", "--json"}},
      {"msg-get", {"msg", "get", built_.first_id}},
      {"msg-get-json", {"msg", "get", built_.first_id, "--json"}},
      {"msg-find", {"msg", "find", "orders", "--key", "o-1"}},
      {"msg-find-json", {"msg", "find", "orders", "--key", "o-1", "--json"}},
      {"msg-find-none", {"msg", "find", "orders", "--key", "nobody"}},
      {"msg-peek", {"msg", "peek", "orders"}},
      {"msg-peek-json", {"msg", "peek", "orders", "--count", "2", "--json"}},
      {"msg-peek-queue",
       {"msg", "peek", "orders", "--queue", "0", "--offset", "1", "--count",
        "2"}},
      {"msg-tail", {"msg", "tail", "orders", "--count", "2"}},
      {"msg-tail-json", {"msg", "tail", "audit", "--json"}},
      {"half-list", {"half", "list"}},
      {"half-list-json", {"half", "list", "--json"}},
      {"half-list-group", {"half", "list", "--group", "other-tx"}},
      {"half-exhausted", {"half", "exhausted"}},
      {"half-exhausted-json", {"half", "exhausted", "--json"}},
      {"group-list", {"group", "list"}},
      {"group-list-json", {"group", "list", "--json"}},
      {"consume-no-ack",
       {"consume", "orders", "--group", "billing", "--no-ack"}},
      {"consume-no-ack-new-latest",
       {"consume", "orders", "--group", "newcomer", "--no-ack", "--from",
        "latest", "--json"}},
      {"dlq-list", {"dlq", "list", "mailer"}},
      {"dlq-list-json", {"dlq", "list", "mailer", "--json"}},
      {"verify", {"verify"}},
      {"verify-json", {"verify", "--json"}},
      // Write commands, in an order that the outputs depend on.
      {"half-rollback", {"half", "rollback", pending}},
      {"half-rollback-again-json", {"half", "rollback", pending, "--json"}},
      {"half-commit-json", {"half", "commit", stuck, "--json"}},
      {"half-list-after", {"half", "list"}},
      {"group-reset",
       {"group", "reset", "billing", "orders", "--to", "earliest"}},
      {"group-reset-time-json",
       {"group", "reset", "billing", "orders", "--to", "2100-01-02T03:04:08Z",
        "--json"}},
      {"consume", {"consume", "orders", "--group", "billing", "--max", "2"}},
      {"consume-json",
       {"consume", "orders", "--group", "billing", "--max", "1", "--json"}},
      {"dlq-redrive", {"dlq", "redrive", "mailer"}},
      {"dlq-redrive-again-json", {"dlq", "redrive", "mailer", "--json"}},
      {"dlq-list-after", {"dlq", "list", "mailer"}},
      {"topic-create",
       {"topic", "create", "payments", "--queues", "3", "--retention", "7d"}},
      {"topic-create-json",
       {"topic", "create", "refunds", "--retention", "forever", "--json"}},
      {"send",
       {"send", "payments", "--key", "p-1", "--tag", "eur", "--prop",
        "amount=12.50", "paid in full"}},
      {"send-stdin-json", {"send", "payments", "-", "--json"}, "from stdin"},
      {"send-half",
       {"send", "payments", "--half", "--group", "pay-tx", "hold"}},
      {"topic-delete-refused", {"topic", "delete", "orders"}},
      {"topic-delete", {"topic", "delete", "refunds"}},
      {"topic-delete-force-json",
       {"topic", "delete", "orders", "--force", "--json"}},
      {"verify-after", {"verify"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Expect(c);
  }
}

}  // namespace
}  // namespace txmq::testing
