// txmq: inspect and operate a txmq data directory, live or at rest.
//
// Read commands go through txmq::Inspector (read-only LMDB transactions:
// they work while another process owns the directory and never hold up its
// writer). Write commands open the directory as a txmq::Broker, which only
// the owning process may do; while another process owns it they fail with
// a message saying so. Every command is a thin layer over those two
// library classes; the spellings, flags and JSON fields are in the README
// ("The txmq CLI") and scripts depend on them.

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/format.h"
#include "cli/parse.h"
#include "txmq/broker.h"
#include "txmq/inspector.h"
#include "txmq/rpc_server.h"

namespace txmq::cli {
namespace {

using Json = nlohmann::ordered_json;

// Keys, tags and properties may hold any bytes; JSON strings are UTF-8.
// Bytes that are not valid UTF-8 print as U+FFFD (bodies are exact: see
// PutBody).
std::string Dump(const Json& doc, int indent) {
  return doc.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// A failure: the one line printed on stderr, and the exit code.
struct CommandError {
  std::string message;
  int exit_code = 1;
};

// Turns a library error into a CommandError (or returns the value).
#define CLI_TRY(lhs, expr)                              \
  auto CLI_CONCAT(result_, __LINE__) = (expr);          \
  if (!CLI_CONCAT(result_, __LINE__).ok()) {            \
    throw Fail(CLI_CONCAT(result_, __LINE__).status()); \
  }                                                     \
  lhs = *std::move(CLI_CONCAT(result_, __LINE__))
#define CLI_CONCAT_INNER(a, b) a##b
#define CLI_CONCAT(a, b) CLI_CONCAT_INNER(a, b)

CommandError Fail(const absl::Status& status) {
  if (absl::IsCancelled(status)) return CommandError{"interrupted", 130};
  std::string text(status.message());
  if (absl::IsFailedPrecondition(status) &&
      text.find("open by another process") != std::string::npos) {
    text +=
        " (this command writes; commands that only read, such as 'txmq stat', "
        "work while it runs)";
  }
  return CommandError{std::move(text)};
}

void Check(const absl::Status& status) {
  if (!status.ok()) throw Fail(status);
}

// ---------------------------------------------------------------- signals

std::atomic<bool> interrupted{false};

void OnSignal(int) { interrupted.store(true); }

// While alive, SIGINT and SIGTERM set `interrupted` instead of ending the
// process: long commands then stop at their next step and let go of what
// they hold (a read snapshot pins the owner's pages; see Inspector).
class CancelOnSignal {
 public:
  CancelOnSignal() {
    old_int_ = ::signal(SIGINT, OnSignal);
    old_term_ = ::signal(SIGTERM, OnSignal);
  }
  ~CancelOnSignal() {
    ::signal(SIGINT, old_int_);
    ::signal(SIGTERM, old_term_);
  }
  CancelOnSignal(const CancelOnSignal&) = delete;
  CancelOnSignal& operator=(const CancelOnSignal&) = delete;

 private:
  sighandler_t old_int_;
  sighandler_t old_term_;
};

CommandError Interrupted() { return CommandError{"interrupted", 130}; }

// Everything printed so far reached stdout (or its pipe closed: EPIPE,
// with SIGPIPE ignored). Throws otherwise, so that nothing is acknowledged
// that was not shown.
void CheckStdout() {
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return;
  if (errno == EPIPE) throw CommandError{"", 141};  // a reader went away
  throw CommandError{
      absl::StrFormat("cannot write to stdout: %s", std::strerror(errno))};
}

// Everything the commands share.
struct Context {
  std::string data;
  bool json = false;

  // "Now" for ages and due times; TXMQ_NOW (Unix ms) pins it, for tests.
  absl::Time Now() const {
    if (const char* now = std::getenv("TXMQ_NOW"); now != nullptr) {
      int64_t ms = 0;
      if (absl::SimpleAtoi(now, &ms)) return absl::FromUnixMillis(ms);
    }
    return absl::Now();
  }

  void RequireData() const {
    if (data.empty()) {
      throw CommandError{
          "no data directory: pass --data DIR (or set TXMQ_DATA)", 2};
    }
  }

  std::unique_ptr<Inspector> Inspect() const {
    RequireData();
    CLI_TRY(std::unique_ptr<Inspector> inspector, Inspector::Open(data));
    return inspector;
  }

  // Opens the directory for writing. Only `topic create` may initialise a
  // new directory; the other write commands need an existing one (and
  // leave a directory that is not txmq's untouched).
  std::unique_ptr<Broker> Write(bool may_create = false) const {
    RequireData();
    std::error_code ec;
    const bool fresh = !std::filesystem::exists(data + "/data.mdb", ec);
    Options options;
    options.create_if_missing = may_create;
    if (!may_create || !fresh) {
      // The checks, with their errors; and room for every queue table the
      // directory has (its owner may allow more than the default).
      auto inspector = Inspect();
      CLI_TRY(std::vector<TopicInfo> topics, inspector->ListTopics(true));
      uint32_t queues = 0;
      for (const TopicInfo& t : topics) queues += t.queue_count;
      options.max_queues =
          std::clamp(queues + 64, options.max_queues, uint32_t{32768});
    }
    CLI_TRY(std::unique_ptr<Broker> broker, Broker::Open(data, options));
    return broker;
  }

  void PrintJson(const Json& doc) const {
    std::printf("%s\n", Dump(doc, 2).c_str());
  }
};

// ---------------------------------------------------------------- JSON

Json TimeJson(absl::Time t) {
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) return nullptr;
  return IsoTime(t);
}

Json RetentionJson(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return nullptr;
  return absl::ToInt64Milliseconds(d);
}

// A body: text when it is valid UTF-8, base64 otherwise.
void PutBody(Json& j, std::string_view body) {
  if (IsUtf8(body)) {
    j["body"] = std::string(body);
    j["body_encoding"] = "utf-8";
  } else {
    j["body"] = absl::Base64Escape(absl::string_view(body.data(), body.size()));
    j["body_encoding"] = "base64";
  }
}

Json PropertiesJson(
    const std::vector<std::pair<std::string, std::string>>& props) {
  Json j = Json::object();
  for (const auto& [k, v] : props) j[k] = v;
  return j;
}

Json MessageJson(const StoredMessage& m) {
  Json j;
  j["id"] = m.id.ToString();
  j["topic"] = m.topic;
  j["queue"] = m.queue;
  j["offset"] = m.offset;
  j["key"] = m.key;
  j["tags"] = m.tags;
  j["properties"] = PropertiesJson(m.properties);
  j["born_time"] = TimeJson(m.born_time);
  j["store_time"] = TimeJson(m.store_time);
  j["reconsume_times"] = m.reconsume_times;
  if (m.origin.has_value()) {
    j["origin"] = Json{{"topic", m.origin->topic},
                       {"id", m.origin->id.ToString()},
                       {"queue", m.origin->queue},
                       {"offset", m.origin->offset},
                       {"store_time", TimeJson(m.origin->store_time)}};
  }
  j["record_bytes"] = m.record_bytes;
  PutBody(j, m.body);
  return j;
}

// "1 message", "2 messages".
std::string Count(uint64_t n, std::string_view noun) {
  return absl::StrCat(n, " ", std::string(noun), n == 1 ? "" : "s");
}

// ---------------------------------------------------------------- messages

Table MessageTable() {
  Table t({"ID", "QUEUE", "OFFSET", "STORED", "KEY", "TAGS", "BODY"});
  t.RightAlign({1, 2});
  return t;
}

void AddMessageRow(Table& t, const StoredMessage& m) {
  t.Add({m.id.ToString(), absl::StrCat(m.queue), absl::StrCat(m.offset),
         IsoTime(m.store_time), BodyCell(m.key, 24),
         BodyCell(absl::StrJoin(m.tags, ","), 24), BodyCell(m.body)});
}

// Prints messages as a table, or {"messages": [...]}.
void PrintMessages(const Context& ctx, const std::vector<StoredMessage>& ms) {
  if (ctx.json) {
    Json list = Json::array();
    for (const auto& m : ms) list.push_back(MessageJson(m));
    ctx.PrintJson(Json{{"messages", list}});
    return;
  }
  Table t = MessageTable();
  for (const auto& m : ms) AddMessageRow(t, m);
  t.Print(stdout);
  if (ms.empty()) std::printf("(no messages)\n");
}

// Messages printed as they come, in the layout PrintMessages gives all of
// them at once: one table per part (human), or one {"messages": [...]}
// document written element by element (JSON).
class MessageStream {
 public:
  explicit MessageStream(const Context& ctx) : ctx_(ctx) {}

  void Write(const std::vector<StoredMessage>& ms) {
    for (const StoredMessage& m : ms) {
      if (ctx_.json) {
        // Indented as an element of the array, as dump(2) of the whole
        // document would.
        std::string element = "    ";
        for (char c : Dump(MessageJson(m), 2)) {
          element += c;
          if (c == '\n') element += "    ";
        }
        std::printf("%s%s", count_ == 0 ? "{\n  \"messages\": [\n" : ",\n",
                    element.c_str());
      }
      ++count_;
    }
    if (!ctx_.json && !ms.empty()) {
      Table t = MessageTable();
      for (const auto& m : ms) AddMessageRow(t, m);
      t.Print(stdout);
    }
  }

  void Finish() {
    if (ctx_.json) {
      std::printf(count_ == 0 ? "{\n  \"messages\": []\n}\n" : "\n  ]\n}\n");
    } else if (count_ == 0) {
      std::printf("(no messages)\n");
    }
  }

 private:
  const Context& ctx_;
  size_t count_ = 0;
};

void SortById(std::vector<StoredMessage>& ms) {
  std::sort(ms.begin(), ms.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
}

MessageId ParseMessageId(const std::string& text) {
  absl::StatusOr<MessageId> id = MessageId::Parse(text);
  if (!id.ok()) {
    throw CommandError{absl::StrFormat(
        "'%s' is not a message id (32 hex digits, as 'txmq send' and 'txmq "
        "msg peek' print them)",
        text)};
  }
  return *id;
}

TransactionId ParseTransactionId(const std::string& text) {
  absl::StatusOr<TransactionId> id = TransactionId::Parse(text);
  if (!id.ok()) {
    throw CommandError{absl::StrFormat(
        "'%s' is not a transaction id (32 hex digits, as 'txmq half list' "
        "prints them)",
        text)};
  }
  return *id;
}

template <typename T>
T Parsed(absl::StatusOr<T> value) {
  if (!value.ok()) throw CommandError{std::string(value.status().message()), 2};
  return *std::move(value);
}

// ---------------------------------------------------------------- stat

void Stat(const Context& ctx) {
  auto in = ctx.Inspect();
  CLI_TRY(DirectoryStats s, in->Stat());
  if (ctx.json) {
    ctx.PrintJson(Json{
        {"dir", ctx.data},
        {"format_version", s.format_version},
        {"owner_pid", s.owner_pid == 0 ? Json(nullptr) : Json(s.owner_pid)},
        {"file_bytes", s.file_bytes},
        {"map_bytes", s.map_bytes},
        {"used_bytes", s.used_bytes},
        {"topics", s.topics - s.broker_topics},
        {"broker_topics", s.broker_topics},
        {"messages", s.messages},
        {"pending_transactions", s.pending_transactions},
        {"exhausted_transactions", s.exhausted_transactions},
        {"delayed_messages", s.delayed_messages},
        {"groups", s.groups},
        {"total_lag", s.total_lag}});
    return;
  }
  Fields f;
  f.Add("directory", ctx.data);
  f.Add("format version", absl::StrCat(s.format_version));
  f.Add("owner", s.owner_pid == 0
                     ? "none (closed)"
                     : absl::StrFormat("pid %d (live)", s.owner_pid));
  f.Add("file size", HumanBytes(s.file_bytes));
  f.Add("map",
        absl::StrFormat(
            "%s used of %s (%.1f%%)", HumanBytes(s.used_bytes),
            HumanBytes(s.map_bytes),
            s.map_bytes == 0 ? 0.0 : 100.0 * s.used_bytes / s.map_bytes));
  f.Add("topics", absl::StrFormat("%d (and %d broker topics)",
                                  s.topics - s.broker_topics, s.broker_topics));
  f.Add("messages", absl::StrCat(s.messages));
  f.Add("pending half", absl::StrCat(s.pending_transactions));
  f.Add("exhausted holds", absl::StrCat(s.exhausted_transactions));
  f.Add("delayed", absl::StrCat(s.delayed_messages));
  f.Add("groups", absl::StrCat(s.groups));
  f.Add("total lag", absl::StrCat(s.total_lag));
  f.Print(stdout);
}

// ---------------------------------------------------------------- topics

void TopicList(const Context& ctx, bool all) {
  auto in = ctx.Inspect();
  CLI_TRY(std::vector<TopicInfo> topics, in->ListTopics(all));
  if (ctx.json) {
    Json list = Json::array();
    for (const auto& t : topics) {
      list.push_back(Json{{"name", t.name},
                          {"queues", t.queue_count},
                          {"messages", t.message_count()},
                          {"retention_ms", RetentionJson(t.retention)},
                          {"created", TimeJson(t.create_time)}});
    }
    ctx.PrintJson(Json{{"topics", list}});
    return;
  }
  Table table({"NAME", "QUEUES", "MESSAGES", "RETENTION", "CREATED"});
  table.RightAlign({1, 2});
  for (const auto& t : topics) {
    table.Add({t.name, absl::StrCat(t.queue_count),
               absl::StrCat(t.message_count()), DurationText(t.retention),
               IsoTime(t.create_time)});
  }
  table.Print(stdout);
  if (topics.empty()) std::printf("(no topics)\n");
}

void TopicCreate(const Context& ctx, const std::string& name, uint32_t queues,
                 const std::string& retention) {
  TopicOptions options{.queues = queues};
  if (!retention.empty()) options.retention = Parsed(ParseRetention(retention));
  auto broker = ctx.Write(/*may_create=*/true);
  Check(broker->CreateTopic(name, options));
  if (ctx.json) {
    ctx.PrintJson(Json{{"created", name},
                       {"queues", queues},
                       {"retention_ms", RetentionJson(options.retention)}});
    return;
  }
  std::printf("created topic %s: %u queues, retention %s\n", name.c_str(),
              queues, DurationText(options.retention).c_str());
}

void TopicDescribe(const Context& ctx, const std::string& name) {
  auto in = ctx.Inspect();
  CLI_TRY(TopicUsage usage, in->DescribeTopic(name));
  const TopicInfo& t = usage.info;
  uint64_t bytes = 0;
  for (uint64_t b : usage.queue_bytes) bytes += b;
  if (ctx.json) {
    Json queues = Json::array();
    for (size_t i = 0; i < t.queues.size(); ++i) {
      const QueueInfo& q = t.queues[i];
      const bool empty = q.end_offset == q.first_offset;
      queues.push_back(
          Json{{"queue", q.queue},
               {"first_offset", empty ? Json(nullptr) : Json(q.first_offset)},
               {"last_offset", empty ? Json(nullptr) : Json(q.end_offset - 1)},
               {"end_offset", q.end_offset},
               {"messages", q.end_offset - q.first_offset},
               {"bytes", usage.queue_bytes[i]}});
    }
    ctx.PrintJson(Json{{"name", t.name},
                       {"queues", t.queue_count},
                       {"retention_ms", RetentionJson(t.retention)},
                       {"created", TimeJson(t.create_time)},
                       {"messages", t.message_count()},
                       {"bytes", bytes},
                       {"queue_details", queues}});
    return;
  }
  Fields f;
  f.Add("topic", t.name);
  f.Add("queues", absl::StrCat(t.queue_count));
  f.Add("retention", DurationText(t.retention));
  f.Add("created", IsoTime(t.create_time));
  f.Add("messages",
        absl::StrFormat("%d (%s)", t.message_count(), HumanBytes(bytes)));
  f.Print(stdout);
  std::printf("\n");
  Table table({"QUEUE", "FIRST", "LAST", "MESSAGES", "BYTES"});
  table.RightAlign({0, 1, 2, 3, 4});
  for (size_t i = 0; i < t.queues.size(); ++i) {
    const QueueInfo& q = t.queues[i];
    const bool empty = q.end_offset == q.first_offset;
    table.Add({absl::StrCat(q.queue),
               empty ? "-" : absl::StrCat(q.first_offset),
               empty ? "-" : absl::StrCat(q.end_offset - 1),
               absl::StrCat(q.end_offset - q.first_offset),
               HumanBytes(usage.queue_bytes[i])});
  }
  table.Print(stdout);
}

void TopicDelete(const Context& ctx, const std::string& name, bool force) {
  auto broker = ctx.Write();
  CLI_TRY(TopicInfo info, broker->DescribeTopic(name));
  if (!force) {
    CLI_TRY(std::vector<GroupLag> groups, broker->ListGroups());
    std::vector<std::string> lagging;
    for (const GroupLag& g : groups) {
      if (g.topic == info.name && g.total() > 0) {
        lagging.push_back(absl::StrFormat("%s (lag %d)", g.group, g.total()));
      }
    }
    if (!lagging.empty()) {
      throw CommandError{absl::StrFormat(
          "topic %s still has messages its groups have not consumed: %s; "
          "pass --force to delete it anyway",
          name, absl::StrJoin(lagging, ", "))};
    }
  }
  Check(broker->DeleteTopic(name));
  if (ctx.json) {
    ctx.PrintJson(Json{{"deleted", name}, {"messages", info.message_count()}});
    return;
  }
  std::printf("deleted topic %s (%s)\n", name.c_str(),
              Count(info.message_count(), "message").c_str());
}

// ---------------------------------------------------------------- send

struct SendArgs {
  std::string topic;
  std::string key;
  std::vector<std::string> tags;
  std::vector<std::string> props;
  std::string delay;
  bool half = false;
  std::string group;
  std::optional<std::string> body;
};

void Send(const Context& ctx, const SendArgs& a) {
  Message m{.topic = a.topic, .key = a.key, .tags = a.tags};
  for (const std::string& p : a.props) {
    m.properties.push_back(Parsed(ParseProperty(p)));
  }
  if (a.body.has_value() && *a.body == "-") {
    m.body.assign(std::istreambuf_iterator<char>(std::cin),
                  std::istreambuf_iterator<char>());
  } else if (a.body.has_value()) {
    m.body = *a.body;
  }
  if (!a.delay.empty())
    m.deliver_at = absl::Now() + Parsed(ParseDuration(a.delay));
  if (a.half && a.group.empty()) {
    throw CommandError{
        "--half needs --group G: the producer group whose checker resolves "
        "the transaction",
        2};
  }
  if (!a.half && !a.group.empty()) {
    throw CommandError{"--group is for --half (transactional) sends only", 2};
  }
  if (a.half && !a.delay.empty()) {
    throw CommandError{
        "--delay and --half do not combine here: commit the transaction, "
        "then send the delayed message",
        2};
  }
  auto broker = ctx.Write();
  CLI_TRY(std::unique_ptr<Producer> producer,
          broker->CreateProducer({.group = a.group}));
  if (a.half) {
    CLI_TRY(std::unique_ptr<Transaction> txn, producer->Begin(m));
    if (ctx.json) {
      ctx.PrintJson(Json{{"transaction_id", txn->id().ToString()},
                         {"group", a.group},
                         {"topic", a.topic}});
    } else {
      std::printf("%s\n", txn->id().ToString().c_str());
    }
    return;
  }
  CLI_TRY(SendResult r, producer->Send(m));
  if (ctx.json) {
    Json j{{"id", r.delayed() ? Json(nullptr) : Json(r.id.ToString())},
           {"topic", a.topic},
           {"queue", r.queue},
           {"offset", r.delayed() ? Json(nullptr) : Json(r.offset)},
           {"delayed", r.delayed()},
           {"deliver_at", TimeJson(r.deliver_at)}};
    ctx.PrintJson(j);
  } else if (r.delayed()) {
    std::printf("delayed until %s (queue %u; its id is assigned then)\n",
                IsoTime(r.deliver_at).c_str(), r.queue);
  } else {
    std::printf("%s\n", r.id.ToString().c_str());
  }
}

// ---------------------------------------------------------------- msg

void MsgGet(const Context& ctx, const std::string& text) {
  const MessageId id = ParseMessageId(text);
  auto in = ctx.Inspect();
  CLI_TRY(StoredMessage m, in->GetMessage(id));
  if (ctx.json) {
    ctx.PrintJson(MessageJson(m));
    return;
  }
  Fields f;
  f.Add("id", m.id.ToString());
  f.Add("topic", m.topic);
  f.Add("queue", absl::StrCat(m.queue));
  f.Add("offset", absl::StrCat(m.offset));
  f.Add("key", BodyCell(m.key, 1024));
  f.Add("tags", BodyCell(absl::StrJoin(m.tags, ","), 1024));
  for (const auto& [k, v] : m.properties) {
    f.Add("property", BodyCell(k, 256) + "=" + BodyCell(v, 1024));
  }
  f.Add("born", IsoTime(m.born_time));
  f.Add("stored", IsoTime(m.store_time));
  if (m.origin.has_value()) {
    f.Add("reconsumed", absl::StrCat(m.reconsume_times));
    f.Add("origin", absl::StrFormat("%s queue %d offset %d (id %s, stored %s)",
                                    m.origin->topic, m.origin->queue,
                                    m.origin->offset, m.origin->id.ToString(),
                                    IsoTime(m.origin->store_time)));
  }
  f.Add("size", absl::StrFormat("%s (body %s)", HumanBytes(m.record_bytes),
                                HumanBytes(m.body.size())));
  f.Print(stdout);
  std::printf("\n%s\n", BodyText(m.body).c_str());
}

void MsgFind(const Context& ctx, const std::string& topic,
             const std::string& key, size_t limit) {
  auto in = ctx.Inspect();
  CancelOnSignal cancel;
  Progress progress("find");
  CLI_TRY(std::vector<StoredMessage> found,
          in->FindByKey(topic, key, limit, [&](uint64_t done, uint64_t total) {
            progress.Update(done, total);
            return !interrupted.load();
          }));
  progress.Done();
  PrintMessages(ctx, found);
}

// Up to `count` messages from each queue (or queue `queue`), from `offset`
// (or each queue's first), the oldest `count` of them by store time.
void MsgPeek(const Context& ctx, const std::string& topic,
             std::optional<uint32_t> queue, std::optional<uint64_t> offset,
             size_t count) {
  auto in = ctx.Inspect();
  CLI_TRY(TopicUsage usage, in->DescribeTopic(topic));
  std::vector<StoredMessage> out;
  Progress progress("peek");
  const uint32_t queues = usage.info.queue_count;
  for (uint32_t q = 0; q < queues; ++q) {
    if (queue.has_value() && *queue != q) continue;
    CLI_TRY(std::vector<StoredMessage> part,
            in->Read(topic, q, offset.value_or(0), count));
    std::move(part.begin(), part.end(), std::back_inserter(out));
    progress.Update(q + 1, queues);
  }
  if (queue.has_value() && *queue >= queues) {
    throw CommandError{
        absl::StrFormat("topic %s has queues 0 to %d; there is no queue %d",
                        topic, queues - 1, *queue)};
  }
  progress.Done();
  SortById(out);
  if (out.size() > count) out.resize(count);
  PrintMessages(ctx, out);
}

// The last `count` messages, then (follow) every new one until SIGINT or
// SIGTERM. Following prints one JSON document per line with --json.
void MsgTail(const Context& ctx, const std::string& topic, size_t count,
             bool follow) {
  auto in = ctx.Inspect();
  CLI_TRY(TopicUsage usage, in->DescribeTopic(topic));
  std::vector<uint64_t> seen;
  std::vector<StoredMessage> last;
  for (const QueueInfo& q : usage.info.queues) {
    const uint64_t from =
        q.end_offset - std::min<uint64_t>(count, q.end_offset - q.first_offset);
    CLI_TRY(std::vector<StoredMessage> part,
            in->Read(topic, q.queue, from, count));
    std::move(part.begin(), part.end(), std::back_inserter(last));
    seen.push_back(q.end_offset);
  }
  SortById(last);
  if (last.size() > count) last.erase(last.begin(), last.end() - count);
  if (!follow) {
    PrintMessages(ctx, last);
    return;
  }
  CancelOnSignal cancel;
  // The topic followed: a deletion (and a new topic of the same name) ends
  // the command rather than mixing two topics' offsets.
  const absl::Time created = usage.info.create_time;
  auto print = [&](const std::vector<StoredMessage>& ms) {
    if (ctx.json) {
      for (const auto& m : ms) {
        std::printf("%s\n", Dump(MessageJson(m), -1).c_str());
      }
    } else {
      Table t = MessageTable();
      for (const auto& m : ms) AddMessageRow(t, m);
      t.Print(stdout);
    }
    CheckStdout();
  };
  print(last);
  constexpr size_t kChunk = 1000;
  while (!interrupted.load()) {
    absl::StatusOr<TopicUsage> now = in->DescribeTopic(topic);
    if (absl::IsNotFound(now.status()) ||
        (now.ok() && (now->info.create_time != created ||
                      now->info.queue_count != seen.size()))) {
      throw CommandError{
          absl::StrFormat("topic %s was deleted while following it", topic)};
    }
    if (!now.ok()) throw Fail(now.status());
    std::vector<StoredMessage> fresh;
    for (const QueueInfo& q : now->info.queues) {
      while (seen[q.queue] < q.end_offset && fresh.size() < 16 * kChunk) {
        CLI_TRY(std::vector<StoredMessage> part,
                in->Read(topic, q.queue, seen[q.queue], kChunk));
        if (part.empty()) break;
        seen[q.queue] = part.back().offset + 1;
        std::move(part.begin(), part.end(), std::back_inserter(fresh));
      }
    }
    if (fresh.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    SortById(fresh);
    print(fresh);
  }
}

// ---------------------------------------------------------------- half

void HalfList(const Context& ctx, const std::string& group,
              bool exhausted_only) {
  auto in = ctx.Inspect();
  CLI_TRY(std::vector<HalfMessageInfo> halves,
          in->ListTransactions(group, SIZE_MAX, exhausted_only));
  const absl::Time now = ctx.Now();
  if (ctx.json) {
    Json list = Json::array();
    for (const auto& h : halves) {
      list.push_back(
          Json{{"id", h.id.ToString()},
               {"group", h.group},
               {"topic", h.topic},
               {"key", h.key},
               {"queue", h.queue},
               {"begin_time", TimeJson(h.begin_time)},
               {"age_ms", absl::ToInt64Milliseconds(now - h.begin_time)},
               {"checks", h.checks},
               {"next_check", TimeJson(h.next_check)},
               {"exhausted", h.exhausted},
               {"body_bytes", h.body_bytes}});
    }
    ctx.PrintJson(Json{{"transactions", list}});
    return;
  }
  Table t({"ID", "GROUP", "TOPIC", "KEY", "AGE", "CHECKS", "NEXT CHECK"});
  t.RightAlign({4, 5});
  for (const auto& h : halves) {
    t.Add({h.id.ToString(), h.group, h.topic, BodyCell(h.key, 24),
           Age(now - h.begin_time), absl::StrCat(h.checks),
           h.exhausted ? "exhausted"
                       : absl::StrFormat("%s (%s)", IsoTime(h.next_check),
                                         Age(now - h.next_check))});
  }
  t.Print(stdout);
  if (halves.empty()) {
    std::printf(exhausted_only ? "(no transactions in the exhausted hold)\n"
                               : "(no pending transactions)\n");
  }
}

void HalfResolve(const Context& ctx, const std::string& text, bool commit) {
  const TransactionId id = ParseTransactionId(text);
  auto broker = ctx.Write();
  if (commit) {
    CLI_TRY(SendResult r, broker->CommitTransaction(id));
    if (ctx.json) {
      ctx.PrintJson(
          Json{{"transaction_id", id.ToString()},
               {"outcome", "committed"},
               {"id", r.delayed() ? Json(nullptr) : Json(r.id.ToString())},
               {"queue", r.queue},
               {"offset", r.delayed() ? Json(nullptr) : Json(r.offset)}});
    } else if (r.delayed()) {
      std::printf("committed %s: delayed until %s\n", id.ToString().c_str(),
                  IsoTime(r.deliver_at).c_str());
    } else {
      std::printf("committed %s: message %s (queue %u, offset %llu)\n",
                  id.ToString().c_str(), r.id.ToString().c_str(), r.queue,
                  static_cast<unsigned long long>(r.offset));
    }
    return;
  }
  Check(broker->RollbackTransaction(id));
  if (ctx.json) {
    ctx.PrintJson(
        Json{{"transaction_id", id.ToString()}, {"outcome", "rolled back"}});
  } else {
    std::printf("rolled back %s\n", id.ToString().c_str());
  }
}

// ---------------------------------------------------------------- groups

void PrintLags(const Context& ctx, const std::vector<GroupLag>& groups) {
  if (ctx.json) {
    Json list = Json::array();
    for (const GroupLag& g : groups) {
      Json queues = Json::array();
      for (const GroupQueueLag& q : g.queues) {
        queues.push_back(Json{{"queue", q.queue},
                              {"committed", q.committed},
                              {"end", q.end},
                              {"lag", q.lag}});
      }
      list.push_back(Json{{"group", g.group},
                          {"topic", g.topic},
                          {"lag", g.total()},
                          {"queues", queues}});
    }
    ctx.PrintJson(Json{{"groups", list}});
    return;
  }
  Table t({"GROUP", "TOPIC", "QUEUE", "COMMITTED", "END", "LAG"});
  t.RightAlign({2, 3, 4, 5});
  for (const GroupLag& g : groups) {
    for (const GroupQueueLag& q : g.queues) {
      t.Add({g.group, g.topic, absl::StrCat(q.queue), absl::StrCat(q.committed),
             absl::StrCat(q.end), absl::StrCat(q.lag)});
    }
  }
  t.Print(stdout);
  if (groups.empty()) std::printf("(no consumer groups)\n");
}

void GroupList(const Context& ctx) {
  auto in = ctx.Inspect();
  CLI_TRY(std::vector<GroupLag> groups, in->ListGroups());
  PrintLags(ctx, groups);
}

void GroupReset(const Context& ctx, const std::string& group,
                const std::string& topic, const std::string& to) {
  OffsetReset reset;
  if (to == "earliest") {
    reset.to = OffsetReset::To::kEarliest;
  } else if (to == "latest") {
    reset.to = OffsetReset::To::kLatest;
  } else {
    reset.to = OffsetReset::To::kTime;
    reset.time = Parsed(ParseTimestamp(to));
  }
  auto broker = ctx.Write();
  Check(broker->ResetGroup(group, topic, reset));
  CLI_TRY(GroupLag lag, broker->DescribeGroup(group, topic));
  PrintLags(ctx, {lag});
}

// ---------------------------------------------------------------- consume

void Consume(const Context& ctx, const std::string& topic,
             const std::string& group, size_t max, bool no_ack,
             const std::string& from, const std::string& wait_text) {
  if (from != "earliest" && from != "latest") {
    throw CommandError{
        absl::StrFormat("--from must be earliest or latest, not '%s'", from),
        2};
  }
  const absl::Duration wait = wait_text.empty()
                                  ? absl::ZeroDuration()
                                  : Parsed(ParseDuration(wait_text));
  if (no_ack) {
    // A look at what the group gets next, writing nothing: from its
    // committed offsets (a new group: from --from).
    auto in = ctx.Inspect();
    CLI_TRY(TopicUsage usage, in->DescribeTopic(topic));
    CLI_TRY(std::vector<GroupLag> groups, in->ListGroups());
    std::vector<uint64_t> start;
    for (const QueueInfo& q : usage.info.queues) {
      start.push_back(from == "latest" ? q.end_offset : q.first_offset);
    }
    for (const GroupLag& g : groups) {
      if (g.group != group || g.topic != topic) continue;
      for (const GroupQueueLag& q : g.queues) start[q.queue] = q.committed;
    }
    std::vector<StoredMessage> out;
    for (const QueueInfo& q : usage.info.queues) {
      CLI_TRY(std::vector<StoredMessage> part,
              in->Read(topic, q.queue, start[q.queue], max));
      std::move(part.begin(), part.end(), std::back_inserter(out));
    }
    SortById(out);
    if (out.size() > max) out.resize(max);
    PrintMessages(ctx, out);
    return;
  }
  auto broker = ctx.Write();
  ConsumerOptions options;
  options.start_from =
      from == "latest" ? StartFrom::kLatest : StartFrom::kEarliest;
  CLI_TRY(std::unique_ptr<Consumer> consumer,
          broker->CreateConsumer(group, topic, options));
  // Each batch is printed, and reaches stdout, before it is acknowledged:
  // a message that could not be shown is delivered again.
  MessageStream stream(ctx);
  size_t received = 0;
  while (received < max) {
    CLI_TRY(ReceivedBatch batch,
            consumer->Receive(std::min<size_t>(max - received, 256),
                              received == 0 ? wait : absl::ZeroDuration()));
    if (batch.empty()) break;
    std::vector<StoredMessage> out;
    for (const MessageView& v : batch) {
      StoredMessage m{.id = v.id(),
                      .topic = std::string(v.topic()),
                      .queue = v.queue(),
                      .offset = v.offset(),
                      .key = std::string(v.key()),
                      .body = std::string(v.body()),
                      .born_time = v.born_time(),
                      .store_time = v.store_time(),
                      .reconsume_times = v.reconsume_times(),
                      .record_bytes = v.record().size()};
      for (std::string_view tag : v.tags()) m.tags.emplace_back(tag);
      for (const auto& [k, val] : v.properties()) {
        m.properties.emplace_back(std::string(k), std::string(val));
      }
      out.push_back(std::move(m));
    }
    received += out.size();
    stream.Write(out);
    CheckStdout();
    Check(consumer->Ack(batch));
  }
  Check(consumer->Flush());
  stream.Finish();
}

// ---------------------------------------------------------------- dlq

void DlqList(const Context& ctx, const std::string& group, size_t limit) {
  auto in = ctx.Inspect();
  CLI_TRY(std::vector<DeadLetter> letters, in->ListDeadLetters(group, limit));
  if (ctx.json) {
    Json list = Json::array();
    for (const DeadLetter& d : letters) {
      Json j{{"id", d.id.ToString()},
             {"topic", d.topic},
             {"queue", d.queue},
             {"offset", d.offset},
             {"key", d.key},
             {"tags", d.tags},
             {"properties", PropertiesJson(d.properties)},
             {"born_time", TimeJson(d.born_time)},
             {"store_time", TimeJson(d.store_time)},
             {"dead_time", TimeJson(d.dead_time)},
             {"reconsume_times", d.reconsume_times},
             {"dead_letter_offset", d.dead_letter_offset}};
      PutBody(j, d.body);
      list.push_back(std::move(j));
    }
    ctx.PrintJson(Json{{"group", group}, {"dead_letters", list}});
    return;
  }
  Table t({"ID", "TOPIC", "QUEUE", "OFFSET", "DIED", "RETRIES", "KEY", "BODY"});
  t.RightAlign({2, 3, 5});
  for (const DeadLetter& d : letters) {
    t.Add({d.id.ToString(), d.topic, absl::StrCat(d.queue),
           absl::StrCat(d.offset), IsoTime(d.dead_time),
           absl::StrCat(d.reconsume_times), BodyCell(d.key, 24),
           BodyCell(d.body)});
  }
  t.Print(stdout);
  if (letters.empty()) std::printf("(no dead letters)\n");
}

void DlqRedrive(const Context& ctx, const std::string& group, size_t max) {
  uint64_t total = 0;
  {
    auto in = ctx.Inspect();
    CLI_TRY(total, in->CountDeadLetters(group));
  }
  total = std::min<uint64_t>(total, max);
  auto broker = ctx.Write();
  RedriveResult sum;
  CancelOnSignal cancel;
  absl::Status failed;
  {
    Progress progress("redrive");
    constexpr size_t kChunk = 1000;
    while (sum.redriven + sum.dropped < max && !interrupted.load()) {
      const size_t n =
          std::min<size_t>(kChunk, max - sum.redriven - sum.dropped);
      absl::StatusOr<RedriveResult> r = broker->RedriveDeadLetters(group, n);
      if (!r.ok()) {
        failed = r.status();
        break;
      }
      sum.redriven += r->redriven;
      sum.dropped += r->dropped;
      progress.Update(sum.redriven + sum.dropped, total);
      if (r->redriven + r->dropped < n) break;
    }
  }
  // Each step commits: what was done is reported even when a later step
  // failed or was interrupted.
  if (!failed.ok() && sum.redriven + sum.dropped == 0) throw Fail(failed);
  if (ctx.json) {
    ctx.PrintJson(Json{{"group", group},
                       {"redriven", sum.redriven},
                       {"dropped", sum.dropped}});
  } else {
    std::printf("gave %s back to group %s",
                Count(sum.redriven, "dead letter").c_str(), group.c_str());
    if (sum.dropped > 0) {
      std::printf("; dropped %s whose topic was deleted",
                  Count(sum.dropped, "dead letter").c_str());
    }
    std::printf("\n");
  }
  if (!failed.ok()) {
    CheckStdout();
    throw CommandError{
        absl::StrFormat("stopped after those: %s", Fail(failed).message)};
  }
  if (interrupted.load()) {
    CheckStdout();
    throw Interrupted();
  }
}

// ---------------------------------------------------------------- verify

int Verify(const Context& ctx) {
  ctx.RequireData();
  VerifyReport report;
  absl::StatusOr<std::unique_ptr<Inspector>> in = Inspector::Open(ctx.data);
  if (absl::IsDataLoss(in.status())) {
    // Damaged pages (or not LMDB at all): list what the page check finds,
    // without reading a table.
    absl::StatusOr<VerifyReport> pages = Inspector::VerifyPages(ctx.data);
    if (!pages.ok() || pages->ok()) throw Fail(in.status());
    report = *std::move(pages);
  } else {
    if (!in.ok()) throw Fail(in.status());
    CancelOnSignal cancel;
    Progress progress("verify");
    CLI_TRY(report, (*in)->Verify([&](uint64_t done, uint64_t total) {
      progress.Update(done, total);
      return !interrupted.load();
    }));
    progress.Done();
  }
  if (ctx.json) {
    ctx.PrintJson(Json{{"ok", report.ok()},
                       {"tables", report.tables},
                       {"records", report.records},
                       {"problems", report.problems}});
  } else if (report.ok()) {
    std::printf("ok: %llu tables, %llu records checked\n",
                static_cast<unsigned long long>(report.tables),
                static_cast<unsigned long long>(report.records));
  } else {
    for (const std::string& p : report.problems) std::printf("%s\n", p.c_str());
    std::printf("%zu problems in %llu tables, %llu records checked\n",
                report.problems.size(),
                static_cast<unsigned long long>(report.tables),
                static_cast<unsigned long long>(report.records));
  }
  if (!report.ok()) {
    std::fprintf(stderr,
                 "txmq: error: %s has problems; restore it from a backup, or "
                 "ask for help with the list above\n",
                 ctx.data.c_str());
    return 3;
  }
  return 0;
}

// ---------------------------------------------------------------- serve

// The token in `path`: its first line, which must not be empty.
std::string ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw CommandError{
        absl::StrFormat("cannot read the token file '%s'", path)};
  }
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  if (token.empty()) {
    throw CommandError{absl::StrFormat(
        "the token file '%s' is empty; put a long random secret in its first "
        "line (for example: head -c 32 /dev/urandom | base64)",
        path)};
  }
  return token;
}

// Opens the directory, serves it until SIGINT or SIGTERM, then stops
// gracefully.
void Serve(const Context& ctx, const std::string& listen,
           const std::string& token_file, bool insecure_no_token) {
  ServeOptions serve{.listen = listen, .insecure_no_token = insecure_no_token};
  if (!token_file.empty()) serve.token = ReadToken(token_file);
  CancelOnSignal cancel;
  auto broker = ctx.Write(/*may_create=*/true);
  CLI_TRY(std::unique_ptr<RpcServer> server, RpcServer::Start(*broker, serve));
  if (ctx.json) {
    std::printf(
        "%s\n",
        Dump(Json{{"serving", ctx.data}, {"address", server->address()}}, -1)
            .c_str());
  } else {
    std::printf("serving %s on %s (Ctrl-C stops)\n", ctx.data.c_str(),
                server->address().c_str());
  }
  CheckStdout();
  while (!interrupted.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  server->Stop();
  server.reset();
  broker.reset();
  if (!ctx.json) std::printf("stopped\n");
}

// ---------------------------------------------------------------- main

int Main(int argc, char** argv) {
  // A closed pipe is an error CheckStdout reports, not a silent death
  // between printing a batch and acknowledging it.
  ::signal(SIGPIPE, SIG_IGN);
  Context ctx;
  CLI::App app(
      "Inspect and operate a txmq data directory, live (while the process "
      "that embeds the broker runs: read commands) or at rest (every "
      "command).",
      "txmq");
  app.set_version_flag("--version", "txmq 0.1.0");
  app.require_subcommand(1, 1);
  app.fallthrough();
  app.add_option("--data", ctx.data, "the data directory (or set TXMQ_DATA)")
      ->envname("TXMQ_DATA");
  app.add_flag("--json", ctx.json,
               "print exactly one JSON document on stdout (field names in the "
               "README)");
  app.footer(
      "Durations: 500ms, 30s, 1h30m, 72h, 7d. Timestamps: ISO-8601 in UTC "
      "(2026-11-26T09:30:00Z) or Unix milliseconds.\nExit status: 0 ok, 1 "
      "error, 2 bad usage, 3 verify found problems.\nRun 'txmq COMMAND "
      "--help' for a command's flags.");

  std::function<int()> run;
  auto set = [&](std::function<void()> fn) {
    return [&run, fn] {
      run = [fn] {
        fn();
        return 0;
      };
    };
  };

  // stat
  app.add_subcommand("stat",
                     "format version, file size and map use, topics, stored "
                     "messages, pending half messages, exhausted holds, "
                     "groups and total lag")
      ->callback(set([&] { Stat(ctx); }));

  // topic
  CLI::App* topic = app.add_subcommand("topic",
                                       "list, create, describe or "
                                       "delete topics");
  topic->require_subcommand(1, 1);
  bool all_topics = false;
  topic->add_subcommand("list", "the topics, with queues, messages, retention")
      ->callback(set([&] { TopicList(ctx, all_topics); }))
      ->add_flag("--all", all_topics,
                 "include the broker's own topics (%RETRY%..., %DLQ%...)");
  std::string name, retention;
  uint32_t queues = 4;
  bool force = false;
  CLI::App* create = topic->add_subcommand(
      "create",
      "create a topic (the first write command initialises an "
      "empty directory)");
  create->add_option("NAME", name, "1-127 characters of [A-Za-z0-9_.-]")
      ->required();
  create
      ->add_option("--queues", queues,
                   "queues: the unit of order and "
                   "parallelism")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  create->add_option("--retention", retention,
                     "how long messages are kept: a duration or forever "
                     "(default 72h)");
  create->callback(set([&] { TopicCreate(ctx, name, queues, retention); }));
  CLI::App* describe = topic->add_subcommand(
      "describe", "per queue: first and last offset, message count, bytes");
  describe->add_option("NAME", name, "the topic")->required();
  describe->callback(set([&] { TopicDescribe(ctx, name); }));
  CLI::App* del = topic->add_subcommand(
      "delete",
      "delete a topic and its messages; refuses while a group "
      "still has lag on it");
  del->add_option("NAME", name, "the topic")->required();
  del->add_flag("--force", force,
                "delete even if groups have not consumed "
                "everything");
  del->callback(set([&] { TopicDelete(ctx, name, force); }));

  // send
  SendArgs send_args;
  std::string body;
  CLI::App* send = app.add_subcommand(
      "send",
      "send a message; prints its id (with --half: the transaction "
      "id)");
  send->add_option("TOPIC", send_args.topic, "the topic")->required();
  send->add_option("BODY", body,
                   "the body; - reads it from stdin (default: "
                   "empty)");
  send->add_option("--key", send_args.key, "the message key");
  send->add_option("--tag", send_args.tags, "a tag (repeat for more)")
      ->allow_extra_args(false);
  send->add_option("--prop", send_args.props,
                   "a property name=value (repeat for more)")
      ->allow_extra_args(false);
  send->add_option("--delay", send_args.delay,
                   "deliver after this duration (up to 366d)");
  send->add_flag("--half", send_args.half,
                 "store a half message (transactional): invisible until "
                 "'txmq half commit' or the group's checker commits it");
  send->add_option("--group", send_args.group,
                   "the producer group of a --half message");
  send->callback(set([&] {
    if (!send->get_option("BODY")->empty()) send_args.body = body;
    Send(ctx, send_args);
  }));

  // msg
  CLI::App* msg = app.add_subcommand("msg",
                                     "read messages: get, find, peek, "
                                     "tail");
  msg->require_subcommand(1, 1);
  std::string id_text, key;
  size_t count = 10;
  size_t limit = 100;
  std::optional<uint32_t> queue;
  std::optional<uint64_t> offset;
  bool follow = false;
  CLI::App* get = msg->add_subcommand("get",
                                      "a message by id: every field "
                                      "and the body");
  get->add_option("ID", id_text, "the message id (32 hex digits)")->required();
  get->callback(set([&] { MsgGet(ctx, id_text); }));
  CLI::App* find = msg->add_subcommand(
      "find",
      "the messages of a topic with a key, oldest first (through the "
      "key index)");
  find->add_option("TOPIC", name, "the topic")->required();
  find->add_option("--key", key, "the message key")->required();
  find->add_option("--limit", limit, "list at most this many")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  find->callback(set([&] { MsgFind(ctx, name, key, limit); }));
  CLI::App* peek = msg->add_subcommand(
      "peek",
      "the oldest messages of a topic (or of one queue, from an "
      "offset), without consuming them");
  peek->add_option("TOPIC", name, "the topic")->required();
  peek->add_option("--queue", queue, "only this queue");
  peek->add_option("--offset", offset,
                   "start at this offset (in each queue read)");
  peek->add_option("--count", count, "show at most this many")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  peek->callback(set([&] { MsgPeek(ctx, name, queue, offset, count); }));
  CLI::App* tail = msg->add_subcommand(
      "tail",
      "the newest messages of a topic; with -f, follow new ones "
      "until interrupted");
  tail->add_option("TOPIC", name, "the topic")->required();
  tail->add_option("--count", count, "show this many before following")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  tail->add_flag("-f,--follow", follow,
                 "print new messages as they are stored, until Ctrl-C (with "
                 "--json: one document per line)");
  tail->callback(set([&] { MsgTail(ctx, name, count, follow); }));

  // half
  CLI::App* half = app.add_subcommand(
      "half",
      "transactional (half) messages: list, commit, rollback, "
      "exhausted");
  half->require_subcommand(1, 1);
  std::string group;
  CLI::App* hlist = half->add_subcommand(
      "list",
      "pending half messages: id, topic, key, age, checks done, next "
      "check");
  hlist->add_option("--group", group, "only this producer group");
  hlist->callback(set([&] { HalfList(ctx, group, false); }));
  CLI::App* hcommit = half->add_subcommand(
      "commit", "commit a pending transaction: its message is delivered");
  hcommit->add_option("ID", id_text, "the transaction id")->required();
  hcommit->callback(set([&] { HalfResolve(ctx, id_text, true); }));
  CLI::App* hrollback = half->add_subcommand(
      "rollback", "roll back a pending transaction: its message is dropped");
  hrollback->add_option("ID", id_text, "the transaction id")->required();
  hrollback->callback(set([&] { HalfResolve(ctx, id_text, false); }));
  CLI::App* hexhausted = half->add_subcommand(
      "exhausted",
      "the check-exhausted hold: transactions whose checks ran "
      "out; resolve each by hand");
  hexhausted->add_option("--group", group, "only this producer group");
  hexhausted->callback(set([&] { HalfList(ctx, group, true); }));

  // group
  CLI::App* grp = app.add_subcommand("group", "consumer groups: list, reset");
  grp->require_subcommand(1, 1);
  grp->add_subcommand("list",
                      "per group and queue: committed offset, end "
                      "and lag")
      ->callback(set([&] { GroupList(ctx); }));
  std::string to;
  CLI::App* reset = grp->add_subcommand(
      "reset",
      "move a group's offsets on a topic (its consumers continue "
      "from there)");
  reset->add_option("GROUP", group, "the consumer group")->required();
  reset->add_option("TOPIC", name, "the topic")->required();
  reset
      ->add_option("--to", to,
                   "earliest, latest, or a TIMESTAMP (each "
                   "queue's first message stored at or after "
                   "it)")
      ->required();
  reset->callback(set([&] { GroupReset(ctx, group, name, to); }));

  // consume
  size_t max = 10;
  bool no_ack = false;
  std::string from = "earliest", wait;
  CLI::App* consume = app.add_subcommand(
      "consume",
      "receive messages as consumer group GROUP and acknowledge "
      "them");
  consume->add_option("TOPIC", name, "the topic")->required();
  consume->add_option("--group", group, "the consumer group")->required();
  consume->add_option("--max", max, "receive at most this many")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  consume->add_flag("--no-ack", no_ack,
                    "show what the group would receive next, changing "
                    "nothing (works on a live directory)");
  consume
      ->add_option("--from", from,
                   "where a group new to the topic starts: earliest or "
                   "latest")
      ->capture_default_str();
  consume->add_option("--wait", wait,
                      "wait up to this long for a first message (default: "
                      "take what is there)");
  consume->callback(
      set([&] { Consume(ctx, name, group, max, no_ack, from, wait); }));

  // dlq
  CLI::App* dlq = app.add_subcommand("dlq", "dead letters: list, redrive");
  dlq->require_subcommand(1, 1);
  CLI::App* dlist = dlq->add_subcommand(
      "list", "the group's dead letters not re-driven yet, oldest first");
  dlist->add_option("GROUP", group, "the consumer group")->required();
  dlist->add_option("--limit", limit, "list at most this many")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  dlist->callback(set([&] { DlqList(ctx, group, limit); }));
  size_t redrive_max = SIZE_MAX;
  CLI::App* redrive = dlq->add_subcommand(
      "redrive",
      "give dead letters back to the group (oldest first), with a "
      "fresh set of retries");
  redrive->add_option("GROUP", group, "the consumer group")->required();
  redrive
      ->add_option("--max", redrive_max,
                   "re-drive at most this many "
                   "(default: all)")
      ->check(CLI::PositiveNumber);
  redrive->callback(set([&] { DlqRedrive(ctx, group, redrive_max); }));

  // serve
  std::string listen, token_file;
  bool insecure_no_token = false;
  CLI::App* serve = app.add_subcommand(
      "serve",
      "open the directory and serve it to other processes over "
      "Cap'n Proto RPC (txmq::RemoteBroker) until Ctrl-C");
  serve
      ->add_option("--listen", listen,
                   "unix:/path/to/socket (owner-only) or host:port")
      ->required();
  serve->add_option("--token-file", token_file,
                    "a file whose first line is the shared token clients "
                    "must present (required for a non-loopback address)");
  serve->add_flag("--insecure-no-token", insecure_no_token,
                  "serve a non-loopback address without a token");
  serve->callback(
      set([&] { Serve(ctx, listen, token_file, insecure_no_token); }));

  // verify
  app.add_subcommand("verify",
                     "check every page, then walk every table: every "
                     "record decodes, every index agrees (exit 3 on "
                     "problems)")
      ->callback([&] { run = [&] { return Verify(ctx); }; });

  // An unknown command gets a message naming it (CLI11 would only say that
  // a command is required).
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--data") {
      ++i;
      continue;
    }
    if (arg.starts_with("-")) continue;
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands({})) {
      names.push_back(sub->get_name());
    }
    if (std::find(names.begin(), names.end(), arg) == names.end()) {
      std::fprintf(stderr,
                   "txmq: error: unknown command '%s'; the commands are %s "
                   "(see 'txmq --help')\n",
                   arg.c_str(), absl::StrJoin(names, ", ").c_str());
      return 2;
    }
    break;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::RequiredError& e) {
    // Name the group that needs a command, and its commands.
    const CLI::App* cur = &app;
    std::string path;
    while (!cur->get_subcommands().empty()) {
      cur = cur->get_subcommands()[0];
      path += " " + cur->get_name();
    }
    std::vector<std::string> names;
    for (const CLI::App* sub : cur->get_subcommands({})) {
      names.push_back(sub->get_name());
    }
    if (std::string(e.what()).find("subcommand") != std::string::npos &&
        !names.empty()) {
      std::fprintf(stderr,
                   "txmq: error: 'txmq%s' needs a command: %s (see "
                   "'txmq%s --help')\n",
                   path.c_str(), absl::StrJoin(names, ", ").c_str(),
                   path.c_str());
    } else {
      std::fprintf(stderr, "txmq: error: %s (see 'txmq%s --help')\n", e.what(),
                   path.c_str());
    }
    return 2;
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (what.empty()) what = e.get_name();
    std::fprintf(stderr, "txmq: error: %s (see 'txmq --help')\n", what.c_str());
    return 2;
  } catch (const CommandError& e) {
    std::fprintf(stderr, "txmq: error: %s\n", e.message.c_str());
    return e.exit_code;
  }
  try {
    if (!run) return 2;
    const int code = run();
    CheckStdout();  // a failed write of the output is a failure
    return code;
  } catch (const CommandError& e) {
    std::fflush(stdout);
    if (!e.message.empty()) {
      std::fprintf(stderr, "txmq: error: %s\n", e.message.c_str());
    }
    return e.exit_code;
  }
}

}  // namespace
}  // namespace txmq::cli

int main(int argc, char** argv) { return txmq::cli::Main(argc, argv); }
