// Writes the seed corpora of fuzz/ (committed under fuzz/corpus/): real
// records and RPC requests, so that the fuzzers start from valid inputs
// and mutate them. Rerun after a format or schema change:
//
//   build-fuzz/fuzz/make_seeds fuzz/corpus

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "log/record_codec.h"
#include "rpc.capnp.h"
#include "rpc/convert.h"
#include "txmq/message.h"

namespace {

std::vector<txmq::Message> Messages() {
  std::vector<txmq::Message> out;
  out.push_back({.topic = "orders", .body = "x"});
  out.push_back({.topic = "orders",
                 .key = "order-42",
                 .tags = {"paid", "eu"},
                 .properties = {{"trace", "abc"}, {"empty", ""}},
                 .body = std::string(300, 'b')});
  out.push_back({.topic = "t", .key = std::string(600, 'k'), .body = ""});
  txmq::Message delayed{.topic = "d", .tags = {"x"}, .body = "later"};
  delayed.deliver_at = absl::FromUnixMillis(1764150000000 + 3600000);
  out.push_back(delayed);
  return out;
}

void Write(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

void WriteMessage(const std::string& path, uint8_t call,
                  capnp::MessageBuilder& builder) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  std::string bytes(1, static_cast<char>(call));
  bytes.append(reinterpret_cast<const char*>(words.begin()),
               words.size() * sizeof(capnp::word));
  Write(path, bytes.data(), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
    return 2;
  }
  const std::string root = argv[1];
  for (const char* t : {"record_fuzz", "rpc_request_fuzz"}) {
    std::filesystem::create_directories(root + "/" + t);
  }
  const std::vector<txmq::Message> messages = Messages();
  for (size_t i = 0; i < messages.size(); ++i) {
    auto record =
        txmq::PendingRecord::Encode(messages[i], 1764150000000, 1 << 20);
    if (!record.ok()) return 1;
    record->Stamp(txmq::MessageId::Make(1764150000123, 7, i), 1, i,
                  1764150000123);
    std::string bytes(record->size(), '\0');
    record->WriteTo(bytes.data());
    Write(absl::StrCat(root, "/record_fuzz/seed-", i), bytes.data(),
          bytes.size());
    // A retry-queue copy of it.
    auto copy = txmq::PendingRecord::CopyFor(bytes, "%RETRY%g", 2, 0);
    if (!copy.ok()) return 1;
    copy->Stamp(txmq::MessageId::Make(1764150000999, 9, i), 0, i,
                1764150000999);
    std::string copied(copy->size(), '\0');
    copy->WriteTo(copied.data());
    Write(absl::StrCat(root, "/record_fuzz/copy-", i), copied.data(),
          copied.size());
  }
  namespace rpc = txmq::rpc;
  const std::string dir = root + "/rpc_request_fuzz/";
  {
    capnp::MallocMessageBuilder b;
    auto p = b.initRoot<rpc::Broker::SendParams>();
    rpc::ToWire(messages[1], p.initMessage());
    WriteMessage(dir + "send", 0, b);
  }
  {
    capnp::MallocMessageBuilder b;
    auto p = b.initRoot<rpc::Broker::SendEachParams>();
    auto list = p.initMessages(messages.size());
    for (size_t i = 0; i < messages.size(); ++i) {
      rpc::ToWire(messages[i], list[i]);
    }
    WriteMessage(dir + "send-each", 1, b);
  }
  {
    capnp::MallocMessageBuilder b;
    auto p = b.initRoot<rpc::Broker::SendBatchParams>();
    rpc::ToWire(messages[0], p.initMessages(1)[0]);
    WriteMessage(dir + "send-batch", 2, b);
  }
  {
    capnp::MallocMessageBuilder b;
    auto p = b.initRoot<rpc::Broker::BeginParams>();
    p.setGroup("order-service");
    rpc::ToWire(messages[1], p.initMessage());
    WriteMessage(dir + "begin", 3, b);
  }
  {
    capnp::MallocMessageBuilder b;
    auto p = b.initRoot<rpc::Broker::RegisterCheckerParams>();
    p.setGroup("order-service");
    rpc::ToWire(txmq::CheckPolicy{}, p.initPolicy());
    WriteMessage(dir + "register-checker", 4, b);
  }
  {
    capnp::MallocMessageBuilder b;
    auto p = b.initRoot<rpc::Broker::SubscribeParams>();
    p.setGroup("workers");
    p.setTopic("orders");
    txmq::ConsumerOptions options;
    options.tag_filter = "paid || eu";
    rpc::ToWire(options, p.initOptions());
    WriteMessage(dir + "subscribe", 5, b);
  }
  {
    capnp::MallocMessageBuilder b;
    auto p = b.initRoot<rpc::Broker::CreateTopicParams>();
    p.setName("orders");
    p.setQueues(4);
    WriteMessage(dir + "create-topic", 6, b);
  }
  {
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<rpc::Broker::SendResults>();
    rpc::ToWire(absl::OkStatus(), r.initStatus());
    rpc::ToWire(txmq::SendResult{.queue = 1, .offset = 2}, r.initResult());
    WriteMessage(dir + "send-results", 7, b);
  }
  return 0;
}
