// Built against an installed copy of txmq (tests/install/install_test.sh):
// proves the headers, the library and txmq.pc are enough on their own.

#include <cstdio>

#include "txmq/txmq.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto broker = txmq::Broker::Open(argv[1]);
  if (!broker.ok()) return 3;
  if (!(*broker)->CreateTopic("hello").ok()) return 4;
  auto producer = (*broker)->CreateProducer();
  auto sent = (*producer)->Send({.topic = "hello", .body = "world"});
  if (!sent.ok()) return 5;
  auto consumer = (*broker)->CreateConsumer("g", "hello");
  auto batch = (*consumer)->Receive(1, absl::Seconds(1));
  if (!batch.ok() || batch->size() != 1 || (*batch)[0].body() != "world") {
    return 6;
  }
  std::printf("installed txmq works: %s\n", sent->id.ToString().c_str());
  return 0;
}
