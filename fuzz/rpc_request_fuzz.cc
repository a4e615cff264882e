// RPC requests as a hostile client could send them: the parameters of
// every Broker call that carries data (lib/schema/rpc.capnp), read from
// arbitrary bytes with the server's reader limits and converted the way
// lib/rpc/server.cc converts them. A malformed request must end in a
// status or a Cap'n Proto exception (which the server turns into an
// error answer), never a crash; what converts is within the broker's
// limits.
//
// Input: one byte choosing the call, then a Cap'n Proto message (segment
// table and segments, as on the wire).

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstdint>

#include "fuzz_util.h"
#include "rpc.capnp.h"
#include "rpc/convert.h"

namespace {

namespace rpc = txmq::rpc;

void Message(rpc::Message::Reader m) {
  absl::StatusOr<txmq::Message> decoded = rpc::DecodeWire(m);
  if (!decoded.ok()) return;
  if (decoded->tags.size() > 32) txmq::fuzz::Fail("more than 32 tags");
  if (decoded->properties.size() > 256) {
    txmq::fuzz::Fail("more than 256 properties");
  }
}

void Call(uint8_t which, capnp::MessageReader& reader) {
  switch (which % 8) {
    case 0: {
      auto p = reader.getRoot<rpc::Broker::SendParams>();
      (void)rpc::SelectorFromWire(p.getSelector());
      Message(p.getMessage());
      break;
    }
    case 1: {
      auto p = reader.getRoot<rpc::Broker::SendEachParams>();
      if (p.getMessages().size() > rpc::kMaxWireBatch) break;  // refused
      for (auto m : p.getMessages()) Message(m);
      break;
    }
    case 2: {
      auto p = reader.getRoot<rpc::Broker::SendBatchParams>();
      if (p.getMessages().size() > rpc::kMaxWireBatch) break;
      for (auto m : p.getMessages()) Message(m);
      break;
    }
    case 3: {
      auto p = reader.getRoot<rpc::Broker::BeginParams>();
      (void)p.getGroup();
      Message(p.getMessage());
      break;
    }
    case 4: {
      auto p = reader.getRoot<rpc::Broker::RegisterCheckerParams>();
      (void)p.getGroup();
      (void)rpc::FromWire(p.getPolicy());
      break;
    }
    case 5: {
      auto p = reader.getRoot<rpc::Broker::SubscribeParams>();
      (void)p.getGroup();
      (void)p.getTopic();
      (void)rpc::FromWire(p.getOptions());
      break;
    }
    case 6: {
      auto p = reader.getRoot<rpc::Broker::CreateTopicParams>();
      (void)p.getName();
      break;
    }
    default: {  // an answer, as a client reads it from a hostile server
      auto r = reader.getRoot<rpc::Broker::SendResults>();
      (void)rpc::FromWire(r.getStatus());
      (void)rpc::FromWire(r.getResult());
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const txmq::fuzz::Aligned aligned(data + 1, size - 1);
  capnp::ReaderOptions options;
  options.traversalLimitInWords = (size_t{64} << 20) / 8 + 1024;  // server's
  kj::ArrayPtr<const capnp::word> words(
      reinterpret_cast<const capnp::word*>(aligned.words().data()),
      (size - 1) / 8);
  (void)kj::runCatchingExceptions([&] {
    capnp::FlatArrayMessageReader reader(words, options);
    Call(data[0], reader);
  });
  return 0;
}
